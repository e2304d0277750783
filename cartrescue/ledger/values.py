"""What the ledger is asked with and answers with: statuses, channel sets and value types.

Apart from the tables and the handle: the planner, the preview and the experiments use these
(``SentStep``, ``History``, ``ClaimRequest``) without a database, and every module of the
ledger reads the statuses.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from cartrescue.model import quick_init

#: ``owns(email, cart_key, phone)``: does a shard own this message's cart? (cartrescue.shards.Shard.owns:
#: by the address, else the number of a customer without one, else the cart key)
Owner = Callable[[str | None, str, str | None], bool]
#: Statuses of a step with no known outcome: the process that claimed it may have delivered it.
UNCONFIRMED = ("claimed", "unconfirmed")
#: Statuses of a message the customer may have received: its incentive code is spent (``forget``
#: keeps it, ``codes list`` counts it active until its expiry, then expired).
MAYBE_DELIVERED = ("sent", *UNCONFIRMED)
#: Transports whose channel sends a request again when its answer was lost (the webhook: its
#: receiver drops a repeated ``Idempotency-Key``): a message of theirs that failed in the end may
#: still have reached the receiver on an earlier attempt, and the customer may hold its code.
RESENDS_LOST = ("webhook",)
#: Statuses that count as "the address got a message" (one per day) -- a permanent refusal too:
#: the relay took the attempt, and the next step must not follow the same day.
MESSAGED = ("claimed", "unconfirmed", "sent", "failed_permanent")
#: The rows ``report`` counts: messages that went out (an ``unconfirmed`` one reached the relay,
#: whose reply was lost: it counts as done, and most likely reached the customer) and held-out carts.
REPORTED = ("sent", "unconfirmed", "held_out")
#: Statuses that make a step "done" for the planner (:func:`cartrescue.decide.sequence.step_number`):
#: claimed or unconfirmed (maybe sent: at most once), sent, permanently failed (the relay refused
#: it: the attempt counts, see docs/sending.md), held out (the control group: the step passed
#: without a message, on purpose). The ledger asks it too: a step released by
#: ``--resend-unconfirmed`` is not sent again once a later step of its cart is done.
STEP_DONE = frozenset({"claimed", "unconfirmed", "sent", "failed_permanent", "held_out"})
#: Statuses of an attempt that reached no one: ``doctor`` names a channel all of whose attempts end so.
DELIVERY_FAILED = ("failed_transient", "failed_permanent")
#: The channels that reach the customer's number, and so are claimed at most once a day per number
#: (:meth:`Ledger.claim`'s ``day``); the others go to an address, which one shard owns.
NUMBER_CHANNELS = frozenset({"sms", "call-list"})
#: The channels that go to the customer's address (claimed with it): the e-mail, and the webhook
#: document the shop's own mailer sends from the rendered e-mail parts, survey links included.
ADDRESS_CHANNELS = frozenset({"email", "webhook"})


@dataclass(frozen=True, slots=True)
class TierUse:
    """A tier's claims of a period (:meth:`Ledger.tier_used_since`): ``total``, all of them;
    ``own``, those of the asking shard's addresses (``total`` for an unsharded run)."""

    total: int
    own: int
    #: What the other shards of the layout, still running, may yet claim of what they reserved
    #: (:meth:`Ledger.reserve_day_budget`); 0 where nothing was reserved.
    pending: int = 0


class Claimed(dict[tuple[str, int, str], int]):
    """What :meth:`Ledger.claim` won, ``{(cart_key, step, channel): message id}``, and ``refused``:
    the keys of texts and calls it did not claim because their number had a message that day."""

    refused: frozenset[tuple[str, int, str]] = frozenset()


class Released(int):
    """How many unconfirmed claims :meth:`Ledger.release_unconfirmed` released for resending, and
    ``not_resent``: those it released that are not sent again, since a later step of their cart
    is done (the planner sends no step after a later one: saying them "tried again" was untrue)."""

    not_resent: int = 0


@dataclass(slots=True)
class SentStep:
    step: int
    channel: str
    status: str
    at: datetime  # when it was claimed
    variant: str | None = None  # the A/B arm it went out in: later steps of its experiment keep it
    sequence: str | None = None  # the sequence it belongs to (whose experiment the variant is of)


@dataclass(frozen=True, slots=True)
class StoppedChannel:
    """A channel that has delivered nothing for ``doctor.stale_after`` though it was tried
    (:meth:`Ledger.stopped_channels`): ``failed``, its attempts in that time, every one failed;
    ``shard``, whose runs tried it (``""``: unsharded); ``last_delivered``, None for never."""

    channel: str
    shard: str
    failed: int
    last_delivered: datetime | None


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
    suppressed: dict[str, str] = field(default_factory=dict)  # contact hash (address or number) -> its reason
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


def may_have_reached(status: str, transport: str | None) -> bool:
    """Whether the customer may hold what a message carried (its incentive code): it was sent or
    has no known outcome (:data:`MAYBE_DELIVERED`), or it failed on a transport that resends a
    request whose answer was lost (:data:`RESENDS_LOST`). ``forget`` keeps such a code spent: put
    back in its pool, it could go to a second customer."""
    return status in MAYBE_DELIVERED or (transport in RESENDS_LOST and status in ("failed_transient", "failed_permanent"))
