"""Addresses with a non-ASCII local part (issue 8, point 3): SMTPUTF8 where the relay offers it.

``åsa@example.com`` cannot be written in ASCII. Against the real aiosmtpd server with
SMTPUTF8 on, it goes out with ``MAIL FROM:<…> SMTPUTF8`` and raw UTF-8 in RCPT and the address
headers (RFC 6531/6532); against one without it, the message is ``failed_transient`` with the
reason "relay does not offer SMTPUTF8" — no crash, nothing sent, the other messages unaffected,
and the next run tries again.
"""

from __future__ import annotations

from collections import Counter

import pytest
from smtpserver import LoopbackSMTP
from test_smtp_faults import deliver, rows_by_email, settings

from cartrescue.channels.base import Status
from cartrescue.channels.smtp import SmtpChannel
from conftest import Shop, cart

pytestmark = pytest.mark.smtp


@pytest.mark.parametrize("pipelining", [True, False], ids=["pipelined", "stepwise"])
def test_a_non_ascii_address_goes_out_with_smtputf8_where_the_relay_offers_it(pipelining: bool) -> None:
    addresses = ["åsa@example.com", "jöns.öberg@exämple.se", "plain@example.com"]
    with LoopbackSMTP(smtputf8=True, pipelining=pipelining) as server:
        outcomes = deliver(SmtpChannel(settings(server)), addresses)
        received = {message.rcpt_tos[0]: message for message in server.wait_for(3)}
    assert {address: outcome.status for address, outcome in outcomes.items()} == dict.fromkeys(addresses, Status.SENT)
    assert set(received) == set(addresses)  # RCPT carried the address in UTF-8
    for address in addresses[:2]:
        message = received[address]
        assert "SMTPUTF8" in message.mail_options
        parsed = message.parsed()  # policy=email.policy.SMTPUTF8
        to = parsed["To"].addresses[0]
        assert (to.username, to.domain, to.display_name) == (*address.split("@"), "Kim")
        assert parsed.get_body(("plain",)).get_content().replace("\r\n", "\n") == "Hello\n.\n..\nBye"
    plain = received["plain@example.com"]
    assert "SMTPUTF8" not in plain.mail_options and plain.data.isascii()


def test_without_smtputf8_such_an_address_fails_transiently_with_the_reason() -> None:
    with LoopbackSMTP(smtputf8=False) as server:
        outcomes = deliver(SmtpChannel(settings(server)), ["åsa@example.com", "plain@example.com"])
        server.wait_for(1)
        assert server.attempts["åsa@example.com"] == 0  # never offered to the relay
    utf8 = outcomes["åsa@example.com"]
    assert utf8.status is Status.TRANSIENT and utf8.reply.startswith("relay does not offer SMTPUTF8")
    assert outcomes["plain@example.com"].status is Status.SENT
    assert server.recipients() == Counter({"plain@example.com": 1})


def test_run_send_skips_with_the_reason_then_sends_once_the_relay_offers_smtputf8(shop: Shop) -> None:
    shop.add(cart("c1", email="åsa@example.com"), cart("c2"))
    with LoopbackSMTP(smtputf8=False) as server:
        shop.configure(smtp=server.smtp_config())
        first = shop.cli("run", "--send", "--json")
        assert server.recipients() == Counter({"c2@example.com": 1})
    assert first.exit_code == 1  # a failure, reported, that the next run retries
    results = {row["cart_id"]: row for row in first.json["decisions"]}
    assert results["c1"]["delivery"] == "failed_transient"
    assert results["c1"]["detail"].startswith("relay does not offer SMTPUTF8")

    with LoopbackSMTP(smtputf8=True) as server:
        shop.configure(smtp=server.smtp_config())
        second = shop.cli("run", "--send", "--json")
        assert second.exit_code == 0, second.output
        (message,) = server.wait_for(1)
    assert message.rcpt_tos == ("åsa@example.com",) and "SMTPUTF8" in message.mail_options
    rows = rows_by_email(shop)
    assert rows["åsa@example.com"]["status"] == "sent" and rows["åsa@example.com"]["attempts"] == 2
