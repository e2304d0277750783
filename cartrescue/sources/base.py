"""The cart-source seam: what every source (CSV, shop databases) must provide.

A source turns a shop's data into normalized :class:`~cartrescue.model.Cart` and
:class:`~cartrescue.model.Order` streams. It must not decide anything (eligibility, priority and
planning belong to the pipeline) and must never write to the shop's data.

Rows it cannot understand are reported through ``on_problem`` with a location a person can find
(``file:line`` or a primary key) and skipped; the pipeline decides whether that is fatal.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Collection, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Protocol

from cartrescue.model import Cart, MarketingSend, Order, RowProblem, quick_init

if TYPE_CHECKING:
    from cartrescue.shards import Shard

ProblemSink = Callable[[RowProblem], None]


def ignore_problem(problem: RowProblem) -> None:
    """Default sink for callers that do not care (tests of happy paths)."""


@dataclass(frozen=True, slots=True)
class Window:
    """Carts whose last activity lies in ``[start, end]`` (both UTC).

    Sources that can filter cheaply (an indexed range in SQL) should; the pipeline re-checks
    every cart anyway, so yielding a few carts outside the window is harmless.
    """

    start: datetime
    end: datetime

    def __contains__(self, moment: datetime) -> bool:
        return self.start <= moment <= self.end

    def overlaps(self, start: datetime, end: datetime) -> bool:
        """Some moment of ``[start, end]`` lies in the window: an order dated without a time
        (:attr:`Order.earliest` to its ``created_at``, its day's end) is in a report's window
        that ends today, now, not only in tomorrow's."""
        return start <= self.end and end >= self.start


#: Every moment a shop's data can hold: for looking a cart up whatever its age. Bounded (not
#: ``datetime.min``/``max``) so that any database and any timezone can compare with it.
ALL_TIME = Window(datetime(1970, 1, 1, tzinfo=timezone.utc), datetime(9000, 1, 1, tzinfo=timezone.utc))

class OrderFilter(Protocol):
    """``wanted(cart_id, email, customer_id, phone) -> bool`` of :meth:`CartSource.orders` (email
    lower-case; ``phone`` as the order row has it, typed in any form)."""

    #: Whether any key is a phone number (a message to a cart without an address): a source
    #: need not read its orders' numbers otherwise (an address join, a number parsed per order).
    phones: bool

    def __call__(self, cart_id: str | None, email: str | None, customer_id: str | None,
                 phone: str | None = None) -> bool: ...


def reads_phones(wanted: OrderFilter | None) -> bool:
    """Whether :meth:`CartSource.orders` must read its orders' phone numbers for ``wanted``."""
    return wanted is None or wanted.phones


@dataclass(frozen=True, slots=True)
class ProgressTotal:
    """How much reading :meth:`CartSource.carts` has ahead of it: a progress bar's total.

    ``unit`` is ``"bytes"`` (``position()`` says how far the read has got: a file) or
    ``"carts"`` (the caller counts the carts it gets; ``position`` is ``None``: a database's
    count of the window). An estimate is enough: a bar that ends a little early or late is fine.
    """

    total: int
    unit: str
    position: Callable[[], int] | None = None


@quick_init
@dataclass(frozen=True, slots=True)
class Activity:
    """The little the pipeline's first pass needs to know which cart is an address's newest.

    ``empty`` and ``free`` say what a source saw for sure of the cart's contents (no line item;
    a total of 0 or less, its base total where the source knows one): such a cart gets no
    reminder, so it is no address's newest (:class:`~cartrescue.decide.newest.NewestCarts`). A source
    that cannot tell cheaply leaves them False: the cart then counts, as every cart once did.

    ``no_marketing`` and ``no_sms`` say the cart's own consent said no (to marketing, to text
    messages), whatever its contents: the customer's latest word withdraws the consent an older
    cart of the address gave (:class:`~cartrescue.decide.newest.NewestCarts`). A source that reads
    consent per cart sets them (the CSV source; the ``sql`` source's query may return it per
    cart, :meth:`of`); where it is read per customer, every cart of the customer says the same.

    ``phone``: a cart without an address (``email`` ""), its phone number as written: such a
    customer (reached by text or on the call list) is known by the number instead
    (:func:`~cartrescue.decide.newest.customer_key`, which reads it in the shop's region). A cart with
    an address leaves it "": the address is the customer's key.
    """

    email: str  # normalized (see cartrescue.contacts.normalize_email); "" for a cart without one
    updated_at: datetime
    cart_key: str
    empty: bool = False
    free: bool = False
    no_marketing: bool = False
    no_sms: bool = False
    phone: str = ""

    @classmethod
    def of(cls, email: str, cart: Cart) -> "Activity":
        """A built cart's activity, its contents and consents read as the eligibility gates read
        them; without ``email``, with the cart's phone number."""
        base = cart.base_total
        customer = cart.customer
        return cls(email, cart.updated_at, cart.key, not cart.items, (cart.total if base is None else base) <= 0,
                   customer.marketing_consent is False, customer.sms_consent is False,
                   "" if email else (customer.phone or ""))

    @classmethod
    def of_cart(cls, cart: Cart) -> "Activity | None":
        """A built cart's activity under its customer's address, or, without one, its phone number
        (None: it has neither, and competes with no cart): what a first pass that builds carts yields."""
        from cartrescue.contacts import normalize_email

        email = normalize_email(cart.customer.email)
        if email or cart.customer.phone:
            return cls.of(email or "", cart)
        return None


class CartSource(ABC):
    """Reads carts and orders from one shop."""

    #: Short name used in cart keys (``source:id``) and messages; stable across runs.
    name: str = "source"

    def __init__(self, on_problem: ProblemSink = ignore_problem) -> None:
        self.on_problem = on_problem

    @abstractmethod
    def carts(self, window: Window) -> Iterator[Cart]:
        """Stream the carts whose last activity lies in ``window``; never load them all."""

    def keys_unique(self) -> bool:
        """Whether the carts pass under way yields each cart key once (asked once it has begun):
        the planner then skips its own check for a key met twice. A source can promise it only
        where it looked for repeats before building any cart (the CSV source's first pass)."""
        return False

    #: Why a cart key can come twice in one pass of this source, and the fix, said with the
    #: problem ("": nothing to say beyond it; the planner uses the first appearance).
    repeat_advice: str = ""

    def cart(self, cart_id: str) -> Cart | None:
        """The cart with this id, whatever its age (``preview``), or None.

        The default reads every cart; database sources override it with a lookup by key.
        """
        return next((cart for cart in self.carts(ALL_TIME) if cart.id == cart_id), None)

    def not_abandoned(self, cart_id: str) -> str | None:
        """Why the shop has ``cart_id`` but :meth:`cart` does not (ordered, inactive, empty), in
        words, for ``preview`` after :meth:`cart` found nothing; None when the shop has no such
        cart or the source cannot tell cheaply. "Not found" of a cart that was ordered sent
        whoever asked looking for a typo. The default cannot tell: an export has what it has."""
        return None

    def activity(self, window: Window) -> Iterator[Activity]:
        """Stream (address or, without one, phone number; last activity; cart key) for the
        carts in ``window``.

        Used to give only an address's newest cart a reminder stream. The default reads
        :meth:`carts` with problems silenced (the second pass reports them); sources override
        it with something cheaper.
        """
        saved, self.on_problem = self.on_problem, ignore_problem
        try:
            for cart in self.carts(window):
                activity = Activity.of_cart(cart)
                if activity is not None:
                    yield activity
        finally:
            self.on_problem = saved

    def unreadable(self, cart_keys: Sequence[str]) -> Collection[str]:
        """Those of ``cart_keys`` (carts its last :meth:`activity` or :meth:`shard_activity` pass
        gave) that the carts pass cannot build: it reports and skips them, so they are no
        customer's newest (:meth:`NewestCarts.readable <cartrescue.decide.newest.NewestCarts.readable>`).
        None by default: a first pass that builds its carts (this class's) or reads what the
        carts pass reads leaves such carts out itself. The CSV source's reads no line of a cart."""
        return ()

    def shard_carts(self, window: Window, shard: "Shard") -> Iterator[Cart]:
        """:meth:`carts` of one shard (``run --shard K/N``): the carts ``shard.owns``.

        The default builds every cart and keeps the shard's; the rows no cart could be built
        from are reported by shard 1 only (each shard reads them, one reports them). A source
        that can read the address before building a cart overrides this to skip the others'
        carts cheaply (the CSV source does).
        """
        saved = self.on_problem
        if shard.index != 1:
            self.on_problem = ignore_problem
        try:
            owns = shard.owns
            for cart in self.carts(window):
                customer = cart.customer
                if owns(customer.email, cart.key, customer.phone):
                    yield cart
        finally:
            self.on_problem = saved

    def shard_activity(self, window: Window, shard: "Shard") -> Iterator[Activity]:
        """:meth:`activity` of one shard: every customer's carts (an address's, a number's) are in
        its one shard, so the newest cart of a customer is found among the shard's carts alone."""
        owns = shard.owns
        return (item for item in self.activity(window) if owns(item.email, item.cart_key, item.phone))

    @abstractmethod
    def orders_for(self, carts: Sequence[Cart]) -> Iterator[Order]:
        """Orders that concern ``carts``: by cart id, by customer email or by customer id.

        Called once per chunk of carts, so a database source can answer with one query.
        """

    def orders(self, window: Window, wanted: "OrderFilter | None" = None) -> Iterator[Order]:
        """Stream every order placed in ``window`` (for ``report``), ignored statuses left out.

        Never load them all: a shop has millions. An order id should come once; where a source
        cannot promise it (a CSV with an id repeated far apart), the consumer keeps the first.
        ``wanted(cart_id, email, customer_id, phone)`` is a cheap pre-filter the caller may give (the
        report asks only for orders that can match a message): a source should skip the rows it
        says no to before parsing them; it may say yes wrongly, never no wrongly, and a source
        may ignore it. Where :func:`reads_phones`, an order carries its buyer's number
        (:attr:`Order.phone <cartrescue.model.Order.phone>`), and the number is passed to ``wanted``.
        Sources that cannot answer raise
        :class:`~cartrescue.errors.ConfigError` saying what to configure.
        """
        from cartrescue.errors import ConfigError

        raise ConfigError(f"{self.name} source: listing orders by time is not supported")

    def orders_carry_codes(self) -> bool:
        """Whether the orders :meth:`orders` yields tell the discount codes they used
        (:attr:`Order.discount_codes <cartrescue.model.Order.discount_codes>`), so that one without
        a code used none. Where a source cannot tell (this default), the report assumes every
        attributed order after an incentive used it (an upper bound of its cost); where it can, a
        period whose orders used no code redeemed nothing. Sources that read the code override it.
        Meaningful after :meth:`orders` has been read through (a file's header, a query's columns,
        a table found)."""
        return False

    def progress_total(self, window: Window) -> ProgressTotal | None:
        """How much :meth:`carts` will read for ``window``, for a progress bar with an ETA, or
        ``None`` when that is unknown (the bar then shows a count and a rate).

        Asked only when a person watches (a terminal): it may cost one cheap query, never a
        second read of the carts. Sources that cannot tell cheaply keep this default.
        """
        return None

    def check(self) -> list[str]:
        """Advice for ``doctor`` (a missing recommended index, ...); empty when all is well."""
        return []

    def sends_for(self, emails: Sequence[str], window: Window) -> Iterator[MarketingSend]:
        """The shop's own newsletter sends to ``emails`` (normalized) within ``window``.

        Database presets read the shop's newsletter tables here (see :class:`SendSource`);
        sources without any see nothing. Called once per chunk of carts, like :meth:`orders_for`.
        """
        return iter(())

    def sends_notes(self) -> list[str]:
        """Why :meth:`sends_for` sees nothing although it was asked to (a plugin's tables are
        missing); shown once per run. Meaningful after the first call of :meth:`sends_for`."""
        return []

    def report_notes(self) -> list[str]:
        """What :meth:`orders` could not read although it would have (a table the shop lacks),
        for the report's notes. Meaningful after :meth:`orders` has been read through."""
        return []

    def report_warnings(self) -> list[str]:
        """Those of :meth:`report_notes` the shop's administrator is to mend (a table the account
        may not read: a GRANT), said on stderr too, as a ``warning:`` line, and in ``--json``'s
        ``warnings``: a cron job reads stderr, not the digest's notes."""
        return []

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections or files."""

    def __enter__(self) -> "CartSource":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class SendSource(Protocol):
    """Reads the shop's other marketing sends (its newsletter), for the "not on a newsletter
    day" rule: a CSV export of the newsletter tool, or a database preset's own tables (every
    :class:`CartSource` has the two methods). Times are UTC; only sends within ``window``."""

    def sends_for(self, emails: Sequence[str], window: Window) -> Iterator[MarketingSend]:
        """The sends to ``emails`` (normalized) within ``window``; never every send of the shop."""
        ...

    def sends_notes(self) -> list[str]:
        """Why this reader sees nothing although it was asked to."""
        ...

    def close(self) -> None:
        """Release connections, files or scratch indexes."""
        ...
