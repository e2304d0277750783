"""The ledger: cartrescue's own state, in SQLModel tables (SQLite by default, any SQLAlchemy URL).

Owns the persisted tables and the four guarantees cron users need:
- **claim before deliver**: a message row is inserted under a unique key (cart key, step,
  channel) *before* delivery, so a second claim of the same step fails, whatever happens later;
- **record after deliver**: the row is updated with the outcome; a crash in between leaves it
  ``claimed``, which later runs report and do not resend (at most once);
- **one run at a time**: a lock row keeps overlapping cron runs from both delivering;
- **one text or call a day per number**: with the shop's day, a claim on a channel that reaches
  the customer's number is refused when that number already had a message that day, whichever
  shard, worker or host claimed it (the planner's own check sees only its shard's carts).

It must not decide eligibility or talk to channels; it answers questions and stores answers.
All times are stored and returned as aware UTC (SQLModel's UTCDateTime columns).
"""

from __future__ import annotations

import json
import os
import socket
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from functools import lru_cache
from hashlib import blake2b
from itertools import chain
from operator import attrgetter
from pathlib import Path
from typing import Any, overload

from sqlalchemy import (Index, Integer, UniqueConstraint, and_, bindparam, cast, column, delete, event, func, insert,
                        literal, or_, select, update)
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError, ProgrammingError, SQLAlchemyError
from sqlmodel import Field, SQLModel, create_engine

from cartrescue.drivers import STATEMENT_WAIT, Silence, missing_driver, stopped_answering
from cartrescue.errors import LedgerError, LockHeld, LockLost
from cartrescue.model import quick_init
from cartrescue.sqlite_url import sqlite_file

#: ``owns(email, cart_key, phone)``: does a shard own this message's cart? (cartrescue.shards.Shard.owns:
#: by the address, else the number of a customer without one, else the cart key)
Owner = Callable[[str | None, str, str | None], bool]
#: Statuses of a step with no known outcome: the process that claimed it may have delivered it.
UNCONFIRMED = ("claimed", "unconfirmed")
#: Statuses of a message the customer may have received: its incentive code is spent (``forget``
#: keeps it, ``codes list`` counts it active until its expiry, then expired).
MAYBE_DELIVERED = ("sent", *UNCONFIRMED)
#: Statuses that count as "the address got a message" (one per day) -- a permanent refusal too:
#: the relay took the attempt, and the next step must not follow the same day.
MESSAGED = ("claimed", "unconfirmed", "sent", "failed_permanent")
#: The rows ``report`` counts: messages that went out (an ``unconfirmed`` one reached the relay,
#: whose reply was lost: it counts as done, and most likely reached the customer) and held-out carts.
REPORTED = ("sent", "unconfirmed", "held_out")
#: The channels that reach the customer's number, and so are claimed at most once a day per number
#: (:meth:`Ledger.claim`'s ``day``); the others go to an address, which one shard owns.
NUMBER_CHANNELS = frozenset({"sms", "call-list"})
#: The channels that go to the customer's address (claimed with it): the e-mail, and the webhook
#: document the shop's own mailer sends from the rendered e-mail parts, survey links included.
ADDRESS_CHANNELS = frozenset({"email", "webhook"})
#: PostgreSQL advisory locks of numbers being claimed are ``(NUMBER_LOCKS, hash of the number)``.
NUMBER_LOCKS = 0x63724E4F  # "crNO"
#: MariaDB's named lock around taking a run lock or reserving a budget (:meth:`Ledger._locking`),
#: one per database (a server may hold several shops' ledgers), and how long to wait for it (s).
_LOCKING = "LEFT(CONCAT('cartrescue.locking:', DATABASE()), 64)"
LOCKING_WAIT = 30


def _naive(moment: datetime) -> datetime:
    """What the columns take: aware UTC (SQLModel's UTCDateTime stores it portably)."""
    return moment.astimezone(timezone.utc)


@overload
def _aware(moment: datetime) -> datetime: ...
@overload
def _aware(moment: None) -> None: ...
def _aware(moment: datetime | None) -> datetime | None:
    """A time read from the ledger (naive UTC on SQLite and MariaDB) as an aware UTC time."""
    if moment is None:
        return None
    return moment.replace(tzinfo=timezone.utc) if moment.tzinfo is None else moment.astimezone(timezone.utc)


@dataclass(frozen=True, slots=True)
class TierUse:
    """A tier's claims of a period (:meth:`Ledger.tier_used_since`): ``total``, all of them;
    ``own``, those of the asking shard's addresses (``total`` for an unsharded run)."""

    total: int
    own: int
    #: What the other shards of the layout, still running, may yet claim of what they reserved
    #: (:meth:`Ledger.reserve_day_budget`); 0 where nothing was reserved.
    pending: int = 0


class Message(SQLModel, table=True):
    """One message of one step to one cart: claimed, then sent or failed."""

    __tablename__ = "cr_message"
    __table_args__ = (
        UniqueConstraint("cart_key", "step", "channel", name="uq_cr_message_cart_step_channel"),
        Index("ix_cr_message_email_claimed", "email", "claimed_at"),
        Index("ix_cr_message_phone_claimed", "phone", "claimed_at"),
    )

    id: int | None = Field(default=None, primary_key=True)
    cart_key: str = Field(max_length=191)
    cart_id: str = Field(max_length=191)
    email: str | None = Field(default=None, max_length=254)
    step: int
    channel: str = Field(max_length=32)  # email | call-list | sms | webhook
    transport: str = Field(default="", max_length=32)  # outbox | smtp | call-list
    template: str = Field(default="", max_length=191)
    variant: str | None = Field(default=None, max_length=64)
    tier: str | None = Field(default=None, max_length=64)
    score: float | None = None
    status: str = Field(default="claimed", max_length=32, index=True)
    reply: str = Field(default="", max_length=1000)
    message_id: str = Field(default="", max_length=255)
    attempts: int = 1
    run_id: int | None = Field(default=None, index=True)
    claimed_at: datetime
    finished_at: datetime | None = None
    # The customer's number in E.164 where the shop sends SMS (one message a day counts every
    # channel of an address or a number); NULL in older rows and for shops without SMS.
    phone: str | None = Field(default=None, max_length=32)
    # For `report` (filled at claim time; NULL in rows claimed before these columns existed):
    sequence: str | None = Field(default=None, max_length=64)
    locale: str | None = Field(default=None, max_length=35)  # the customer's, as the source gave it
    customer_id: str | None = Field(default=None, max_length=191)  # attribution matches orders by it too
    cart_value: str | None = Field(default=None, max_length=40)  # cart total in shop.currency (Decimal text)


#: The columns ``report`` needs, filled at claim time from :class:`ClaimRequest`.
REPORT_COLUMNS = ("sequence", "locale", "customer_id", "cart_value")


class Suppression(SQLModel, table=True):
    """An address or a phone number that must never get a message again (unsubscribed, bounced,
    replied STOP, imported)."""

    __tablename__ = "cr_suppression"
    id: int | None = Field(default=None, primary_key=True)
    email_hash: str = Field(max_length=64, unique=True)  # contacts.contact_hash: of the address or the E.164 number
    reason: str = Field(default="", max_length=64)
    source: str = Field(default="", max_length=191)
    created_at: datetime


class Run(SQLModel, table=True):
    """One invocation of ``run``: when, in which mode, and what it counted."""

    __tablename__ = "cr_run"
    id: int | None = Field(default=None, primary_key=True)
    mode: str = Field(max_length=16)
    now: datetime
    started_at: datetime
    finished_at: datetime | None = None
    # running | ok | failed | locked | lock_lost | interrupted | killed (closed by a later run)
    status: str = Field(default="running", max_length=16)
    sent: int = 0
    failed: int = 0
    skipped: int = 0
    deferred: int = 0
    problems: int = 0
    host: str = Field(default="", max_length=191)
    pid: int = 0
    process: str | None = Field(default=None, max_length=64)  # which process had the pid (process_identity)
    heartbeat_at: datetime | None = None  # refreshed while the run lives (see Ledger.heartbeat)
    shard: str = Field(default="", max_length=16)  # "K/N" for one shard of run --workers/--shard
    shop: str | None = Field(default=None, max_length=191)  # the shop's name and sender (Config.shop_identity)


class RunLock(SQLModel, table=True):
    """The runs holding a lock, with a heartbeat to detect a crashed holder.

    ``name`` is ``run`` for an unsharded run, ``run:K/N`` for shard K of N (cartrescue.shards):
    one row per shard, and never an unsharded run beside a sharded one (:meth:`Ledger.lock`).
    """

    __tablename__ = "cr_lock"
    name: str = Field(primary_key=True, max_length=32)
    run_id: int
    host: str = Field(max_length=191)
    pid: int
    process: str | None = Field(default=None, max_length=64)  # which process had the pid (process_identity)
    acquired_at: datetime
    heartbeat_at: datetime


class BudgetHold(SQLModel, table=True):
    """What a running shard reserved of a tier's day budget (:meth:`Ledger.reserve_day_budget`).

    Counted only while its run holds its lock: a run that ended has its claims in ``cr_message``
    instead, and one that crashed claims no more (fencing). Rows of runs that no longer hold a
    lock are deleted by the next reservation, so the table holds a row per running shard and tier.
    """

    __tablename__ = "cr_budget_hold"
    run_id: int = Field(primary_key=True)
    tier: str = Field(primary_key=True, max_length=64)
    day: datetime = Field(primary_key=True)  # the shop's local midnight the budget is of
    amount: int


class CartDecision(SQLModel, table=True):
    """The latest decision per cart: "why did (not) this cart get a message?" survives the run."""

    __tablename__ = "cr_decision"
    cart_key: str = Field(primary_key=True, max_length=191)
    email: str | None = Field(default=None, max_length=254)
    action: str = Field(max_length=16)
    reason: str = Field(max_length=64)
    step: int | None = None
    tier: str | None = Field(default=None, max_length=64)
    score: float | None = None
    decided_at: datetime
    run_id: int | None = None


class Code(SQLModel, table=True):
    """An incentive code of a pool: free until allocated to one claimed message, then never again.

    ``code`` is unique across pools and ``claim_id`` (the ``cr_message`` id) is unique, so a code
    goes to at most one message and a message gets at most one code. ``withdrawn_at``: a free
    code the shop took out of its pool file, never handed out while it stays out.
    ``replaced_claim_id``: the claim a code held by no message (``claim_id`` ``-id``, never free
    again: the customer may have it) was given with: until a retry of its message came after the
    code's expiry and got a fresh one, or until ``forget`` erased the address of its delivered
    message (whose row stays). The report counts an order using it for that message.
    Logic: cartrescue.compose.incentives, cartrescue.lifecycle.
    """

    __tablename__ = "cr_code"
    __table_args__ = (Index("ix_cr_code_pool_free", "pool", "claim_id"),)

    id: int | None = Field(default=None, primary_key=True)
    pool: str = Field(max_length=32)
    code: str = Field(max_length=64, unique=True)
    origin: str = Field(default="file", max_length=16)  # file | generated
    kind: str = Field(default="", max_length=16)  # percent | fixed | free_shipping
    value: str = Field(default="", max_length=32)
    created_at: datetime
    claim_id: int | None = Field(default=None, unique=True)
    cart_key: str | None = Field(default=None, max_length=191)
    email: str | None = Field(default=None, max_length=254)
    step: int | None = None
    allocated_at: datetime | None = None
    expires_at: datetime | None = None
    exported_at: datetime | None = None
    withdrawn_at: datetime | None = None
    replaced_claim_id: int | None = None  # added to older ledgers when they open (_add_missing_columns)


class SurveyAnswer(SQLModel, table=True):
    """Why a customer left a cart, as they answered on the survey page: one row per cart.

    A second answer for the same cart replaces the first (``answers`` counts them): the customer
    corrects a mis-click, and counts stay one per cart. ``text`` is the customer's own line,
    stored as plain text (control characters removed, at most 500 characters); whatever shows it
    must escape it. Logic: cartrescue.survey.
    """

    __tablename__ = "cr_survey"
    __table_args__ = (Index("ix_cr_survey_answered_at", "answered_at"),)

    id: int | None = Field(default=None, primary_key=True)
    cart_key: str = Field(max_length=191, unique=True)
    step: int
    reason: str = Field(max_length=32)
    text: str = Field(default="", max_length=500)
    locale: str = Field(default="", max_length=16)
    tier: str | None = Field(default=None, max_length=64)
    variant: str | None = Field(default=None, max_length=64)
    email: str | None = Field(default=None, max_length=254)
    answers: int = 1
    first_answered_at: datetime
    answered_at: datetime



class Promotion(SQLModel, table=True):
    """An A/B winner promoted by ``report`` (``report.auto_promote``): every stream that starts
    later gets ``variant`` at that step (one already in another arm finishes in it). Small and
    kept: removing a row ends the promotion."""

    __tablename__ = "cr_promotion"
    __table_args__ = (UniqueConstraint("sequence", "step", name="uq_cr_promotion_sequence_step"),)

    id: int | None = Field(default=None, primary_key=True)
    sequence: str = Field(max_length=64)
    step: int
    variant: str = Field(max_length=64)
    probability: float  # the winner's P(best) when promoted
    recipients: int  # the variant's recipients when promoted
    promoted_at: datetime


