"""A real SMTP server on loopback for tests: aiosmtpd in a thread, with TLS, AUTH and faults.

    with LoopbackSMTP(security="starttls", auth=("shop", "s3cret")) as server:
        ...  # point smtp.host/port/ca_file at server.host, server.port, server.ca_file
        server.messages  # what the server accepted, in order

- security: ``none`` (plain), ``starttls`` (STARTTLS offered and required before MAIL, AUTH only
  after it) or ``tls`` (implicit TLS from the first byte). The certificate is self-signed for
  ``localhost`` and 127.0.0.1, made at test time with ``cryptography`` when installed, else the
  ``openssl`` command, once per process; ``ca_file`` is what a client must trust.
- auth: ``(user, password)`` offers AUTH LOGIN and PLAIN (``auth_mechanisms`` narrows it, or
  names ``XOAUTH2``: an OAuth-only relay's, which takes no password) and refuses MAIL before a
  successful AUTH.
- faults: :class:`Fault` rules matched on the recipient: a reply (``"451 4.7.1 greylisted"``,
  ``"550 5.1.1 no such user"``, ``"421 4.3.2 shutting down"``; ``{address}`` in it becomes the
  recipient) to RCPT or after the message (``stage="DATA"``); ``"drop"`` (close the connection
  when the DATA command comes, before the body: the client never sent the message),
  ``"drop-in-body"`` (answer 354, read a little of the body, then close), ``"drop-after-data"``
  (close it after the whole body, before the reply), ``"late"`` (accept the message but answer
  only after ``delay`` seconds), or ``"hang"`` (never answer the RCPT: a stuck relay). A reply to
  MAIL is matched on the sender. ``times`` limits a rule to the first N matching attempts per
  recipient (then the message is accepted).
- pipelining: the server advertises PIPELINING in its EHLO reply (aiosmtpd reads pipelined
  commands correctly but does not say so by itself); ``pipelined`` counts the MAIL commands that
  arrived with the RCPT already behind them in the same read (a group written at once).
- smtputf8: the server offers SMTPUTF8 (aiosmtpd's ``enable_SMTPUTF8``) and takes UTF-8 addresses.
- eightbitmime: the server offers 8BITMIME (aiosmtpd does by itself; ``False`` takes it out of
  the EHLO reply, as a relay that only takes 7-bit text).
- on_message: a function called with each accepted message before the server answers it.
- session_limit: a connection takes that many MAIL commands; the next is answered ``421 4.7.0 too
  many messages in this session`` and the connection closed (Exim's ``smtp_accept_max_per_connection``,
  providers' per-connection limits).
- The port is chosen by the OS (bind to port 0), so tests may run side by side.
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import os
import re
import shutil
import socket
import ssl
import subprocess
import tempfile
import threading
import time
import warnings
from collections import Counter
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path
from typing import Any, Callable

from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword

_CERT_LOCK = threading.Lock()
_CERT: tuple[Path, Path] | None = None


def self_signed_cert() -> tuple[Path, Path]:
    """``(cert.pem, key.pem)`` for localhost / 127.0.0.1, made once per process."""
    global _CERT
    with _CERT_LOCK:
        if _CERT is None:
            folder = Path(tempfile.mkdtemp(prefix="cartrescue-tls-"))
            cert, key = folder / "cert.pem", folder / "key.pem"
            try:
                _cert_with_cryptography(cert, key)
            except ImportError:
                _cert_with_openssl(cert, key)
            _CERT = (cert, key)
        return _CERT


def _cert_with_cryptography(cert: Path, key: Path) -> None:
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    private = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.timezone.utc)
    certificate = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(private.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                                    x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
        .sign(private, hashes.SHA256())
    )
    cert.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key.write_bytes(private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption()))


def _cert_with_openssl(cert: Path, key: Path) -> None:
    openssl = shutil.which("openssl")
    if openssl is None:
        raise RuntimeError("neither the cryptography package nor the openssl command is available")
    subprocess.run(
        [openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
         "-keyout", str(key), "-out", str(cert), "-days", "2", "-subj", "/CN=localhost",
         "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
         "-addext", "basicConstraints=critical,CA:TRUE"],
        check=True, capture_output=True,
    )


@dataclass
class Fault:
    """Misbehave for recipients matching ``pattern`` (a regular expression, searched)."""

    pattern: str
    action: str  # an SMTP reply like "451 4.7.1 try later", or drop, drop-in-body, drop-after-data, late, hang
    stage: str = "RCPT"  # MAIL (matched on the sender), RCPT or DATA, for replies; drops happen in DATA
    times: int | None = None  # apply to the first N matching attempts per recipient; None = always
    delay: float = 0.0  # "late": seconds between accepting the message and answering
    seen: Counter[str] = field(default_factory=Counter)

    def fires(self, recipient: str) -> bool:
        if not re.search(self.pattern, recipient):
            return False
        self.seen[recipient] += 1
        return self.times is None or self.seen[recipient] <= self.times

    def reply(self, recipient: str) -> str:
        return self.action.replace("{address}", recipient)


@dataclass(frozen=True)
class Received:
    mail_from: str
    rcpt_tos: tuple[str, ...]
    data: bytes
    at: float  # time.monotonic() when accepted
    mail_options: tuple[str, ...] = ()  # MAIL FROM parameters (SIZE=..., SMTPUTF8)
    helo: str = ""  # the name the client gave in EHLO (or HELO) on this message's connection

    def parsed(self) -> EmailMessage:
        if "SMTPUTF8" in self.mail_options:  # headers in UTF-8 (RFC 6532): read as text, as such a reader does
            message = email.message_from_string(self.data.decode("utf-8"), policy=email.policy.SMTPUTF8)
        else:
            message = email.message_from_bytes(self.data, policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        return message


class _Handler:
    def __init__(self, server: "LoopbackSMTP") -> None:
        self.server = server

    async def handle_EHLO(self, smtp: Any, session: Any, envelope: Any, hostname: str, responses: list[str]) -> list[str]:
        session.host_name = hostname
        if self.server.pipelining:
            responses.insert(-1, "250-PIPELINING")
        if not self.server.eightbitmime:
            responses = [line for line in responses if line[4:].upper() != "8BITMIME"]
        return responses

    async def auth_XOAUTH2(self, server: Any, args: list[str]) -> AuthResult:
        """Offered only when ``auth_mechanisms`` names it (an OAuth-only relay); takes no password."""
        return AuthResult(success=False, handled=False)

    async def handle_MAIL(self, smtp: Any, session: Any, envelope: Any, address: str, options: list[str]) -> str:
        limit = self.server.session_limit
        if limit is not None:
            session.mails = getattr(session, "mails", 0) + 1
            if session.mails > limit:  # the reply goes out first, then the connection closes
                asyncio.get_running_loop().call_soon(smtp.transport.close)
                return "421 4.7.0 too many messages in this session"
        for fault in self.server.faults:
            if fault.stage == "MAIL" and fault.action[:1].isdigit() and fault.fires(address):
                return fault.reply(address)
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        return "250 2.1.0 OK"

    async def handle_RCPT(self, smtp: Any, session: Any, envelope: Any, address: str, options: list[str]) -> str:
        self.server.attempts[address] += 1
        for fault in self.server.faults:
            if fault.action == "hang" and fault.fires(address):
                await asyncio.sleep(3600)  # a relay that stops answering; stop() cancels it
            if fault.stage == "RCPT" and fault.action[:1].isdigit() and fault.fires(address):
                return fault.reply(address)
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, smtp: Any, session: Any, envelope: Any) -> str:
        late = 0.0
        for fault in self.server.faults:
            if fault.action == "drop-after-data" and any(fault.fires(r) for r in envelope.rcpt_tos):
                smtp.transport.abort()
                return "421 4.3.0 gone"  # never reaches the client: the connection is closed
            if fault.action == "late" and any(fault.fires(r) for r in envelope.rcpt_tos):
                late = fault.delay
            if fault.stage == "DATA" and fault.action[:1].isdigit() and any(fault.fires(r) for r in envelope.rcpt_tos):
                return fault.reply(envelope.rcpt_tos[0])
        server = self.server
        with server.lock:
            server.messages.append(Received(envelope.mail_from, tuple(envelope.rcpt_tos),
                                            bytes(envelope.original_content), time.monotonic(),
                                            tuple(envelope.mail_options), session.host_name or ""))
            number = len(server.messages)
        if server.on_message is not None:  # before the reply: the client waits for what it does
            server.on_message(server.messages[-1])
        if late:
            await asyncio.sleep(late)  # accepted (it is in messages), but the client hears it late
        return f"250 2.0.0 Ok: queued as T{number:06d}"


class _Session(SMTP):
    """aiosmtpd's SMTP with a connection counter, a pipelining counter and drops during DATA."""

    def __init__(self, server: "LoopbackSMTP", **kwargs: Any) -> None:
        super().__init__(_Handler(server), **kwargs)
        self.owner = server

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if self.transport is None:  # not the STARTTLS re-handshake
            with self.owner.lock:
                self.owner.connections += 1
        super().connection_made(transport)

    async def smtp_MAIL(self, arg: str) -> None:
        if b"RCPT" in self._reader._buffer:  # type: ignore[attr-defined]  # the rest of a group is already here
            with self.owner.lock:
                self.owner.pipelined += 1
        await super().smtp_MAIL(arg)

    async def smtp_DATA(self, arg: str) -> None:
        envelope = self.envelope
        if envelope is not None and envelope.rcpt_tos and not arg:
            for fault in self.owner.faults:
                if fault.action == "drop" and any(fault.fires(r) for r in envelope.rcpt_tos):
                    self.transport.abort()  # type: ignore[union-attr]  # no 354: the body is never sent
                    self._reader._buffer.clear()  # type: ignore[attr-defined]
                    await asyncio.sleep(1)  # connection_lost cancels this session meanwhile
                    return
                if fault.action == "drop-in-body" and any(fault.fires(r) for r in envelope.rcpt_tos):
                    await self.push("354 End data with <CR><LF>.<CR><LF>")
                    await self._reader.read(64)  # some of the body, then the line goes dead
                    self.transport.abort()  # type: ignore[union-attr]
                    self._reader._buffer.clear()  # type: ignore[attr-defined]  # nothing more is read
                    await asyncio.sleep(1)  # connection_lost cancels this session meanwhile
                    return
        await super().smtp_DATA(arg)


