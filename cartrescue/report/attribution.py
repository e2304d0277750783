"""Attribution: which orders each reminder stream won back, computed in a scratch SQLite file.

Owns loading the ledger's sent and held-out rows and the source's orders of the period into a
throw-away SQLite file (:class:`cartrescue.scratch.ScratchDb`) and answering, in SQL, the
questions of the report: which order belongs to which row, and the sums per group. A million
messages and a million orders are never Python objects at the same time: rows stream in,
indexes are built once, every question is one query. It must not format or judge anything
(:mod:`cartrescue.report.analysis` does).

The rules (docs/reporting.md):

- A **stream** is one cart's rows in ``cr_message``: the messages sent to it and, for a held-out
  cart, the ``held_out`` rows recorded at the moments its steps would have gone out. A stream
  belongs to the period when its first row does; its group (treated or held out) is the kind of
  its first row (intention to treat: a held-out cart later messaged by another sequence stays in
  the control group, and is counted as "contaminated").
- An **order** goes to at most one row: among the rows before it and at most
  ``report.attribution_window`` earlier, a row of the cart the order names (cart id) first,
  else a row of the same customer id or address, or (a row without an address) phone number,
  one the orders give to two customers left out (:meth:`Attribution._placeholder_numbers`); of
  those the latest. When that row is a sent
  message, the order is **attributed** (recovered revenue); when it is a held-out row, it
  counts for the control group. Either way the stream converted. An order dated without a
  time may have been placed at any moment of its day: it is after the rows of that day, and
  within the window of a row when any of its day is.
- An order's amount is its total net of what the source says was refunded
  (:meth:`cartrescue.model.Order.net`).
- Amounts are in the shop's currency (:class:`cartrescue.currency.Basis`), summed exactly as
  integers of 1/10,000; an amount that cannot be converted is NULL: the order still counts as a
  conversion, its money is left out and reported. Without ``shop.currency`` each order's amount
  stays in its own currency (``ord.unit``), and the sums per currency are asked for apart
  (:meth:`Attribution.revenue_by_unit`): the report never adds different currencies.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

from cartrescue.contacts import email_forms
from cartrescue.currency import Basis
from cartrescue.ledger import REPORTED, Ledger
from cartrescue.scratch import ScratchDb
from cartrescue.sources.base import CartSource, Window
from cartrescue.sources.sql import PHONE_TAIL

UNITS = 10_000  # amounts are integers of 1/10,000 of the shop's currency: exact sums in SQL
BATCH = 5_000
CODE_SEPARATOR = "\x1f"  # between an order's discount codes in ``ord.code``: a control character no shop's code holds
#: What :attr:`OrderLoad.currencies` holds for an amount summed in the source's own base currency
#: (PrestaShop's ``total_paid`` by its ``conversion_rate``, Magento's ``base_grand_total``) while
#: ``shop.currency`` is not set: orders in kronor and euros alike are then in that one currency.
PLATFORM_BASE = "the shop platform's base currency"
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)

#: ``at`` is when the order was placed; ``earliest`` the start of its day for one dated without
#: a time (``at`` is then the day's end, :attr:`cartrescue.model.Order.earliest`), else ``at``.
#: ``rate``: the order's own rate to the shop's currency (:attr:`cartrescue.model.Order.base_rate`,
#: exact decimal text), NULL where the source gave none. ``code``: the discount codes the order
#: used (:attr:`~cartrescue.model.Order.discount_codes`), joined by :data:`CODE_SEPARATOR`; NULL: none.
#: ``unit``: the currency ``amount`` is in (the shop's, the order's own, or :data:`PLATFORM_BASE`),
#: NULL where the order names none: without ``shop.currency`` the amounts of different units are
#: never added together (:meth:`Attribution.revenue_by_unit`). ``phone``: the buyer's number in E.164
#: (:attr:`~cartrescue.model.Order.phone`), read only when a row of the ledger has a number and no
#: address (``msg.phone``, which holds only those: an address is the key where there is one).
ORD_TABLE = """
CREATE TABLE ord(id TEXT PRIMARY KEY, at REAL NOT NULL, earliest REAL NOT NULL, email TEXT, customer_id TEXT,
  cart_id TEXT, amount INTEGER, currency TEXT, code TEXT, rate TEXT, unit TEXT, phone TEXT) WITHOUT ROWID;
