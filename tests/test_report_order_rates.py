"""One order, one rate: the report converts an order's revenue and the cost of a ``fixed``
incentive redeemed on it at the same rate, the order's own where the shop database gives one
(PrestaShop's ``orders.conversion_rate``, Magento's ``base_grand_total`` beside ``grand_total``),
``shop.exchange_rates`` only where it gives none. On the real MariaDB and PostgreSQL servers,
end to end through ``report --json``."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any, Callable

import pytest

import shopdb
from conftest import Outcome, cli
from reportdata import Row, write_ledger
from test_source_prestashop_details import _foreign_order

UTC = timezone.utc
#: 110 kronor off at step 1; ``shop.exchange_rates`` says ten kronor to the euro (11.00 EUR).
SEQUENCES = {"default": {"steps": [{"delay": "1h", "template": "reminder-3",
                                    "incentive": {"kind": "fixed", "value": 110, "code": "SEK110"}}]}}
SHOP = {"currency": "EUR", "exchange_rates": {"SEK": "0.1"}}


def _magento_order(db: shopdb.ShopDb, base_grand_total: str | None, coupon_code: str | None = None) -> None:
    """Order M1 of quote 606: 220 SEK, with ``base_grand_total`` in EUR (20: eleven kronor to the
    euro when it was placed; None: the base amount unknown), placed with ``coupon_code``."""
    db.schema("magento2")
    db.insert("sales_order", [{
        "entity_id": 1, "increment_id": "M1", "quote_id": 606, "customer_email": "m1@example.com",
        "state": "complete", "status": "complete", "grand_total": Decimal("220"), "order_currency_code": "SEK",
        "base_grand_total": None if base_grand_total is None else Decimal(base_grand_total),
        "base_currency_code": "EUR", "created_at": datetime(2026, 3, 29, 10, 0), "coupon_code": coupon_code}])


#: The report's note where its source cannot say which code an order used (the upper bound).
ASSUMED = "the orders carry no discount code"


def _voucher(db: shopdb.ShopDb, rate: str, *codes: str) -> None:
    """PrestaShop's order 106 (:func:`_foreign_order`) placed with a voucher (cart rule) of each of
    ``codes`` ("": a rule the shop applied by itself, without a code)."""
    _foreign_order(db, rate)
    placed = datetime(2026, 3, 29, 12, 0)
    db.insert("ps_cart_rule", [{"id_cart_rule": n, "code": code, "date_from": placed, "date_to": placed,
                                "date_add": placed, "date_upd": placed} for n, code in enumerate(codes, 1)])
    db.insert("ps_order_cart_rule", [{"id_order": 106, "id_cart_rule": n, "name": f"rule {n}"}
                                     for n in range(1, len(codes) + 1)])


def _report(kind: str, tmp_path: Path, preset: str, fill: Callable[[shopdb.ShopDb], None],
            email: str | None = None, refused: Sequence[str] = ()) -> Outcome:
    """``report --json`` of 29 March, cart 606 (of ``email``) messaged at 09:00 UTC; read by an
    account that may not SELECT from the ``refused`` tables when there are any."""
    with shopdb.configured(kind, f"{preset}fixedrate", fill, tmp_path, {"type": preset}, shop=SHOP,
                           sequences=SEQUENCES) as (db, config):
        if refused:
            shopdb.write_config(config.parent, {"type": preset, "url": db.read_only_user(refused)}, shop=SHOP,
                                sequences=SEQUENCES)
        write_ledger(config.parent / "ledger.db", [Row("606", datetime(2026, 3, 29, 9, 0, tzinfo=UTC), email=email)])
        return cli("report", "--json", "--since", "2026-03-29", "--until", "2026-03-30", "--config", str(config),
                   "--now", "2026-04-05T12:00:00Z")


def _money(kind: str, tmp_path: Path, preset: str, fill: Callable[[shopdb.ShopDb], None],
           email: str | None = None) -> dict[str, Any]:
    """The report's summary and its one money row, for cart 606 (of ``email``) messaged at 09:00
    UTC on 29 March and its order an hour later; ``assumed``: whether the report assumed the
    incentive used, its source not saying which code the order used."""
    result = _report(kind, tmp_path, preset, fill, email)
    assert result.exit_code == 0, result.output
    (row,) = result.json["money"]["by_tier"]
    return {"revenue": result.json["summary"]["revenue"], "incentive_cost": row["incentive_cost"],
            "redeemed": row["codes_redeemed"], "codes_in_orders": result.json["money"]["codes_in_orders"],
            "assumed": any(ASSUMED in note for note in result.json["notes"])}


@pytest.mark.parametrize("kind", shopdb.KINDS)
def test_a_fixed_incentive_on_a_prestashop_order_costs_its_value_at_the_orders_own_conversion_rate(kind, tmp_path):
    """The order's (220 - 55) SEK are 15.00 EUR at its conversion_rate of 11; its 110 kronor off
    were costed with shop.exchange_rates (11.00 EUR) instead of the same rate (10.00 EUR)."""
    assert _money(kind, tmp_path, "prestashop", lambda db: _voucher(db, "11", "SEK110")) == {
        "revenue": "15.00", "incentive_cost": "10.00", "redeemed": 1, "codes_in_orders": True, "assumed": False}


@pytest.mark.parametrize("kind", shopdb.KINDS)
def test_a_fixed_incentive_on_a_prestashop_order_without_a_rate_uses_shop_exchange_rates(kind, tmp_path):
    """conversion_rate 0 says nothing: the revenue falls back to shop.exchange_rates, (220 - 55) ×
    0.1 = 16.50 EUR, and so does the incentive's cost, 110 × 0.1 = 11.00 EUR."""
    assert _money(kind, tmp_path, "prestashop", lambda db: _voucher(db, "0", "SEK110")) == {
        "revenue": "16.50", "incentive_cost": "11.00", "redeemed": 1, "codes_in_orders": True, "assumed": False}


