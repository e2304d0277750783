"""Incentive codes: unique per recipient and step, from a pool file or generated from a pattern.

Owns the life of a code in the ledger's ``cr_code`` table: imported from a pool file or generated
(``CR-{random:8}``), withdrawn when the shop takes it out of its pool file unused, **allocated to
one claimed message** (never to two: the code and the claim are both unique, and allocation is a
conditional update that only succeeds on a free row), replaced by a fresh one when a retry of
its message comes after it expired (never sent dead), listed (unused, active, expired,
undelivered, withdrawn) and exported for import into the shop.

Allocation happens only on the delivery path, after the ledger claim and before the message is
composed; a dry-run never allocates (it shows :func:`placeholder`). It must not decide who gets
an incentive (the config's steps and tiers do) nor render anything.
"""

from __future__ import annotations

import csv
import io
import re
import secrets
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone, tzinfo
from pathlib import Path
from time import monotonic, sleep
from typing import Any, NamedTuple

from sqlalchemy import func, insert, or_, select, update
from sqlalchemy.exc import IntegrityError

from cartrescue.config import CodeSource, Config, Incentive
from cartrescue.errors import CartrescueError, ConfigError
from cartrescue.ledger import Code, Ledger, Message, aware, may_have_reached, naive
from cartrescue.pool_file import read_pool_file

#: 32 characters without the look-alikes 0/O and 1/I: easy to type from a printed email.
ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"
STATUSES = ("unused", "active", "expired", "undelivered", "withdrawn")
_PLACEHOLDER = re.compile(r"\{random:(\d+)\}")
_CANDIDATES = 16  # free rows tried per select; contention only costs a retry
_GENERATE_TRIES = 20
#: Codes ``codes generate`` writes in one transaction. One transaction for all of them held a
#: SQLite ledger's write lock as long as the command ran (40 s for 400,000 codes): a run that
#: delivered meanwhile could not record its claims and stopped, exit 2, its messages in flight
#: without outcome. A batch commits in milliseconds, and the next waits as long: SQLite lets a
#: waiting writer in only when it polls (every 100 ms at most) while the lock is free, and a
#: batch begun at once after the last one's commit kept it out as surely as one transaction.
_GENERATE_BATCH = 200
#: Codes of a pool file ``codes import`` (or a run's first allocation) writes in one transaction,
#: for the same reason; a batch is one multi-row statement per 500 codes, so it may be larger.
_IMPORT_BATCH = 5_000
#: How long a code a retry keeps must still work (or the offer's whole ``valid_for``, when that
#: is shorter); else the retry gives the message a fresh one (:func:`worth_sending`).
MIN_LEFT_AT_RETRY = timedelta(hours=24)


class CodePoolEmpty(CartrescueError):
    """A pool file has no unused code left: the message is not sent (it would promise a code)."""


@dataclass(frozen=True, slots=True)
class Pool:
    """One configured pool: its source and the offer it stands for."""

    name: str
    source: CodeSource
    incentive: Incentive
    file: Path | None  # resolved against the config's folder


class Allocation(NamedTuple):
    """A code given to one claimed message and when it stops working, as ``cr_code`` records it:
    what the message shows, however many runs later it goes out (until it expires: see
    :meth:`Codes.allocate`)."""

    code: str
    expires: datetime


@dataclass(frozen=True, slots=True)
class Imported:
    """What importing a pool file did: codes read, new ones added, unused ones withdrawn (out of
    the file), withdrawn ones restored (in it again)."""

    read: int
    added: int
    withdrawn: int
    restored: int


def pools(config: Config) -> dict[str, Pool]:
    """Every pool the config's steps and tiers use, by name (the config validated they agree)."""
    found: dict[str, Pool] = {}
    for _key, incentive in config.code_offers():
        source = incentive.codes
        assert source is not None
        file = config.path(source.file) if source.file is not None else None
        found.setdefault(source.pool, Pool(source.pool, source, incentive, file))
    return found


