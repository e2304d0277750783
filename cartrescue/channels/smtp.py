"""SMTP channel: delivers messages over a pool of persistent aiosmtplib connections.

Owns the conversation with the relay: TLS (implicit or STARTTLS) and AUTH, a pool of
``smtp.pool_size`` connections opened on the first :meth:`SmtpChannel.deliver` and reused for the
whole run (RSET after a refused transaction, reconnect after a lost one), the rate limits, in-run
retries with exponential backoff, and the mapping of what the relay said to an outcome:

- 2xx after DATA -> ``sent`` with the reply. Nothing else is ever reported as sent: a connection
  lost before the final reply is a failure, even when the body had gone out.
- 4xx, connection, timeout and TLS errors -> retried in the run (``smtp.retries`` times, waits of
  ``backoff``, doubled each time, at most ``backoff_max``); then ``failed_transient``, which the
  next run claims again.
- 5xx to RCPT or to the message -> ``failed_permanent`` with the reply; a "no such user" reply
  (5.1.1 and the like) also asks the pipeline to suppress the address.
- 5xx to MAIL FROM (other than 552, too big) is about the shop's sender, not the customer:
  ``failed_transient`` at once, so fixing the config and re-running sends the message.
- The relay unreachable, or TLS/AUTH failing, for every connection: the rest of the batch is left
  ``failed_transient`` without more attempts, and each later batch probes once (no run of retries
  per message against a dead relay).

It must not decide who gets a message nor touch the ledger: the pipeline claims before and
records after (``Outcome.suppress`` carries the bounce). Messages arrive as
:class:`~cartrescue.model.OutgoingMessage` and go out as the bytes of
:func:`cartrescue.mime.build_message`; the email package is never used here. MAIL and RCPT are
sent with ``SMTP.execute_command`` and pre-encoded addresses rather than ``SMTP.sendmail``, which
parses both addresses with ``email.utils`` on every message (~50 µs, a fifth of the client's CPU
per message); the body still goes through ``SMTP.data`` (dot-stuffing, CRLF).

The channel's interface is synchronous: it keeps one private event loop for the whole run and
runs each batch to completion on it.
"""

from __future__ import annotations

import asyncio
import collections
import random
import re
import socket
import ssl
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

import aiosmtplib
from aiosmtplib import (
    SMTPAuthenticationError,
    SMTPException,
    SMTPNotSupported,
    SMTPResponseException,
)

from cartrescue.channels.base import Channel, Envelope, Feed, ListFeed, Outcome, Status
from cartrescue.errors import ConfigError
from cartrescue.mime import build_message, encode_address
from cartrescue.ratelimit import RateLimiter

if TYPE_CHECKING:
    from cartrescue.config import Config

NO_SUCH_USER = "bounced: no such user"  # the suppression reason of a 5.1.1 reply

_ENHANCED = re.compile(r"^\s*([245])\.(\d{1,3})\.(\d{1,3})\b")
_UNKNOWN_USER = re.compile(
    r"no such (user|mailbox|recipient|address)|user(name)? (unknown|not found|does ?n[o']t exist)"
    r"|unknown (user|recipient|mailbox|address)|(mailbox|recipient|address) (not found|unknown|does ?n[o']t exist)"
    r"|invalid (recipient|mailbox)",
    re.IGNORECASE,
)


def is_unknown_user(code: int, message: str) -> bool:
    """Does this reply say the mailbox does not exist (so mailing it again is pointless)?

    An enhanced status code decides when there is one (X.1.1 bad mailbox, X.1.10 null MX);
    otherwise the text of a 550/551/553 reply. Policy rejections (5.7.x) never qualify.
    """
    if not 500 <= code < 600:
        return False
    enhanced = _ENHANCED.match(message)
    if enhanced:
        return (enhanced.group(2), enhanced.group(3)) in {("1", "1"), ("1", "10")}
    return code in (550, 551, 553) and _UNKNOWN_USER.search(message) is not None


def _one_line(text: str) -> str:
    return " ".join(text.split())[:900]


