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
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import TypeVar

from cartrescue.channels.base import Channel, Envelope, Status
from cartrescue.config import Config, Incentive, Tier
from cartrescue.contacts import email_hash
from cartrescue.currency import Basis
from cartrescue.eligibility import Gates, Verdict
from cartrescue.incentives import Codes, placeholder, pools
from cartrescue.errors import CartrescueError, TemplateError
from cartrescue.experiments import Experiments, subject
from cartrescue.ledger import ClaimRequest, History, Ledger
from cartrescue.model import Action, Address, Cart, CartFacts, Decision, OutgoingMessage, Reason
from cartrescue.newest import NewestCarts
from cartrescue.orders import OrderBook
from cartrescue.priority import Prioritizer
from cartrescue.render import Renderer
from cartrescue.sequence import Calendar, next_step
from cartrescue.sources.base import CartSource, Window
from cartrescue.unsubscribe import make_token

T = TypeVar("T")
HOLDOUT = "holdout"  # the transport recorded for a held-out cart
HELD_OUT = "held_out"  # its ledger status: no message, on purpose
PLAN_CHUNK = 500
DELIVERY_CHUNK = 250
DRY_RUN_SECRET = "dry-run: not a secret"


def chunked(items: Iterable[T], size: int) -> Iterator[list[T]]:
    iterator = iter(items)
    while chunk := list(itertools.islice(iterator, size)):
        yield chunk


