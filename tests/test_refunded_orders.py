"""An order refunded in full awaits no delivery: it holds back no reminder, though its status
still says "paid" (a refund by amount leaves it so). A partly refunded order still does, and a
cart whose own order was refunded was still bought: no reminder about it."""

from __future__ import annotations

import sqlite3
from datetime import timedelta
from typing import Any

import yaml

from conftest import NOW, Shop, cart, iso, order
from reportdata import orders_with_column

DAYS_AGO = NOW - timedelta(days=3)


def _decide(shop: Shop, orders: list[dict[str, str]], refunds: dict[str, str], header: str = "refunded",
            ) -> dict[str, dict[str, Any]]:
    """The run's decisions over ``orders``, the orders file having a ``header`` column with ``refunds``
    (order id -> cell; the others blank)."""
    orders_with_column(shop, orders, refunds, header)
    return shop.decisions()


def test_an_undelivered_order_refunded_in_full_holds_back_no_reminder(shop: Shop) -> None:
    shop.add(cart("c1", email="ann@example.com"))
    decided = _decide(shop, [order("o1", email="ann@example.com", created=DAYS_AGO, delivered="no", total="80.00")],
                      {"o1": "80.00"})
    assert (decided["c1"]["action"], decided["c1"]["reason"]) == ("send", "due")


def test_an_undelivered_order_refunded_in_part_still_holds_back_reminders(shop: Shop) -> None:
    shop.add(cart("c1", email="ann@example.com"))
    decided = _decide(shop, [order("o1", email="ann@example.com", created=DAYS_AGO, delivered="no", total="80.00")],
                      {"o1": "30.00"})
    assert decided["c1"]["reason"] == "pending_order"


def test_a_cart_whose_own_order_was_refunded_in_full_is_still_not_reminded(shop: Shop) -> None:
    # The customer bought it and sent it back: "you left something in your cart" would be wrong.
    shop.add(cart("c1", email="ann@example.com"))
    decided = _decide(shop, [order("o1", cart_id="c1", created=NOW - timedelta(minutes=30), delivered="no",
                                   total="25.00")], {"o1": "25.00"})
    assert decided["c1"]["reason"] == "ordered"


def test_a_cart_whose_own_order_says_refunded_is_still_not_reminded(shop: Shop) -> None:
    """A status of refunded (Shopify's Financial Status once all is refunded) made it no order:
    the buyer got "you left something in your cart" for the cart they had bought."""
    shop.add(cart("c1", email="ann@example.com"))
    shop.add_orders(order("o1", cart_id="c1", created=NOW - timedelta(minutes=30), delivered="no", total="25.00",
                          status="refunded"))
    assert shop.decisions()["c1"]["reason"] == "ordered"


def test_an_earlier_order_that_says_refunded_holds_back_no_reminder(shop: Shop) -> None:
    shop.add(cart("c1", email="ann@example.com"))
    shop.add_orders(order("o1", email="ann@example.com", created=DAYS_AGO, delivered="no", status="refunded"))
    assert (shop.decisions()["c1"]["action"], shop.decisions()["c1"]["reason"]) == ("send", "due")


def test_shopifys_refunded_amount_column_releases_the_reminder_too(shop: Shop) -> None:
    shop.add(cart("c1", email="ann@example.com"))
    shop.configure(source={"order_columns": {"refunded": "Refunded Amount"}})
    decided = _decide(shop, [order("o1", email="ann@example.com", created=DAYS_AGO, delivered="no", total="80.00")],
                      {"o1": "80.00"}, header="Refunded Amount")
    assert decided["c1"]["reason"] == "due"


def test_a_malformed_refunded_amount_is_reported_and_read_as_no_refund(shop: Shop) -> None:
    # Before runs read the column, its cells could not stop a reminder: one that cannot be read
    # still cannot (the delivered order of a returning customer stays readable), it is reported.
    shop.add(cart("c1", email="ann@example.com"), cart("c2", email="bo@example.com"))
    orders = [order("o1", email="ann@example.com", created=DAYS_AGO, delivered="no", total="80.00"),
                     order("o2", email="bo@example.com", created=DAYS_AGO, delivered="yes", total="80.00")]
    orders_with_column(shop, orders, {"o1": "eighty", "o2": "eighty"}, "refunded")
    result = shop.cli("carts", "--json")
    decided = {row["cart_id"]: row for row in result.json["decisions"]}
    assert decided["c1"]["reason"] == "pending_order"
    assert decided["c2"]["reason"] == "due"
    problems = result.json["problems"]
    assert any(problem.startswith(f"{shop.folder / 'orders.csv'}:2: order o1: refunded") for problem in problems), \
        problems


def test_a_sql_shops_order_refunded_in_full_holds_back_no_reminder(shop: Shop) -> None:
    """The generic sql source: the orders query's optional ``refunded`` column, as the report reads it."""
    path = shop.folder / "shop.db"
    with sqlite3.connect(path) as db:
        db.executescript(
            "CREATE TABLE carts (id TEXT, email TEXT, currency TEXT, created TEXT, updated TEXT, consent INTEGER,"
            " sku TEXT, name TEXT, qty INTEGER, price TEXT);"
            "CREATE TABLE orders (id TEXT, email TEXT, created TEXT, delivered INTEGER, total TEXT, refunded TEXT);")
        at = iso(NOW - timedelta(hours=2)).replace("T", " ").rstrip("Z")
        db.executemany("INSERT INTO carts VALUES (?, ?, 'EUR', ?, ?, 1, 'SKU-1', 'Blue mug', 1, '25.00')",
                       [("c1", "ann@example.com", at, at), ("c2", "bo@example.com", at, at)])
        placed = iso(DAYS_AGO).replace("T", " ").rstrip("Z")
        db.executemany("INSERT INTO orders VALUES (?, ?, ?, 0, '80.00', ?)",
                       [("o1", "ann@example.com", placed, "80.00"), ("o2", "bo@example.com", placed, None)])
    shop.configure(source={"type": "sql", "url": f"sqlite:///{path}", "carts": None, "orders": None, "queries": {
        "carts": "SELECT id AS cart_id, email, currency, created AS created_at, updated AS updated_at,"
                 " consent AS marketing_consent, sku, name, qty AS quantity, price AS unit_price FROM carts"
                 " WHERE updated >= :start AND updated <= :end ORDER BY id",
        "orders": "SELECT id AS order_id, email, created AS created_at, delivered, total, refunded FROM orders"
                  " WHERE email IN :emails"}})
    config = yaml.safe_load(yaml.safe_dump(shop.config))
    del config["source"]["carts"], config["source"]["orders"]
    shop.config = config
    decided = shop.decisions()
    assert decided["c1"]["reason"] == "due", decided["c1"]
    assert decided["c2"]["reason"] == "pending_order", decided["c2"]  # not refunded: it still holds back
