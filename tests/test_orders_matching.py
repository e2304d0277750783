"""The CSV orders index answers every cart exactly as the former one did, whatever it keeps on
disk (stand-ins for blank keys, each row packed whole), and nothing it keeps in place of a
missing value ever reaches an order or matches a cart.

The former index (NULL columns, IN lists) is kept here as the reference, fed the very rows the
reader gives the index, from an export with every kind of row the reader has."""

from __future__ import annotations

import csv
import io
import sqlite3
from collections.abc import Iterator, Sequence
from datetime import datetime, timezone
from decimal import Decimal
from pathlib import Path

import pytest

from cartrescue.model import UNREADABLE, Cart, Customer, Order
from cartrescue.sources.csv import CsvSource
from cartrescue.sources.order_index import OrderIndex, Row

HEADER = ["order_id", "email", "customer_id", "cart_id", "total", "currency", "status", "created_at", "delivered",
          "cancelled_at", "refunded"]
AT = "2026-11-01T08:00:00Z"
NUL = "\x00"


def _order(order_id: str, email: str = "", customer_id: str = "", cart_id: str = "", *, total: str = "10.00",
           currency: str = "EUR", status: str = "paid", created: str = AT, delivered: str = "yes",
           cancelled: str = "", refunded: str = "") -> list[str]:
    return [order_id, email, customer_id, cart_id, total, currency, status, created, delivered, cancelled, refunded]


#: Every kind of row the reader has: blanks where the index once kept NULL, values that look
#: like its stand-ins, ids seen twice, rows it skips or cannot read, keys that need escaping.
ORDERS = [
    _order("o1", "ann@example.com", "7001", "c1"),
    _order("o2", "", "", "c2", currency="", status="", delivered="", refunded=""),  # by cart id alone, blanks
    _order("o3", "Mixed.Case@Example.COM", "-1", "", delivered="no", refunded="2.50"),
    _order("o1", "someone.else@example.com", "9999", "c9"),  # a later row of o1: ignored
    _order("o5", "ann@example.com", "7001", "c1", cancelled=AT),  # cancelled: only its id counts
    _order("o6", "ann@example.com", "", "", status="refunded"),
    _order("o7", "ann@example.com", "", "", total="-5.00"),  # a refund, not a purchase
    _order("o8", "bob@example.com", "7002", "c3", created="not a date"),  # unreadable, its ids kept
    _order("", "carl@example.com", "7003", "c4"),  # no order id: unreadable
    _order("o10", "dora@example.com", "7004", "c5") + ["one cell too many"],  # slid cells: its address alone
    _order("o11", "erik@example.com", "7005", "c6")[:5],  # cut short: its ids
    _order("o8", "bob@example.com", "7002", "c3"),  # a later, readable row of unreadable o8: ignored
    _order("o13", 'quote"d@example.com', 'cust"7', 'cart"7'),  # keys a JSON list must escape
    _order("o14", "back\\slash@example.com", "cust\\8", "cart\\8"),
    _order("o15", "tab\there@example.com", "cust\x01", "cart\x02"),
    _order("o16", f"nul{NUL}@example.com", f"cust{NUL}9", f"cart{NUL}9"),
    _order("o17", "nul@example.com", "cust", "cart"),  # what a key cut at its NUL would find
    _order("o18", "jöns.åkesson@exämple.se", "ü-10", "🛒10"),
    _order("o19", "", "007", ""),
    _order("o20", "", "7", "", status=""),  # a blank status of a live order stays ""
    _order("o21", "ann@example.com", "", "", created="2026-10-01"),  # a date alone
    _order("o22", "ann@example.com", "7001", "c2", refunded="10.00", delivered="no"),
    _order("o23", "", "", "", total=""),  # no key at all: found by nothing
    _order("o24", "fay@example.com", "7006", "c7", delivered="pending"),
    _order("o25", "", "7002", "c1"),  # another cart's own order, by customer of a third
]
#: A quote left open on a row (line 27) takes the next rows in: all of them unreadable, each of the line its row
#: starts on (28 to 33).
OPEN_QUOTE = ('q1,"open@example.com,7010,,1.00,EUR,paid,2026-11-01T08:00:00Z,yes,,\n'
              "q2,zed@example.com,7011,,1.00,EUR,paid,2026-11-01T08:00:00Z,yes,,\n"
              "q3,alpha@example.com,7012,c8,1.00,EUR,paid,2026-11-01T08:00:00Z,yes,,\n"
              ",beta@example.com,7011,,1.00,EUR,paid,2026-11-01T08:00:00Z,yes,,\n"
              "qa,tie@example.com,,ct1,1.00,EUR,paid,2026-11-01T08:00:00Z,yes,,\n"
              "qb,tie@example.com,ctc,,1.00,EUR,paid,2026-11-01T08:00:00Z,yes,,\n"
              'q5,alpha@example.com,7010,,1.00,EUR,paid,2026-11-01T08:00:00Z,yes,,"\n')
