"""Domain types shared by every seam: carts, orders, decisions.

Owns the normalized, source-independent shape of the data. Sources produce these types, the
pipeline consumes them, channels receive rendered messages built from them. Nothing here reads
files, talks to databases or knows the CLI; persisted tables live in :mod:`cartrescue.ledger`.

Money is :class:`~decimal.Decimal` with a currency code, never float. Every datetime is
timezone-aware UTC; a shop's timezone is applied only at the edges.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import MISSING, dataclass, field, fields
from datetime import datetime, timezone
from decimal import Decimal
from enum import StrEnum
from typing import Any, ParamSpec, TypeVar

from cartrescue.text import clipped

_T = TypeVar("_T")
_P = ParamSpec("_P")


#: From this many fields on, :func:`quick_init` lends an instance to its twin class while it is built.
LEND_FROM = 5


def quick_init(cls: type[_T]) -> type[_T]:
    """Give a frozen, slotted dataclass built once per cart, item, decision or message a faster ``__init__``.

    The ``__init__`` that ``dataclass(frozen=True)`` writes stores each field through
    ``object.__setattr__``, since the class's own ``__setattr__`` refuses: ~1,450 instructions
    a field (callgrind). This one stores it through the field's own slot descriptor (~750), and
    a class of :data:`LEND_FROM` fields or more lends the new instance for the while of its
    ``__init__`` to a twin class with the same slots and no ``__setattr__`` of its own, stores
    each field with a plain assignment (a direct slot store, ~135) and gives the instance its
    class back: ~2,500 instructions for the two class assignments (Python allows them between
    classes of one slot layout), which pay from five fields on. The signature, the defaults and
    the default factories are the dataclass's own, and the instances stay frozen: assigning a
    field still raises ``FrozenInstanceError``. A subclass's instance is never lent (it keeps
    its class). A run builds tens of such objects per cart.
    """
    names, signature, factories, fields_ = _init_code(cls, "quick_init")
    lend = [f"self.{name} = {name}" for name in fields_]
    store = [f"_set_{name}(self, {name})" for name in fields_]
    for name in fields_:
        names[f"_set_{name}"] = getattr(cls, name).__set__
    if len(lend) >= LEND_FROM:
        names["_TWIN"] = _twin(cls)
        body = (["if type(self) is _CLS:", "  _setattr(self, '__class__', _TWIN)"] + [f"  {line}" for line in lend]
                + ["  self.__class__ = _CLS", "else:"] + [f"  {line}" for line in store])
    else:
        body = store or ["pass"]
    source = f"def __init__(self, {', '.join(signature)}):\n" + "".join(f"  {line}\n" for line in factories + body)
    exec(source, names)  # noqa: S102 - our own text, built from the dataclass's field names
    init = names["__init__"]
    init.__qualname__ = f"{cls.__qualname__}.__init__"
    init.__module__ = cls.__module__
    init.__doc__ = cls.__init__.__doc__
    cls.__init__ = init  # type: ignore[misc,method-assign]
    return cls


def quick_new(cls: Callable[_P, _T]) -> Callable[_P, _T]:
    """A function that builds a ``cls`` as ``cls(...)`` does (the same arguments, defaults and
    default factories; a frozen instance of ``cls`` itself), for ~2,000 instructions less an
    instance (callgrind): it is made as the twin class of :func:`quick_init`, each field a plain
    slot store, and given its class once. ``cls(...)`` also passes ``type.__call__`` and
    ``__init__`` and lends the instance to the twin and back, two class assignments. For what a
    source builds per row and cart (the CSV source's line items, customers and carts), made
    once at import; also for what the planner builds per cart (a decision, a verdict, a score),
    which it calls with keywords: ``type.__call__`` has no vectorcall, so they became a dict and
    back (~5,000 of a ``Decision``'s ~13,000 instructions). Typed as the class, so a call is
    checked as the class's own."""
    if not isinstance(cls, type):
        raise TypeError(f"quick_new: {cls!r} is not a class")
    names, signature, factories, fields_ = _init_code(cls, "quick_new")
    names["_TWIN"], names["_new"] = _twin(cls), object.__new__
    body = ["self = _new(_TWIN)", *(f"self.{name} = {name}" for name in fields_), "self.__class__ = _CLS",
            "return self"]
    source = f"def new({', '.join(signature)}):\n" + "".join(f"  {line}\n" for line in factories + body)
    exec(source, names)  # noqa: S102 - our own text, built from the dataclass's field names
    new: Callable[_P, _T] = names["new"]
    new.__qualname__ = new.__name__ = f"new_{cls.__name__}"
    new.__module__ = cls.__module__
    return new


def _init_code(cls: type, what: str) -> tuple[dict[str, Any], list[str], list[str], list[str]]:
    """What :func:`quick_init` and :func:`quick_new` write a dataclass's ``__init__`` from: the
    names its code sees, its parameters as the dataclass has them, the lines that call its
    default factories, and its fields; refuses a class whose instances they cannot build."""
    params = getattr(cls, "__dataclass_params__", None)
    if params is None or not params.frozen or "__slots__" not in cls.__dict__ or hasattr(cls, "__post_init__"):
        raise TypeError(f"{what}: {cls.__name__} must be a frozen, slotted dataclass without __post_init__")
    if cls.__bases__ != (object,):  # a dataclass base's __setattr__ would refuse the twin's stores
        raise TypeError(f"{what}: {cls.__name__} must derive from object alone")
    names: dict[str, Any] = {"_FACTORY": object(), "_CLS": cls, "_setattr": object.__setattr__}
    signature, factories, fields_ = [], [], []
    for item in fields(cls):
        if not item.init:
            raise TypeError(f"{what}: {cls.__name__}.{item.name} is not an __init__ field")
        if item.default is not MISSING:
            names[f"_default_{item.name}"] = item.default
            signature.append(f"{item.name}=_default_{item.name}")
        elif item.default_factory is not MISSING:
            names[f"_factory_{item.name}"] = item.default_factory
            signature.append(f"{item.name}=_FACTORY")
            factories.append(f"if {item.name} is _FACTORY: {item.name} = _factory_{item.name}()")
        else:
            signature.append(item.name)
        fields_.append(item.name)
    return names, signature, factories, fields_


def _twin(cls: type) -> type:
    """A class of ``cls``'s slots and nothing else (no ``__setattr__``): an instance may be lent
    to it while built, and given ``cls`` back (one slot layout)."""
    return type(f"{cls.__name__}Building", (), {"__slots__": cls.__dict__["__slots__"], "__module__": cls.__module__})


@quick_init
@dataclass(frozen=True, slots=True)
class Customer:
    """Who owns a cart. ``marketing_consent`` (e-mail and other marketing) and ``sms_consent``
    (text messages: separate, as the law and the shops keep it) are ``None`` when the shop does
    not say."""

    email: str | None
    id: str | None = None
    phone: str | None = None
    first_name: str | None = None
    last_name: str | None = None
    locale: str | None = None
    is_guest: bool = False
    marketing_consent: bool | None = None
    sms_consent: bool | None = None


@quick_init
@dataclass(frozen=True, slots=True)
class LineItem:
    """One product line of a cart; cost and stock are optional (not every shop knows them)."""

    sku: str
    name: str
    quantity: int
    unit_price: Decimal
    unit_cost: Decimal | None = None
    stock_on_hand: int | None = None
    image_url: str | None = None
    product_url: str | None = None

    @property
    def line_total(self) -> Decimal:
        return self.unit_price * self.quantity


@quick_init
@dataclass(frozen=True, slots=True)
class Cart:
    """An abandoned-cart candidate as read from a source, normalized.

    ``key`` (source + id) is what the ledger uses, so the same id from two sources never clashes.
    """

    id: str
    source: str
    customer: Customer
    currency: str
    items: tuple[LineItem, ...]
    total: Decimal
    created_at: datetime
    updated_at: datetime
    recovery_url: str | None = None
    store_id: str | None = None
    device: str | None = None
    # Where the cart was read ("carts.csv:17", "quote entity_id=42"): errors found later name it.
    origin: str | None = None
    # The total in the shop's base currency when the source knows it (Magento base_grand_total,
    # PrestaShop's conversion_rate); None: cartrescue.currency derives it from shop.exchange_rates.
    base_total: Decimal | None = None

    @property
    def key(self) -> str:
        return f"{self.source}:{self.id}"

    @property
    def email(self) -> str | None:
        return self.customer.email


_ZERO = Decimal("0")
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)  # an unreadable order's time: never compared
#: The status of an order whose row was found but could not be read (:meth:`Order.unreadable_row`).
UNREADABLE = "unreadable"
#: The status a shop preset gives an order its shop marked refunded (Magento's ``closed``,
#: PrestaShop's ``PS_OS_REFUND``, WooCommerce's ``refunded``): everything was given back.
REFUNDED = "refunded"


def refunded_whole(total: Decimal, refunded: Decimal) -> bool:
    """Whether refunds gave back all of an order: then it is no sale, as an order whose status
    says refunded is none (``IGNORED_ORDER_STATUSES``), and nothing of it is still to come."""
    return refunded > 0 and refunded >= total


@quick_init
@dataclass(frozen=True, slots=True)
class Order:
    """An order as far as eligibility, priority and attribution need it.

    ``delivered`` is ``None`` when the shop does not track delivery.
    """

    id: str
    created_at: datetime
    email: str | None = None
    customer_id: str | None = None
    cart_id: str | None = None
    total: Decimal = Decimal("0")
    currency: str | None = None
    status: str = ""
    delivered: bool | None = None
    base_total: Decimal | None = None  # in the shop's base currency, when the source knows it
    #: The discount codes the order used, where the source records them (report; the source's
    #: :meth:`~cartrescue.sources.base.CartSource.orders_carry_codes` says whether it does): several
    #: where the shop lets coupons stack (WooCommerce's coupons, PrestaShop's cart rules).
    discount_codes: tuple[str, ...] = ()
    #: Set (where the row is) when the source found this order's row but could not read it: its
    #: time and total are unknown, so its customer's carts wait (``unreadable_order``).
    unreadable: str | None = None
    #: For an order dated without a time, the start of that day: ``created_at`` is its end
    #: (:func:`cartrescue.sources.values.parse_order_time`), and it was placed somewhere between.
    day_start: datetime | None = None
    #: What the shop has refunded of it so far, in ``currency`` (read by the report where the
    #: source knows it), and in the base currency where the source knows that: the report counts
    #: the order's revenue net of it (:meth:`net`), as a partly returned order did not earn its total.
    refunded: Decimal = Decimal("0")
    base_refunded: Decimal | None = None
    #: The buyer's phone number in E.164, read in the shop's region as a cart's number is
    #: (:func:`~cartrescue.contacts.normalize_phone`): a cart without an address is its
    #: customer's by that number (:func:`~cartrescue.decide.newest.customer_key`); None: none, or
    #: none that is a valid number.
    phone: str | None = None

    def net(self) -> tuple[Decimal, Decimal | None]:
        """``(total, base_total)`` less what was refunded, never below 0. A base total without a
        known base refund loses the refund at the order's own rate (its base total / its total)."""
        if not self.refunded:
            return self.total, self.base_total
        net = max(self.total - self.refunded, _ZERO)
        base = self.base_total
        if base is not None:
            if self.base_refunded is not None:
                base = max(base - self.base_refunded, _ZERO)
            else:
                base = base * net / self.total if self.total > 0 else _ZERO
        return net, base

    @property
    def base_rate(self) -> Decimal | None:
        """Units of the base currency per unit of the order's, as the source converted this order
        (its base total / its total); None where it gave no base total. Other amounts of the same
        order (a fixed incentive's cost in the report) are converted at it, not at today's rates."""
        if self.base_total is None or self.total <= 0:
            return None
        return self.base_total / self.total

    @property
    def awaits_delivery(self) -> bool:
        """Not delivered yet, and not refunded in full: the shop owes the customer goods. An order
        refunded by amount keeps its status ("paid", "processing"), yet nothing is coming: it
        holds back no reminder (``eligibility.pending_within``); nor does one marked refunded,
        whatever amounts the source read of it."""
        return self.delivered is False and self.status != REFUNDED and not refunded_whole(self.total, self.refunded)

    @property
    def earliest(self) -> datetime:
        """The earliest moment it may have been placed (a report counts its whole day)."""
        return self.day_start or self.created_at

    @classmethod
    def unreadable_row(cls, order_id: str, where: str, email: Any = None, customer_id: Any = None,
                       cart_id: Any = None, phone: str | None = None) -> "Order":
        """An order row found but not read (``where``: its file line or table key), with the ids
        it gives as they are: only :meth:`cartrescue.decide.orders.OrderBook.facts` looks at it."""
        def text(value: Any) -> str | None:
            return str(value).strip() or None if value is not None else None

        email = text(email)
        return cls(str(order_id), _EPOCH, email.lower() if email else None, text(customer_id), text(cart_id),
                   status=UNREADABLE, unreadable=where, phone=phone)


@dataclass(frozen=True, slots=True)
class Attachment:
    """A file attached to a message (the HTML report of ``report --email``)."""

    filename: str
    content_type: str  # "text/html"
    data: bytes


@quick_init
@dataclass(frozen=True, slots=True)
class MarketingSend:
    """A message the shop sent an address through another tool (its newsletter), not cartrescue.

    Read so that a cart reminder does not land on the same day as the shop's newsletter.
    """

    email: str  # normalized (see cartrescue.contacts.normalize_email)
    sent_at: datetime  # UTC
    campaign: str | None = None


@dataclass(frozen=True, slots=True)
class RowProblem:
    """A source row that could not be read: where it is and why. Reported, then skipped."""

    location: str  # "carts.csv:17" or "quote entity_id=42"
    reason: str
    #: The id of the cart the row is, when a database source knows it: ``preview`` of that cart
    #: then says why it cannot be read (the location is each table's own, "quote entity_id=42").
    cart_id: str | None = field(default=None, compare=False)
    #: The problem is the whole export's (a column misnamed or absent), every cart's as much as
    #: any: ``preview`` of any cart shows it, as a run reports it once.
    whole_file: bool = field(default=False, compare=False)

    def __post_init__(self) -> None:
        if len(self.reason) > PROBLEM_REASON_LIMIT:  # it quotes a value as read, whatever its size
            object.__setattr__(self, "reason", clipped(self.reason, PROBLEM_REASON_LIMIT))

    def __str__(self) -> str:
        return f"{self.location}: {self.reason}"


#: How many :class:`RowProblem` a run lists (all are counted): a file's first, in file order.
PROBLEMS_KEPT = 1000


#: The longest reason a :class:`RowProblem` keeps (a quoted value is cut, "…" marks the cut).
PROBLEM_REASON_LIMIT = 300


class Action(StrEnum):
    """What a run does with a cart."""

    SEND = "send"  # a message goes out now (or would, in a dry-run)
    SKIP = "skip"  # nothing now, and the reason will not go away by waiting
    DEFER = "defer"  # nothing now; a later run will look again
    HOLDOUT = "holdout"  # deliberately not messaged, to measure lift


class Reason(StrEnum):
    """Machine-readable reason codes; stable, documented in the README."""

    DUE = "due"
    EMPTY_CART = "empty_cart"
    ZERO_VALUE = "zero_value"
    NO_CONTACT = "no_contact"
    BOT_OR_DISPOSABLE = "bot_or_disposable"
    NO_CONSENT = "no_consent"
    SUPPRESSED = "suppressed"
    ORDERED = "ordered"
    PENDING_ORDER = "pending_order"
    UNREADABLE_ORDER = "unreadable_order"  # an order row of the customer (or cart) could not be read
    TOO_OLD = "too_old"
    OUTSIDE_BACKFILL = "outside_backfill"
    IDLE_BELOW_CUTOFF = "idle_below_cutoff"
    NEWER_CART = "newer_cart_for_address"
    ANSWERED_SURVEY = "answered_survey"  # the customer told us why they left: no more reminders for the cart
    SEQUENCE_DONE = "sequence_done"
    STEP_NOT_DUE = "step_not_due"
    MESSAGED_TODAY = "messaged_today"
    NEWSLETTER_TODAY = "newsletter_today"  # the shop's newsletter (another tool's send) reached the address today
    QUIET_HOURS = "quiet_hours"
    BUDGET = "tier_budget"
    RUN_LIMIT = "run_limit"
    HOURLY_QUOTA = "hourly_quota"  # the channel's rate_per_hour has no room left this hour: not claimed
    HOLDOUT = "holdout"


# The members the planner, the gates and the sequence compare and store for every cart, as module
# globals of their own (imported by name, each is a global of the importer too): in Python 3.11 an
# enum class has a ``__getattr__`` (EnumType), so ``Action.SEND`` costs ~450 instructions a lookup,
# a global ~40 (callgrind: -0.6 % of B2).
ACTION_DEFER = Action.DEFER
ACTION_HOLDOUT = Action.HOLDOUT
ACTION_SEND = Action.SEND
ACTION_SKIP = Action.SKIP
REASON_ANSWERED_SURVEY = Reason.ANSWERED_SURVEY
REASON_BOT_OR_DISPOSABLE = Reason.BOT_OR_DISPOSABLE
REASON_BUDGET = Reason.BUDGET
REASON_DUE = Reason.DUE
REASON_EMPTY_CART = Reason.EMPTY_CART
REASON_HOLDOUT = Reason.HOLDOUT
REASON_HOURLY_QUOTA = Reason.HOURLY_QUOTA
REASON_IDLE_BELOW_CUTOFF = Reason.IDLE_BELOW_CUTOFF
REASON_MESSAGED_TODAY = Reason.MESSAGED_TODAY
REASON_NEWER_CART = Reason.NEWER_CART
REASON_NEWSLETTER_TODAY = Reason.NEWSLETTER_TODAY
REASON_NO_CONSENT = Reason.NO_CONSENT
REASON_NO_CONTACT = Reason.NO_CONTACT
REASON_ORDERED = Reason.ORDERED
REASON_OUTSIDE_BACKFILL = Reason.OUTSIDE_BACKFILL
REASON_PENDING_ORDER = Reason.PENDING_ORDER
REASON_QUIET_HOURS = Reason.QUIET_HOURS
REASON_RUN_LIMIT = Reason.RUN_LIMIT
REASON_SEQUENCE_DONE = Reason.SEQUENCE_DONE
REASON_STEP_NOT_DUE = Reason.STEP_NOT_DUE
REASON_SUPPRESSED = Reason.SUPPRESSED
REASON_TOO_OLD = Reason.TOO_OLD
REASON_UNREADABLE_ORDER = Reason.UNREADABLE_ORDER
REASON_ZERO_VALUE = Reason.ZERO_VALUE


def score_text(score: float) -> str:
    """A score as a person reads it where ``--json`` has the number: whole (``1234567.5``, ``85``,
    ``0.8``). ``:g`` kept six significant digits: 1,234,567.5 read ``1.23457e+06`` in the call
    list staff sort by, and in ``carts``' table, with weights up to 1,000,000."""
    text = repr(float(score))  # the shortest decimal that reads back as the score
    return text[:-2] if text.endswith(".0") else text


@quick_init
@dataclass(frozen=True, slots=True)
class Decision:
    """The outcome of planning one cart: the answer to "why did (not) this cart get a message?"."""

    cart: Cart
    action: Action
    reason: Reason
    score: float | None = None
    tier: str | None = None
    step: int | None = None  # 1-based step of the sequence, when one is concerned
    channel: str | None = None
    template: str | None = None
    variant: str | None = None
    not_before: datetime | None = None  # for defers: when a later run may act
    detail: str = ""
    facts: "CartFacts | None" = field(default=None, compare=False)
    phone: str | None = None  # the customer's number in E.164, when the shop sends SMS (checked by the planner)
    # A send of a tier with ``over_budget: email``: the channel it takes if the budget has no room
    # (checked when decided: the customer can get this step that way now). None: it waits.
    instead: str | None = field(default=None, compare=False)
    # Its tier's budget: a send the budget kept takes one of its slots; a ``tier_budget`` deferral
    # among the budget's reserve may take the slot of a kept send this run does not claim
    # (:meth:`cartrescue.pipeline.Executor._give_back`). False: no budget is concerned.
    budgeted: bool = field(default=False, compare=False)


@quick_init
@dataclass(frozen=True, slots=True)
class CartFacts:
    """What the pipeline learned about a cart from orders and the ledger, for rules and templates."""

    previous_orders: int = 0
    margin: Decimal | None = None  # share of the total that is margin, 0..1; None = unknown
    overstocked: bool = False


@quick_init
@dataclass(frozen=True, slots=True)
class Address:
    """A mailbox: display name (may be empty) and address."""

    email: str
    name: str = ""


@quick_init
@dataclass(frozen=True, slots=True)
class OutgoingMessage:
    """A rendered message ready for a channel: everything needed to build the MIME bytes.

    Values come from cart data, so they are untrusted: the MIME builder must neutralize CR/LF
    in every header value (no header injection).
    """

    message_id: str  # "<local@shop-domain>", angle brackets included
    sender: Address
    to: Address
    subject: str
    text: str
    html: str
    date: datetime
    reply_to: str | None = None
    headers: tuple[tuple[str, str], ...] = ()  # extra headers: List-Unsubscribe, ...
    language: str | None = None  # the locale it is written in (its template folder, ``sr_Latn``): Content-Language
