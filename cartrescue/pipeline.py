"""The pipeline core: carts -> decisions -> claims -> messages -> deliveries -> ledger.

Owns the order of operations of one run and nothing about where carts come from (a
:class:`~cartrescue.sources.base.CartSource`) or how messages leave (a
:class:`~cartrescue.channels.base.Channel`). It knows no CLI: it returns results and counts.

Planning streams in chunks: per chunk of carts it asks the source for the matching orders and
the ledger for the history, so memory stays flat however large the shop is. The only state kept
across chunks is the newest-cart index (on disk) and the top-k heaps of budgeted tiers.
"""

from __future__ import annotations

import hashlib
import heapq
import itertools
import json
import time
from collections import Counter
from collections.abc import Callable, Generator, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:
    from zoneinfo import ZoneInfo

    from cartrescue.job import LockWatch

from cartrescue import stops
from cartrescue.channels.base import Channel, Envelope, Outcome, Status
from cartrescue.clock import RunClock
from cartrescue.config import Config, Incentive, Sequence as StepSequence, Step, Tier, feedback_field
from cartrescue.contacts import email_hash, email_hashes, normalize_phone, phone_hash, phone_region, without_address
from cartrescue.currency import Basis
from cartrescue.eligibility import Gates, Verdict
from cartrescue.errors import CartrescueError, LockLost, TemplateError
from cartrescue.experiments import Experiments, subject
from cartrescue.incentives import Allocation, Codes, code_expiry, expiry_day, placeholder, pools
from cartrescue.ledger import ADDRESS_CHANNELS, NUMBER_CHANNELS, ClaimRequest, History, Ledger, TierUse
from cartrescue.mime import build_message, mailto_address, wire_address
from cartrescue.model import (
    ACTION_DEFER,
    ACTION_HOLDOUT,
    ACTION_SEND,
    ACTION_SKIP,
    REASON_ANSWERED_SURVEY,
    REASON_BUDGET,
    REASON_DUE,
    REASON_HOLDOUT,
    REASON_MESSAGED_TODAY,
    REASON_NO_CONSENT,
    REASON_NO_CONTACT,
    REASON_RUN_LIMIT,
    REASON_STEP_NOT_DUE,
    REASON_SUPPRESSED,
    Action,
    Address,
    Cart,
    CartFacts,
    Decision,
    MarketingSend,
    OutgoingMessage,
    RowProblem,
    quick_init,
    quick_new,
)
from cartrescue.newest import NO_WITHDRAWAL, NewestCarts, Withdrawal, customer_key
from cartrescue.newsletters import Newsletters
from cartrescue.orders import OrderBook, OrderFacts
from cartrescue.priority import Prioritizer
from cartrescue.render import SMS_PART, Renderer
from cartrescue.sequence import Calendar, minute_text, next_step, of_sequence, step_number
from cartrescue.shards import Shard
from cartrescue.sms_text import SmsLength, measure
from cartrescue.sms_text import problems as sms_problems
from cartrescue.sources.base import ALL_TIME, CartSource, Window
from cartrescue.survey import links as survey_links
from cartrescue.text import printable
from cartrescue.unsubscribe import TokenMaker


T = TypeVar("T")
HOLDOUT = "holdout"  # the transport recorded for a held-out cart
HELD_OUT = "held_out"  # its ledger status: no message, on purpose
PLAN_CHUNK = 500
DELIVERY_CHUNK = 250
DRY_RUN_SECRET = "dry-run: not a secret"
RENDERED = frozenset({"email", "sms", "webhook"})  # channels whose message is rendered from templates
_NEEDS_PHONE = NUMBER_CHANNELS  # a step on these falls back to ..._BY_ADDRESS (channel_fallback)
_BY_ADDRESS = ADDRESS_CHANNELS  # ... and these go to the address


def _by_address(tier: Tier) -> str:
    """The channel a text or call step goes by when it does not go by its own: the tier's
    webhook if it has one, else e-mail."""
    return tier.channel if tier.channel in _BY_ADDRESS else "email"


def chunked(items: Iterable[T], size: int) -> Iterator[list[T]]:
    iterator = iter(items)
    while chunk := list(itertools.islice(iterator, size)):
        yield chunk


class _Budget:
    """Keeps the ``limit`` best-scoring send decisions of a tier; displaces the rest.

    Of the sends it defers, the ``limit`` best wait in a reserve until the run's end: a kept
    send this run does not claim (deferred at its claim, failed to render) gives its slot to
    the best of them (:meth:`Executor._give_back`). More than ``limit`` are never needed, and
    memory stays bounded by the budget, not by the tier's carts."""

    def __init__(self, limit: int, per: str = "per run",
                 not_before: Callable[[Decision], datetime] | None = None) -> None:
        self.limit = limit
        self.per = per  # what the limit is of, for the deferred: "per run", "today (…)", "… in shard 1/2 (…)"
        # When a deferred one may go: a day's budget is the shop's again at its next midnight,
        # after its channel's quiet hours on the recipient's clock (None: a run's budget, which
        # the next run has whole).
        self.not_before = not_before
        self.heap: list[tuple[float, int, Decision]] = []
        self.reserve: list[tuple[float, int, Decision]] = []  # the best deferred ones, as tier_budget
        self.counter = itertools.count()
        # The addresses and numbers of the kept sends: one of them is not mailed instead (it is
        # the customer's message of the day, decided at the end of the run).
        self.held: Counter[str] = Counter()

    def offer(self, decision: Decision) -> Decision | None:
        """Keep ``decision`` if it is among the best so far; return the one that lost, if any:
        deferred, or sent by its ``instead`` channel now (``over_budget: email``). A deferred one
        that is among the reserve's best is held back too (returned at the end: :meth:`spares`)."""
        entry = (decision.score or 0.0, -next(self.counter), decision)
        out = _keep_best(self.heap, self.limit, entry)
        if out is not entry:
            self.held.update(_contacts(decision))
        if out is None:
            return None
        lost = out[2]
        if out is not entry:
            self.held.subtract(_contacts(lost))
        detail = f"tier {lost.tier} takes {self.limit} {self.per}"
        if lost.instead is not None and not any(self.held[contact] > 0 for contact in _contacts(lost)):
            return replace(lost, channel=lost.instead, instead=None,
                           detail=f"by {lost.instead}, not {lost.channel}: {detail}")
        deferred = replace(lost, action=ACTION_DEFER, reason=REASON_BUDGET, detail=detail, instead=None,
                           not_before=None if self.not_before is None else self.not_before(lost))
        spare = _keep_best(self.reserve, self.limit, (out[0], out[1], deferred))
        return None if spare is None else spare[2]

    def drain(self) -> Iterator[Decision]:
        """The kept sends, best first, each marked as taking a slot of the budget."""
        for _score, _order, decision in _best_first(self.heap):
            yield replace(decision, budgeted=True)
        self.held.clear()

    def spares(self) -> Iterator[Decision]:
        """The reserve's deferred sends, best first (unmarked: :meth:`Planner._reserve` marks them)."""
        for _score, _order, decision in _best_first(self.reserve):
            yield decision


def _keep_best(heap: list[tuple[float, int, Decision]], limit: int,
               entry: tuple[float, int, Decision]) -> tuple[float, int, Decision] | None:
    """Keep ``entry`` in ``heap`` if it is among the ``limit`` best; return the entry that lost
    (``entry`` itself, or the one it displaced), or None when there was room."""
    if len(heap) < limit:
        heapq.heappush(heap, entry)
        return None
    if limit and entry[:2] > heap[0][:2]:
        return heapq.heapreplace(heap, entry)
    return entry


def _best_first(heap: list[tuple[float, int, Decision]]) -> list[tuple[float, int, Decision]]:
    """``heap``'s entries, best first; the heap is emptied."""
    entries = sorted(heap, key=lambda e: e[:2], reverse=True)
    heap.clear()
    return entries


def _contacts(decision: Decision) -> list[str]:
    """The customer's address and number: what one message a day counts."""
    return [c for c in (decision.cart.customer.email, decision.phone) if c]


_decision = quick_new(Decision)  # Decision(...) for half the instructions (a run makes one per cart)
_cart_facts = quick_new(CartFacts)
_message = quick_new(OutgoingMessage)  # OutgoingMessage(...) for fewer instructions: one per message composed
_claim = quick_new(ClaimRequest)  # ClaimRequest(...) for fewer instructions: one per send (it takes keywords)


class _Route:
    """What :meth:`Planner._decide` reads of a tier and its sequence for every cart, read once
    per run: each read of a config model's field costs ~450 instructions (pydantic's models
    have a ``__getattr__``), a slot's ~40, and a cart read some fifteen of them."""

    __slots__ = ("tier", "name", "sequence_name", "sequence", "steps", "channels", "templates", "delays", "channel",
                 "defers")

    def __init__(self, tier: Tier, sequence: StepSequence) -> None:
        self.tier = tier
        self.name = tier.name
        self.sequence_name = tier.sequence
        self.sequence = sequence
        self.steps = len(sequence.steps)
        self.channels = tuple(step.channel_for(tier) for step in sequence.steps)  # each step's, for this tier
        self.templates = tuple(step.template for step in sequence.steps)
        self.delays = tuple(step.delay for step in sequence.steps)  # for next_step
        self.channel = tier.channel
        self.defers = tier.over_budget == "defer"