class SendTest(SQLModel, table=True):
    """A message ``send-test`` sent to the shop's own address: never a step of any cart.

    Kept apart from ``cr_message`` on purpose: nothing that plans (history, one message a day),
    limits (the hourly quota), reports or checks (unconfirmed claims, staleness) reads this
    table, so a test can never stand in for a reminder. Logic: cartrescue.send_test.
    """

    __tablename__ = "cr_send_test"
    id: int | None = Field(default=None, primary_key=True)
    email: str = Field(max_length=254)  # where the test went (the owner's address)
    cart_key: str = Field(default="", max_length=191)  # the cart it was rendered from ("" = the sample)
    cart_id: str = Field(default="", max_length=191)
    step: int
    variant: str | None = Field(default=None, max_length=64)
    locale: str = Field(default="", max_length=35)
    template: str = Field(default="", max_length=191)
    transport: str = Field(default="", max_length=32)  # smtp | outbox
    status: str = Field(default="sending", max_length=32)  # sending, then sent | failed_transient | failed_permanent
    reply: str = Field(default="", max_length=1000)
    message_id: str = Field(default="", max_length=255)
    created_at: datetime
    finished_at: datetime | None = None


class Inbound(SQLModel, table=True):
    """An inbound message the provider's webhook delivered (an SMS reply) or a mailbox held (an
    unsubscribe mail): kept by its provider id (a mail's by its Message-ID) so that a replayed
    request is refused and a mail read once is skipped, with the hash of the number (or address)
    and what was done. ``forget`` empties the hash and keeps the row; a refused mail is kept under
    its Message-ID's hash from the start (cartrescue.unsubscribe_mail.forgotten_key)."""

    __tablename__ = "cr_inbound"
    id: int | None = Field(default=None, primary_key=True)
    provider_id: str = Field(max_length=191, unique=True)  # Twilio's MessageSid, or the gateway's id
    phone_hash: str = Field(default="", max_length=64)
    action: str = Field(default="", max_length=32)  # suppressed | ignored | refused (a mail, checked again)
    received_at: datetime


TABLES: list[type[SQLModel]] = [Message, Suppression, Run, RunLock, CartDecision, Code, SurveyAnswer, Promotion,
                                SendTest, Inbound, BudgetHold]
#: The tables a command that only reads may look at: a ledger without the others is not "older"
#: (``cr_budget_hold`` is a sending shard's alone, made as it opens the ledger to write), so the
#: version that added one does not stop every report and doctor until the next run.
READ_TABLES: list[type[SQLModel]] = [model for model in TABLES if model is not BudgetHold]
#: The values of a cart, as its source read them, that tables keep (``cart_key`` is its source
#: and id, :attr:`cartrescue.model.Cart.key`), and the tables keeping them. ``cr_survey``'s
#: locale is the template folder its message was rendered in, not the cart's.
CART_VALUES = ("cart_key", "cart_id", "email", "customer_id", "locale")
_CART_TABLES: tuple[type[SQLModel], ...] = (Message, CartDecision, Code, SendTest)
#: The names and values of the config that tables keep, each in every column of that name: a
#: tier's name, a sequence's, a step's template, an A/B arm's, a code pool's, the value of a
#: pool's offer (``cr_code.value``, as text) and the shop each run was for (``cr_run.shop``,
#: :attr:`cartrescue.config.Config.shop_identity`).
CONFIG_VALUES = ("tier", "sequence", "template", "variant", "pool", "value", "shop")


#: MySQL's and MariaDB's collations of utf8mb4 that compare text as PostgreSQL and SQLite do,
#: code point by code point, best first: ``utf8mb4_bin`` (MySQL 5.7 has no other) still takes
#: ``c1`` and ``c1 `` for one (it pads with blanks), MariaDB's ``nopad_bin`` and MySQL 8's
#: ``0900_bin`` do not.
BINARY_COLLATIONS = ("utf8mb4_nopad_bin", "utf8mb4_0900_bin", "utf8mb4_bin")


def binary_collation(known: Iterable[str]) -> str:
    """The best of :data:`BINARY_COLLATIONS` among a server's ``known`` collations."""
    have = set(known)
    return next((name for name in BINARY_COLLATIONS if name in have), BINARY_COLLATIONS[-1])


def _narrowest(names: tuple[str, ...], tables: Sequence[type[SQLModel]]) -> dict[str, int]:
    """The longest each of ``names`` may be, in characters: the narrowest column of that name
    among ``tables``."""
    limits: dict[str, int] = {}
    for model in tables:
        for kept in model.__table__.columns:  # type: ignore[attr-defined]
            if kept.name in names:
                length = kept.type.length
                limits[kept.name] = min(limits.get(kept.name, length), length)
    return limits


@lru_cache(maxsize=1)
def cart_value_limits() -> dict[str, int]:
    """The longest each of :data:`CART_VALUES` may be, in characters: the narrowest column that
    keeps it. PostgreSQL refuses a longer value and MariaDB too (or cuts it, as its sql_mode
    says), which stopped the whole run at that cart's claim while SQLite kept it: a source
    checks a cart's values against these before any claim (cartrescue.sources.values), so a
    cart too long for the ledger costs itself alone, on every kind of ledger."""
    return _narrowest(CART_VALUES, _CART_TABLES)


@lru_cache(maxsize=1)
def config_value_limits() -> dict[str, int]:
    """The longest each of :data:`CONFIG_VALUES` may be, in characters: the narrowest column of
    its name in any table. A longer tier or sequence name stopped every run at its first claim
    on PostgreSQL (exit 2, after reading the carts), and MariaDB refused or cut it: the config
    refuses it as it loads instead (:meth:`cartrescue.config.Config.ledger_names`)."""
    return _narrowest(CONFIG_VALUES, TABLES)


def shops_taking_turns(shops: Sequence[str]) -> list[str]:
    """The shops of ``shops`` (newest first) if they take turns: ``[]`` when one shop has the ledger.

    Two shops on one ledger share its lock, its claims and its "one message a day": a cart id or
    an address of one is taken for the other's, and their reminders are lost without a word.
    Their delivering runs then alternate; a shop that was renamed, or given another sender,
    switches once. So: the shops, if they switch twice or more.
    """
    switches = sum(1 for newer, older in zip(shops, shops[1:]) if newer != older)
    return sorted(set(shops)) if switches >= 2 else []


class Claimed(dict[tuple[str, int, str], int]):
    """What :meth:`Ledger.claim` won, ``{(cart_key, step, channel): message id}``, and ``refused``:
    the keys of texts and calls it did not claim because their number had a message that day."""

    refused: frozenset[tuple[str, int, str]] = frozenset()


@dataclass(slots=True)
class SentStep:
    step: int
    channel: str
    status: str
    at: datetime  # when it was claimed
    variant: str | None = None  # the A/B arm it went out in: later steps of its experiment keep it
    sequence: str | None = None  # the sequence it belongs to (whose experiment the variant is of)


@dataclass(frozen=True, slots=True)
class Promoted:
    """A promoted A/B winner of one step (a ``cr_promotion`` row): ``at`` is kept because the
    winner goes only to streams that start after it."""

    variant: str
    at: datetime


@dataclass(slots=True)
class History:
    """What the ledger knows about a chunk of carts and their addresses."""

    by_cart: dict[str, list[SentStep]] = field(default_factory=dict)
    last_by_email: dict[str, datetime] = field(default_factory=dict)
    suppressed: set[str] = field(default_factory=set)  # contact hashes (addresses and numbers)
    last_by_phone: dict[str, datetime] = field(default_factory=dict)  # E.164 -> last message, any channel


@quick_init
@dataclass(frozen=True, slots=True)
class ClaimRequest:
    cart_key: str
    cart_id: str
    email: str | None
    step: int
    channel: str
    transport: str
    template: str
    variant: str | None
    tier: str | None
    score: float | None
    message_id: str = ""  # known before the claim: the message is built first
    sequence: str | None = None
    locale: str | None = None
    customer_id: str | None = None
    cart_value: str | None = None
    phone: str | None = None  # E.164, where the shop sends SMS


def _sqlite_read_pragmas(dbapi_connection: Any, _record: Any) -> None:
    """A reader's (``Ledger(create=False)``): waits for a writer's lock, changes nothing.

    Every statement waits :data:`WRITE_LOCK_WAIT` for the lock, as a claim does (read when the
    connection opens, so that a test can shorten it)."""
    cursor = dbapi_connection.cursor()
    cursor.execute(f"PRAGMA busy_timeout={int(WRITE_LOCK_WAIT * 1000)}")
    cursor.close()


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    _sqlite_read_pragmas(dbapi_connection, _record)  # first: the next pragmas may wait for a lock
    cursor = dbapi_connection.cursor()
    # Switching a new file to WAL needs a moment alone with it, and SQLite answers "locked" at
    # once (no busy wait) while another process creates it: retry briefly.
    for attempt in range(100):
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            break
        except Exception as exc:  # sqlite3.OperationalError; the driver module is not imported here
            if "locked" not in str(exc) or attempt == 99:
                raise
            time.sleep(0.02)
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def _driver(conn: Any, statement: str, params: Any, *, many: bool = False) -> Any:
    """``statement`` on the driver's own cursor of SQLAlchemy connection ``conn``, in its transaction.

    What ``conn.exec_driver_sql`` does, without the ~20 µs of its events, context and result
    objects, for the statements a run executes per message (a claim, its outcome); on SQLite
    they run while the write lock is held. A driver error becomes SQLAlchemy's, as there, and a
    lost connection is invalidated, so that the next transaction opens a new one.
    """
    dbapi_connection = conn.connection.dbapi_connection
    cursor = dbapi_connection.cursor()
    try:
        if many:
            cursor.executemany(statement, params)
        else:
            cursor.execute(statement, params)
    except Exception as exc:
        dialect = conn.dialect
        if not isinstance(exc, dialect.loaded_dbapi.Error):
            raise
        lost = dialect.is_disconnect(exc, dbapi_connection, cursor)
        if lost:
            conn.invalidate(exc)
        raise DBAPIError.instance(statement, params, exc, dialect.loaded_dbapi.Error,
                                  connection_invalidated=lost, dialect=dialect) from exc
    return cursor


#: How long a SQLite writer waits for the write lock in all (as ``busy_timeout`` for the rest),
#: and its naps between attempts: 50 µs for the first 20, then doubled up to 2 ms.
WRITE_LOCK_WAIT = 30.0
_FIRST_NAP, _SHORT_NAPS, _LONGEST_NAP = 0.00005, 20, 0.002


def _write_lock(dbapi_connection: Any) -> None:
    """Begin a SQLite transaction holding the write lock (``BEGIN IMMEDIATE``), waiting in short naps.

    SQLite's own busy handler sleeps 1, 2, 5, 10 ms ... between attempts. Workers of one run on
    one SQLite ledger each commit a claim per message (~0.1 ms holding the lock), so they meet
    often, and each meeting cost the waiter at least a millisecond: ~25 % of a worker's time in
    a 2-worker send was spent asleep. Here the waiter tries again every 50 µs for about a
    millisecond, then after 100 µs, 200 ... up to 2 ms, for :data:`WRITE_LOCK_WAIT` seconds in
    all; the lock is taken before any statement of the transaction runs, so a failed attempt
    leaves nothing to undo.
    """
    nap = _FIRST_NAP
    deadline = 0.0
    attempts = 0
    while True:
        try:
            dbapi_connection.execute("BEGIN IMMEDIATE")
            return
        except Exception as exc:  # sqlite3.OperationalError; the driver module is not imported here
            if "locked" not in str(exc) and "busy" not in str(exc):
                raise
            now = time.monotonic()
            if not deadline:
                deadline = now + WRITE_LOCK_WAIT
            elif now > deadline:
                raise OperationalError("BEGIN IMMEDIATE", None, exc) from None  # as any statement's error
        time.sleep(nap)
        attempts += 1
        if attempts > _SHORT_NAPS:
            nap = min(nap * 2, _LONGEST_NAP)


def _finished_delivering(run: Any) -> Any:
    """``cr_run`` rows of delivering runs (``--send``, ``--outbox``) that ran to their end."""
    return (run.c.status == "ok") & (run.c.mode != "dry-run")


def _delivered_nothing(run: Any) -> Any:
    """``cr_run`` rows of runs that tried to deliver and got nothing out: every delivery failed."""
    return (func.coalesce(run.c.sent, 0) == 0) & (func.coalesce(run.c.failed, 0) > 0)


class RunsOver:
    """The runs of one process that are over (finished, or their lock's block ended), even where
    their rows could not say so (the ledger locked by another process), by ledger and run id: a
    row of this process's pid and identity is a live run's unless its run is one of these
    (:func:`_process_gone`).

    Each :class:`Ledger` is given one, else keeps its own. A process that runs more than once
    hands the same to the ledger of each run (the command line's, :func:`cartrescue.cli.runs_over`,
    serves all its commands), so that a later run takes over the lock row an earlier one could
    not remove, and does not wait ``lock_timeout`` for its heartbeat to go stale."""

    def __init__(self) -> None:
        self._over: set[tuple[str, int]] = set()

    def ended(self, ledger: str, run_id: int) -> None:
        """Run ``run_id`` of ``ledger`` (its engine's URL) is over, whatever its rows say."""
        self._over.add((ledger, int(run_id)))

    def going(self, ledger: str, run_id: int) -> None:
        """Run ``run_id`` of ``ledger`` goes (again: a caller may lock twice with one run)."""
        self._over.discard((ledger, int(run_id)))

    def over(self, ledger: str, run_id: int) -> bool:
        return (ledger, int(run_id)) in self._over


