"""`report` counts an order's revenue net of what the shop refunded of it (the orders file's
optional `refunded` column): a partly returned order did not earn its whole total."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

from conftest import NOW, Shop
from reportdata import Row, order_row, orders_with_column, write_ledger

LATER = NOW + timedelta(days=6)  # every attribution window of the period has closed
PERIOD = ("--since", "2026-11-19", "--until", "2026-11-21")


def _report(shop: Shop, orders: list[dict[str, str]], refunds: dict[str, str], header: str = "refunded") -> dict:
    """The report over ``orders``, the orders file having a ``header`` column with ``refunds``
    (order id -> cell; the others blank)."""
    orders_with_column(shop, orders, refunds, header)
    result = shop.cli("report", "--json", *PERIOD, now=LATER)
    assert result.exit_code in (0, 1), result.output
    return result.json


def test_a_partly_refunded_order_counts_its_total_less_the_refund(shop: Shop) -> None:
    """o1 (80.00, 30.00 refunded) was counted at 80.00: recovered revenue overstated by 30.00."""
    write_ledger(shop.folder / "ledger.db", [Row("t1", NOW), Row("t2", NOW)])
    at = NOW + timedelta(hours=2)
    document = _report(shop, [order_row("o1", at=at, total="80.00", cart_id="t1"),
                              order_row("o2", at=at, total="20.00", cart_id="t2")], {"o1": "30.00", "o2": "0"})
    assert document["problems"] == []
    assert (document["summary"]["orders"], document["summary"]["revenue"]) == (2, "70.00")


def test_a_partial_refund_in_another_currency_is_deducted_before_converting(shop: Shop) -> None:
    shop.configure(shop={"currency": "EUR", "exchange_rates": {"SEK": "0.1"}})
    write_ledger(shop.folder / "ledger.db", [Row("t1", NOW)])
    document = _report(shop, [order_row("o1", at=NOW + timedelta(hours=2), total="250.00", cart_id="t1",
                                        currency="SEK")], {"o1": "50.00"})
    assert Decimal(document["summary"]["revenue"]) == Decimal("20.00")  # (250 - 50) SEK at 0.1


def test_an_order_refunded_in_full_by_amount_is_no_sale(shop: Shop) -> None:
    """Its status still says paid, its refunds took all of it back: it converted nothing."""
    write_ledger(shop.folder / "ledger.db", [Row("t1", NOW)])
    document = _report(shop, [order_row("o1", at=NOW + timedelta(hours=2), total="80.00", cart_id="t1")],
                       {"o1": "80.00"})
    assert (document["summary"]["orders"], document["summary"]["converted_carts"],
            document["summary"]["revenue"]) == (0, 0, "0.00")


def test_a_malformed_refunded_amount_is_reported_with_its_file_and_line(shop: Shop) -> None:
    write_ledger(shop.folder / "ledger.db", [Row("t1", NOW), Row("t2", NOW), Row("t3", NOW)])
    at = NOW + timedelta(hours=2)
    document = _report(shop, [order_row("o1", at=at, total="80.00", cart_id="t1"),
                              order_row("o2", at=at, total="80.00", cart_id="t2"),
                              order_row("o3", at=at, total="10.00", cart_id="t3")], {"o1": "thirty", "o2": "-5.00"})
    path = shop.folder / "orders.csv"
    assert document["problems"] == [f"{path}:2: order o1: refunded: not a number: 'thirty'",
                                    f"{path}:3: order o2: refunded: a refund cannot be negative, got -5.00"]
    assert (document["summary"]["orders"], document["summary"]["revenue"]) == (1, "10.00")


def test_a_mapped_refunds_column_is_read_by_the_report(shop: Shop) -> None:
    """``source.order_columns: {refunded: …}`` was refused as an unknown column."""
    shop.configure(source={"order_columns": {"refunded": "Refunds"}})
    write_ledger(shop.folder / "ledger.db", [Row("t1", NOW)])
    document = _report(shop, [order_row("o1", at=NOW + timedelta(hours=2), total="80.00", cart_id="t1")],
                       {"o1": "12.50"}, header="Refunds")
    assert document["summary"]["revenue"] == "67.50"


def test_a_percent_incentive_on_a_partly_refunded_order_costs_the_discount_on_what_was_kept(shop: Shop) -> None:
    # 20 % off; 120.00 paid, 40.00 refunded: the customer kept 80.00 of goods at 20 % off, a discount of 20.00.
    shop.configure(sequences={"default": {"steps": [{"delay": "1h", "template": "reminder-3", "incentive": {
        "kind": "percent", "value": 20, "code": "BACK20"}}]}})
    write_ledger(shop.folder / "ledger.db", [Row("t1", NOW)])
    document = _report(shop, [order_row("o1", at=NOW + timedelta(hours=2), total="120.00", cart_id="t1")],
                       {"o1": "40.00"})
    (row,) = document["money"]["by_tier"]
    assert (row["orders_with_incentive"], row["incentive_cost"]) == (1, "20.00")
