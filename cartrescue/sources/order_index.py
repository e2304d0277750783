"""Orders of a CSV export, indexed on disk: which orders concern this chunk of carts?

Owns the scratch index behind :meth:`CsvSource.orders_for <cartrescue.sources.csv.CsvSource.orders_for>`.
An orders export grows with the shop (some 800,000 orders next to a million carts); held in
dicts of :class:`~cartrescue.model.Order` it cost more memory than the rest of a run together.
So it lives in a scratch SQLite file with a small page cache, deleted on close, like
:mod:`cartrescue.decide.newest`: a million carts cost the same memory as a thousand.

It keeps the first row of every order id (later duplicates are ignored, as before), remembers
the line of that row so the reader can tell a first occurrence from a duplicate, and answers in
exactly the order the former in-memory index did (see :meth:`OrderIndex.matching`). It must not
parse CSV (the source does) nor decide anything about the orders.

The workers of one run share one index (:mod:`cartrescue.sources.shared`): the run
builds it into a file of its own (:meth:`OrderIndex.create`), with the problems its rows had,
and each worker opens that file read-only (:meth:`OrderIndex.open`) instead of indexing the
whole orders file again.
"""

from __future__ import annotations

import marshal
import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime
from decimal import Decimal
from itertools import chain
from operator import itemgetter
from pathlib import Path

from cartrescue.decide.orders import phone_key
from cartrescue.model import UNREADABLE, Cart, Order, RowProblem, quick_new
from cartrescue.scratch import ManyRows, ScratchDb, json_keys, reads_json
from cartrescue.sources.shared import create_index, keep_problem

#: One indexed row: id, line, live (0: an ignored status, kept only so that its id counts as
#: seen; 2: a row found but not readable, kept with the ids it gives, status ``unreadable``:
#: its customer's carts wait), created_at (ISO 8601, UTC), email, customer id, cart id, total,
#: currency, status, delivered (1, 0 or None), refunded (what the export says was refunded of it;
#: None: nothing, or no such column), phone (E.164, as :attr:`Order.phone <cartrescue.model.Order.phone>`).
Row = tuple[str, int, int, "str | None", "str | None", "str | None", "str | None", "str | None", "str | None",
            "str | None", "int | None", "str | None", "str | None"]

_ZERO = Decimal("0")
_PARAMETERS = 500  # per IN list: far below SQLite's limit on variables
_LINE = itemgetter(1)
#: The lookups, one per key column, in the order their finds count (see :meth:`OrderIndex.matching`),
#: with where a :data:`Row` has that key.
_LOOKUPS = (("cart_id", 6), ("email", 4), ("customer_id", 5), ("phone", 12))
#: A lookup's keys travel as one JSON list, read by SQLite's json_each: one statement per column,
#: prepared once, where an IN list of a chunk's keys was prepared again for each chunk (its
#: length varies), bound key by key and copied into a temporary index before the first row.
_JOINED = {column: f"SELECT row FROM json_each(?) AS wanted CROSS JOIN orders"
                   f" WHERE {column} = wanted.value AND live >= 1 AND {column} <> ''" for column, _at in _LOOKUPS}
#: Where a row has no email, customer id or cart id, its key column holds "", not NULL: the
#: sqlite3 module binds a str directly, but a None (as a bytes) only after an adapter lookup that
#: fails (an AttributeError made and dropped: some 3,300 instructions, as much as the rest of the
#: row's binding). No real key is blank (the reader writes None for a blank cell), and the lookups
#: leave "" out (``<> ''``, as the partial indexes do), so none matches a stand-in.
_NO_KEY = ""

#: Each row is kept whole in ``row``, its tuple as :func:`marshal.dumps` wrote it (None and all),
#: bound as a bytearray (bound directly, see :data:`_NO_KEY`): the sqlite3 module reads a column
#: at some 1,000 instructions (it lets go of the GIL around each), so a lookup reads one column,
#: not eleven, and gets back exactly the row that was added, no stand-in to map back. The key
#: columns beside it serve the lookups and :meth:`OrderIndex.first_line` alone. The file is only
#: read by this process or its run's workers (one interpreter, one marshal format), and lives in
#: a private folder.
_SCHEMA = (
    "CREATE TABLE orders(id TEXT PRIMARY KEY, line INTEGER NOT NULL, live INTEGER NOT NULL, email TEXT NOT NULL,"
    " customer_id TEXT NOT NULL, cart_id TEXT NOT NULL, row BLOB NOT NULL, phone TEXT NOT NULL)"
    " WITHOUT ROWID;"
)

