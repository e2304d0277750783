"""The executor: composes, claims, delivers and records the send decisions, in the ledger's order.

Separate from the planner (which only decides) and the composer (which only renders): it owns
the ledger's promise (everything that can fail for a cart before its claim; claims as a channel
takes envelopes; outcomes written in small groups, :data:`FLUSH_EVERY` / :data:`FLUSH_SECONDS`)
and what a run cut short knows of its chunk.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from zoneinfo import ZoneInfo

    from cartrescue.job import LockWatch

from cartrescue import stops
from cartrescue.channels.base import Channel, Envelope, Outcome, Status
from cartrescue.clock import RunClock
from cartrescue.contacts import email_hash, phone_hash, without_address
from cartrescue.currency import Basis
from cartrescue.decide.eligibility import Verdict, suppresses
from cartrescue.errors import CartrescueError, LockLost, TemplateError
from cartrescue.compose.incentives import Allocation, Codes, pools
from cartrescue.ledger import ClaimRequest, Ledger, busy
from cartrescue.compose.mime import build_message, wire_address
from cartrescue.model import (
    ACTION_DEFER,
    ACTION_HOLDOUT,
    ACTION_SEND,
    ACTION_SKIP,
    REASON_BUDGET,
    REASON_DUE,
    REASON_HOURLY_QUOTA,
    REASON_MESSAGED_TODAY,
    REASON_RUN_LIMIT,
    REASON_SUPPRESSED,
    Decision,
    OutgoingMessage,
    Reason,
    RowProblem,
    quick_new,
)
from cartrescue.pipeline.common import chunked
from cartrescue.pipeline.composer import Composer
from cartrescue.pipeline.results import Result, new_result
from cartrescue.ratelimit import HourRoom
from cartrescue.decide.sequence import Calendar
from cartrescue.sms_text import measure


HOLDOUT = "holdout"  # the transport recorded for a held-out cart
HELD_OUT = "held_out"  # its ledger status: no message, on purpose
DELIVERY_CHUNK = 250
RENDERED = frozenset({"email", "sms", "webhook"})  # channels whose message is rendered from templates
_claim = quick_new(ClaimRequest)  # ClaimRequest(...) for fewer instructions: one per send (it takes keywords)
_NOT_CLAIMED = frozenset({"claimed_elsewhere", "render_error"})  # sends that ended before this run's claim


def _unclaimed(result: Result) -> bool:
    """Whether a send ended without this run's claim: deferred at it, skipped at it (its contact
    opted out meanwhile, :meth:`_ClaimFeed._skip_opted_out`), claimed by another run first, or failed
    to render (:meth:`Executor._give_back`)."""
    action = result.decision.action
    return action is ACTION_DEFER or action is ACTION_SKIP or result.delivery in _NOT_CLAIMED


def _spare(decision: Decision) -> bool:
    """Whether ``decision`` is a budget's spare: deferred by its tier's budget, and among the
    best of those, so it may take the slot of a kept send this run does not claim."""
    return decision.budgeted and decision.reason is REASON_BUDGET


def _in_freed_slot(spare: Decision) -> Decision:
    """The send a budget's ``spare`` becomes when it takes a slot a kept send left unclaimed."""
    return replace(spare, action=ACTION_SEND, reason=REASON_DUE, not_before=None,
                   detail=f"in the slot of a send this run did not claim ({spare.detail})")


#: How long the looks at the opt-outs keep asking from below the highest id a look saw: a
#: suppression's id is drawn as its insert runs, so on PostgreSQL or MariaDB one may commit after
#: a higher id was seen; a later look that still asks from below finds it.
SETTLE_SECONDS = 30.0
#: How long the claims of a chunk go on without looking at the opt-outs again. A chunk's own look
#: comes before its first claim, and a slow or rate-limited relay may take minutes over the chunk:
#: a claim made this long after the last look looks again first. At most one query a second
#: however many sends a second go out; between looks a claim costs one clock read.
LOOK_SECONDS = 1.0
#: The ``detail`` of a send or holdout whose address or number was suppressed after the run planned it.
SUPPRESSED_MEANWHILE = "suppressed while the run delivered (unsubscribed, STOP or bounced after it was planned)"


