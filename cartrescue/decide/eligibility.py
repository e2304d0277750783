"""Eligibility: may this cart get a message now, and if not, why not (a reason code)?

Owns the gates every cart passes, in a fixed order so that the reason shown is the most
fundamental one: contents, contact, bots, consent, suppression, orders, age and idleness, the
address's newer cart. Time-based gates that depend on the chosen step (due time, one message a
day, quiet hours) live in :mod:`cartrescue.decide.sequence`. It must not touch the ledger or sources:
callers hand it the facts.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Set as AbstractSet
from dataclasses import dataclass
from datetime import datetime, timedelta

from cartrescue.config import ConsentPolicy, EligibilityConfig
from cartrescue.contacts import email_hashes, has_number, phone_hash
from cartrescue.currency import Basis
from cartrescue.text import printable
from cartrescue.decide.newest import MARKETING, NO_WITHDRAWAL, SMS, Withdrawal
from cartrescue.decide.orders import OrderFacts
from cartrescue.model import (
    ACTION_DEFER,
    ACTION_SKIP,
    REASON_BOT_OR_DISPOSABLE,
    REASON_EMPTY_CART,
    REASON_IDLE_BELOW_CUTOFF,
    REASON_NEWER_CART,
    REASON_NO_CONSENT,
    REASON_NO_CONTACT,
    REASON_ORDERED,
    REASON_PENDING_ORDER,
    REASON_SUPPRESSED,
    REASON_TOO_OLD,
    REASON_UNREADABLE_ORDER,
    REASON_ZERO_VALUE,
    Action,
    Cart,
    Reason,
    quick_init,
    quick_new,
)


@quick_init
@dataclass(frozen=True, slots=True)
class Verdict:
    action: Action
    reason: Reason
    not_before: datetime | None = None
    detail: str = ""
    step: int | None = None  # the step it is about, when the sequence named one (sequence.next_step)


#: Builds a :class:`Verdict` as ``Verdict(...)`` does, for fewer instructions (:func:`~cartrescue.model.quick_new`):
#: the gates and the sequence make one for most carts.
new_verdict = quick_new(Verdict)


class Gates:
    """The configured eligibility gates, compiled once per run."""

    def __init__(self, config: EligibilityConfig, basis: Basis | None = None) -> None:
        self.config = config
        self.basis = basis or Basis(None)
        self._bots = [re.compile(pattern, re.IGNORECASE) for pattern in config.bot_patterns]
        # Each pattern's search and the detail it gives, made once: four searches an address.
        self._bot_searches = tuple((bot.search, f"matches bot pattern {bot.pattern!r}") for bot in self._bots)
        self._disposable = frozenset(domain.lower().strip(".") for domain in config.disposable_domains)
        # The limits :meth:`check` reads for every cart, as plain values: a read of a config
        # model's field costs ~450 instructions (pydantic's models have a ``__getattr__``).
        self._min_total = config.min_total
        self._consent = config.consent
        self._pending_within = config.pending_within
        self._max_age = config.max_age
        self._cutoff = config.cutoff

    def is_bot_or_disposable(self, email: str) -> str | None:
        for search, detail in self._bot_searches:
            if search(email):
                return detail
        domain = email.rpartition("@")[2]
        while domain:
            if domain in self._disposable:
                return f"disposable domain {domain}"
            domain = domain.partition(".")[2]
        return None

    def check(
        self,
        cart: Cart,
        facts: OrderFacts,
        *,
        now: datetime,
        suppressed: Suppressed,
        newest_cart: str | None,
        channel: str = "email",
        phone: str | None = None,
        phone_problem: str = "",
        sms_consent: ConsentPolicy = "required",
        withdrawn: Mapping[str, Withdrawal] = NO_WITHDRAWAL,
    ) -> Verdict | None:
        """The first gate the cart fails, or None when it passes them all.

        ``channel`` decides what counts as a contact and which consent applies: ``sms`` needs
        ``phone`` (the E.164 number the planner made of the cart's, ``phone_problem`` saying why
        there is none) and SMS consent under the ``sms_consent`` policy; ``call-list`` a phone
        number (staff call it); ``email`` and ``webhook`` an address. A suppression of the address or
        of the number stops every channel: the customer asked for no more reminders.
        ``withdrawn``: the address's latest "no" to each consent, said by any of its carts
        (:meth:`NewestCarts.withdrawn <cartrescue.decide.newest.NewestCarts.withdrawn>`); one said at or
        after this cart's last activity withdraws the consent the cart gave (GDPR).
        """
        email = cart.customer.email
        # First: a suppressed (unsubscribed, bounced, forgotten) address's decision is stored
        # without the address, whatever else is wrong with the cart; asked after consent, a
        # forgotten address came back into cr_decision as a cart's "no_consent".
        if suppressed:  # no hashing when none is
            which = suppressed_detail(suppressed, email, phone)
            if which:
                return new_verdict(ACTION_SKIP, REASON_SUPPRESSED, detail=which)
        if not cart.items:
            return new_verdict(ACTION_SKIP, REASON_EMPTY_CART)
        base = self.basis.base(cart.total, cart.currency, cart.base_total)
        if (base if base is not None else cart.total) < self._min_total:
            return new_verdict(ACTION_SKIP, REASON_ZERO_VALUE, detail=f"total {cart.total} {cart.currency}")
        if channel == "sms":
            if phone is None:
                return new_verdict(ACTION_SKIP, REASON_NO_CONTACT, detail=phone_problem or "no phone number")
        elif channel == "call-list":
            if not has_number(cart.customer.phone):
                given = (cart.customer.phone or "").strip()
                return new_verdict(ACTION_SKIP, REASON_NO_CONTACT, detail="no phone number to call" + (
                    f": {printable(given)[:40]!r}" if given else ""))
        elif not email:
            return new_verdict(ACTION_SKIP, REASON_NO_CONTACT, detail=_no_address(channel, cart.customer.phone))
        if email:
            bot = self.is_bot_or_disposable(email)
            if bot:
                return new_verdict(ACTION_SKIP, REASON_BOT_OR_DISPOSABLE, detail=bot)
        consent, policy = cart.customer.marketing_consent, self._consent
        if channel == "sms":
            consent, policy = cart.customer.sms_consent, sms_consent
        if consent is False or (
            consent is None
            and (policy == "required" or (policy == "soft-opt-in" and facts.previous_orders < 1))
        ):
            what = "sms_consent" if channel == "sms" else "consent"
            return new_verdict(ACTION_SKIP, REASON_NO_CONSENT, detail=f"{what}={consent}, policy {policy}")
        if withdrawn:  # a later cart's "no" (never this cart's own: that is ``consent is False`` above)
            later = withdrawn.get(SMS if channel == "sms" else MARKETING)
            if later is not None and later.ts >= cart.updated_at.timestamp():
                what = "sms_consent" if channel == "sms" else "consent"
                return new_verdict(ACTION_SKIP, REASON_NO_CONSENT,
                                   detail=f"{what}={consent}, withdrawn: no on the later cart {later.cart_key}")
        if facts.ordered is not None:
            return new_verdict(ACTION_SKIP, REASON_ORDERED, detail=f"order {facts.ordered.id}")
        if facts.pending is not None and (self._pending_within is None
                                          or now - facts.pending.created_at <= self._pending_within):
            return new_verdict(ACTION_SKIP, REASON_PENDING_ORDER, detail=f"order {facts.pending.id} not delivered")
        if facts.unreadable is not None:
            # It may be this very cart's order: no reminder until the row can be read.
            return new_verdict(ACTION_DEFER, REASON_UNREADABLE_ORDER,
                               detail=f"order {facts.unreadable.id} ({facts.unreadable.unreadable}) could not be read")
        idle = now - cart.updated_at
        if idle > self._max_age:
            return new_verdict(ACTION_SKIP, REASON_TOO_OLD, detail=f"idle {_human(idle.total_seconds())}")
        if idle < self._cutoff:
            # Touched after the run's clock (a database updated as the run reads it): not idle at all.
            detail = f"idle {_human(idle.total_seconds())}" if idle >= timedelta(0) else \
                f"last activity {_human(-idle.total_seconds())} after this run's now"
            return new_verdict(ACTION_DEFER, REASON_IDLE_BELOW_CUTOFF, not_before=cart.updated_at + self._cutoff,
                               detail=detail)
        if newest_cart is not None and newest_cart != cart.key:
            return new_verdict(ACTION_SKIP, REASON_NEWER_CART, detail=f"newer cart {newest_cart}")
        return None


#: Suppressed contact hashes (of addresses and numbers), or each with the reason the ledger
#: recorded (:attr:`History.suppressed <cartrescue.ledger.values.History.suppressed>`).
Suppressed = AbstractSet[str] | Mapping[str, str]


def suppresses(suppressed: Suppressed, email: str | None, phone: str | None) -> bool:
    """Whether one of the contact hashes ``suppressed`` is of ``email`` (any form it may be kept
    under) or of ``phone`` (E.164): the gate's test, and the executor's for the suppressions
    recorded while a run delivers (:class:`cartrescue.pipeline.executor.OptOuts`)."""
    return _suppressed_contact(suppressed, email, phone) is not None


def suppressed_detail(suppressed: Suppressed, email: str | None, phone: str | None) -> str:
    """The ``suppressed`` skip's detail: which contact (the address first) and why, as the
    ledger has it (``the number is suppressed (sms stop)``); "" when neither is suppressed."""
    found = _suppressed_contact(suppressed, email, phone)
    if found is None:
        return ""
    contact, hashed = found
    return suppressed_because(f"the {contact}", suppressed.get(hashed) if isinstance(suppressed, Mapping) else None)


def suppressed_because(what: str, reason: str | None) -> str:
    """``what is suppressed (reason)``; without the parenthesis when no reason was recorded."""
    return f"{what} is suppressed ({reason})" if reason else f"{what} is suppressed"


def _suppressed_contact(suppressed: Suppressed, email: str | None, phone: str | None) -> tuple[str, str] | None:
    """``("address" or "number", its hash)``: the cart's contact that is suppressed, or None."""
    if email:
        for hashed in email_hashes(email):
            if hashed in suppressed:
                return "address", hashed
    if phone:
        hashed = phone_hash(phone)
        if hashed in suppressed:
            return "number", hashed
    return None


def _human(seconds: float) -> str:
    minutes = int(seconds // 60)
    if minutes < 120:
        return f"{minutes}m"
    hours = minutes // 60
    return f"{hours}h" if hours < 72 else f"{hours // 24}d"


def _no_address(channel: str, phone: str | None) -> str:
    """Why a cart with no address is skipped on an e-mail or webhook step: with a phone number
    alone (``--json`` and the table said nothing, and the number looked ignored by mistake),
    that the step needs an address and does not use the number."""
    step = "e-mail" if channel == "email" else channel
    if phone:
        return f"no e-mail address for the {step} step; the phone number is not used by this step"
    return f"no e-mail address for the {step} step"
