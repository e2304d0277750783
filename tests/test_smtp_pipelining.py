"""ESMTP PIPELINING (RFC 2920) through aiosmtplib's protocol object (issue 13, point 2).

Against the real aiosmtpd server of tests/smtpserver.py, which can advertise PIPELINING or not:
commands are grouped only when the relay offers it (or ``smtp.pipelining`` allows it), every
reply of a group lands on its own message (the fault replies name their recipient, so a reply
paired with the wrong message shows), and the message bodies arrive intact. A scripted server
on loopback sends replies glued together and split in the middle of a line. One test pins the
aiosmtplib internals that cartrescue/channels/pipelining.py relies on.
"""

from __future__ import annotations

import asyncio
import re
from collections import Counter
from collections.abc import Callable
from typing import Any

import aiosmtplib
import pytest
from aiosmtplib import SMTPResponseException
from aiosmtplib.protocol import SMTPProtocol
from hypothesis import example, given, settings as hypothesis_settings
from hypothesis import strategies as st
from smtpserver import Fault, LoopbackSMTP
from test_smtp_faults import deliver, envelope, settings

from cartrescue.channels.base import ListFeed, Outcome, Status
from cartrescue.channels.pipelining import PipeliningProtocol, enable
from cartrescue.channels.smtp import NO_SUCH_USER, SmtpChannel

# The aiosmtplib releases whose protocol internals were checked (pyproject pins the same range).
CHECKED = ((3, 0), (5, 2))


def test_a_channel_runs_on_uvloop_where_installed_and_on_asyncio_when_asked(monkeypatch: pytest.MonkeyPatch) -> None:
    from cartrescue.channels.base import new_event_loop

    uvloop = pytest.importorskip("uvloop", reason="uvloop is not installed (Windows)")
    loop = new_event_loop()
    assert isinstance(loop, uvloop.Loop)
    loop.close()
    monkeypatch.setenv("CARTRESCUE_EVENT_LOOP", "asyncio")
    loop = new_event_loop()
    assert not isinstance(loop, uvloop.Loop) and isinstance(loop, asyncio.AbstractEventLoop)
    loop.close()


def test_the_aiosmtplib_internals_pipelining_relies_on_are_there() -> None:
    """Fails loudly when an aiosmtplib release changes what channels/pipelining.py uses."""
    version = tuple(int(part) for part in re.findall(r"\d+", aiosmtplib.__version__)[:2])
    low, high = CHECKED
    assert low <= version < high, (
        f"aiosmtplib {aiosmtplib.__version__} is outside {low}..{high}, the range whose protocol internals "
        "cartrescue/channels/pipelining.py was checked against: check them and widen the pin in pyproject.toml"
    )
    loop = asyncio.new_event_loop()
    try:
        protocol = SMTPProtocol(loop=loop)
        for name in ("write", "data_received", "connection_lost", "read_response", "_read_response_from_buffer"):
            assert callable(getattr(protocol, name, None)), f"aiosmtplib SMTPProtocol.{name} is gone"
        assert isinstance(protocol._buffer, bytearray), "aiosmtplib SMTPProtocol._buffer is no longer a bytearray"
        protocol._buffer.extend(b"250-first\r\n250 second\r\n354 go ahead\r\n25")
        first = protocol._read_response_from_buffer()  # one reply, taken off the buffer
        assert (first.code, first.message) == (250, "first\nsecond")
        assert bytes(protocol._buffer) == b"354 go ahead\r\n25"
        assert protocol._read_response_from_buffer().code == 354
        assert protocol._read_response_from_buffer() is None  # an incomplete reply stays put
        assert bytes(protocol._buffer) == b"25"
        protocol.__class__ = PipeliningProtocol  # what enable() does to a live connection's protocol
        assert isinstance(protocol, SMTPProtocol) and protocol.owed == 0
        assert hasattr(aiosmtplib.SMTP(), "protocol")
    finally:
        loop.close()


@pytest.mark.smtp
@pytest.mark.parametrize(("advertised", "enabled"), [(True, True), (False, True), (True, False)],
                         ids=["offered", "not-offered", "switched-off"])
