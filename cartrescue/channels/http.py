"""Delivery over HTTP: the request loop the webhook and SMS channels share.

Owns what SMTP's channel owns for a relay, for an HTTP endpoint: ``concurrency`` workers on one
private event loop, each taking one envelope from the feed when it comes free (so each is claimed
only as it goes out, and a killed run strands at most the requests in flight), each with its own
``httpx.AsyncClient`` of one keep-alive connection that serves it for the whole run (a shared
pool of N connections costs a third more CPU per request: it scans its connections each time), the rate limits, in-run
retries with exponential backoff (a ``Retry-After`` header wins), and the breaker: when the
endpoint is unreachable, or refuses the shop's credentials, the rest of the run's messages are
left ``failed_transient`` without attempts and each later batch probes once.

Subclasses say how an envelope becomes a request (:meth:`HttpChannel.prepare`,
:meth:`HttpChannel.request`) and what an answer means (:meth:`HttpChannel.judge`). Common rules:

- A request that surely did not reach the endpoint (connection refused, connect timeout, an
  unfinished upload) is retried. One that may have reached it but got no answer (read timeout,
  connection closed before the status line) is retried only by an ``idempotent`` channel (the
  webhook: its receiver drops a repeated idempotency key); otherwise it is ``unconfirmed`` and
  never resent, as for SMTP: a text message twice is worse than none.
- Each attempt, connection, upload and answer, has the channel's ``timeout`` in all (httpx's own
  bounds each read only): one past it is cut short and judged as above, by whether any of it had
  left when the deadline came.
- Redirects are followed only with 307/308 to the same scheme, host and port (at most three); a
  redirect elsewhere is not followed: that endpoint is down for the run (fix the URL). A 303 See
  Other, or a 302 Found to the same host (post/redirect/get), says the request was taken:
  ``unconfirmed`` where the channel never resends.
- Replies kept in the ledger are one line, at most 300 characters, with every secret the
  channel knows replaced by ``***``.

It must not decide who gets a message nor touch the ledger (the feed claims and records).
"""

from __future__ import annotations

import asyncio
import collections
import random
import ssl
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urljoin, urlsplit

from cartrescue.channels.base import (
    Envelope,
    Feed,
    LoopChannel,
    Outcome,
    Status,
    give_up_waiting,
    stopped,
    take_prepared,
)
from cartrescue.ratelimit import HourRoom, RateLimiter, quota_named, quota_reached
from cartrescue.text import ascii_digits

if TYPE_CHECKING:
    import httpx

    from cartrescue.config import Config, HttpDelivery

MAX_ANSWER = 64 * 1024  # bytes of an answer read; the rest is not needed to judge it
MAX_REDIRECTS = 3
#: The end of an ``unconfirmed`` reply: why a message that may be out is not sent again.
_NOT_RESENT = "it may have been delivered, so it is not resent (at most once)"
GATHER = 0.005  # at most this long the first free worker waits for half the workers to be free


@dataclass(frozen=True, slots=True)
class HttpSettings:
    """The delivery settings of one HTTP channel, resolved to seconds."""

    key: str  # the config section ("webhook", "sms"): named in replies and errors
    concurrency: int = 8
    rate_per_second: float | None = None
    rate_per_hour: int | None = None
    rate_per_hour_whole: int | None = None  # the config's, where rate_per_hour is a shard's share
    retries: int = 3
    backoff: float = 1.0
    backoff_max: float = 30.0
    timeout: float = 10.0

    @classmethod
    def from_config(cls, key: str, section: "HttpDelivery", whole_per_hour: int | None = None) -> "HttpSettings":
        return cls(key=key, concurrency=section.concurrency, rate_per_second=section.rate_per_second,
                   rate_per_hour=section.rate_per_hour, rate_per_hour_whole=whole_per_hour, retries=section.retries,
                   backoff=section.backoff.total_seconds(), backoff_max=section.backoff_max.total_seconds(),
                   timeout=section.timeout.total_seconds())


@dataclass(slots=True)
class Job:
    """One claimed message on its way: what the subclass prepared, and how its attempts went."""

    claim_id: int
    payload: Any
    url: str
    attempts: int = 0
    redirects: int = 0
    waiting: bool = False  # a retry is scheduled (backoff running)
    sending: bool = False  # this attempt's request went to the transport (it may have left)
    overdue: bool = False  # this attempt's answer did not come within the timeout: it is cut short
    sent_nothing: bool = False  # when it was cut short (its deadline, a stop), no byte had left