@dataclass(frozen=True, slots=True)
class SmtpSettings:
    """What the channel needs from the config, resolved (ports, paths, seconds)."""

    host: str
    port: int
    security: str  # starttls | tls | none
    envelope_from: str
    username: str | None = None
    password: str | None = None
    ca_file: str | None = None
    verify: bool = True
    helo_name: str | None = None
    pool_size: int = 8
    rate_per_second: float | None = None
    rate_per_hour: int | None = None
    retries: int = 3
    backoff: float = 1.0
    backoff_max: float = 30.0
    timeout: float = 30.0  # connect (with TLS and AUTH), and each transaction

    @classmethod
    def from_config(cls, config: "Config") -> "SmtpSettings":
        smtp = config.smtp
        return cls(
            host=smtp.host, port=smtp.effective_port, security=smtp.security,
            envelope_from=smtp.envelope_from or config.shop.from_email,
            username=smtp.username or None, password=smtp.password or None,
            ca_file=str(config.path(smtp.ca_file)) if smtp.ca_file else None, verify=smtp.verify,
            helo_name=smtp.helo_name, pool_size=smtp.pool_size, rate_per_second=smtp.rate_per_second,
            rate_per_hour=smtp.rate_per_hour, retries=smtp.retries, backoff=smtp.backoff.total_seconds(),
            backoff_max=smtp.backoff_max.total_seconds(), timeout=smtp.timeout.total_seconds(),
        )

    def describe(self) -> str:
        return f"{self.host}:{self.port} ({self.security})"


def tls_context(settings: SmtpSettings) -> ssl.SSLContext:
    """The client TLS context: system CAs or ``ca_file``; no verification only if ``verify`` is off."""
    try:
        context = ssl.create_default_context(cafile=settings.ca_file)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"smtp.ca_file: cannot load {settings.ca_file}: {exc}") from None
    if not settings.verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


class ConnectFailure(Exception):
    """Opening a connection failed (refused, timeout, TLS, AUTH); ``fatal`` if retrying cannot help."""

    def __init__(self, reply: str, *, fatal: bool = False) -> None:
        super().__init__(reply)
        self.reply = reply
        self.fatal = fatal


async def open_connection(settings: SmtpSettings, context: ssl.SSLContext | None) -> aiosmtplib.SMTP:
    """Connect, EHLO, STARTTLS and AUTH as configured; raise :class:`ConnectFailure`."""
    where = settings.describe()
    try:
        smtp = aiosmtplib.SMTP(
            hostname=settings.host, port=settings.port, timeout=settings.timeout,
            local_hostname=settings.helo_name or socket.gethostname() or "localhost",
            use_tls=settings.security == "tls", start_tls=settings.security == "starttls",
            tls_context=context if settings.security != "none" else None,
            username=settings.username, password=settings.password,
        )
    except ValueError as exc:  # a helo_name aiosmtplib refuses, and the like
        raise ConnectFailure(f"{where}: {exc}", fatal=True) from None
    try:
        await smtp.connect()
        if smtp.is_ehlo_or_helo_needed:
            try:
                await smtp.ehlo()
            except SMTPResponseException:
                await smtp.helo()
    except SMTPAuthenticationError as exc:
        smtp.close()
        raise ConnectFailure(f"{where}: AUTH refused: {exc.code} {_one_line(exc.message)}", fatal=True) from None
    except ssl.SSLCertVerificationError as exc:
        smtp.close()
        raise ConnectFailure(f"{where}: TLS certificate not trusted: {exc.verify_message or exc}", fatal=True) from None
    except SMTPNotSupported as exc:  # STARTTLS not offered, no AUTH method in common
        smtp.close()
        raise ConnectFailure(f"{where}: {exc}", fatal=True) from None
    except SMTPResponseException as exc:  # 421 or 554 greeting, EHLO/HELO refused
        smtp.close()
        raise ConnectFailure(f"{where}: {exc.code} {_one_line(exc.message)}") from None
    except (SMTPException, OSError, ssl.SSLError, asyncio.TimeoutError) as exc:
        smtp.close()
        cause = exc.__cause__ if isinstance(exc, SMTPException) and exc.__cause__ else exc
        raise ConnectFailure(f"{where}: {type(cause).__name__}: {_one_line(str(cause)) or 'connection failed'}") from None
    return smtp


@dataclass(slots=True)
class _Job:
    claim_id: int
    rcpt: bytes
    data: bytes
    attempts: int = 0
    free_retry: bool = True  # one immediate retry when a reused connection turns out closed
    waiting: bool = False  # a retry is scheduled (backoff running)