class Planner:
    """Decides, for every cart of a source, what this run does with it and why."""

    def __init__(self, config: Config, now: datetime, ledger: Ledger | None = None,
                 on_problem: Callable[[RowProblem], None] | None = None, shard: Shard | None = None, *,
                 newsletters: Newsletters | None = None, run_id: int | None = None) -> None:
        self.config = config
        self.now = now
        self.ledger = ledger
        self.run_id = run_id  # a delivering run's, holding its lock: a shard reserves its day budgets
        self.on_problem = on_problem
        self.newsletters = newsletters  # the shop's other sends ("not on a newsletter day"); None: not read
        self._any_answers: bool | None = None  # does the ledger hold any survey answer? (asked once)
        self._any_suppression: bool | None = None  # ... any suppression? (asked once, for the call list)
        # Numbers read in the shop's region: a customer without an address is in the shard of theirs.
        self.shard = shard.in_region(config.phone_region) if shard is not None and not shard.whole else None
        basis = Basis(config.shop.currency, config.shop.exchange_rates)
        self.gates = Gates(config.eligibility, basis)
        self.calendar = Calendar.of_shop(config)
        # Numbers are read (E.164) only where the shop sends SMS: then every message records the
        # customer's number, so one message a day counts an address and a number together.
        self.uses_phone = "sms" in config.channels_used()
        self.region = config.phone_region
        self.countries = frozenset(config.sms.countries)
        self.prioritizer = Prioritizer(config.priority, basis)
        self._tiers = {tier.name: tier for tier in config.priority.tiers}
        self.experiments = Experiments(config, ledger.promotions() if ledger is not None else None)
        # By the tier's place in priority.tiers (Prioritizer.tier_index), and the settings every
        # cart reads, as plain values (see _Route).
        self._routes = [_Route(tier, config.sequences[tier.sequence]) for tier in self.prioritizer.tiers]
        self._backfill = config.eligibility.backfill
        self._fallback = config.eligibility.channel_fallback
        self._sms_consent = config.sms.consent

    @property
    def window(self) -> Window:
        """The carts a run reads: idle at least ``cutoff``, at most ``max_age``."""
        return Window(self.now - self.config.eligibility.max_age, self.now - self.config.eligibility.cutoff)

    def decide(self, source: CartSource) -> Generator[Decision, None, None]:
        eligibility = self.config.eligibility
        now = self.now
        # Up to any time, not to ``now``: a cart touched after the run's clock (a shop database
        # updated while the run reads it) is its customer's newest; their older cart is not reminded.
        everything = Window(now - eligibility.max_age, ALL_TIME.end)
        shard = self.shard
        window = self.window
        with NewestCarts(self.region) as newest:
            activity = source.activity(everything) if shard is None else source.shard_activity(everything, shard)
            newest.add(activity, free_reminded=eligibility.min_total <= 0)
            newest.readable(source.unreadable)
            budgets = {t.name: self._budget(t) for t in self.config.priority.tiers if t.budget is not None}
            carts = source.carts(window) if shard is None else source.shard_carts(window, shard)
            for chunk in chunked(carts, PLAN_CHUNK):
                yield from self._decide_chunk(source, chunk, newest, budgets)
            for budget in budgets.values():
                for decision in budget.drain():
                    yield self._first_of_the_day(decision, newest)
            taken: set[str] = set()  # after every kept send: a spare's customer has none of them
            for budget in budgets.values():
                yield from self._reserve(budget, newest, taken)

    def _first_of_the_day(self, decision: Decision, newest: NewestCarts, messaged: set[str] | None = None) -> Decision:
        """A send a budget kept (or had no room for, sent by e-mail instead), decided now: its
        customer's message of the day unless another cart of theirs (another address with the
        same number) got one in this run meanwhile (``messaged``: the current chunk's, not yet in
        ``newest``); then it waits until tomorrow, as any such cart does (``_decide``)."""
        contacts = _contacts(decision)
        verdict = None
        if (messaged and not messaged.isdisjoint(contacts)) or newest.messaged(contacts):  # the calendar's own rule, as if that message were the last
            verdict = self.calendar.gate(self.now, self.now, None, decision.channel or "email", decision.phone)
        if verdict is None:
            newest.mark_messaged(contacts)
            return decision
        return replace(decision, action=verdict.action, reason=verdict.reason, not_before=verdict.not_before,
                       detail="another cart with this address or number got a message in this run")

    def _reserve(self, budget: _Budget, newest: NewestCarts, taken: set[str]) -> Iterator[Decision]:
        """The budget's reserve, best first, deferred (``tier_budget``): each one marked may take
        the slot of a kept send the run does not claim. Not one whose customer got a message in
        this run (another cart of theirs, a kept send) or is another spare's (``taken``): the
        slot must not give them a second message today."""
        for decision in budget.spares():
            contacts = _contacts(decision)
            if not taken.isdisjoint(contacts) or newest.messaged(contacts):
                yield decision
                continue
            taken.update(contacts)
            yield replace(decision, budgeted=True)

    def _budget(self, tier: Tier) -> _Budget:
        """The tier's budget for this run: per run, or what is left of the shop's day; a shard
        takes its share (:meth:`cartrescue.shards.Shard.share`)."""
        limit = int(tier.budget)  # type: ignore[arg-type]
        if tier.budget_per == "day":
            return self._days_budget(tier, limit)
        if self.shard is None:
            return _Budget(limit, "per run")
        return _Budget(self.shard.share(limit), f"per run in shard {self.shard} (its share of {limit} over "
                                               f"{self.shard.count} shards)")

    def _days_budget(self, tier: Tier, budget: int) -> _Budget:
        """What is left of the tier's ``budget`` of the shop's day for this run.

        A shard's part is its share of the whole day's budget less the day's claims of the
        addresses it owns (by the hash of each claimed address, whatever shard claimed it). Only
        this shard claims for those addresses, and it holds its lock while it runs, so what it
        reads cannot go stale: a new cron round's shard that starts while the last round's
        other shards still plan cannot spend their part, and the shares add up to the budget.
        The day's total caps it too: after the day's layout changed (4 shards in the morning, 2
        later) one shard's addresses may have had more than its new share, and the others must
        not spend that again. A delivering shard reserves its part in the ledger
        (:meth:`~cartrescue.ledger.Ledger.reserve_day_budget`): two shards that read the day
        before either claimed each took what it had left."""
        midnight = self.calendar.local_day_start(self.now)
        # The sends it defers wait for the next day, as messaged_today's do (its channel's quiet
        # hours after, on the number's clock where the channel keeps them there).
        def tomorrow(decision: Decision) -> datetime:
            return self.calendar.tomorrow(self.now, tier.channel, decision.phone)

        steps = self._steps_of(tier)  # none: no step goes out on the tier's channel, nothing to count
        if self.shard is None:
            used = TierUse(0, 0) if self.ledger is None or not steps else self.ledger.tier_used_since(
                tier.name, steps, midnight, self.now)
            return _Budget(max(budget - used.total, 0),
                           f"today (its day's budget is {budget}; the day's earlier runs used {used.total})", tomorrow)
        share = self.shard.share(budget)
        if self.ledger is not None and steps and self.run_id is not None:  # claims follow: reserved
            left, used = self.ledger.reserve_day_budget(self.run_id, tier.name, steps, midnight, self.now, budget,
                                                        share, self.shard.owns)
        else:  # a dry-run's, or no ledger: what a delivering run would reserve if it ran alone
            used = TierUse(0, 0) if self.ledger is None or not steps else self.ledger.tier_used_since(
                tier.name, steps, midnight, self.now, self.shard.owns)
            left = max(min(share - used.own, budget - used.total), 0)
        running = f"; the other shards still running hold {used.pending} more" if used.pending else ""
        return _Budget(left, f"today in shard {self.shard} (its share of the day's budget of {budget} over "
                             f"{self.shard.count} shards is {share}; the day's earlier runs used {used.own} of it, "
                             f"{used.total} in all{running})", tomorrow)

    def _steps_of(self, tier: Tier) -> list[tuple[int, str]]:
        """The steps of ``tier``'s sequence that go out on the tier's own channel, with it: what
        its budget counts (:meth:`_in_budget`). A step sent on another channel went by e-mail
        because its own could not reach the customer (:meth:`_fell_back`), or the sequence
        sends it so (``channel: email`` on the step), and no budget counts it."""
        steps = self.config.sequences[tier.sequence].steps
        return [(number, tier.channel) for number, step in enumerate(steps, start=1)
                if step.channel_for(tier) == tier.channel]

    def _history(self, chunk: Sequence[Cart], emails: list[str], phones: list[str]) -> History:
        if self.ledger is None:
            return History()
        unique = list(dict.fromkeys(emails))
        numbers = list(dict.fromkeys(phones))
        return self.ledger.history([c.key for c in chunk], unique,
                                   [h for e in unique for h in email_hashes(e)] + [phone_hash(p) for p in numbers],
                                   numbers)

    def _decide_chunk(
        self, source: CartSource, chunk: list[Cart], newest: NewestCarts, budgets: dict[str, _Budget]
    ) -> Iterator[Decision]:
        orders = OrderBook(source.orders_for(chunk))
        emails = [c.customer.email for c in chunk if c.customer.email]
        phones: dict[str, str] = {}
        if self.uses_phone:
            for cart in chunk:
                number = normalize_phone(cart.customer.phone, self.region, mobile=True)
                if number is not None:
                    phones[cart.key] = number
        history = self._history(chunk, emails, list(phones.values()))
        # A customer without an address is known by their number (the first pass's key for them).
        numbers = {cart.key: number for cart in chunk if not cart.customer.email and cart.customer.phone
                   and (number := customer_key(None, cart.customer.phone, self.region))}
        keys = emails + list(numbers.values()) if numbers else emails
        newest_by_email = newest.lookup(keys)
        withdrawn = newest.withdrawn(keys)
        # Addresses (and numbers) messaged earlier in this run: kept in the scratch file, not in
        # a set that would grow with every send of a million-cart run; this chunk's share is read here.
        messaged = newest.messaged(emails + list(phones.values()))
        sent_today = self.newsletters.latest(emails) if self.newsletters is not None and emails else {}
        answered = self._answered(chunk)
        added: list[str] = []
        repeated = None if source.keys_unique() else newest.repeated([cart.key for cart in chunk])
        calls: list[Decision] = []
        for cart in chunk:
            if repeated and cart.key in repeated and self._repeated(cart, repeated, source.repeat_advice):
                continue
            # ``cart.key`` is a property that formats its text: read only where there are numbers.
            decision = self._decide(cart, orders, history, newest_by_email, messaged, sent_today, answered,
                                    phones.get(cart.key) if phones else None, withdrawn,
                                    numbers.get(cart.key) if numbers else None)
            if decision.action is ACTION_SEND and decision.channel == "call-list" and decision.phone is None:
                calls.append(decision)  # its number is looked up among the suppressions below, with the others
                continue
            settled = self._settle(decision, budgets, messaged, added, newest)
            if settled is not None:
                yield settled
        for decision in self._screen_calls(calls):
            settled = self._settle(decision, budgets, messaged, added, newest)
            if settled is not None:
                yield settled
        newest.mark_messaged(added)

    def _settle(self, decision: Decision, budgets: dict[str, _Budget], messaged: set[str],
                added: list[str], newest: NewestCarts) -> Decision | None:
        """A decision as the run goes on with it: a send of a tier with a budget waits in the
        budget (the one it displaces comes out now: deferred, or sent by e-mail instead); a send
        marks its customer as messaged. None: nothing comes out now. (A value, not a generator
        of at most one: ``yield from`` made a generator per cart.)"""
        if decision.action is ACTION_SEND and decision.tier in budgets and self._in_budget(decision):
            displaced = budgets[decision.tier].offer(decision)
            if displaced is not None and displaced.action is ACTION_SEND:  # over_budget: email
                displaced = self._first_of_the_day(displaced, newest, messaged)
                if displaced.action is ACTION_SEND:
                    messaged.update(_contacts(displaced))
            return displaced
        if decision.action is ACTION_SEND:
            contacts = _contacts(decision)
            messaged.update(contacts)
            added += contacts
        return decision

    def _screen_calls(self, calls: list[Decision]) -> list[Decision]:
        """The call-list sends of a chunk whose number was not read as a mobile one (a shop
        without SMS reads none; a landline is none), each with its number now: its claim checks
        it, so a number gets one call a day whichever addresses its carts have (a shop without
        SMS called one number twice a day for two addresses). A number that was suppressed
        (``forget +46…``, a STOP) gets no call either, as docs/channels.md says of every channel.
        Its rows had gone on into the call list. One ledger query for the chunk's few calls."""
        if not calls:
            return calls
        numbers = {id(d): normalize_phone(d.cart.customer.phone, self.region) for d in calls}
        calls = [replace(d, phone=numbers[id(d)]) if numbers[id(d)] else d for d in calls]
        if self.ledger is None:
            return calls
        if self._any_suppression is None:  # asked once a run: a ledger without one reads no number
            self._any_suppression = bool(self.ledger.suppressions(limit=1))
        if not self._any_suppression:
            return calls
        hashes = {id(d): phone_hash(d.phone) for d in calls if d.phone}
        if not hashes:
            return calls
        suppressed = self.ledger.history([], [], list(hashes.values())).suppressed
        return [replace(d, action=ACTION_SKIP, reason=REASON_SUPPRESSED, detail="the number to call is suppressed")
                if hashes.get(id(d)) in suppressed else d for d in calls]

    def _repeated(self, cart: Cart, repeated: dict[str, int], advice: str) -> bool:
        """A cart id seen before in this run (a CSV that lists one cart twice, apart): the first
        one decides; the repeat is reported, never a second message under one claim."""
        seen = repeated[cart.key]
        repeated[cart.key] = seen + 1
        if seen == 0:
            return False
        if self.on_problem is not None:
            self.on_problem(RowProblem(cart.origin or cart.key, f"cart {cart.id}: the same cart id again "
                                       f"({advice + '; ' if advice else ''}only its first appearance is used)"))
        return True

    def _answered(self, chunk: Sequence[Cart]) -> set[str]:
        """Keys of the chunk's carts whose customer answered the survey (when that ends a sequence)."""
        if self.ledger is None or not self.config.survey.stops_sequence:
            return set()
        if self._any_answers is None:  # asked once a run: without any answer, no lookup per chunk
            self._any_answers = self.ledger.has_survey_answers()
        return self.ledger.survey_answered([cart.key for cart in chunk]) if self._any_answers else set()

    def _phone_problem(self, cart: Cart, phone: str | None) -> str:
        """Why an SMS cannot go to this cart's number ("" when it can)."""
        raw = cart.customer.phone
        if phone is None:
            if not raw:
                return "no phone number"
            if raw.lstrip().startswith("+"):  # written in E.164: the number itself is not one a text can reach
                return f"phone {printable(raw)[:40]!r} is not a valid mobile number"
            where = f"in E.164 (+country) or of region {self.region}" if self.region else "in E.164 (+country)"
            return f"phone {printable(raw)[:40]!r} is not a mobile number {where}"
        if self.countries and phone_region(phone) not in self.countries:
            return f"phone of {phone_region(phone) or 'unknown country'}, not one of sms.countries"
        return ""

    def _decide(
        self, cart: Cart, orders: OrderBook, history: History, newest: dict[str, str], messaged: set[str],
        sent_today: dict[str, MarketingSend], answered: set[str], phone: str | None = None,
        withdrawn: Mapping[str, Mapping[str, Withdrawal]] | None = None, by_number: str | None = None,
    ) -> Decision:
        """``newest`` and ``withdrawn`` are by customer key (:func:`~cartrescue.newest.customer_key`):
        the address, else ``by_number``, the cart's phone number as that key (any valid number)."""
        # The Decision is built once, at the end: frozen dataclasses are costly to copy, and a
        # run makes one per cart.
        now = self.now
        facts = orders.facts(cart)
        score = self.prioritizer.score(cart, facts.previous_orders)
        route = self._routes[self.prioritizer.tier_index(score.value)]
        tier = route.tier
        cart_facts = _cart_facts(facts.previous_orders, score.margin, "overstock" in score.rules)
        email = cart.customer.email
        step: int | None = None
        template: str | None = None
        key = cart.key  # a property that formats its text: read once
        sent = history.by_cart.get(key, [])
        if sent:
            sent = of_sequence(sent, route.sequence_name, route.channels)
        number = step_number(sent)
        # The channel of the step that comes next: the step's own, else the tier's.
        channel = route.channels[number - 1] if number <= route.steps else route.channel
        who = email or by_number
        newest_cart = newest.get(who) if who else None
        said_no = withdrawn.get(who, NO_WITHDRAWAL) if withdrawn and who else NO_WITHDRAWAL
        channel, verdict, fallback = self._reach(cart, facts, tier, channel, phone, history.suppressed, newest_cart,
                                                 said_no)
        if verdict is None and key in answered:
            verdict = Verdict(ACTION_SKIP, REASON_ANSWERED_SURVEY, detail="the customer said why they left")
        if verdict is None:
            due = next_step(cart, route.sequence, sent, now, self._backfill, route.delays)
            if isinstance(due, Verdict):
                verdict = due
                if due.step is not None:  # the step the cart waits for (or never started)
                    step = due.step
                    template = route.templates[step - 1]
                if due.reason is REASON_STEP_NOT_DUE:
                    verdict = self._when_it_may_go(due, self._last_message(email, phone, history, messaged),
                                                   sent_today.get(email or "") if sent_today else None, channel,
                                                   phone)
            else:
                step = due.step
                template = route.templates[step - 1]
                last = self._last_message(email, phone, history, messaged)
                newsletter = sent_today.get(email or "") if sent_today else None
                verdict = self.calendar.gate(now, last, newsletter, channel, phone)
                if verdict is None:
                    experiments = self.experiments
                    who = subject(cart) if experiments.assigns(route.sequence_name, step) else ""
                    if experiments.held_out(who, route.sequence_name):
                        return _decision(
                            cart=cart, action=ACTION_HOLDOUT, reason=REASON_HOLDOUT, score=score.value,
                            tier=route.name, step=step, channel=channel, template=template,
                            detail=f"holdout group ({route.sequence.holdout:.0%} of sequence {route.sequence_name})",
                            facts=cart_facts, phone=phone,
                        )
                    return _decision(
                        cart=cart, action=ACTION_SEND, reason=REASON_DUE, score=score.value, tier=route.name,
                        step=step, channel=channel, template=template, detail=fallback,
                        variant=experiments.variant(who, route.sequence_name, step, sent), facts=cart_facts,
                        phone=phone, instead=None if route.defers or channel not in _NEEDS_PHONE else self._instead(
                            cart, facts, tier, history, newest_cart, phone, last, newsletter, said_no),
                    )
        return _decision(
            cart=cart, action=verdict.action, reason=verdict.reason, score=score.value, tier=route.name, step=step,
            channel=channel, template=template, not_before=verdict.not_before, detail=verdict.detail,
            facts=cart_facts, phone=phone,
        )

    def _when_it_may_go(self, not_due: Verdict, last: datetime | None, newsletter: MarketingSend | None,
                        channel: str, phone: str | None) -> Verdict:
        """A step not due yet (``step_not_due``), its ``not_before`` the first moment it may go:
        when it comes due, unless the calendar would hold it then (its channel's quiet hours, a
        message or the newsletter that day: the gate a run applies when it is due), and then when
        the calendar lets it go. Said as the moment it came due, a run then deferred it again."""
        due_at = not_due.not_before
        held = None if due_at is None else self.calendar.gate(due_at, last, newsletter, channel, phone)
        if held is None or due_at is None:
            return not_due
        then = f"then {held.reason.value}: {held.detail}"
        return replace(not_due, not_before=held.not_before, detail=f"{not_due.detail}, due {minute_text(due_at)} UTC; {then}")

    def _reach(self, cart: Cart, facts: OrderFacts, tier: Tier, channel: str, phone: str | None,
               suppressed: set[str], newest_cart: str | None,
               withdrawn: Mapping[str, Withdrawal] = NO_WITHDRAWAL) -> tuple[str, Verdict | None, str]:
        """The channel a step on ``channel`` goes out by to this cart, the first gate it fails
        there, and why it is not ``channel`` ("" when it is): one rule for runs and previews.
        ``withdrawn``: the address's latest "no"s (:meth:`NewestCarts.withdrawn`)."""
        problem = self._phone_problem(cart, phone) if channel == "sms" else ""
        verdict = self.gates.check(
            cart, facts, now=self.now, suppressed=suppressed, newest_cart=newest_cart,
            channel=channel, phone=None if problem else phone, phone_problem=problem,
            sms_consent=self._sms_consent, withdrawn=withdrawn,
        )
        if verdict is not None and channel in _NEEDS_PHONE and self._unreachable(channel, verdict):
            # No mobile, no SMS consent, no number to call: this step goes by e-mail rather than
            # not at all (the later steps, and their incentive, with it).
            instead = _by_address(tier)
            second = self.gates.check(cart, facts, now=self.now, suppressed=suppressed, newest_cart=newest_cart,
                                      channel=instead, phone=phone, withdrawn=withdrawn)
            if second is None or second.reason not in (REASON_NO_CONTACT, REASON_NO_CONSENT):
                return instead, second, f"by {instead}, not {channel} ({verdict.detail})"
        return channel, verdict, ""

    def step_channel(self, decision: Decision, number: int) -> str:
        """The channel step ``number`` goes out by to ``decision``'s cart: the decision's own for
        its step (a fallback or a budget's ``instead`` included), else the step's, or what it falls
        back to when that cannot reach the customer. ``preview`` shows what a run would send: the
        ledger's suppressions count as in a run (a suppressed contact is no reason to fall back)."""
        if decision.step == number and decision.channel is not None:
            return decision.channel
        tier = self._tiers[decision.tier]  # type: ignore[index]
        channel = self.config.sequences[tier.sequence].steps[number - 1].channel_for(tier)
        if channel not in _NEEDS_PHONE:
            return channel
        # The order facts the consent gate reads (soft opt-in); the others come after it.
        facts = OrderFacts(previous_orders=decision.facts.previous_orders if decision.facts else 0)
        email, phone = decision.cart.customer.email, decision.phone
        suppressed = self._history([], [email] if email else [], [phone] if phone else []).suppressed
        return self._reach(decision.cart, facts, tier, channel, phone, suppressed, None)[0]

    def _instead(self, cart: Cart, facts: OrderFacts, tier: Tier, history: History, newest_cart: str | None,
                 phone: str | None, last: datetime | None, newsletter: MarketingSend | None,
                 withdrawn: Mapping[str, Withdrawal] = NO_WITHDRAWAL) -> str | None:
        """The channel a text or call step of a tier with ``over_budget: email`` takes when the
        budget has no room for it: e-mail (or the tier's webhook), if the customer can get the
        step that way now (consent, suppressions, quiet hours); None: it waits for the budget."""
        instead = _by_address(tier)
        if self.gates.check(cart, facts, now=self.now, suppressed=history.suppressed, newest_cart=newest_cart,
                            channel=instead, phone=phone, withdrawn=withdrawn) is not None:
            return None
        return instead if self.calendar.gate(self.now, last, newsletter, instead) is None else None

    def _in_budget(self, decision: Decision) -> bool:
        """Whether a send of a tier with a budget uses it: a send on the tier's own channel, the
        dear one the budget caps (the call list above all). Not a step the sequence sends by
        e-mail (a call-list tier that opens with an e-mail and calls the next day), nor one
        that went by e-mail because its channel could not reach the customer (:meth:`_fell_back`)."""
        tier = self._tiers[decision.tier]  # type: ignore[index]
        return decision.channel == tier.channel and not self._fell_back(decision)

    def _fell_back(self, decision: Decision) -> bool:
        """Whether a send goes by e-mail because its step's channel cannot reach the customer: a
        tier's budget caps its own (dear) channel, the call list above all, not the e-mail instead."""
        tier = self._tiers[decision.tier]  # type: ignore[index]
        step = self.config.sequences[tier.sequence].steps[decision.step - 1]  # type: ignore[operator]
        return decision.channel != step.channel_for(tier)

    def _unreachable(self, channel: str, verdict: Verdict) -> bool:
        """Whether ``verdict`` says only that ``channel`` cannot reach the customer (and the config
        lets the step go by e-mail instead): no contact on it, or no consent to texts."""
        return self._fallback and (
            verdict.reason is REASON_NO_CONTACT or (verdict.reason is REASON_NO_CONSENT and channel == "sms"))

    def _last_message(self, email: str | None, phone: str | None, history: History,
                      messaged: set[str]) -> datetime | None:
        """The customer's last message on any channel: by address, by number, or in this run."""
        if (email and email in messaged) or (phone and phone in messaged):
            return self.now
        last = history.last_by_email.get(email) if email else None
        if phone:
            by_phone = history.last_by_phone.get(phone)
            if by_phone is not None and (last is None or by_phone > last):
                last = by_phone
        return last