TAIL = [_order("o30", "alpha@example.com", "7011", "c8"), _order("q2", "zed@example.com", "7011", "")]


def _cart(cart_id: str, email: str | None = None, customer_id: str | None = None) -> Cart:
    moment = datetime(2026, 11, 20, 8, tzinfo=timezone.utc)
    return Cart(cart_id, "csv", Customer(email, customer_id), "EUR", (), Decimal("10.00"), moment, moment)


CARTS = [
    _cart("c1", "ann@example.com", "7001"),
    _cart("c2"),
    _cart("c-none", "mixed.case@example.com", "-1"),
    _cart("c3", "bob@example.com"),
    _cart("x4", "carl@example.com"),
    _cart("x5", "dora@example.com", "7004"),
    _cart("c6", None, "7005"),
    _cart("cart\"7", 'quote"d@example.com', 'cust"7'),
    _cart("cart\\8", None, "cust\\8"),
    _cart("x15", "tab\there@example.com", "cust\x01"),
    _cart("cart\x02"),
    _cart(f"cart{NUL}9", f"nul{NUL}@example.com", f"cust{NUL}9"),
    _cart("y16", None, f"cust{NUL}9"),
    _cart("🛒10", "jöns.åkesson@exämple.se", "ü-10"),
    _cart("y19", None, "7"),
    _cart("y20", None, "007"),
    _cart("c7", "fay@example.com", "7006"),
    _cart("c8", "alpha@example.com", "7011"),
    _cart("y21", "zed@example.com", "7010"),
    _cart("y22", "beta@example.com", "7002"),
    # One email's orders (lines 31 and 32), found first by another cart's id and by the email: in
    # the order the former lookups gave them, not as found by the customer id.
    _cart("t1", "tie@example.com"),
    _cart("ct1"),
    _cart("t3", None, "ctc"),
    _cart("", None, None),  # blank keys, as the index keeps for a row without them
    _cart("nobody", "nobody@example.com", "0"),
]


