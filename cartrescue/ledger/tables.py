"""The ledger's persisted tables (SQLModel) and the limits their columns put on stored values.

Apart because the schema is what opening a ledger creates or brings an older one up to
(:mod:`~cartrescue.ledger.schema`), and the config and the sources check names and values against
its column widths without opening a ledger.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from functools import lru_cache

from sqlalchemy import Index, UniqueConstraint
from sqlmodel import Field, SQLModel


class Message(SQLModel, table=True):
    """One message of one step to one cart: claimed, then sent or failed."""

    __tablename__ = "cr_message"
    __table_args__ = (
        UniqueConstraint("cart_key", "step", "channel", name="uq_cr_message_cart_step_channel"),
        Index("ix_cr_message_email_claimed", "email", "claimed_at"),
        Index("ix_cr_message_phone_claimed", "phone", "claimed_at"),
        # `suppress mailbox` finds whom a bounce or a spam complaint names by the Message-ID it
        # returns: without it, each report read every message of the ledger.
        Index("ix_cr_message_message_id", "message_id"),
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
    # The report reads the decisions of its period, and retention deletes those older than
    # ledger.retention: by their time, which without it meant every decision of the ledger read.
    __table_args__ = (Index("ix_cr_decision_decided_at", "decided_at"),)
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
    # The hashes (contacts.email_hash, phone_hash) of the cart's customer's address and number:
    # how ``forget`` finds a test rendered from a cart no run has messaged yet (no other row
    # names its customer), whose --outbox file holds their name and cart.
    customer_email_hash: str | None = Field(default=None, max_length=64)
    customer_phone_hash: str | None = Field(default=None, max_length=64)
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
    cart too long for the ledger costs itself alone, on every kind of ledger. The source checks
    them as :data:`cartrescue.sources.values.CART_WIDTHS`, written out (a test holds the two
    equal): the helper splitting an export need not import this module."""
    return _narrowest(CART_VALUES, _CART_TABLES)


@lru_cache(maxsize=1)
def config_value_limits() -> dict[str, int]:
    """The longest each of :data:`CONFIG_VALUES` may be, in characters: the narrowest column of
    its name in any table. A longer tier or sequence name stopped every run at its first claim
    on PostgreSQL (exit 2, after reading the carts), and MariaDB refused or cut it: the config
    refuses it as it loads instead (:meth:`cartrescue.config.Config.ledger_names`), against
    :data:`cartrescue.config.root.LEDGER_WIDTHS`, these written out (a test holds the two equal):
    reading a config need not import this module."""
    return _narrowest(CONFIG_VALUES, TABLES)
