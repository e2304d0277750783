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
  else a row of the same customer id or address; of those the latest. When that row is a sent
  message, the order is **attributed** (recovered revenue); when it is a held-out row, it
  counts for the control group. Either way the stream converted.
- Amounts are in the shop's currency (:class:`cartrescue.currency.Basis`), summed exactly as
  integers of 1/10,000; an amount that cannot be converted is NULL: the order still counts as a
  conversion, its money is left out and reported.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

from cartrescue.currency import Basis
from cartrescue.ledger import Ledger
from cartrescue.model import Order
from cartrescue.scratch import ScratchDb
from cartrescue.sources.base import CartSource, Window

UNITS = 10_000  # amounts are integers of 1/10,000 of the shop's currency: exact sums in SQL
BATCH = 5_000
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)

SCHEMA = """
CREATE TABLE msg(id INTEGER PRIMARY KEY, cart_key TEXT NOT NULL, cart_id TEXT, email TEXT, customer_id TEXT,
  step INTEGER, channel TEXT, variant TEXT, tier TEXT, sequence TEXT, locale TEXT, held INTEGER NOT NULL,
  at REAL NOT NULL, value INTEGER);
CREATE TABLE ord(id TEXT PRIMARY KEY, at REAL NOT NULL, email TEXT, customer_id TEXT, cart_id TEXT, amount INTEGER,
  currency TEXT, code TEXT) WITHOUT ROWID;
"""

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
    unconverted: dict[str, int] = field(default_factory=dict)  # currency -> orders without a base amount
    currencies: set[str] = field(default_factory=set)
    codes_seen: bool = False  # at least one order carries a discount code