class LoopbackSMTP:
    """A threaded aiosmtpd server on 127.0.0.1 and an OS-chosen port."""

    host = "127.0.0.1"

    def __init__(
        self,
        security: str = "none",
        *,
        auth: tuple[str, str] | None = None,
        auth_mechanisms: tuple[str, ...] = ("LOGIN", "PLAIN"),
        faults: list[Fault] | None = None,
        pipelining: bool = True,
        smtputf8: bool = False,
        eightbitmime: bool = True,
        echo_credentials: bool = False,
        session_limit: int | None = None,
    ) -> None:
        if security not in ("none", "starttls", "tls"):
            raise ValueError(security)
        self.security = security
        self.pipelining = pipelining
        self.smtputf8 = smtputf8
        self.eightbitmime = eightbitmime
        self.pipelined = 0  # MAIL commands that arrived as part of a group
        self.auth = auth
        self.auth_mechanisms = auth_mechanisms
        self.echo_credentials = echo_credentials  # a refused AUTH quotes the password it was given
        self.session_limit = session_limit  # MAIL commands a connection may give; the next gets 421 and a close
        self.faults: list[Fault] = list(faults or [])
        self.messages: list[Received] = []
        # Called (in the server's thread) with each accepted message before its 250 reply: a test's
        # concurrent writer, e.g. a customer who unsubscribes as a run delivers.
        self.on_message: Callable[[Received], None] | None = None
        self.attempts: Counter[str] = Counter()  # RCPT commands per recipient
        self.connections = 0
        self.lock = threading.Lock()
        self.port = 0
        self.ca_file: Path | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: asyncio.AbstractServer | None = None

    # -- lifecycle ---------------------------------------------------------------------------

    def __enter__(self) -> "LoopbackSMTP":
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _contexts(self) -> ssl.SSLContext | None:
        if self.security == "none":
            return None
        cert, key = self_signed_cert()
        self.ca_file = cert
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(cert, key)
        return context

    def start(self) -> None:
        context = self._contexts()
        # IPPROTO_TCP, not 0: asyncio sets TCP_NODELAY only on sockets that say they are TCP. Without
        # it, Nagle held the second to fourth replies to a pipelined group (aiosmtpd writes each
        # reply alone) until the client's delayed ACK: 40 ms per message, 22 messages a second.
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, 0))
        sock.listen(128)
        self.port = sock.getsockname()[1]
        loop = asyncio.new_event_loop()
        self._loop = loop
        ready = threading.Event()
        failure: list[BaseException] = []

        def factory() -> SMTP:
            kwargs: dict[str, Any] = {"hostname": "loopback.example.com", "loop": loop, "timeout": 30,
                                      "enable_SMTPUTF8": self.smtputf8}
            if self.security == "starttls":
                kwargs.update(tls_context=context, require_starttls=True)
            if self.auth is not None:
                excluded = [m for m in ("LOGIN", "PLAIN", "XOAUTH2") if m not in self.auth_mechanisms]
                kwargs.update(authenticator=self._authenticate, auth_required=True,
                              auth_require_tls=self.security == "starttls", auth_exclude_mechanism=excluded)
            with warnings.catch_warnings():  # implicit TLS is TLS, though aiosmtpd cannot tell
                warnings.simplefilter("ignore", UserWarning)
                return _Session(self, **kwargs)

        async def serve() -> None:
            self._server = await loop.create_server(factory, sock=sock, ssl=context if self.security == "tls" else None)

        def run() -> None:
            asyncio.set_event_loop(loop)
            try:
                loop.run_until_complete(serve())
            except BaseException as exc:  # noqa: BLE001 - reported to the starting thread
                failure.append(exc)
                ready.set()
                return
            ready.set()
            loop.run_forever()
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

        self._thread = threading.Thread(target=run, name=f"smtp-{self.port}", daemon=True)
        self._thread.start()
        ready.wait(10)
        if failure:
            raise failure[0]

    def stop(self) -> None:
        loop, self._loop = self._loop, None
        if loop is None:
            return

        async def shutdown() -> None:
            if self._server is not None:
                self._server.close()
            for task in asyncio.all_tasks(loop):
                if task is not asyncio.current_task():
                    task.cancel()

        asyncio.run_coroutine_threadsafe(shutdown(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        if self._thread is not None:
            self._thread.join(10)

    def _authenticate(self, server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> AuthResult:
        if self.auth is None or not isinstance(data, LoginPassword):
            return AuthResult(success=False, handled=False)
        user, password = self.auth
        ok = data.login == user.encode() and data.password == password.encode()
        if not ok and self.echo_credentials:  # some relays do: 535 … password <what was sent>
            given = data.password.decode("utf-8", "replace")
            return AuthResult(success=False, handled=False, message=f"535 5.7.8 bad credentials, password {given}")
        return AuthResult(success=ok, handled=False, auth_data=data.login if ok else None)

    # -- what arrived ------------------------------------------------------------------------

    def wait_for(self, count: int, timeout: float = 10.0) -> list[Received]:
        """Block until ``count`` messages arrived (or the timeout); return them all."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if len(self.messages) >= count:
                    break
            time.sleep(0.01)
        with self.lock:
            return list(self.messages)

    def recipients(self) -> Counter[str]:
        """How many accepted messages each recipient got."""
        with self.lock:
            return Counter(r for message in self.messages for r in message.rcpt_tos)

    def smtp_config(self, **extra: Any) -> dict[str, Any]:
        """The ``smtp:`` section of a cartrescue config pointing at this server."""
        section: dict[str, Any] = {"host": self.host, "port": self.port, "security": self.security,
                                   "backoff": 0.05, "backoff_max": 0.2, "timeout": 10, "pool_size": 4}
        if self.ca_file is not None:
            section["ca_file"] = str(self.ca_file)
        if self.auth is not None:
            section["username"], section["password"] = self.auth
        section.update(extra)
        return section


def _listen(on_connection: Callable[[socket.socket], None]) -> socket.socket:
    """A loopback listener whose connections go to ``on_connection`` (a thread accepts them
    until the listener is closed)."""
    listener = socket.create_server(("127.0.0.1", 0))

    def accept() -> None:
        while True:
            try:
                connection, _ = listener.accept()
            except OSError:
                return
            on_connection(connection)

    threading.Thread(target=accept, daemon=True).start()
    return listener


class SilentRelay:
    """A TCP server that takes connections and never says a word (no greeting): a hung relay."""

    def __init__(self) -> None:
        self.accepted: list[socket.socket] = []
        self.listener = _listen(self.accepted.append)
        self.port = self.listener.getsockname()[1]

    def smtp_config(self, **extra: Any) -> dict[str, Any]:
        return {"host": "127.0.0.1", "port": self.port, "security": "none", **extra}

    def close(self) -> None:
        self.listener.close()
        for connection in self.accepted:
            connection.close()

    def __enter__(self) -> "SilentRelay":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class ClosingRelay:
    """A relay that offers PIPELINING, answers each whole message with ``reply`` and closes the
    connection at once, as Postfix's ``smtp-sink -Q .`` does (421 and a disconnect after every
    message). One thread per connection, plain sockets: the reply and the close leave together.
    ``close=False``: it goes on; ``delay``: seconds before each reply to MAIL, RCPT and DATA
    (a relay whose checks take their time).

    ``early``: recipient pattern (searched) -> a reply (``{address}`` becomes the recipient) sent
    in the same write as the 354, before the client could send the message, as Postfix's
    ``smtp-sink -A 0`` does with its 550. Then, with ``close_early``, the connection closes (as
    smtp-sink's does); without it, the relay reads on in command mode, so each line of a message
    written anyway gets a ``500`` (a real MTA's answer to what is not a command)."""

    def __init__(self, reply: bytes = b"250 2.0.0 queued\r\n", *, close: bool = True, delay: float = 0.0,
                 early: dict[str, bytes] | None = None, close_early: bool = True) -> None:
        self.reply = reply
        self.close_after = close
        self.delay = delay
        self.early = dict(early or {})
        self.close_early = close_early
        self.messages = 0
        self.refused: list[str] = []  # the recipients refused after the 354, in order
        self.not_commands = 0  # lines read in command mode that were no command (a message written anyway)
        self.listener = _listen(lambda connection: threading.Thread(target=self._serve, args=(connection,),
                                                                    daemon=True).start())
        self.port = self.listener.getsockname()[1]

    def _serve(self, connection: socket.socket) -> None:
        with connection, connection.makefile("rb") as lines:
            connection.sendall(b"220 closing.example.com ESMTP\r\n")
            in_data = False
            recipient = ""
            for line in lines:
                if in_data:
                    if line == b".\r\n":
                        self.messages += 1
                        connection.sendall(self.reply)
                        if self.close_after:
                            return  # closed with the reply
                        in_data = False
                    continue
                command = line[:4].upper()
                if command in (b"MAIL", b"RCPT", b"DATA"):
                    time.sleep(self.delay)
                if command == b"EHLO":
                    connection.sendall(b"250-closing.example.com\r\n250-PIPELINING\r\n250 8BITMIME\r\n")
                elif command == b"DATA":
                    early = next((reply for pattern, reply in self.early.items() if re.search(pattern, recipient)),
                                 None)
                    if early is None:
                        in_data = True
                        connection.sendall(b"354 go ahead\r\n")
                        continue
                    self.refused.append(recipient)
                    connection.sendall(b"354 go ahead\r\n" + early.replace(b"{address}", recipient.encode()))
                    if self.close_early:
                        return  # nothing more is read: the message is never taken
                elif command == b"QUIT":
                    connection.sendall(b"221 bye\r\n")
                    return
                elif command in (b"MAIL", b"RCPT", b"RSET", b"NOOP"):
                    if command == b"RCPT":
                        recipient = line[8:].strip().strip(b"<>").decode()
                    connection.sendall(b"250 ok\r\n")
                else:  # not a command: a line of a message written after the relay ended the DATA
                    self.not_commands += 1
                    connection.sendall(b"500 5.5.2 command unrecognized\r\n")

    def smtp_config(self, **extra: Any) -> dict[str, Any]:
        return {"host": "127.0.0.1", "port": self.port, "security": "none", "backoff": 0, **extra}

    def close(self) -> None:
        self.listener.close()

    def __enter__(self) -> "ClosingRelay":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


SMTP_SINK = shutil.which("smtp-sink", path=os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin",
                                                             "/usr/lib/postfix/sbin"]))


class SmtpSink:
    """Postfix's test server ``smtp-sink`` on 127.0.0.1, started with ``flags`` (``-A 0``: a 550
    right behind every 354, then the connection closes). Callers skip when ``SMTP_SINK`` is
    ``None``. As root it runs as ``nobody`` (it refuses to run as root without ``-u``)."""

    host = "127.0.0.1"

    def __init__(self, *flags: str) -> None:
        assert SMTP_SINK is not None, "smtp-sink is not installed (skip the test)"
        user = ["-u", "nobody"] if hasattr(os, "geteuid") and os.geteuid() == 0 else []
        self.errors = tempfile.TemporaryFile()  # a file, not a pipe: nothing it writes can block it
        for _ in range(3):  # the port is free when chosen, not always when smtp-sink binds it
            probe = socket.create_server((self.host, 0))  # smtp-sink cannot be handed a socket
            self.port = probe.getsockname()[1]
            probe.close()
            self.process = subprocess.Popen([SMTP_SINK, *user, *flags, f"{self.host}:{self.port}", "32"],
                                            stdout=subprocess.DEVNULL, stderr=self.errors)
            if self._greets():
                return
            self.close()
        raise RuntimeError(f"smtp-sink did not start: {self.said()!r}")

    def _greets(self) -> bool:
        """smtp-sink itself answers on the port (not another test's server), within 10 s."""
        deadline = time.monotonic() + 10
        while self.process.poll() is None and time.monotonic() < deadline:
            try:
                with socket.create_connection((self.host, self.port), timeout=2) as probe:
                    return probe.recv(64).startswith(b"220 smtp-sink")
            except OSError:
                time.sleep(0.02)
        return False

    def smtp_config(self, **extra: Any) -> dict[str, Any]:
        return {"host": self.host, "port": self.port, "security": "none", "backoff": 0, **extra}

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def said(self) -> str:
        """What smtp-sink wrote to stderr (its warnings)."""
        self.errors.seek(0)
        return self.errors.read().decode("utf-8", "replace")

    def __enter__(self) -> "SmtpSink":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
        self.errors.close()
