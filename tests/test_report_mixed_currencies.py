"""`report` of a shop without ``shop.currency`` whose orders come in several currencies (a Shopify
shop selling in kronor and euros): no amount it shows is a sum of different currencies. The
headline revenue, revenue per recipient and incentive cost are given per currency; the tables'
money columns are left out (``null``), with a note saying how to get one currency. A shop in one
currency gets, byte for byte, the JSON and CSV it got before (tests/fixtures/report_one_currency/)."""

from __future__ import annotations

import csv
import json
import os
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from conftest import NOW, Shop
from reportdata import Row, mailed_digest, order_row, write_ledger

LATER = NOW + timedelta(days=6)
PERIOD = ("--since", "2026-11-19", "--until", "2026-11-21")
SUMMED = ("1532.90", "1,532.90")  # 1,499.00 SEK + 33.90 EUR: a figure that means nothing
GOLDEN = Path(__file__).parent / "fixtures" / "report_one_currency"


def _shop(shop: Shop, currencies: tuple[str, str] = ("SEK", "EUR"), currency: str | None = None) -> Shop:
    """Four messaged carts and two held-out ones; t0 ordered 1,499.00 and t1 33.90 in
    ``currencies``, after a 10 % reminder (orders in a CSV carry no codes: assumed used)."""
    shop.configure(sequences={"default": {"holdout": 0.3, "steps": [
        {"delay": "1h", "template": "reminder-1", "incentive": {"kind": "percent", "value": 10, "code": "BACK"}}]}})
    if currency is not None:
        shop.configure(shop={"currency": currency})
    write_ledger(shop.folder / "ledger.db", [Row(f"t{n}", NOW) for n in range(4)]
                 + [Row(f"h{n}", NOW, held=True) for n in range(2)])
    shop.add_orders(order_row("o0", at=NOW + timedelta(hours=2), total="1499.00", cart_id="t0", currency=currencies[0]),
                    order_row("o1", at=NOW + timedelta(hours=3), total="33.90", cart_id="t1", currency=currencies[1]))
    return shop


def _json(shop: Shop) -> dict[str, Any]:
    result = shop.cli("report", "--json", *PERIOD, now=LATER)
    assert result.exit_code == 0, result.output
    return result.json


def test_the_json_gives_revenue_per_currency_and_no_sum_of_two(shop: Shop) -> None:
    """``summary.revenue`` was "1532.90": kronor and euros added up."""
    document = _json(_shop(shop))
    assert document["currency"] is None
    summary = document["summary"]
    assert summary["revenue"] is None and summary["revenue_per_recipient"] is None, summary
    assert document["by_currency"] == {
        "EUR": {"orders": 1, "revenue": "33.90", "revenue_per_recipient": "8.48", "incentive_cost": "3.77"},
        "SEK": {"orders": 1, "revenue": "1499.00", "revenue_per_recipient": "374.75", "incentive_cost": "166.56"}}
    assert "1532.90" not in json.dumps(document)


def test_the_tables_leave_their_money_out_and_a_note_says_how_to_get_it(shop: Shop) -> None:
    """Per tier, step, arm and day the revenue was the same sum; so were gross, net and ROI."""
    document = _json(_shop(shop))
    (tier,) = document["money"]["by_tier"]
    assert [tier[key] for key in ("revenue", "incentive_cost", "gross", "net", "roi")] == [None] * 5, tier
    assert (tier["orders"], tier["messages"]) == (2, 4)
    (step,) = document["breakdowns"]["step"]
    assert (step["revenue"], step["revenue_per_recipient"], step["orders"]) == (None, None, 2)
    assert {day["revenue"] for day in document["breakdowns"]["day"]} == {None}
    lift = document["incrementality"]
    assert lift["treated"]["revenue"] is None and lift["treated"]["revenue_per_cart"] is None
    assert lift["incremental_revenue"] == {"estimate": None, "interval": None}
    notes = " ".join(document["notes"])
    assert "orders in EUR, SEK are not added together" in notes and "shop.exchange_rates" in notes, notes
    assert "summed as they are" not in notes