def pool_named(found: dict[str, Pool], name: str) -> Pool:
    """The pool ``name``, or a config error naming the known ones (a command asks before it
    opens the ledger: a mistyped ``--pool`` must not create a ledger file)."""
    try:
        return found[name]
    except KeyError:
        known = ", ".join(sorted(found)) or "none configured"
        raise ConfigError(f"unknown code pool {name!r} (known: {known})") from None


def code_key(code: str) -> str:
    """What makes two codes one in the shop: their letters without case (Shopify, Magento and
    WooCommerce take ``save-1`` for ``SAVE-1``; the report matches them so)."""
    return code.upper()


def generate_code(pattern: str) -> str:
    """``CR-{random:8}`` -> ``CR-7QXK2M9A`` (cryptographic randomness, unambiguous letters)."""
    return _PLACEHOLDER.sub(lambda m: "".join(secrets.choice(ALPHABET) for _ in range(int(m.group(1)))), pattern)


def placeholder(source: CodeSource) -> str:
    """What a dry-run or preview shows instead of a real code (nothing is allocated)."""
    if source.pattern is not None:
        return _PLACEHOLDER.sub(lambda m: "X" * int(m.group(1)), source.pattern)
    return "XXXXXXXX"


class Codes:
    """The code pools of one config on one ledger; build one per process (not thread-bound)."""

    def __init__(self, config: Config, ledger: Ledger) -> None:
        self.pools = pools(config)
        self.tz = config.shop.tz
        self.ledger = ledger
        self.engine = ledger.engine
        self.table = Code.__table__  # type: ignore[attr-defined]
        self._imported: set[str] = set()

    def pool(self, name: str) -> Pool:
        return pool_named(self.pools, name)

    # -- filling pools ------------------------------------------------------------------------

    def _ignore_statement(self) -> Any:
        """INSERT that skips a row whose code (or claim) exists already, in this dialect."""
        dialect = self.engine.dialect.name
        if dialect == "postgresql":
            from sqlalchemy.dialects.postgresql import insert as pg_insert

            return pg_insert(self.table).on_conflict_do_nothing()
        return insert(self.table).prefix_with("OR IGNORE" if dialect == "sqlite" else "IGNORE")

    def _insert_ignore(self, name: str, rows: list[dict[str, Any]]) -> int:
        """Insert pool ``name``'s rows whose code is new; return how many were inserted.

        Committed a batch at a time (:data:`_IMPORT_BATCH`), each followed by a pause as long as
        it held the ledger, as :meth:`generate` does: one transaction for a pool file of 400,000
        codes held a SQLite ledger's write lock for over 30 s, and a run delivering meanwhile
        could not record its claims and stopped (exit 2). Stopped halfway, the next import adds
        the rest (a code in the ledger is skipped). Counted per batch, as the pool's rows after
        less before in its transaction: PostgreSQL's driver gives no row count for a statement
        run with many rows (``-1``), and ``codes import`` said it added none."""
        statement = self._ignore_statement()
        table = self.table
        counting = select(func.count()).select_from(table).where(table.c.pool == name)
        added = 0
        held = 0.0
        for first in range(0, len(rows), _IMPORT_BATCH):
            if first:
                sleep(held)
            started = monotonic()
            with self.engine.begin() as conn:
                before = conn.execute(counting).scalar_one()
                batch = rows[first:first + _IMPORT_BATCH]
                for start in range(0, len(batch), 500):
                    conn.execute(statement, batch[start:start + 500])
                added += int(conn.execute(counting).scalar_one() - before)
            held = monotonic() - started
        return added

    def import_file(self, name: str, now: datetime | None = None) -> Imported:
        """Make the pool's free codes those of its file (idempotent): add the new ones, withdraw
        the unused ones the shop took out of it (it may have disabled them in the shop), restore
        a withdrawn one the file lists again. Codes already handed out stay as they are."""
        pool = self.pool(name)
        if pool.file is None:
            raise ConfigError(f"code pool {name!r} is generated from a pattern; it has no file to import")
        codes = read_pool_file(pool.file)
        at = naive(now or datetime.now(timezone.utc))
        spelling = self._spellings(name)
        fresh = [code for code in codes if spelling.setdefault(code_key(code), code) == code]
        rows = [dict(pool=name, code=code, origin="file", kind=pool.incentive.kind, value=str(pool.incentive.value),
                     created_at=at) for code in dict.fromkeys(fresh)]
        added = self._insert_ignore(name, rows)
        withdrawn, restored = self._follow_file(name, {spelling[code_key(code)] for code in codes}, at)
        self._imported.add(name)
        return Imported(len(codes), added, withdrawn, restored)

    def _spellings(self, name: str) -> dict[str, str]:
        """The codes in the ledger of pool ``name`` and of every pool file, by :func:`code_key`,
        each as the row to keep spells it: one handed out first, else the oldest. Shops take
        codes without case, so ``save-1`` in the file is the ledger's ``SAVE-1`` (another pool
        file's too: the ledger holds a code once); a ledger filled before this held both, and
        the pool's other spelling, no longer listed, is withdrawn by :meth:`_follow_file`."""
        table = self.table
        with self.engine.connect() as conn:
            rows = conn.execute(select(table.c.code).where(
                or_(table.c.pool == name, table.c.origin == "file")).order_by(
                table.c.claim_id.is_(None), table.c.id)).scalars()
            spelling: dict[str, str] = {}
            for code in rows:
                spelling.setdefault(code_key(code), code)
        return spelling

    def _follow_file(self, name: str, listed: set[str], at: datetime) -> tuple[int, int]:
        """Withdraw the pool's free file codes not ``listed``, restore withdrawn ones that are;
        return how many of each. Only a free row changes: one a run allocates meanwhile is kept."""
        table = self.table
        with self.engine.begin() as conn:
            free = conn.execute(select(table.c.id, table.c.code, table.c.withdrawn_at).where(
                table.c.pool == name, table.c.origin == "file", table.c.claim_id.is_(None))).all()
            gone = [row.id for row in free if row.withdrawn_at is None and row.code not in listed]
            back = [row.id for row in free if row.withdrawn_at is not None and row.code in listed]
            changed = []
            for ids, value in ((gone, at), (back, None)):
                count = 0
                for start in range(0, len(ids), 500):
                    count += conn.execute(update(table).where(
                        table.c.id.in_(ids[start:start + 500]), table.c.claim_id.is_(None)).values(withdrawn_at=value)
                    ).rowcount or 0
                changed.append(count)
        return changed[0], changed[1]

    def generate(self, name: str, count: int, now: datetime | None = None,
                 on_progress: Callable[[int], None] | None = None) -> list[str]:
        """Make ``count`` new unused codes of a pattern pool (to import into the shop ahead),
        committed a batch at a time (:data:`_GENERATE_BATCH`): a run delivering meanwhile records
        its claims between two batches, and a command stopped halfway keeps the codes it made.
        ``on_progress(n)`` hears of each batch's ``n`` new codes once committed: a million
        codes take minutes (the pauses that leave the ledger to runs), which a bar shows."""
        pool = self.pool(name)
        if pool.source.pattern is None:
            raise ConfigError(f"code pool {name!r} comes from a file; only pattern pools generate codes")
        at = naive(now or datetime.now(timezone.utc))
        statement = self._ignore_statement()
        made: list[str] = []
        tries = count * 2 + _GENERATE_TRIES
        held = 0.0
        done = 0
        while len(made) < count and tries > 0:
            if made:  # the ledger left free as long as the last batch held it: see _GENERATE_BATCH
                sleep(held)
            started = monotonic()
            with self.engine.begin() as conn:
                for _try in range(min(_GENERATE_BATCH, count - len(made), tries)):
                    tries -= 1
                    code = generate_code(pool.source.pattern)
                    row = dict(pool=name, code=code, origin="generated", kind=pool.incentive.kind,
                               value=str(pool.incentive.value), created_at=at)
                    if conn.execute(statement, [row]).rowcount == 1:
                        made.append(code)
            held = monotonic() - started
            if on_progress is not None:
                on_progress(len(made) - done)
                done = len(made)
        if len(made) < count:
            raise CartrescueError(f"code pool {name!r}: the pattern {pool.source.pattern!r} gave too many collisions")
        return made

    # -- allocation ---------------------------------------------------------------------------

    def allocate(self, name: str, claim_id: int, *, cart_key: str, email: str | None, step: int,
                 now: datetime, valid_for: timedelta | None = None) -> Allocation:
        """Give the claimed message ``claim_id`` its code and expiry.

        ``valid_for``: the validity of the message's own offer (a tier's and a step's offers
        may share a pool and differ in it), else the pool's first offer's: the code expires on
        the day the message shows.

        Idempotent per claim while its code is still worth sending (a retry of the same claim,
        in a later run too, gets the same code and its first expiry, not one counted from the
        retry's ``now``: the customer may hold it from an earlier attempt). A retry that comes
        when the code is dead or has less than a day to live (:func:`worth_sending`) gets a fresh
        code, valid from ``now`` as a first one: a message never carries a code its customer has
        no time to use. The old code is taken off the claim in the same transaction that gives
        it the new one (:meth:`_take`): a crash, a database error or a pool that runs dry in
        between leaves the claim with its old code, never with none or two.

        A code already allocated is never handed out again: the update only matches a row whose
        ``claim_id`` is still empty, so two processes racing for one row cannot both win it; nor
        one that is withdrawn (a file pool's file is imported first, once per process). Pattern
        pools generate a new code when no pre-generated one is left; a file pool raises
        :class:`CodePoolEmpty` (the claim keeps its old code then, and waits for codes as a
        first allocation would).
        """
        pool = self.pool(name)
        valid = pool.incentive.valid_for if valid_for is None else valid_for
        expires = code_expiry(now, valid, self.tz)
        existing = self._by_claim(claim_id)
        if existing is not None and worth_sending(existing.expires, now, valid):
            return existing
        replacing = None if existing is None else existing.code
        if pool.file is not None and name not in self._imported:
            self.import_file(name, now)
        table = self.table
        values = dict(claim_id=claim_id, cart_key=cart_key, email=email, step=step, allocated_at=naive(now),
                      expires_at=naive(expires))
        while True:
            with self.engine.connect() as conn:
                free = conn.execute(
                    select(table.c.id, table.c.code).where(table.c.pool == name, table.c.claim_id.is_(None),
                                                           table.c.withdrawn_at.is_(None))
                    .order_by(table.c.id).limit(_CANDIDATES)
                ).all()
            if not free:
                break
            for row_id, code in free:
                if self._take(claim_id, replacing, update(table).where(
                        table.c.id == row_id, table.c.claim_id.is_(None), table.c.withdrawn_at.is_(None))
                        .values(**values)):
                    return Allocation(code, expires)
        if pool.source.pattern is None:
            raise CodePoolEmpty(f"code pool {name!r} has no unused code left (add codes to {pool.file})")
        for _try in range(_GENERATE_TRIES):
            code = generate_code(pool.source.pattern)
            try:
                if self._take(claim_id, replacing, insert(table).values(
                        pool=name, code=code, origin="generated", kind=pool.incentive.kind,
                        value=str(pool.incentive.value), created_at=naive(now), **values)):
                    return Allocation(code, expires)
            except IntegrityError:
                existing = self._by_claim(claim_id)
                if existing is not None and existing.code != replacing:  # another process gave it one
                    return existing
        raise CartrescueError(f"code pool {name!r}: the pattern {pool.source.pattern!r} gave too many collisions")

    def _take(self, claim_id: int, replacing: str | None, statement: Any) -> bool:
        """Run ``statement``, which gives ``claim_id`` a code (a conditional update of a free row,
        or the insert of a generated one), and report whether it did. When the claim holds a
        code a retry must not send (``replacing``), that code is taken off it in the same
        transaction (:meth:`_replace`): both happen or neither, so a crash or a database error
        between them cannot leave the message without a code (its old one marked replaced) or
        with two."""
        with self.engine.connect() as conn, conn.begin() as transaction:
            if replacing is not None:
                self._replace(conn, claim_id, replacing)
            # 0: another process took the row first (an insert with RETURNING counts -1 on psycopg)
            if conn.execute(statement).rowcount == 0:
                transaction.rollback()
                return False
        return True

    def _replace(self, conn: Any, claim_id: int, code: str) -> None:
        """Take ``code``, which a retry must not send, off ``claim_id`` on ``conn`` (in the
        transaction that gives the claim its fresh code: the claim is unique in ``cr_code``).
        The row stays, held by no message (``claim_id = -id``, as ``forget`` keeps a spent code)
        and never free again: an earlier attempt may have put it in the customer's mailbox;
        ``replaced_claim_id`` keeps whose it was."""
        table = self.table
        conn.execute(update(table).where(table.c.code == code, table.c.claim_id == claim_id)
                     .values(claim_id=-table.c.id, replaced_claim_id=claim_id))

    def _by_claim(self, claim_id: int) -> Allocation | None:
        table = self.table
        with self.engine.connect() as conn:
            row = conn.execute(select(table.c.code, table.c.expires_at).where(table.c.claim_id == claim_id)).first()
        return None if row is None else Allocation(row[0], aware(row[1]))  # type: ignore[arg-type]

    # -- listing and export -------------------------------------------------------------------

    def rows(self, now: datetime, *, pool: str | None = None, statuses: Iterable[str] = STATUSES,
             origin: str | None = None, exported: bool | None = None) -> Iterator[dict[str, Any]]:
        """Codes with their status at ``now``: unused (never handed out), active (its message was
        delivered or may have been, and it has not expired), expired (handed out, past its
        expiry), undelivered (its message failed and cannot have reached anyone: ``ledger.may_have_reached``), withdrawn (unused, and out of its pool file)."""
        wanted = set(statuses)
        table = self.table
        message = Message.__table__  # type: ignore[attr-defined]
        query = (
            select(table, message.c.status.label("message_status"), message.c.transport.label("message_transport"))
            .select_from(table.outerjoin(message, message.c.id == table.c.claim_id))
            .order_by(table.c.pool, table.c.id)
        )
        if pool is not None:
            query = query.where(table.c.pool == pool)
        if origin is not None:
            query = query.where(table.c.origin == origin)
        if exported is not None:
            query = query.where(table.c.exported_at.is_not(None) if exported else table.c.exported_at.is_(None))
        with self.engine.connect() as conn:
            for row in conn.execute(query).mappings():
                status = _status(row, now)
                if status in wanted:
                    yield {
                        "pool": row["pool"], "code": row["code"], "status": status, "origin": row["origin"],
                        "kind": row["kind"], "value": row["value"], "email": row["email"], "cart_key": row["cart_key"],
                        "step": row["step"], "allocated_at": _iso(aware(row["allocated_at"])),
                        "expires_at": _iso(aware(row["expires_at"])), "exported_at": _iso(aware(row["exported_at"])),
                        "withdrawn_at": _iso(aware(row["withdrawn_at"])),
                    }

    def summary(self, now: datetime) -> dict[str, dict[str, int]]:
        """Counts per pool and status; configured pools appear even when empty."""
        counts: dict[str, dict[str, int]] = {name: dict.fromkeys(STATUSES, 0) for name in sorted(self.pools)}
        for row in self.rows(now):
            counts.setdefault(row["pool"], dict.fromkeys(STATUSES, 0))[row["status"]] += 1
        return counts

    def exportable(self, now: datetime, *, pool: str | None = None, include_exported: bool = False) -> list[dict[str, Any]]:
        """Generated codes for import into the shop (not yet exported ones unless asked). File
        pools are not exported: their codes came from the shop. Nothing is marked: the caller
        marks them (:meth:`mark_exported`) once they are written where the shop takes them."""
        return list(self.rows(now, pool=pool, origin="generated", exported=None if include_exported else False))

    def mark_exported(self, rows: Iterable[dict[str, Any]], now: datetime) -> None:
        """Record ``rows``' codes as exported at ``now``. Only after they were written: marked
        first, a write that failed (``codes export | head``, a full disk) left codes the shop
        never got counted as exported, and the next export left them out; written but not marked,
        they are only exported again, which a shop's import takes as the same codes."""
        table = self.table
        codes = [row["code"] for row in rows]
        with self.engine.begin() as conn:
            for start in range(0, len(codes), 500):
                conn.execute(update(table).where(table.c.code.in_(codes[start:start + 500]))
                             .values(exported_at=naive(now)))

    def count_free(self, name: str) -> int:
        table = self.table
        with self.engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(table).where(
                table.c.pool == name, table.c.claim_id.is_(None), table.c.withdrawn_at.is_(None))).scalar() or 0)