#: A batch of rows, 100 a statement (:class:`~cartrescue.scratch.ManyRows`): ``executemany``
#: steps the statement once a row. An id seen before keeps its first row, within a statement too.
_INSERT = ManyRows("INSERT OR IGNORE INTO orders VALUES {values}", "(?, ?, ?, ?, ?, ?, ?, ?)")


class OrderIndex:
    """Orders by cart id, email, customer id and phone number, in a scratch SQLite file."""

    def __init__(self, connection: sqlite3.Connection | None = None, path: Path | None = None,
                 empty: bool = True) -> None:
        """A new private scratch index, deleted by :meth:`close`; the classmethods make or open one
        in a given file (``connection`` to it, at ``path``), which :meth:`close` keeps."""
        close = None
        if connection is None:
            scratch = ScratchDb("orders", _SCHEMA)
            connection, path, close = scratch.connection, scratch.path, scratch.close
        self.path = path  # the file it lives in
        self._db = connection
        self._json = reads_json(connection)
        self._close = close or connection.close
        self._empty = empty

    @classmethod
    def create(cls, path: Path) -> OrderIndex:
        """A new index in ``path``, to be shared (:mod:`cartrescue.sources.shared`); :meth:`close`
        keeps the file."""
        return cls(create_index(path, _SCHEMA), path)

    @classmethod
    def open(cls, connection: sqlite3.Connection, path: Path) -> OrderIndex:
        """A finished shared index (:func:`cartrescue.sources.shared.open_index`, given :func:`is_one`)."""
        empty = connection.execute("SELECT NOT EXISTS (SELECT 1 FROM orders)").fetchone()[0]
        return cls(connection, path, empty=bool(empty))

    @staticmethod
    def is_one(connection: sqlite3.Connection) -> bool:
        """Is the file behind ``connection`` an orders index of this version? (raises
        ``sqlite3.Error`` if not). One an older version built (an upgrade installed while its run
        was going, whose workers start from the new one) has no ``phone`` and rows of another
        shape: its worker indexes the orders file itself, as where the run could not build one."""
        connection.execute("SELECT phone FROM orders LIMIT 1").fetchall()
        return True

    def add_problem(self, problem: RowProblem) -> None:
        """Keep a problem of the orders file for the reader of a shared index to report."""
        keep_problem(self._db, problem)

    def add(self, rows: Sequence[Row]) -> None:
        """Index a batch of rows in file order; an id seen before keeps its first row."""
        if rows:
            self._empty = False
            dumps = marshal.dumps
            _INSERT.run(self._db, [
                (row[0], row[1], row[2], row[4] or _NO_KEY, row[5] or _NO_KEY, row[6] or _NO_KEY,
                 bytearray(dumps(row)), row[12] or _NO_KEY)
                for row in rows])

    def first_line(self, order_id: str) -> int | None:
        """The line of the first row with ``order_id`` (None: not seen)."""
        found = self._db.execute("SELECT line FROM orders WHERE id = ?", (order_id,)).fetchone()
        return None if found is None else int(found[0])

    def finish(self) -> None:
        """Build the lookup indexes once every row is in (faster than maintaining them)."""
        self._db.executescript(
            "CREATE INDEX orders_cart ON orders(cart_id) WHERE live >= 1 AND cart_id <> '';"
            "CREATE INDEX orders_email ON orders(email) WHERE live >= 1 AND email <> '';"
            "CREATE INDEX orders_customer ON orders(customer_id) WHERE live >= 1 AND customer_id <> '';"
            "CREATE INDEX orders_phone ON orders(phone) WHERE live >= 1 AND phone <> '';"
        )
        self._db.commit()

    def _rows(self, column: str, keys: set[str]) -> Iterable[bytes]:
        """The packed rows (:data:`_SCHEMA`) of the live orders whose ``column`` is in ``keys``,
        as one JSON list (:data:`_JOINED`), or in IN lists where SQLite has no json_each or a key
        holds a NUL (json_each ends a string at ``\\u0000``)."""
        if not keys:
            return ()
        wanted = json_keys(keys) if self._json else None
        if wanted is not None:
            return chain.from_iterable(self._db.execute(_JOINED[column], (wanted,)))
        return chain.from_iterable(self._listed(column, list(keys)))

    def _listed(self, column: str, values: list[str]) -> Iterator[tuple[bytes]]:
        for start in range(0, len(values), _PARAMETERS):
            chunk = values[start:start + _PARAMETERS]
            yield from self._db.execute(
                f"SELECT row FROM orders WHERE live >= 1 AND {column} <> ''"
                f" AND {column} IN ({','.join('?' * len(chunk))})", chunk)

    def matching(self, carts: Sequence[Cart], region: str | None = None) -> Iterator[Order]:
        """The orders of ``carts`` by cart id, email, customer id or (a cart without an address)
        phone number read in ``region`` (:func:`~cartrescue.decide.orders.phone_key`), each once.

        Order matters to callers (the first order of a cart's own is "the" order that converted
        it), so this yields exactly what the former in-memory index yielded: cart by cart, that
        cart's orders by cart id, then by email, then by customer id, then by phone number, each
        bucket in file order.
        """
        if self._empty:
            return
        cart_ids = {cart.id for cart in carts}
        emails = {cart.customer.email for cart in carts if cart.customer.email}
        customers = {cart.customer.id for cart in carts if cart.customer.id}
        numbers = {cart.key: number for cart in carts if (number := phone_key(cart, region))}
        # Each row once (one id: one packed row), with the first lookup that found it.
        first: dict[bytes, int] = {}
        for lookup, keys in ((3, set(numbers.values())), (2, customers), (1, emails), (0, cart_ids)):  # earliest last
            first.update(dict.fromkeys(self._rows(_LOOKUPS[lookup][0], keys), lookup))
        rows: list[Row] = sorted(map(marshal.loads, first), key=_LINE)
        if len(set(map(_LINE, rows))) < len(rows):  # rows of one line: the orders an open quote took in
            rows = _as_listed(first)
        by_cart: dict[str, list[Order]] = {}
        by_email: dict[str, list[Order]] = {}
        by_customer: dict[str, list[Order]] = {}
        by_phone: dict[str, list[Order]] = {}
        for row in rows:
            order = _order(row)
            if order.cart_id in cart_ids:
                by_cart.setdefault(order.cart_id, []).append(order)  # type: ignore[arg-type]
            if order.email in emails:
                by_email.setdefault(order.email, []).append(order)  # type: ignore[arg-type]
            if order.customer_id in customers:
                by_customer.setdefault(order.customer_id, []).append(order)  # type: ignore[arg-type]
            if order.phone and numbers:
                by_phone.setdefault(order.phone, []).append(order)
        seen: set[str] = set()
        for cart in carts:
            for bucket in (
                by_cart.get(cart.id, ()),
                by_email.get(cart.customer.email or "", ()),
                by_customer.get(cart.customer.id or "", ()),
                by_phone.get(numbers.get(cart.key, ""), ()) if numbers else (),
            ):
                for order in bucket:
                    if order.id not in seen:
                        seen.add(order.id)
                        yield order

    def close(self) -> None:
        self._close()