"""
SCHEMA = """
CREATE TABLE msg(id INTEGER PRIMARY KEY, cart_key TEXT NOT NULL, cart_id TEXT, email TEXT, customer_id TEXT,
  step INTEGER, channel TEXT, variant TEXT, tier TEXT, sequence TEXT, locale TEXT, held INTEGER NOT NULL,
  at REAL NOT NULL, value INTEGER, phone TEXT);
""" + ORD_TABLE

#: The breakdowns of sent messages and the columns they group by.
DIMENSIONS: dict[str, tuple[str, ...]] = {
    "step": ("sequence", "step"),
    "tier": ("tier",),
    "variant": ("sequence", "step", "variant"),
    "locale": ("locale",),
    "channel": ("channel",),
}


def epoch(moment: datetime) -> float:
    return (moment - _EPOCH).total_seconds()


def from_epoch(seconds: float) -> datetime:
    return _EPOCH + timedelta(seconds=seconds)


def units(amount: Decimal) -> int:
    return int((amount * UNITS).to_integral_value(ROUND_HALF_EVEN))


def money(value: int | None) -> Decimal:
    """Integer units back to a Decimal (exact)."""
    return (Decimal(value or 0) / UNITS).quantize(Decimal("0.0001"))


@dataclass(slots=True)
class Loaded:
    """What went into the scratch file."""

    messages: int = 0
    orders: int = 0
    duplicate_orders: int = 0
    currencies: set[str] = field(default_factory=set)
    #: Whether the source tells the discount codes its orders used (an order without one used none):
    #: :meth:`~cartrescue.sources.base.CartSource.orders_carry_codes`, not whether some order had one.
    codes_known: bool = False
    #: Whether the orders carry their phone numbers (:attr:`OrderLoad.phones`): else no scan by number.
    phones: bool = False


class Attribution:
    """The scratch database of one report: load, attribute, then ask."""

    def __init__(self, since: datetime, until: datetime, window: timedelta, lookback: timedelta,
                 now: datetime, follow: timedelta = timedelta(0)) -> None:
        """``follow``: how long after its first row a stream can still send (``eligibility.max_age``)."""
        self.since, self.until, self.window, self.now = since, until, window, now
        self.start = since - lookback  # rows this far back tell a stream that began before ``since``
        # ... and rows, and orders, up to ``follow`` and a window after ``until``: the streams that
        # began in the period are followed to their last step and the orders it wins (the
        # incremental columns); a later message of the same cart takes the orders that come
        # after it (the latest row wins), so a period never credits an order that the next
        # period credits too. Those rows are never counted themselves.
        self.rows_until = until + follow + window
        self._scratch = ScratchDb("report", SCHEMA)
        self.db = self._scratch.connection
        self.loaded = Loaded()
        self._cube_rows: list[tuple[Any, ...]] | None = None
        self._messages: dict[tuple[Any, ...], tuple[int, int]] = {}
        self._carts: tuple[int, int] = (0, 0)
        self._held_carts = 0
        self._groups: dict[tuple[int, str | None], list[Any]] = {}

    def close(self) -> None:
        self._scratch.close()

    def __enter__(self) -> "Attribution":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- loading -----------------------------------------------------------------------------

    def load_ledger(self, ledger: Ledger) -> None:
        """The sent and held-out rows claimed from ``start`` to ``rows_until``."""
        path = ledger.sqlite_path()
        if path is not None:
            self._attach(path)
        else:
            rows = ((i, key, cart, (email or "").lower() or None, customer, step, channel, variant, tier, sequence,
                     locale, int(status == "held_out"), epoch(at), _value(value), None if email else phone)
                    for i, key, cart, email, customer, step, channel, variant, tier, sequence, locale, status, at, value,
                    phone in ledger.report_messages(self.start, self.rows_until))
            for batch in _batches(rows):
                self.db.executemany("INSERT INTO msg VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)", batch)
        self.loaded.messages = self.db.execute("SELECT count(*) FROM msg").fetchone()[0]

    def _attach(self, path: str) -> None:
        """A SQLite ledger is read in place: one INSERT ... SELECT instead of a million round trips."""
        def stamp(moment: datetime) -> str:  # how SQLAlchemy stores a DateTime in SQLite
            return moment.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S.%f")

        # As bytes, SQLite takes the name as the file system has it (a folder's bytes that are not UTF-8 too).
        self.db.execute("ATTACH DATABASE ? AS led", (os.fsencode(path),))
        try:
            self.db.execute(
                "INSERT INTO msg SELECT id, cart_key, cart_id, lower(email), customer_id, step, channel, variant, tier, "
                "sequence, locale, status = 'held_out', "
                # exact seconds (julianday's floating days are not), plus the stored fraction
                "CAST(strftime('%s', claimed_at) AS INTEGER) + CAST(substr(claimed_at, 20) AS REAL), "
                "CAST(round(CAST(cart_value AS REAL) * ?) AS INTEGER), CASE WHEN email IS NULL OR email = '' THEN phone END "
                "FROM led.cr_message "
                f"WHERE status IN {REPORTED!r} AND claimed_at >= ? AND claimed_at <= ?",
                (UNITS, stamp(self.start), stamp(self.rows_until)))
            self.db.commit()
        finally:
            self.db.execute("DETACH DATABASE led")

    def order_window(self, now: datetime) -> Window:
        """The orders that can matter: over the rows loaded, from the first to the last (the
        last is a window after the streams of the period end), never past ``now``."""
        return Window(self.start, min(self.rows_until, max(now, self.until)))

    def prepare(self, ledger: Ledger | None = None) -> None:
        """What needs only the rows (runs while the orders load): the streams and the sums of
        messages per breakdown. ``ledger``: where the streams whose first row read is a later
        step find when they began (:meth:`_earlier_starts`)."""
        since, until = self._period()
        self.db.executescript("""
            CREATE INDEX msg_key ON msg(cart_key, held, at);
            CREATE TABLE stream(cart_key TEXT PRIMARY KEY, first_at REAL, first_id INTEGER, held INTEGER, tier TEXT,
              step INTEGER) WITHOUT ROWID;
            INSERT INTO stream SELECT cart_key, min(at), id, held, tier, step FROM msg GROUP BY cart_key;
        """)  # one aggregate: SQLite takes the bare columns from the row of min(at)
        if ledger is not None:
            self._earlier_starts(ledger)
        # Carts messaged (and held out) in the period, and those whose last message is recent:
        # grouped along the msg_key index, so nothing is sorted.
        counts = {held: (carts, recent) for held, carts, recent in self.db.execute(
            "SELECT held, count(*), coalesce(sum(last > ?), 0) FROM (SELECT held, max(at) AS last FROM msg"
            " WHERE at >= ? AND at <= ? GROUP BY cart_key, held) GROUP BY held",
            (epoch(self.now) - self.window.total_seconds(), since, until))}
        self._carts = counts.get(0, (0, 0))
        self._held_carts = counts.get(1, (0, 0))[0]
        # The groups of the streams that began in the period (the lift), before any order is known.
        self._groups = {(held, tier): [carts, 0, 0, 0.0, 0, 0] for held, tier, carts in self.db.execute(
            "SELECT held, tier, count(*) FROM stream WHERE first_at >= ? AND first_at <= ?"
            " GROUP BY held || char(31) || ifnull(tier, char(30))", (since, until))}
        for tier, contaminated in self.db.execute(
                "SELECT s.tier, count(*) FROM stream s WHERE s.held = 1 AND s.first_at >= ? AND s.first_at <= ?"
                " AND EXISTS (SELECT 1 FROM msg m WHERE m.cart_key = s.cart_key AND m.held = 0) GROUP BY s.tier",
                (since, until)):
            self._groups[(1, tier)][4] = contaminated
        # Grouping by one text key is several times faster in SQLite than by seven columns.
        self._messages = {}
        for key, bucket, count, value in self.db.execute(
                f"SELECT {_cube_key()}, CAST(at / 900 AS INTEGER), count(*), coalesce(sum(value), 0) FROM msg"
                " WHERE at >= ? AND at <= ? GROUP BY 1, 2", (since, until)):
            self._messages[(*_split(key), bucket)] = (count, value)

    def _earlier_starts(self, ledger: Ledger) -> None:
        """Date back the streams that began before the rows read. A stream begins at its first
        step, and the rows read reach ``eligibility.max_age`` + the window before the period; but
        a customer who comes back to the cart re-times its later steps (from the last activity),
        so step 2 can go out two weeks after step 1. Its stream then seemed to begin in the
        period of step 2, and the lift counted the cart (and its order) a second time. Only a
        stream whose first row read is a later step can have begun earlier: the ledger is asked
        about those few, not about every stream."""
        since, until = self._period()
        later = [key for (key,) in self.db.execute(
            "SELECT cart_key FROM stream WHERE step > 1 AND first_at >= ? AND first_at <= ?", (since, until))]
        if not later:
            return
        self.db.executemany("UPDATE stream SET first_at = ? WHERE cart_key = ?", [
            (epoch(first), key) for key, first in ledger.report_first_claims(later, self.start).items()])
        self.db.commit()

    def attach_orders(self, orders: "OrderLoad") -> None:
        """Take the orders a loader thread read into its own scratch file."""
        self.db.execute("ATTACH DATABASE ? AS o", (str(orders.scratch.path),))
        try:
            self.db.execute("INSERT INTO ord SELECT * FROM o.ord")
            self.db.commit()
        finally:
            self.db.execute("DETACH DATABASE o")
        self.loaded.orders = orders.count
        self.loaded.duplicate_orders = orders.duplicates
        self.loaded.currencies = orders.currencies
        self.loaded.codes_known = orders.codes_known
        self.loaded.phones = orders.phones

    # -- attribution -------------------------------------------------------------------------

    def attribute(self) -> None:
        """Give each order its row (see the module docstring). An order dated without a time
        takes its whole day: it is after a row of that day, and within a window that holds any
        of the day (read as the day's end, one of a window's last day fell out of it).

        The orders are few next to the rows (the key filter let only possible matches in), so
        the rows are scanned once per key with lookups into the orders' small indexes, rather
        than indexing a million rows three times.
        """
        w = self.window.total_seconds()
        scans = []
        keys = [("cart_id", 0), ("email", 1), ("customer_id", 1)]
        if self.loaded.phones:  # a row without an address: by its number too, a placeholder's left out
            self._placeholder_numbers()
            keys.append(("phone", 1))
        for column, kind in keys:
            if self.db.execute(f"SELECT 1 FROM ord WHERE {column} IS NOT NULL LIMIT 1").fetchone():
                self.db.execute(f"CREATE INDEX ord_{column} ON ord({column}) WHERE {column} IS NOT NULL")
                scans.append(f"SELECT o.id AS oid, m.id AS mid, m.at AS at, {kind} AS kind FROM msg m CROSS JOIN ord o"
                             f" ON o.{column} = m.{column} WHERE m.{column} IS NOT NULL AND o.at > m.at"
                             f" AND o.earliest <= m.at + {w!r}")
        if self._other_spellings():  # one scan more, only for a shop with such addresses
            scans.append(f"SELECT o.id AS oid, m.id AS mid, m.at AS at, 1 AS kind FROM msg m CROSS JOIN ord_spelling s"
                         f" ON s.email = m.email JOIN ord o ON o.id = s.oid WHERE m.email IS NOT NULL AND o.at > m.at"
                         f" AND o.earliest <= m.at + {w!r}")
        # one scan of the rows per key an order carries at all, with lookups into the orders' indexes
        self.db.execute("CREATE TABLE cand AS " + (" UNION ALL ".join(scans) if scans else
                                                   "SELECT '' AS oid, 0 AS mid, 0.0 AS at, 0 AS kind WHERE 0"))
        self.db.executescript("""
            CREATE TABLE hit(oid TEXT PRIMARY KEY, mid INTEGER NOT NULL) WITHOUT ROWID;
            INSERT INTO hit SELECT oid, mid FROM (SELECT oid, mid, row_number() OVER
                (PARTITION BY oid ORDER BY kind, at DESC, mid DESC) AS n FROM cand) WHERE n = 1;
            DROP TABLE cand;
            CREATE TABLE mstat(mid INTEGER PRIMARY KEY, orders INTEGER, revenue INTEGER, unconverted INTEGER);
            INSERT INTO mstat SELECT h.mid, count(*), sum(o.amount), sum(o.amount IS NULL)
              FROM hit h JOIN ord o ON o.id = h.oid GROUP BY h.mid;
        """)

    def _placeholder_numbers(self) -> None:
        """Forget the numbers the orders give to more than one customer (two addresses, or two
        customer ids: :func:`cartrescue.decide.orders.shared`): the shop's own number typed by
        customers who give none, a family's. Such a number tells no one's purchase; matched, a
        text to one customer was credited with a stranger's order."""
        self.db.execute(
            "UPDATE ord SET phone = NULL WHERE phone IN (SELECT phone FROM ord WHERE phone IS NOT NULL GROUP BY phone"
            " HAVING count(DISTINCT email) > 1 OR count(DISTINCT customer_id) > 1)")

    def _other_spellings(self) -> bool:
        """The other spellings of the orders' addresses that are not plain ASCII or hold ``xn--``
        (:func:`cartrescue.contacts.email_forms`: decomposed, the domain's other IDNA form) into
        ``ord_spelling``; whether there are any. An older cartrescue kept an address as the export
        wrote it, lower-cased alone, where the sources now read the same export's order composed
        and with the domain in Unicode: the order of the very address a message went to, without a
        cart id, was attributed to nothing."""
        self.db.execute("CREATE TABLE ord_spelling(email TEXT NOT NULL, oid TEXT NOT NULL, PRIMARY KEY (email, oid))"
                        " WITHOUT ROWID")
        rows = self.db.execute("SELECT id, email FROM ord WHERE email IS NOT NULL AND"
                               " (length(email) <> length(CAST(email AS BLOB)) OR instr(email, 'xn--'))").fetchall()
        self.db.executemany("INSERT OR IGNORE INTO ord_spelling VALUES (?, ?)",
                            [(form, oid) for oid, email in rows for form in email_forms(email) if form != email])
        return bool(self.db.execute("SELECT 1 FROM ord_spelling LIMIT 1").fetchone())

    # -- questions ---------------------------------------------------------------------------

    def _period(self) -> tuple[float, float]:
        return epoch(self.since), epoch(self.until)

    def _cube(self) -> list[tuple[Any, ...]]:
        """The rows claimed in the period summed per (sequence, step, variant, tier, locale,
        channel, held, 15-minute bucket): (..., rows, rows with an order, orders, revenue, cart
        value, unconverted orders). The messages' part was summed in :meth:`prepare` (one pass
        over the rows); the orders' part is summed here over the few rows that won an order."""
        if self._cube_rows is None:
            since, until = self._period()
            won = {(*_split(row[0]), row[1]): row[2:] for row in self.db.execute(
                f"SELECT {_cube_key('m.')}, CAST(m.at / 900 AS INTEGER), count(*), sum(t.orders),"
                " coalesce(sum(t.revenue), 0), sum(t.unconverted) FROM mstat t JOIN msg m ON m.id = t.mid"
                " WHERE m.at >= ? AND m.at <= ? GROUP BY 1, 2", (since, until))}
            self._cube_rows = []
            for key, (messages, value) in self._messages.items():
                converted, orders, revenue, unconverted = won.get(key, (0, 0, 0, 0))
                self._cube_rows.append((*key, messages, converted, orders, revenue, value, unconverted))
        return self._cube_rows

    def totals(self) -> dict[str, Any]:
        """Sent messages of the period's streams and what they won back."""
        sums = [0, 0, 0, 0, 0, 0]
        for row in self._cube():
            if not row[6]:
                for index in range(6):
                    sums[index] += row[8 + index]
        messages, converted, orders, revenue, value, unconverted = sums
        (carts, maturing), held = self._carts, self._held_carts
        converted_carts = self.db.execute(
            "SELECT count(DISTINCT m.cart_key) FROM hit h JOIN msg m ON m.id = h.mid WHERE m.held = 0 AND m.at >= ?"
            " AND m.at <= ?", self._period()).fetchone()[0]
        # A cart in a currency without a rate to the shop's has no value in it: counted, not guessed.
        unvalued = self.db.execute("SELECT count(*) FROM msg WHERE held = 0 AND value IS NULL AND at >= ? AND at <= ?",
                                   self._period()).fetchone()[0]
        return {"messages": messages, "carts": carts, "value": value, "unvalued": unvalued,
                "converted_messages": converted,
                "converted_carts": converted_carts, "orders": orders, "revenue": revenue,
                "unconverted_orders": unconverted, "maturing": maturing, "held_carts": held}

    def unconverted(self) -> dict[str, int]:
        """Orders without an amount in the shop's currency, by their currency ("" for none):
        those the period's sent messages won, as ``totals()['unconverted_orders']`` counts them.
        The loader's own count took in every order it read, those credited to no message too."""
        return {currency or "": count for currency, count in self.db.execute(
            "SELECT o.currency, count(*) FROM hit h JOIN ord o ON o.id = h.oid JOIN msg m ON m.id = h.mid"
            " WHERE o.amount IS NULL AND m.held = 0 AND m.at >= ? AND m.at <= ? GROUP BY o.currency",
            self._period())}

    def breakdown(self, dimension: str) -> list[tuple[Any, ...]]:
        """Per group of sent messages: (*key, messages, converted messages, orders, revenue, cart value)."""
        positions = [_CUBE[name] for name in DIMENSIONS[dimension]]
        groups: dict[tuple[Any, ...], list[int]] = {}
        for row in self._cube():
            if row[6] or (dimension == "variant" and row[2] is None):
                continue
            sums = groups.setdefault(tuple(row[p] for p in positions), [0, 0, 0, 0, 0])
            for index in range(5):
                sums[index] += row[8 + index]
        return [(*key, *sums) for key, sums in sorted(groups.items(), key=lambda item: tuple(
            (value is None, value if value is not None else 0) for value in item[0]))]

    def by_quarter_hour(self) -> tuple[list[tuple[int, int, int]], list[tuple[int, int, int]]]:
        """(bucket, sent messages, held-out rows) and (bucket, attributed orders, revenue), in
        15-minute buckets of epoch time: the caller maps them to days in the shop's timezone."""
        sent: dict[int, list[int]] = {}
        for row in self._cube():
            counts = sent.setdefault(row[7], [0, 0])
            counts[1 if row[6] else 0] += row[8]
        orders = self.db.execute(
            "SELECT CAST(o.at / 900 AS INTEGER) AS b, count(*), coalesce(sum(o.amount), 0) FROM hit h"
            " JOIN msg m ON m.id = h.mid JOIN ord o ON o.id = h.oid WHERE m.held = 0 AND m.at >= ? AND m.at <= ?"
            " GROUP BY b", self._period()).fetchall()
        return [(bucket, a, b) for bucket, (a, b) in sorted(sent.items())], orders

    def groups(self) -> list[tuple[Any, ...]]:
        """Per (held, tier) of the first rows of the streams that began in the period: carts,
        converted carts, revenue, revenue², carts of that group that were also messaged
        (contaminated controls), and orders whose amount is unknown (no rate: left out of the
        revenue, so the caller can say so)."""
        period = self._period()
        groups = {key: list(sums) for key, sums in self._groups.items()}
        for held, tier, converted, revenue, squares, unconverted in self.db.execute(
                "SELECT s.held, s.tier, count(*), coalesce(sum(r.revenue), 0), coalesce(sum(r.revenue * 1.0 * r.revenue), 0),"
                " coalesce(sum(r.unconverted), 0)"
                " FROM (SELECT m.cart_key, coalesce(sum(o.amount), 0) AS revenue, sum(o.amount IS NULL) AS unconverted"
                "       FROM hit h JOIN msg m ON m.id = h.mid JOIN ord o ON o.id = h.oid GROUP BY m.cart_key) r"
                " JOIN stream s ON s.cart_key = r.cart_key WHERE s.first_at >= ? AND s.first_at <= ?"
                " GROUP BY s.held, s.tier", period):
            groups[(held, tier)][1:4] = [converted, revenue, squares]
            groups[(held, tier)][5] = unconverted
        return [(held, tier, *sums) for (held, tier), sums in sorted(
            groups.items(), key=lambda item: (item[0][0], item[0][1] or ""))]

    def lift_unconverted(self, leave_out: frozenset[str] = frozenset()) -> list[tuple[int, str, int]]:
        """(held, currency or "", orders) of the orders of the streams that began in the period
        (the lift's carts, held-out ones too) without an amount in the shop's currency:
        :meth:`unconverted` counts only those the period's messages won. ``leave_out``: tiers
        ("" for none) the lift does not compare."""
        counts: dict[tuple[int, str], int] = {}
        for held, currency, tier, count in self.db.execute(
                "SELECT s.held, ifnull(o.currency, ''), ifnull(s.tier, ''), count(*) FROM hit h"
                " JOIN msg m ON m.id = h.mid JOIN ord o ON o.id = h.oid JOIN stream s ON s.cart_key = m.cart_key"
                " WHERE o.amount IS NULL AND s.first_at >= ? AND s.first_at <= ? GROUP BY 1, 2, 3",
                self._period()):
            if tier not in leave_out:
                counts[(held, currency)] = counts.get((held, currency), 0) + count
        return [(held, currency, count) for (held, currency), count in sorted(counts.items())]

    def attributed_orders(self) -> Iterator[tuple[Any, ...]]:
        """Each attributed order of the period's streams: (message id, sequence, step, tier, channel,
        amount, the discount codes it used (a tuple, empty: none), the order's currency, the order's
        own rate as text or None, the currency its amount is in ("" for none))."""
        for *head, code, currency, rate, unit in self.db.execute(
                "SELECT m.id, m.sequence, m.step, m.tier, m.channel, o.amount, o.code, o.currency, o.rate,"
                " ifnull(o.unit, '') FROM hit h JOIN msg m ON m.id = h.mid JOIN ord o ON o.id = h.oid"
                " WHERE m.held = 0 AND m.at >= ? AND m.at <= ? ORDER BY m.id", self._period()):
            yield (*head, tuple(code.split(CODE_SEPARATOR)) if code else (), currency, rate, unit)

    def revenue_by_unit(self) -> dict[str, tuple[int, int]]:
        """(orders, revenue) of the orders the period's sent messages won, per currency their
        amounts are in (``ord.unit``; "" for none): what ``totals()`` adds into one revenue, which
        means nothing when that is several currencies (no ``shop.currency`` to convert them to)."""
        return {unit: (orders, revenue) for unit, orders, revenue in self.db.execute(
            "SELECT ifnull(o.unit, ''), count(*), coalesce(sum(o.amount), 0) FROM hit h JOIN msg m ON m.id = h.mid"
            " JOIN ord o ON o.id = h.oid WHERE m.held = 0 AND m.at >= ? AND m.at <= ? GROUP BY 1", self._period())}

    def attributed_messages(self, steps: set[tuple[str, int]]) -> list[int]:
        """Ids of the messages of ``steps`` ((sequence, step)) that won an order, and of the
        earlier messages of those steps whose code the order may have used (code lookups)."""
        if not steps:
            return []
        won = {row[0] for row in self.attributed_orders() if (row[1], row[2]) in steps}
        earlier = {mid for found in self.earlier_messages().values() for mid, sequence, step, _tier in found
                   if (sequence, step) in steps}
        return sorted(won | earlier)

    def earlier_messages(self) -> dict[int, list[tuple[int, str | None, int, str | None]]]:
        """Per attributed message whose order used a discount code: the cart's other messages sent
        before that order, newest first, as (id, sequence, step, tier). The order is credited to
        the cart's last message, but its code may be an earlier step's, whose incentive it then
        redeemed (:func:`cartrescue.report.analysis._money`)."""
        found: dict[int, list[tuple[int, str | None, int, str | None]]] = {}
        for mid, other, sequence, step, tier in self.db.execute(
                "SELECT m.id, e.id, e.sequence, e.step, e.tier FROM hit h JOIN msg m ON m.id = h.mid"
                " JOIN ord o ON o.id = h.oid JOIN msg e ON e.cart_key = m.cart_key AND e.held = 0 AND e.id <> m.id"
                " AND e.at <= o.at WHERE o.code IS NOT NULL AND m.held = 0 AND m.at >= ? AND m.at <= ?"
                " ORDER BY m.id, e.at DESC, e.id DESC", self._period()):
            found.setdefault(mid, []).append((other, sequence, step, tier))
        return found

    def channel_messages(self) -> list[tuple[str | None, str | None, int]]:
        """(tier, channel, sent messages) of the period's streams, for the cost of sending."""
        counts: dict[tuple[Any, Any], int] = {}
        for row in self._cube():
            if not row[6]:
                counts[(row[3], row[5])] = counts.get((row[3], row[5]), 0) + row[8]
        return [(tier, channel, n) for (tier, channel), n in counts.items()]