def test_commands_are_grouped_only_when_the_relay_offers_pipelining(advertised: bool, enabled: bool) -> None:
    addresses = [f"p{n:02d}@example.com" for n in range(40)]
    with LoopbackSMTP(pipelining=advertised) as server:
        channel = SmtpChannel(settings(server, pool_size=2, pipelining=enabled))
        outcomes = deliver(channel, addresses)
        received = server.wait_for(40)
    assert {o.status for o in outcomes.values()} == {Status.SENT}
    assert server.recipients() == Counter({address: 1 for address in addresses})
    if advertised and enabled:
        assert channel.stats.pipelined == 40
        assert server.pipelined >= 20  # MAIL arrived with its RCPT behind it (most groups come in one read)
    else:
        assert channel.stats.pipelined == 0 and server.pipelined == 0
    for message in received:  # the bodies went through mime.wire_body's dot-stuffing and back
        body = message.parsed().get_body(("plain",)).get_content()
        assert body.replace("\r\n", "\n") == "Hello\n.\n..\nBye"
        assert ("SIZE=" + str(len(message.data))) in message.mail_options


class CountingFeed(ListFeed):
    """A feed that notes each take and how many envelopes were out without an outcome."""

    def __init__(self, envelopes: list) -> None:
        super().__init__(envelopes)
        self.takes: list[int] = []
        self.out = self.most_out = 0

    def take(self, n: int) -> list:
        taken = super().take(n)
        if taken:
            self.takes.append(n)
        self.out += len(taken)
        self.most_out = max(self.most_out, self.out)
        return taken

    def done(self, outcome: Outcome) -> None:
        super().done(outcome)
        self.out -= 1


@pytest.mark.smtp
def test_connections_free_together_take_their_messages_in_one_claim() -> None:
    """The feed claims in the ledger on take: the pool's first messages are one take(4), never
    more than one a free connection; in flight at most two a connection (one written and
    waiting for its reply, the next one's commands behind it)."""
    with LoopbackSMTP() as server:
        channel = SmtpChannel(settings(server, pool_size=4))
        feed = CountingFeed([envelope(n, f"f{n}@example.com") for n in range(60)])
        try:
            channel.run(feed)
        finally:
            channel.close()
        server.wait_for(60)
    assert [o.status for o in feed.outcomes] == [Status.SENT] * 60
    assert feed.takes[0] == 4 and max(feed.takes) <= 4 and len(feed.takes) < 60
    assert feed.most_out <= 2 * 4


FAULTS = [  # every time: a message whose commands were cut off with a dropped connection goes again
    Fault(r"^busy", "421 4.3.2 <{address}> closing, try later"),
    Fault(r"^grey", "451 4.7.1 <{address}> greylisted"),
    Fault(r"^gone", "550 5.1.1 <{address}> no such user"),
    Fault(r"^spam", "554 5.7.1 <{address}> message refused", stage="DATA"),
    Fault(r"^full", "452 4.3.1 <{address}> insufficient storage", stage="DATA"),
    Fault(r"^quit", "421 4.3.0 <{address}> shutting down", stage="DATA"),
]
KINDS = ("ok", "busy", "grey", "gone", "spam", "full", "quit")


