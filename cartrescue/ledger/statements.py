"""The ledger's prebuilt statements: history lookups, the fenced claim, and the raw per-message
statements of a run.

Apart because they are built once per process or dialect and cached, and carry the ledger's
speed work (JSON lists on SQLite, the driver's ``executemany``); the handle only runs them.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import datetime
from functools import lru_cache
from itertools import chain
from operator import attrgetter
from typing import Any

from sqlalchemy import bindparam, column, func, insert, literal, select, update

from cartrescue.ledger.engine import sqlite_version
from cartrescue.ledger.moments import aware, naive
from cartrescue.ledger.tables import REPORT_COLUMNS, CartDecision, Message, RunLock, Suppression, SurveyAnswer
from cartrescue.ledger.values import MESSAGED, ClaimRequest


def finished_delivering(run: Any) -> Any:
    """``cr_run`` rows of delivering runs (``--send``, ``--outbox``) that ran to their end."""
    return (run.c.status == "ok") & (run.c.mode != "dry-run")


def delivered_nothing(run: Any) -> Any:
    """``cr_run`` rows of runs that tried to deliver and got nothing out: every delivery failed."""
    return (func.coalesce(run.c.sent, 0) == 0) & (func.coalesce(run.c.failed, 0) > 0)


def latest_messaged(rows: Iterable[Any], into: dict[str, datetime]) -> None:
    """The last message (a ``MESSAGED`` status) per contact of ``(contact, status, claimed_at)`` rows."""
    latest: dict[str, Any] = {}
    for contact, status, at in rows:
        if status in MESSAGED and at is not None and (contact not in latest or at > latest[contact]):
            latest[contact] = at
    for contact, at in latest.items():
        into[contact] = aware(at)  # type: ignore[assignment]


@lru_cache(maxsize=2)
def history_statements(as_json: bool) -> tuple[Any, Any, Any, Any]:
    """The four queries of :meth:`Ledger.history`, built once per process (where SQLite cannot
    take :class:`HistoryJson`'s one statement, and on other databases).

    Planning asks once per chunk of 500 carts. An ``in_(list)`` built and compiled 500 bind
    parameters on every call; an expanding parameter is compiled once but still renders 500
    markers per call. On SQLite the list travels as one JSON parameter read by ``json_each``
    (about a third of the time); other databases use the expanding parameter.
    """
    message = Message.__table__  # type: ignore[attr-defined]
    suppression = Suppression.__table__  # type: ignore[attr-defined]

    def one_of(name: str) -> Any:
        return _one_of(name, as_json)

    steps = select(message.c.cart_key, message.c.step, message.c.channel, message.c.status,
                   message.c.claimed_at, message.c.variant, message.c.sequence).where(message.c.cart_key.in_(one_of("keys")))
    # The address's (or number's) messages, by its index alone: the status is checked by the
    # caller. With ``status IN (...)`` in the query, SQLite (which cannot tell how long a JSON
    # list is) took the status index and read every message of the ledger for each chunk of
    # carts: ~100 ms a chunk at 300,000 messages, growing with the ledger.
    last = select(message.c.email, message.c.status, message.c.claimed_at).where(message.c.email.in_(one_of("emails")))
    # With its reason, for a skip's detail: read only for the few hashes that are suppressed.
    suppressed = select(suppression.c.email_hash, suppression.c.reason).where(
        suppression.c.email_hash.in_(one_of("hashes")))
    last_phone = select(message.c.phone, message.c.status, message.c.claimed_at).where(
        message.c.phone.in_(one_of("phones")))
    return steps, last, suppressed, last_phone


class HistoryJson:
    """:meth:`Ledger.history`'s four lookups on SQLite as one statement, run on the driver's cursor.

    Each list (the chunk's cart keys, addresses, contact hashes, numbers) is one JSON parameter,
    and each lookup ``json_each(?) AS wanted CROSS JOIN <table>``: SQLite probes the table's
    index value by value, where ``IN (SELECT value FROM json_each(?))`` first sorted each list
    into a temporary index. The SQL text is fixed, so the driver's statement cache prepares it
    once a connection; no SQLAlchemy statement is built, compiled or wrapped per chunk, and a
    row is a plain tuple. The lists must hold each value once (a join, unlike ``IN``, returns a
    row per copy) and no NUL (:func:`cartrescue.scratch.json_keys` gives None then: the caller
    asks through :func:`history_statements` instead). A row: ``(which, value, step, channel,
    status, claimed_at, variant, sequence)``, ``which`` 0 for a cart's step, 1 an address's
    message, 2 a suppressed hash (its reason as ``status``), 3 a number's message; what a lookup
    does not read is NULL.
    """

    def __init__(self, dialect: Any) -> None:
        message = Message.__table__.name  # type: ignore[attr-defined]
        suppression = Suppression.__table__.name  # type: ignore[attr-defined]
        joined = "FROM json_each(?) AS wanted CROSS JOIN {table} AS t WHERE t.{column} = wanted.value"
        self.sql = " UNION ALL ".join((
            "SELECT 0, t.cart_key, t.step, t.channel, t.status, t.claimed_at, t.variant, t.sequence "
            + joined.format(table=message, column="cart_key"),
            "SELECT 1, t.email, NULL, NULL, t.status, t.claimed_at, NULL, NULL " + joined.format(table=message, column="email"),
            "SELECT 2, t.email_hash, NULL, NULL, t.reason, NULL, NULL, NULL "
            + joined.format(table=suppression, column="email_hash"),
            "SELECT 3, t.phone, NULL, NULL, t.status, t.claimed_at, NULL, NULL " + joined.format(table=message, column="phone"),
        ))
        # What SQLAlchemy makes of a stored time (its text on SQLite), then aware as the handle reads it.
        claimed_at = Message.__table__.c.claimed_at.type  # type: ignore[attr-defined]
        self._moment = claimed_at.dialect_impl(dialect).result_processor(dialect, None)

    def moments(self) -> Callable[[Any], datetime | None]:
        """A reader of one lookup's stored times: each distinct text is read once (a run's claims
        of one group share their time)."""
        read: dict[Any, datetime | None] = {}
        process = self._moment

        def moment(raw: Any) -> datetime | None:
            found = read.get(raw)
            if found is None:
                found = read[raw] = aware(process(raw) if process is not None else raw)
            return found

        return moment


def one_of_chunk(statements: Sequence[Any], build: Callable[[bool], Sequence[Any]], which: int, name: str,
                  chunk: list[str], as_json: bool) -> tuple[Any, dict[str, Any]]:
    """Statement ``which`` of ``statements`` and its parameters for ``chunk``, bound as ``name``:
    one JSON list where ``as_json``, unless a value holds a NUL, which SQLite's json_each ends the
    string at (a cart id ``a\\x00b`` looked up as ``a``: its own steps not found, step 1 planned
    again every day); such a chunk goes through the expanding list of ``build(False)``."""
    if as_json:
        if "\x00" not in "".join(chunk):
            return statements[which], {name: json.dumps(chunk)}
        return build(False)[which], {name: chunk}
    return statements[which], {name: chunk}


def _one_of(name: str, as_json: bool) -> Any:
    """The right side of ``IN`` for a list bound as ``name`` (see :func:`history_statements`)."""
    if as_json:
        return select(column("value")).select_from(func.json_each(bindparam(name)))
    return bindparam(name, expanding=True)


@lru_cache(maxsize=2)
def answered_statement(as_json: bool) -> Any:
    """:meth:`Ledger.survey_answered`'s query, built once per process (asked once per chunk)."""
    table = SurveyAnswer.__table__  # type: ignore[attr-defined]
    return select(table.c.cart_key).where(table.c.cart_key.in_(_one_of("keys", as_json)))


def lock_is(run_id: int, name: str = "run") -> Any:
    """``the lock name names run_id``, as a condition inside another statement (the fence)."""
    lock = RunLock.__table__  # type: ignore[attr-defined]
    return select(lock.c.run_id).where(lock.c.name == name).scalar_subquery() == run_id


@lru_cache(maxsize=4)
def _claim_statement(dialect: str) -> Any:
    """``INSERT ... SELECT <values> WHERE <this run holds the lock>``, ignoring taken keys.

    One statement per claimed row, executed as one ``executemany``: the fencing check and the
    insert cannot be separated by another run taking the lock over.
    """
    message = Message.__table__  # type: ignore[attr-defined]
    names = ("cart_key", "cart_id", "email", "step", "channel", "transport", "template", "variant", "tier", "score",
             "message_id", *REPORT_COLUMNS, "phone")
    columns = [message.c[name] for name in names]
    values = [bindparam(f"c_{name}", type_=message.c[name].type) for name in names]
    extra = {"status": literal("claimed"), "reply": literal(""), "attempts": literal(1),
             "run_id": bindparam("c_run", type_=message.c.run_id.type),
             "claimed_at": bindparam("c_at", type_=message.c.claimed_at.type)}
    source = select(*values, *extra.values()).where(_lock_is_param())
    statement = insert(message).from_select([*columns, *(message.c[name] for name in extra)], source)
    if dialect == "sqlite":
        return statement.prefix_with("OR IGNORE")
    if dialect in ("mysql", "mariadb"):
        return statement.prefix_with("IGNORE")
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        return pg_insert(message).from_select([*columns, *(message.c[name] for name in extra)],
                                              source).on_conflict_do_nothing()
    return statement


def _lock_is_param() -> Any:
    lock = RunLock.__table__  # type: ignore[attr-defined]
    return select(lock.c.run_id).where(lock.c.name == bindparam("c_lock")).scalar_subquery() == bindparam("c_run")


RETURNING_UP_TO = 8  # claims per transaction up to which each is inserted with RETURNING
#: Claims per transaction up to which SQLite inserts them all in one statement (its parameters,
#: 21 a row and 2, stay below 999, the limit of SQLite builds before 3.32).
_GROUP_UP_TO = 32


class RawStatements:
    """The per-message statements of a run, compiled once and run through the driver.

    Claims and outcomes are written a few at a time for as long as a run sends, so SQLAlchemy's
    per-row work (building parameter dicts, type processing, compiling an ``IN`` list) was a
    measurable part of a message's cost. Here the SQL text is compiled once per dialect and the
    rows go to the driver's ``executemany`` as plain tuples (or dicts, for drivers with named
    parameters); the one value that needs type processing, the timestamp, is processed once per
    group. The statements are the same as SQLAlchemy would run, fence included.
    """

    def __init__(self, dialect: Any) -> None:
        message = Message.__table__  # type: ignore[attr-defined]
        # The dialect's own type: on SQLite its processor writes the text SQLAlchemy writes and
        # binds ('2026-11-20 23:00:00.000000'). The generic type's left an aware datetime, which
        # the driver wrote as '… 23:00:00+00:00': a claim at exactly a second then sorted before
        # that second, and a day's budget missed a claim made at the shop's midnight.
        self._moment = message.c.claimed_at.type.dialect_impl(dialect).bind_processor(dialect)
        claim = _claim_statement(dialect.name).compile(dialect=dialect)
        self.claim, self._claim_order, self._claim_defaults = self._text(claim)
        # INSERT ... RETURNING (PostgreSQL; SQLite from 3.35): the claim and its id in one statement.
        self.claim_returning: str | None = None
        if dialect.name == "postgresql" or (dialect.name == "sqlite" and sqlite_version() >= (3, 35)):
            self.claim_returning = self.claim + " RETURNING id, cart_key, step, channel"
        record = (update(message).where(message.c.id == bindparam("b_id"))
                  .values(status=bindparam("b_status"), reply=bindparam("b_reply"), message_id=bindparam("b_mid"),
                          finished_at=bindparam("b_at"))).compile(dialect=dialect)
        self.record, self._record_order, _ = self._text(record)
        decision = CartDecision.__table__  # type: ignore[attr-defined]
        names = ("cart_key", "email", "action", "reason", "step", "tier", "score", "decided_at", "run_id")
        compiled = insert(decision).values({name: bindparam(name) for name in names}).compile(dialect=dialect)
        self.decision, self.decision_order, _ = self._text(compiled)
        self._dialect = dialect
        self._claimed: dict[int, tuple[str, tuple[str, ...] | None]] = {}
        # Positional drivers (SQLite's): a claim row is the request's fields as one C call
        # (``attrgetter``) plus the values fixed for the group, and an outcome row a plain
        # tuple, where a dict per row read back name by name cost ~40 Python steps a claim.
        self._claim_fields: Callable[[ClaimRequest], tuple[Any, ...]] | None = None
        self._claim_tail: tuple[str, ...] = ()
        prefix = tuple("c_" + name for name in _CLAIM_FIELDS)
        if self._claim_order is not None and self._claim_order[:len(prefix)] == prefix and \
                not set(self._claim_order[len(prefix):]) & set(prefix):
            self._claim_fields = attrgetter(*_CLAIM_FIELDS)
            self._claim_tail = self._claim_order[len(prefix):]
        self._record_plain = self._record_order == ("b_status", "b_reply", "b_mid", "b_at", "b_id")
        # SQLite with RETURNING: a group's claims as one INSERT of a VALUES list (claim_group).
        self._group_head = self._group_fence = ""
        self._group_width = 0
        self._groups: dict[int, str] = {}
        if dialect.name == "sqlite" and self.claim_returning is not None and self._claim_fields is not None \
                and self._claim_tail[-2:] == ("c_lock", "c_run"):
            head, _, rest = self.claim.partition(" SELECT ")
            values, where, fence = rest.partition("\nWHERE ")
            width = len(prefix) + len(self._claim_tail) - 2  # the row's values; the fence's two after them
            if where and values.count("?") == width:
                self._group_head, self._group_fence, self._group_width = head, "WHERE " + fence, width

    @staticmethod
    def _text(compiled: Any) -> tuple[str, tuple[str, ...] | None, dict[str, Any]]:
        order = tuple(compiled.positiontup) if compiled.positional else None
        fixed = {name: bind.effective_value for name, bind in compiled.binds.items() if not bind.required}
        return compiled.string, order, fixed

    def rows(self, order: tuple[str, ...] | None, rows: list[dict[str, Any]]) -> list[Any]:
        if order is None:
            return rows
        return [tuple(row[name] for name in order) for row in rows]

    def moment(self, at: datetime) -> Any:
        value = naive(at)
        return self._moment(value) if self._moment is not None else value

    def claim_rows(self, requests: Sequence[ClaimRequest], run_id: int, at: Any, lock_name: str) -> list[Any]:
        fixed = dict(self._claim_defaults, c_run=run_id, c_at=at, c_lock=lock_name)
        fields = self._claim_fields
        if fields is not None:
            tail = tuple(fixed[name] for name in self._claim_tail)
            return [fields(r) + tail for r in requests]
        return self.rows(self._claim_order, [
            dict(fixed, c_cart_key=r.cart_key, c_cart_id=r.cart_id, c_email=r.email, c_step=r.step,
                 c_channel=r.channel, c_transport=r.transport, c_template=r.template, c_variant=r.variant,
                 c_tier=r.tier, c_score=r.score, c_message_id=r.message_id, c_sequence=r.sequence,
                 c_locale=r.locale, c_customer_id=r.customer_id, c_cart_value=r.cart_value, c_phone=r.phone)
            for r in requests])

    def record_rows(self, outcomes: Iterable[tuple[int, str, str, str]], at: Any) -> list[Any]:
        if self._record_plain:
            return [(s, r[:1000], m, at, i) for i, s, r, m in outcomes]
        return self.rows(self._record_order, [dict(b_id=i, b_status=s, b_reply=r[:1000], b_mid=m, b_at=at)
                                               for i, s, r, m in outcomes])

    def claim_group(self, rows: list[Any]) -> tuple[str, tuple[Any, ...]] | None:
        """One statement that claims all of ``rows`` (:meth:`claim_rows`'s) and returns ``id,
        cart_key, step, channel`` of those inserted, with its parameters; None where the dialect
        has no such statement (not SQLite, or one before RETURNING) or the group is too large.

        The same ``INSERT OR IGNORE`` and fence as :attr:`claim_returning`, over a ``VALUES``
        list: a row inserted by a statement of its own cost ~57,000 instructions more (the
        statement's run, its six b-tree cursors opened, the fence's lookup; groups of 8). A key
        twice in a group is claimed once, as it was row by row; the fence is one condition of
        the statement, so a run that lost its lock inserts none of the rows.
        """
        size = len(rows)
        if not self._group_width or size > _GROUP_UP_TO:
            return None
        sql = self._groups.get(size)
        if sql is None:
            row = "(" + ", ".join("?" * self._group_width) + ")"
            sql = self._groups[size] = (f"{self._group_head} SELECT * FROM (VALUES {', '.join([row] * size)})\n"
                                        f"{self._group_fence} RETURNING id, cart_key, step, channel")
        width = self._group_width
        return sql, (*chain.from_iterable(r[:width] for r in rows), *rows[0][width:])

    def claimed(self, cart_keys: Sequence[str]) -> tuple[str, Any]:
        """``SELECT id, cart_key, step, channel, run_id, status`` of every message of ``cart_keys``.

        The caller keeps its own run's open claims. The query asks for nothing but the keys, so
        that every database looks them up by ``cart_key``: with ``run_id = ?`` in it, SQLite took
        the run's index and read every row the run had claimed so far, for every group of claims
        (a run's claims cost grew with the square of its messages).
        """
        size = len(cart_keys)
        if size not in self._claimed:
            message = Message.__table__  # type: ignore[attr-defined]
            keys = [bindparam(f"k{n}", type_=message.c.cart_key.type) for n in range(size)]
            compiled = select(message.c.id, message.c.cart_key, message.c.step, message.c.channel,
                              message.c.run_id, message.c.status).where(
                message.c.cart_key.in_(keys)).compile(dialect=self._dialect)
            self._claimed[size] = self._text(compiled)[:2]
        sql, order = self._claimed[size]
        values: dict[str, Any] = {f"k{n}": key for n, key in enumerate(cart_keys)}
        if order is None:
            return sql, values
        return sql, tuple(values[name] for name in order)


#: The fields of a :class:`ClaimRequest`, in the order the claim statement binds them (``c_`` + name).
_CLAIM_FIELDS: tuple[str, ...] = ("cart_key", "cart_id", "email", "step", "channel", "transport", "template",
                                  "variant", "tier", "score", "message_id", "sequence", "locale", "customer_id",
                                  "cart_value", "phone")


def chunks(items: list[Any], size: int) -> Iterator[list[Any]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]
