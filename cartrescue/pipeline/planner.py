"""The planner: for every cart of a source, what this run does with it and why (a ``Decision``).

Separate from the composer and the executor: it decides and never renders, claims or sends
(``preview`` and ``send-test`` use it alone). It streams in chunks of :data:`PLAN_CHUNK` carts
and asks the source for their orders and the ledger for their history per chunk.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Iterator, Mapping, Sequence
from dataclasses import replace
from datetime import datetime

from cartrescue.config import Config, Sequence as StepSequence, Tier
from cartrescue.contacts import email_hashes, normalize_phone, phone_hash, phone_region
from cartrescue.currency import Basis
from cartrescue.decide.eligibility import Gates, Suppressed, Verdict, suppressed_because
from cartrescue.decide.experiments import Experiments, subject
from cartrescue.ledger import ADDRESS_CHANNELS, NUMBER_CHANNELS, History, Ledger, TierUse
from cartrescue.model import (
    ACTION_HOLDOUT,
    ACTION_SEND,
    ACTION_SKIP,
    REASON_ANSWERED_SURVEY,
    REASON_DUE,
    REASON_HOLDOUT,
    REASON_NO_CONSENT,
    REASON_NO_CONTACT,
    REASON_STEP_NOT_DUE,
    REASON_SUPPRESSED,
    Cart,
    CartFacts,
    Decision,
    MarketingSend,
    RowProblem,
    quick_new,
)
from cartrescue.decide.newest import NO_WITHDRAWAL, NewestCarts, Withdrawal
from cartrescue.newsletters import Newsletters
from cartrescue.decide.orders import OrderBook, OrderFacts, phone_key
from cartrescue.pipeline.budget import Budget, counted_contacts
from cartrescue.pipeline.common import chunked
from cartrescue.decide.priority import Prioritizer
from cartrescue.decide.sequence import Calendar, done_elsewhere, minute_text, next_step, of_sequence, step_number
from cartrescue.shards import Shard
from cartrescue.sources.base import ALL_TIME, CartSource, Window
from cartrescue.text import printable


PLAN_CHUNK = 500
_NEEDS_PHONE = NUMBER_CHANNELS  # a step on these falls back to ..._BY_ADDRESS (channel_fallback)
_BY_ADDRESS = ADDRESS_CHANNELS  # ... and these go to the address


def _by_address(tier: Tier) -> str:
    """The channel a text or call step goes by when it does not go by its own: the tier's
    webhook if it has one, else e-mail."""
    return tier.channel if tier.channel in _BY_ADDRESS else "email"


_decision = quick_new(Decision)  # Decision(...) for half the instructions (a run makes one per cart)
_cart_facts = quick_new(CartFacts)


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
        self._any_suppression = False  # ... any suppression? (asked until there is: _may_suppress)
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
        contacts = counted_contacts(decision)
        verdict = None
        if (messaged and not messaged.isdisjoint(contacts)) or newest.messaged(contacts):  # the calendar's own rule, as if that message were the last
            verdict = self.calendar.gate(self.now, self.now, None, decision.channel or "email", decision.phone)
        if verdict is None:
            newest.mark_messaged(contacts)
            return decision
        return replace(decision, action=verdict.action, reason=verdict.reason, not_before=verdict.not_before,
                       detail="another cart with this address or number got a message in this run")

    def _reserve(self, budget: Budget, newest: NewestCarts, taken: set[str]) -> Iterator[Decision]:
        """The budget's reserve, best first, deferred (``tier_budget``): each one marked may take
        the slot of a kept send the run does not claim. Not one whose customer got a message in
        this run (another cart of theirs, a kept send) or is another spare's (``taken``): the
        slot must not give them a second message today."""
        for decision in budget.spares():
            contacts = counted_contacts(decision)
            if not taken.isdisjoint(contacts) or newest.messaged(contacts):
                yield decision
                continue
            taken.update(contacts)
            yield replace(decision, budgeted=True)

    def _budget(self, tier: Tier) -> Budget:
        """The tier's budget for this run: per run, or what is left of the shop's day; a shard
        takes its share (:meth:`cartrescue.shards.Shard.share`)."""
        limit = int(tier.budget)  # type: ignore[arg-type]
        if tier.budget_per == "day":
            return self._days_budget(tier, limit)
        if self.shard is None:
            return Budget(limit, "per run")
        return Budget(self.shard.share(limit), f"per run in shard {self.shard} (its share of {limit} over "
                                               f"{self.shard.count} shards)")

    def _days_budget(self, tier: Tier, budget: int) -> Budget:
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
            return Budget(max(budget - used.total, 0),
                           f"today (its day's budget is {budget}; the day's earlier runs used {used.total})", tomorrow)
        share = self.shard.share(budget)
        if self.ledger is not None and steps and self.run_id is not None:  # claims follow: reserved
            left, used = self.ledger.reserve_day_budget(self.run_id, tier.name, steps, midnight, self.now, budget,
                                                        share, self.shard.owns, self.config.ledger.lock_timeout)
        else:  # a dry-run's, or no ledger: what a delivering run would reserve if it ran alone
            used = TierUse(0, 0) if self.ledger is None or not steps else self.ledger.tier_used_since(
                tier.name, steps, midnight, self.now, self.shard.owns)
            left = max(min(share - used.own, budget - used.total), 0)
        running = f"; the other shards still running hold {used.pending} more" if used.pending else ""
        return Budget(left, f"today in shard {self.shard} (its share of the day's budget of {budget} over "
                             f"{self.shard.count} shards is {share}; the day's earlier runs used {used.own} of it, "
                             f"{used.total} in all{running})", tomorrow)

    def _steps_of(self, tier: Tier) -> list[tuple[int, str]]:
        """The steps of ``tier``'s sequence that go out on the tier's own channel, with it: what
        its budget counts (:meth:`_in_budget`). A step sent on another channel went by e-mail
        because its own could not reach the customer (:meth:`_fell_back`), or the sequence
        sends it so (``channel: email`` on the step), and no budget counts it."""
        return [(number, tier.channel) for number in self.config.own_channel_steps(tier)]

    def _history(self, chunk: Sequence[Cart], emails: list[str], phones: list[str]) -> History:
        """What the ledger holds of the chunk's carts, addresses and numbers. An empty stand-in
        (a dry-run before the first sending run: :meth:`Ledger.empty`) holds nothing: not asked,
        nor the chunk's addresses hashed for it (a SHA-256 each); a ledger without a suppression
        is asked for no hash (:meth:`_may_suppress`)."""
        if self.ledger is None or self.ledger.blank:
            return History()
        unique = list(dict.fromkeys(emails))
        numbers = list(dict.fromkeys(phones))
        hashes = [h for e in unique for h in email_hashes(e)] + [phone_hash(p) for p in numbers] \
            if self._may_suppress() else []
        return self.ledger.history([c.key for c in chunk], unique, hashes, numbers)

    def _may_suppress(self) -> bool:
        """Whether the ledger holds a suppression: asked before each chunk until it does (then
        not again). A ledger without one (a new shop's, or one whose customers never opted out
        or bounced) has no hash to find, so the chunk's addresses are not hashed for it (a
        SHA-256 each, ~6,600 instructions) nor looked up; one added while the run plans is
        found from the next chunk on, as when every chunk asked for its hashes. The empty
        stand-in of a dry-run without a ledger file (``Ledger.blank``) is never written to: no
        query for it."""
        if not self._any_suppression:
            self._any_suppression = bool(self.ledger and not self.ledger.blank and self.ledger.suppressions(limit=1))
        return self._any_suppression

    def _decide_chunk(
        self, source: CartSource, chunk: list[Cart], newest: NewestCarts, budgets: dict[str, Budget]
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
                   and (number := phone_key(cart, self.region))}
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
        screened, called = self._screen_calls(calls)
        for decision in screened:
            settled = self._settle(self._called_today(decision, messaged, called), budgets, messaged, added, newest)
            if settled is not None:
                yield settled
        newest.mark_messaged(added)

    def _settle(self, decision: Decision, budgets: dict[str, Budget], messaged: set[str],
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
                    messaged.update(counted_contacts(displaced))
            return displaced
        if decision.action is ACTION_SEND:
            contacts = counted_contacts(decision)
            messaged.update(contacts)
            added += contacts
        return decision

    def _screen_calls(self, calls: list[Decision]) -> tuple[list[Decision], dict[str, datetime]]:
        """The call-list sends of a chunk whose number was not read as a mobile one (a shop
        without SMS reads none; a landline is none), each with its number now: its claim checks
        it, so a number gets one call a day whichever addresses its carts have (a shop without
        SMS called one number twice a day for two addresses). A number that was suppressed
        (``forget +46…``, a STOP) gets no call either, as docs/channels.md says of every channel.
        Its rows had gone on into the call list. And the last message to each number, which
        :meth:`_called_today` reads: a dry-run, which claims nothing, must say what the claim
        would. One ledger query for the chunk's few calls."""
        if not calls:
            return calls, {}
        numbers = {id(d): normalize_phone(d.cart.customer.phone, self.region) for d in calls}
        calls = [replace(d, phone=numbers[id(d)]) if numbers[id(d)] else d for d in calls]
        if self.ledger is None or self.ledger.blank:
            return calls, {}
        phones = sorted({d.phone for d in calls if d.phone})
        if not phones:
            return calls, {}
        hashes = {id(d): phone_hash(d.phone) for d in calls if d.phone} if self._may_suppress() else {}
        history = self.ledger.history([], [], list(hashes.values()), phones)
        suppressed = history.suppressed
        return [replace(d, action=ACTION_SKIP, reason=REASON_SUPPRESSED,
                        detail=suppressed_because("the number to call", suppressed[hashes[id(d)]]))
                if hashes.get(id(d)) in suppressed else d for d in calls], history.last_by_phone

    def _called_today(self, decision: Decision, messaged: set[str], called: dict[str, datetime]) -> Decision:
        """A call :meth:`_screen_calls` gave its number, deferred as its claim would defer it when
        the number had its message of the day under another address: earlier (``called``, the
        ledger's last message to it) or in this run (``messaged``). The claim refused it in a
        real run only: the dry-run listed the row as due, a call the run then did not make."""
        if decision.action is not ACTION_SEND or not decision.phone:
            return decision
        last = self.now if decision.phone in messaged else called.get(decision.phone)
        verdict = self.calendar.gate(self.now, last, None, "call-list", decision.phone) if last is not None else None
        if verdict is None:
            return decision
        return replace(decision, action=verdict.action, reason=verdict.reason, not_before=verdict.not_before,
                       detail=verdict.detail)

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
        return self.calendar.no_daytime("sms", phone, self.now)

    def _decide(
        self, cart: Cart, orders: OrderBook, history: History, newest: dict[str, str], messaged: set[str],
        sent_today: dict[str, MarketingSend], answered: set[str], phone: str | None = None,
        withdrawn: Mapping[str, Mapping[str, Withdrawal]] | None = None, by_number: str | None = None,
    ) -> Decision:
        """``newest`` and ``withdrawn`` are by customer key (:func:`~cartrescue.decide.newest.customer_key`):
        the address, else ``by_number``, the cart's phone number as that key (any valid number)."""
        # The Decision is built once, at the end: frozen dataclasses are costly to copy, and a
        # run makes one per cart.
        now = self.now
        facts = orders.facts(cart, by_number)
        score = self.prioritizer.score(cart, facts.previous_orders)
        route = self._routes[self.prioritizer.tier_index(score.value)]
        tier = route.tier
        cart_facts = _cart_facts(facts.previous_orders, score.margin, "overstock" in score.rules)
        email = cart.customer.email
        step: int | None = None
        template: str | None = None
        key = cart.key  # a property that formats its text: read once
        every = sent = history.by_cart.get(key, [])
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
        # A step that falls back to e-mail where the other sequence mailed that step: done here too
        # (and a call over budget does not go by e-mail instead, below: that claim is taken).
        while fallback and sent is not every and number <= route.steps and \
                (taken := done_elsewhere(every, sent, number, channel)) is not None:
            sent = [*sent, taken]
            number = step_number(sent)
            channel = route.channels[number - 1] if number <= route.steps else route.channel
            channel, verdict, fallback = self._reach(cart, facts, tier, channel, phone, history.suppressed,
                                                     newest_cart, said_no)
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
                        phone=phone, instead=None if route.defers or channel not in _NEEDS_PHONE or (
                            sent is not every and done_elsewhere(every, sent, step, _by_address(tier)) is not None
                        ) else self._instead(cart, facts, tier, history, newest_cart, phone, last, newsletter, said_no),
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
               suppressed: Suppressed, newest_cart: str | None,
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
