"""Without ``shop.currency`` the report sums a shop database's own base amounts (PrestaShop's
``total_paid`` by the order's ``conversion_rate``, docs/databases.md): orders placed in kronor
and in euros are then all in the default currency, and the report must not warn that they were
summed as they are. On the real MariaDB and PostgreSQL servers, end to end through ``report --json``."""

from __future__ import annotations

from datetime import datetime, timezone
from decimal import Decimal

import pytest

import shopdb
from conftest import cli
from reportdata import Row, write_ledger
from test_source_prestashop_details import _foreign_order, local

UTC = timezone.utc
MIXED = "are not added together"


def _two_currencies(db: shopdb.ShopDb, rate: str) -> None:
    """Order 106 of cart 606 (220 SEK less a 55 SEK slip, at ``rate`` kronor to the euro) and order
    107 of cart 607, 30 EUR, the default currency."""
    _foreign_order(db, rate)
    placed = local("2026-03-29 10:30:00")
    db.insert("ps_orders", [{"id_order": 107, "id_customer": 1, "id_cart": 607, "id_currency": 1,
                             "conversion_rate": Decimal("1"), "current_state": 2, "total_paid": Decimal("30"),
                             "date_add": placed, "date_upd": placed}])


def _report(kind: str, tmp_path, rate: str) -> tuple[str | None, list[str], dict | None]:
    """The report's revenue and notes, shop.currency not set, both carts messaged at 09:00 UTC."""
    with shopdb.configured(kind, "psbasenote", lambda db: _two_currencies(db, rate), tmp_path,
                           {"type": "prestashop"}, shop={"currency": None}) as (_, config):
        at = datetime(2026, 3, 29, 9, 0, tzinfo=UTC)
        write_ledger(config.parent / "ledger.db", [Row("606", at), Row("607", at)])
        result = cli("report", "--json", "--since", "2026-03-29", "--until", "2026-03-30", "--config", str(config),
                     "--now", "2026-04-05T12:00:00Z")
    assert result.exit_code == 0, result.output
    return result.json["summary"]["revenue"], result.json["notes"], result.json.get("by_currency")


@pytest.mark.parametrize("kind", shopdb.KINDS)
def test_prestashop_orders_in_two_currencies_summed_in_the_default_currency_are_not_called_mixed(kind, tmp_path):
    """165 SEK at 11 kronor to the euro are 15.00, beside 30.00: 45.00 in the default currency,
    which the report said were 'orders in EUR, SEK ... summed as they are'."""
    revenue, notes, by_currency = _report(kind, tmp_path, "11")
    assert revenue == "45.00" and by_currency is None
    assert not [note for note in notes if MIXED in note], notes


@pytest.mark.parametrize("kind", shopdb.KINDS)
def test_an_order_without_a_rate_beside_base_amounts_is_still_called_mixed(kind, tmp_path):
    """conversion_rate 0: the 165 SEK are taken as they are, beside the euro order's base amount:
    never added to it (the revenue was 195.00), each given on its own, and the note says so."""
    revenue, notes, by_currency = _report(kind, tmp_path, "0")
    assert revenue is None
    assert {code: entry["revenue"] for code, entry in by_currency.items()} == {"(platform base)": "30.00", "SEK": "165.00"}
    assert "orders in SEK and in the shop platform's base currency are not added together" in " ".join(notes), notes