class Ledger:
    """A handle on the ledger database; create one per process."""

    def __init__(self, url: str, where: str = "ledger", *, create: bool = True,
                 runs_over: RunsOver | None = None, statement_wait: float | None = STATEMENT_WAIT) -> None:
        """``where``: what names the URL in an error that it cannot be opened (the config file
        and key, :meth:`cartrescue.config.Config.open_ledger`). ``runs_over``: this process's
        runs that are over (:class:`RunsOver`), shared with its other ledgers; None: its own.
        ``statement_wait``: seconds a statement on PostgreSQL or MySQL/MariaDB may go without an
        answer (``ledger.statement_wait``; None: no bound), see :class:`cartrescue.drivers.Silence`.

        ``create=False``: a command that only reads. It creates no table and upgrades nothing
        (no column added, no time rewritten): a read-only role cannot, and a ``doctor`` run
        against production must not change the schema under a running older cartrescue. What
        this version lacks there is in :attr:`behind` instead."""
        self.url = url
        self.runs_over = RunsOver() if runs_over is None else runs_over
        #: Why no ledger is there (an empty stand-in of :meth:`empty`), else None.
        self.absent: str | None = None
        #: The deadline of its statements, and whether its server stopped answering (None: SQLite).
        self.silence: Silence | None = None
        #: What an older ledger opened with ``create=False`` lacks (``cr_code``, ``cr_run.shard``).
        self.behind: list[str] = []
        #: Opened with ``create=False``: the error a run that records would stop with (exit 2),
        #: else None. Only a PostgreSQL search_path of no existing schema: it reads as an empty
        #: ledger, and a dry-run planned as a first run without a word (see :meth:`_no_schema`).
        self.refused: str | None = None
        self._json_each: bool | None = None  # see _json_lists
        self._raw: _RawStatements | None = None  # the per-message statements, compiled on first use
        self._writer: Any = None  # the connection of _message_transaction
        self._folder: Any = None  # the temporary folder of an empty stand-in (Ledger.empty)
        try:
            if url.startswith("sqlite"):
                self.engine: Engine = create_engine(url, connect_args={"timeout": WRITE_LOCK_WAIT})
                # Switching to WAL rewrites the file's header: a reader leaves an older file's mode.
                event.listen(self.engine, "connect", _sqlite_pragmas if create else _sqlite_read_pragmas)
            else:
                # A row lock held by a paused process must not hang this one for ever (unless the
                # URL's own options set lock_timeout), and the URL's options stay (cartrescue.pg_options).
                from sqlalchemy.engine import make_url

                from cartrescue.drivers import connect_deadline, statement_deadline

                parsed = make_url(url)
                args: dict[str, Any] = connect_deadline(parsed)  # a server that never greets: an error
                if url.startswith(("postgresql", "postgres")):
                    from cartrescue.pg_options import merged

                    args["options"] = merged(parsed, first="-c lock_timeout=15s")
                self.engine = create_engine(url, pool_pre_ping=True, connect_args=args)
                self.silence = statement_deadline(self.engine, parsed, statement_wait, f"{where} {self.safe_url()}")
            try:
                self.engine.connect().close()
            except (AttributeError, LookupError, TypeError, ValueError) as exc:
                # A driver that trips over an option of the URL before SQLAlchemy wraps anything
                # (PyMySQL's unknown charset is an AttributeError inside it): the URL's error.
                raise LedgerError(f"{where} {self.safe_url()}: cannot open: the URL's options: "
                                  f"{type(exc).__name__}: {exc}") from None
            if create:
                self._create_tables(TABLES)
                self._add_missing_columns(TABLES)
                self._binary_text(TABLES)
            else:
                self.behind = self._schema_gaps(READ_TABLES)
                if self._no_schema():
                    self.refused = f"{where} {self.safe_url()}: cannot open: {NO_SCHEMA}{NO_SCHEMA_HINT}"
        except (SQLAlchemyError, ModuleNotFoundError) as exc:
            silent = stopped_answering(exc)
            if silent is not None:  # connected, then no answer (the line names where and the URL)
                raise LedgerError(silent) from None
            driver = missing_driver(exc, "the ledger")
            if driver is not None:
                raise LedgerError(f"{where} {self.safe_url()}: cannot open: {driver}") from None
            reason = one_line(exc)
            if NO_SCHEMA in reason:  # PostgreSQL, a search_path of no existing schema
                reason += NO_SCHEMA_HINT
            if "unable to open database file" in reason:
                reason += why_no_file(self.url)
            raise LedgerError(f"{where} {self.safe_url()}: cannot open: {reason}") from None

    def _create_tables(self, models: list[type[SQLModel]]) -> None:
        """Create missing tables; two processes starting together may race, so retry."""
        tables = [model.__table__ for model in models]  # type: ignore[attr-defined]
        if self.engine.dialect.name == "sqlite":
            # IF NOT EXISTS makes the race harmless: check-then-create is not atomic across processes.
            from sqlalchemy.schema import CreateIndex, CreateTable

            with self.engine.begin() as conn:
                for table in tables:
                    conn.execute(CreateTable(table, if_not_exists=True))
            self._add_missing_columns(models)  # an index may be on a column an older ledger lacks
            _normalise_sqlite_moments(self.engine, tables)
            with self.engine.begin() as conn:
                for table in tables:
                    for index in table.indexes:
                        conn.execute(CreateIndex(index, if_not_exists=True))
            return
        for attempt in range(5):
            try:
                SQLModel.metadata.create_all(self.engine, tables=tables)
                return
            except (OperationalError, IntegrityError, ProgrammingError):
                if attempt == 4:
                    raise
                time.sleep(0.2 * (attempt + 1))

    def _add_missing_columns(self, models: list[type[SQLModel]]) -> None:
        """Bring a ledger made by an older cartrescue up to date: add the columns it lacks.

        Only nullable (or defaulted) columns are ever added, so old rows stay valid; nothing is
        renamed or dropped. Cheap: one catalogue read per table, once per process.
        """
        from sqlalchemy import inspect
        from sqlalchemy.schema import CreateColumn

        inspector = inspect(self.engine)
        for model in models:
            table = model.__table__  # type: ignore[attr-defined]
            present = {info["name"] for info in inspector.get_columns(table.name)}
            for wanted in table.columns:
                if wanted.name in present:
                    continue
                ddl = CreateColumn(wanted).compile(dialect=self.engine.dialect)
                text = str(ddl).replace(" NOT NULL", "")
                if wanted.default is not None and getattr(wanted.default, "is_scalar", False):
                    text += f" DEFAULT {wanted.default.arg!r}".replace('"', "'")
                try:
                    with self.engine.begin() as conn:
                        conn.exec_driver_sql(f"ALTER TABLE {table.name} ADD COLUMN {text}")
                except (OperationalError, ProgrammingError):  # another process added it first
                    pass

    def _binary_text(self, models: list[type[SQLModel]]) -> None:
        """On MySQL and MariaDB, make the text columns of ``models``' tables compare byte for
        byte (:func:`binary_collation`), as PostgreSQL's and SQLite's do; convert those of a
        ledger an older cartrescue made, and new tables, which take the database's default.

        That default (``utf8mb4_general_ci``) took cart ids differing only in case (``Kx7aB``,
        ``kX7Ab``), or in a trailing blank or an accent, for one: the second cart's claim and
        decision broke ``cr_decision``'s and ``cr_message``'s unique keys, and the run stopped
        there (exit 2), every run after too, that cart never reminded. A finer collation never
        makes two stored values one, so converting cannot fail on duplicates. Cheap when done:
        one catalogue read per process; each conversion rewrites its table once.
        """
        if self.engine.dialect.name not in ("mysql", "mariadb"):
            return
        from sqlalchemy import text

        names = [model.__table__.name for model in models]  # type: ignore[attr-defined]
        with self.engine.connect() as conn:
            wanted = binary_collation(conn.execute(text(
                "SELECT COLLATION_NAME FROM information_schema.COLLATIONS WHERE COLLATION_NAME IN :known"
            ).bindparams(bindparam("known", expanding=True)), {"known": list(BINARY_COLLATIONS)}).scalars())
            behind = sorted(set(conn.execute(text(
                "SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = DATABASE() "
                "AND TABLE_NAME IN :names AND TABLE_COLLATION <> :wanted "
                "UNION SELECT TABLE_NAME FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = DATABASE() "
                "AND TABLE_NAME IN :names AND COLLATION_NAME <> :wanted"
            ).bindparams(bindparam("names", expanding=True)), {"names": names, "wanted": wanted}).scalars()))
        for name in behind:
            with self.engine.begin() as conn:
                conn.exec_driver_sql(f"ALTER TABLE {name} CONVERT TO CHARACTER SET utf8mb4 COLLATE {wanted}")

    def _schema_gaps(self, models: list[type[SQLModel]]) -> list[str]:
        """The tables and columns of ``models`` the database lacks (``cr_lock``, ``cr_run.shard``),
        and on SQLite times still in an older cartrescue's form: what opening it to write would
        add (:meth:`_create_tables`). Only reads the catalogue. Every table missing: no ledger."""
        from sqlalchemy import inspect

        inspector = inspect(self.engine)
        present = set(inspector.get_table_names())
        gaps: list[str] = []
        for model in models:
            table = model.__table__  # type: ignore[attr-defined]
            if table.name not in present:
                gaps.append(table.name)
                continue
            columns = {info["name"] for info in inspector.get_columns(table.name)}
            gaps.extend(f"{table.name}.{c.name}" for c in table.columns if c.name not in columns)
        if self.engine.dialect.name == "sqlite" and len(gaps) < len(models):
            with self.engine.connect() as conn:
                if (conn.exec_driver_sql("PRAGMA user_version").scalar() or 0) < _SQLITE_MOMENTS_NORMALISED:
                    gaps.append("times in the current form (PRAGMA user_version)")
        return gaps

    def _no_schema(self) -> bool:
        """PostgreSQL: does the URL's search_path name no schema that exists? Creating the tables
        then fails (:data:`NO_SCHEMA`); reading finds none, as in a new ledger. One query, only
        where a command that records nothing opens the ledger."""
        if self.engine.dialect.name != "postgresql":
            return False
        with self.engine.connect() as conn:
            return conn.exec_driver_sql("SELECT current_schema()").scalar() is None

    def has_no_tables(self) -> bool:
        """Has the database none of the ledger's tables (opened with ``create=False``)?"""
        return all(model.__table__.name in self.behind for model in READ_TABLES)  # type: ignore[attr-defined]

    def _raw_statements(self) -> "_RawStatements":
        if self._raw is None:
            self._raw = _RawStatements(self.engine.dialect)
        return self._raw

    def safe_url(self) -> str:
        from cartrescue.text import masked_url

        return masked_url(self.url)

    @classmethod
    def empty(cls, where: str = "ledger", absent: str | None = None) -> "Ledger":
        """An empty SQLite ledger in a temporary folder, removed on :meth:`close`: what a command
        that records nothing reads when the shop's ledger file is not there yet. ``absent``: why
        (:attr:`absent`), for the commands that say so."""
        import tempfile
        from urllib.parse import quote

        folder = tempfile.TemporaryDirectory(prefix="cartrescue-ledger-")
        ledger = cls("sqlite:///" + quote(folder.name, safe="/") + "/empty.db", where=where)
        ledger._folder = folder
        ledger.absent = absent
        return ledger

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        self.engine.dispose()
        if self._folder is not None:
            self._folder.cleanup()
            self._folder = None

    @contextmanager
    def _message_transaction(self) -> Iterator[Any]:
        """A transaction on the connection that claims and records messages, kept for the run.

        A run commits once per message or two for as long as it sends; checking a connection
        out of the pool and back in (with its reset) each time cost more than the statements.
        Only the thread that delivers uses it (the heartbeat has its own connections).
        """
        sqlite = self.engine.dialect.name == "sqlite"
        if self._writer is None or self._writer.invalidated or self._writer.closed:
            self._writer = self.engine.connect()
            if sqlite:
                self._writer.detach()  # its busy_timeout is its own (see _write_lock): never back to the pool
                self._writer.connection.dbapi_connection.execute("PRAGMA busy_timeout=0")
        with self._writer.begin():
            if sqlite:
                _write_lock(self._writer.connection.dbapi_connection)
            yield self._writer

    # -- runs and the lock -------------------------------------------------------------------

    def start_run(self, mode: str, now: datetime, shard: str = "", shop: str | None = None) -> int:
        with self.engine.begin() as conn:
            result = conn.execute(
                insert(Run.__table__).values(  # type: ignore[attr-defined]
                    mode=mode, now=_naive(now), started_at=_naive(datetime.now(timezone.utc)),
                    status="running", host=socket.gethostname(), pid=os.getpid(), process=process_identity(),
                    shard=shard, shop=None if shop is None else shop[:191],
                )
            )
            return int(result.inserted_primary_key[0])  # type: ignore[index]

    def recent_shops(self, last: int = 50) -> list[str]:
        """The shops of the ``last`` runs that recorded one, newest first (see :func:`shops_taking_turns`)."""
        run = Run.__table__  # type: ignore[attr-defined]
        with self.engine.connect() as conn:
            return [shop for (shop,) in conn.execute(
                select(run.c.shop).where(run.c.shop.is_not(None)).order_by(run.c.id.desc()).limit(last))]

    def shops_taking_turns(self, last: int = 50) -> list[str]:
        """The shops whose runs take turns in this ledger (for ``doctor``): ``[]`` when one shop
        has it, as it must (:func:`shops_taking_turns`)."""
        return shops_taking_turns(self.recent_shops(last))

    def finish_run(self, run_id: int, status: str, counts: dict[str, int]) -> int:
        """Record how the run ended; return how many of its messages were sent. ``sent`` is the
        ledger's own count: a run stopped mid-batch (Ctrl-C, SIGTERM) recorded deliveries in its
        stop grace that its caller had not counted yet."""
        self.runs_over.ended(str(self.engine.url), run_id)  # whether or not its row says so (_process_gone)
        values = {key: counts.get(key, 0) for key in ("sent", "failed", "skipped", "deferred", "problems")}
        with self.engine.begin() as conn:
            values["sent"] = _sent_by(conn, run_id)
            conn.execute(
                update(Run.__table__).where(Run.__table__.c.id == run_id).values(  # type: ignore[attr-defined]
                    status=status, finished_at=_naive(datetime.now(timezone.utc)), **values
                )
            )
        return values["sent"]

    def shop_of_run(self, run_id: int) -> str | None:
        """The shop run ``run_id`` recorded (None: unknown, or a run of an older version)."""
        run = Run.__table__  # type: ignore[attr-defined]
        with self.engine.connect() as conn:
            return conn.execute(select(run.c.shop).where(run.c.id == run_id)).scalar()

    def last_successful_runs(self) -> dict[str, datetime]:
        """When the last delivering run that got reminders out finished, per shard (``""``: an
        unsharded run; ``"K/N"``: shard K of N), for ``doctor`` (:func:`cartrescue.shards.coverage`).

        A run whose every delivery failed (the relay greylists or refuses all) ends ``ok``, as
        it did not crash, yet nothing went out: it is not a success, or the doctor stays green
        while no mail leaves. A run with nothing due (nothing sent, nothing failed) is one.
        Read from the run's own counts, which every ledger version has."""
        table = Run.__table__  # type: ignore[attr-defined]
        with self.engine.connect() as conn:
            rows = conn.execute(select(table.c.shard, func.max(table.c.finished_at)).where(
                _finished_delivering(table), ~_delivered_nothing(table)).group_by(table.c.shard)).all()
        return {shard or "": at for shard, value in rows if (at := _aware(value)) is not None}

    def latest_delivering_shard(self) -> str | None:
        """The shard (``""``: unsharded) of the delivering run that started last, whatever its
        end: the layout the shop runs now. None before any."""
        table = Run.__table__  # type: ignore[attr-defined]
        with self.engine.connect() as conn:
            row = conn.execute(select(table.c.shard).where(table.c.mode != "dry-run")
                               .order_by(table.c.started_at.desc(), table.c.id.desc()).limit(1)).first()
        return None if row is None else row[0] or ""

    def runs_delivering_nothing_since(self, since: datetime | None) -> int:
        """How many delivering runs finished after ``since`` (all, for None) that tried to
        deliver and delivered nothing: why the doctor finds no successful run, said in its words."""
        table = Run.__table__  # type: ignore[attr-defined]
        query = select(func.count()).where(_finished_delivering(table), _delivered_nothing(table))
        if since is not None:
            query = query.where(table.c.finished_at > _naive(since))
        with self.engine.connect() as conn:
            return int(conn.execute(query).scalar() or 0)

    @contextmanager
    def lock(self, run_id: int, stale_after: timedelta, name: str = "run") -> Iterator[None]:
        """Hold the lock ``name`` for the block; raise LockHeld if a live run holds it.

        ``name`` is ``run`` for an unsharded run and ``run:K/N`` for shard K of N: shards of one
        layout lock side by side, anything else excludes (see :func:`cartrescue.shards.compatible`).
        A holder is stale (crashed, killed) when its heartbeat is older than ``stale_after`` or
        when it ran on this host in a process that is gone (:func:`_process_gone`: its pid
        unused, or used by another process); its lock is taken over.
        """
        self.runs_over.going(str(self.engine.url), run_id)
        self._acquire(run_id, stale_after, name)
        try:
            yield
        except BaseException:
            self._release(run_id, name)  # the block's error is the run's, whether or not this works
            raise
        finally:
            self.runs_over.ended(str(self.engine.url), run_id)  # a row of it left behind is no live run's (_process_gone)
        failed = self._release(run_id, name)
        if failed is not None:
            raise LedgerError(
                f"run #{run_id} could not release its lock, the ledger being locked by another process ({failed}); "
                "the next run takes it over once this process has ended")

    def _release(self, run_id: int, name: str) -> str | None:
        """Delete the lock row of ``run_id``; why it could not (the ledger still locked by another
        process, a lost connection), or None.

        A failure here must not replace the error that ended the run: raised from the lock's
        ``finally``, "database is locked" took the place of "the ledger stayed locked while this
        run delivered" (exit 2), and the run reported a held lock (exit 4, silent under
        ``--quiet``). The row left behind is harmless: its process ends, and the next run finds
        its holder dead (:meth:`_is_stale`) and takes it over."""
        table = RunLock.__table__  # type: ignore[attr-defined]
        try:
            with self.engine.begin() as conn:
                conn.execute(delete(table).where(table.c.name == name, table.c.run_id == run_id))
        except DBAPIError as exc:
            return one_line(exc)
        return None

    def heartbeat(self, run_id: int, name: str = "run") -> bool:
        """Refresh the run's heartbeat; ``False`` when the lock ``name`` is no longer this run's.

        The lock row's ``run_id`` is the fencing token: a run that was taken over (it was
        paused or stalled past ``ledger.lock_timeout``) finds another run's id there.
        """
        at = _naive(datetime.now(timezone.utc))
        lock, run = RunLock.__table__, Run.__table__  # type: ignore[attr-defined]
        with self.engine.begin() as conn:
            held = conn.execute(
                update(lock).where(lock.c.name == name, lock.c.run_id == run_id).values(heartbeat_at=at)
            ).rowcount
            conn.execute(update(run).where(run.c.id == run_id).values(heartbeat_at=at))
        return bool(held)

    def _acquire(self, run_id: int, stale_after: timedelta, name: str) -> None:
        """Take lock ``name`` in one transaction that sees every other holder.

        The transaction is serialized against other acquisitions first (:meth:`_locking`), so
        two runs of incompatible layouts starting together cannot both see the table without the
        other and both go ahead.
        """
        from cartrescue.shards import compatible

        table = RunLock.__table__  # type: ignore[attr-defined]
        now = datetime.now(timezone.utc)
        row = dict(name=name, run_id=run_id, host=socket.gethostname(), pid=os.getpid(), process=process_identity(),
                   acquired_at=_naive(now), heartbeat_at=_naive(now))
        self.heartbeat(run_id, name)  # the run row's own heartbeat starts now
        for _attempt in range(3):
            try:
                with self._locking() as conn:
                    holders = conn.execute(select(table)).mappings().all()
                    for holder in holders:
                        if compatible(holder["name"], name):
                            continue
                        if not self._is_stale(holder, now, stale_after, self._over(holder["run_id"])):
                            raise LockHeld(
                                f"another run (#{holder['run_id']}{_shard_words(holder['name'])}, pid {holder['pid']} "
                                f"on {holder['host']}, since {_aware(holder['acquired_at']):%Y-%m-%d %H:%M:%S} UTC) "
                                "holds the lock", holder=holder["run_id"])
                        conn.execute(delete(table).where(table.c.name == holder["name"],
                                                         table.c.run_id == holder["run_id"]))
                    conn.execute(insert(table).values(**row))
                return
            except IntegrityError:  # another run inserted the same name between our read and insert
                continue
            except OperationalError as exc:  # SQLite busy beyond the timeout, a PostgreSQL lock_timeout
                raise LockHeld(f"ledger is busy: {one_line(exc)}") from None
        raise LockHeld("could not take the run lock (contended)")

    @contextmanager
    def _locking(self) -> Iterator[Any]:
        """A transaction that is the only one taking a lock (or reserving a day's budget) until
        it ends (see :meth:`_acquire`): SQLite's write lock, a PostgreSQL table lock that only
        these and heartbeats wait for, a named lock on MariaDB and MySQL, taken before the
        transaction begins and released after it ended.

        There a locking read (``SELECT ... FOR UPDATE``) was no mutex: its gap locks do not
        exclude each other, and the inserts of workers starting together deadlocked; a third of
        ``--workers 4`` runs lost a shard for the round ("ledger is busy", exit 4).
        """
        dialect = self.engine.dialect.name
        named = dialect in ("mysql", "mariadb")
        with self.engine.connect() as conn:
            if named:
                if conn.exec_driver_sql(f"SELECT GET_LOCK({_LOCKING}, {LOCKING_WAIT})").scalar() != 1:
                    raise OperationalError("GET_LOCK", None, Exception("the lock table is busy (GET_LOCK timed out)"))
                conn.commit()  # the named lock is the session's: the transaction below starts afresh
            try:
                with conn.begin():
                    if dialect == "sqlite":  # any write takes the database's write lock
                        conn.exec_driver_sql("DELETE FROM cr_lock WHERE 0 = 1")
                    elif dialect == "postgresql":
                        conn.exec_driver_sql("LOCK TABLE cr_lock IN SHARE ROW EXCLUSIVE MODE")
                    yield conn
            finally:
                if named and not conn.invalidated:
                    try:
                        conn.exec_driver_sql(f"DO RELEASE_LOCK({_LOCKING})")
                        conn.commit()
                    except DBAPIError:  # a connection lost: the server released it as it closed
                        pass

    @staticmethod
    def _is_stale(holder: Any, now: datetime, stale_after: timedelta, ended: bool = False) -> bool:
        """Is the lock ``holder`` (a cr_lock row) crashed or killed? ``ended``: its run is one of
        this process's that is over (:meth:`_over`)."""
        if now - _aware(holder["heartbeat_at"]) > stale_after:  # type: ignore[operator]
            return True
        if holder["host"] == socket.gethostname():
            return _process_gone(int(holder["pid"]), holder.get("process"), ended)
        return False

    def _over(self, run_id: int) -> bool:
        """Is run ``run_id`` of this ledger one of this process's that is over (:class:`RunsOver`)?"""
        return self.runs_over.over(str(self.engine.url), run_id)

    # -- history -----------------------------------------------------------------------------

    def history(self, cart_keys: Sequence[str], emails: Sequence[str], email_hashes: Sequence[str],
                phones: Sequence[str] = ()) -> History:
        """Steps claimed per cart, the last message per address and per phone number (any
        channel), and which of the hashes (of addresses and numbers) are suppressed."""
        result = History()
        as_json = self._json_lists()
        statements = _history_statements(as_json)

        def query(which: int, name: str, chunk: list[str]) -> tuple[Any, dict[str, Any]]:
            return _one_of_chunk(statements, _history_statements, which, name, chunk, as_json)

        with self.engine.connect() as conn:
            for chunk in _chunks(list(cart_keys), 500):
                for key, step, channel, status, claimed, variant, sequence in conn.execute(*query(0, "keys", chunk)):
                    result.by_cart.setdefault(key, []).append(
                        SentStep(step, channel, status, _aware(claimed), variant, sequence))  # type: ignore[arg-type]
            for chunk in _chunks(sorted(set(emails)), 500):
                _latest(conn.execute(*query(1, "emails", chunk)), result.last_by_email)
            for chunk in _chunks(sorted(set(email_hashes)), 500):
                result.suppressed.update(row[0] for row in conn.execute(*query(2, "hashes", chunk)))
            for chunk in _chunks(sorted(set(phones)), 500):
                _latest(conn.execute(*query(3, "phones", chunk)), result.last_by_phone)
        return result

    def _json_lists(self) -> bool:
        """Can this database read a list from one JSON parameter (SQLite's ``json_each``)?"""
        if self._json_each is None:
            self._json_each = False
            if self.engine.dialect.name == "sqlite":
                try:
                    with self.engine.connect() as conn:
                        self._json_each = conn.exec_driver_sql("SELECT count(*) FROM json_each('[1]')").scalar() == 1
                except SQLAlchemyError:
                    pass
        return self._json_each

    # -- claims and outcomes -----------------------------------------------------------------

    def claim(self, run_id: int, requests: Sequence[ClaimRequest], now: datetime,
              outcomes: Iterable[tuple[int, str, str, str]] = (), lock_name: str = "run",
              day: tuple[datetime, datetime] | None = None) -> Claimed:
        """Insert claims; return ``{(cart_key, step, channel): message id}`` for those this run won.

        A request whose key exists already (another run claimed it) is simply not returned, unless
        that row is ``failed_transient`` (a 4xx or an unreachable relay in an earlier run): such a
        row is claimed again for this run, its ``attempts`` counted up, keeping its id.

        ``day`` (the shop's local day of ``now``, from its midnight to the next; ``None`` without
        one message a day): a request on a :data:`NUMBER_CHANNELS` channel with a ``phone`` is
        not claimed when a message of any channel to that number was claimed that day, nor after
        another one of this call to the same number: its key is in the result's ``refused``. The
        planner checks this too, but only among its own shard's carts; here, in the claim's
        transaction, it holds across shards, workers and hosts. Only such requests cost a query.

        Fencing: every row is inserted only while the lock row ``lock_name`` (the run's own shard
        lock) names ``run_id`` -- checked in the
        claiming statement itself -- so a run that lost the lock (paused past
        ``ledger.lock_timeout`` and taken over) gets no claim at all and :class:`LockLost` is
        raised. ``outcomes`` (see :meth:`record`) are written in the same transaction: one
        commit per group of messages, not two.
        """
        if not requests:
            self.record(outcomes)
            return Claimed()
        # Everything the statements need is ready before the transaction: on SQLite it holds the
        # write lock, which the other workers of a run are waiting for.
        raw = self._raw_statements()
        done = self._outcome_rows(outcomes)
        rows = raw.claim_rows(requests, run_id, raw.moment(now), lock_name)
        named: list[str] = []  # MariaDB's locks of numbers: released once the transaction has ended
        try:
            with self._message_transaction() as conn:
                refused: set[tuple[str, int, str]] = set()
                if day is not None and any(r.channel in NUMBER_CHANNELS and r.phone for r in requests):
                    refused, named = self._messaged_numbers(conn, requests, day)  # locks first, reads after
                    kept = [n for n, r in enumerate(requests) if (r.cart_key, r.step, r.channel) not in refused]
                    requests, rows = [requests[n] for n in kept], [rows[n] for n in kept]
                if done:
                    _driver(conn, raw.record, done, many=True)
                won = self._claim_in(conn, run_id, requests, rows, now, lock_name) if requests else Claimed()
                won.refused = frozenset(refused)
                return won
        finally:
            if named:
                self._release_named(named)

    def _messaged_numbers(self, conn: Any, requests: Sequence[ClaimRequest], day: tuple[datetime, datetime]
                          ) -> tuple[set[tuple[str, int, str]], list[str]]:
        """The keys of ``requests`` that :meth:`claim` refuses for ``day`` (see there), and the
        names of the MariaDB locks taken.

        Two workers claiming texts to one number at once must not both find it free: its claims
        are serialized first -- SQLite's write lock already is, PostgreSQL takes an advisory lock
        per number until the transaction ends, MariaDB a named lock -- and the query that follows
        sees what the other committed. Numbers are locked in order, so two claims never wait for
        each other in a circle.
        """
        by_number = [r for r in requests if r.channel in NUMBER_CHANNELS and r.phone]
        numbers = sorted({r.phone for r in by_number if r.phone})
        named = self._lock_numbers(conn, numbers)
        message = Message.__table__  # type: ignore[attr-defined]
        start, end = day
        rows = conn.execute(select(message.c.phone, message.c.status).where(  # by the phone index; status below
            message.c.phone.in_(numbers), message.c.claimed_at >= _naive(start), message.c.claimed_at < _naive(end)))
        taken = {phone for phone, status in rows if status in MESSAGED}
        refused: set[tuple[str, int, str]] = set()
        for request in by_number:
            if request.phone in taken:
                refused.add((request.cart_key, request.step, request.channel))
            taken.add(request.phone)  # type: ignore[arg-type]
        return refused, named

    def _lock_numbers(self, conn: Any, numbers: list[str]) -> list[str]:
        """Serialize the claims of ``numbers`` against other processes' (see :meth:`_messaged_numbers`);
        the names of MariaDB's locks, which outlive the transaction and are released by the caller."""
        dialect = self.engine.dialect.name
        if dialect == "postgresql":
            for number in numbers:
                key = int.from_bytes(blake2b(number.encode("utf-8", "surrogatepass"), digest_size=4).digest(), "big",
                                     signed=True)
                conn.execute(select(func.pg_advisory_xact_lock(cast(literal(NUMBER_LOCKS), Integer),
                                                               cast(literal(key), Integer))))
            return []
        if dialect in ("mysql", "mariadb"):
            names = [f"cartrescue.number:{number}"[:64] for number in numbers]
            for name in names:
                if conn.execute(select(func.get_lock(name, 15))).scalar() != 1:
                    self._release_named(names)
                    raise OperationalError("GET_LOCK", None, Exception(f"lock timeout: {name}"))
            return names
        return []  # SQLite: the transaction holds the database's write lock

    def _release_named(self, names: list[str]) -> None:
        """Release MariaDB's named locks of :meth:`_lock_numbers` on the writer connection (a
        connection that was lost released them as it closed)."""
        writer = self._writer
        if writer is None or writer.invalidated or writer.closed:
            return
        cursor = writer.connection.dbapi_connection.cursor()
        for name in names:
            cursor.execute("DO RELEASE_LOCK(%s)", (name,))
        cursor.close()

    def hold_out(self, run_id: int, requests: Sequence[ClaimRequest], details: Sequence[str], now: datetime,
                 lock_name: str = "run") -> dict[tuple[str, int, str], int]:
        """Claim held-out steps (the control group) and record them ``held_out``, ``details[i]``
        the reply of ``requests[i]``, in one transaction; return what :meth:`claim` returns.

        As two transactions, a stop or a crash between them left a control-group row ``claimed``:
        reported as a message that may have gone out, and missing from the holdout's side of the
        report's comparison. Nothing was sent either way.
        """
        if not requests:
            return {}
        raw = self._raw_statements()
        rows = raw.claim_rows(requests, run_id, raw.moment(now), lock_name)
        with self._message_transaction() as conn:
            won = self._claim_in(conn, run_id, requests, rows, now, lock_name)
            held = self._outcome_rows(
                (claim_id, "held_out", detail, "") for request, detail in zip(requests, details)
                if (claim_id := won.get((request.cart_key, request.step, request.channel))) is not None)
            if held:
                _driver(conn, raw.record, held, many=True)
        return won

    def _claim_in(self, conn: Any, run_id: int, requests: Sequence[ClaimRequest], rows: list[Any], now: datetime,
                  lock_name: str) -> Claimed:
        """The claiming statements of :meth:`claim`, in the caller's transaction (``rows`` from
        ``claim_rows``); raise :class:`LockLost` where the run's lock is gone."""
        raw = self._raw_statements()
        won = Claimed()
        group = raw.claim_group(rows)
        if group is not None:
            for claim_id, cart_key, step, channel in _driver(conn, *group):
                won[(cart_key, step, channel)] = claim_id
        elif raw.claim_returning is not None and len(rows) <= _RETURNING_UP_TO:
            # A channel takes a message or two at a time: a statement per row that returns its
            # id costs less than one executemany and a query for the ids.
            for params in rows:
                row = _driver(conn, raw.claim_returning, params).fetchone()
                if row is not None:
                    won[(row[1], row[2], row[3])] = row[0]
        else:
            _driver(conn, raw.claim, rows, many=True)
            for chunk in _chunks(list({r.cart_key: None for r in requests}), 500):
                sql, params = raw.claimed(chunk)
                for claim_id, cart_key, step, channel, owner, status in _driver(conn, sql, params):
                    if owner == run_id and status == "claimed":
                        won[(cart_key, step, channel)] = claim_id
        retry = [r for r in requests if (r.cart_key, r.step, r.channel) not in won]
        if retry:
            if not self._holds_lock(conn, run_id, lock_name):
                raise LockLost(f"run #{run_id} lost the run lock (it was paused or stalled longer than "
                               "ledger.lock_timeout and another run took over): stopped without delivering more")
            won.update(self._reclaim(conn, run_id, retry, now, lock_name))
        return won

    @staticmethod
    def _holds_lock(conn: Any, run_id: int, name: str = "run") -> bool:
        lock = RunLock.__table__  # type: ignore[attr-defined]
        return conn.execute(select(lock.c.run_id).where(lock.c.name == name)).scalar() == run_id

    @staticmethod
    def _reclaim(conn: Any, run_id: int, requests: Sequence[ClaimRequest], now: datetime,
                 lock_name: str = "run") -> dict[tuple[str, int, str], int]:
        """Claim the ``failed_transient`` rows among ``requests`` for ``run_id`` (a retry run)."""
        message = Message.__table__  # type: ignore[attr-defined]
        statement = (
            update(message)
            .where(message.c.cart_key == bindparam("b_key"), message.c.step == bindparam("b_step"),
                   message.c.channel == bindparam("b_channel"), message.c.status == "failed_transient",
                   _lock_is(run_id, lock_name))
            .values(status="claimed", run_id=run_id, attempts=message.c.attempts + 1, claimed_at=_naive(now),
                    finished_at=None, transport=bindparam("b_transport"), template=bindparam("b_template"),
                    message_id=bindparam("b_mid"),
                    variant=bindparam("b_variant"), tier=bindparam("b_tier"), score=bindparam("b_score"))
        )
        conn.execute(statement, [
            dict(b_key=r.cart_key, b_step=r.step, b_channel=r.channel, b_transport=r.transport, b_template=r.template,
                 b_variant=r.variant, b_tier=r.tier, b_score=r.score, b_mid=r.message_id)
            for r in requests
        ])
        wanted = {(r.cart_key, r.step, r.channel) for r in requests}
        won: dict[tuple[str, int, str], int] = {}
        for chunk in _chunks(sorted({r.cart_key for r in requests}), 500):
            for row in conn.execute(  # by cart_key alone: see _RawStatements.claimed
                select(message.c.id, message.c.cart_key, message.c.step, message.c.channel, message.c.run_id,
                       message.c.status).where(message.c.cart_key.in_(chunk))
            ):
                key = (row.cart_key, row.step, row.channel)
                if key in wanted and row.run_id == run_id and row.status == "claimed":
                    won[key] = row.id
        return won

    def record(self, outcomes: Iterable[tuple[int, str, str, str]]) -> None:
        """Store outcomes: ``(message id, status, reply, message_id header)``."""
        rows = self._outcome_rows(outcomes)
        if rows:
            with self._message_transaction() as conn:
                _driver(conn, self._raw_statements().record, rows, many=True)

    def _outcome_rows(self, outcomes: Iterable[tuple[int, str, str, str]]) -> list[Any]:
        """The parameters of one driver-level ``executemany`` for a group of outcomes
        (see :class:`_RawStatements`), stamped now."""
        raw = self._raw_statements()
        return raw.record_rows(outcomes, raw.moment(datetime.now(timezone.utc)))

    def latest_message(self) -> tuple[str, datetime] | None:
        """The cart key and claim time of the last message claimed (by the primary key: one
        index lookup), or None for a ledger without messages."""
        message = Message.__table__  # type: ignore[attr-defined]
        with self.engine.connect() as conn:
            row = conn.execute(select(message.c.cart_key, message.c.claimed_at)
                               .order_by(message.c.id.desc()).limit(1)).first()
        return None if row is None else (row[0], _aware(row[1]))

    def unconfirmed(self, before_run: int, owns: Owner | None = None) -> list[dict[str, Any]]:
        """Claims of earlier runs that never got an outcome (the run crashed or was killed).

        ``owns(email, cart_key, phone)``: only the rows of one shard (:meth:`cartrescue.shards.Shard.owns`).
        """
        message = Message.__table__  # type: ignore[attr-defined]
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(message.c.id, message.c.cart_key, message.c.email, message.c.step, message.c.channel,
                       message.c.claimed_at, message.c.phone).where(message.c.status.in_(UNCONFIRMED),
                                                                    message.c.run_id != before_run)
            ).mappings().all()
        return [dict(row) for row in rows if owns is None or owns(row["email"], row["cart_key"], row["phone"])]

    def release_unconfirmed(self, run_id: int, stale_after: timedelta, owns: Owner | None = None) -> int:
        """``run --resend-unconfirmed``: turn dead runs' unconfirmed rows into ``failed_transient``.

        The planner then sees those steps as not done and this run claims them again. A message
        the relay did accept before the crash is sent a second time: that is the price, and why
        it is not the default. Only claims of runs that are provably gone are touched: the run
        finished, or it does not hold the lock and, on this host, its process no longer exists;
        on another host, its heartbeat is older than ``stale_after`` and than
        :data:`OTHER_HOST_GONE`. A paused run on another host (a frozen VM) cannot be told from a
        dead one but by time: its messages in flight when it stopped may have reached the relay,
        so its claims wait an hour, not the ``lock_timeout`` after which another run takes its
        lock. A live run that is merely paused on this host keeps its claims; so does every run
        holding a lock, of any shard. With ``owns`` (a shard's
        :meth:`~cartrescue.shards.Shard.owns`) only that shard's rows are released. Returns how
        many rows were released.
        """
        message, run = Message.__table__, Run.__table__  # type: ignore[attr-defined]
        now = datetime.now(timezone.utc)
        with self.engine.begin() as conn:
            dead = _dead_runs(conn, run.c.id.in_(select(message.c.run_id).where(
                message.c.status.in_(UNCONFIRMED), message.c.run_id != run_id).distinct()), now,
                max(stale_after, OTHER_HOST_GONE), self._over)
            ids: list[int] = []
            for chunk in _chunks(dead, 500):
                ids.extend(row.id for row in conn.execute(
                    select(message.c.id, message.c.email, message.c.cart_key, message.c.phone).where(
                        message.c.status.in_(UNCONFIRMED), message.c.run_id.in_(chunk)))
                    if owns is None or owns(row.email, row.cart_key, row.phone))
            released = 0
            for chunk in _chunks(ids, 500):
                released += int(conn.execute(
                    update(message).where(message.c.status.in_(UNCONFIRMED), message.c.id.in_(chunk)).values(
                        status="failed_transient", finished_at=_naive(now),
                        reply=f"unconfirmed claim of dead run released for resending by run #{run_id} "
                              "(--resend-unconfirmed)")
                ).rowcount or 0)
        return released

    def close_dead_runs(self, run_id: int, stale_after: timedelta) -> dict[int, int]:
        """Record as ``killed`` the runs still ``running`` that are provably gone (kill -9, the
        out-of-memory killer, a lost host: see :func:`_run_is_dead`; no lock holder), with the
        messages they sent: their row would otherwise say ``running`` for good, and count nothing.
        Returns each closed run's claims without outcome (``UNCONFIRMED``): the one moment a run
        can tell cron of them, since they stay so for good.

        A run that ended otherwise (stopped by Ctrl-C or SIGTERM, a ledger error, a lost lock)
        with messages in flight left them ``claimed`` too: they are counted here as well, once
        (:func:`_note_left_claims` marks them), so the next run tells cron of them as it does of
        a killed run's."""
        run, message = Run.__table__, Message.__table__  # type: ignore[attr-defined]
        now = datetime.now(timezone.utc)
        closed: dict[int, int] = {}
        with self.engine.begin() as conn:
            dead = _dead_runs(conn, (run.c.status == "running") & (run.c.id != run_id), now, stale_after, self._over)
            for dead_id in dead:
                done = conn.execute(update(run).where(run.c.id == dead_id, run.c.status == "running").values(
                    status="killed", finished_at=_naive(now), sent=_sent_by(conn, dead_id)))
                if done.rowcount:
                    closed[dead_id] = int(conn.execute(select(func.count()).select_from(message).where(
                        message.c.run_id == dead_id, message.c.status.in_(UNCONFIRMED))).scalar() or 0)
        with self.engine.begin() as conn:  # its own transaction, which writes first (see _note_left_claims)
            for ended_id, left in _note_left_claims(conn, run_id, now).items():
                closed.setdefault(ended_id, left)
        return closed

    def sent_since(self, transport: str, since: datetime, owns: Owner | None = None) -> list[datetime]:
        """When messages of ``transport`` were accepted after ``since`` (wall clock), oldest first.

        ``owns``: only one shard's messages (each shard keeps its share of an hourly quota).
        """
        message = Message.__table__  # type: ignore[attr-defined]
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(message.c.finished_at, message.c.email, message.c.cart_key, message.c.phone).where(
                    message.c.transport == transport, message.c.status.in_(("sent", "unconfirmed")),
                    message.c.finished_at >= _naive(since)).order_by(message.c.finished_at)
            ).all()
        return [_aware(at) for at, email, key, phone in rows  # type: ignore[misc]
                if at is not None and (owns is None or owns(email, key, phone))]

    def tier_used_since(self, tier: str, steps: list[tuple[int, str]], since: datetime, until: datetime,
                        owns: Owner | None = None) -> TierUse:
        """How many messages of ``tier`` were claimed from ``since`` to ``until`` (a tier's day's
        budget), each a ``(step, channel)`` of ``steps``: every claim that went out or may have
        (:data:`MAYBE_DELIVERED`). Not a held-out cart, a permanent failure, nor a transient
        one: that message did not go out, and its retry (the same row, claimed again) is what counts.

        ``owns``: also count the claims of one shard's customers (by the hash of the address each
        row keeps, else of its number, whichever shard or layout claimed it), which a shard's day share is charged
        with; without it every claim is the caller's. Looked up through the runs of the period
        (``cr_run`` is small, ``run_id`` indexed), not by scanning every message the ledger holds.
        """
        message = Message.__table__  # type: ignore[attr-defined]
        where = self._tier_claims(tier, steps, since, until)
        with self.engine.connect() as conn:
            if owns is None:
                total = int(conn.execute(select(func.count()).select_from(message).where(*where)).scalar_one())
                return TierUse(total, total)
            rows = conn.execute(select(message.c.email, message.c.cart_key, message.c.phone).where(*where)).all()
        return TierUse(len(rows), sum(1 for email, key, phone in rows if owns(email, key, phone)))

    @staticmethod
    def _tier_claims(tier: str, steps: list[tuple[int, str]], since: datetime, until: datetime) -> tuple[Any, ...]:
        """The WHERE clauses of :meth:`tier_used_since`'s claims."""
        message, run = Message.__table__, Run.__table__  # type: ignore[attr-defined]
        # A run that began before ``since`` and claimed after it (23:59, and sending past midnight:
        # its claims are stamped when made, cartrescue.clock) is still going, or ended after it.
        runs = select(run.c.id).where(or_(run.c.now >= _naive(since), run.c.finished_at.is_(None),
                                          run.c.finished_at >= _naive(since)))
        return (message.c.run_id.in_(runs), message.c.tier == tier,
                or_(*(and_(message.c.step == step, message.c.channel == channel) for step, channel in steps)),
                message.c.status.in_(MAYBE_DELIVERED),
                message.c.claimed_at >= _naive(since), message.c.claimed_at <= _naive(until))

    def reserve_day_budget(self, run_id: int, tier: str, steps: list[tuple[int, str]], since: datetime,
                           until: datetime, budget: int, share: int, owns: Owner) -> tuple[int, TierUse]:
        """Reserve what shard run ``run_id`` may claim of ``tier``'s day ``budget`` (from
        ``since``, the shop's midnight, to ``until``): its ``share`` less the day's claims of the
        addresses it owns, and no more than the day has left once the other running shards'
        reservations are kept. Return that amount and the day's use it was read from.

        The day's total alone did not do: after the layout changed during the day (4 shards in
        the morning, 3 later), one shard's addresses may have had more than their new share, and
        two shards that read the day's total before either claimed could each spend what was
        left of it. Reservations are made one at a time (the lock table's serialization, as
        lock acquisitions are), and each sees every earlier one of a run still holding its lock.
        """
        message, lock, hold = (Message.__table__, RunLock.__table__,  # type: ignore[attr-defined]
                               BudgetHold.__table__)  # type: ignore[attr-defined]
        day = _naive(since)
        with self._locking() as conn:
            rows = conn.execute(select(message.c.email, message.c.cart_key, message.c.phone, message.c.run_id)
                                .where(*self._tier_claims(tier, steps, since, until))).all()
            running = set(conn.execute(select(lock.c.run_id)).scalars())
            conn.execute(delete(hold).where(or_(hold.c.run_id.not_in(running | {run_id}), hold.c.day < day,
                                                and_(hold.c.run_id == run_id, hold.c.tier == tier))))
            claimed = Counter(row.run_id for row in rows)
            pending = sum(max(amount - claimed[holder], 0) for holder, amount in conn.execute(
                select(hold.c.run_id, hold.c.amount).where(hold.c.tier == tier, hold.c.day == day,
                                                           hold.c.run_id != run_id)))
            use = TierUse(len(rows), sum(1 for email, key, phone, _ in rows if owns(email, key, phone)), pending)
            amount = max(min(share - use.own, budget - use.total - pending), 0)
            conn.execute(insert(hold).values(run_id=run_id, tier=tier, day=day, amount=amount))
        return amount, use

    def status_counts(self) -> dict[str, int]:
        """How many message rows are in each status (for ``doctor``)."""
        message = Message.__table__  # type: ignore[attr-defined]
        with self.engine.connect() as conn:
            return {status: int(n) for status, n in conn.execute(
                select(message.c.status, func.count()).group_by(message.c.status))}

    def write_refused(self) -> str | None:
        """Why the ledger's database would refuse a run's writes, or None (for ``doctor``).

        A server can take reads and refuse every write: a PostgreSQL replica after a failover, a
        role without the grant, MariaDB's ``read_only``. An UPDATE of no row, rolled back, meets
        the same refusal a run meets, and touches nothing. Not on SQLite: a file this process
        cannot write fails as the tables are created, and the probe would wait on a running
        run's write lock.
        """
        if self.engine.dialect.name == "sqlite":
            return None
        lock = RunLock.__table__  # type: ignore[attr-defined]
        try:
            with self.engine.connect() as conn, conn.begin() as transaction:
                conn.execute(update(lock).where(lock.c.name.is_(None)).values(run_id=lock.c.run_id))
                transaction.rollback()
        except DBAPIError as exc:
            return one_line(exc)
        return None

    def messages(self) -> list[dict[str, Any]]:
        """Every message row (for reports and tests); small ledgers only."""
        message = Message.__table__  # type: ignore[attr-defined]
        with self.engine.connect() as conn:
            return [dict(row) for row in conn.execute(select(message).order_by(message.c.id)).mappings()]

    def save_decisions(self, run_id: int, now: datetime, decisions: Sequence[dict[str, Any]]) -> None:
        """Upsert the latest decision per cart (delete + insert: portable and batchable)."""
        if not decisions:
            return
        table = CartDecision.__table__  # type: ignore[attr-defined]
        raw = self._raw_statements()
        at = raw.moment(now)
        # A cart key twice in one batch (an id repeated further down a CSV): the later one wins.
        latest = {d["cart_key"]: d for d in decisions}
        rows = [dict(d, decided_at=at, run_id=run_id) for d in latest.values()]
        with self.engine.begin() as conn:
            for chunk in _chunks([row["cart_key"] for row in rows], 500):
                conn.execute(delete(table).where(table.c.cart_key.in_(chunk)))
            conn.exec_driver_sql(raw.decision, raw.rows(raw.decision_order, rows))  # one executemany

    # -- survey answers ----------------------------------------------------------------------

    def message_of(self, cart_key: str, step: int) -> dict[str, Any] | None:
        """The message of ``cart_key``'s ``step`` that went to the address (:data:`ADDRESS_CHANNELS`:
        an e-mail, or a webhook document, whose rendered parts carry the same survey links): its
        address, tier and variant (or None)."""
        message = Message.__table__  # type: ignore[attr-defined]
        with self.engine.connect() as conn:
            row = conn.execute(
                select(message.c.email, message.c.tier, message.c.variant).where(
                    message.c.cart_key == cart_key, message.c.step == step,
                    message.c.channel.in_(sorted(ADDRESS_CHANNELS))).order_by(message.c.channel)
            ).mappings().first()
        return None if row is None else dict(row)

    def save_survey_answer(self, cart_key: str, step: int, reason: str, text: str, locale: str, *,
                           tier: str | None, variant: str | None, email: str | None, now: datetime) -> bool:
        """Store a cart's answer; a later one replaces it. Returns True for the cart's first answer."""
        table = SurveyAnswer.__table__  # type: ignore[attr-defined]
        values = dict(step=step, reason=reason[:32], text=text[:500], locale=locale[:16], tier=tier,
                      variant=variant, email=email, answered_at=_naive(now))
        for _attempt in range(3):
            with self.engine.begin() as conn:
                changed = conn.execute(update(table).where(table.c.cart_key == cart_key).values(
                    answers=table.c.answers + 1, **values)).rowcount
            if changed:
                return False
            try:
                with self.engine.begin() as conn:
                    conn.execute(insert(table).values(cart_key=cart_key, answers=1, first_answered_at=_naive(now),
                                                      **values))
                return True
            except IntegrityError:  # the same cart answered twice at once: update the other's row
                continue
        raise LedgerError(f"could not store the survey answer of {cart_key}")

    def has_survey_answers(self) -> bool:
        """Is there any answer at all? (A run asks once: most shops have none to look up.)"""
        table = SurveyAnswer.__table__  # type: ignore[attr-defined]
        with self.engine.connect() as conn:
            return conn.execute(select(table.c.id).limit(1)).first() is not None

    def survey_answered(self, cart_keys: Sequence[str]) -> set[str]:
        """Which of ``cart_keys`` have an answer."""
        as_json = self._json_lists()
        statements = (_answered_statement(as_json),)
        found: set[str] = set()
        with self.engine.connect() as conn:
            for chunk in _chunks(sorted(set(cart_keys)), 500):
                found.update(conn.execute(*_one_of_chunk(
                    statements, lambda as_json: (_answered_statement(as_json),), 0, "keys", chunk, as_json)).scalars())
        return found

    def survey_answers(self, since: datetime | None = None, until: datetime | None = None) -> Iterator[dict[str, Any]]:
        """Answers given in ``[since, until)``, oldest first, streamed (for exports)."""
        table = SurveyAnswer.__table__  # type: ignore[attr-defined]
        query = select(table).order_by(table.c.answered_at, table.c.id)
        if since is not None:
            query = query.where(table.c.answered_at >= _naive(since))
        if until is not None:
            query = query.where(table.c.answered_at < _naive(until))
        with self.engine.connect() as conn:
            for row in conn.execution_options(stream_results=True, yield_per=1000).execute(query).mappings():
                yield dict(row, answered_at=_aware(row["answered_at"]),
                           first_answered_at=_aware(row["first_answered_at"]))

    def survey_counts(self, since: datetime | None = None, until: datetime | None = None) -> list[dict[str, Any]]:
        """Answers counted per (reason, tier, locale) in ``[since, until)``: what a report shows."""
        table = SurveyAnswer.__table__  # type: ignore[attr-defined]
        query = select(table.c.reason, table.c.tier, table.c.locale, func.count().label("answers")).group_by(
            table.c.reason, table.c.tier, table.c.locale)
        if since is not None:
            query = query.where(table.c.answered_at >= _naive(since))
        if until is not None:
            query = query.where(table.c.answered_at < _naive(until))
        with self.engine.connect() as conn:
            return [dict(row) for row in conn.execute(query).mappings()]

    # -- test messages (send-test) -----------------------------------------------------------

    def start_send_test(self, row: dict[str, Any], now: datetime | None = None) -> int:
        """Record a test message before it is handed over (status ``sending``); its id."""
        table = SendTest.__table__  # type: ignore[attr-defined]
        with self.engine.begin() as conn:
            result = conn.execute(insert(table).values(
                **row, status="sending", created_at=_naive(now or datetime.now(timezone.utc))))
            return int(result.inserted_primary_key[0])  # type: ignore[index]

    def finish_send_test(self, test_id: int, status: str, reply: str) -> None:
        table = SendTest.__table__  # type: ignore[attr-defined]
        with self.engine.begin() as conn:
            conn.execute(update(table).where(table.c.id == test_id).values(
                status=status, reply=reply[:1000], finished_at=_naive(datetime.now(timezone.utc))))

    def send_tests(self) -> list[dict[str, Any]]:
        """Every test message, oldest first (a handful: one per `send-test`)."""
        table = SendTest.__table__  # type: ignore[attr-defined]
        with self.engine.connect() as conn:
            return [dict(row) for row in conn.execute(select(table).order_by(table.c.id)).mappings()]

    # -- suppressions ------------------------------------------------------------------------

    def suppress(self, email_hash: str, reason: str, source: str, now: datetime | None = None) -> bool:
        """Add a suppression; return False when the address was already suppressed."""
        table = Suppression.__table__  # type: ignore[attr-defined]
        try:
            with self.engine.begin() as conn:
                conn.execute(insert(table).values(
                    email_hash=email_hash, reason=reason, source=source[:191],
                    created_at=_naive(now or datetime.now(timezone.utc))))
            return True
        except IntegrityError:
            return False

    def suppress_many(self, rows: Sequence[tuple[str, str, str]], now: datetime | None = None) -> int:
        """Add ``(email hash, reason, source)`` suppressions in bulk; return how many were new."""
        table = Suppression.__table__  # type: ignore[attr-defined]
        at = _naive(now or datetime.now(timezone.utc))
        unique = list({h: (h, reason, source) for h, reason, source in rows}.values())
        added = 0
        with self.engine.begin() as conn:
            for chunk in _chunks(unique, 500):
                known = set(conn.execute(select(table.c.email_hash).where(
                    table.c.email_hash.in_([h for h, _r, _s in chunk]))).scalars())
                fresh = [dict(email_hash=h, reason=reason[:64], source=source[:191], created_at=at)
                         for h, reason, source in chunk if h not in known]
                if fresh:
                    conn.execute(insert(table), fresh)
                    added += len(fresh)
        return added

    def inbound(self, provider_id: str, phone_hash: str, action: str, suppress: str | None, source: str,
                now: datetime | None = None) -> bool:
        """Record an inbound message by its provider id and, with ``suppress`` (a reason), suppress
        ``phone_hash`` in the same transaction. ``False`` (and nothing changed) when the id was
        seen before: a replayed request, which the caller refuses."""
        inbound, suppression = Inbound.__table__, Suppression.__table__  # type: ignore[attr-defined]
        at = _naive(now or datetime.now(timezone.utc))
        try:
            with self.engine.begin() as conn:
                conn.execute(insert(inbound).values(provider_id=provider_id[:191], phone_hash=phone_hash, action=action,
                                                    received_at=at))
                if suppress and phone_hash and conn.execute(
                        select(suppression.c.id).where(suppression.c.email_hash == phone_hash)).first() is None:
                    conn.execute(insert(suppression).values(email_hash=phone_hash, reason=suppress[:64],
                                                            source=source[:191], created_at=at))
            return True
        except IntegrityError:
            return False

    def inbound_action(self, *provider_ids: str) -> str | None:
        """What was done with the inbound message kept under one of ``provider_ids`` (``None``:
        never received): a mail is kept under another key once its sender is forgotten."""
        table = Inbound.__table__  # type: ignore[attr-defined]
        with self.engine.connect() as conn:
            return conn.execute(select(table.c.action).where(
                table.c.provider_id.in_([key[:191] for key in provider_ids])).limit(1)).scalar()

    def retake_inbound(self, provider_ids: Sequence[str], contact_hash: str, suppress: str, source: str,
                       now: datetime | None = None) -> bool:
        """An inbound message refused before, kept under one of ``provider_ids`` (a mail's
        Message-ID or its hash), that now names ``contact_hash`` (its check could not be made
        then: no secret, another secret): mark it ``suppressed`` and suppress the hash, in one
        transaction. ``False`` when another process took it meanwhile."""
        inbound, suppression = Inbound.__table__, Suppression.__table__  # type: ignore[attr-defined]
        at = _naive(now or datetime.now(timezone.utc))
        with self.engine.begin() as conn:
            taken = conn.execute(update(inbound).where(inbound.c.provider_id.in_([key[:191] for key in provider_ids]),
                                                       inbound.c.action == "refused")
                                 .values(phone_hash=contact_hash, action="suppressed")).rowcount
            if taken and conn.execute(select(suppression.c.id).where(
                    suppression.c.email_hash == contact_hash)).first() is None:
                conn.execute(insert(suppression).values(email_hash=contact_hash, reason=suppress[:64],
                                                        source=source[:191], created_at=at))
        return bool(taken)

    def suppression(self, email_hash: str) -> dict[str, Any] | None:
        """The suppression of one address hash, or ``None``."""
        table = Suppression.__table__  # type: ignore[attr-defined]
        with self.engine.connect() as conn:
            row = conn.execute(select(table).where(table.c.email_hash == email_hash)).mappings().first()
        return None if row is None else dict(row, created_at=_aware(row["created_at"]))

    def suppressions(self, limit: int | None = None) -> list[dict[str, Any]]:
        """Suppressions, newest first (hashes only: the ledger keeps no suppressed address)."""
        table = Suppression.__table__  # type: ignore[attr-defined]
        query = select(table).order_by(table.c.created_at.desc(), table.c.id.desc())
        if limit is not None:
            query = query.limit(limit)
        with self.engine.connect() as conn:
            return [dict(row, created_at=_aware(row["created_at"])) for row in conn.execute(query).mappings()]

    def unsuppress(self, email_hash: str) -> bool:
        """Remove a suppression; ``False`` when there was none."""
        table = Suppression.__table__  # type: ignore[attr-defined]
        with self.engine.begin() as conn:
            return bool(conn.execute(delete(table).where(table.c.email_hash == email_hash)).rowcount)


    # -- schema additions and the report's questions (docs/reporting.md) -----------------------

    def sqlite_path(self) -> str | None:
        """The file of a SQLite ledger (the report reads it directly), else ``None``."""
        path = sqlite_file(self.url)
        return None if path is None else str(path)

    def report_messages(self, start: datetime, end: datetime, batch: int = 5000) -> Iterator[tuple[Any, ...]]:
        """Sent and held-out rows claimed in ``[start, end]``, streamed: (id, cart_key, cart_id,
        email, customer_id, step, channel, variant, tier, sequence, locale, status, claimed_at,
        cart_value)."""
        table = Message.__table__  # type: ignore[attr-defined]
        c = table.c
        query = select(c.id, c.cart_key, c.cart_id, c.email, c.customer_id, c.step, c.channel, c.variant, c.tier,
                       c.sequence, c.locale, c.status, c.claimed_at, c.cart_value).where(
            c.status.in_(REPORTED), c.claimed_at >= _naive(start), c.claimed_at <= _naive(end))
        with self.engine.connect() as conn:
            result = conn.execution_options(stream_results=True, yield_per=batch).execute(query)
            for row in result:
                yield (*row[:12], _aware(row[12]), row[13])

    def report_first_claims(self, cart_keys: Sequence[str], before: datetime, batch: int = 500) -> dict[str, datetime]:
        """The first sent or held-out row of each of ``cart_keys`` claimed before ``before``, where
        it has one: when its stream began, for the report's streams whose first row it read is a
        later step (their customer came back to the cart, which re-timed those steps)."""
        c = Message.__table__.c  # type: ignore[attr-defined]
        found: dict[str, datetime] = {}
        with self.engine.connect() as conn:
            for offset in range(0, len(cart_keys), batch):
                chunk = list(cart_keys[offset:offset + batch])
                for key, first in conn.execute(
                        select(c.cart_key, func.min(c.claimed_at)).where(
                            c.cart_key.in_(chunk), c.status.in_(REPORTED), c.claimed_at < _naive(before))
                        .group_by(c.cart_key)):
                    found[key] = _aware(first)
        return found

    def report_keys(self, start: datetime, end: datetime, batch: int = 5000) -> Iterator[tuple[Any, ...]]:
        """(cart id, email, customer id) of the sent and held-out rows claimed in ``[start, end]``,
        each combination once, streamed: what an order must carry to matter to the report."""
        path = self.sqlite_path()
        if path is not None:  # a million rows: the driver's tuples, not SQLAlchemy's rows
            import sqlite3

            def stamp(moment: datetime) -> str:  # as SQLAlchemy stores a DateTime in SQLite
                return _naive(moment).strftime("%Y-%m-%d %H:%M:%S.%f")

            db = sqlite3.connect(f"{Path(path).resolve().as_uri()}?mode=ro", uri=True)  # '#' or '?' quoted
            try:
                yield from db.execute(
                    "SELECT DISTINCT cart_id, email, customer_id FROM cr_message WHERE status IN "
                    f"{REPORTED!r}"
                    " AND claimed_at >= ? AND claimed_at <= ?", (stamp(start), stamp(end)))
            finally:
                db.close()
            return
        c = Message.__table__.c  # type: ignore[attr-defined]
        query = select(c.cart_id, c.email, c.customer_id).where(
            c.status.in_(REPORTED), c.claimed_at >= _naive(start), c.claimed_at <= _naive(end)).distinct()
        with self.engine.connect() as conn:
            yield from conn.execution_options(stream_results=True, yield_per=batch).execute(query)

    def report_counts(self, start: datetime, end: datetime) -> dict[str, int]:
        """Rows per status claimed in ``[start, end]`` (unconfirmed claims, failures)."""
        c = Message.__table__.c  # type: ignore[attr-defined]
        with self.engine.connect() as conn:
            return {status: int(n) for status, n in conn.execute(
                select(c.status, func.count()).where(c.claimed_at >= _naive(start), c.claimed_at <= _naive(end))
                .group_by(c.status))}

    def report_decisions(self, start: datetime, end: datetime) -> list[tuple[str, str, int, int]]:
        """(action, reason, carts, carts with a sent or held-out row claimed in the period) of the
        latest decisions made in ``[start, end]`` (cr_decision keeps one row per cart: its latest).
        A row of an earlier period does not count: a cart messaged last month and skipped this
        month (``ordered``, ``too_old``) was this month's skip, not this month's eligible cart."""
        from sqlalchemy import case, exists

        c = CartDecision.__table__.c  # type: ignore[attr-defined]
        m = Message.__table__.c  # type: ignore[attr-defined]
        streamed = exists().where(m.cart_key == c.cart_key, m.status.in_(REPORTED),
                                  m.claimed_at >= _naive(start), m.claimed_at <= _naive(end))
        with self.engine.connect() as conn:
            return [(a, r, int(n), int(w or 0)) for a, r, n, w in conn.execute(
                select(c.action, c.reason, func.count(), func.sum(case((streamed, 1), else_=0)))
                .where(c.decided_at >= _naive(start), c.decided_at <= _naive(end)).group_by(c.action, c.reason))]

    def report_redecided(self, start: datetime, end: datetime) -> int:
        """Carts messaged or held out in ``[start, end]`` whose latest decision is not of that
        period: a later run decided them again (cr_decision keeps one row per cart), or retention
        pruned it. The funnel counts them as seen and eligible in the period, which they were."""
        c = CartDecision.__table__.c  # type: ignore[attr-defined]
        m = Message.__table__.c  # type: ignore[attr-defined]
        in_period = select(c.cart_key).where(c.decided_at >= _naive(start), c.decided_at <= _naive(end))
        with self.engine.connect() as conn:
            return int(conn.execute(
                select(func.count(func.distinct(m.cart_key))).where(
                    m.status.in_(REPORTED), m.claimed_at >= _naive(start), m.claimed_at <= _naive(end),
                    m.cart_key.not_in(in_period))).scalar() or 0)

    def report_runs(self, start: datetime, end: datetime) -> dict[str, Any]:
        """Delivering runs of ``[start, end]`` (by the run's clock, ``--now`` included): how many,
        how they ended, what they counted."""
        c = Run.__table__.c  # type: ignore[attr-defined]
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(c.status, func.count(), func.sum(c.sent), func.sum(c.failed), func.sum(c.problems),
                       func.max(c.now))
                .where(c.now >= _naive(start), c.now <= _naive(end), c.mode != "dry-run")
                .group_by(c.status)).all()
        by_status = {status: int(n) for status, n, *_rest in rows}
        last_ok = max((_aware(r[5]) for r in rows if r[0] == "ok" and r[5] is not None), default=None)
        return {"runs": sum(by_status.values()), "by_status": by_status,
                "sent": sum(int(r[2] or 0) for r in rows), "failed": sum(int(r[3] or 0) for r in rows),
                "problems": sum(int(r[4] or 0) for r in rows), "last_ok": last_ok}

    def report_codes(self, claim_ids: Sequence[int]) -> dict[int, set[str]]:
        """The incentive codes given to each of ``claim_ids`` (cr_code), for redemption: the one
        it holds and any held by no message that it was given with (``replaced_claim_id``: a
        retry replaced it, or ``forget`` kept it spent). The customer may hold the code of an
        earlier attempt that reached them, and an order using it was won by that message as much
        as one using the fresh code; a forgotten person's message keeps its codes, so the report
        says the same of it before and after ``forget``."""
        c = Code.__table__.c  # type: ignore[attr-defined]
        found: dict[int, set[str]] = {}
        wanted = set(claim_ids)
        with self.engine.connect() as conn:
            for chunk in _chunks(list(wanted), 500):
                for claim, code in conn.execute(select(c.claim_id, c.code).where(c.claim_id.in_(chunk))):
                    found.setdefault(int(claim), set()).add(code)
            # A replaced code is held by no message (claim_id = -id): the few such rows are read
            # along the claim's unique index, not by scanning every code for replaced_claim_id.
            for claim, code in conn.execute(select(c.replaced_claim_id, c.code).where(
                    c.claim_id < 0, c.replaced_claim_id.is_not(None))):
                if claim in wanted:
                    found.setdefault(int(claim), set()).add(code)
        return found

    def promotions(self) -> dict[tuple[str, int], Promoted]:
        """``{(sequence, step): winner}`` of promoted A/B winners, each with when it was promoted."""
        c = Promotion.__table__.c  # type: ignore[attr-defined]
        with self.engine.connect() as conn:
            return {(s, int(step)): Promoted(v, _aware(at))
                    for s, step, v, at in conn.execute(select(c.sequence, c.step, c.variant, c.promoted_at))}

    def promote(self, sequence: str, step: int, variant: str, probability: float, recipients: int,
                now: datetime) -> bool:
        """Record a promotion; ``False`` when that step already has one (it stays)."""
        table = Promotion.__table__  # type: ignore[attr-defined]
        try:
            with self.engine.begin() as conn:
                conn.execute(insert(table).values(sequence=sequence, step=step, variant=variant,
                                                  probability=probability, recipients=recipients,
                                                  promoted_at=_naive(now)))
            return True
        except IntegrityError:
            return False

    def promotion_rows(self) -> list[dict[str, Any]]:
        c = Promotion.__table__.c  # type: ignore[attr-defined]
        with self.engine.connect() as conn:
            return [dict(row, promoted_at=_aware(row["promoted_at"]))
                    for row in conn.execute(select(Promotion.__table__).order_by(c.id)).mappings()]  # type: ignore[attr-defined]


