"""The channel seam: how a rendered message leaves cartrescue.

A channel takes envelopes from a :class:`Feed` and reports one outcome per envelope. It must not
decide who gets a message nor touch the ledger: the feed claims each envelope in the ledger only
as the channel takes it (so a killed run leaves only what was truly in flight ``claimed``) and
records outcomes as they come. Implementations: ``outbox`` (files), ``call_list`` (a CSV for
staff), ``smtp`` (aiosmtplib), ``webhook`` and ``sms`` (httpx, over :mod:`cartrescue.channels.http`);
the asyncio ones share :class:`LoopChannel`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from contextlib import nullcontext
from collections.abc import Callable, Iterator, MutableSequence, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

if TYPE_CHECKING:
    import asyncio
    from collections import deque

    from cartrescue.ratelimit import HourRoom

from cartrescue.model import Decision, OutgoingMessage, quick_init
from cartrescue.stops import held, stops_in_loop


class Status(StrEnum):
    """Ledger status of a message; the channel reports all but ``claimed``."""

    CLAIMED = "claimed"  # inserted before delivery; no outcome known yet
    # Handed over, but whether it arrived cannot be known (the whole message went out and no
    # answer came): like a claim left by a killed run, not resent unless --resend-unconfirmed.
    UNCONFIRMED = "unconfirmed"
    SENT = "sent"  # the server (or the outbox) accepted it
    TRANSIENT = "failed_transient"  # retry later (4xx, connection/TLS errors)
    PERMANENT = "failed_permanent"  # do not retry (5xx)


@quick_init
@dataclass(frozen=True, slots=True)
class Envelope:
    """One claimed message: the ledger row id, why it goes out, and what goes out."""

    claim_id: int
    decision: Decision
    message: OutgoingMessage | None  # None for channels that need no rendered message (call list)
    data: bytes | None = None  # the message's bytes, built (and checked) before the claim
    message_id: str = ""  # the ledger's message_id: a text has no ``message`` to carry it

    @property
    def key(self) -> str:
        """The message's id without its angle brackets (``cr.3f…@shop.example.com``): derived
        from the shop, the cart, the step and the channel, the same on every attempt and in every
        run, and unique across shops and ledgers (the webhook's ``Idempotency-Key``, an SMS
        gateway's ``{key}``). The ledger id (``claim_id``) is counted from 1 in each ledger: an
        agency's shops sending through one receiver or gateway account, or a shop that moved to
        a new ledger, sent ids it had seen, and it dropped those messages as repeats. The ledger
        id when there is no message id (a test send)."""
        found = self.message_id or (self.message.message_id if self.message is not None else "")
        return found.strip("<>") or str(self.claim_id)


@quick_init
@dataclass(frozen=True, slots=True)
class Outcome:
    claim_id: int
    status: Status
    reply: str = ""  # the server's reply or the file written; kept in the ledger
    suppress: str = ""  # non-empty: the address does not exist; the pipeline suppresses it with this reason


class Feed(Protocol):
    """Where a channel gets its work and leaves its outcomes (the pipeline's claiming feed)."""

    def take(self, n: int) -> list[Envelope]:
        """Up to ``n`` envelopes, claimed just now; ``[]`` when there is no more work."""

    def done(self, outcome: Outcome) -> None:
        """Report one envelope's outcome (recorded promptly, in small groups)."""


class ListFeed:
    """A feed over a ready list of envelopes, collecting the outcomes (tests, one-off sends)."""

    def __init__(self, envelopes: Sequence[Envelope]) -> None:
        self._pending = list(reversed(envelopes))
        self.outcomes: list[Outcome] = []

    def take(self, n: int) -> list[Envelope]:
        taken: list[Envelope] = []
        while self._pending and len(taken) < n:
            taken.append(self._pending.pop())
        return taken

    def done(self, outcome: Outcome) -> None:
        self.outcomes.append(outcome)


J = TypeVar("J")

#: Ctrl-C or SIGTERM: how long the deliveries in flight get for their answers before the run cuts
#: them short (a message that went out stays claimed, as a kill leaves it; the SMTP and HTTP
#: channels give one that surely did not ``failed_transient``); a second Ctrl-C cuts them short at once.
STOP_GRACE = 5.0
#: ... and in a worker of ``run --workers`` (or a shop of ``run-all``) whose parent was killed
#: (kill -9, the out-of-memory killer: its parent-death SIGTERM, :func:`cartrescue.processes.orphaned`):
#: nothing reads its output any more, and until it has ended its lock makes the next cron run
#: exit 4. The operator who killed a stuck run wants it stopped, not sending for 5 s more.
ORPHAN_GRACE = 0.5


class Stoppable(Protocol):
    def stop(self) -> None:
        """Claim nothing more, give up what waits (:func:`give_up_waiting`); what is in flight finishes."""


def stopped(claim_id: int) -> Outcome:
    """The outcome of a claimed message that a stopped run did not start: the next run sends it."""
    return Outcome(claim_id, Status.TRANSIENT, "not sent: the run was stopped before this message went out "
                   "(the next run sends it)")


def give_up_waiting(timers: list[tuple["asyncio.TimerHandle", Any]], ready: "deque[Any]",
                    finish: Callable[[Outcome], None]) -> None:
    """A stopped run (see :meth:`LoopChannel._stop`): the retries still waiting out their backoff
    and the jobs taken but not started get their outcome now (:func:`stopped`)."""
    for timer, job in timers:
        timer.cancel()
        if job.waiting:
            job.waiting = False
            finish(stopped(job.claim_id))
    timers.clear()
    while ready:
        finish(stopped(ready.popleft().claim_id))


def take_prepared(feed: Feed, size: int, prepare: Callable[[Envelope], J | Outcome],
                  ready: MutableSequence[J]) -> tuple[int, int]:
    """Take up to ``size`` envelopes (each is claimed now) and prepare them for the wire.

    An envelope that cannot be prepared gets its outcome at once; the others join ``ready``.
    Returns ``(taken, queued)``: ``taken == 0`` means the feed has no more work. Shared by the
    asyncio channels' work queues (SMTP, HTTP).
    """
    taken = feed.take(size)
    queued = 0
    for envelope in taken:
        prepared = prepare(envelope)
        if isinstance(prepared, Outcome):
            feed.done(prepared)
        else:
            ready.append(prepared)
            queued += 1
    return len(taken), queued


class Channel(ABC):
    """Delivers envelopes. Sync interface; an async channel runs its own loop inside."""

    #: Transport name recorded in the ledger ("outbox", "smtp", "call-list").
    transport: str = "channel"
    #: How many envelopes :meth:`run` takes at a time (each is claimed when taken).
    take_size: int = 1
    #: The e-mail it sends may have ``8bit`` bodies (``mime.build_message(eight_bit=True)``):
    #: the SMTP channel, which builds a message again for a relay without 8BITMIME. Files keep
    #: 7-bit bodies.
    eight_bit: bool = False
    #: :meth:`deliver` delivers the whole batch in one write (the call list's rows): its outcomes
    #: are reported together, a stop waiting for the last. Reported one at a time, a stop during
    #: the write was raised after the first, and the rows after it, written, were recorded
    #: :func:`stopped`: the next run wrote them again.
    whole_batch: bool = False

    def run(self, feed: Feed) -> None:
        """Deliver everything ``feed`` has, reporting each outcome to it as it happens.

        A stop (Ctrl-C, SIGTERM) waits while envelopes are taken and while one is delivered and
        its outcome reported (:func:`cartrescue.stops.held`); the envelopes taken and not yet
        started then get :func:`stopped`, for the next run. Left to land anywhere, it stranded
        up to ``take_size`` claims without a file, never to be written (at most once).
        """
        while True:
            batch: Sequence[Envelope] = ()
            finished: set[int] = set()
            try:
                with held():
                    batch = feed.take(self.take_size)
                if not batch:
                    return
                outcomes = self.deliver(batch)
                with held() if self.whole_batch else nullcontext():
                    while True:
                        with held():
                            outcome = next(outcomes, None)
                            if outcome is None:
                                break
                            feed.done(outcome)
                            finished.add(outcome.claim_id)
            except KeyboardInterrupt:
                with held():
                    for envelope in batch:
                        if envelope.claim_id not in finished:
                            feed.done(stopped(envelope.claim_id))
                raise

    @abstractmethod
    def deliver(self, batch: Sequence[Envelope]) -> Iterator[Outcome]:
        """Deliver ``batch``; yield one outcome per envelope, in any order, as they happen."""

    def hour_room(self) -> "HourRoom | None":
        """What its hourly quota (``rate_per_hour``) has left now; None: it has none. The
        executor defers the sends past it before their claim (``hourly_quota``)."""
        return None

    def close(self) -> None:  # noqa: B027 - optional hook
        """Flush files, close connections."""

    def __enter__(self) -> "Channel":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def new_event_loop() -> "asyncio.AbstractEventLoop":
    """The event loop of an asyncio channel: uvloop's where it is installed (a dependency on
    Linux and macOS; about 5 % more messages a second in B1 and B8, the loop being a good part
    of each message's CPU), else asyncio's own. ``CARTRESCUE_EVENT_LOOP=asyncio`` picks
    asyncio's loop anyway (to tell a loop problem from any other)."""
    import asyncio
    import os

    if os.environ.get("CARTRESCUE_EVENT_LOOP", "").strip().lower() != "asyncio":
        try:
            import uvloop
        except ImportError:
            pass
        else:
            return uvloop.new_event_loop()
    return asyncio.new_event_loop()


class LoopChannel(Channel):
    """A channel whose deliveries are asyncio (SMTP, HTTP): the interface stays synchronous, and
    one private event loop serves the whole run, each feed run to completion on it. Subclasses
    give :meth:`_run` (deliver everything the feed has) and :meth:`_shutdown` (close connections)."""

    _loop: "asyncio.AbstractEventLoop | None" = None
    #: The running batch's work queue (``_run`` sets it while it runs): what a stop winds down.
    _work: "Stoppable | None" = None
    #: A stop came to a process whose parent died (see :data:`ORPHAN_GRACE`): end without lingering.
    _hurried = False

    def run(self, feed: Feed) -> None:
        if self._loop is None:
            self._loop = new_event_loop()
        loop = self._loop
        task = loop.create_task(self._run(feed))
        with stops_in_loop(loop, task, self._stop, self._cutting) as stopped:
            try:
                loop.run_until_complete(task)
            except BaseException:
                if not stopped:
                    raise
        if stopped:
            raise KeyboardInterrupt  # as cli.main's handlers raise it outside the loop

    def deliver(self, batch: Sequence[Envelope]) -> Iterator[Outcome]:
        if not batch:
            return
        feed = ListFeed(batch)
        self.run(feed)
        yield from feed.outcomes

    async def _run(self, feed: Feed) -> None:
        raise NotImplementedError

    async def _shutdown(self) -> None:
        """Close what the run kept open (QUIT the relay, close the HTTP clients)."""

    def _stop(self) -> float:
        """Ctrl-C or SIGTERM came: the running batch starts nothing more, and what it has in
        flight gets :data:`STOP_GRACE` seconds to finish (their answers decide their rows, as in
        any run), :data:`ORPHAN_GRACE` when the parent of this worker died; 0 (cut short now)
        when no batch runs."""
        from cartrescue.processes import orphaned

        self._hurried = orphaned()
        work = self._work
        if work is None:
            return 0.0
        work.stop()
        return ORPHAN_GRACE if self._hurried else STOP_GRACE

    def _cutting(self) -> None:
        """A stop is about to cancel the running batch: note what only the moment before shows
        (an HTTP request whose connection was still opening sent nothing)."""

    def close(self) -> None:
        import asyncio

        from cartrescue.processes import orphaned

        loop, self._loop = self._loop, None
        if loop is None:
            return
        self._hurried = self._hurried or orphaned()  # also after a stop outside the loop (no _stop)
        try:
            leftover = asyncio.all_tasks(loop)  # only after an interrupted batch (KeyboardInterrupt)
            for task in leftover:
                task.cancel()
            if leftover:
                loop.run_until_complete(asyncio.gather(*leftover, return_exceptions=True))
            loop.run_until_complete(self._shutdown())
            loop.run_until_complete(loop.shutdown_asyncgens())
        finally:
            loop.close()