@quick_init
@dataclass(frozen=True, slots=True)
class Result:
    """A decision and, for sends, what became of it."""

    decision: Decision
    delivery: str = ""  # "", "dry-run", "sent", "unconfirmed", "failed_transient", "failed_permanent", "claimed_elsewhere"
    detail: str = ""
    message: OutgoingMessage | None = None


_result = quick_new(Result)  # Result(...) for fewer instructions: a run makes one per cart
_FAILED = ("failed_transient", "failed_permanent", "render_error")
_NOT_CLAIMED = frozenset({"claimed_elsewhere", "render_error"})  # sends that ended before this run's claim


def _unclaimed(result: Result) -> bool:
    """Whether a send ended without this run's claim: deferred at it, claimed by another run
    first, or failed to render (:meth:`Executor._give_back`)."""
    return result.decision.action is ACTION_DEFER or result.delivery in _NOT_CLAIMED


def _spare(decision: Decision) -> bool:
    """Whether ``decision`` is a budget's spare: deferred by its tier's budget, and among the
    best of those, so it may take the slot of a kept send this run does not claim."""
    return decision.budgeted and decision.reason is REASON_BUDGET


def _in_freed_slot(spare: Decision) -> Decision:
    """The send a budget's ``spare`` becomes when it takes a slot a kept send left unclaimed."""
    return replace(spare, action=ACTION_SEND, reason=REASON_DUE, not_before=None,
                   detail=f"in the slot of a send this run did not claim ({spare.detail})")


