"""A customer known by phone number alone (a checkout without an address, an SMS-only customer)
is matched to their orders by that number, in E.164 as every channel reads it: a run over a
carts export and an orders export skips their cart as ``ordered``, and their order still to be
delivered holds back the next one (``pending_order``). Before, orders were matched by address,
customer id and cart id only, and such a customer got a text about a cart they had bought.

A number the orders give to several customers (the shop's own, typed where a checkout requires
one) tells no one's purchase; a cart with an address is matched by its address alone."""

from __future__ import annotations

import marshal
import sqlite3
from datetime import timedelta
from pathlib import Path

import pytest

from conftest import NOW, ORDER_COLUMNS, Shop, cart, iso, texting, write_csv

H = timedelta(hours=1)
PHONE_COLUMNS = [*ORDER_COLUMNS, "phone"]


def _order(order_id: str, phone: str, *, email: str = "", customer_id: str = "", placed: timedelta,
           delivered: str = "yes") -> dict[str, str]:
    """An order row with a phone number, placed ``placed`` before the run's now."""
    return {"order_id": order_id, "email": email, "customer_id": customer_id, "cart_id": "", "total": "25.00",
            "currency": "EUR", "status": "paid", "created_at": iso(NOW - placed), "delivered": delivered,
            "phone": phone}


def _decisions(shop: Shop, *orders: dict[str, str], workers: str = "1", exit_code: int = 0
               ) -> dict[str, dict[str, object]]:
    """Each cart's decision in a dry-run (``run --json``) over the shop's carts and ``orders``."""
    shop.write()
    write_csv(shop.folder / "orders.csv", orders, PHONE_COLUMNS)
    shop.write = lambda: shop.config_path  # type: ignore[method-assign]  # keep these orders
    result = shop.cli("run", "--json", "--workers", workers)
    assert result.exit_code == exit_code, result.output
    return {row["cart_id"]: row for row in result.json["decisions"]}


@pytest.mark.parametrize("workers", ["1", "2"])
def test_a_cart_without_an_address_whose_number_ordered_after_it_is_skipped_as_ordered(
        shop: Shop, workers: str) -> None:
    """The number written as the shop's country writes it in the checkout, in E.164 with spaces
    in the order: one number. With two workers the run's shared orders index answers."""
    texting(shop).add(cart("texted", email="", phone="070-123 45 67", sms_consent="yes", idle=2 * H),
                     cart("other", email="", phone="070-123 45 99", sms_consent="yes", idle=2 * H))
    found = _decisions(shop, _order("o1", "+46 70 123 45 67", email="ann@example.com", placed=H), workers=workers)
    assert (found["texted"]["action"], found["texted"]["reason"]) == ("skip", "ordered"), found["texted"]
    assert (found["other"]["action"], found["other"]["channel"]) == ("send", "sms"), found["other"]


def test_an_undelivered_earlier_order_of_the_number_holds_back_its_cart_as_pending(shop: Shop) -> None:
    texting(shop).add(cart("texted", email="", phone="+46701234567", sms_consent="yes", idle=2 * H))
    found = _decisions(shop, _order("o1", "tel:+46701234567", placed=48 * H, delivered="no"))["texted"]
    assert (found["action"], found["reason"]) == ("skip", "pending_order"), found


def test_a_number_the_orders_give_to_two_customers_matches_no_cart(shop: Shop) -> None:
    """The shop's own number, typed by two buyers whose checkout required one: the customer who
    gave it alone is reminded, not skipped for a stranger's order."""
    texting(shop).add(cart("texted", email="", phone="070-123 45 67", sms_consent="yes", idle=2 * H))
    found = _decisions(shop, _order("o1", "+46701234567", email="ann@example.com", placed=H),
                       _order("o2", "+46701234567", email="bob@example.com", placed=H))["texted"]
    assert (found["action"], found["reason"], found["channel"]) == ("send", "due", "sms"), found