def code_expiry(now: datetime, valid_for: timedelta, tz: tzinfo) -> datetime:
    """When a code handed out at ``now`` stops working: the end of the shop's day the message
    names (:func:`last_valid_day`). The message says "valid until 26 November" (that day, in the
    shop's timezone); a code that died at the hour it was sent on the 26th would refuse the
    customer who believed it that evening."""
    return datetime.combine(last_valid_day(now, valid_for, tz) + timedelta(days=1), time(0),
                            tzinfo=tz).astimezone(timezone.utc)


def last_valid_day(now: datetime, valid_for: timedelta, tz: tzinfo) -> date:
    """The shop's day an offer given at ``now`` is last valid on: the day of delivery + ``valid_for``
    on the shop's calendar (``3d`` from 24 October is 27 October), and never earlier than the day
    ``now + valid_for`` falls on, so a code works for its whole ``valid_for``. Counted in hours
    alone, a message sent at 00:30 on the day before the clocks go back (a 25-hour day) promised
    one day less: "valid until 26 October"."""
    local = now.astimezone(tz)
    return max((local + valid_for).date(), (now + valid_for).astimezone(tz).date())


def has_expired(expires: datetime, now: datetime) -> bool:
    """A code that stops working at ``expires`` (:func:`code_expiry`) is dead at ``now``."""
    return expires <= now