class _Budget:
    """Keeps the ``limit`` best-scoring send decisions of a tier; displaces the rest."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.heap: list[tuple[float, int, Decision]] = []
        self.counter = itertools.count()

    def offer(self, decision: Decision) -> Decision | None:
        """Keep ``decision`` if it is among the best so far; return the one that lost, if any."""
        entry = (decision.score or 0.0, -next(self.counter), decision)
        if len(self.heap) < self.limit:
            heapq.heappush(self.heap, entry)
            return None
        if self.limit and entry[:2] > self.heap[0][:2]:
            entry = heapq.heapreplace(self.heap, entry)
        return _over_budget(entry[2], self.limit)

    def drain(self) -> Iterator[Decision]:
        for _score, _order, decision in sorted(self.heap, key=lambda e: e[:2], reverse=True):
            yield decision
        self.heap.clear()


def _over_budget(decision: Decision, limit: int) -> Decision:
    return replace(decision, action=Action.DEFER, reason=Reason.BUDGET, detail=f"tier {decision.tier} takes {limit} per run")


class Planner:
    """Decides, for every cart of a source, what this run does with it and why."""

    def __init__(self, config: Config, now: datetime, ledger: Ledger | None = None) -> None:
        self.config = config
        self.now = now
        self.ledger = ledger
        basis = Basis(config.shop.currency, config.shop.exchange_rates)
        self.gates = Gates(config.eligibility, basis)
        self.calendar = Calendar(config.eligibility, config.shop.tz)
        self.prioritizer = Prioritizer(config.priority, basis)
        self.experiments = Experiments(config)

    def decide(self, source: CartSource) -> Iterator[Decision]:
        eligibility = self.config.eligibility
        now = self.now
        everything = Window(now - eligibility.max_age, now)
        with NewestCarts() as newest:
            newest.add(a for a in source.activity(everything) if a.updated_at <= now)
            budgets = {t.name: _Budget(t.budget) for t in self.config.priority.tiers if t.budget is not None}
            window = Window(now - eligibility.max_age, now - eligibility.cutoff)
            for chunk in chunked(source.carts(window), PLAN_CHUNK):
                yield from self._decide_chunk(source, chunk, newest, budgets)
            for budget in budgets.values():
                yield from budget.drain()

    def _history(self, chunk: Sequence[Cart], emails: list[str]) -> History:
        if self.ledger is None:
            return History()
        unique = list(dict.fromkeys(emails))
        return self.ledger.history([c.key for c in chunk], unique, [email_hash(e) for e in unique])

    def _decide_chunk(
        self, source: CartSource, chunk: list[Cart], newest: NewestCarts, budgets: dict[str, _Budget]
    ) -> Iterator[Decision]:
        orders = OrderBook(source.orders_for(chunk))
        emails = [c.customer.email for c in chunk if c.customer.email]
        history = self._history(chunk, emails)
        newest_by_email = newest.lookup(emails)
        # Addresses messaged earlier in this run: kept in the scratch file, not in a set that
        # would grow with every send of a million-cart run; this chunk's share is read here.
        messaged = newest.messaged(emails)
        added: list[str] = []
        for cart in chunk:
            decision = self._decide(cart, orders, history, newest_by_email, messaged)
            if decision.action is Action.SEND and decision.tier in budgets:
                displaced = budgets[decision.tier].offer(decision)
                if displaced is not None:
                    yield displaced
                continue
            if decision.action is Action.SEND and cart.customer.email:
                messaged.add(cart.customer.email)
                added.append(cart.customer.email)
            yield decision
        newest.mark_messaged(added)

    def _decide(
        self, cart: Cart, orders: OrderBook, history: History, newest: dict[str, str], messaged: set[str]
    ) -> Decision:
        # The Decision is built once, at the end: frozen dataclasses are costly to copy, and a
        # run makes one per cart.
        now = self.now
        facts = orders.facts(cart)
        score = self.prioritizer.score(cart, facts.previous_orders)
        tier: Tier = self.prioritizer.tier(score.value)
        cart_facts = CartFacts(facts.previous_orders, score.margin, "overstock" in score.rules)
        email = cart.customer.email
        step: int | None = None
        template: str | None = None
        verdict: Verdict | None = self.gates.check(
            cart, facts, now=now, suppressed=history.suppressed,
            newest_cart=newest.get(email) if email else None, wants_phone=tier.channel == "call-list",
        )
        if verdict is None:
            sequence = self.config.sequences[tier.sequence]
            due = next_step(cart, sequence, history.by_cart.get(cart.key, []), now)
            if isinstance(due, Verdict):
                verdict = due
            else:
                step = due.step
                template = sequence.steps[step - 1].template
                if tier.channel == "email":
                    last = now if email in messaged else history.last_by_email.get(email or "")
                    verdict = self.calendar.gate(now, last)
                if verdict is None:
                    who = subject(cart)
                    if self.experiments.held_out(who, tier.sequence):
                        return Decision(
                            cart=cart, action=Action.HOLDOUT, reason=Reason.HOLDOUT, score=score.value,
                            tier=tier.name, step=step, channel=tier.channel, template=template,
                            detail=f"holdout group ({sequence.holdout:.0%} of sequence {tier.sequence})",
                            facts=cart_facts,
                        )
                    return Decision(
                        cart=cart, action=Action.SEND, reason=Reason.DUE, score=score.value, tier=tier.name,
                        step=step, channel=tier.channel, template=template,
                        variant=self.experiments.variant(who, tier.sequence, step), facts=cart_facts,
                    )
        return Decision(
            cart=cart, action=verdict.action, reason=verdict.reason, score=score.value, tier=tier.name, step=step,
            channel=tier.channel, template=template, not_before=verdict.not_before, detail=verdict.detail,
            facts=cart_facts,
        )


@dataclass(frozen=True, slots=True)
class Result:
    """A decision and, for sends, what became of it."""

    decision: Decision
    delivery: str = ""  # "", "dry-run", "sent", "failed_transient", "failed_permanent", "claimed_elsewhere"
    detail: str = ""
    message: OutgoingMessage | None = None


@dataclass(slots=True)
class Counts:
    actions: Counter[str] = field(default_factory=Counter)
    reasons: Counter[str] = field(default_factory=Counter)
    deliveries: Counter[str] = field(default_factory=Counter)
    problems: int = 0

    def add(self, result: Result) -> None:
        self.actions[result.decision.action.value] += 1
        self.reasons[result.decision.reason.value] += 1
        if result.delivery:
            self.deliveries[result.delivery] += 1

    @property
    def failed(self) -> int:
        return self.deliveries["failed_transient"] + self.deliveries["failed_permanent"] + self.deliveries["render_error"]

    def as_dict(self) -> dict[str, object]:
        return {
            "carts": sum(self.actions.values()),
            **{action.value: self.actions[action.value] for action in Action},
            "sent": self.deliveries["sent"],
            "failed": self.failed,
            "problems": self.problems,
            "reasons": dict(sorted(self.reasons.items())),
            "deliveries": dict(sorted(self.deliveries.items())),
        }


class Composer:
    """Turns a send decision into an :class:`OutgoingMessage` (render + headers)."""

    def __init__(self, config: Config, renderer: Renderer, now: datetime, secret: str) -> None:
        self.config = config
        self.renderer = renderer
        self.now = now
        self.secret = secret
        shop = config.shop
        self.sender = Address(shop.from_email, shop.from_name or shop.name)
        self._domain = shop.domain
        self._tiers = {tier.name: tier for tier in config.priority.tiers}

    def message_id(self, decision: Decision, claim_id: int) -> str:
        digest = hashlib.blake2b(f"{decision.cart.key}|{decision.step}".encode(), digest_size=6).hexdigest()
        return f"<cr.{claim_id}.{digest}@{self._domain}>"

    def incentive(self, decision: Decision) -> Incentive | None:
        """The incentive of the decision's step for its tier (``None`` when there is none)."""
        if decision.step is None:
            return None
        tier = self._tiers[decision.tier]  # type: ignore[index]
        return self.config.sequences[tier.sequence].steps[decision.step - 1].incentive_for(decision.tier)

    def compose(self, decision: Decision, claim_id: int = 0, code: str | None = None) -> OutgoingMessage:
        """Render ``decision``'s message; ``code`` is its allocated incentive code. Without one
        (a dry-run or preview) a per-recipient incentive shows a placeholder: nothing is allocated."""
        cart = decision.cart
        email = cart.customer.email
        if not email or decision.step is None or decision.template is None:
            raise TemplateError(f"cart {cart.id}: nothing to compose (no address or step)")
        shop = self.config.shop
        tier = self._tiers[decision.tier]  # type: ignore[index]
        sequence = self.config.sequences[tier.sequence]
        step = sequence.steps[decision.step - 1]
        incentive = step.incentive_for(decision.tier)
        if code is None and incentive is not None and incentive.codes is not None:
            code = placeholder(incentive.codes)
        locale = self.renderer.resolve_locale(cart.customer.locale, step.template)
        token = make_token(email, self.secret)
        unsubscribe_url = shop.unsubscribe_url.replace("{token}", token)
        context = self.renderer.context(
            cart, locale=locale, step=decision.step, step_count=len(sequence.steps), tier=decision.tier,
            previous_orders=decision.facts.previous_orders if decision.facts else 0,
            unsubscribe_url=unsubscribe_url, incentive=incentive, now=self.now, variant=decision.variant,
            code=code,
        )
        rendered = self.renderer.render(step.template, locale, context, decision.variant)
        targets = [f"<{unsubscribe_url}>"]
        if shop.unsubscribe_mailto:
            targets.append(f"<mailto:{shop.unsubscribe_mailto}?subject=unsubscribe%20{token}>")
        name = " ".join(part for part in (cart.customer.first_name, cart.customer.last_name) if part)
        return OutgoingMessage(
            message_id=self.message_id(decision, claim_id),
            sender=self.sender,
            to=Address(email, name),
            subject=rendered.subject,
            text=rendered.text,
            html=rendered.html,
            date=self.now,
            reply_to=shop.reply_to,
            headers=(
                ("List-Unsubscribe", ", ".join(targets)),
                ("List-Unsubscribe-Post", "List-Unsubscribe=One-Click"),
                ("X-Cartrescue-Cart", cart.key),
                ("X-Cartrescue-Step", str(decision.step)),
                *((("X-Cartrescue-Variant", decision.variant),) if decision.variant else ()),
            ),
        )