def test_one_customers_orders_under_one_number_still_match_its_cart(shop: Shop) -> None:
    """Two orders of one address (and one without any) under the number: one customer, ordered."""
    texting(shop).add(cart("texted", email="", phone="070-123 45 67", sms_consent="yes", idle=2 * H))
    found = _decisions(shop, _order("o1", "+46701234567", email="ann@example.com", placed=H),
                       _order("o2", "+46701234567", email="Ann@Example.com", placed=30 * H),
                       _order("o3", "+46701234567", placed=20 * H))["texted"]
    assert (found["action"], found["reason"]) == ("skip", "ordered"), found


def test_a_cart_with_an_address_is_not_matched_by_a_number_beside_it(shop: Shop) -> None:
    """Another address's order under the same number is not this customer's purchase."""
    texting(shop).add(cart("mailed", email="cid@example.com", phone="070-123 45 67", sms_consent="yes", idle=2 * H))
    found = _decisions(shop, _order("o1", "+46701234567", email="ann@example.com", placed=H))["mailed"]
    assert (found["action"], found["reason"]) == ("send", "due"), found


def test_an_order_cell_that_is_no_valid_number_matches_nothing(shop: Shop) -> None:
    """``N/A``, ``0000000000``: a checkout's stand-in for no number is no key."""
    texting(shop).add(cart("texted", email="", phone="070-123 45 67", sms_consent="yes", idle=2 * H))
    found = _decisions(shop, _order("o1", "0000000000", email="ann@example.com", placed=H),
                       _order("o2", "N/A", email="bob@example.com", placed=H))["texted"]
    assert (found["action"], found["reason"]) == ("send", "due"), found


def test_an_unreadable_order_row_under_the_number_holds_its_cart_back(shop: Shop) -> None:
    """It may be the order of the very cart a text would be about: the cart waits."""
    texting(shop).add(cart("texted", email="", phone="070-123 45 67", sms_consent="yes", idle=2 * H))
    unreadable = {**_order("o1", "+46701234567", placed=H), "created_at": "yesterday"}
    found = _decisions(shop, unreadable, exit_code=1)["texted"]  # exit 1: the row is reported
    assert (found["action"], found["reason"]) == ("defer", "unreadable_order"), found


#: The orders index of the version before phone numbers (0.2.0): no ``phone`` column, rows of 12 values.
_FORMER_SCHEMA = (
    "CREATE TABLE orders(id TEXT PRIMARY KEY, line INTEGER NOT NULL, live INTEGER NOT NULL, email TEXT NOT NULL,"
    " customer_id TEXT NOT NULL, cart_id TEXT NOT NULL, row BLOB NOT NULL) WITHOUT ROWID;"
    "CREATE TABLE problems(location TEXT NOT NULL, reason TEXT NOT NULL);"
)


def test_a_shared_orders_index_built_by_the_former_version_is_read_again_from_the_file(tmp_path: Path) -> None:
    """A worker started from a newer install than its run's indexer (an upgrade during a run)
    meets an index without phone numbers: it indexes the orders file itself, and finds the
    number's order, instead of failing on rows of another shape."""
    from cartrescue.model import Cart, Customer
    from cartrescue.sources.csv import CsvSource

    carts = write_csv(tmp_path / "carts.csv", [], ["cart_id", "email", "phone", "created_at"])
    orders = write_csv(tmp_path / "orders.csv", [_order("o1", "+46 70 123 45 67", placed=H)], PHONE_COLUMNS)
    former = tmp_path / "orders.index"
    db = sqlite3.connect(former)
    db.executescript(_FORMER_SCHEMA)
    row = ("o1", 2, 1, iso(NOW - H), None, None, None, "25.00", "EUR", "paid", 1, None)
    db.execute("INSERT INTO orders VALUES (?, ?, ?, '', '', '', ?)", (*row[:3], marshal.dumps(row)))
    db.commit()
    db.close()
    moment = NOW - 2 * H
    texted = Cart("texted", "csv", Customer(None, phone="070-123 45 67"), "EUR", (), 0, moment, moment)  # type: ignore[arg-type]
    with CsvSource(carts, orders, shared_orders=former, region="SE") as source:
        found = list(source.orders_for([texted]))
    assert [(order.id, order.phone) for order in found] == [("o1", "+46701234567")]