def _cube_key(table: str = "") -> str:
    """The seven columns of a cube row as one text key (char(31) between them; NULL as char(30))."""
    return "||char(31)||".join(f"ifnull({table}{c}, char(30))" for c in (
        "sequence", "step", "variant", "tier", "locale", "channel", "held"))


def _split(key: str) -> tuple[Any, ...]:
    sequence, step, variant, tier, locale, channel, held = (None if part == "\x1e" else part
                                                           for part in key.split("\x1f"))
    return (sequence, None if step is None else int(step), variant, tier, locale, channel, int(held or 0))


_CUBE = {"sequence": 0, "step": 1, "variant": 2, "tier": 3, "locale": 4, "channel": 5}


class KeyFilter:
    """A one-hash Bloom filter of keys (4 MiB): "maybe" or a sure "no", for ``orders(wanted=)``.

    With a million keys about one unrelated order in thirty gets through; the SQL decides.
    Phone numbers (the keys of the rows without an address) are kept apart, by their last
    :data:`~cartrescue.sources.sql.PHONE_TAIL` digits: an order's number is typed in any form
    (``070-123 45 67``), and parsing each order's to E.164 to ask would cost every shop that texts
    nobody. ``phones`` says whether there are any (:func:`~cartrescue.sources.base.reads_phones`).
    """

    BITS = 1 << 25

    def __init__(self) -> None:
        self.bits = bytearray(self.BITS >> 3)
        self.tails: set[str] = set()
        self.phones = False

    def add_rows(self, rows: Iterable[tuple[Any, ...]]) -> None:
        """``rows``: (cart id, email, customer id, phone in E.164 or None) of the ledger's rows."""
        bits, mask, tails = self.bits, self.BITS - 1, self.tails
        for cart_id, email, customer_id, phone in rows:
            for key in (cart_id, email, customer_id):
                if key:
                    h = hash(key) & mask
                    bits[h >> 3] |= 1 << (h & 7)
            if phone:
                tails.add(phone[-PHONE_TAIL:])
        self.phones = bool(tails)

    def __contains__(self, key: str) -> bool:
        h = hash(key) & (self.BITS - 1)
        return bool(self.bits[h >> 3] >> (h & 7) & 1)

    def __call__(self, cart_id: str | None, email: str | None, customer_id: str | None,
                 phone: str | None = None) -> bool:
        bits, mask = self.bits, self.BITS - 1  # inlined: called once per order row of the source
        for key in (cart_id, email, customer_id):
            if key:
                h = hash(key) & mask
                if bits[h >> 3] >> (h & 7) & 1:
                    return True
        if email and (not email.isascii() or "xn--" in email):  # as an older version kept it in the ledger
            if any(form in self for form in email_forms(email)[1:]):
                return True
        if phone and self.phones:
            return "".join(char for char in phone if char.isdigit())[-PHONE_TAIL:] in self.tails
        return False