@dataclass(slots=True)
class _Slot:
    """One pooled connection (``None`` until opened or after it was lost)."""

    smtp: aiosmtplib.SMTP | None = None
    used: int = 0  # transactions on the current connection
    size: bool = False  # the server takes MAIL FROM ... SIZE=


@dataclass(slots=True)
class Stats:
    connections: int = 0  # connections opened
    transactions: int = 0  # MAIL FROM sent
    retries: int = 0
    sent: int = 0


class _Work:
    """The jobs of one :meth:`SmtpChannel.run`: taken from the feed one at a time as connections
    come free (so each is claimed only when it can go out), plus retries waiting for their turn."""

    def __init__(self, channel: "SmtpChannel", feed: Feed, workers: int) -> None:
        self.channel = channel
        self.feed = feed
        self.workers = workers
        self.ready: collections.deque[_Job] = collections.deque()  # retries due, extra jobs taken
        self.outstanding = 0  # jobs taken and not finished (in flight or waiting for a retry)
        self.exhausted = False
        self.timers: list[tuple[asyncio.TimerHandle, _Job]] = []
        self.wake = asyncio.Event()

    async def next(self) -> _Job | None:
        """The next job for a free connection; ``None`` when everything is done."""
        while True:
            if self.ready:
                return self.ready.popleft()
            if not self.exhausted:
                # A dead relay or a spent hourly quota: the rest only gets its outcome, in bulk.
                size = 64 if self.channel._down is not None else 1
                taken = self.feed.take(size)
                for envelope in taken:
                    prepared = self.channel._prepare(envelope)
                    if isinstance(prepared, Outcome):
                        self.feed.done(prepared)
                    else:
                        self.outstanding += 1
                        self.ready.append(prepared)
                if taken:
                    continue
                self.exhausted = True
            if self.outstanding == 0:
                self.wake.set()  # let the other workers see it too
                return None
            self.wake.clear()
            await self.wake.wait()

    def requeue(self, job: _Job) -> None:
        """Put a job that was waiting for its retry back (at most once)."""
        if job.waiting:
            job.waiting = False
            self.ready.append(job)
            self.wake.set()

    def finish(self, outcome: Outcome) -> None:
        self.feed.done(outcome)
        self.outstanding -= 1
        self.wake.set()


class _Refused(Exception):
    def __init__(self, code: int, message: str, stage: str) -> None:
        super().__init__(f"{code} {message}")
        self.code = code
        self.message = message
        self.stage = stage