class OptOuts:
    """The suppressions recorded since a run began, looked up before each chunk's claims and,
    while they go on, again once :data:`LOOK_SECONDS` passed since the last look.

    The planner reads a cart's suppressions when it decides it; a large shop's run then delivers
    for minutes, and a customer who unsubscribes meanwhile (the webhook, a STOP reply,
    ``cartrescue unsubscribe``, another shard's bounce) must not get the step. A look is one query
    of the suppression table's primary key, for the rows above a mark: it reads the suppressions
    added during the run, never the whole list, and nothing per cart."""

    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger
        mark = ledger.suppression_mark()  # before the planner reads any: what it may not have seen comes after
        self.hashes: set[str] = set()
        self._since = mark  # the next look asks for the ids above it
        self._seen = mark  # the highest id seen
        self._marks: list[tuple[float, int]] = []  # (when, highest id seen) of the looks not yet settled
        self._looked = time.monotonic()  # when the last look was
        self.screened = 0  # how many hashes the last chunk was screened with (its claims' baseline)

    def look(self) -> set[str]:
        """Every contact hash suppressed since the run began (as far as this look sees)."""
        rows = self.ledger.suppressed_after(self._since)
        self.hashes.update(hashed for _id, hashed in rows)
        self._seen = max([self._seen, *(row_id for row_id, _hash in rows)])
        now = self._looked = time.monotonic()
        self._marks.append((now, self._seen))
        while self._marks and now - self._marks[0][0] >= SETTLE_SECONDS:
            self._since = self._marks.pop(0)[1]
        return self.hashes

    def recent(self) -> set[str]:
        """:attr:`hashes`, looked up again first when :data:`LOOK_SECONDS` passed since the last
        look: what a claim checks its sends against, for one clock read while sends are fast."""
        if time.monotonic() - self._looked >= LOOK_SECONDS:
            return self.look()
        return self.hashes

    def screen(self, chunk: list[Decision]) -> list[Decision]:
        """``chunk`` with each send, holdout or budget spare whose address or number was
        suppressed since the run began skipped as ``suppressed``, as the planner skips it."""
        hashes = self.look()
        self.screened = len(hashes)
        if not hashes:
            return chunk
        return [_suppressed_meanwhile(d)
                if (d.action is ACTION_SEND or d.action is ACTION_HOLDOUT or _spare(d))
                and suppresses(hashes, d.cart.customer.email, d.phone) else d
                for d in chunk]