def _latest(rows: Iterable[Any], into: dict[str, datetime]) -> None:
    """The last message (a ``MESSAGED`` status) per contact of ``(contact, status, claimed_at)`` rows."""
    latest: dict[str, Any] = {}
    for contact, status, at in rows:
        if status in MESSAGED and at is not None and (contact not in latest or at > latest[contact]):
            latest[contact] = at
    for contact, at in latest.items():
        into[contact] = _aware(at)  # type: ignore[assignment]


@lru_cache(maxsize=2)
def _history_statements(as_json: bool) -> tuple[Any, Any, Any, Any]:
    """The four queries of :meth:`Ledger.history`, built once per process.

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
    suppressed = select(suppression.c.email_hash).where(suppression.c.email_hash.in_(one_of("hashes")))
    last_phone = select(message.c.phone, message.c.status, message.c.claimed_at).where(
        message.c.phone.in_(one_of("phones")))
    return steps, last, suppressed, last_phone


def _one_of_chunk(statements: Sequence[Any], build: Callable[[bool], Sequence[Any]], which: int, name: str,
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
    """The right side of ``IN`` for a list bound as ``name`` (see :func:`_history_statements`)."""
    if as_json:
        return select(column("value")).select_from(func.json_each(bindparam(name)))
    return bindparam(name, expanding=True)


@lru_cache(maxsize=2)
def _answered_statement(as_json: bool) -> Any:
    """:meth:`Ledger.survey_answered`'s query, built once per process (asked once per chunk)."""
    table = SurveyAnswer.__table__  # type: ignore[attr-defined]
    return select(table.c.cart_key).where(table.c.cart_key.in_(_one_of("keys", as_json)))


