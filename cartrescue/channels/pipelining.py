"""ESMTP PIPELINING (RFC 2920) on aiosmtplib's own protocol object.

Owns one thing: writing a group of commands (or a message) at once on a connection aiosmtplib
opened, and reading the replies to that group in order. Connecting, EHLO, STARTTLS, AUTH, RSET
and QUIT stay aiosmtplib's. It must not decide what a reply means (the SMTP channel does), open
connections, or parse replies other than as aiosmtplib's parser does (a one-line reply is read
by a shorter path to the same reply; every other goes to that parser).

One reply may come before it is asked for: after its 354 a relay may refuse the message before
the message is written (Postfix's ``smtp-sink -A 0`` sends its 550 in the same write as the 354,
then closes). That reply is the message's, so the bytes after a 354 are kept for it, where any
other reply nobody asked for is dropped; :func:`early_reply` reads it, on this protocol and on
aiosmtplib's own (whose parser leaves it in the buffer behind the 354 it returned).

Why a subclass, and why it is put on a live connection: aiosmtplib's ``SMTPProtocol`` reads one
reply per awaited ``read_response``. Its ``data_received`` parses only the first complete reply
of a chunk (a second one stays in the buffer until more bytes arrive, which after a pipelined
group never happens) and drops bytes that arrive while a parsed reply waits to be picked up
(``read_response``'s docstring: "if multiple commands are written to the transport without
awaiting, response data will be lost"). ``aiosmtplib.SMTP`` builds that protocol inside its
private ``_create_connection`` with no factory hook. So :func:`enable` turns the connection's
protocol object into a :class:`PipeliningProtocol` (a subclass that only adds a reply queue)
once aiosmtplib has connected. Outside a group it behaves exactly as aiosmtplib's.

What this relies on in aiosmtplib (pinned in pyproject; ``tests/test_smtp_pipelining.py``
fails loudly when it changes): ``SMTP.protocol``; ``SMTPProtocol.write``, ``data_received``,
``connection_lost``, its ``_buffer`` bytearray and ``_read_response_from_buffer()``, which
returns one parsed reply and removes it from the buffer, or ``None`` while incomplete (a
one-line reply is read as it would read it, by :meth:`PipeliningProtocol._next_reply`, and a
test holds the two together), ``protocol.MAX_LINE_LENGTH``; and that
its own ``data_received`` leaves what follows a chunk's first reply in ``_buffer``
(:func:`early_reply` on a connection without PIPELINING; ``tests/test_smtp_faults.py`` has a
relay that sends the 354 and its refusal in one write).
"""

from __future__ import annotations

import asyncio
from collections import deque

import aiosmtplib
from aiosmtplib import SMTPResponse, SMTPResponseException, SMTPServerDisconnected
from aiosmtplib.protocol import MAX_LINE_LENGTH, SMTPProtocol

__all__ = ["PipeliningProtocol", "early_reply", "enable"]

_MAX_PENDING = 64 * 1024  # unparsed reply bytes; far over any real group of replies