@pytest.mark.parametrize("kind", shopdb.KINDS)
def test_a_fixed_incentive_on_a_magento_order_costs_its_value_at_the_orders_base_rate(kind, tmp_path):
    """220 SEK with a base_grand_total of 20 EUR (eleven kronor to the euro): 110 kronor off cost
    10.00 EUR at that rate, where shop.exchange_rates said 11.00 EUR."""
    assert _money(kind, tmp_path, "magento2", lambda db: _magento_order(db, "20", "SEK110")) == {
        "revenue": "20.00", "incentive_cost": "10.00", "redeemed": 1, "codes_in_orders": True, "assumed": False}


@pytest.mark.parametrize("kind", shopdb.KINDS)
def test_a_fixed_incentive_on_a_magento_order_without_a_base_total_uses_shop_exchange_rates(kind, tmp_path):
    """No base_grand_total: the revenue is 220 × 0.1 = 22.00 EUR by shop.exchange_rates, the
    incentive 110 × 0.1 = 11.00 EUR by the same rates."""
    assert _money(kind, tmp_path, "magento2", lambda db: _magento_order(db, None, "SEK110")) == {
        "revenue": "22.00", "incentive_cost": "11.00", "redeemed": 1, "codes_in_orders": True, "assumed": False}


@pytest.mark.parametrize("kind", shopdb.KINDS)
def test_a_magento_order_placed_with_another_coupon_redeems_no_incentive(kind, tmp_path):
    """Magento keeps the coupon an order used in sales_order.coupon_code. The report did not read
    it and assumed every attributed order after an incentive used the step's code: an order
    placed with the shop's own SPRING5 counted SEK110 as redeemed and cost 10.00 EUR."""
    assert _money(kind, tmp_path, "magento2", lambda db: _magento_order(db, "20", "SPRING5")) == {
        "revenue": "20.00", "incentive_cost": "0.00", "redeemed": 0, "codes_in_orders": True, "assumed": False}


@pytest.mark.parametrize("kind", shopdb.KINDS)
def test_a_magento_order_placed_with_the_steps_coupon_redeems_it(kind, tmp_path):
    """The step's code in sales_order.coupon_code, in any case, is its incentive redeemed,
    known from the order and not assumed."""
    assert _money(kind, tmp_path, "magento2", lambda db: _magento_order(db, "20", "sek110")) == {
        "revenue": "20.00", "incentive_cost": "10.00", "redeemed": 1, "codes_in_orders": True, "assumed": False}

