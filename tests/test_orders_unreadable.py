"""An order row the run cannot read holds back its customer's carts, and no one else's.

The row may be the order of the very cart a reminder would be about: a customer who bought
would be reminded to buy. So the ids the row does give (its address, customer id, cart id; from
a row whose cells slid, only an address) keep that customer's carts back (``defer``,
``unreadable_order``), nothing is claimed, and once the export is fixed the next run decides
as usual. Every other customer is reminded as before: one bad row costs its own customer's
reminder, never the run.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import timedelta

import pytest
from conftest import NOW, REPO, Shop, cart, iso, order

from cartrescue.ledger import Ledger


def _sent(shop: Shop) -> list[str]:
    ledger = Ledger(f"sqlite:///{shop.folder / 'ledger.db'}")
    try:
        return sorted(message["cart_id"] for message in ledger.messages() if message["status"] == "sent")
    finally:
        ledger.close()


def _shop(shop: Shop) -> Shop:
    return shop.add(cart("liam", email="liam@example.com"), cart("ethan", email="ethan@example.com", customer_id="77"),
                    cart("olivia", email="olivia@example.com"))


def test_an_order_row_with_an_unreadable_date_holds_back_its_customers_cart_only(shop: Shop) -> None:
    _shop(shop).add_orders(dict(order("1050", email="liam@example.com", created=NOW), created_at="02/12/2026 09:00"))
    result = shop.cli("run", "--outbox", str(shop.folder / "out"), "--json")
    assert result.exit_code == 1, result.output  # the row is reported
    decided = {row["cart_id"]: row for row in result.json["decisions"]}
    assert (decided["liam"]["action"], decided["liam"]["reason"]) == ("defer", "unreadable_order")
    assert decided["liam"]["detail"] == "order 1050 (line 2 of the orders export) could not be read"
    assert any("orders.csv:2: order 1050: created_at" in problem for problem in result.json["problems"])
    assert _sent(shop) == ["ethan", "olivia"]


def test_an_unreadable_order_row_matches_by_customer_id_and_cart_id_too(shop: Shop) -> None:
    _shop(shop).add_orders(dict(order("1051", customer_id="77", created=NOW), total="lots"),
                           dict(order("1052", cart_id="olivia", created=NOW), created_at="yesterday"))
    decided = shop.decisions()
    assert decided["ethan"]["reason"] == "unreadable_order" and decided["olivia"]["reason"] == "unreadable_order"
    assert decided["liam"]["reason"] == "due"


def test_an_order_row_whose_cells_slid_holds_back_the_address_it_holds(shop: Shop) -> None:
    _shop(shop).write()
    orders = shop.folder / "orders.csv"
    # An unquoted comma in a value: one cell too many, every cell after it under the wrong column.
    orders.write_text(orders.read_text(encoding="utf-8") + f"1060,liam@example.com,,,12,50,EUR,paid,{NOW.isoformat()},no\n",
                      encoding="utf-8")
    shop.write = lambda: shop.config_path  # type: ignore[method-assign]  # keep the orders file as written
    result = shop.cli("run", "--outbox", str(shop.folder / "out"), "--json")
    decided = {row["cart_id"]: row for row in result.json["decisions"]}
    assert (decided["liam"]["action"], decided["liam"]["reason"]) == ("defer", "unreadable_order")
    assert any("orders.csv:2: order 1060: 10 cells where the header has 9 columns" in problem
               for problem in result.json["problems"])
    assert _sent(shop) == ["ethan", "olivia"]


def test_an_order_row_without_an_order_id_holds_back_its_customers_cart_only(shop: Shop) -> None:
    _shop(shop).add_orders(order("", email="liam@example.com", created=NOW))
    result = shop.cli("run", "--outbox", str(shop.folder / "out"), "--json")
    assert result.exit_code == 1, result.output
    decided = {row["cart_id"]: row for row in result.json["decisions"]}
    assert (decided["liam"]["action"], decided["liam"]["reason"]) == ("defer", "unreadable_order")
    assert decided["liam"]["detail"] == "order (no order_id, line 2) (line 2 of the orders export) could not be read"
    assert result.json["problems"] == [f"{shop.folder / 'orders.csv'}:2: missing order_id"]
    assert _sent(shop) == ["ethan", "olivia"]


@pytest.mark.slow
def test_workers_hold_back_the_customer_of_an_order_row_without_an_order_id(shop: Shop) -> None:
    """With ``--workers`` the run indexes the orders file once, in a helper, for all of them."""
    _shop(shop).add(*(cart(f"d{n:02d}") for n in range(20)))
    shop.add_orders(order("", email="liam@example.com", created=NOW), order("", customer_id="77", created=NOW))
    shop.write()
    done = subprocess.run([sys.executable, "-m", "cartrescue.cli", "run", "--json", "--workers", "2", "--outbox",
                           str(shop.folder / "out"), "--config", str(shop.config_path), "--now", iso(NOW)],
                          cwd=REPO, capture_output=True, timeout=120, check=False, env=dict(os.environ))
    assert done.returncode == 1, done.stderr.decode()
    decided = {row["cart_id"]: row["reason"] for row in json.loads(done.stdout)["decisions"]}
    assert decided["liam"] == decided["ethan"] == "unreadable_order"
    assert _sent(shop) == sorted(["olivia", *(f"d{n:02d}" for n in range(20))])


def test_once_the_row_is_fixed_the_next_run_sees_the_order(shop: Shop) -> None:
    _shop(shop).add_orders(dict(order("1050", email="liam@example.com", created=NOW), created_at="02/12/2026 09:00"))
    assert shop.cli("run", "--outbox", str(shop.folder / "out")).exit_code == 1
    shop.orders = [order("1050", email="liam@example.com", created=NOW - timedelta(minutes=30))]
    later = shop.cli("run", "--outbox", str(shop.folder / "out"), "--json", now=NOW + timedelta(minutes=10))
    assert later.exit_code == 0, later.output
    liam = next(row for row in later.json["decisions"] if row["cart_id"] == "liam")
    assert (liam["action"], liam["reason"]) == ("skip", "ordered")
    assert _sent(shop) == ["ethan", "olivia"]  # never reminded of the cart he bought


def test_a_readable_order_of_the_cart_still_wins_over_an_unreadable_one(shop: Shop) -> None:
    _shop(shop).add_orders(order("1070", cart_id="liam", created=NOW),
                           dict(order("1071", email="liam@example.com", created=NOW), created_at="soon"))
    assert shop.decisions()["liam"]["reason"] == "ordered"


@pytest.mark.parametrize("command", [["run", "--json"], ["report", "--json"]])
def test_an_orders_file_without_a_column_that_ties_an_order_to_a_cart_stops_the_run(
        shop: Shop, command: list[str]) -> None:
    """Order number, date and total, no address, customer id nor cart id: read, it matched no
    order to anyone, and every buyer was reminded, --strict or not, with no word of it."""
    shop.add(cart("c1", email="ann@example.com"))
    shop.configure(source={"order_columns": {"order_id": "Order Number", "created_at": "Date"}})
    shop.write()
    (shop.folder / "orders.csv").write_text("Order Number,Customer E-mail,Total,Date\n"
                                            "1001,ann@example.com,19.99,2026-11-20T08:30:00Z\n", encoding="utf-8")
    shop.write = lambda: shop.config_path  # type: ignore[method-assign]  # keep this orders file
    result = shop.cli(*command)
    assert result.exit_code == 3 == result.json["error"]["exit_code"], result.output
    assert "none of the columns that tie an order to a cart (email, customer_id, cart_id, phone)" in \
        result.json["error"]["message"]