def _as_listed(first: dict[bytes, int]) -> list[Row]:
    """The rows in the order the former IN-list lookups gave them, where some share a line: by
    line, then by the lookup that found each first, its key there, its id (an IN list was read
    in the order of its keys, then of the index: its keys' ids; SQLite orders text as UTF-8
    bytes, which is Python's order of str)."""
    keyed = []
    for blob, lookup in first.items():
        row = marshal.loads(blob)
        keyed.append(((row[1], lookup, row[_LOOKUPS[lookup][1]], row[0]), row))
    keyed.sort(key=itemgetter(0))
    return [row for _key, row in keyed]


#: Builds an :class:`Order` as ``Order(...)`` does, for fewer instructions (:func:`~cartrescue.model.quick_new`):
#: one per order row a chunk of carts matches.
_new_order = quick_new(Order)


def _order(row: Row) -> Order:
    order_id, line, _live, created, email, customer_id, cart_id, total, currency, status, delivered, refunded, phone = row
    if status == UNREADABLE:
        return Order.unreadable_row(order_id, f"line {line} of the orders export", email, customer_id,  # type: ignore[arg-type]
                                    cart_id, phone)
    return _new_order(
        order_id,  # type: ignore[arg-type]
        datetime.fromisoformat(created),  # type: ignore[arg-type]
        email,  # type: ignore[arg-type]
        customer_id,  # type: ignore[arg-type]
        cart_id,  # type: ignore[arg-type]
        Decimal(total),  # type: ignore[arg-type]
        currency,  # type: ignore[arg-type]
        status,  # type: ignore[arg-type]
        None if delivered is None else bool(delivered),
        refunded=_ZERO if refunded is None else Decimal(refunded),  # type: ignore[arg-type]
        phone=phone,
    )
