"""SMTP channel: delivers messages over a pool of persistent aiosmtplib connections.

Owns the conversation with the relay: TLS (implicit or STARTTLS) and AUTH, a pool of
``smtp.pool_size`` connections opened on the first :meth:`SmtpChannel.deliver` and reused for the
whole run (RSET after a refused transaction, reconnect after a lost one), the rate limits, in-run
retries with exponential backoff, and the mapping of what the relay said to an outcome:

- 2xx after the message -> ``sent`` with the reply. Nothing else is ever reported as sent.
- No reply after the whole message was written (``smtp.data_timeout`` passed, or the connection
  was lost after the final dot) -> ``unconfirmed``: the relay may have accepted it, so it is not
  retried, in this run or later ones, unless ``run --resend-unconfirmed`` (at most once, the same
  rule as for a killed run: docs/sending.md). A late 250 is never read: the connection is closed.
- 4xx, and connection, timeout and TLS errors before the message went out -> retried in the run
  (``smtp.retries`` times, waits of ``backoff``, doubled each time, at most ``backoff_max``);
  then ``failed_transient``, which the next run claims again.
- 421 to MAIL on a reused connection (the relay ends its sessions after a few messages) -> the
  message goes at once on a new connection, no attempt counted: the relay refused the session.
- 5xx to RCPT or to the message -> ``failed_permanent`` with the reply; a "no such user" reply
  (5.1.1 and the like) also asks the pipeline to suppress the address.
- A reply sent after the 354, before the message was written (Postfix's ``smtp-sink -A 0``), is
  the message's, as a reply to DATA (5xx refused, 4xx retried): the message is not written, and
  the connection is closed.
- 5xx to MAIL FROM (other than 552, too big) is about the shop's sender, not the customer:
  ``failed_transient`` at once, so fixing the config and re-running sends the message; so is a
  5xx to RCPT that refuses relaying ("Relay access denied": :func:`relay_refused`).
- An address that needs SMTPUTF8 (a non-ASCII local part) to a relay that does not offer it ->
  ``failed_transient`` at once, "relay does not offer SMTPUTF8"; with it, MAIL FROM carries
  ``SMTPUTF8`` (RFC 6531).
- The relay unreachable, or TLS/AUTH failing, for every connection: the rest of the batch is left
  ``failed_transient`` without more attempts, and each later batch probes once (no run of retries
  per message against a dead relay). A relay that connects and never answers (the pool's
  transactions time out ``pool_size + retries + 1`` times in a row) is down for the rest of the run.

Timeouts follow RFC 5321 4.5.3.2 per phase: ``smtp.timeout`` bounds connecting (with TLS and
AUTH) and the replies to MAIL, RCPT and DATA; ``smtp.data_timeout`` (10 minutes by default, the
RFC's figure) the reply to the final dot, which a relay may delay while it scans the message.

It must not decide who gets a message nor touch the ledger: the pipeline claims before and
records after (``Outcome.suppress`` carries the bounce). Messages arrive as
:class:`~cartrescue.model.OutgoingMessage`, are built once by :func:`cartrescue.compose.mime.build_message`
and dot-stuffed once by :func:`cartrescue.compose.mime.wire_body`; the email package is never used here,
nor aiosmtplib's ``sendmail`` (which parses both addresses with ``email.utils``) or ``data``
(which scans every body twice with regexes). When the relay offers PIPELINING (RFC 2920), MAIL,
RCPT and DATA go out in one write and their replies are read in order through aiosmtplib's own
protocol object (:mod:`cartrescue.channels.pipelining`); then the message, followed at once by the
next message's MAIL, RCPT and DATA (taken, so claimed, only after this message was written): one
wait for replies per message instead of four. Without PIPELINING (or with ``smtp.pipelining:
false``) each command waits for its reply (``SMTP.execute_command``).

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
from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

import aiosmtplib
from aiosmtplib import (
    SMTPAuthenticationError,
    SMTPConnectTimeoutError,
    SMTPException,
    SMTPNotSupported,
    SMTPResponse,
    SMTPResponseException,
    SMTPServerDisconnected,
    SMTPTimeoutError,
)

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
from cartrescue.channels.pipelining import PipeliningProtocol, early_reply, enable
from cartrescue.compose.mime import build_message, encode_address, wire_address, wire_body
from cartrescue.errors import ConfigError
from cartrescue.ratelimit import HourRoom, RateLimiter, quota_named, quota_reached
from cartrescue.suppressions import NO_SUCH_USER  # the suppression reason of a 5.1.1 reply

if TYPE_CHECKING:
    from cartrescue.config import Config
    from cartrescue.model import OutgoingMessage


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


def scrubbed(text: str, settings: SmtpSettings, limit: int = 900) -> str:
    """``text`` (a reply, an exception's words) safe to print or keep: one line, the AUTH password
    masked. A relay that repeats the credentials it refused (``535 … password hunter2``) had put
    the password in the output, ``--json`` and the ledger."""
    secret = settings.password
    if secret and len(secret) >= 3:
        text = text.replace(secret, "***")
    return " ".join(text.split())[:limit]


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
    rate_per_hour_whole: int | None = None  # the config's, where rate_per_hour is a shard's share
    retries: int = 3
    backoff: float = 1.0
    backoff_max: float = 30.0
    timeout: float = 30.0  # connect (with TLS and AUTH), and the replies to MAIL, RCPT and DATA
    data_timeout: float = 600.0  # the reply after the whole message (RFC 5321 4.5.3.2: 10 minutes)
    pipelining: bool = True  # MAIL, RCPT and DATA in one write when the relay offers PIPELINING

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
            data_timeout=smtp.data_timeout.total_seconds(), pipelining=smtp.pipelining,
        )

    def describe(self) -> str:
        return f"{self.host}:{self.port} ({self.security})"

    @property
    def ehlo_name(self) -> str:
        """``helo_name``; else this machine's name if it is a full one (``mail1.shop.example``);
        else the domain of the envelope sender, in its IDNA form. RFC 5321 wants a fully
        qualified name, and relays that check (Postfix ``reject_non_fqdn_helo_hostname``)
        refused a bare ``vm``. No DNS lookup: ``getfqdn`` can hang where no resolver answers."""
        if self.helo_name:
            return self.helo_name
        host = socket.gethostname()
        if "." in host.strip("."):
            return host
        from cartrescue.contacts import ascii_domain

        domain = self.envelope_from.rpartition("@")[2]
        return (ascii_domain(domain) if domain else None) or host or "localhost"


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
            local_hostname=settings.ehlo_name,
            use_tls=settings.security == "tls", start_tls=False,  # STARTTLS and AUTH below, each checked first
            tls_context=context if settings.security != "none" else None,
        )
    except ValueError as exc:  # a helo_name aiosmtplib refuses, and the like
        raise ConnectFailure(f"{where}: {exc}", fatal=True) from None
    try:
        await smtp.connect()
        await _greet(smtp)
        if settings.security == "starttls":
            _require(smtp, "starttls", settings)
            await smtp.starttls()
            await _greet(smtp)
        if settings.username:
            _require(smtp, "auth", settings)
            _require_password_login(smtp, settings)
            await smtp.login(settings.username, settings.password or "")
    except SMTPAuthenticationError as exc:
        smtp.close()
        raise ConnectFailure(f"{where}: AUTH refused: {exc.code} {scrubbed(exc.message, settings)}", fatal=True) from None
    except ssl.SSLCertVerificationError as exc:
        smtp.close()
        trust = (f"not signed by the CA of smtp.ca_file ({settings.ca_file})" if settings.ca_file else
                 "smtp.ca_file: the PEM file of a private relay's CA")
        raise ConnectFailure(f"{where}: TLS certificate not trusted: {exc.verify_message or exc} "
                             f"({trust}; smtp.verify: false for a test relay only)", fatal=True) from None
    except SMTPNotSupported as exc:  # STARTTLS not offered, no AUTH method in common
        smtp.close()
        raise ConnectFailure(f"{where}: {exc}", fatal=True) from None
    except SMTPResponseException as exc:  # 421 or 554 greeting, EHLO/HELO refused
        smtp.close()
        raise ConnectFailure(f"{where}: {exc.code} {scrubbed(exc.message, settings)}") from None
    except (SMTPTimeoutError, asyncio.TimeoutError) as exc:
        smtp.close()
        raise ConnectFailure(f"{where}: {_connect_silence(exc, settings)}") from None
    except (SMTPException, OSError, ssl.SSLError) as exc:
        smtp.close()
        cause = exc.__cause__ if isinstance(exc, SMTPException) and exc.__cause__ else exc
        if settings.security == "tls" and _plain_text_answer(cause):
            raise ConnectFailure(f"{where}: {_PLAIN_TEXT_PORT}", fatal=True) from None
        raise ConnectFailure(f"{where}: {type(cause).__name__}: {scrubbed(str(cause), settings) or 'connection failed'}") from None
    return smtp


_PLAIN_TEXT_PORT = ("the relay answered in plain text, not TLS: this port takes smtp.security: starttls (587) "
                    "or none (25); tls is for a port that speaks TLS from the first byte (465)")


def _plain_text_answer(exc: BaseException) -> bool:
    """Did the TLS handshake of ``security: tls`` meet a relay speaking plain SMTP (a 587 or 25
    port)? OpenSSL reads its ``220`` greeting as a record of an unknown version. The owner read
    "[SSL: WRONG_VERSION_NUMBER] wrong version number (_ssl.c:1006)", and the run retried it
    message after message: no retry makes a plain-text port speak TLS."""
    return isinstance(exc, ssl.SSLError) and exc.reason == "WRONG_VERSION_NUMBER"


async def _greet(smtp: aiosmtplib.SMTP) -> None:
    """EHLO, or HELO for a relay that refuses it (again after STARTTLS, as RFC 3207 asks)."""
    if smtp.is_ehlo_or_helo_needed:
        try:
            await smtp.ehlo()
        except SMTPResponseException:
            await smtp.helo()


def _require(smtp: aiosmtplib.SMTP, extension: str, settings: SmtpSettings) -> None:
    """Stop for good when the relay's EHLO lacks what the config requires: no retry changes it
    (aiosmtplib said so with a bare SMTPException, retried with backoff message after message)."""
    if smtp.supports_extension(extension):
        return
    tls = smtp.get_transport_info("sslcontext") is not None
    smtp.close()
    if extension == "starttls":
        missing = ("the relay does not offer STARTTLS, which smtp.security: starttls requires (its TLS port "
                   "takes security: tls; a loopback relay security: none)")
    else:
        plain = "" if tls else " over plain text (it may after TLS: smtp.security starttls or tls)"
        missing = f"the relay does not offer AUTH{plain}, which smtp.username requires (null: no login)"
    raise ConnectFailure(f"{settings.describe()}: {missing}", fatal=True)


def _require_password_login(smtp: aiosmtplib.SMTP, settings: SmtpSettings) -> None:
    """Stop for good when the relay's AUTH offers no mechanism that logs in with a password (an
    OAuth-only relay: ``AUTH XOAUTH2``). aiosmtplib said "No suitable authentication method
    found." with a bare SMTPException, retried message after message, naming neither what the
    relay offers nor what to change."""
    if smtp.supported_auth_methods:
        return
    offered = " ".join(method.upper() for method in smtp.server_auth_methods) or "no mechanism"
    smtp.close()
    raise ConnectFailure(f"{settings.describe()}: the relay offers AUTH {offered}, no mechanism that logs in with "
                         "smtp.username and smtp.password (LOGIN, PLAIN, CRAM-MD5): use a relay or port of the "
                         "provider that takes a password (an app password), or a local relay", fatal=True)


def _connect_silence(exc: BaseException, settings: SmtpSettings) -> str:
    """What a timeout while connecting means, naming the key that bounds it (a cron owner read
    aiosmtplib's "Timed out waiting for server response", as docs/sending.md did not promise)."""
    bound = f"smtp.timeout ({settings.timeout:g} s)"
    if isinstance(exc, SMTPConnectTimeoutError) and not isinstance(exc.__cause__, SMTPTimeoutError):
        return f"no connection within {bound}: nothing answers at this host and port (smtp.host, smtp.port, a firewall?)"
    phases = ["the TLS handshake"] if settings.security == "tls" else []
    phases += ["the greeting", "EHLO"] + (["STARTTLS"] if settings.security == "starttls" else [])
    phases += ["AUTH"] if settings.username else []
    silence = f"no reply within {bound} while connecting ({', '.join(phases)})"
    if settings.security != "tls" and isinstance(exc, SMTPConnectTimeoutError):
        # aiosmtplib's connect() waited for the greeting: a relay speaking TLS from the first byte
        # waits for a handshake that starttls (or none) never begins (port 465 under starttls).
        silence += ": no greeting came (a port that speaks TLS from the first byte, such as 465, takes smtp.security: tls)"
    return silence


@dataclass(slots=True)
class _Job:
    claim_id: int
    rcpt: bytes  # the recipient as RCPT TO gives it (UTF-8 only with SMTPUTF8)
    wire: bytes  # the message as the DATA phase sends it: dot-stuffed, ending in ".\r\n"
    size: int  # octets of the message, for MAIL FROM ... SIZE=
    utf8: bool  # the message needs SMTPUTF8 (an address with a non-ASCII local part)
    body8: bool  # a body is 8bit (built with eight_bit): needs 8BITMIME
    message: OutgoingMessage  # built again without 8bit bodies for a relay that lacks 8BITMIME
    attempts: int = 0
    free_retry: bool = True  # one immediate retry when a reused connection turns out closed
    waiting: bool = False  # a retry is scheduled (backoff running)
    stage: str = "MAIL"  # the reply the attempt waits for: MAIL, RCPT, DATA, or DOT (message written)


@dataclass(slots=True)
class _Slot:
    """One pooled connection (``None`` until opened or after it was lost)."""

    smtp: aiosmtplib.SMTP | None = None
    used: int = 0  # transactions on the current connection
    size: bool = False  # the server takes MAIL FROM ... SIZE=
    smtputf8: bool = False  # the server offers SMTPUTF8
    eightbitmime: bool = False  # the server offers 8BITMIME (RFC 6152)
    pipe: PipeliningProtocol | None = None  # set when the server offers PIPELINING (and it is on)
    follow: _Job | None = None  # its MAIL, RCPT and DATA went out behind the current message
    busy: bool = False  # a transaction is under way (still set after an interrupt cut it short)
    job: _Job | None = None  # the job in this connection's hands (what a stop cuts short)


@dataclass(slots=True)
class Stats:
    connections: int = 0  # connections opened
    transactions: int = 0  # MAIL FROM sent
    pipelined: int = 0  # of those, sent as one MAIL/RCPT/DATA group (PIPELINING)
    retries: int = 0
    sent: int = 0
    unconfirmed: int = 0


class _Work:
    """The jobs of one :meth:`SmtpChannel.run`: taken from the feed as connections come free (so
    each is claimed only when it can go out at once), plus retries waiting for their turn.

    Connections that come free in the same turn of the event loop (their replies arrived in the
    same read of the sockets) take their jobs together: one ``feed.take(n)``, so one ledger
    transaction for n claims, and still at most one job per free connection.
    """

    def __init__(self, channel: "SmtpChannel", feed: Feed, workers: int) -> None:
        self.channel = channel
        self.feed = feed
        self.workers = workers
        self.ready: collections.deque[_Job] = collections.deque()  # retries due, extra jobs taken
        self.outstanding = 0  # jobs taken and not finished (in flight or waiting for a retry)
        self.exhausted = False
        self.stopping = False  # Ctrl-C or SIGTERM: what is in flight finishes, nothing else starts
        self.timers: list[tuple[asyncio.TimerHandle, _Job]] = []
        self.wake = asyncio.Event()
        self._asking: list[asyncio.Future[_Job | None]] = []  # connections waiting for this turn's take

    async def next(self) -> _Job | None:
        """The next job for a free connection; ``None`` when everything is done."""
        while True:
            job = await self.take()
            if job is not None:
                return job
            if self.outstanding == 0:
                self.wake.set()  # let the other workers see it too
                return None
            self.wake.clear()
            await self.wake.wait()

    async def take(self) -> _Job | None:
        """A job that can start at once (a retry that is due, or one taken from the feed in this
        turn of the loop); ``None`` when there is none now."""
        if self.stopping:
            while self.ready:  # claimed, none of it sent: for the next run
                self.finish(stopped(self.ready.popleft().claim_id))
            return None
        if self.ready:
            return self.ready.popleft()
        if self.exhausted:
            return None
        asking: asyncio.Future[_Job | None] = asyncio.get_running_loop().create_future()
        if not self._asking:
            asyncio.get_running_loop().call_soon(self._take_together)
        self._asking.append(asking)
        return await asking

    def _take_together(self) -> None:
        asking, self._asking = self._asking, []
        if self.stopping:
            for future in asking:
                if not future.done():
                    future.set_result(None)
            return
        try:
            while len(self.ready) < len(asking) and not self.exhausted:
                size = len(asking) - len(self.ready)
                if self.channel._down is not None:  # a dead relay: the rest only gets its outcome, in bulk
                    size = max(size, 64)
                taken, queued = take_prepared(self.feed, size, self.channel._prepare, self.ready)
                self.outstanding += queued
                if not taken:
                    self.exhausted = True
        except Exception as exc:  # the ledger failed: every connection that asked stops with it
            for future in asking:
                if not future.done():
                    future.set_exception(exc)
            return
        for future in asking:
            if not future.done():  # its worker may have been cancelled meanwhile (close())
                future.set_result(self.ready.popleft() if self.ready else None)

    def stop(self) -> None:
        """Ctrl-C or SIGTERM: claim nothing more, give up the retries still waiting and the jobs
        not started (``failed_transient``: the next run sends them); what is in flight finishes."""
        self.stopping = self.exhausted = True
        give_up_waiting(self.timers, self.ready, self.finish)
        self.wake.set()

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


_NEXT_STAGE = {"MAIL": "RCPT", "RCPT": "DATA", "DATA": "DATA"}


class _Unwritten(Exception):
    """A stop came before the message was written (its DATA was answered 354 after it): it is
    not written, and the connection, whose relay waits for it, is closed."""


def _mail_refused(refused: _Refused) -> str:
    """What a 5xx to MAIL FROM asks the owner to change. A 530 is the relay wanting TLS (RFC 3207:
    "Must issue a STARTTLS command first") or AUTH (RFC 4954: "Authentication required") before
    any mail, not a refused sender: the owner was sent to check an address that was right."""
    if refused.code == 530 and "starttls" in refused.message.lower():
        return "the relay requires STARTTLS before mail (smtp.security: starttls)"
    if refused.code == 530:
        return "the relay requires AUTH before mail (smtp.username and smtp.password)"
    return "sender refused (check shop.from_email / smtp.envelope_from and the relay's AUTH)"


#: Words of a 5xx to RCPT that refuses relaying (Postfix "Relay access denied", Sendmail
#: "Relaying denied", Exim "relay not permitted", Exchange "Unable to relay"): the relay's setup.
_RELAY_REFUSED = re.compile(r"\brelay(?:ing)?\b.{0,20}\b(?:denied|not permitted|not allowed|prohibited|refused)\b"
                            r"|\b(?:unable|not permitted|not allowed) to relay\b|\bwe do not relay\b", re.IGNORECASE)


def relay_refused(code: int, message: str) -> bool:
    """Is a 5xx to RCPT the relay refusing to relay for this client, whatever the address? Its
    AUTH not given or not taken, the machine's address not among its trusted networks: fixing
    the relay sends the message, so it is no permanent failure of the customer's address (that
    was a step done, never sent again once the relay was fixed)."""
    return 500 <= code < 600 and _RELAY_REFUSED.search(message) is not None


def _session_ended(refused: _Refused) -> bool:
    """A 421 to MAIL: the relay closes the connection before the transaction began ("too many
    messages in this session", Exim's ``smtp_accept_max_per_connection``, a provider's limit per
    connection, an idle connection it ends). It refused the session, not the message: on a reused
    connection the message goes at once on a new one, as when such a connection is found closed.
    It was a 4xx refusal, retried with backoff and counted: a message that met the limit
    ``retries + 1`` times was left ``failed_transient``, exit 1."""
    return refused.code == 421 and refused.stage == "MAIL"


class _Refused(Exception):
    def __init__(self, code: int, message: str, stage: str) -> None:
        super().__init__(f"{code} {message}")
        self.code = code
        self.message = message
        self.stage = stage


class SmtpChannel(LoopChannel):
    """Delivers envelopes over SMTP; see the module docstring for the outcome rules."""

    transport = "smtp"
    eight_bit = True
    #: What an ``unconfirmed`` reply ends with: a run's rule. ``send-test``, which has no claim to
    #: release, gives its channel its own (:func:`cartrescue.send_test._channel`).
    unconfirmed_advice = "it may have arrived, so it is not resent (at most once; --resend-unconfirmed sends it)"

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
        self._silences = 0  # transactions in a row, pool-wide, that met no reply in time
        self._down: str | None = None  # why the relay is considered unreachable (breaker open)
        self._mute = False  # the relay connects but never answers: down for the rest of the run

    @classmethod
    def from_config(cls, config: "Config", recent: Iterable[datetime] = (),
                    whole_per_hour: int | None = None) -> "SmtpChannel":
        """``recent``: when earlier runs sent messages (for the rolling hourly limit);
        ``whole_per_hour``: the config's quota, where ``config`` has a shard's share of it."""
        now = datetime.now(timezone.utc)
        settings = replace(SmtpSettings.from_config(config), rate_per_hour_whole=whole_per_hour)
        return cls(settings, recent_sends=[(now - at).total_seconds() for at in recent])

    def hour_room(self) -> HourRoom | None:
        settings = self.settings
        return self.limiter.hour_room(quota_named("smtp", settings.rate_per_hour, settings.rate_per_hour_whole))

    async def _shutdown(self) -> None:
        await self._quit_all()

    # -- one batch ---------------------------------------------------------------------------

    def _prepare(self, envelope: Envelope) -> _Job | Outcome:
        message = envelope.message
        if message is None:
            return Outcome(envelope.claim_id, Status.PERMANENT, "no message to send")
        try:
            rcpt = wire_address(message.to.email).encode("utf-8")
            data = envelope.data if envelope.data is not None else build_message(message, eight_bit=True)
        except ValueError as exc:
            return Outcome(envelope.claim_id, Status.PERMANENT, f"cannot send: {exc}")
        # Every header byte build_message writes is ASCII except an address that needs SMTPUTF8;
        # a body is 8-bit only when built with eight_bit. With the head ASCII (nearly always), the
        # whole message says what the body is, without copying the body out of it.
        head = data.find(b"\r\n\r\n")
        utf8 = not data[:head].isascii()
        body8 = not data[head:].isascii() if utf8 else not data.isascii()
        return _Job(envelope.claim_id, rcpt, wire_body(data), len(data), utf8, body8, message)

    @staticmethod
    def _fit(slot: _Slot, job: _Job) -> bool:
        """Make ``job`` fit ``slot``'s relay; False when it cannot (an address needs SMTPUTF8).

        A relay without 8BITMIME gets the message built again without 8bit bodies (the same
        message, whose checks passed before it was claimed: only its encoding changes).
        """
        if job.utf8 and not slot.smtputf8:
            return False
        if job.body8 and not slot.eightbitmime:
            data = build_message(job.message)  # 7-bit bodies; UTF-8 addresses stay (SMTPUTF8)
            job.wire, job.size, job.body8 = wire_body(data), len(data), False
        return True

    async def _run(self, feed: Feed) -> None:
        work = self._work = _Work(self, feed, len(self._slots))
        try:
            if self._down is not None and (self._mute or not await self._probe()):
                while (job := await work.next()) is not None:
                    work.finish(self._not_attempted(job))
                return
            await asyncio.gather(*(self._work_on(slot, work) for slot in self._slots))
        except asyncio.CancelledError:  # a stop's grace ran out: see stops.stops_in_loop
            self._cut_short(work)
            raise
        finally:
            self._work = None
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

    async def _work_on(self, slot: _Slot, batch: _Work) -> None:
        while (job := await batch.next()) is not None:
            slot.job = job  # not in a finally: a stop that cuts the work short reads it (_cut_short)
            await self._work_through(slot, job, batch)
            slot.job = None

    async def _work_through(self, slot: _Slot, job: _Job, batch: _Work) -> None:
        """Deliver ``job`` on ``slot``, then the jobs whose commands went out behind it."""
        if self._down is not None:
            batch.finish(self._not_attempted(job))
            return
        if not await self.limiter.acquire():
            settings = self.settings
            batch.finish(Outcome(job.claim_id, Status.TRANSIENT,
                                 quota_reached("smtp", settings.rate_per_hour, settings.rate_per_hour_whole)))
            return
        if batch.stopping:  # stopped while it waited for its turn under smtp.rate_per_second
            batch.finish(stopped(job.claim_id))
            return
        slot.busy = True  # not in a finally: a cancelled transaction leaves it set for _quit_all
        follow = await self._attempt(slot, job, batch)
        while follow is not None:  # its commands went out behind the last message (pipelining)
            slot.job = follow
            follow = await self._attempt(slot, follow, batch, started=True)
        slot.busy = False

    def _cut_short(self, batch: _Work) -> None:
        """The stop's grace ran out (or a second Ctrl-C came) with deliveries still waiting on the
        relay. A message not yet written whole (waiting for the greeting, or for the replies to
        MAIL, RCPT or DATA) cannot have arrived: ``failed_transient``, and the next run sends it.
        Left claimed, as before, the next runs counted it as one that may have arrived and never
        sent it. A message written whole keeps its claim without an outcome, as a kill leaves
        it (``unconfirmed`` for the next run: it may have arrived)."""
        for slot in self._slots:
            for job in (slot.job, slot.follow):
                if job is not None and job.stage != "DOT" and not job.waiting:
                    batch.finish(stopped(job.claim_id))
            slot.job = slot.follow = None
        give_up_waiting(batch.timers, batch.ready, batch.finish)

    async def _connect(self, slot: _Slot) -> aiosmtplib.SMTP:
        if slot.smtp is not None and slot.smtp.is_connected:
            return slot.smtp
        slot.smtp = slot.pipe = None
        try:
            smtp = await open_connection(self.settings, self.context)
        except ConnectFailure as failure:
            self._connect_failures += 1
            if failure.fatal or self._connect_failures >= self.settings.pool_size + self.settings.retries + 1:
                self._down = failure.reply
            raise
        self._connect_failures = 0
        if not self._mute:  # connecting proves nothing of a relay that never answers
            self._down = None
        self.stats.connections += 1
        smtp.timeout = None  # each phase of a transaction runs under its own deadline instead
        slot.smtp, slot.used = smtp, 0
        slot.size, slot.smtputf8 = smtp.supports_extension("size"), smtp.supports_extension("smtputf8")
        slot.eightbitmime = smtp.supports_extension("8bitmime")
        if self.settings.pipelining and smtp.supports_extension("pipelining"):
            slot.pipe = enable(smtp)
        return smtp

    async def _attempt(self, slot: _Slot, job: _Job, batch: _Work, *, started: bool = False) -> _Job | None:
        """One transaction of ``job``; returns the next job when its commands already went out.

        ``started``: ``job``'s MAIL, RCPT and DATA were written behind the previous message on
        this connection (see :meth:`_pipelined`).
        """
        if not started:
            job.attempts += 1
            try:
                await self._connect(slot)
            except ConnectFailure as failure:
                self._retry_or_give_up(job, batch, failure.reply)
                if self._down is not None:
                    self._stop_waiting(batch)
                return None
            if not self._fit(slot, job):
                batch.finish(Outcome(job.claim_id, Status.TRANSIENT, "relay does not offer SMTPUTF8, which this "
                                     f"address needs (RFC 6531); not sent ({self.settings.describe()})"))
                return None
            self._begin(slot, job)
        reused = slot.used > 1
        try:
            if slot.pipe is not None:
                reply = await self._pipelined(slot, slot.pipe, job, batch, started)
            else:
                assert slot.smtp is not None
                reply = await self._stepwise(slot, slot.smtp, job, batch)
            if not 200 <= reply.code < 300:
                raise _Refused(reply.code, reply.message, "DOT")
        except _Unwritten:
            self._drop(slot)
            batch.finish(stopped(job.claim_id))
            return None
        except _Refused as refused:
            self._silences = 0  # it answers
            await self._after_refusal(slot, refused)
            if _session_ended(refused) and (started or (reused and job.free_retry)):
                self._again(job, batch, started)
            else:
                self._refused(job, batch, refused)
            return self._follower(slot, batch)
        except (SMTPException, OSError, ssl.SSLError) as exc:  # OSError includes TimeoutError
            self._drop(slot)
            cause = self._cause(exc, job.stage)
            self._silent(isinstance(exc, TimeoutError), cause, batch)
            if job.stage == "DOT":
                self._unconfirmed(job, batch, cause)
            elif job.stage == "MAIL" and (started or (reused and job.free_retry)):
                # Nothing of this message was sent: the relay closed an idle connection, or the
                # connection broke under the message before it.
                self._again(job, batch, started)
            else:
                self._retry_or_give_up(job, batch, f"connection lost during {job.stage}: {cause}")
            return self._follower(slot, batch)
        self.stats.sent += 1
        self._silences = 0
        batch.finish(Outcome(job.claim_id, Status.SENT, f"{reply.code} {scrubbed(reply.message, self.settings)}"))
        return self._follower(slot, batch)

    @staticmethod
    def _again(job: _Job, batch: _Work, started: bool) -> None:
        """Try ``job`` again at once on a new connection, without counting an attempt: a reused
        connection ended before its MAIL was taken, so nothing of the message reached the relay.
        A follower keeps this for its next turn; any other job has it once, so a relay that
        ends every connection so still meets the retries and their backoff."""
        job.free_retry = job.free_retry and started
        job.attempts -= 1
        batch.ready.append(job)

    def _silent(self, timed_out: bool, cause: str, batch: _Work) -> None:
        """Count a transaction that met no reply in time; one that met another failure ends the count.

        A relay that takes connections and never answers (a hung MTA, a firewall that swallows
        the replies) made every message wait out ``smtp.timeout`` and its retries: 75 minutes for
        300 messages at the defaults, while cron's next runs found the lock held. After as many
        silences in a row as fail the connections of the pool and one message's retries, the
        relay counts as down for the rest of the run: the messages not yet attempted stay for the
        next run, unclaimed.
        """
        if not timed_out:
            self._silences = 0
            return
        self._silences += 1
        if self._silences >= self.settings.pool_size + self.settings.retries + 1 and self._down is None:
            self._down = f"{cause}, {self._silences} times in a row"
            self._mute = True
            self._stop_waiting(batch)

    @staticmethod
    def _stop_waiting(batch: _Work) -> None:
        """The relay is down: the messages waiting out a backoff come back now, to be left for
        the next run (no point waiting for a relay that is not there)."""
        for timer, waiting in batch.timers:
            timer.cancel()
            batch.requeue(waiting)
        batch.timers.clear()

    def _begin(self, slot: _Slot, job: _Job) -> None:
        """Count a transaction of ``job`` on ``slot``'s connection."""
        slot.used += 1
        job.stage = "MAIL"
        self.stats.transactions += 1

    def _follower(self, slot: _Slot, batch: _Work) -> _Job | None:
        """The job whose commands went out behind the last message, if the connection still stands.

        When the connection was dropped, none of it reached the relay (no reply to its MAIL came):
        it goes back to be tried again without counting an attempt.
        """
        follow, slot.follow = slot.follow, None
        if follow is None or slot.pipe is not None:
            return follow
        follow.attempts -= 1
        batch.ready.append(follow)
        batch.wake.set()
        return None

    async def _take_next(self, slot: _Slot, batch: _Work) -> _Job | None:
        """A job to start right behind this message, if one is there in this turn of the loop (none
        under a rate limit: then each message waits for its turn)."""
        if self.limiter.limited or self._down is not None:
            return None
        job = await batch.take()
        if job is None:
            return None
        if not self._fit(slot, job):
            batch.ready.appendleft(job)  # _attempt reports it
            return None
        job.attempts += 1
        self._begin(slot, job)
        return job

    def _mail(self, slot: _Slot, job: _Job) -> bytes:
        command = b"MAIL FROM:<" + self.sender + b">"
        if slot.size:
            command += b" SIZE=%d" % job.size
        if (job.body8 or job.utf8) and slot.eightbitmime:  # any 8-bit octet in the message
            command += b" BODY=8BITMIME"
        if job.utf8:
            command += b" SMTPUTF8"
        return command

    async def _pipelined(
        self, slot: _Slot, pipe: PipeliningProtocol, job: _Job, batch: _Work, started: bool
    ) -> SMTPResponse:
        """MAIL, RCPT and DATA in one write and their replies in order; then the message (RFC 2920).

        The next job's MAIL, RCPT and DATA follow the message at once (RFC 2920 3.1 allows
        message content first in a group), so their replies come with the reply to the message:
        one wait per message on a busy connection. That job is left in ``slot.follow`` for
        :meth:`_attempt` to finish.
        """
        if not started:
            pipe.send(self._group(slot, job), 3)
        self.stats.pipelined += 1
        replies: list[SMTPResponse] = []
        # The replies that are here already (a follower's came with the last message's) are
        # taken without a deadline: only a wait that suspends can time out.
        while len(replies) < 3 and (reply := pipe.ready()) is not None:
            replies.append(reply)
            if reply.code == 421:  # closing: the rest of the group will not be answered
                break
            job.stage = _NEXT_STAGE[job.stage]
        if len(replies) < 3 and not (replies and replies[-1].code == 421):
            loop = asyncio.get_running_loop()
            while len(replies) < 3:
                # Each reply its own smtp.timeout (RFC 5321 4.5.3.2): one for the whole group failed
                # a relay whose checks take 2 s a command under a timeout of 5 s.
                reply = await pipe.reply(loop.time() + self.settings.timeout)
                replies.append(reply)
                if reply.code == 421:  # closing: the rest of the group will not be answered
                    break
                job.stage = _NEXT_STAGE[job.stage]
        refused = None
        if replies[0].code != 250:
            refused = _Refused(replies[0].code, replies[0].message, "MAIL")
        elif replies[1].code not in (250, 251):
            refused = _Refused(replies[1].code, replies[1].message, "RCPT")
        elif replies[2].code != 354:
            refused = _Refused(replies[2].code, replies[2].message, "DATA")
        if refused is not None:
            if len(replies) == 3 and replies[2].code == 354:
                # DATA accepted after a refused MAIL or RCPT: end it empty (RFC 2920 3.1), unless
                # the relay ended it itself: then the connection goes, as in _ended_early.
                try:
                    if pipe.early() is not None:
                        self._drop(slot)
                    else:
                        pipe.send(b".\r\n", 1)
                        async with asyncio.timeout(self.settings.timeout):
                            await pipe.reply()
                except (SMTPException, OSError):
                    self._drop(slot)
            raise refused
        if (early := pipe.early()) is not None:
            raise self._ended_early(slot, early)
        if batch.stopping:  # its commands went out before the stop (a follower's, behind the last message)
            raise _Unwritten
        pipe.send(job.wire, 1)
        job.stage = "DOT"
        # Only now is the next job taken (and so claimed): this message is already on its way, so
        # a kill leaves at most one claimed-but-undelivered message per connection.
        follow = await self._take_next(slot, batch)
        if follow is not None:
            try:
                pipe.send(self._group(slot, follow), 3)
            except SMTPServerDisconnected:  # lost meanwhile: nothing of it went out
                follow.attempts -= 1
                batch.ready.append(follow)
                # The relay may have answered this message and then closed (smtp-sink -Q .
                # does, after every one): its reply, read meanwhile, is its outcome. Taken for
                # a lost connection, a 250 was "unconfirmed" and a 421 never retried.
                reply = pipe.ready()
                if reply is not None:
                    return reply
                raise
            slot.follow = follow
        reply = pipe.ready()  # here already (while the next job was claimed): no deadline to set
        if reply is not None:
            return reply
        return await pipe.reply(asyncio.get_running_loop().time() + self.settings.data_timeout)

    def _group(self, slot: _Slot, job: _Job) -> bytes:
        return self._mail(slot, job) + b"\r\nRCPT TO:<" + job.rcpt + b">\r\nDATA\r\n"

    async def _stepwise(self, slot: _Slot, smtp: aiosmtplib.SMTP, job: _Job, batch: _Work) -> SMTPResponse:
        """Each command waits for its reply (a relay without PIPELINING), each at most
        ``smtp.timeout``; then the message."""
        timeout = self.settings.timeout
        async with asyncio.timeout(timeout):
            reply = await smtp.execute_command(self._mail(slot, job))
        if reply.code != 250:
            raise _Refused(reply.code, reply.message, "MAIL")
        job.stage = "RCPT"
        async with asyncio.timeout(timeout):
            reply = await smtp.execute_command(b"RCPT TO:<" + job.rcpt + b">")
        if reply.code not in (250, 251):
            raise _Refused(reply.code, reply.message, "RCPT")
        job.stage = "DATA"
        protocol = smtp.protocol  # taken now: a relay that closes after its reply takes smtp.protocol away
        if protocol is None:
            raise SMTPServerDisconnected("Connection lost")
        async with asyncio.timeout(timeout):
            reply = await smtp.execute_command(b"DATA")
        if reply.code != 354:
            raise _Refused(reply.code, reply.message, "DATA")
        if (early := early_reply(protocol)) is not None:
            raise self._ended_early(slot, early)
        if batch.stopping:
            raise _Unwritten
        protocol.write(job.wire)  # already dot-stuffed: not SMTP.data, which would scan it again
        job.stage = "DOT"
        return await protocol.read_response(timeout=self.settings.data_timeout)

    def _ended_early(self, slot: _Slot, reply: SMTPResponse) -> _Refused:
        """The relay answered the message after its 354, before the message was written
        (``smtp-sink -A 0``): that reply is the message's outcome, as a reply to DATA (5xx a
        refusal, 4xx a retry; the message never went out). The connection is closed: whether
        the relay still reads a message or takes the next line for a command is unknown, so
        nothing more written on it could be paired with its replies."""
        self._drop(slot)
        return _Refused(reply.code, reply.message, "DATA")

    def _cause(self, exc: BaseException, stage: str) -> str:
        if isinstance(exc, (TimeoutError, SMTPTimeoutError)):
            if stage == "DOT":
                return f"no reply within smtp.data_timeout ({self.settings.data_timeout:g} s)"
            return f"no reply within smtp.timeout ({self.settings.timeout:g} s)"
        return f"{type(exc).__name__}: {scrubbed(str(exc), self.settings)}" if str(exc) else type(exc).__name__

    def _unconfirmed(self, job: _Job, batch: _Work, cause: str) -> None:
        self.stats.unconfirmed += 1
        batch.finish(Outcome(job.claim_id, Status.UNCONFIRMED, f"{cause} after the whole message was sent: {self.unconfirmed_advice}"))

    def _refused(self, job: _Job, batch: _Work, refused: _Refused) -> None:
        code, text = refused.code, f"{refused.code} {scrubbed(refused.message, self.settings)}"
        if 400 <= code < 500:
            self._retry_or_give_up(job, batch, text)
        elif 500 <= code < 600 and refused.stage == "MAIL" and code != 552:
            batch.finish(Outcome(job.claim_id, Status.TRANSIENT, f"{_mail_refused(refused)}: {text}"))
        elif refused.stage == "RCPT" and relay_refused(code, refused.message):
            batch.finish(Outcome(job.claim_id, Status.TRANSIENT, "the relay refuses to relay for cartrescue (check "
                                 f"smtp.username and smtp.password, or the relay's trusted networks): {text}"))
        elif 500 <= code < 600:
            suppress = NO_SUCH_USER if is_unknown_user(code, refused.message) else ""
            batch.finish(Outcome(job.claim_id, Status.PERMANENT, text, suppress=suppress))
        elif refused.stage == "DOT":  # after the message, neither yes nor no: maybe delivered
            self._unconfirmed(job, batch, f"unexpected reply {text}")
        else:  # a reply code SMTP does not allow here
            self._retry_or_give_up(job, batch, f"unexpected reply to {refused.stage}: {text}")

    def _retry_or_give_up(self, job: _Job, batch: _Work, reply: str) -> None:
        settings = self.settings
        if self._down is not None or job.attempts > settings.retries or batch.stopping:
            tries = f" (after {job.attempts} attempts)" if job.attempts > 1 else ""
            batch.finish(Outcome(job.claim_id, Status.TRANSIENT, f"{reply}{tries}"))
            return
        self.stats.retries += 1
        delay = min(settings.backoff * 2 ** (job.attempts - 1), settings.backoff_max) * random.uniform(0.9, 1.1)
        loop = asyncio.get_running_loop()
        job.waiting = True
        batch.timers.append((loop.call_later(delay, batch.requeue, job), job))

    async def _after_refusal(self, slot: _Slot, refused: _Refused) -> None:
        """Leave the connection ready for the next transaction: RSET, or drop it."""
        smtp = slot.smtp
        if smtp is None or refused.code == 421 or not smtp.is_connected:
            self._drop(slot)
            return
        if refused.stage == "DOT":
            return  # the reply to the message ends the transaction: nothing to reset
        try:
            async with asyncio.timeout(self.settings.timeout):
                reply = await smtp.execute_command(b"RSET")
        except (SMTPException, OSError):
            self._drop(slot)
            return
        if reply.code != 250:
            self._drop(slot)

    def _drop(self, slot: _Slot) -> None:
        if slot.smtp is not None:
            slot.smtp.close()
        slot.smtp = slot.pipe = None

    async def _quit_all(self) -> None:
        """QUIT every idle connection; close at once one whose transaction an interrupt cut short.

        Such a connection still owes replies (to the message, or to a pipelined group) that may
        never come, a stuck relay being a common reason to interrupt a run: QUIT would wait for
        them, and with them for its own reply, up to 5 s a connection. The message's claim stays
        in the ledger without an outcome, as a kill leaves it (``unconfirmed`` for the next run).
        """
        async def quit(slot: _Slot) -> None:
            smtp, slot.smtp = slot.smtp, None
            busy, slot.busy = slot.busy, False
            if smtp is None or not smtp.is_connected:
                return
            if busy or self._hurried:  # an orphaned worker waits for no QUIT either (ORPHAN_GRACE)
                smtp.close()
                return
            try:
                await asyncio.wait_for(smtp.quit(), timeout=min(self.settings.timeout, 5.0))
            except (SMTPException, OSError, asyncio.TimeoutError, asyncio.CancelledError):
                smtp.close()

        await asyncio.gather(*(quit(slot) for slot in self._slots), return_exceptions=True)


async def check_connection(settings: SmtpSettings) -> dict[str, Any]:
    """Connect, TLS and AUTH as a run would, offer the run's sender (MAIL FROM, then RSET), then
    QUIT without sending (for ``doctor``)."""
    try:
        sender = encode_address(settings.envelope_from)
    except ValueError as exc:
        raise ConfigError(f"smtp.envelope_from / shop.from_email: {exc}") from None
    context = tls_context(settings) if settings.security != "none" else None
    smtp = await open_connection(settings, context)
    try:
        await _offer_sender(smtp, sender, settings)
        info: dict[str, Any] = {"server": settings.describe(), "banner": ""}
        if smtp.last_ehlo_response is not None:
            info["banner"] = scrubbed(smtp.last_ehlo_response.message.splitlines()[0], settings)
        cipher = smtp.get_transport_info("cipher")
        info["tls"] = f"{cipher[1]} {cipher[0]}" if cipher else "none"
        info["auth"] = "yes" if settings.username else "no"
        info["extensions"] = sorted(smtp.esmtp_extensions)
        info["sender"] = sender
        return info
    finally:
        try:
            await asyncio.wait_for(smtp.quit(), timeout=5)
        except (SMTPException, OSError, asyncio.TimeoutError):
            smtp.close()


async def _offer_sender(smtp: aiosmtplib.SMTP, sender: str, settings: SmtpSettings) -> None:
    """MAIL FROM the run's envelope sender, then RSET: no recipient, no message. A relay that
    refuses the sender (an address its AUTH user may not send as; STARTTLS or AUTH it wants
    before mail) refused every message of every run, while a check that stopped after AUTH
    said the relay was fine."""
    try:
        await smtp.mail(sender)
    except SMTPResponseException as exc:
        smtp.close()
        why = _mail_refused(_Refused(exc.code, exc.message, "MAIL"))
        raise ConnectFailure(f"{settings.describe()}: MAIL FROM:<{sender}>: {why}: {exc.code} "
                             f"{scrubbed(exc.message, settings)}", fatal=exc.code >= 500) from None
    try:
        await smtp.rset()
    except SMTPResponseException:  # the QUIT that follows ends the transaction as well
        pass
