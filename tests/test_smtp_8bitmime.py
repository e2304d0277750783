"""8BITMIME (RFC 6152): UTF-8 bodies go out as ``8bit`` to a relay that offers it, encoded for one that does not.

Against the real aiosmtpd server (which offers 8BITMIME), a message with Swedish text goes out
with ``MAIL FROM:<…> BODY=8BITMIME`` and ``Content-Transfer-Encoding: 8bit`` parts: no
quoted-printable to compute, fewer bytes on the wire. Against one that does not offer it, the
same message (same Message-ID, same text) goes out 7-bit, quoted-printable, without ``BODY=``.
Messages written to files (the outbox) keep 7-bit bodies.
"""

from __future__ import annotations

from datetime import datetime, timezone

import pytest
from smtpserver import LoopbackSMTP, Received
from test_smtp_faults import settings

from cartrescue.channels.base import Envelope, Status
from cartrescue.channels.smtp import SmtpChannel
from cartrescue.compose.mime import build_message
from cartrescue.model import Address, OutgoingMessage
from conftest import Shop, cart

pytestmark = pytest.mark.smtp

TEXT = "Hej Åsa,\n\ndin varukorg väntar: Fjällräven Kånken, 1 095 kr.\n.\nHälsningar"
HTML = "<p>Hej Åsa,</p>\n<p>din varukorg väntar: <b>Fjällräven Kånken</b>, 1 095 kr.</p>"


def _message(number: int) -> OutgoingMessage:
    return OutgoingMessage(
        message_id=f"<m{number}@example.com>", sender=Address("shop@example.com", "Butiken"),
        to=Address(f"kund{number}@example.com", "Åsa"), subject="Din varukorg", text=TEXT, html=HTML,
        date=datetime(2026, 11, 20, 10, tzinfo=timezone.utc))


def _send(server: LoopbackSMTP, count: int = 3) -> list[Received]:
    channel = SmtpChannel(settings(server))
    try:
        outcomes = list(channel.deliver([Envelope(n, None, _message(n)) for n in range(count)]))  # type: ignore[arg-type]
    finally:
        channel.close()
    assert {outcome.status for outcome in outcomes} == {Status.SENT}
    return server.wait_for(count)


def _texts(received: Received) -> tuple[str, str]:
    parsed = received.parsed()
    return (parsed.get_body(("plain",)).get_content().replace("\r\n", "\n"),
            parsed.get_body(("html",)).get_content().replace("\r\n", "\n"))


@pytest.mark.parametrize("pipelining", [True, False], ids=["pipelined", "stepwise"])
def test_a_utf8_body_goes_out_as_8bit_with_body_8bitmime_where_the_relay_offers_it(pipelining: bool) -> None:
    with LoopbackSMTP(pipelining=pipelining) as server:
        received = _send(server)
    for message in received:
        assert "BODY=8BITMIME" in message.mail_options
        assert _ctes(message.data) == ("8bit", ["8bit", "8bit"])
        assert "väntar: Fjällräven Kånken".encode() in message.data  # the text itself, not encoded
        assert _texts(message) == (TEXT, HTML)


@pytest.mark.parametrize("pipelining", [True, False], ids=["pipelined", "stepwise"])
def test_a_relay_without_8bitmime_gets_the_same_message_in_7bit(pipelining: bool) -> None:
    with LoopbackSMTP(pipelining=pipelining, eightbitmime=False) as server:
        received = _send(server)
    for number, message in enumerate(sorted(received, key=lambda m: m.rcpt_tos[0])):
        assert not any(option.upper().startswith("BODY=") for option in message.mail_options)
        assert message.data.isascii() and b"Content-Transfer-Encoding: 8bit" not in message.data
        assert message.parsed()["Message-ID"] == f"<m{number}@example.com>"
        assert _texts(message) == (TEXT, HTML)


def test_an_ascii_message_goes_without_body_8bitmime_though_the_relay_offers_it() -> None:
    """Only a message with an 8-bit octet asks for 8BITMIME: an ASCII one (a UTF-8 name in its
    header goes as an encoded-word) is sent as it always was, 7-bit, no ``BODY=``."""
    plain = OutgoingMessage(
        message_id="<ascii@example.com>", sender=Address("shop@example.com", "Butiken"),
        to=Address("kund@example.com", "Åsa"), subject="Your cart", text="Hello,\n.\nyour cart waits",
        html="<p>Hello, your cart waits</p>", date=datetime(2026, 11, 20, 10, tzinfo=timezone.utc))
    with LoopbackSMTP() as server:
        channel = SmtpChannel(settings(server))
        try:
            outcomes = list(channel.deliver([Envelope(1, None, plain)]))  # type: ignore[arg-type]
        finally:
            channel.close()
        assert [outcome.status for outcome in outcomes] == [Status.SENT]
        (message,) = server.wait_for(1)
    assert not any(option.upper().startswith("BODY=") for option in message.mail_options)
    assert message.data.isascii() and _ctes(message.data) == (None, ["7bit", "7bit"])