class SmtpChannel(Channel):
    """Delivers envelopes over SMTP; see the module docstring for the outcome rules."""

    transport = "smtp"

    def __init__(self, settings: SmtpSettings, *, recent_sends: Iterable[float] = ()) -> None:
        """``recent_sends``: ages in seconds of messages sent in the last hour by earlier runs."""
        self.settings = settings
        try:
            self.sender = encode_address(settings.envelope_from).encode("ascii")
        except ValueError as exc:
            raise ConfigError(f"smtp.envelope_from / shop.from_email: {exc}") from None
        self.context = tls_context(settings) if settings.security != "none" else None
        self.limiter = RateLimiter(settings.rate_per_second, settings.rate_per_hour, history=recent_sends)
        self.stats = Stats()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._slots = [_Slot() for _ in range(settings.pool_size)]
        self._connect_failures = 0  # consecutive, pool-wide
        self._down: str | None = None  # why the relay is considered unreachable (breaker open)

    @classmethod
    def from_config(cls, config: "Config", recent: Iterable[datetime] = ()) -> "SmtpChannel":
        """``recent``: when earlier runs sent messages (for the rolling hourly limit)."""
        now = datetime.now(timezone.utc)
        return cls(SmtpSettings.from_config(config), recent_sends=[(now - at).total_seconds() for at in recent])

    # -- the Channel interface ---------------------------------------------------------------

    def run(self, feed: Feed) -> None:
        if self._loop is None:
            self._loop = asyncio.new_event_loop()
        self._loop.run_until_complete(self._run(feed))

    def deliver(self, batch: Sequence[Envelope]) -> Iterator[Outcome]:
        if not batch:
            return
        feed = ListFeed(batch)
        self.run(feed)
        yield from feed.outcomes

    def close(self) -> None:
        loop, self._loop = self._loop, None
        if loop is None:
            return
        try:
            leftover = asyncio.all_tasks(loop)  # only after an interrupted batch (KeyboardInterrupt)
            for task in leftover:
                task.cancel()
            if leftover:
                loop.run_until_complete(asyncio.gather(*leftover, return_exceptions=True))
            loop.run_until_complete(self._quit_all())
            loop.run_until_complete(loop.shutdown_asyncgens())
        finally:
            loop.close()

    # -- one batch ---------------------------------------------------------------------------

    def _prepare(self, envelope: Envelope) -> _Job | Outcome:
        message = envelope.message
        if message is None:
            return Outcome(envelope.claim_id, Status.PERMANENT, "no message to send")
        try:
            rcpt = encode_address(message.to.email).encode("ascii")
            data = envelope.data if envelope.data is not None else build_message(message)
        except ValueError as exc:
            return Outcome(envelope.claim_id, Status.PERMANENT, f"cannot send: {exc}")
        return _Job(envelope.claim_id, rcpt, data)

    async def _run(self, feed: Feed) -> None:
        work = _Work(self, feed, len(self._slots))
        if self._down is not None and not await self._probe():
            while (job := await work.next()) is not None:
                work.finish(self._not_attempted(job))
            return
        try:
            await asyncio.gather(*(self._work(slot, work) for slot in self._slots))
        finally:
            for timer, _job in work.timers:
                timer.cancel()

    def _not_attempted(self, job: _Job) -> Outcome:
        return Outcome(job.claim_id, Status.TRANSIENT, f"not attempted, relay unavailable: {self._down}")

    async def _probe(self) -> bool:
        """The relay was down: one connection attempt decides whether this batch tries at all."""
        slot = self._slots[0]
        try:
            await self._connect(slot)
        except ConnectFailure:
            return False
        return True

    async def _work(self, slot: _Slot, batch: _Work) -> None:
        while (job := await batch.next()) is not None:
            if self._down is not None:
                batch.finish(self._not_attempted(job))
                continue
            if not await self.limiter.acquire():
                limit = self.settings.rate_per_hour
                batch.finish(Outcome(job.claim_id, Status.TRANSIENT,
                                     f"not attempted: smtp.rate_per_hour ({limit}) reached; left for the next run"))
                continue
            await self._attempt(slot, job, batch)

    async def _connect(self, slot: _Slot) -> aiosmtplib.SMTP:
        if slot.smtp is not None and slot.smtp.is_connected:
            return slot.smtp
        slot.smtp = None
        try:
            smtp = await open_connection(self.settings, self.context)
        except ConnectFailure as failure:
            self._connect_failures += 1
            if failure.fatal or self._connect_failures >= self.settings.pool_size + self.settings.retries + 1:
                self._down = failure.reply
            raise
        self._connect_failures = 0
        self._down = None
        self.stats.connections += 1
        smtp.timeout = None  # each transaction runs under one deadline instead (see _attempt)
        slot.smtp, slot.used, slot.size = smtp, 0, smtp.supports_extension("size")
        return smtp

    async def _attempt(self, slot: _Slot, job: _Job, batch: _Work) -> None:
        job.attempts += 1
        try:
            smtp = await self._connect(slot)
        except ConnectFailure as failure:
            self._retry_or_give_up(job, batch, failure.reply)
            if self._down is not None:  # no point waiting out the backoff of the others
                for timer, waiting in batch.timers:
                    timer.cancel()
                    batch.requeue(waiting)
                batch.timers.clear()
            return
        reused = slot.used > 0
        slot.used += 1
        stage = "MAIL"
        try:
            self.stats.transactions += 1
            size = b" SIZE=%d" % len(job.data) if slot.size else b""
            # One deadline per transaction, not one timer per command: a tenth less CPU per message.
            async with asyncio.timeout(self.settings.timeout):
                reply = await smtp.execute_command(b"MAIL FROM:<" + self.sender + b">" + size)
                if reply.code != 250:
                    raise _Refused(reply.code, reply.message, stage)
                stage = "RCPT"
                reply = await smtp.execute_command(b"RCPT TO:<" + job.rcpt + b">")
                if reply.code not in (250, 251):
                    raise _Refused(reply.code, reply.message, stage)
                stage = "DATA"
                try:
                    reply = await smtp.data(job.data)
                except SMTPResponseException as exc:
                    raise _Refused(exc.code, exc.message, stage) from None
        except _Refused as refused:
            await self._after_refusal(slot, refused.code)
            self._refused(job, batch, refused)
            return
        except (SMTPException, OSError, ssl.SSLError, asyncio.TimeoutError) as exc:
            self._drop(slot)
            cause = f"{type(exc).__name__}: {_one_line(str(exc))}" if str(exc) else type(exc).__name__
            if stage == "MAIL" and reused and job.free_retry:
                # The relay closed an idle connection: nothing of this message was sent.
                job.free_retry = False
                job.attempts -= 1
                batch.ready.append(job)
                return
            self._retry_or_give_up(job, batch, f"connection lost during {stage}: {cause}")
            return
        self.stats.sent += 1
        batch.finish(Outcome(job.claim_id, Status.SENT, f"{reply.code} {_one_line(reply.message)}"))

    def _refused(self, job: _Job, batch: _Work, refused: _Refused) -> None:
        code, text = refused.code, f"{refused.code} {_one_line(refused.message)}"
        if 400 <= code < 500:
            self._retry_or_give_up(job, batch, text)
        elif 500 <= code < 600 and refused.stage == "MAIL" and code != 552:
            batch.finish(Outcome(job.claim_id, Status.TRANSIENT, f"sender refused (check shop.from_email / "
                                 f"smtp.envelope_from and the relay's AUTH): {text}"))
        elif 500 <= code < 600:
            suppress = NO_SUCH_USER if is_unknown_user(code, refused.message) else ""
            batch.finish(Outcome(job.claim_id, Status.PERMANENT, text, suppress=suppress))
        else:  # a reply code SMTP does not allow here
            self._retry_or_give_up(job, batch, f"unexpected reply to {refused.stage}: {text}")

    def _retry_or_give_up(self, job: _Job, batch: _Work, reply: str) -> None:
        settings = self.settings
        if self._down is not None or job.attempts > settings.retries:
            tries = f" (after {job.attempts} attempts)" if job.attempts > 1 else ""
            batch.finish(Outcome(job.claim_id, Status.TRANSIENT, f"{reply}{tries}"))
            return
        self.stats.retries += 1
        delay = min(settings.backoff * 2 ** (job.attempts - 1), settings.backoff_max) * random.uniform(0.9, 1.1)
        loop = asyncio.get_running_loop()
        job.waiting = True
        batch.timers.append((loop.call_later(delay, batch.requeue, job), job))

    async def _after_refusal(self, slot: _Slot, code: int) -> None:
        """Leave the connection ready for the next transaction: RSET, or drop it."""
        smtp = slot.smtp
        if smtp is None or code == 421 or not smtp.is_connected:
            self._drop(slot)
            return
        try:
            async with asyncio.timeout(self.settings.timeout):
                reply = await smtp.execute_command(b"RSET")
        except (SMTPException, OSError, asyncio.TimeoutError):
            self._drop(slot)
            return
        if reply.code != 250:
            self._drop(slot)

    def _drop(self, slot: _Slot) -> None:
        if slot.smtp is not None:
            slot.smtp.close()
        slot.smtp = None

    async def _quit_all(self) -> None:
        async def quit(slot: _Slot) -> None:
            smtp, slot.smtp = slot.smtp, None
            if smtp is None or not smtp.is_connected:
                return
            try:
                await asyncio.wait_for(smtp.quit(), timeout=min(self.settings.timeout, 5.0))
            except (SMTPException, OSError, asyncio.TimeoutError, asyncio.CancelledError):
                smtp.close()

        await asyncio.gather(*(quit(slot) for slot in self._slots), return_exceptions=True)


async def check_connection(settings: SmtpSettings) -> dict[str, Any]:
    """Connect, TLS and AUTH as a run would, then QUIT without sending (for ``doctor``)."""
    context = tls_context(settings) if settings.security != "none" else None
    smtp = await open_connection(settings, context)
    try:
        info: dict[str, Any] = {"server": settings.describe(), "banner": ""}
        if smtp.last_ehlo_response is not None:
            info["banner"] = _one_line(smtp.last_ehlo_response.message.splitlines()[0])
        cipher = smtp.get_transport_info("cipher")
        info["tls"] = f"{cipher[1]} {cipher[0]}" if cipher else "none"
        info["auth"] = "yes" if settings.username else "no"
        info["extensions"] = sorted(smtp.esmtp_extensions)
        return info
    finally:
        try:
            await asyncio.wait_for(smtp.quit(), timeout=5)
        except (SMTPException, OSError, asyncio.TimeoutError):
            smtp.close()