def worth_sending(expires: datetime, now: datetime, valid_for: timedelta) -> bool:
    """Whether a retry at ``now`` may still send the code that stops working at ``expires``: it
    must work for :data:`MIN_LEFT_AT_RETRY` more, or for the offer's whole ``valid_for`` when
    that is shorter. A 3-day code retried in its last hour would reach a customer who could not
    use it. A fresh code always passes (:func:`code_expiry` gives it at least ``valid_for``), so
    a retry never replaces the code it was just given."""
    return expires - now >= min(valid_for, MIN_LEFT_AT_RETRY)


def expiry_day(expires: datetime, tz: tzinfo) -> date:
    """The shop's day a code that stops working at ``expires`` is last valid on: the day its
    message names (the inverse of :func:`code_expiry`, which ends the code at that day's end)."""
    return (expires.astimezone(tz) - timedelta(microseconds=1)).date()


def _status(row: Any, now: datetime) -> str:
    if row["claim_id"] is None:
        return "unused" if row["withdrawn_at"] is None else "withdrawn"
    # A negative claim: its message was erased by `forget` after it may have gone out, or a retry
    # after its expiry gave the message a fresh code (Codes._replace); the code stays handed out
    # (to nobody the ledger knows any more) until it expires, which a replaced one has. So does the
    # code of a message that may have gone out (unconfirmed, claimed, or failed on a transport that
    # resends a request whose answer was lost): the customer may hold it, as ``forget`` keeps it spent.
    if row["claim_id"] > 0 and not may_have_reached(row["message_status"], row["message_transport"]):
        return "undelivered"
    expires = aware(row["expires_at"])
    if expires is not None and has_expired(expires, now):
        return "expired"
    return "active"


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat().replace("+00:00", "Z")


EXPORT_COLUMNS = ("code", "pool", "kind", "value", "status", "usage_limit", "allocated_at", "expires_at")


def export_csv(rows: Iterable[dict[str, Any]]) -> str:
    """The export as CSV: one code a line, usage limit 1, the expiry when it is known."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(EXPORT_COLUMNS)
    for row in rows:
        writer.writerow([row["code"], row["pool"], row["kind"], row["value"], row["status"], 1,
                         row["allocated_at"] or "", row["expires_at"] or ""])
    return out.getvalue()