def test_an_address_that_needs_smtputf8_keeps_it_while_its_body_goes_7bit_to_a_relay_without_8bitmime() -> None:
    message = _message(1)
    utf8 = OutgoingMessage(message.message_id, message.sender, Address("åsa@example.com", "Åsa"), message.subject,
                           TEXT, HTML, message.date)
    with LoopbackSMTP(smtputf8=True, eightbitmime=False) as server:
        channel = SmtpChannel(settings(server))
        try:
            outcomes = list(channel.deliver([Envelope(1, None, utf8)]))  # type: ignore[arg-type]
        finally:
            channel.close()
        (received,) = server.wait_for(1)
    assert [outcome.status for outcome in outcomes] == [Status.SENT]
    assert "SMTPUTF8" in received.mail_options
    assert not any(option.upper().startswith("BODY=") for option in received.mail_options)
    body = received.data[received.data.index(b"\r\n\r\n"):]
    assert body.isascii() and b"Content-Transfer-Encoding: 8bit" not in body
    assert _texts(received) == (TEXT, HTML)


def _ctes(data: bytes) -> tuple[str | None, list[str]]:
    """The Content-Transfer-Encoding of the whole message and of each part."""
    parsed = Received("", (), data, 0.0).parsed()
    return parsed["Content-Transfer-Encoding"], [part["Content-Transfer-Encoding"] for part in parsed.iter_parts()]


def test_a_multipart_with_an_8bit_part_is_labelled_8bit_itself() -> None:
    """RFC 2045 6.4: a multipart that says nothing is 7bit, and "labelling unencoded data
    containing 8bit characters as 7bit is not allowed": with an 8bit part inside, it says 8bit."""
    message = _message(1)
    assert _ctes(build_message(message, eight_bit=True)) == ("8bit", ["8bit", "8bit"])
    html_only = OutgoingMessage(message.message_id, message.sender, message.to, message.subject, "Hello", HTML,
                                message.date)
    assert _ctes(build_message(html_only, eight_bit=True)) == ("8bit", ["7bit", "8bit"])
    assert _ctes(build_message(message)) == (None, ["quoted-printable", "quoted-printable"])  # 7bit by default


def test_eight_bit_leaves_ascii_bodies_7bit_and_encodes_lines_past_998_octets() -> None:
    message = _message(1)
    ascii_only = build_message(OutgoingMessage(message.message_id, message.sender, message.to, message.subject,
                                               "Hello", "<p>Hello</p>", message.date), eight_bit=True)
    assert _ctes(ascii_only) == (None, ["7bit", "7bit"])
    long_line = "å" * 600  # 1,200 octets in UTF-8: too long for an 8bit line
    data = build_message(OutgoingMessage(message.message_id, message.sender, message.to, message.subject,
                                         long_line, HTML, message.date), eight_bit=True)
    assert _ctes(data) == ("8bit", ["base64", "8bit"])  # the text part's line is too long for 8bit
    assert max(len(line) for line in data.split(b"\r\n")) <= 998


def test_run_send_sends_8bit_bodies_and_the_outbox_keeps_7bit_files(shop: Shop) -> None:
    with LoopbackSMTP() as server:
        shop.configure(smtp=server.smtp_config())
        shop.add(cart("c1", email="kund@example.com", first_name="Åsa", items=[("SKU-1", "Kånken ryggsäck", 1, "1095.00")]))
        result = shop.cli("run", "--send", "--json")
        assert result.exit_code == 0, result.output
        (sent,) = server.wait_for(1)
    assert "BODY=8BITMIME" in sent.mail_options and b"Content-Transfer-Encoding: 8bit" in sent.data
    assert "Kånken ryggsäck" in sent.parsed().get_body(("html",)).get_content()
    shop.add(cart("c2", email="kund2@example.com", first_name="Åsa", items=[("SKU-1", "Kånken ryggsäck", 1, "1095.00")]))
    outbox = shop.folder / "out"
    assert shop.cli("run", "--outbox", str(outbox), "--json").exit_code == 0
    (written,) = outbox.glob("*.eml")
    assert written.read_bytes().isascii()