class _FormerIndex:
    """The index as it was (NULL for a missing value, every column read, IN lists): the reference."""

    def __init__(self, rows: Sequence[Row]) -> None:
        self._db = sqlite3.connect(":memory:")
        self._db.execute(
            "CREATE TABLE orders(id TEXT PRIMARY KEY, line INTEGER NOT NULL, live INTEGER NOT NULL, created_at TEXT,"
            " email TEXT, customer_id TEXT, cart_id TEXT, total TEXT, currency TEXT, status TEXT, delivered INTEGER,"
            " refunded TEXT) WITHOUT ROWID")
        # It knew no phone number (a row's last value): the carts here have none to match.
        self._db.executemany("INSERT OR IGNORE INTO orders VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                             [row[:12] for row in rows])
        self._db.executescript(
            "CREATE INDEX orders_cart ON orders(cart_id) WHERE live >= 1 AND cart_id IS NOT NULL;"
            "CREATE INDEX orders_email ON orders(email) WHERE live >= 1 AND email IS NOT NULL;"
            "CREATE INDEX orders_customer ON orders(customer_id) WHERE live >= 1 AND customer_id IS NOT NULL;")

    def _rows(self, column: str, keys: set[str]) -> Iterator[tuple[object, ...]]:
        values = list(keys)
        for start in range(0, len(values), 500):
            chunk = values[start:start + 500]
            yield from self._db.execute(
                "SELECT id, line, created_at, email, customer_id, cart_id, total, currency, status, delivered, refunded"
                f" FROM orders WHERE live >= 1 AND {column} IS NOT NULL AND {column} IN ({','.join('?' * len(chunk))})",
                chunk)

    def matching(self, carts: Sequence[Cart]) -> Iterator[Order]:
        cart_ids = {cart.id for cart in carts}
        emails = {cart.customer.email for cart in carts if cart.customer.email}
        customers = {cart.customer.id for cart in carts if cart.customer.id}
        found: dict[object, tuple[object, ...]] = {}
        for column, keys in (("cart_id", cart_ids), ("email", emails), ("customer_id", customers)):
            for row in self._rows(column, keys):
                found[row[0]] = row
        by_cart: dict[object, list[Order]] = {}
        by_email: dict[object, list[Order]] = {}
        by_customer: dict[object, list[Order]] = {}
        for row in sorted(found.values(), key=lambda row: row[1]):  # type: ignore[arg-type,return-value]
            order = _former_order(row)
            if order.cart_id in cart_ids:
                by_cart.setdefault(order.cart_id, []).append(order)
            if order.email in emails:
                by_email.setdefault(order.email, []).append(order)
            if order.customer_id in customers:
                by_customer.setdefault(order.customer_id, []).append(order)
        seen: set[str] = set()
        for cart in carts:
            for bucket in (by_cart.get(cart.id, ()), by_email.get(cart.customer.email or "", ()),
                           by_customer.get(cart.customer.id or "", ())):
                for order in bucket:
                    if order.id not in seen:
                        seen.add(order.id)
                        yield order


def _former_order(row: tuple[object, ...]) -> Order:
    order_id, line, created, email, customer_id, cart_id, total, currency, status, delivered, refunded = row
    if status == UNREADABLE:
        return Order.unreadable_row(order_id, f"line {line} of the orders export", email, customer_id,  # type: ignore[arg-type]
                                    cart_id)
    return Order(order_id, datetime.fromisoformat(created), email, customer_id, cart_id,  # type: ignore[arg-type]
                 Decimal(total), currency, status, None if delivered is None else bool(delivered),  # type: ignore[arg-type]
                 refunded=Decimal("0") if refunded is None else Decimal(refunded))  # type: ignore[arg-type]


class _Recording(OrderIndex):
    """The index the reader fills, keeping a copy of every row it is given."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[Row] = []

    def add(self, rows: Sequence[Row]) -> None:
        self.rows.extend(rows)
        super().add(rows)


def _export(folder: Path) -> Path:
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(HEADER)
    writer.writerows(ORDERS)
    text.write(OPEN_QUOTE)
    writer.writerows(TAIL)
    path = folder / "orders.csv"
    path.write_text(text.getvalue(), encoding="utf-8")
    return path


@pytest.fixture(params=["json_each", "IN lists"])
def indexes(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[tuple[OrderIndex, _FormerIndex, list[Row]]]:
    """The index as the reader fills it, reading its keys as one JSON list or (an SQLite without
    json_each) in IN lists; the former index, fed the same rows; and those rows."""
    carts = tmp_path / "carts.csv"
    carts.write_text("cart_id,email,created_at,updated_at\n", encoding="utf-8")
    source = CsvSource(carts, _export(tmp_path))
    with source:
        index = source._index_orders(_Recording())
        try:
            assert isinstance(index, _Recording)
            index._json = request.param == "json_each"
            yield index, _FormerIndex(index.rows), index.rows
        finally:
            index.close()


def test_the_index_answers_every_cart_as_the_former_null_storing_one(
        indexes: tuple[OrderIndex, _FormerIndex, list[Row]]) -> None:
    index, former, rows = indexes
    lines = [row[1] for row in rows]
    assert len(set(lines)) == len(lines)  # each row of its own line, those the open quote took in too
    for cart in CARTS:
        assert list(index.matching([cart])) == list(former.matching([cart])), cart.id
    for chunk in (CARTS, CARTS[::-1], CARTS[1::2], CARTS[::3]):
        expected = list(former.matching(chunk))
        assert list(index.matching(chunk)) == expected
    found = list(index.matching(CARTS))
    # Not a vacuous comparison: orders with every kind of missing value, and those the open quote took, came back.
    assert {"o1", "o2", "o3", "o8", "o13", "o14", "o15", "o16", "o18", "o19", "o20", "o21", "o22", "o24",
            "o25", "q2", "q3", "q5", "qa", "qb", "o30"} <= {order.id for order in found}
    assert any(order.email is None for order in found) and any(order.cart_id is None for order in found)
    assert any(order.delivered is None for order in found) and any(order.currency is None for order in found)
    assert {order.id: order.unreadable for order in found if order.unreadable} == {
        "o8": "line 9 of the orders export", "(no order_id, line 10)": "line 10 of the orders export",
        "o10": "line 11 of the orders export", "o11": "line 12 of the orders export",
        # the rows the open quote took in, each where it starts
        "q2": "line 28 of the orders export", "q3": "line 29 of the orders export",
        "(no order_id, line 30)": "line 30 of the orders export", "qa": "line 31 of the orders export",
        "qb": "line 32 of the orders export", "q5": "line 33 of the orders export"}


def test_no_stand_in_of_a_missing_value_leaks_out_of_a_lookup(
        indexes: tuple[OrderIndex, _FormerIndex, list[Row]]) -> None:
    index, _former, _rows = indexes
    # A cart without an id, email or customer id finds none of the orders kept without one.
    assert list(index.matching([_cart("", None, None)])) == []
    assert list(index.matching([_cart("", "", "")])) == []
    by_id = {order.id: order for order in index.matching(CARTS)}
    for order in by_id.values():
        assert "" not in (order.email, order.customer_id, order.cart_id, order.currency), order
        assert order.delivered in (True, False, None) and order.refunded >= 0, order
    blank = by_id["o2"]
    assert (blank.email, blank.customer_id, blank.currency, blank.delivered, blank.refunded, blank.status) == (
        None, None, None, None, Decimal("0"), "")
    assert (by_id["o3"].customer_id, by_id["o3"].cart_id, by_id["o3"].delivered) == ("-1", None, False)
    assert by_id["o20"].status == ""
    # A key with a NUL is found whole, never as the text before it.
    assert [order.id for order in index.matching([_cart("y16", None, f"cust{NUL}9")])] == ["o16"]
    assert [order.id for order in index.matching([_cart(f"cart{NUL}9")])] == ["o16"]



def test_an_address_and_a_customer_id_of_the_same_text_are_two_keys() -> None:
    """The chunk's order book keeps orders by e-mail and by customer id apart: a customer id
    that is written like another customer's address matches only carts of that customer id,
    and each list keeps the orders in the order given (the first found converts a cart)."""
    from cartrescue.decide.orders import OrderBook

    before = datetime(2026, 11, 1, 8, tzinfo=timezone.utc)
    after = datetime(2026, 11, 3, 8, tzinfo=timezone.utc)
    by_id = Order("o1", before, customer_id="ann@example.com")
    first, second = Order("o2", after, email="ann@example.com"), Order("o3", after, email="ann@example.com")
    book = OrderBook([by_id, first, second])
    at = datetime(2026, 11, 2, 8, tzinfo=timezone.utc)
    ann = Cart("c1", "csv", Customer("ann@example.com"), "EUR", (), Decimal("10"), at, at)  # type: ignore[arg-type]
    same_id = Cart("c2", "csv", Customer(None, id="ann@example.com"), "EUR", (), Decimal("10"), at, at)  # type: ignore[arg-type]
    assert (book.facts(ann).ordered, book.facts(ann).previous_orders) == (first, 0)
    assert (book.facts(same_id).ordered, book.facts(same_id).previous_orders) == (None, 1)