def _lock_is(run_id: int, name: str = "run") -> Any:
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


#: ``PRAGMA user_version`` of a SQLite ledger whose times are all in SQLAlchemy's text format.
_SQLITE_MOMENTS_NORMALISED = 1


def _normalise_sqlite_moments(engine: Any, tables: list[Any]) -> None:
    """Rewrite the times an older cartrescue wrote as ``'… 23:00:00+00:00'`` or
    ``'… 23:00:00.123456+00:00'`` (its raw claim path) as SQLAlchemy writes them, ``'… 23:00:00.000000'``.

    Times are compared as text in SQLite, and the two forms sorted apart by a hair at a whole
    second. Once per ledger: ``PRAGMA user_version`` records that it was done, and a ledger that
    has it set skips even the check. Every stored time is UTC, so only the form changes.
    """
    from sqlalchemy import DateTime

    try:
        with engine.begin() as conn:
            if conn.exec_driver_sql("PRAGMA user_version").scalar() >= _SQLITE_MOMENTS_NORMALISED:
                return
            for table in tables:
                for column in table.columns:
                    if isinstance(getattr(column.type, "impl", column.type), DateTime):
                        name = column.name
                        conn.exec_driver_sql(
                            f"UPDATE {table.name} SET {name} = substr({name}, 1, 19) || CASE WHEN substr({name}, 20, 1)"
                            f" = '.' THEN substr({name}, 20, 7) ELSE '.000000' END WHERE {name} LIKE '%+00:00'")
            conn.exec_driver_sql(f"PRAGMA user_version = {_SQLITE_MOMENTS_NORMALISED}")
    except OperationalError:  # a read-only or busy ledger is read as it is; the next open tries again
        pass