MAX_FAILURE_KINDS = 20


@dataclass(slots=True)
class Counts:
    actions: Counter[str] = field(default_factory=Counter)
    reasons: Counter[str] = field(default_factory=Counter)
    deliveries: Counter[str] = field(default_factory=Counter)
    problems: int = 0
    # Why deliveries failed, by their words (a dry code pool, a relay's 550): a summary that says
    # only "failed 31" sends the owner digging through --json. Bounded: a few kinds, not every text.
    failures: Counter[str] = field(default_factory=Counter)

    def add(self, result: Result) -> None:
        decision = result.decision
        # ``_value_``, not ``.value``: the enum's property is two Python calls, twice a cart.
        self.actions[decision.action._value_] += 1
        self.reasons[decision.reason._value_] += 1
        if result.delivery:
            self.deliveries[result.delivery] += 1
            if result.delivery in _FAILED:
                why = (result.detail or result.delivery)[:160]
                if why in self.failures or len(self.failures) < MAX_FAILURE_KINDS:
                    self.failures[why] += 1

    @property
    def failed(self) -> int:
        return sum(self.deliveries[kind] for kind in _FAILED)

    def as_dict(self) -> dict[str, object]:
        return {
            "carts": sum(self.actions.values()),
            **{action.value: self.actions[action.value] for action in Action},
            "sent": self.deliveries["sent"],
            "failed": self.failed,
            "problems": self.problems,
            "reasons": dict(sorted(self.reasons.items())),
            "deliveries": dict(sorted(self.deliveries.items())),
            "failures": dict(self.failures.most_common()),
        }