class Attribution:
    """The scratch database of one report: load, attribute, then ask."""

    def __init__(self, since: datetime, until: datetime, window: timedelta, lookback: timedelta) -> None:
        self.since, self.until, self.window = since, until, window
        self.start = since - lookback  # rows this far back tell a stream that began before ``since``
        self._scratch = ScratchDb("report", SCHEMA)
        self.db = self._scratch.connection
        self.loaded = Loaded()

    def close(self) -> None:
        self._scratch.close()

    def __enter__(self) -> "Attribution":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- loading -----------------------------------------------------------------------------

    def load_ledger(self, ledger: Ledger) -> None:
        """The sent and held-out rows claimed from ``start`` to ``until``."""
        path = ledger.sqlite_path()
        if path is not None:
            self._attach(path)
        else:
            rows = ((i, key, cart, (email or "").lower() or None, customer, step, channel, variant, tier, sequence,
                     locale, int(status == "held_out"), epoch(at), _value(value))
                    for i, key, cart, email, customer, step, channel, variant, tier, sequence, locale, status, at, value
                    in ledger.report_messages(self.start, self.until))
            for batch in _batches(rows):
                self.db.executemany("INSERT INTO msg VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)", batch)
        self.loaded.messages = self.db.execute("SELECT count(*) FROM msg").fetchone()[0]

    def _attach(self, path: str) -> None:
        """A SQLite ledger is read in place: one INSERT ... SELECT instead of a million round trips."""
        def stamp(moment: datetime) -> str:  # how SQLAlchemy stores a DateTime in SQLite
            return moment.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S.%f")

        self.db.execute("ATTACH DATABASE ? AS led", (path,))
        try:
            self.db.execute(
                "INSERT INTO msg SELECT id, cart_key, cart_id, lower(email), customer_id, step, channel, variant, tier, "
                "sequence, locale, status = 'held_out', (julianday(claimed_at) - 2440587.5) * 86400.0, "
                "CAST(round(CAST(cart_value AS REAL) * ?) AS INTEGER) FROM led.cr_message "
                "WHERE status IN ('sent', 'held_out') AND claimed_at >= ? AND claimed_at <= ?",
                (UNITS, stamp(self.start), stamp(self.until)))
            self.db.commit()
        finally:
            self.db.execute("DETACH DATABASE led")

    def order_window(self, now: datetime) -> Window | None:
        """The orders that can matter: from the first row loaded to the last row plus the window."""
        first, last = self.db.execute("SELECT min(at), max(at) FROM msg").fetchone()
        if first is None:
            return None
        return Window(from_epoch(first), min(from_epoch(last) + self.window, max(now, self.until)))

    def load_orders(self, orders: Iterable[Order], basis: Basis) -> None:
        """Orders with their amount in the shop's currency; a repeated id keeps its first row."""
        loaded = self.loaded
        base = basis.currency

        def rows() -> Iterator[tuple[Any, ...]]:
            for order in orders:
                currency = (order.currency or base or "").upper()
                amount = basis.base(order.total, currency, order.base_total) if currency else order.total
                if amount is None:
                    loaded.unconverted[currency] = loaded.unconverted.get(currency, 0) + 1
                if currency:
                    loaded.currencies.add(currency)
                if order.discount_code:
                    loaded.codes_seen = True
                yield (order.id, epoch(order.created_at), order.email, order.customer_id, order.cart_id,
                       None if amount is None else units(amount), currency or None, order.discount_code)

        total = 0
        for batch in _batches(rows()):
            total += len(batch)
            self.db.executemany("INSERT OR IGNORE INTO ord VALUES (?,?,?,?,?,?,?,?)", batch)
        loaded.orders = self.db.execute("SELECT count(*) FROM ord").fetchone()[0]
        loaded.duplicate_orders = total - loaded.orders

    # -- attribution -------------------------------------------------------------------------

    def attribute(self) -> None:
        """Give each order its row (see the module docstring); build the stream table."""
        w = self.window.total_seconds()
        self.db.executescript(
            "CREATE INDEX msg_cart ON msg(cart_id, at); CREATE INDEX msg_email ON msg(email, at);"
            "CREATE INDEX msg_customer ON msg(customer_id, at); CREATE INDEX msg_key ON msg(cart_key, at);")

        def latest(column: str) -> str:
            return (f"(SELECT m.id FROM msg m WHERE m.{column} = o.{column} AND m.at < o.at AND m.at >= o.at - {w!r}"
                    " ORDER BY m.at DESC, m.id DESC LIMIT 1)")

        self.db.executescript(f"""
            CREATE TABLE cand AS SELECT oid, c, CASE WHEN c IS NULL THEN e END AS e, CASE WHEN c IS NULL THEN u END AS u
              FROM (SELECT o.id AS oid, CASE WHEN o.cart_id IS NOT NULL THEN {latest('cart_id')} END AS c,
                           CASE WHEN o.email IS NOT NULL THEN {latest('email')} END AS e,
                           CASE WHEN o.customer_id IS NOT NULL THEN {latest('customer_id')} END AS u
                    FROM ord o)
              WHERE coalesce(c, e, u) IS NOT NULL;
            CREATE TABLE hit(oid TEXT PRIMARY KEY, mid INTEGER NOT NULL) WITHOUT ROWID;
            INSERT INTO hit SELECT oid, CASE WHEN c IS NOT NULL THEN c WHEN e IS NULL THEN u WHEN u IS NULL THEN e
                                             WHEN me.at >= mu.at THEN e ELSE u END
              FROM cand LEFT JOIN msg me ON me.id = cand.e LEFT JOIN msg mu ON mu.id = cand.u;
            DROP TABLE cand;
            CREATE INDEX hit_mid ON hit(mid);
            CREATE TABLE stream AS SELECT cart_key, min(at) AS first_at, held, tier, sequence
              FROM msg GROUP BY cart_key;  -- one aggregate: SQLite takes the bare columns from the first row
            CREATE INDEX stream_key ON stream(cart_key);
            CREATE TABLE mstat AS SELECT h.mid, count(*) AS orders, sum(o.amount) AS revenue,
                   sum(o.amount IS NULL) AS unconverted
              FROM hit h JOIN ord o ON o.id = h.oid GROUP BY h.mid;
            CREATE INDEX mstat_mid ON mstat(mid);
            CREATE TABLE cohort AS SELECT m.* FROM msg m JOIN stream s ON s.cart_key = m.cart_key
              WHERE s.first_at >= {epoch(self.since)!r} AND s.first_at <= {epoch(self.until)!r};
            CREATE INDEX cohort_id ON cohort(id);
        """)

    # -- questions ---------------------------------------------------------------------------

    def _period(self) -> tuple[float, float]:
        return epoch(self.since), epoch(self.until)

    def totals(self, now: datetime) -> dict[str, Any]:
        """Sent messages of the period's streams and what they won back."""
        messages, carts, value, converted, orders, revenue, unconverted = self.db.execute(
            "SELECT count(*), count(DISTINCT c.cart_key), sum(c.value), count(s.mid), coalesce(sum(s.orders), 0),"
            " sum(s.revenue), coalesce(sum(s.unconverted), 0) FROM cohort c LEFT JOIN mstat s ON s.mid = c.id"
            " WHERE c.held = 0").fetchone()
        converted_carts = self.db.execute(
            "SELECT count(DISTINCT c.cart_key) FROM cohort c JOIN mstat s ON s.mid = c.id WHERE c.held = 0").fetchone()[0]
        maturing = self.db.execute(
            "SELECT count(DISTINCT cart_key) FROM cohort WHERE held = 0 AND at > ?",
            (epoch(now) - self.window.total_seconds(),)).fetchone()[0]
        held = self.db.execute("SELECT count(DISTINCT cart_key) FROM cohort WHERE held = 1").fetchone()[0]
        return {"messages": messages, "carts": carts, "value": value, "converted_messages": converted,
                "converted_carts": converted_carts, "orders": orders, "revenue": revenue,
                "unconverted_orders": unconverted, "maturing": maturing, "held_carts": held}

    def breakdown(self, dimension: str) -> list[tuple[Any, ...]]:
        """Per group of sent messages: (*key, messages, converted messages, orders, revenue, cart value)."""
        columns = DIMENSIONS[dimension]
        keys = ", ".join(f"c.{name}" for name in columns)
        extra = " AND c.variant IS NOT NULL" if dimension == "variant" else ""
        return self.db.execute(
            f"SELECT {keys}, count(*), count(s.mid), coalesce(sum(s.orders), 0), coalesce(sum(s.revenue), 0),"
            f" coalesce(sum(c.value), 0) FROM cohort c LEFT JOIN mstat s ON s.mid = c.id WHERE c.held = 0{extra}"
            f" GROUP BY {keys} ORDER BY {keys}").fetchall()

    def by_quarter_hour(self) -> tuple[list[tuple[int, int, int]], list[tuple[int, int, int]]]:
        """(bucket, sent messages, held-out rows) and (bucket, attributed orders, revenue), in
        15-minute buckets of epoch time: the caller maps them to days in the shop's timezone."""
        sent = self.db.execute(
            "SELECT CAST(at / 900 AS INTEGER) AS b, sum(held = 0), sum(held = 1) FROM cohort GROUP BY b").fetchall()
        orders = self.db.execute(
            "SELECT CAST(o.at / 900 AS INTEGER) AS b, count(*), coalesce(sum(o.amount), 0) FROM hit h"
            " JOIN cohort c ON c.id = h.mid JOIN ord o ON o.id = h.oid WHERE c.held = 0 GROUP BY b").fetchall()
        return sent, orders

    def groups(self) -> list[tuple[Any, ...]]:
        """Per (held, tier) of the period's streams: carts, converted carts, revenue, revenue², and
        carts of that group that were also messaged (contaminated controls)."""
        since, until = self._period()
        return self.db.execute(
            "SELECT s.held, s.tier, count(*), count(r.cart_key), coalesce(sum(r.revenue), 0),"
            " coalesce(sum(r.revenue * 1.0 * r.revenue), 0),"
            " sum(s.held = 1 AND EXISTS (SELECT 1 FROM msg m WHERE m.cart_key = s.cart_key AND m.held = 0))"
            " FROM stream s LEFT JOIN (SELECT m.cart_key, coalesce(sum(o.amount), 0) AS revenue FROM hit h"
            "   JOIN msg m ON m.id = h.mid JOIN ord o ON o.id = h.oid GROUP BY m.cart_key) r ON r.cart_key = s.cart_key"
            " WHERE s.first_at >= ? AND s.first_at <= ? GROUP BY s.held, s.tier ORDER BY s.held, s.tier",
            (since, until)).fetchall()

    def attributed_orders(self) -> Iterator[tuple[Any, ...]]:
        """Each attributed order of the period's streams: (message id, sequence, step, tier, channel,
        amount, discount code)."""
        yield from self.db.execute(
            "SELECT c.id, c.sequence, c.step, c.tier, c.channel, o.amount, o.code FROM hit h"
            " JOIN cohort c ON c.id = h.mid JOIN ord o ON o.id = h.oid WHERE c.held = 0 ORDER BY c.id")

    def attributed_messages(self, steps: set[tuple[str, int]]) -> list[int]:
        """Ids of the messages of ``steps`` ((sequence, step)) that won an order (code lookups)."""
        if not steps:
            return []
        rows = self.db.execute("SELECT DISTINCT c.id, c.sequence, c.step FROM hit h JOIN cohort c ON c.id = h.mid"
                               " WHERE c.held = 0").fetchall()
        return [i for i, sequence, step in rows if (sequence, step) in steps]

    def channel_messages(self) -> list[tuple[str | None, str | None, int]]:
        """(tier, channel, sent messages) of the period's streams, for the cost of sending."""
        return self.db.execute(
            "SELECT tier, channel, count(*) FROM cohort WHERE held = 0 GROUP BY tier, channel").fetchall()


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