@dataclass(frozen=True, slots=True)
class Retry:
    """Try again after ``after`` seconds (``None``: the backoff), if attempts remain."""

    reply: str
    after: float | None = None


@dataclass(frozen=True, slots=True)
class Down:
    """The endpoint cannot take anything now (credentials refused, a redirect elsewhere): this
    message and the rest of the run are left ``failed_transient``."""

    reply: str


Verdict = Outcome | Retry | Down


@dataclass(slots=True)
class Stats:
    requests: int = 0
    retries: int = 0
    sent: int = 0


@dataclass(slots=True)
class _Work:
    """The jobs of one :meth:`HttpChannel.run`, taken from the feed as workers come free, plus
    retries waiting for their turn."""

    channel: "HttpChannel"
    feed: Feed
    ready: collections.deque[Job] = field(default_factory=collections.deque)
    outstanding: int = 0
    idle: int = 0  # workers waiting in next()
    gathering: "asyncio.Future[None] | None" = None  # set while a worker gathers the free ones
    target: int = 1  # free workers worth one claim: half of them
    enough: asyncio.Event = field(default_factory=asyncio.Event)
    exhausted: bool = False
    stopping: bool = False  # Ctrl-C or SIGTERM: what is in flight finishes, nothing else starts
    timers: list[tuple[asyncio.TimerHandle, Job]] = field(default_factory=list)
    wake: asyncio.Event = field(default_factory=asyncio.Event)

    async def next(self) -> Job | None:
        """The next job for a free worker; ``None`` when everything is done.

        Envelopes are taken (claimed) only for workers that are free. The first worker to find
        nothing ready waits until half the workers are free (at most ``GATHER`` seconds), then
        takes one envelope for each free worker in one claim: a kill still strands at most
        ``concurrency`` claims, at a fraction of the ledger transactions of one claim per
        request (a claim of one costs about four times the ledger's CPU per message of a claim
        of eight).
        """
        self.idle += 1
        if self.idle >= self.target:
            self.enough.set()
        try:
            while True:
                if self.stopping:
                    while self.ready:  # claimed, none of it sent: for the next run
                        self.finish(stopped(self.ready.popleft().claim_id))
                elif self.ready:
                    return self.ready.popleft()
                if not self.exhausted:
                    if self.channel.down is None:
                        if self.gathering is not None:  # another worker takes for us all
                            await self.gathering
                            continue
                        self.gathering = asyncio.get_running_loop().create_future()
                        try:
                            if self.idle < self.target:
                                self.enough.clear()
                                try:
                                    await asyncio.wait_for(self.enough.wait(), GATHER)
                                except asyncio.TimeoutError:
                                    pass
                            self._take(self.idle)
                        finally:
                            gathering, self.gathering = self.gathering, None
                            gathering.set_result(None)
                    else:  # endpoint down: the rest only gets its outcome, in bulk
                        self._take(64)
                    continue
                if self.outstanding == 0:
                    self.wake.set()
                    return None
                self.wake.clear()
                await self.wake.wait()
        finally:
            self.idle -= 1

    def _take(self, size: int) -> None:
        if self.stopping:  # stopped while this worker gathered the free ones
            return
        taken, queued = take_prepared(self.feed, size, self.channel.prepare, self.ready)
        self.outstanding += queued
        if not taken:
            self.exhausted = True
        self.wake.set()

    def stop(self) -> None:
        """Ctrl-C or SIGTERM: claim nothing more, give up the retries still waiting and the jobs
        not started (``failed_transient``: the next run sends them); what is in flight finishes."""
        self.stopping = self.exhausted = True
        give_up_waiting(self.timers, self.ready, self.finish)
        self.enough.set()
        self.wake.set()

    def requeue(self, job: Job) -> None:
        if job.waiting:
            job.waiting = False
            self.ready.append(job)
            self.wake.set()

    def requeue_all(self) -> None:
        for timer, job in self.timers:
            timer.cancel()
            self.requeue(job)
        self.timers.clear()

    def finish(self, outcome: Outcome) -> None:
        self.outstanding -= 1
        self.feed.done(outcome)
        if self.outstanding == 0:
            self.wake.set()