def test_the_terminal_shows_each_currency_and_no_sum(shop: Shop) -> None:
    result = _shop(shop).cli("report", "--by", "day", *PERIOD, now=LATER)
    assert result.exit_code == 0, result.output
    text = result.stdout
    assert not any(summed in text for summed in SUMMED), text
    assert "SEK1,499.00" in text and "€33.90" in text, text


def test_the_csv_has_a_file_per_currency_and_no_sum(shop: Shop, tmp_path: Path) -> None:
    folder = tmp_path / "tables"
    result = _shop(shop).cli("report", "--quiet", "--csv", str(folder), *PERIOD, now=LATER)
    assert result.exit_code == 0, result.output
    for path in folder.iterdir():
        assert not any(summed in path.read_text(encoding="utf-8") for summed in SUMMED), path
    with (folder / "by_currency.csv").open(encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [(row["currency"], row["orders"], row["revenue"], row["incentive_cost"]) for row in rows] == [
        ("EUR", "1", "33.90", "3.77"), ("SEK", "1", "1499.00", "166.56")]


def test_the_html_page_shows_each_currency_and_no_sum(shop: Shop, tmp_path: Path) -> None:
    page = tmp_path / "report.html"
    result = _shop(shop).cli("report", "--quiet", "--html", str(page), *PERIOD, now=LATER)
    assert result.exit_code == 0, result.output
    html = page.read_text(encoding="utf-8")
    assert not any(summed in html for summed in SUMMED)
    assert "SEK1,499.00" in html and "€33.90" in html


@pytest.mark.smtp
def test_the_mailed_digest_shows_each_currency_and_no_sum(shop: Shop) -> None:
    body = mailed_digest(_shop(shop), *PERIOD, now=LATER)
    assert not any(summed in body for summed in SUMMED), body
    assert "Recovered (attributed): €33.90 and SEK1,499.00 from 2 orders" in body, body


def _outputs(shop: Shop, tmp_path: Path) -> dict[str, str]:
    """What a report writes for a script: ``--json`` and each ``--csv`` file. (The terminal, the
    ``--html`` page and the digest are held by the tests above: kept whole here, they broke on
    any wording, any rich or Babel release, not only on an amount.)"""
    tmp_path.mkdir(exist_ok=True)
    folder = tmp_path / "tables"
    files = shop.cli("report", "--quiet", "--csv", str(folder), *PERIOD, now=LATER)
    assert files.exit_code == 0 and not files.stdout, files.output
    found = {"report.json": json.dumps(_json(shop), indent=1, sort_keys=True)}
    found.update({f"csv/{path.name}": path.read_text(encoding="utf-8") for path in sorted(folder.iterdir())})
    return {name: value.replace(str(shop.folder), "SHOP") for name, value in found.items()}


@pytest.mark.parametrize(("name", "currencies", "currency"), [
    ("unset", ("EUR", "EUR"), None), ("eur", ("EUR", "SEK"), "EUR")])
def test_a_one_currency_shops_report_is_unchanged(shop: Shop, tmp_path: Path, name: str,
                                                  currencies: tuple[str, str], currency: str | None) -> None:
    """Orders in one currency without ``shop.currency``, or ``shop.currency`` set (a krona order
    without a rate left out): the JSON and CSV files as they were before reports learned of currencies.
    ``CARTRESCUE_WRITE_GOLDEN=1`` writes the files (only ever from a commit known to be right)."""
    found = _outputs(_shop(shop, currencies, currency), tmp_path / "out")
    folder = GOLDEN / name
    if os.environ.get("CARTRESCUE_WRITE_GOLDEN") == "1":
        for file, value in found.items():
            (folder / file).parent.mkdir(parents=True, exist_ok=True)
            (folder / file).write_text(value, encoding="utf-8")
    expected = {str(path.relative_to(folder)): path.read_text(encoding="utf-8")
                for path in folder.rglob("*") if path.is_file()}
    assert sorted(found) == sorted(expected)
    for file, value in found.items():
        assert value == expected[file], file