def _lock_is_param() -> Any:
    lock = RunLock.__table__  # type: ignore[attr-defined]
    return select(lock.c.run_id).where(lock.c.name == bindparam("c_lock")).scalar_subquery() == bindparam("c_run")


_RETURNING_UP_TO = 8  # claims per transaction up to which each is inserted with RETURNING
#: Claims per transaction up to which SQLite inserts them all in one statement (its parameters,
#: 21 a row and 2, stay below 999, the limit of SQLite builds before 3.32).
_GROUP_UP_TO = 32


def _sqlite_version() -> tuple[int, ...]:
    import sqlite3

    return sqlite3.sqlite_version_info


class _RawStatements:
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
        if dialect.name == "postgresql" or (dialect.name == "sqlite" and _sqlite_version() >= (3, 35)):
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
        value = _naive(at)
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


def _shard_words(lock_name: str) -> str:
    """``, shard 2/4`` for a shard's lock name, nothing for the unsharded ``run``."""
    return f", shard {lock_name.split(':', 1)[1]}" if ":" in lock_name else ""


#: How long a run on another host must have been silent before ``--resend-unconfirmed`` takes
#: its claims for gone: one paused longer than that (a VM frozen for an hour) is not told apart.
OTHER_HOST_GONE = timedelta(hours=1)