def _value(text: str | None) -> int | None:
    if not text:
        return None
    try:
        return units(Decimal(text))
    except ArithmeticError:
        return None


def _batches(rows: Iterable[tuple[Any, ...]]) -> Iterator[list[tuple[Any, ...]]]:
    iterator = iter(rows)
    while batch := list(itertools.islice(iterator, BATCH)):
        yield batch


class OrderLoad:
    """Reads the orders that can matter into a scratch file of its own, in a thread of its own.

    It runs while the main thread works on the ledger's rows: SQLite lets go of Python's lock
    while it works, so reading the orders (Python) and summing the rows (SQLite) use both
    cores. The key filter comes from the ledger itself, so the two need not wait for each other.
    """

    def __init__(self) -> None:
        self.scratch = ScratchDb("orders", ORD_TABLE, shared=True)
        self.count = 0
        self.duplicates = 0
        self.currencies: set[str] = set()
        self.codes_known = False
        self.phones = False  # whether a row of the ledger has a number and no address: ord.phone is read

    def close(self) -> None:
        self.scratch.close()

    def run(self, source: CartSource, window: Window, keys: Iterable[tuple[Any, ...]], basis: Basis) -> "OrderLoad":
        wanted = KeyFilter()
        wanted.add_rows(keys)
        base = basis.currency
        phones = self.phones = wanted.phones  # no row without an address: no order's number is looked at

        def rows() -> Iterator[tuple[Any, ...]]:
            for order in source.orders(window, wanted):
                currency = (order.currency or base or "").upper()
                total, base_total = order.net()  # revenue is what the shop kept: refunds deducted
                if base_total is None and (not currency or currency == base):
                    amount: Decimal | None = total
                else:
                    amount = basis.base(total, currency, base_total)
                if currency:  # a source's own base amount is in its platform's base currency, not the order's
                    self.currencies.add(currency if base_total is None or base else PLATFORM_BASE)
                unit = base or (currency if base_total is None else PLATFORM_BASE) or None
                rate = order.base_rate
                yield (order.id, order.created_at.timestamp(), order.earliest.timestamp(), order.email,
                       order.customer_id, order.cart_id,
                       None if amount is None else units(amount), currency or None,
                       CODE_SEPARATOR.join(order.discount_codes) or None,
                       None if rate is None else str(rate), unit, order.phone if phones else None)

        db = self.scratch.connection
        total = 0
        for batch in _batches(rows()):
            total += len(batch)
            db.executemany("INSERT OR IGNORE INTO ord VALUES (?,?,?,?,?,?,?,?,?,?,?,?)", batch)
        db.commit()
        self.count = db.execute("SELECT count(*) FROM ord").fetchone()[0]
        self.duplicates = total - self.count
        # asked once the orders are read through: a file's header, a query's columns, a table found
        self.codes_known = source.orders_carry_codes()
        return self