class Composer:
    """Turns a send decision into an :class:`OutgoingMessage` (render + headers)."""

    def __init__(self, config: Config, renderer: Renderer, now: datetime, secret: str, *,
                 dated_now: bool = False) -> None:
        """``dated_now``: the Date header is the real time the message is built (a delivering
        run), not the run's clock: a pinned ``--now``, or the start of a run that sends for an
        hour, dated mail in the past (RFC 5322: when it was ready to go)."""
        self.config = config
        self.renderer = renderer
        self.now = now
        self.secret = secret
        self._unsubscribe_token = TokenMaker(secret)  # its HMAC keyed once per run
        self._dated_now = dated_now
        shop = config.shop
        self.sender = Address(shop.from_email, shop.from_name or shop.name)
        self._reply_to = _mailbox_text(shop.reply_to, shop.reply_to_name)
        self._domain = shop.domain
        # RFC 8058: one-click unsubscribing (List-Unsubscribe-Post) is for an https link only
        self._one_click = (("List-Unsubscribe-Post", "List-Unsubscribe=One-Click"),) \
            if shop.unsubscribe_url[:8].lower() == "https://" else ()
        self._tiers = {tier.name: tier for tier in config.priority.tiers}
        # The mailbox as the header carries it: ASCII, its domain in IDNA form (a structured
        # header has no encoded words: bücher.example turned the whole line into one).
        self._mailto = mailto_address(shop.unsubscribe_mailto) if shop.unsubscribe_mailto else None
        self._shop = config.shop_identity
        # Gmail's Feedback-ID (Postmaster Tools reports spam complaints per value of each field):
        # the sequence's step, the tier, the kind of mail and the shop's sender id.
        self._feedback = {tier.name: f"{feedback_field(tier.sequence)}-{{}}:{feedback_field(tier.name)}:"
                          f"cart-reminder:{shop.feedback_id}" for tier in config.priority.tiers} \
            if shop.feedback_id else None

    def message_id(self, decision: Decision) -> str:
        """Derived from (shop, cart, step, channel), which the ledger claims at most once: the
        message is built, with its id, before the claim, and a retry after a 4xx keeps the same
        id. The shop (its name and sender) keeps it globally unique (RFC 5322): two shops of one
        sending domain with the same cart ids made the same ids, and a mailbox that already
        holds an id may drop the second message."""
        key = f"{self._shop}|{decision.cart.key}|{decision.step}|{decision.channel}"
        digest = hashlib.blake2b(key.encode("utf-8", "surrogatepass"), digest_size=12).hexdigest()
        return f"<cr.{digest}@{self._domain}>"

    def incentive(self, decision: Decision) -> Incentive | None:
        """The incentive of the decision's step for its tier (``None`` when there is none)."""
        if decision.step is None:
            return None
        tier = self._tiers[decision.tier]  # type: ignore[index]
        return self.config.sequences[tier.sequence].steps[decision.step - 1].incentive_for(decision.tier)

    def _shown_code(self, incentive: Incentive | None, code: Allocation | None) -> tuple[str | None, date | None]:
        """The code and last day a message shows: its allocated code's, as the ledger recorded
        them; without one (a dry-run, a preview), a per-recipient incentive's placeholder and no
        day (the renderer counts it from this run's ``now``)."""
        if code is not None:
            return code.code, expiry_day(code.expires, self.config.shop.tz)
        if incentive is not None and incentive.codes is not None:
            return placeholder(incentive.codes), None
        return None, None

    def compose(self, decision: Decision, code: Allocation | None = None, *, test: bool = False) -> OutgoingMessage:
        """Render ``decision``'s message; ``code`` is its allocated incentive code. Without one
        (a dry-run or preview) a per-recipient incentive shows a placeholder: nothing is allocated.
        ``test``: a preview's or send-test's message, whose links are test links
        (:mod:`cartrescue.tokens`): its unsubscribe link unsubscribes nobody, its survey answers
        are not recorded for the cart."""
        cart = decision.cart
        email = cart.customer.email
        if not email or decision.step is None or decision.template is None:
            raise TemplateError(f"cart {cart.id}: nothing to compose (no address or step)")
        shop = self.config.shop
        tier = self._tiers[decision.tier]  # type: ignore[index]
        sequence = self.config.sequences[tier.sequence]
        step = sequence.steps[decision.step - 1]
        incentive = step.incentive_for(decision.tier)
        shown, expires_on = self._shown_code(incentive, code)
        locale = self.renderer.resolve_locale(cart.customer.locale, step.template)
        token = self._unsubscribe_token(email, test=test)
        unsubscribe_url = shop.unsubscribe_url.replace("{token}", token)
        try:
            context = self.renderer.context(
                cart, locale=locale, step=decision.step, step_count=len(sequence.steps), tier=decision.tier,
                previous_orders=decision.facts.previous_orders if decision.facts else 0,
                unsubscribe_url=unsubscribe_url, incentive=incentive, now=self.now, variant=decision.variant,
                code=shown, survey=survey_links(self.config, self.secret, cart.key, decision.step, locale, test=test),
                sequence=tier.sequence, channel=decision.channel or "email", expires_on=expires_on,
            )
        except (ArithmeticError, ValueError) as exc:  # an amount no currency format can show, ...
            raise TemplateError(f"cannot format this cart's values: {type(exc).__name__}: {exc}") from None
        rendered = self.renderer.render(step.template, locale, context, decision.variant)
        targets = [f"<{unsubscribe_url}>"]
        if self._mailto:
            targets.append(f"<mailto:{self._mailto}?subject=unsubscribe%20{token}>")
        name = " ".join(part for part in (cart.customer.first_name, cart.customer.last_name) if part)
        return _message(
            message_id=self.message_id(decision),
            sender=self.sender,
            to=Address(email, name),
            subject=rendered.subject,
            text=rendered.text,
            html=rendered.html,
            date=datetime.now(timezone.utc).replace(microsecond=0) if self._dated_now else self.now,
            reply_to=self._reply_to,
            headers=(
                ("List-Unsubscribe", ", ".join(targets)),
                *self._one_click,
                ("X-Cartrescue-Cart", cart.key),
                ("X-Cartrescue-Step", str(decision.step)),
                *((("X-Cartrescue-Variant", decision.variant),) if decision.variant else ()),
                *((("Feedback-ID", self._feedback[decision.tier].format(decision.step)),)  # type: ignore[index]
                  if self._feedback is not None else ()),
            ),
        )


    def _sms_step(self, decision: Decision) -> tuple[Step, int]:
        tier = self._tiers[decision.tier]  # type: ignore[index]
        sequence = self.config.sequences[tier.sequence]
        return sequence.steps[decision.step - 1], len(sequence.steps)  # type: ignore[operator]

    def compose_sms(self, decision: Decision, code: Allocation | None = None, *, test: bool = False) -> SmsText:
        """Render ``decision``'s text message and check it: at most ``sms.max_segments``, the
        opt-out keyword and the shop's name in it; raise TemplateError for this cart otherwise
        (:meth:`cartrescue.render.Renderer.render_sms` puts cart values on one line).
        ``test``: a preview's, whose unsubscribe link unsubscribes nobody."""
        cart = decision.cart
        if decision.step is None or decision.template is None or not decision.phone:
            raise TemplateError(f"cart {cart.id}: nothing to compose (no phone number or step)")
        step, count = self._sms_step(decision)
        incentive = step.incentive_for(decision.tier)
        shown, expires_on = self._shown_code(incentive, code)
        locale = self.renderer.resolve_locale(cart.customer.locale, step.template, SMS_PART)
        email = cart.customer.email
        unsubscribe_url = self.config.shop.unsubscribe_url.replace("{token}", self._unsubscribe_token(email, test=test)) \
            if email else ""
        try:
            context = self.renderer.context(
                cart, locale=locale, step=decision.step, step_count=count, tier=decision.tier,
                previous_orders=decision.facts.previous_orders if decision.facts else 0,
                unsubscribe_url=unsubscribe_url, incentive=incentive, now=self.now, variant=decision.variant, code=shown,
                sequence=self._tiers[decision.tier].sequence, channel="sms",  # type: ignore[index]
                tags=self.config.sms.link_tags, expires_on=expires_on,
            )
        except (ArithmeticError, ValueError) as exc:
            raise TemplateError(f"cannot format this cart's values: {type(exc).__name__}: {exc}") from None
        limit = self.config.sms.max_segments
        text = self.renderer.render_sms(step.template, locale, context, decision.variant, limit)
        found = sms_problems(text, self.config.shop.name, limit)
        if found:
            file = self.renderer.part_file(step.template, locale, SMS_PART, decision.variant)
            raise TemplateError(f"{file}: {found[0][1]}")
        length = measure(text)
        return SmsText(text, length, locale)

    def webhook_body(self, decision: Decision, message: OutgoingMessage, code: Allocation | None = None) -> bytes:
        """The JSON document the webhook channel POSTs (docs/channels.md#webhook), without its
        ``id`` (the ledger id, known once claimed: the channel puts it first). UTF-8; a value
        that cannot be encoded (a lone surrogate) fails this cart, before its claim."""
        cart = decision.cart
        customer = cart.customer
        step, count = self._sms_step(decision)
        incentive = step.incentive_for(decision.tier)
        tier = self._tiers[decision.tier]  # type: ignore[index]
        offer = None
        if incentive is not None:
            # The code's own expiry (the end of the shop's day the message names), as `codes export`
            # has it: an allocated code's as recorded, however many runs later it goes out (a retry
            # after it expired got a fresh code and its expiry: Codes.allocate).
            expires = code.expires if code is not None else code_expiry(self.now, incentive.valid_for,
                                                                         self.config.shop.tz)
            offer = {"kind": incentive.kind, "value": str(incentive.value),
                     "code": code.code if code is not None else incentive.code, "expires_at": _iso(expires)}
        locale = self.renderer.resolve_locale(customer.locale, step.template)
        unsubscribe = next((value for name, value in message.headers if name == "List-Unsubscribe"), "")
        document = {
            "event": "cart.reminder",
            "message_id": message.message_id,
            "shop": {"name": self.config.shop.name, "url": self.config.shop.url},
            "cart": {
                "id": cart.id, "key": cart.key, "currency": cart.currency, "total": str(cart.total),
                "recovery_url": cart.recovery_url, "updated_at": _iso(cart.updated_at),
                "items": [{"sku": item.sku, "name": item.name, "quantity": item.quantity,
                           "unit_price": str(item.unit_price), "image_url": item.image_url,
                           "product_url": item.product_url} for item in cart.items],
            },
            "customer": {"id": customer.id, "email": customer.email, "phone": decision.phone or customer.phone,
                         "first_name": customer.first_name, "last_name": customer.last_name,
                         "locale": customer.locale, "is_guest": customer.is_guest},
            "step": decision.step, "step_count": count, "sequence": tier.sequence, "tier": decision.tier,
            "score": decision.score, "variant": decision.variant, "locale": locale,
            "subject": message.subject, "text": message.text, "html": message.html,
            "unsubscribe_url": unsubscribe.split(">", 1)[0].lstrip("<"),
            "incentive": offer,
        }
        return json.dumps(document, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode("utf-8")


def _mailbox_text(address: str | None, name: str | None) -> str | None:
    """``address``, or ``"name" <address>`` as ``OutgoingMessage.reply_to`` takes a display name."""
    if not address or not name or not name.strip():
        return address
    quoted = name.strip().replace("\\", "\\\\").replace('"', '\\"')
    return f'"{quoted}" <{address}>'


def _iso(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")


@dataclass(frozen=True, slots=True)
class SmsText:
    """A rendered and checked text message."""

    text: str
    length: SmsLength
    locale: str


@dataclass(slots=True)
class _Prepared:
    """A send decision with everything that can fail for its cart already done (rendered, built)."""

    decision: Decision
    request: ClaimRequest
    message: OutgoingMessage | None = None
    data: bytes | None = None
    code_pool: str | None = None  # a per-recipient code is allocated after the claim, then re-rendered


class Executor:
    """Composes, claims, delivers and records the send decisions; passes the others through.

    The order is the ledger's promise (docs/sending.md): for each cart everything that can fail
    on its data -- rendering, building the message, encoding the address -- happens *before*
    its claim; a cart that fails there is reported (with the file and line it came from) and
    never claimed, so the next run tries again once the cause is fixed. Claims are made as the
    channel takes envelopes, a few at a time, and outcomes are recorded in small groups as they
    come: a killed run leaves at most what was in flight ``claimed``.

    ``channels`` maps a tier channel ("email", "call-list") to its :class:`Channel`; with no
    ledger (a plain dry-run) nothing is claimed or delivered, only composed.
    """

    def __init__(
        self,
        composer: Composer,
        channels: dict[str, Channel],
        ledger: Ledger | None = None,
        run_id: int | None = None,
        on_progress: Callable[[int], None] | None = None,
        on_problem: Callable[[RowProblem], None] | None = None,
        limit: int | None = None,
        lock: "LockWatch | None" = None,
        lock_name: str = "run",
        eml: Path | None = None,
        clock: RunClock | None = None,
    ) -> None:
        self.composer = composer
        # When each claim is made (:mod:`cartrescue.clock`): a run that began at 23:59 and claims
        # after midnight records its messages on the day they went out.
        self.clock = clock or RunClock(composer.now)
        self.eml = eml  # a dry-run writes each message it would send here (run --eml DIR)
        self.channels = channels
        self.ledger = ledger
        self.run_id = run_id
        self.on_progress = on_progress
        self.on_problem = on_problem
        self.limit = limit
        self.lock = lock
        self.lock_name = lock_name  # the ledger lock this run's claims are fenced by (its shard's)
        self.codes: Codes | None = None
        # A stop (Ctrl-C, SIGTERM) during a chunk's delivery: the chunk's results known by then
        # (each message the run recorded, and the carts decided without one), which execute()
        # never yielded. The caller reports them, or its document counted sends it did not list.
        self.cut_short: list[Result] = []
        self._basis = Basis(composer.config.shop.currency, composer.config.shop.exchange_rates)
        self._sequence_of = {tier.name: tier.sequence for tier in composer.config.priority.tiers}
        self._calendar = Calendar.of_shop(composer.config)
        # Per channel and zone (None: the shop's), when its next quiet window begins (None: it has
        # none): a live run's claims are compared with it, and quiet hours read again only once
        # the clock reaches it.
        self._quiet_from: dict[tuple[str, ZoneInfo | None], datetime | None] = {}
        # Per tier, the budget's slots that kept sends left unclaimed in this run, not yet given
        # to a spare (:meth:`_give_back`); and the tiers whose budget is the day's.
        self._room: Counter[str] = Counter()
        tiers = composer.config.priority.tiers
        self._budgets = any(t.budget is not None for t in tiers)
        self._per_day = frozenset(t.name for t in tiers if t.budget is not None and t.budget_per == "day")
        if ledger is not None and pools(composer.config):
            self.codes = Codes(composer.config, ledger)

    def execute(self, decisions: Iterable[Decision]) -> Iterator[Result]:
        for chunk in chunked(decisions, DELIVERY_CHUNK):
            chunk, waiting = self._apply_limit(chunk)
            results = self._deliver(chunk, waiting) if self.ledger is not None else self._dry_run(chunk)
            if self.ledger is not None and self.run_id is not None:
                self.cut_short = results  # a stop or a ledger error while they are saved: still the run's
                self.ledger.save_decisions(self.run_id, self.composer.now, [_decision_row(r.decision) for r in results])
                self.cut_short = []
            yield from results
            if self.on_progress is not None:
                self.on_progress(len(chunk))

    def _apply_limit(self, chunk: list[Decision]) -> tuple[list[Decision], dict[int, Decision]]:
        """``run --limit N``: the first N send decisions go ahead, the rest wait for a later run.

        Also returns the sends that wait, by their place in the chunk: a send that goes ahead but
        is deferred at its claim (:meth:`_give_back`) hands its slot to the first of them. A tier
        budget's spare (:meth:`Planner._reserve`) waits here too, as the send it would be: it
        goes ahead at once when a kept send of its tier left a slot in an earlier chunk."""
        waiting: dict[int, Decision] = {}
        if self.limit is None and not self._budgets:
            return chunk, waiting
        out = []
        for at, decision in enumerate(chunk):
            if _spare(decision):
                send = _in_freed_slot(decision)
                if self._admit(send, spare=True):
                    decision = send
                else:
                    waiting[at] = send
            elif decision.action is ACTION_SEND and self.limit is not None:
                if self.limit > 0:
                    self.limit -= 1
                else:
                    waiting[at] = decision
                    decision = replace(decision, action=ACTION_DEFER, reason=REASON_RUN_LIMIT,
                                       detail="run --limit reached; a later run sends it")
            out.append(decision)
        return out, waiting

    def _admit(self, send: Decision, *, spare: bool) -> bool:
        """Whether ``send`` goes ahead now, taking a ``--limit`` slot (with a limit) and, for a
        budget's ``spare``, a slot its tier's kept sends left (none: it waits)."""
        if (self.limit is not None and self.limit <= 0) or (spare and self._room[send.tier or ""] <= 0):
            return False
        if spare:
            self._room[send.tier or ""] -= 1
        if self.limit is not None:
            self.limit -= 1
        return True

    def _give_back(self, chunk: list[Decision], sent: list[Decision], results: dict[int, Result],
                   waiting: dict[int, Decision]) -> list[Decision]:
        """The sends that take the slots of the sends of ``sent`` this run did not claim.

        A send deferred at its claim (its number had a message today, quiet hours reached), one
        another run claimed first, or one whose message failed to render for its cart was never
        claimed by this run: ``--limit N`` counts the messages this run claims, so its slot goes
        to the next send that waits with ``run_limit`` -- put back in ``chunk`` in its place --
        or, when none waits in this chunk, to the next chunk's. A tier's budget does the same:
        the slot of a send it kept goes to the tier's best spare (``tier_budget``), in this
        chunk or a later one; a day's budget counts every claim of the day, so the slot of a send
        another run claimed first was spent. A waiting send was never claimed, so none is
        claimed twice, and a budget never gives more slots than it kept."""
        unclaimed = [(d, r) for d in sent if (r := results.get(id(d))) is not None and _unclaimed(r)]
        if self.limit is not None:
            self.limit += len(unclaimed)
        for decision, result in unclaimed:
            if decision.budgeted and not (decision.tier in self._per_day and result.delivery == "claimed_elsewhere"):
                self._room[decision.tier or ""] += 1
        back: list[Decision] = []
        for at, send in list(waiting.items()):
            if self.limit is not None and self.limit <= 0:
                break
            if self._admit(send, spare=_spare(chunk[at])):
                chunk[at] = waiting.pop(at)
                back.append(chunk[at])
        return back

    # -- composing (before any claim) --------------------------------------------------------

    def _problem(self, decision: Decision, what: str) -> None:
        if self.on_problem is not None:
            cart = decision.cart
            self.on_problem(RowProblem(cart.origin or cart.key, f"cart {cart.id}: step {decision.step}: {what}"))

    def _claim_request(self, d: Decision, transport: str, message_id: str = "") -> ClaimRequest:
        """The ledger row of a send or holdout, with what ``report`` needs (sequence, locale,
        customer id, the cart's value in shop.currency)."""
        cart = d.cart
        value = self._basis.base(cart.total, cart.currency, cart.base_total)
        return _claim(cart.key, cart.id, cart.customer.email, d.step or 0, d.channel or "email", transport,
                      d.template or "", d.variant, d.tier, d.score, message_id,
                      sequence=self._sequence_of.get(d.tier or ""), locale=cart.customer.locale,
                      customer_id=cart.customer.id, cart_value=None if value is None else str(value),
                      phone=d.phone)

    def claim_day(self, at: datetime) -> tuple[datetime, datetime] | None:
        """The shop's day of a claim made at ``at`` (``None`` without one message a day): the
        ledger refuses a text or call to a number that had a message in it, from whichever shard
        (the planner sees its own carts only). The claim's own day, not the run's start's: a run
        that began before midnight and claims after it checks the new day."""
        return self._calendar.counted_day(at)

    def number_taken(self, decision: Decision, at: datetime) -> Decision:
        """A text or call whose claim the ledger refused at ``at``: its number had a message
        that day, which another shard or run claimed (the planner knew nothing of it). It waits
        until tomorrow, as when the planner knows of the message."""
        return replace(decision, action=ACTION_DEFER, reason=REASON_MESSAGED_TODAY,
                       not_before=self._calendar.tomorrow(at, decision.channel or "sms", decision.phone),
                       detail="the number got a message today, claimed by another shard or run")

    def quiet_at(self, channel: str, at: datetime, phone: str | None = None) -> Verdict | None:
        """Quiet hours at a claim made at ``at`` on ``channel`` (to ``phone``): the planner checked
        them at the run's start only, and a live run that starts at 20:59 and claims at 21:01
        would send at night. A pinned clock (``--now``) keeps the planner's word. One comparison
        per claim (batch) until the clock reaches the next window of the channel in that zone."""
        if not self.clock.live:
            return None
        key = (channel, self._calendar.recipient_zone(channel, phone))
        if key in self._quiet_from:
            begins = self._quiet_from[key]
            if begins is None or at < begins:
                return None
        verdict = self._calendar.quiet_verdict(at, channel, phone)
        if verdict is None:
            self._quiet_from[key] = self._calendar.next_quiet(at, channel, phone)
        return verdict

    def per_recipient_quiet(self, channel: str) -> bool:
        """Whether ``channel``'s quiet hours depend on the recipient's number (its timezone)."""
        return self._calendar.zoned(channel)

    def quiet_hold(self, decision: Decision, verdict: Verdict, at: datetime) -> Decision:
        """A send that reached its claim inside quiet hours: not claimed, it waits for the
        window's end, as the planner would have decided at ``at``; the next run sends it."""
        local = at.astimezone(self._calendar.tz)
        return replace(decision, action=ACTION_DEFER, reason=verdict.reason, not_before=verdict.not_before,
                       detail=f"{verdict.detail} (reached at {local:%H:%M} as this run claimed it)")

    def _dry_run(self, chunk: list[Decision]) -> list[Result]:
        results: list[Result] = []
        calls: list[int] = []  # where the call list's rows go in results, once written (run --eml)
        for decision in chunk:
            if decision.action is not ACTION_SEND:
                results.append(_result(decision))
            elif decision.channel not in RENDERED:
                if self.eml is not None and decision.channel == "call-list":
                    calls.append(len(results))
                results.append(_result(decision, "dry-run"))
            else:
                try:
                    detail = ""
                    message: OutgoingMessage | None
                    # Test links (as a preview's): the owner reads, opens and clicks what --eml wrote.
                    if decision.channel == "email" and self.eml is None:  # no MIME bytes: only what they would refuse
                        message = self.composer.compose(decision, test=True)
                        wire_address(message.to.email)
                    else:
                        message, data = self.build(decision, test=True)  # what a delivering run would send
                        detail = measure(data.decode("utf-8")).describe() if decision.channel == "sms" and data else ""
                        if self.eml is not None and data is not None:
                            detail = self._write_eml(decision, data)
                    results.append(_result(decision, "dry-run", detail, message=message))
                except (TemplateError, ValueError) as exc:
                    self._problem(decision, str(exc))
                    results.append(Result(decision, "render_error", str(exc)))
        if calls:
            detail = self._write_calls([results[at].decision for at in calls])
            for at in calls:
                results[at] = Result(results[at].decision, "dry-run", detail)
        return results

    def _write_calls(self, calls: list[Decision]) -> str:
        """``run --eml``: the call list's rows a delivering run would append, in DIR/call-list.csv
        (never the shop's own list: a dry-run records nothing), laid out as the shop's list is.
        Where they went, or why not: a shop's list a run could not write under is said here."""
        from cartrescue.channels.call_list import UnusableList, append_rows

        assert self.eml is not None
        config = self.composer.config
        path = self.eml / "call-list.csv"
        try:
            append_rows(path, calls, config.shop.tz, like=config.path(config.call_list.path), region=config.phone_region)
        except OSError as exc:
            return f"not written to {self.eml}: {exc.strerror or exc}"
        except UnusableList as exc:
            return f"not written: {exc}"
        return str(path)

    def _write_eml(self, decision: Decision, data: bytes) -> str:
        """``run --eml``: the file a dry-run writes for this message (where, or why not)."""
        from cartrescue.channels.outbox import file_for, write_file

        assert self.eml is not None
        try:
            return str(write_file(file_for(self.eml, f"{decision.cart.key}-step{decision.step}", decision.channel),
                                  data))
        except OSError as exc:
            return f"not written to {self.eml}: {exc.strerror or exc}"

    def build(self, decision: Decision, code: Allocation | None = None, *,
              test: bool = False) -> tuple[OutgoingMessage | None, bytes | None]:
        """``decision``'s message and the bytes its channel sends: MIME for e-mail, the text for
        an SMS, the JSON document for the webhook; raise TemplateError/ValueError for this cart.
        Without ``code`` a per-recipient incentive shows its placeholder. ``test``: a dry-run's
        (``run --eml``), whose links are test links: they unsubscribe and answer for nobody."""
        channel = decision.channel or "email"
        if channel == "sms":
            return None, self.composer.compose_sms(decision, code, test=test).text.encode("utf-8")
        if channel not in RENDERED:
            return None, None
        message = self.composer.compose(decision, code, test=test)
        if channel == "webhook":
            return message, self.composer.webhook_body(decision, message, code)
        sender = self.channels.get(channel)
        return message, build_message(message, eight_bit=sender is not None and sender.eight_bit)

    def _prepare(self, decision: Decision) -> _Prepared:
        """Render and build ``decision``'s message; raise TemplateError/ValueError for this cart."""
        channel = decision.channel or "email"
        pool = None
        if channel in RENDERED:
            incentive = self.composer.incentive(decision)
            if self.codes is not None and incentive is not None and incentive.codes is not None:
                pool = incentive.codes.pool
        message, data = self.build(decision)
        # The built message carries its id: hashed once a message, not again for the claim.
        message_id = message.message_id if message is not None else \
            self.composer.message_id(decision) if channel in RENDERED else ""
        request = self._claim_request(decision, self.channels[channel].transport, message_id)
        return _Prepared(decision, request, message, data, pool)

    # -- delivering --------------------------------------------------------------------------

    def _deliver(self, chunk: list[Decision], waiting: dict[int, Decision] | None = None) -> list[Result]:
        """Claim, deliver and record ``chunk``'s sends (and claim its holdouts); ``waiting``: its
        sends that ``run --limit`` deferred, which take the slots of sends this run did not claim."""
        assert self.ledger is not None and self.run_id is not None
        results: dict[int, Result] = {}
        feeds: list[_ClaimFeed] = []
        try:
            sends = [decision for decision in chunk if decision.action is ACTION_SEND]
            ready = self._ready(sends, results)
            held = [decision for decision in chunk if decision.action is ACTION_HOLDOUT]
            if held:
                self._hold_out(held, results)
            while sends:  # each round's unclaimed sends give their slots to waiting ones (popped: it ends)
                if ready:
                    self._deliver_ready(ready, results, feeds)
                sends = self._give_back(chunk, sends, results, waiting if waiting is not None else {})
                ready = self._ready(sends, results)
        except KeyboardInterrupt:  # stopped mid-chunk: what is known of it, for the run's report
            self.cut_short = _known(chunk, results, feeds, IN_FLIGHT_AT_STOP)
            raise
        except Exception:  # any other error mid-chunk, the ledger's (exit 2): what this process knows it claimed
            self.cut_short = _known(chunk, results, feeds, IN_FLIGHT_AT_ERROR)
            raise
        return [results.get(id(d)) or _result(d) for d in chunk]  # a Result made only for a decision without one

    def _ready(self, sends: list[Decision], results: dict[int, Result]) -> dict[str, list[_Prepared]]:
        """``sends`` rendered and built, by channel; one that fails for its cart goes into
        ``results`` as a ``render_error``, unclaimed."""
        ready: dict[str, list[_Prepared]] = {}
        for decision in sends:
            try:
                prepared = self._prepare(decision)
            except (TemplateError, ValueError) as exc:
                self._problem(decision, str(exc))
                results[id(decision)] = Result(decision, "render_error", str(exc))
                continue
            ready.setdefault(prepared.request.channel, []).append(prepared)
        return ready

    def _deliver_ready(self, ready: dict[str, list[_Prepared]], results: dict[int, Result],
                       feeds: list[_ClaimFeed]) -> None:
        """Claim and deliver the ``ready`` sends, channel by channel, into ``results``; each
        channel's feed joins ``feeds`` (its claims: what a run cut short had in flight)."""
        for channel_name, batch in ready.items():
            feed = _ClaimFeed(self, batch, results)
            feeds.append(feed)
            try:
                self.channels[channel_name].run(feed)
            finally:
                feed.flush()
            if feed.stopped is not None:
                raise feed.stopped

    def _hold_out(self, decisions: list[Decision], results: dict[int, Result]) -> None:
        """Held-out carts are claimed too (transport "holdout", status "held_out"): the ledger then
        knows the control group step by step, and a later run never "sends" them that step."""
        assert self.ledger is not None and self.run_id is not None
        requests = [self._claim_request(d, HOLDOUT) for d in decisions]
        won = self.ledger.hold_out(self.run_id, requests, [d.detail for d in decisions], self.clock.now(),
                                   lock_name=self.lock_name)
        for decision, request in zip(decisions, requests):
            if (request.cart_key, request.step, request.channel) in won:
                results[id(decision)] = Result(decision, HELD_OUT)
            else:
                results[id(decision)] = Result(decision, "claimed_elsewhere", "another run claimed this step")


#: The ``detail`` of a message a stopped run had claimed and handed over, whose answer had not
#: come when the stop's grace ran out: its row stays ``claimed`` (it may have arrived, so it is
#: not resent), and the run lists it as ``unconfirmed``, as the later runs count it.
IN_FLIGHT_AT_STOP = ("in flight at the stop: no answer came before the run ended, its claim has no outcome "
                     "(it may have arrived: not resent unless --resend-unconfirmed)")
#: ... and of one in flight when the ledger failed: the run stopped (exit 2) before its outcome was known.
IN_FLIGHT_AT_ERROR = ("in flight when the ledger failed: the run stopped before its outcome was known, its claim "
                      "has none (it may have arrived: not resent unless --resend-unconfirmed)")


def _known(chunk: list[Decision], results: dict[int, Result], feeds: list[_ClaimFeed], in_flight: str) -> list[Result]:
    """What a run cut short mid-chunk knows of the chunk: each decision with its result, each
    message it claimed without an outcome as ``unconfirmed`` (``in_flight`` says why), and the
    carts decided without a send. A send it never claimed is left out: the next run plans it.

    Without the claims in flight, a run stopped while the relay held every reply listed none of
    the messages it had claimed, and its counts said nothing was sent while the ledger held them."""
    claimed = {id(p.decision): p for feed in feeds for p in feed.by_claim.values()}
    known: list[Result] = []
    for decision in chunk:
        result = results.get(id(decision))
        if result is None and id(decision) in claimed:
            result = Result(decision, Status.UNCONFIRMED.value, in_flight, claimed[id(decision)].message)
        if result is not None:
            known.append(result)
        elif decision.action is not ACTION_SEND:
            known.append(Result(decision))
    return known


FLUSH_EVERY = 16  # outcomes per group commit
FLUSH_SECONDS = 0.02  # ... or this long after the oldest unrecorded outcome


class _ClaimFeed:
    """The :class:`~cartrescue.channels.base.Feed` a channel delivers from.

    ``take`` claims envelopes only when the channel asks for them (and writes the outcomes
    gathered so far in the same transaction); ``done`` records outcomes in small groups. A run
    that lost its lock gets nothing more to deliver: ``take`` returns ``[]`` and ``stopped``
    says why, once the channel has finished what it had in hand.
    """

    def __init__(self, executor: Executor, prepared: list[_Prepared], results: dict[int, Result]) -> None:
        self.executor = executor
        self.ledger = executor.ledger
        self.pending = list(reversed(prepared))
        self.results = results
        self.by_claim: dict[int, _Prepared] = {}
        self.buffer: list[tuple[int, str, str, str]] = []
        self.bounced: list[tuple[str, str, str]] = []
        self.oldest = 0.0
        self.stopped: CartrescueError | None = None

    def take(self, n: int) -> list[Envelope]:
        if self.stopped is not None:
            return []
        lock = self.executor.lock
        if lock is not None and lock.lost is not None:
            self.stopped = lock.lost
            return []
        taken: list[Envelope] = []
        while self.pending and len(taken) < n:
            group = [self.pending.pop() for _ in range(min(n - len(taken), len(self.pending)))]
            at = self.executor.clock.now()
            group = self._outside_quiet_hours(group, at)
            if not group:
                continue
            outcomes = self._drain()
            try:
                won = self.ledger.claim(self.executor.run_id, [p.request for p in group],  # type: ignore[union-attr,arg-type]
                                        at, outcomes=outcomes, lock_name=self.executor.lock_name,
                                        day=self.executor.claim_day(at))
            except LockLost as lost:
                # The claim rolled back, and the outcomes written with it: they are facts, keep them.
                self.ledger.record(outcomes)  # type: ignore[union-attr]
                self.stopped = lost
                self.pending.extend(reversed(group))
                return taken
            for prepared in group:
                request = prepared.request
                claim_id = won.get((request.cart_key, request.step, request.channel))
                decision = prepared.decision
                if claim_id is None:
                    if (request.cart_key, request.step, request.channel) in won.refused:
                        self.results[id(decision)] = Result(self.executor.number_taken(decision, at))
                    else:
                        self.results[id(decision)] = Result(decision, "claimed_elsewhere", "another run claimed this step")
                    continue
                self.by_claim[claim_id] = prepared
                envelope = self._finish(claim_id, prepared, at)
                if envelope is not None:
                    taken.append(envelope)
        return taken

    def _outside_quiet_hours(self, group: list[_Prepared], at: datetime) -> list[_Prepared]:
        """Those of ``group`` (one channel) not in their quiet hours at ``at``; the others are held,
        unclaimed: the next run after the window sends them. A channel whose quiet hours are the
        recipient's is asked per number; any other, once for the group."""
        executor = self.executor
        channel = group[0].request.channel
        zoned = executor.per_recipient_quiet(channel)
        shared = None if zoned else executor.quiet_at(channel, at)
        if not zoned and shared is None:
            return group
        outside = []
        for prepared in group:
            quiet = executor.quiet_at(channel, at, prepared.decision.phone) if zoned else shared
            if quiet is None:
                outside.append(prepared)
            else:
                self.results[id(prepared.decision)] = Result(executor.quiet_hold(prepared.decision, quiet, at))
        return outside

    def _finish(self, claim_id: int, prepared: _Prepared, at: datetime) -> Envelope | None:
        """The claimed envelope; a per-recipient incentive code is allocated now (a code exists
        only for a message that was claimed; a retry of the claim gets its code again, or a
        fresh one if it expired) and the message rebuilt with it."""
        executor, decision = self.executor, prepared.decision
        if prepared.code_pool is not None and executor.codes is not None:
            try:
                offer = executor.composer.incentive(decision)
                code = executor.codes.allocate(
                    prepared.code_pool, claim_id, cart_key=decision.cart.key, email=decision.cart.customer.email,
                    step=decision.step or 0, now=at,
                    valid_for=offer.valid_for if offer is not None else None)
                prepared.message, prepared.data = executor.build(decision, code)
            except (CartrescueError, ValueError) as exc:
                # Not this cart's data (the template rendered before the claim): the pool ran dry.
                self.done(Outcome(claim_id, Status.TRANSIENT, f"incentive code: {exc}"))
                return None
        return Envelope(claim_id, decision, prepared.message, prepared.data, prepared.request.message_id)

    def done(self, outcome: Outcome) -> None:
        prepared = self.by_claim[outcome.claim_id]
        message_id = prepared.request.message_id
        if not self.buffer:
            self.oldest = time.monotonic()
        self.buffer.append((outcome.claim_id, outcome.status.value, outcome.reply, message_id))
        decision = prepared.decision
        # A dry code pool is `failed_transient` here too, as the ledger has it: the claim is retried
        # once codes are added, and nothing is wrong with the template (`render_error` said so).
        self.results[id(decision)] = _result(decision, outcome.status.value, outcome.reply, prepared.message)
        # "No such user", "unsubscribed at the carrier": no other cart or step of the contact is tried.
        contact = decision.phone if prepared.request.channel == "sms" else decision.cart.customer.email
        if outcome.suppress and contact:
            transport = prepared.request.transport
            hashed = phone_hash(contact) if prepared.request.channel == "sms" else email_hash(contact)
            self.bounced.append((hashed, outcome.suppress, f"{transport}: {without_address(outcome.reply, contact)}"))
        if len(self.buffer) >= FLUSH_EVERY or time.monotonic() - self.oldest >= FLUSH_SECONDS:
            self.flush()

    def _drain(self) -> list[tuple[int, str, str, str]]:
        buffered, self.buffer = self.buffer, []
        return buffered

    def flush(self) -> None:
        """Write the outcomes gathered so far: they are of messages handed over (delivered, or
        refused), so a Ctrl-C or SIGTERM meanwhile waits until they are written."""
        assert self.ledger is not None
        with stops.held():
            self.ledger.record(self._drain())
            if self.bounced:
                self.ledger.suppress_many(self.bounced)
                self.bounced = []


def _decision_row(decision: Decision) -> dict[str, object]:
    """The ``cr_decision`` row. A suppressed cart's is kept without its address: an address that
    was forgotten (``cartrescue forget``) must not come back into the ledger from the shop's data."""
    suppressed = decision.reason is REASON_SUPPRESSED
    return {
        "cart_key": decision.cart.key, "email": None if suppressed else decision.cart.customer.email,
        "action": decision.action.value,
        "reason": decision.reason.value, "step": decision.step, "tier": decision.tier, "score": decision.score,
    }