def older_ledger(where: str, behind: Sequence[str]) -> str:
    """Why a command that only reads does not read the older ledger of ``where`` (see
    :attr:`Ledger.behind`), and what brings it up to date."""
    shown = ", ".join(behind[:6]) + (f" and {len(behind) - 6} more" if len(behind) > 6 else "")
    return (f"{where}: the ledger is of an older cartrescue (it lacks {shown}) and this command only reads, so it "
            "left it unchanged: the next `cartrescue run` (a dry-run too) brings it up to date (it only adds "
            "tables and columns)")


#: PostgreSQL's words when a search_path names no schema that exists, and what to do about it.
NO_SCHEMA = "no schema has been selected to create in"
NO_SCHEMA_HINT = " (the URL's search_path names no schema that exists: CREATE SCHEMA it first)"


def why_no_file(url: str) -> str:
    """What SQLite's "unable to open database file" means for this ledger's path (it never says)."""
    from pathlib import Path

    from sqlalchemy.engine import make_url

    try:
        database = make_url(url).database
    except Exception:  # noqa: BLE001 - only for the message
        return ""
    if not database or database == ":memory:":
        return ""
    path = Path(database)
    folder = path.parent
    if path.is_dir():
        return f" ({path} is a folder: give a file name, e.g. {path / 'ledger.db'})"
    for above in (folder, *folder.parents):
        if above.exists():
            if not above.is_dir():
                return f" ({above} is a file, not a folder)"
            if above != folder:
                return f" (no folder {folder}: create it)"
            break
    if not os.access(folder, os.W_OK | os.X_OK):
        return f" (no permission to write in {folder})"
    if path.exists() and not os.access(path, os.R_OK | os.W_OK):
        return f" (no permission to read and write {path})"
    return ""