def _suppressed_meanwhile(decision: Decision) -> Decision:
    """``decision`` skipped as ``suppressed``: its address or number opted out after the run planned it."""
    return replace(decision, action=ACTION_SKIP, reason=REASON_SUPPRESSED, not_before=None,
                   detail=SUPPRESSED_MEANWHILE)


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
        self.opt_outs: OptOuts | None = None  # a delivering run's, from its first chunk (execute)
        # A stop (Ctrl-C, SIGTERM) during a chunk's delivery: the chunk's results known by then
        # (each message the run recorded, and the carts decided without one), which execute()
        # never yielded. The caller reports them, or its document counted sends it did not list.
        self.cut_short: list[Result] = []
        self._basis = Basis(composer.config.shop.currency, composer.config.shop.exchange_rates)
        self._sequence_of = {tier.name: tier.sequence for tier in composer.config.priority.tiers}
        self._calendar = Calendar.of_shop(composer.config)
        # Per channel and the number's zones (none: the shop's), when its next quiet window begins
        # (None: it has none): a live run's claims are compared with it, and quiet hours read
        # again only once the clock reaches it.
        self._quiet_from: dict[tuple[str, tuple[ZoneInfo, ...]], datetime | None] = {}
        # Per tier, the budget's slots that kept sends left unclaimed in this run, not yet given
        # to a spare (:meth:`_give_back`); and the tiers whose budget is the day's.
        self._room: Counter[str] = Counter()
        tiers = composer.config.priority.tiers
        self._budgets = any(t.budget is not None for t in tiers)
        # Per channel with an hourly quota (rate_per_hour), the room its hour has left, read from
        # the channel before each chunk (:meth:`_refresh_quotas`) and taken by each send admitted.
        self._hour: dict[str, HourRoom] = {}
        self._quota: dict[str, int] = {}
        self._per_day = frozenset(t.name for t in tiers if t.budget is not None and t.budget_per == "day")
        if ledger is not None and pools(composer.config):
            self.codes = Codes(composer.config, ledger)

    def execute(self, decisions: Iterable[Decision]) -> Iterator[Result]:
        opt_outs = self.opt_outs = OptOuts(self.ledger) if self.ledger is not None else None  # before any decision
        for chunk in chunked(decisions, DELIVERY_CHUNK):
            if opt_outs is not None:
                chunk = self._opted_out(chunk, opt_outs.screen(chunk))
            chunk, waiting = self._apply_limit(chunk)
            results = self._deliver(chunk, waiting) if self.ledger is not None else self._dry_run(chunk)
            if self.ledger is not None and self.run_id is not None:
                self.cut_short = results  # a stop or a ledger error while they are saved: still the run's
                self.ledger.save_decisions(self.run_id, self.composer.now, [_decision_row(r.decision) for r in results])
                self.cut_short = []
            yield from results
            if self.on_progress is not None:
                self.on_progress(len(chunk))

    def _opted_out(self, chunk: list[Decision], screened: list[Decision]) -> list[Decision]:
        """``screened`` (:meth:`OptOuts.screen`); a send its tier's budget kept, now skipped,
        leaves its slot to the tier's next spare, as a send this run does not claim does."""
        if screened is not chunk and self._budgets:
            for before, after in zip(chunk, screened):
                if after is not before and before.action is ACTION_SEND and before.budgeted:
                    self._room[before.tier or ""] += 1
        return screened

    def _apply_limit(self, chunk: list[Decision]) -> tuple[list[Decision], dict[int, Decision]]:
        """``run --limit N``: the first N send decisions go ahead, the rest wait for a later run;
        so do the sends past the room a channel's hourly quota has left (``hourly_quota``): they
        are never claimed, so the run neither fails them nor counts an attempt.

        Also returns the sends that wait, by their place in the chunk: a send that goes ahead but
        is deferred at its claim (:meth:`_give_back`) hands its slot to the first of them. A tier
        budget's spare (:meth:`Planner._reserve`) waits here too, as the send it would be: it
        goes ahead at once when a kept send of its tier left a slot in an earlier chunk."""
        waiting: dict[int, Decision] = {}
        self._refresh_quotas()
        if self.limit is None and not self._budgets and not self._quota:
            return chunk, waiting
        out = []
        for at, decision in enumerate(chunk):
            if _spare(decision):
                send = _in_freed_slot(decision)
                if self._admit(send, spare=True):
                    decision = send
                else:
                    waiting[at] = send
            elif decision.action is ACTION_SEND and not self._admit(decision, spare=False):
                waiting[at] = decision
                decision = self._waits(decision)
            out.append(decision)
        return out, waiting

    def _refresh_quotas(self) -> None:
        """Read the room each channel's hourly quota has left (:meth:`Channel.hour_room`), before a
        chunk: every claim of the chunks before went through the channel's window by then, and
        the sends of the hour that age out of it free their room. No query: the window was
        seeded from the ledger once, as the channel was built."""
        self._hour = {name: room for name, channel in self.channels.items()
                      if (room := channel.hour_room()) is not None}
        self._quota = {name: room.room for name, room in self._hour.items()}

    def _blocked(self, send: Decision, *, spare: bool) -> Reason | None:
        """Why ``send`` cannot go ahead now: no ``--limit`` slot left, no slot its tier's kept
        sends left (a budget's ``spare``), no room in its channel's hour; None: it can."""
        if self.limit is not None and self.limit <= 0:
            return REASON_RUN_LIMIT
        if spare and self._room[send.tier or ""] <= 0:
            return REASON_BUDGET
        if self._quota and self._quota.get(send.channel or "email", 1) <= 0:
            return REASON_HOURLY_QUOTA
        return None

    def _admit(self, send: Decision, *, spare: bool) -> bool:
        """Whether ``send`` goes ahead now, taking a ``--limit`` slot (with a limit), a slot of
        its channel's hourly quota (with one) and, for a budget's ``spare``, a slot its tier's
        kept sends left (none: it waits)."""
        if self._blocked(send, spare=spare) is not None:
            return False
        if spare:
            self._room[send.tier or ""] -= 1
        if self.limit is not None:
            self.limit -= 1
        channel = send.channel or "email"
        if channel in self._quota:
            self._quota[channel] -= 1
        return True

    def _waits(self, send: Decision) -> Decision:
        """``send`` deferred, unclaimed, for the slot :meth:`_admit` refused it: ``run --limit``'s
        (``run_limit``), or its channel's hour (``hourly_quota``, until its oldest send leaves it).
        What the send's detail said (``by email, not sms (...)``) stays, after the reason: the
        owner who reads why it waits still learns which channel it will go by."""
        was = f"; {send.detail}" if send.detail else ""
        if self._blocked(send, spare=False) is REASON_RUN_LIMIT:
            return replace(send, action=ACTION_DEFER, reason=REASON_RUN_LIMIT,
                           detail=f"run --limit reached; a later run sends it{was}")
        hour = self._hour[send.channel or "email"]
        free = self.clock.now() + timedelta(seconds=hour.free_in)
        free = free.replace(microsecond=0) + timedelta(seconds=1 if free.microsecond else 0)
        return replace(send, action=ACTION_DEFER, reason=REASON_HOURLY_QUOTA, not_before=free,
                       detail=f"{hour.quota} reached: the past hour's sends took its room; not claimed, "
                              f"the first run from {free:%Y-%m-%d %H:%M:%S} UTC sends it{was}")

    def _give_back(self, chunk: list[Decision], sent: list[Decision], results: dict[int, Result],
                   waiting: dict[int, Decision]) -> list[Decision]:
        """The sends that take the slots of the sends of ``sent`` this run did not claim.

        A send deferred at its claim (its number had a message today, quiet hours reached), one
        another run claimed first, or one whose message failed to render for its cart was never
        claimed by this run: ``--limit N`` counts the messages this run claims, so its slot goes
        to the next send that waits with ``run_limit`` -- put back in ``chunk`` in its place --
        or, when none waits in this chunk, to the next chunk's. So does its channel's hourly
        quota, to the next send of the channel deferred ``hourly_quota``. A tier's budget does the same:
        the slot of a send it kept goes to the tier's best spare (``tier_budget``), in this
        chunk or a later one; a day's budget counts every claim of the day, so the slot of a send
        another run claimed first was spent. A waiting send was never claimed, so none is
        claimed twice, and a budget never gives more slots than it kept."""
        unclaimed = [(d, r) for d in sent if (r := results.get(id(d))) is not None and _unclaimed(r)]
        if self.limit is not None:
            self.limit += len(unclaimed)
        for decision, result in unclaimed:
            if (decision.channel or "email") in self._quota:
                self._quota[decision.channel or "email"] += 1
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

    def _held_back(self, chunk: list[Decision], waiting: dict[int, Decision]) -> None:
        """Each budget's spare of ``chunk`` still waiting while its tier has a slot to give (a kept
        send left it unclaimed), best first, a slot each, is deferred for what held it instead:
        its channel's hour (``hourly_quota``, ``not_before`` when the hour has room) or ``run
        --limit`` (``run_limit``). Reported ``tier_budget``, it sent the owner to raise a budget
        that had room, and a day's budget's ``not_before`` said the shop's next midnight."""
        free = Counter(self._room)
        for at, send in waiting.items():
            tier = send.tier or ""
            if _spare(chunk[at]) and free[tier] > 0 and self._blocked(send, spare=True) is not None:
                free[tier] -= 1
                chunk[at] = self._waits(send)

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
        per claim (batch) until the clock reaches the next window of the channel in those zones."""
        if not self.clock.live:
            return None
        key = (channel, self._calendar.recipient_zones(channel, phone))
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
                results.append(new_result(decision))
            elif decision.channel not in RENDERED:
                if self.eml is not None and decision.channel == "call-list":
                    calls.append(len(results))
                results.append(new_result(decision, "dry-run"))
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
                    results.append(new_result(decision, "dry-run", detail, message=message))
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
            append_rows(path, calls, config.shop.tz, self.clock.now(), like=config.path(config.call_list.path), region=config.phone_region,
                        shop_url=config.shop.url, offers=[self.composer.call_offer(call) for call in calls])
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
        if channel == "call-list":  # no message: the row's offer, which staff make on the phone
            return None, self.composer.call_offer(decision, code).encode("utf-8")
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
        if channel in RENDERED or channel == "call-list":  # a call offers its step's code too
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
            self._held_back(chunk, waiting or {})
        except KeyboardInterrupt:  # stopped mid-chunk: what is known of it, for the run's report
            self.cut_short = _known(chunk, results, feeds, IN_FLIGHT_AT_STOP)
            raise
        except Exception:  # any other error mid-chunk, the ledger's (exit 2): what this process knows it claimed
            self.cut_short = _known(chunk, results, feeds, IN_FLIGHT_AT_ERROR)
            raise
        return [results.get(id(d)) or new_result(d) for d in chunk]  # a Result made only for a decision without one

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
        self.opt_outs = executor.opt_outs
        # How many suppressed contacts ``pending`` was checked against: the chunk's screen's, at first.
        self.checked = self.opt_outs.screened if self.opt_outs is not None else 0

    def take(self, n: int) -> list[Envelope]:
        if self.stopped is not None:
            return []
        lock = self.executor.lock
        if lock is not None and lock.lost is not None:
            self.stopped = lock.lost
            return []
        taken: list[Envelope] = []
        while self.pending and len(taken) < n:
            if self.opt_outs is not None:
                self._skip_opted_out(self.opt_outs)
                if not self.pending:
                    break
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
            except Exception as exc:
                self._keep(outcomes, exc)  # the ledger failed: the last flush tries them on a new connection
                raise
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

    def _skip_opted_out(self, opt_outs: OptOuts) -> None:
        """Skip the sends not yet claimed whose address or number opted out since the chunk's
        look (:meth:`OptOuts.recent`: looked up again once a second at most), as the chunk's
        screen does: a relay that takes minutes over a chunk must not message who opted out
        meanwhile. Each send is checked again only when a look found a new suppression; its
        slot goes to the next that waits (:func:`_unclaimed`)."""
        hashes = opt_outs.recent()
        if len(hashes) == self.checked:
            return
        self.checked = len(hashes)
        kept = []
        for prepared in self.pending:
            decision = prepared.decision
            if suppresses(hashes, decision.cart.customer.email, decision.phone):
                self.results[id(decision)] = Result(_suppressed_meanwhile(decision))
            else:
                kept.append(prepared)
        self.pending = kept

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
        self.results[id(decision)] = new_result(decision, outcome.status.value, outcome.reply, prepared.message)
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

    def _keep(self, outcomes: list[tuple[int, str, str, str]], exc: Exception) -> None:
        """Put back ``outcomes`` a failed write (``exc``) took from the buffer. A ledger whose
        server ended the connection takes a new one at once: the flush of
        :meth:`Executor._deliver_ready` on the way out records them there. Dropped, the messages
        the relay took and the run's document listed as sent stayed claimed without outcome, for
        ``--resend-unconfirmed`` to send again (recording an outcome twice, when the failed
        commit had in fact gone through, writes the same values). Not after a wait for a lock
        another process holds: that flush would wait as long again (README, exit 2)."""
        if outcomes and not busy(exc):
            if not self.buffer:
                self.oldest = time.monotonic()
            self.buffer[:0] = outcomes

    def flush(self) -> None:
        """Write the outcomes gathered so far: they are of messages handed over (delivered, or
        refused), so a Ctrl-C or SIGTERM meanwhile waits until they are written."""
        assert self.ledger is not None
        with stops.held():
            outcomes = self._drain()
            try:
                self.ledger.record(outcomes)
            except Exception as exc:
                self._keep(outcomes, exc)
                raise
            if self.bounced:  # stamped as the claims are: a pinned clock's instant (README)
                self.ledger.suppress_many(self.bounced, self.executor.clock.now())
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