class HttpChannel(LoopChannel):
    """The shared loop; see the module docstring. Subclasses set ``transport`` and ``idempotent``."""

    idempotent = False  # may a request that got no answer be sent again?

    def __init__(self, settings: HttpSettings, *, secrets: Iterable[str] = (), recent: Iterable[datetime] = (),
                 tls: ssl.SSLContext | None = None) -> None:
        self.settings = settings
        self.secrets = sorted({s for s in secrets if s and len(s) >= 3}, key=len, reverse=True)
        now = datetime.now(timezone.utc)
        self.limiter = RateLimiter(settings.rate_per_second, settings.rate_per_hour,
                                   history=[(now - at).total_seconds() for at in recent])
        self.stats = Stats()
        self.down: str | None = None
        self._connect_failures = 0
        self._clients: dict[int, Connection] = {}  # worker -> its connection
        self._in_hand: dict[int, Job] = {}  # worker -> the job it works on (what a stop cuts short)
        self._tls = tls  # None: certifi's CAs, loaded when the first connection needs them

    def hour_room(self) -> HourRoom | None:
        settings = self.settings
        return self.limiter.hour_room(quota_named(settings.key, settings.rate_per_hour, settings.rate_per_hour_whole))

    # -- what subclasses provide ---------------------------------------------------------------

    def prepare(self, envelope: Envelope) -> Job | Outcome:
        """The job for a claimed envelope, or its outcome when it cannot be sent at all."""
        raise NotImplementedError

    def request(self, job: Job) -> tuple[str, dict[str, str], bytes]:
        """``(method, headers, body)`` of one attempt (a signature may carry the attempt's time)."""
        raise NotImplementedError

    def judge(self, job: Job, status: int, headers: "httpx.Headers", body: bytes) -> Verdict:
        """What an answer means: :func:`judge_status` covers the common cases."""
        return judge_status(job.claim_id, status, headers, self.describe(status, body))

    # -- the loop ------------------------------------------------------------------------------

    async def _shutdown(self) -> None:
        clients, self._clients = list(self._clients.values()), {}
        for client in clients:
            await client.aclose()

    def client(self, worker: int = 0) -> Connection:
        """The connection of one worker, kept alive for the run."""
        client = self._clients.get(worker)
        if client is None:
            if self._tls is None:  # one TLS context for all the workers (loading the CAs takes ~20 ms)
                self._tls = tls_context()
            client = self._clients[worker] = Connection(self._tls, self.settings.timeout)
        return client

    async def _run(self, feed: Feed) -> None:
        work = self._work = _Work(self, feed, target=max(1, self.settings.concurrency // 2))
        try:
            if self.down is not None:  # a later batch: one probe decides whether it tries at all
                job = await work.next()
                if job is None:
                    return
                previous, self.down, self._connect_failures = self.down, None, 0
                job.sending = False
                self._in_hand[0] = job
                answered = await self._attempt(job, work)
                del self._in_hand[0]
                if not answered and self.down is None:
                    self.down = previous
                    work.requeue_all()
            await asyncio.gather(*(self._worker(work, n) for n in range(self.settings.concurrency)))
        except asyncio.CancelledError:  # a stop's grace ran out: see stops.stops_in_loop
            self._cut_short(work)
            raise
        finally:
            self._work = None
            for timer, _job in work.timers:
                timer.cancel()

    async def _worker(self, work: _Work, number: int) -> None:
        while (job := await work.next()) is not None:
            job.sending = False
            self._in_hand[number] = job  # not in a finally: a stop that cuts the work short reads it
            await self._work_on(job, work, number)
            del self._in_hand[number]

    async def _work_on(self, job: Job, work: _Work, number: int) -> None:
        if self.down is not None:
            work.finish(Outcome(job.claim_id, Status.TRANSIENT,
                                f"not attempted, {self.settings.key} endpoint unavailable: {self.down}"))
            return
        if not await self.limiter.acquire():
            settings = self.settings
            work.finish(Outcome(job.claim_id, Status.TRANSIENT,
                                quota_reached(settings.key, settings.rate_per_hour, settings.rate_per_hour_whole)))
            return
        if work.stopping:  # stopped while it waited for its turn under rate_per_second
            work.finish(stopped(job.claim_id))
            return
        await self._attempt(job, work, number)

    def _cutting(self) -> None:
        """The stop's grace ran out (or a second Ctrl-C came): which requests in hand had sent
        nothing, seen before the cancellation reaches them (:meth:`_cut_short` acts on it)."""
        for number, job in self._in_hand.items():
            job.sent_nothing = self._nothing_left(number, job)

    def _nothing_left(self, worker: int, job: Job) -> bool:
        """Has no byte of ``job``'s request left yet (its connection still being opened, TCP or
        TLS)? Asked as the request is cut short, before the cancellation reaches httpcore: once
        it has, the pool has dropped the connection, and a request that went out looked as if it
        had not (the next run sent the text again)."""
        client = self._clients.get(worker)
        return not job.sending or client is None or client.opening()

    def _cut_short(self, work: _Work) -> None:
        """The stop's grace ran out (or a second Ctrl-C came) with requests still waiting. One
        whose connection was still being opened (TCP, TLS), or that waited for its turn, sent no
        byte: ``failed_transient``, and the next run sends it. Left claimed, as before, the next
        runs counted it as one that may have arrived and never sent it. A request that went out
        (or one :meth:`_cutting` did not see) keeps its claim without an outcome, as a kill leaves
        it (it may have arrived)."""
        for job in self._in_hand.values():
            if not job.waiting and job.sent_nothing:
                work.finish(stopped(job.claim_id))
        self._in_hand.clear()
        give_up_waiting(work.timers, work.ready, work.finish)

    async def _attempt(self, job: Job, work: _Work, worker: int = 0) -> bool:
        """One request; ``True`` when the endpoint answered it (whatever it said)."""
        import httpx

        job.attempts += 1
        self.stats.requests += 1
        method, headers, body = self.request(job)
        answered = False
        client = self.client(worker)
        job.overdue = job.sent_nothing = False
        task = asyncio.current_task()
        # httpx's timeout bounds each read, not the answer: a receiver that trickled its answer a
        # byte at a time held the worker (and the run) for as long as it liked.
        deadline = asyncio.get_running_loop().call_later(self.settings.timeout, self._expire, job, worker, task)
        job.sending = True
        try:
            try:
                response = await client.send(method, job.url, headers, body)
                answered = True
                try:
                    answer = await _read(response)
                finally:
                    await response.aclose()
            finally:
                deadline.cancel()
        except asyncio.CancelledError:
            if not job.overdue or task is None or task.uncancel() > 0:  # a stop's, not (only) the deadline's
                raise
            timeout = f"no complete answer within {self.settings.key}.timeout ({self.settings.timeout:g} s)"
            if job.sent_nothing:
                self._not_delivered(job, work, timeout)
            else:
                self._lost(job, work, answered, timeout)
            return False
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout, httpx.WriteError,
                httpx.WriteTimeout, httpx.UnsupportedProtocol, httpx.ProxyError) as exc:
            self._not_delivered(job, work, self.clean(_error(exc)))
            return False
        except httpx.TransportError as exc:  # sent, and then no (complete) answer
            self._lost(job, work, answered, self.clean(_error(exc)))
            return False
        self._connect_failures = 0
        status = response.status_code
        if 300 <= status < 400 and status != 304:
            self._redirect(job, work, status, response.headers.get("location", ""))
            return True
        verdict = self.judge(job, status, response.headers, answer)
        if isinstance(verdict, Outcome):
            if verdict.status is Status.SENT:
                self.stats.sent += 1
            work.finish(verdict)
        elif isinstance(verdict, Down):
            self.down = self.clean(verdict.reply)
            work.finish(Outcome(job.claim_id, Status.TRANSIENT, self.down))
            work.requeue_all()  # the others learn it at once instead of after their backoff
        else:
            self._retry(job, work, verdict)
        return True

    def _expire(self, job: Job, worker: int, task: "asyncio.Task[Any] | None") -> None:
        """``job``'s attempt ran past the timeout: cut it short, noting first whether any of it
        had left (the cancellation makes httpcore drop the connection, and with it that sign)."""
        job.overdue = True
        job.sent_nothing = self._nothing_left(worker, job)
        if task is not None:
            task.cancel()

    def _not_delivered(self, job: Job, work: _Work, error: str) -> None:
        """Nothing of the request reached the endpoint: safe to send again."""
        self._connect_failures += 1
        if self._connect_failures >= self.settings.concurrency + self.settings.retries + 1:
            self.down = error
        self._retry(job, work, Retry(f"not delivered: {error}"))

    def _lost(self, job: Job, work: _Work, answered: bool, error: str) -> None:
        """The request went out and no (complete) answer came: sent again only by an idempotent
        channel, else ``unconfirmed`` (it may have been delivered)."""
        self._connect_failures = 0
        came = "its answer broke off" if answered else "no answer came back"
        reply = f"the request went out but {came}: {error}"
        if self.idempotent:
            self._retry(job, work, Retry(reply))
        else:
            work.finish(Outcome(job.claim_id, Status.UNCONFIRMED, f"{reply}: {_NOT_RESENT}"))

    def _redirect(self, job: Job, work: _Work, status: int, location: str) -> None:
        target = urljoin(job.url, location)
        here, there = urlsplit(job.url), urlsplit(target)
        same = (here.scheme, here.hostname, here.port) == (there.scheme, there.hostname, there.port)
        if status in (307, 308) and same and location and job.redirects < MAX_REDIRECTS:
            job.redirects += 1
            job.url = target
            job.attempts -= 1
            work.ready.append(job)
            work.wake.set()
            return
        where = f"{there.scheme}://{there.hostname}" if there.hostname else "(no Location)"
        self.down = (f"{status} redirect to {where} not followed (only 307/308 to the same host are): "
                     f"check {self.settings.key}'s URL")
        if (status == 303 or (status == 302 and same)) and not self.idempotent:
            # See Other: the endpoint took the POST and points at its result (RFC 9110 15.4.4), so
            # the text may be out; a 302 to a page of its own host is how web forms say the same
            # (post/redirect/get). Left failed_transient, each later run sent it once more.
            said = "303 See Other" if status == 303 else "302 Found on the same host"
            work.finish(Outcome(job.claim_id, Status.UNCONFIRMED, f"{self.down}; {said} says the request was "
                                f"taken: {_NOT_RESENT}"))
        else:
            work.finish(Outcome(job.claim_id, Status.TRANSIENT, self.down))
        work.requeue_all()

    def _retry(self, job: Job, work: _Work, retry: Retry) -> None:
        settings = self.settings
        if self.down is not None or job.attempts > settings.retries or work.stopping:
            tries = f" (after {job.attempts} attempts)" if job.attempts > 1 else ""
            work.finish(Outcome(job.claim_id, Status.TRANSIENT, f"{retry.reply}{tries}"))
            if self.down is not None:
                work.requeue_all()
            return
        self.stats.retries += 1
        delay = retry.after if retry.after is not None else \
            min(settings.backoff * 2 ** (job.attempts - 1), settings.backoff_max) * random.uniform(0.9, 1.1)
        job.waiting = True
        work.timers.append((asyncio.get_running_loop().call_later(delay, work.requeue, job), job))

    # -- replies -------------------------------------------------------------------------------

    def clean(self, text: str) -> str:
        """One line of at most 300 characters, with no secret of this channel in it."""
        for secret in self.secrets:
            text = text.replace(secret, "***")
        return " ".join(text.split())[:300]

    def describe(self, status: int, body: bytes) -> str:
        """``"503 Service Unavailable: <start of the body>"``, cleaned."""
        from http import HTTPStatus

        try:
            phrase = HTTPStatus(status).phrase
        except ValueError:
            phrase = ""
        text = body[:400].decode("utf-8", "replace")
        return self.clean(f"{status} {phrase}" + (f": {text}" if text.strip() else ""))


def judge_status(claim_id: int, status: int, headers: "httpx.Headers", reply: str) -> Verdict:
    """2xx sent; 408, 429 (after its ``Retry-After``) and 5xx retried; 401/403 the endpoint
    refusing the shop (down for the run); any other 4xx permanent."""
    if 200 <= status < 300:
        return Outcome(claim_id, Status.SENT, reply)
    if status in (408, 429) or 500 <= status < 600:
        return Retry(reply, retry_after(headers.get("retry-after")))
    if status in (401, 403):
        return Down(f"credentials refused: {reply}")
    return Outcome(claim_id, Status.PERMANENT, reply)


def tls_context(ca_file: Path | None = None) -> ssl.SSLContext:
    """The CAs httpx trusts (certifi's), or only those of ``ca_file`` (a private receiver's)."""
    if ca_file is not None:
        return ssl.create_default_context(cafile=str(ca_file))
    import certifi

    return ssl.create_default_context(cafile=certifi.where())


def trusted(config: "Config", key: str) -> ssl.SSLContext | None:
    """The TLS context of channel ``key`` (``webhook``, ``sms``) when its section names a
    ``ca_file``; None for certifi's CAs. Loaded as the channel is built, before the run takes its
    lock or claims anything: a file that does not load is a config error naming the file and the
    key, not a failure of every message of the run."""
    section: HttpDelivery = getattr(config, key)
    if section.ca_file is None:
        return None
    path = config.path(section.ca_file)
    try:
        return tls_context(path)
    except (OSError, ssl.SSLError) as exc:
        raise config.refusal(key + ".ca_file", f"cannot load {path}: {exc}") from None


def retry_after(value: str | None, cap: float = 300.0) -> float | None:
    """Seconds from a ``Retry-After`` header (delta-seconds or an HTTP date), at most ``cap``."""
    if not value:
        return None
    value = value.strip()
    if ascii_digits(value):  # "²" is a digit to isdigit(), and float() refuses it
        return min(float(value), cap)
    from email.utils import parsedate_to_datetime

    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return max(0.0, min((when - datetime.now(timezone.utc)).total_seconds(), cap))


async def _read(response: "httpx.Response") -> bytes:
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.aiter_raw():
        chunks.append(chunk)
        size += len(chunk)
        if size >= MAX_ANSWER:
            break
    return b"".join(chunks)[:MAX_ANSWER]


def _with_auth(url: "httpx.URL") -> tuple["httpx.URL", dict[str, str]]:
    """``url`` and the ``Authorization`` its user info asks for (``https://user:pass@host/hook``,
    as n8n's or Node-RED's basic auth has it), which httpx's client sends and its transport, all
    this channel uses, does not: the receiver answered 401 to every message. A header the
    channel sets itself (an SMS provider's credentials) wins."""
    if not url.userinfo:
        return url, {}
    import base64

    pair = f"{url.username}:{url.password}".encode()
    return url.copy_with(username=None, password=None), {"Authorization": "Basic " + base64.b64encode(pair).decode("ascii")}


def url_password(url: str | None) -> str:
    """The password in ``url``'s user info (sent as basic auth), kept out of every reply like
    the channel's other secrets."""
    from urllib.parse import unquote

    try:
        return unquote(urlsplit(url or "").password or "")
    except ValueError:
        return ""


def _error(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _version() -> str:
    from cartrescue import __version__

    return __version__


class Connection:
    """One worker's kept-alive HTTP/1.1 connection, through httpx's transport layer.

    The channel needs none of what ``httpx.AsyncClient`` adds on top of its transport: it follows
    no redirect itself (``_redirect`` decides), keeps no cookies (an endpoint's ``Set-Cookie``
    must never ride along with the next customer's request; a webhook or an SMS API
    authenticates each request by signature or key), uses no proxy from the environment and no
    auth flow. Those layers cost about a fifth of each request's CPU at the webhook benchmark's
    rate, so requests go straight to ``AsyncHTTPTransport.handle_async_request``, httpx's public
    transport API, with the timeouts every request of a client would carry.
    """

    def __init__(self, tls: ssl.SSLContext, timeout: float) -> None:
        import httpx

        self._request = httpx.Request
        self._url = httpx.URL
        # Parsed once (httpx parses a URL string in ~7 µs), with the basic auth its user info asks for.
        self._urls: dict[str, tuple[httpx.URL, dict[str, str]]] = {}
        self._transport = httpx.AsyncHTTPTransport(
            verify=tls, trust_env=False, retries=0,
            limits=httpx.Limits(max_connections=1, max_keepalive_connections=1))
        self._extensions = {"timeout": httpx.Timeout(timeout).as_dict()}
        self._agent = f"cartrescue/{_version()}"

    async def send(self, method: str, url: str, headers: dict[str, str], body: bytes) -> "httpx.Response":
        """The answer's head; its body is read with ``aiter_raw`` and the answer closed after."""
        known = self._urls.get(url)
        if known is None:
            known = self._urls[url] = _with_auth(self._url(url))
        parsed, auth = known
        request = self._request(method, parsed, headers={"User-Agent": self._agent, **auth, **headers}, content=body,
                                extensions=self._extensions)
        return await self._transport.handle_async_request(request)

    def opening(self) -> bool:
        """Is the connection still being opened (TCP, TLS), or not there yet? Then a request
        waiting on it has sent nothing. httpcore's pool says so (``AsyncHTTPConnection.info``);
        reached through httpx's transport, whose ``_pool`` is not public API: where it is not
        found, False (the request may have left)."""
        try:
            connections = self._transport._pool.connections
            return all(connection.info() in ("CONNECTING", "CONNECTION FAILED") for connection in connections)
        except AttributeError:
            return False

    async def aclose(self) -> None:
        await self._transport.aclose()