def _dead_runs(conn: Any, which: Any, now: datetime, stale_after: timedelta, over: Callable[[int], bool]) -> list[int]:
    """The ids of the runs matching ``which`` (a condition on cr_run) that are provably gone
    (:func:`_run_is_dead`) and hold no lock; ``over``: is a run one of this process's that is
    over (:meth:`Ledger._over`)?"""
    run = Run.__table__  # type: ignore[attr-defined]
    holders = set(conn.execute(select(RunLock.__table__.c.run_id)).scalars())  # type: ignore[attr-defined]
    rows = conn.execute(select(run.c.id, run.c.status, run.c.heartbeat_at, run.c.started_at, run.c.host, run.c.pid,
                               run.c.process).where(which)).mappings().all()
    return [row["id"] for row in rows
            if row["id"] not in holders and _run_is_dead(row, now, stale_after, over(row["id"]))]


def _note_left_claims(conn: Any, run_id: int, now: datetime) -> dict[int, int]:
    """The claims without outcome of runs that ended (not ``running``) other than ``run_id``, not
    noted yet, by run; noted now: their ``finished_at`` is set and their ``reply`` says which run
    found them, the status stays ``claimed`` (no outcome, not resent: at most once). An outcome
    written later (a run of another host closed as killed that wakes) replaces the note.

    A run stopped by Ctrl-C or SIGTERM, a ledger error or a lost lock ends with its ``cr_run`` row
    finished (``interrupted``, ``failed``, ``lock_lost``), so :meth:`Ledger.close_dead_runs`
    never took it for a killed one, and no later run said its claims in flight were left without
    outcome. The note makes it said once, by the one run (or shard) whose update took the rows. A
    killed run's rows are said when it is closed: its status, ``killed``, is not looked at here.

    The update comes first in its transaction: a SQLite (WAL) transaction that reads before it
    writes fails at once (``database is locked``, no busy wait) when another shard of the run
    wrote meanwhile; one that begins with its write waits for the lock."""
    run, message = Run.__table__, Message.__table__  # type: ignore[attr-defined]
    ended = select(run.c.id).where(run.c.status.not_in(("running", "killed")), run.c.id != run_id)
    note = (f"no outcome: its run ended with this message in flight; found by run #{run_id} (not resent unless "
            "--resend-unconfirmed)")
    done = conn.execute(update(message).where(
        message.c.status == "claimed", message.c.finished_at.is_(None), message.c.run_id.in_(ended)).values(
        finished_at=_naive(now), reply=note))
    if not done.rowcount:
        return {}
    return {int(ended_id): int(n) for ended_id, n in conn.execute(
        select(message.c.run_id, func.count()).where(message.c.status == "claimed", message.c.reply == note)
        .group_by(message.c.run_id))}


def _sent_by(conn: Any, run_id: int) -> int:
    """How many messages run ``run_id`` recorded as sent: the ledger's count, whatever its caller counted."""
    message = Message.__table__  # type: ignore[attr-defined]
    return int(conn.execute(select(func.count()).select_from(message).where(
        message.c.run_id == run_id, message.c.status == "sent")).scalar() or 0)


def _run_is_dead(row: Any, now: datetime, stale_after: timedelta, ended: bool = False) -> bool:
    """Is the run of ``row`` (a cr_run row, not the lock holder) certainly not delivering any more?

    Finished runs are. On this host a run is dead when its process is gone (a stopped process
    still exists: it may wake and deliver); on another host, when its heartbeat is older than
    ``stale_after`` (the heartbeat comes every ``lock_timeout / 4`` while it lives).
    """
    here = row["host"] == socket.gethostname()
    # A run of another host closed as killed by a later run (after lock_timeout of silence):
    # for its claims the time since its last heartbeat still decides (release_unconfirmed's hour).
    if row["status"] != "running" and (here or row["status"] != "killed"):
        return True
    if here:
        try:
            pid = int(row["pid"])
        except (TypeError, ValueError):
            return False
        return _process_gone(pid, row["process"], ended)
    last = _aware(row["heartbeat_at"] or row["started_at"])
    return last is None or now - last > stale_after


def process_identity(pid: int | None = None) -> str | None:
    """Which process has ``pid`` (default: this one) on this host: ``<boot id>:<start time>``,
    the kernel's boot id and the process's start in clock ticks since boot (field 22 of
    ``/proc/PID/stat``); None where ``/proc`` does not tell (not Linux, the process gone or hidden,
    a ``/proc`` of another pid namespace: a container's run sees the host's unless it mounts its own).

    A pid alone names no process for long: a container restarted under the same host name gives
    its run the same pid (2, every time), and a killed run's lock was taken for a live one's until
    ``lock_timeout`` (2 h). A pid, the same boot and the same start are the same process."""
    try:
        if os.readlink("/proc/self") != str(os.getpid()):  # another pid namespace's /proc: its pids are not ours
            return None
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
        stat = Path(f"/proc/{os.getpid() if pid is None else pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rfind(")") + 2:].split()  # the name, in parentheses, may hold spaces and ")"
    if len(fields) < 20 or not boot:
        return None
    return f"{boot}:{fields[19]}"  # field 22; fields[0] is field 3


def _process_gone(pid: int, recorded: str | None, ended: bool) -> bool:
    """Is the process of this host that recorded ``pid`` (and ``recorded``, its
    :func:`process_identity`) for a run certainly gone? ``ended``: the run is one of this
    process's that is over (:class:`RunsOver`).

    Gone when no process has the pid; when the host booted again since (another boot id); when
    the process with that pid now started at another time (the pid was reused); and when the pid
    is this process's own and the row is not of a run this process has going: another process
    of that pid wrote it (its identity differs or was not recorded, by an older cartrescue), or
    this process did for a run that ended without removing it (the ledger was locked). A process
    ``/proc`` does not show (another system, ``hidepid``) is judged by its pid alone, as when no
    identity was recorded: a stopped process still exists, and may wake and deliver."""
    here = process_identity()
    if pid == os.getpid():
        return ended or (here is not None and recorded != here)
    if recorded is not None and here is not None and recorded.split(":")[0] != here.split(":")[0]:
        return True  # another boot: every process of that one is gone
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except (PermissionError, OverflowError):
        pass
    if recorded is None:
        return False
    now_there = process_identity(pid)
    return now_there is not None and now_there != recorded


def _chunks(items: list[Any], size: int) -> Iterator[list[Any]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


def busy(exc: BaseException) -> bool:
    """Is this database error "another process holds the lock" (SQLite busy, a lock timeout)?"""
    text = str(getattr(exc, "orig", None) or exc).lower()
    return any(word in text for word in ("database is locked", "lock timeout", "lock_timeout",
                                         "lock wait timeout", "canceling statement due to lock"))


def ledger_error(exc: BaseException, where: str) -> Exception:
    """The error a run reports for a database error of the ledger: busy is "locked" (exit 4); a
    ledger that stopped answering is said in its own words (:class:`cartrescue.drivers.Silence`)."""
    silent = stopped_answering(exc)
    if silent is not None:
        return LedgerError(f"{silent}: nothing more was claimed; a message whose outcome could not be "
                           "recorded keeps its claim and is not sent again (doctor lists it)")
    if busy(exc):
        return LockHeld(f"{where} is busy: another process holds its lock ({one_line(exc)}); a later run "
                        "goes on (a stopped cartrescue process keeps it locked: resume or end it)")
    return LedgerError(f"{where}: {one_line(exc)}")


def one_line(exc: BaseException) -> str:
    """A database error as one line: the driver's message, its first line."""
    text = str(getattr(exc, "orig", None) or exc)
    return text.strip().splitlines()[0] if text.strip() else type(exc).__name__