class Executor:
    """Claims, composes, delivers and records the send decisions; passes the others through.

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
    ) -> None:
        self.composer = composer
        self.channels = channels
        self.ledger = ledger
        self.run_id = run_id
        self.on_progress = on_progress
        self.codes: Codes | None = None
        if ledger is not None and pools(composer.config):
            self.codes = Codes(composer.config, ledger)

    def execute(self, decisions: Iterable[Decision]) -> Iterator[Result]:
        for chunk in chunked(decisions, DELIVERY_CHUNK):
            results = self._deliver(chunk) if self.ledger is not None else self._dry_run(chunk)
            if self.ledger is not None and self.run_id is not None:
                self.ledger.save_decisions(self.run_id, self.composer.now, [_decision_row(r.decision) for r in results])
            yield from results
            if self.on_progress is not None:
                self.on_progress(len(chunk))

    def _dry_run(self, chunk: list[Decision]) -> list[Result]:
        results = []
        for decision in chunk:
            if decision.action is not Action.SEND:
                results.append(Result(decision))
            elif decision.channel != "email":
                results.append(Result(decision, "dry-run"))
            else:
                try:
                    results.append(Result(decision, "dry-run", message=self.composer.compose(decision)))
                except TemplateError as exc:
                    results.append(Result(decision, "render_error", str(exc)))
        return results

    def _deliver(self, chunk: list[Decision]) -> list[Result]:
        assert self.ledger is not None and self.run_id is not None
        # Held-out carts are claimed too (transport "holdout", status "held_out"): the ledger then
        # knows the control group step by step, and a later run never "sends" them that step.
        sends = [d for d in chunk if d.action in (Action.SEND, Action.HOLDOUT)]
        requests = [
            ClaimRequest(d.cart.key, d.cart.id, d.cart.customer.email, d.step or 0, d.channel or "email",
                         HOLDOUT if d.action is Action.HOLDOUT else self.channels[d.channel or "email"].transport,
                         d.template or "", d.variant, d.tier, d.score)
            for d in sends
        ]
        won = self.ledger.claim(self.run_id, requests, self.composer.now)
        by_claim: dict[int, Result] = {}
        envelopes: dict[str, list[Envelope]] = {}
        failures: list[tuple[int, str, str, str]] = []
        results: dict[int, Result] = {}
        for decision in sends:
            claim_id = won.get((decision.cart.key, decision.step or 0, decision.channel or "email"))
            if claim_id is None:
                results[id(decision)] = Result(decision, "claimed_elsewhere", "another run claimed this step")
                continue
            if decision.action is Action.HOLDOUT:
                failures.append((claim_id, HELD_OUT, decision.detail, ""))
                results[id(decision)] = Result(decision, HELD_OUT)
                continue
            message = None
            if decision.channel == "email":
                code = None
                incentive = self.composer.incentive(decision)
                if self.codes is not None and incentive is not None and incentive.codes is not None:
                    # Allocated after the claim and before delivery: a code exists only for a
                    # message that goes out, and only once (see cartrescue.incentives).
                    try:
                        code, _expires = self.codes.allocate(
                            incentive.codes.pool, claim_id, cart_key=decision.cart.key,
                            email=decision.cart.customer.email, step=decision.step or 0, now=self.composer.now)
                    except CartrescueError as exc:
                        failures.append((claim_id, Status.TRANSIENT.value, f"incentive code: {exc}", ""))
                        results[id(decision)] = Result(decision, Status.TRANSIENT.value, f"incentive code: {exc}")
                        continue
                try:
                    message = self.composer.compose(decision, claim_id, code)
                except TemplateError as exc:
                    failures.append((claim_id, Status.TRANSIENT.value, f"render error: {exc}", ""))
                    results[id(decision)] = Result(decision, "render_error", str(exc))
                    continue
            envelope = Envelope(claim_id, decision, message)
            envelopes.setdefault(decision.channel or "email", []).append(envelope)
            by_claim[claim_id] = Result(decision, message=message)
        self.ledger.record(failures)
        for channel_name, batch in envelopes.items():
            channel = self.channels[channel_name]
            recorded = []
            bounced = []  # "no such user": suppressed, so no other cart or step of the address is tried
            for outcome in channel.deliver(batch):
                result = by_claim[outcome.claim_id]
                message_id = result.message.message_id if result.message else ""
                recorded.append((outcome.claim_id, outcome.status.value, outcome.reply, message_id))
                results[id(result.decision)] = replace(result, delivery=outcome.status.value, detail=outcome.reply)
                address = result.decision.cart.customer.email
                if outcome.suppress and address:
                    bounced.append((email_hash(address), outcome.suppress, f"{channel.transport}: {outcome.reply}"))
            self.ledger.record(recorded)
            if bounced:
                self.ledger.suppress_many(bounced)
        return [results.get(id(d), Result(d)) for d in chunk]


def _decision_row(decision: Decision) -> dict[str, object]:
    return {
        "cart_key": decision.cart.key, "email": decision.cart.customer.email, "action": decision.action.value,
        "reason": decision.reason.value, "step": decision.step, "tier": decision.tier, "score": decision.score,
    }
