"""`report` amounts in the shop's currency: rounded to its minor unit in `--json` (JPY 0, EUR 2,
KWD 3), and written as the shop's locale writes that currency wherever a person reads them (the
terminal, the HTML page, the mailed digest), through the messages' own formatter."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from conftest import NOW, Shop
from reportdata import Row, mailed_digest, order_row, write_ledger

LATER = NOW + timedelta(days=6)
PERIOD = ("--since", "2026-11-19", "--until", "2026-11-21")


def _yen_shop(shop: Shop) -> None:
    """Three carts messaged, one ordered for 5,000 yen: 1,666.666… yen per recipient."""
    shop.configure(shop={"currency": "JPY", "default_locale": "ja"})
    write_ledger(shop.folder / "ledger.db", [Row(f"t{n}", NOW, cart_value="3000") for n in range(3)])
    shop.add_orders(order_row("o1", at=NOW + timedelta(hours=2), total="5000", cart_id="t0", currency="JPY"))


def test_a_yen_shops_json_gives_whole_yen(shop: Shop) -> None:
    """Amounts were given to the cent whatever the currency: "5000.00" and "1666.67" yen, which
    has no minor unit. The field names and types (strings) stay as scripts read them."""
    _yen_shop(shop)
    result = shop.cli("report", "--json", *PERIOD, now=LATER)
    assert result.exit_code == 0, result.output
    summary = result.json["summary"]
    assert (summary["revenue"], summary["revenue_per_recipient"], summary["cart_value"]) == ("5000", "1667", "9000")
    (step,) = result.json["breakdowns"]["step"]
    assert (step["revenue"], step["revenue_per_recipient"]) == ("5000", "1667")
    (tier,) = result.json["money"]["by_tier"]
    assert (tier["revenue"], tier["gross"], tier["net"]) == ("5000", "5000", "5000")


def test_a_yen_shops_report_shows_yen_as_its_locale_writes_them(shop: Shop, tmp_path: Path) -> None:
    """The terminal said "5000.00 JPY" and "1666.67" per recipient; the HTML page the same."""
    _yen_shop(shop)
    page = tmp_path / "report.html"
    result = shop.cli("report", *PERIOD, "--html", str(page), now=LATER)
    assert result.exit_code == 0, result.output
    html = page.read_text(encoding="utf-8")
    for shown in (result.stdout, html):
        assert "￥5,000" in shown and "￥1,667" in shown
        assert "5000.00" not in shown and "1666.67" not in shown and ".00" not in shown


def test_a_dinar_amount_keeps_its_three_decimals(shop: Shop) -> None:
    """Averages and the money table were rounded to cents: 12.345 dinars made "12.35", and a
    third of it "4.12" (the dinar has 1,000 fils)."""
    shop.configure(shop={"currency": "KWD"})
    write_ledger(shop.folder / "ledger.db", [Row(f"t{n}", NOW, cart_value="20.000") for n in range(3)])
    shop.add_orders(order_row("o1", at=NOW + timedelta(hours=2), total="12.345", cart_id="t0", currency="KWD"))
    result = shop.cli("report", "--json", *PERIOD, now=LATER)
    assert result.exit_code == 0, result.output
    assert (result.json["summary"]["revenue"], result.json["summary"]["revenue_per_recipient"]) == ("12.345", "4.115")
    assert result.json["money"]["by_tier"][0]["revenue"] == "12.345"
    printed = shop.cli("report", *PERIOD, now=LATER)
    assert "KWD12.345" in printed.stdout and "KWD4.115" in printed.stdout, printed.stdout


def test_the_headline_agrees_with_the_money_table_on_a_converted_sum(shop: Shop) -> None:
    """1,293.39 kronor at 0.1 is 129.339 euros: the headline said "129.339 EUR" while the money
    table below it said 129.34."""
    shop.configure(shop={"currency": "EUR", "exchange_rates": {"SEK": "0.1"}})
    write_ledger(shop.folder / "ledger.db", [Row(f"t{n}", NOW) for n in range(2)])
    shop.add_orders(order_row("o1", at=NOW + timedelta(hours=2), total="1293.39", cart_id="t0", currency="SEK"))
    document = shop.cli("report", "--json", *PERIOD, now=LATER).json
    assert document["summary"]["revenue"] == document["money"]["by_tier"][0]["revenue"] == "129.34"
    printed = shop.cli("report", *PERIOD, now=LATER)
    assert printed.exit_code == 0, printed.output
    assert "129.339" not in printed.stdout
    headline, _, rest = printed.stdout.partition("Money in, money out")
    assert "€129.34" in headline and "€129.34" in rest, printed.stdout


@pytest.mark.smtp
def test_the_mailed_digest_gives_yen_as_the_shops_locale_writes_them(shop: Shop) -> None:
    """The digest's body said "Recovered (attributed): 5000.00 JPY"."""
    _yen_shop(shop)
    body = mailed_digest(shop, *PERIOD, now=LATER)
    assert "Recovered (attributed): ￥5,000 from 1 orders" in body, body