class PipeliningProtocol(SMTPProtocol):
    """aiosmtplib's protocol plus a queue for the replies to commands written together.

    Made only by :func:`enable` (the instance already exists), so its own state has class-level
    defaults and is created on first use.
    """

    _owed: int = 0  # replies still to come for what :meth:`send` wrote
    _replies: deque[SMTPResponse] | None = None  # parsed, not yet taken by :meth:`reply`
    _wake: asyncio.Future[None] | None = None  # a reader waiting in :meth:`reply`
    _lost: BaseException | None = None  # why no more replies will come
    _open: bool = False  # the last reply was a 354 and nothing was written since: what comes is the message's

    def send(self, data: bytes, replies: int) -> None:
        """Write ``data`` (commands, or a message) and expect ``replies`` replies to it, in order.

        Raises ``SMTPServerDisconnected`` when the connection is gone (nothing was written).
        """
        if self._lost is not None:
            raise SMTPServerDisconnected("Connection lost")
        if self._replies is None:
            self._replies = deque()
        self._open = False
        self.write(data)
        self._owed += replies

    def early(self) -> SMTPResponse | None:
        """The reply to the message, if the relay sent it after its 354 and before the message
        was written (see :func:`early_reply`); ``None`` when none came, or no 354 is pending.

        Raises ``SMTPResponseException`` for a malformed reply.
        """
        if not self._open or not self._buffer:  # the common case, once a message: nothing to parse
            return None
        reply = early_reply(self)
        if reply is not None:
            self._open = False  # the message's reply is here: anything after it is nobody's
        return reply

    def ready(self) -> SMTPResponse | None:
        """The next reply to what :meth:`send` wrote if it is already here, else ``None``.

        Taking it without awaiting :meth:`reply` lets the caller skip its deadline: a wait
        that never suspends cannot time out, and a deadline (a timer set
        and cancelled on the event loop) cost more than the rest of reading the reply.
        """
        replies = self._replies
        return replies.popleft() if replies else None

    async def reply(self, deadline: float | None = None) -> SMTPResponse:
        """The next reply to what :meth:`send` wrote; returns at once when it is already here.

        ``deadline`` (the event loop's clock): raise ``TimeoutError`` if the reply has not come
        by then. One timer on the waiter, not ``asyncio.timeout``, whose context manager and
        task cancellation cost about twice as much as the rest of a wait, once a message.
        """
        replies = self._replies
        if replies:
            return replies.popleft()
        if self._lost is not None:
            raise self._lost
        if not self._owed or replies is None:
            raise RuntimeError("no reply is expected")
        waiter = self._wake = self._loop.create_future()
        timer = None if deadline is None else self._loop.call_at(deadline, _expire, waiter)
        try:
            await waiter
        finally:
            self._wake = None
            if timer is not None:
                timer.cancel()
        return replies.popleft()

    @property
    def owed(self) -> int:
        """Replies still expected (written commands not answered yet)."""
        return self._owed

    # -- asyncio.Protocol ----------------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        if not self._owed and not self._open:
            super().data_received(data)  # outside a group: aiosmtplib's own reading
            return
        buffer = self._buffer
        buffer.extend(data)
        if len(buffer) > _MAX_PENDING:
            self._fail(SMTPResponseException(-1, "Response too long"))
            return
        if data[-1:] != b"\n":
            return  # in the middle of a line: the rest is on its way
        replies = self._replies
        assert replies is not None
        try:
            while self._owed:
                parsed = self._next_reply()
                if parsed is None:
                    break
                self._owed -= 1
                replies.append(parsed)
                # After a 354 the relay may answer the message before it is written: kept for early().
                self._open = parsed.code == 354
        except SMTPResponseException as exc:  # a malformed reply: nothing after it can be trusted
            self._fail(exc)
            return
        if not self._owed and not self._open:
            del buffer[:]  # nothing was asked: never pair stray bytes with a later command
        waiter = self._wake
        if waiter is not None and replies and not waiter.done():
            waiter.set_result(None)

    def _next_reply(self) -> SMTPResponse | None:
        """The next whole reply, taken off the buffer as ``_read_response_from_buffer()`` takes it
        (``None`` while it is incomplete; ``SMTPResponseException`` for a malformed one).

        A reply of one line, three digits, a space and its text (``250 2.0.0 Ok``: nearly every
        reply of a send), is read here in one slice; any other (several lines, a bare code, a
        line too long, anything not three digits) by aiosmtplib's parser, which builds every reply
        line by line in a bytearray, at about twice the cost, four replies a message.
        """
        buffer = self._buffer
        end = buffer.find(b"\n")
        if 4 <= end < MAX_LINE_LENGTH and buffer[3] == 32 and buffer[:3].isdigit():  # 32: a space
            reply = SMTPResponse(int(buffer[:3]), buffer[4:end + 1].strip(b" \t\r\n").decode("utf-8", "surrogateescape"))
            del buffer[:end + 1]
            return reply
        return self._read_response_from_buffer()

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        if self._lost is None and (self._owed or self._wake is not None):
            lost = SMTPServerDisconnected("Connection lost")
            lost.__cause__ = exc
            self._fail(lost)

    def _fail(self, exc: BaseException) -> None:
        self._lost = exc
        self._owed = 0
        self._open = False
        waiter = self._wake
        if waiter is not None and not waiter.done():
            waiter.set_exception(exc)
        if self.transport is not None:
            self.transport.close()


def early_reply(protocol: SMTPProtocol) -> SMTPResponse | None:
    """A whole reply already in ``protocol``'s buffer behind the 354 it last returned: the reply to
    the message, sent before the message was written (``smtp-sink -A 0``: 550, then it closes).

    Call it right after the 354 and before writing the message. Without it the reply was
    dropped as one nobody had asked for, the message written to a relay that had ended the
    DATA, and the refusal lost (recorded ``unconfirmed``, or the 500s of a relay that read the
    message as commands paired with it and with the next message's commands). aiosmtplib's
    reading parses one reply per read and leaves the rest in the buffer; :class:`PipeliningProtocol`
    keeps the bytes after a 354 for it. ``None`` when no whole reply is there; a partial one
    stays for the reply to the message. Raises ``SMTPResponseException`` for a malformed reply.
    """
    return protocol._read_response_from_buffer() if protocol._buffer else None


def _expire(waiter: asyncio.Future[None]) -> None:
    """A reply's deadline passed (see :meth:`PipeliningProtocol.reply`)."""
    if not waiter.done():
        waiter.set_exception(TimeoutError())


def enable(smtp: aiosmtplib.SMTP) -> PipeliningProtocol | None:
    """Give ``smtp``'s open connection the reply queue of :class:`PipeliningProtocol`.

    ``None`` when the connection's protocol is not aiosmtplib's plain ``SMTPProtocol`` (an
    aiosmtplib that changed): the caller then keeps one command at a time.
    """
    protocol = smtp.protocol
    if isinstance(protocol, PipeliningProtocol):
        return protocol
    if type(protocol) is not SMTPProtocol:
        return None
    protocol.__class__ = PipeliningProtocol
    assert isinstance(protocol, PipeliningProtocol)
    transport = protocol.transport
    if transport is not None:
        # A transport may hold the protocol's bound methods from when it was connected (uvloop
        # keeps ``data_received`` so): handed the protocol again, it takes the subclass's.
        transport.set_protocol(protocol)
    return protocol