@pytest.mark.smtp
@pytest.mark.parametrize("loop", ["uvloop", "asyncio"])
@pytest.mark.parametrize("pipelining", [True, False], ids=["pipelined", "stepwise"])
def test_fault_replies_in_a_pipelined_batch_land_on_their_own_message(
        pipelining: bool, loop: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """421, 451 and 550 to RCPT, 452, 421 and 554 to the message, among plain messages: with no
    retries every outcome carries the reply the server gave *its* recipient, on either event loop
    (uvloop keeps the protocol's ``data_received`` from when it connected: enable() hands the
    switched protocol back to the transport)."""
    if loop == "uvloop":
        pytest.importorskip("uvloop", reason="uvloop is not installed (Windows)")
    monkeypatch.setenv("CARTRESCUE_EVENT_LOOP", loop)
    addresses = [f"{kind}{n}@example.com" for n in range(5) for kind in KINDS]
    with LoopbackSMTP(faults=[Fault(f.pattern, f.action, f.stage, f.times) for f in FAULTS],
                      pipelining=pipelining) as server:
        channel = SmtpChannel(settings(server, pool_size=2, retries=0))
        outcomes = deliver(channel, addresses)
        accepted = server.recipients()
    expected = {
        "busy": (Status.TRANSIENT, "421 4.3.2 <{}> closing, try later"),
        "grey": (Status.TRANSIENT, "451 4.7.1 <{}> greylisted"),
        "gone": (Status.PERMANENT, "550 5.1.1 <{}> no such user"),
        "spam": (Status.PERMANENT, "554 5.7.1 <{}> message refused"),
        "full": (Status.TRANSIENT, "452 4.3.1 <{}> insufficient storage"),
        "quit": (Status.TRANSIENT, "421 4.3.0 <{}> shutting down"),
    }
    for address, outcome in outcomes.items():
        kind = re.sub(r"\d+@example\.com$", "", address)
        if kind == "ok":
            assert outcome.status is Status.SENT and outcome.reply.startswith("250 "), address
            assert accepted[address] == 1, address
            continue
        status, reply = expected[kind]
        assert (outcome.status, outcome.reply) == (status, reply.format(address)), address
        assert accepted[address] == 0, address
        assert outcome.suppress == (NO_SUCH_USER if kind == "gone" else "")
    assert len(outcomes) == len(addresses)
    assert (channel.stats.pipelined > 0) is pipelining


# -- replies however the bytes arrive: a scripted server ----------------------------------------


async def scripted_session(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Greeting, EHLO with PIPELINING; then the replies to one group glued together and split
    in the middle of a line, a multi-line RCPT reply, and the reply to the message."""
    writer.write(b"220 scripted ESMTP\r\n")
    assert (await reader.readline()).startswith(b"EHLO")
    writer.write(b"250-scripted\r\n250-PIPELINING\r\n250 SIZE 100000\r\n")
    for expected in (b"MAIL FROM:<shop@example.com>", b"RCPT TO:<a@example.com>", b"DATA"):
        assert (await reader.readline()).startswith(expected)
    writer.write(b"250 2.1.0 sender ok\r\n250-2.1.5 recipient\r\n250 2.1.5 ok\r\n35")
    await writer.drain()
    await asyncio.sleep(0.05)
    writer.write(b"4 go ahead\r\n")
    body = await reader.readuntil(b"\r\n.\r\n")
    writer.write(b"250 2.0.0 queued " + str(len(body)).encode() + b"\r\n")
    assert (await reader.readline()).startswith(b"QUIT")
    writer.write(b"221 bye\r\n")
    await writer.drain()
    writer.close()


async def _pipelining_to(session: Any) -> tuple[asyncio.Server, aiosmtplib.SMTP]:
    """A loopback server running ``session``, and a client of it that is not connected yet."""
    server = await asyncio.start_server(session, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    return server, aiosmtplib.SMTP(hostname="127.0.0.1", port=port, start_tls=False, use_tls=False, timeout=5)


async def _greeted(smtp: aiosmtplib.SMTP) -> PipeliningProtocol:
    """``smtp`` connected, past EHLO, with the pipelining protocol on its connection."""
    await smtp.connect()
    await smtp.ehlo()
    pipe = enable(smtp)
    assert pipe is not None
    return pipe


def test_replies_are_read_in_order_however_the_bytes_arrive() -> None:
    async def scenario() -> list[tuple[int, str]]:
        server, smtp = await _pipelining_to(scripted_session)
        try:
            pipe = await _greeted(smtp)
            pipe.send(b"MAIL FROM:<shop@example.com>\r\nRCPT TO:<a@example.com>\r\nDATA\r\n", 3)
            got = [await pipe.reply() for _ in range(3)]
            pipe.send(b"Subject: x\r\n\r\nhi\r\n.\r\n", 1)
            got.append(await asyncio.wait_for(pipe.reply(), 5))
            assert pipe.owed == 0
            await smtp.quit()  # outside a group: aiosmtplib's own reading
            return [(reply.code, reply.message) for reply in got]
        finally:
            smtp.close()
            server.close()
            await server.wait_closed()

    replies = asyncio.run(asyncio.wait_for(scenario(), 10))
    assert replies == [(250, "2.1.0 sender ok"), (250, "2.1.5 recipient\n2.1.5 ok"), (354, "go ahead"),
                       (250, "2.0.0 queued 21")]


def refusing_after_354(steps: list[asyncio.Event]) -> Any:
    """A session: a group whose DATA is refused, with a reply nobody asked for behind it; then a
    group answered 354 and, before any message came, a refusal in two writes, each when its
    step is set (``smtp-sink -A 0`` sends it with the 354, ``-A 1`` a second later)."""
    async def session(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"220 early ESMTP\r\n")
        await reader.readline()
        writer.write(b"250-early\r\n250 PIPELINING\r\n")
        for _ in range(3):
            await reader.readline()
        writer.write(b"250 2.1.0 ok\r\n550 5.1.1 no such user\r\n554 5.5.1 no valid recipients\r\n"
                     b"250 2.0.0 nobody asked\r\n")
        for _ in range(3):
            await reader.readline()
        writer.write(b"250 2.1.0 sender ok\r\n250 2.1.5 ok\r\n354 go ahead\r\n")
        for step, piece in zip(steps, (b"55", b"0 5.7.1 not this one\r\n")):
            await writer.drain()
            await step.wait()
            writer.write(piece)
        await writer.drain()
        await reader.read()  # nothing more is written: the client closes
        writer.close()

    return session


async def _until(condition: Callable[[], object]) -> None:
    """Wait (at most 5 s) for bytes on their way over loopback."""
    for _ in range(500):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("not within 5 s")


def test_a_reply_after_a_354_is_kept_for_the_message_and_any_other_unasked_reply_is_dropped() -> None:
    """The bytes behind a 354 are the message's reply, even split and come while no reply was
    owed (``early()``); a reply behind any other last reply of a group is nobody's and never
    pairs with the next group."""
    async def scenario() -> list[tuple[int, str]]:
        steps = [asyncio.Event(), asyncio.Event()]
        server, smtp = await _pipelining_to(refusing_after_354(steps))
        try:
            pipe = await _greeted(smtp)
            pipe.send(b"MAIL FROM:<shop@example.com>\r\nRCPT TO:<a@example.com>\r\nDATA\r\n", 3)
            got = [((r := await pipe.reply()).code, r.message) for _ in range(3)]
            assert pipe.early() is None  # no 354: the stray 250 is nobody's
            pipe.send(b"MAIL FROM:<shop@example.com>\r\nRCPT TO:<b@example.com>\r\nDATA\r\n", 3)
            got += [((r := await pipe.reply()).code, r.message) for _ in range(3)]
            assert pipe.early() is None  # nothing yet
            steps[0].set()
            await _until(lambda: bytes(pipe._buffer) == b"55")  # kept, not dropped as nobody's
            assert pipe.early() is None  # a part: it waits for the rest
            steps[1].set()
            early: list[Any] = []
            await _until(lambda: early.append(pipe.early()) or early[-1] is not None)
            assert pipe.early() is None and pipe.owed == 0  # taken once
            return got + [(early[-1].code, early[-1].message)]
        finally:
            smtp.close()
            server.close()
            await server.wait_closed()

    replies = asyncio.run(asyncio.wait_for(scenario(), 10))
    assert replies == [(250, "2.1.0 ok"), (550, "5.1.1 no such user"), (554, "5.5.1 no valid recipients"),
                       (250, "2.1.0 sender ok"), (250, "2.1.5 ok"), (354, "go ahead"),
                       (550, "5.7.1 not this one")]


# -- deadlines: only a wait that suspends can time out ------------------------------------------


class _QueuedPipe:
    """A pipe whose replies are all here already (``ready``), or never come (``reply`` waits)."""

    def __init__(self, queued: list[tuple[int, str]]) -> None:
        from collections import deque

        from aiosmtplib import SMTPResponse

        self.queued = deque(SMTPResponse(code, message) for code, message in queued)
        self.sent: list[bytes] = []
        self.deadlines: list[float] = []  # one for each reply that had to be waited for

    def send(self, data: bytes, replies: int) -> None:
        self.sent.append(data)

    def ready(self) -> object:
        return self.queued.popleft() if self.queued else None

    def early(self) -> object:
        return None  # the relay never answers a message before it is written

    async def reply(self, deadline: float | None = None) -> object:
        assert deadline is not None, "a reply was waited for without a deadline"
        self.deadlines.append(deadline - asyncio.get_running_loop().time())
        if self.queued:
            return self.queued.popleft()
        await asyncio.sleep(max(0.0, deadline - asyncio.get_running_loop().time()))  # no reply comes
        raise TimeoutError


def _pipelined(pipe: _QueuedPipe, *, timeout: float = 30.0, data_timeout: float = 600.0,
               started: bool = True) -> tuple[object, str]:
    from cartrescue.channels.smtp import _Job, _Slot

    channel = SmtpChannel(settings_like(timeout=timeout, data_timeout=data_timeout))
    job = _Job(claim_id=1, rcpt=b"a@example.com", wire=b"hi\r\n.\r\n", size=7, utf8=False, body8=False,
               message=None)  # type: ignore[arg-type]
    job.stage = "MAIL"

    async def nothing_next(slot: object, batch: object) -> None:
        return None

    channel._take_next = nothing_next  # type: ignore[method-assign]

    async def scenario() -> object:
        from types import SimpleNamespace

        running = SimpleNamespace(stopping=False)  # the batch, as far as the message's path asks it
        return await channel._pipelined(_Slot(), pipe, job, running, started)  # type: ignore[arg-type]

    return asyncio.run(scenario()), job.stage


class _ClosedAfterReplyPipe(_QueuedPipe):
    """The message's reply came, and the relay closed at once (``smtp-sink -Q .``): writing the
    next message's group meets the closed connection."""

    def send(self, data: bytes, replies: int) -> None:
        from aiosmtplib import SMTPServerDisconnected

        if data.startswith(b"MAIL"):
            raise SMTPServerDisconnected("Connection lost")
        super().send(data, replies)


@pytest.mark.parametrize("code", [250, 421, 550])
def test_a_reply_read_before_the_relay_closed_is_the_messages_outcome_and_the_next_waits(code: int) -> None:
    """It came while the next message was claimed; the write of that one's commands failed, and
    the message was recorded unconfirmed: a 250 taken for maybe-sent (and resent by
    --resend-unconfirmed), a 421 never retried, a 550 never a bounce."""
    from collections import deque
    from types import SimpleNamespace

    from cartrescue.channels.smtp import _Job, _Slot

    channel = SmtpChannel(settings_like())
    job = _Job(claim_id=1, rcpt=b"a@example.com", wire=b"hi\r\n.\r\n", size=7, utf8=False, body8=False,
               message=None)  # type: ignore[arg-type]
    follow = _Job(claim_id=2, rcpt=b"b@example.com", wire=b"ho\r\n.\r\n", size=7, utf8=False, body8=False,
                  message=None)  # type: ignore[arg-type]
    follow.attempts = 1
    batch = SimpleNamespace(ready=deque(), stopping=False)

    async def the_follower(slot: object, work: object) -> object:
        return follow

    channel._take_next = the_follower  # type: ignore[method-assign]
    pipe = _ClosedAfterReplyPipe([(250, "sender ok"), (250, "rcpt ok"), (354, "go ahead"), (code, "bye")])

    async def scenario() -> object:
        return await channel._pipelined(_Slot(), pipe, job, batch, True)  # type: ignore[arg-type]

    reply = asyncio.run(scenario())
    assert (reply.code, reply.message, job.stage) == (code, "bye", "DOT")  # type: ignore[attr-defined]
    assert list(batch.ready) == [follow] and follow.attempts == 0  # nothing of it went out


def settings_like(**changes: float) -> object:
    import dataclasses

    from cartrescue.channels.smtp import SmtpSettings

    base = SmtpSettings(host="127.0.0.1", port=25, security="none", envelope_from="shop@example.com")
    return dataclasses.replace(base, **changes)


def test_replies_already_here_are_taken_without_setting_a_deadline(monkeypatch: pytest.MonkeyPatch) -> None:
    """A follower's MAIL, RCPT and DATA replies (and often its message's) came with the last
    message's reply: taking them sets no deadline (a timer per wait cost more than reading the
    reply), and each still moves the job on its stages and ends in the message's reply."""
    def no_deadline(delay: float | None) -> object:
        raise AssertionError(f"a deadline ({delay} s) was set for a reply that was already here")

    monkeypatch.setattr(asyncio, "timeout", no_deadline)
    pipe = _QueuedPipe([(250, "sender ok"), (250, "rcpt ok"), (354, "go ahead"), (250, "queued")])
    reply, stage = _pipelined(pipe)
    assert (reply.code, reply.message, stage) == (250, "queued", "DOT")  # type: ignore[attr-defined]
    assert pipe.sent == [b"hi\r\n.\r\n"]
    assert pipe.deadlines == []


def test_a_421_already_here_ends_the_group_without_a_deadline(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_deadline(delay: float | None) -> object:
        raise AssertionError(f"a deadline ({delay} s) was set after a 421 that was already here")

    monkeypatch.setattr(asyncio, "timeout", no_deadline)
    from cartrescue.channels.smtp import _Refused

    pipe = _QueuedPipe([(421, "closing")])
    with pytest.raises(_Refused) as refused:
        _pipelined(pipe)
    assert (refused.value.code, refused.value.stage) == (421, "MAIL")
    assert pipe.deadlines == []


@pytest.mark.parametrize("queued", [[], [(250, "sender ok")], [(250, "a"), (250, "b"), (354, "c")]],
                         ids=["group-none-here", "group-one-here", "message-reply-not-here"])
def test_a_reply_that_is_not_here_yet_still_waits_under_its_deadline(queued: list[tuple[int, str]]) -> None:
    """The replies to MAIL, RCPT and DATA wait at most ``smtp.timeout``, the message's at most
    ``smtp.data_timeout``, when they have to be waited for."""
    pipe = _QueuedPipe(queued)
    with pytest.raises(TimeoutError):
        _pipelined(pipe, timeout=0.05, data_timeout=0.1)
    expected = 0.1 if len(queued) == 3 else 0.05  # the message's reply: data_timeout
    assert pipe.deadlines and expected - 0.04 < pipe.deadlines[-1] <= expected


async def silent_after_data(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Greeting, EHLO with PIPELINING, the group's replies on time; then no reply to the message."""
    writer.write(b"220 slow ESMTP\r\n")
    await reader.readline()
    writer.write(b"250-slow\r\n250 PIPELINING\r\n")
    for _ in range(3):
        await reader.readline()
    writer.write(b"250 ok\r\n250 ok\r\n354 go ahead\r\n")
    await reader.readuntil(b"\r\n.\r\n")
    await asyncio.sleep(5)  # the reply to the message never comes in time
    writer.close()


def test_a_reply_not_here_by_its_deadline_raises_timeout_and_leaves_no_timer() -> None:
    """``reply(deadline)``: a reply that comes in time is returned and its timer cancelled (no
    late TimeoutError on a later wait); one that does not come by the deadline raises
    ``TimeoutError``, the error the channel maps to "no reply within smtp.timeout"."""
    async def scenario() -> float:
        server, smtp = await _pipelining_to(silent_after_data)
        loop = asyncio.get_running_loop()
        try:
            pipe = await _greeted(smtp)
            pipe.send(b"MAIL FROM:<shop@example.com>\r\nRCPT TO:<a@example.com>\r\nDATA\r\n", 3)
            deadline = loop.time() + 0.2
            assert [(await pipe.reply(deadline)).code for _ in range(3)] == [250, 250, 354]
            await asyncio.sleep(0.3)  # past the group's deadline: its timer must be gone
            pipe.send(b"Subject: x\r\n\r\nhi\r\n.\r\n", 1)
            started = loop.time()
            with pytest.raises(TimeoutError):
                await pipe.reply(started + 0.2)
            return loop.time() - started
        finally:
            smtp.close()
            server.close()

    waited = asyncio.run(asyncio.wait_for(scenario(), 10))
    assert 0.15 < waited < 2


def _replies_read(buffer: bytes, read: Callable[[SMTPProtocol], Any]) -> tuple[list[Any], bytes]:
    """What ``read`` takes off a protocol's buffer holding ``buffer``, reply after reply, until
    it has no whole reply (``None``) or raises; and what it leaves."""
    loop = asyncio.new_event_loop()
    try:
        protocol = SMTPProtocol(loop=loop)
        protocol.__class__ = PipeliningProtocol
        protocol._buffer.extend(buffer)
        got: list[Any] = []
        while True:
            try:
                reply = read(protocol)
            except SMTPResponseException as exc:
                got.append(("raised", exc.code, exc.message))
                break
            if reply is None:
                break
            got.append((type(reply), reply.code, reply.message))
        return got, bytes(protocol._buffer)
    finally:
        loop.close()


_REPLY_PIECES = st.sampled_from([b"250", b"354", b"421", b"25", b"2x0", b" 25", b"+25", b"2_5", b"\xd9\xa3\xd9\xa4\xd9\xa5",
                                 b" ", b"-", b"\t", b"2.0.0 Ok", b"caf\xc3\xa9", b"\xff", b" \t", b"\r\n", b"\n", b"\r"])


@hypothesis_settings(max_examples=500, deadline=None)
@given(st.lists(_REPLY_PIECES, max_size=14).map(b"".join))
@example(b"250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n354 End data with <CR><LF>.<CR><LF>\r\n")
@example(b"250 \r\n250\r\n250-a\r\n250 b\r\n")
@example(b"250 " + b"x" * 8186 + b"\r\n")  # the longest line aiosmtplib takes
@example(b"250 " + b"x" * 8187 + b"\r\n")  # one octet more: refused as too long
@example(b"250 ok\r\n25")
def test_a_reply_is_read_off_the_buffer_as_aiosmtplibs_parser_reads_it(buffer: bytes) -> None:
    """The short path for one-line replies gives the replies, the refusals of malformed ones and
    the bytes left behind that aiosmtplib's own ``_read_response_from_buffer`` gives."""
    assert _replies_read(buffer, PipeliningProtocol._next_reply) == \
        _replies_read(buffer, SMTPProtocol._read_response_from_buffer)
