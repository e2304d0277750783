"""`run --send` against a real SMTP server on loopback: N carts -> N messages, each once, complete.

Every test runs the real CLI (conftest's ``shop``) against :class:`tests.smtpserver.LoopbackSMTP`
(aiosmtpd in a thread): plain, STARTTLS and implicit TLS with a certificate made at test time,
AUTH LOGIN and PLAIN. Nothing is mocked.
"""

from __future__ import annotations

import re
import time
from collections import Counter
from datetime import timedelta
from pathlib import Path

import pytest
from smtpserver import LoopbackSMTP

from cartrescue.ledger import Ledger
from conftest import NOW, Shop, cart

pytestmark = pytest.mark.smtp

UNSUBSCRIBE = re.compile(r"https://shop\.example\.com/unsubscribe\?token=[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+")


def ledger_rows(shop: Shop) -> list[dict]:
    ledger = Ledger(f"sqlite:///{shop.folder / 'ledger.db'}")
    try:
        return ledger.messages()
    finally:
        ledger.close()


def send(shop: Shop, server: LoopbackSMTP, *args: str, **smtp: object):
    shop.configure(smtp=server.smtp_config(**smtp))
    return shop.cli("run", "--send", "--json", *args)


def names(count: int, prefix: str = "c") -> list[str]:
    return [f"{prefix}{number:03d}" for number in range(count)]


def test_n_carts_arrive_once_each_with_headers_and_both_parts(shop: Shop) -> None:
    carts = names(30)
    shop.add(*(cart(name, first_name="Åsa", locale="sv" if i % 3 == 0 else "en") for i, name in enumerate(carts)))
    with LoopbackSMTP() as server:
        result = send(shop, server)
        assert result.exit_code == 0, result.output
        received = server.wait_for(30)
        again = send(shop, server)  # the same moment again: every step is done
        assert again.exit_code == 0, again.output
        time.sleep(0.2)
        assert len(server.messages) == 30
    assert result.json["counts"]["sent"] == 30
    assert again.json["counts"]["sent"] == 0
    assert server.recipients() == Counter({f"{name}@example.com": 1 for name in carts})

    rows = {row["email"]: row for row in ledger_rows(shop)}
    for message in received:
        assert message.mail_from == "shop@example.com"
        parsed = message.parsed()
        to = parsed["To"].addresses[0]
        assert to.addr_spec == message.rcpt_tos[0] and to.display_name == "Åsa Tester"
        assert parsed["From"].addresses[0].addr_spec == "shop@example.com"
        assert parsed["Subject"] and parsed["Date"].datetime is not None
        assert parsed["Message-ID"].endswith("@example.com>")
        assert parsed.get_content_type() == "multipart/alternative"
        text = parsed.get_body(("plain",)).get_content()
        html = parsed.get_body(("html",)).get_content()
        unsubscribe = UNSUBSCRIBE.search(parsed["List-Unsubscribe"]).group(0)
        assert parsed["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        assert unsubscribe in text and unsubscribe.replace("&", "&amp;") in html  # visible in both parts
        assert not parsed.defects
        row = rows[to.addr_spec]
        assert row["status"] == "sent" and row["transport"] == "smtp"
        assert row["message_id"] == parsed["Message-ID"]
        assert row["reply"].startswith("250 ")


def test_a_shop_with_a_feedback_id_tags_each_message_by_sequence_step_and_tier(shop: Shop) -> None:
    # Gmail's Postmaster Tools counts spam complaints per Feedback-ID field: step and tier apart.
    shop.configure(shop={"feedback_id": "testshop"},
                   priority={"rules": {"high_value": {"weight": 40, "threshold": 200}},
                             "tiers": [{"name": "vip:eu", "min_score": 30}, {"name": "standard", "min_score": 0}]})
    shop.add(cart("big", items=(("SKU-9", "Sofa", 1, "2900.00"),)), cart("small"))
    with LoopbackSMTP() as server:
        result = send(shop, server)
        assert result.exit_code == 0, result.output
        received = {message.rcpt_tos[0]: message.parsed() for message in server.wait_for(2)}
    assert received["big@example.com"]["Feedback-ID"] == "default-1:vip-eu:cart-reminder:testshop"
    assert received["small@example.com"]["Feedback-ID"] == "default-1:standard:cart-reminder:testshop"


def test_a_shop_without_a_feedback_id_sends_no_such_header(shop: Shop) -> None:
    shop.add(cart("c001"))
    with LoopbackSMTP() as server:
        assert send(shop, server).exit_code == 0
        (message,) = server.wait_for(1)
    assert "Feedback-ID" not in message.parsed()


def test_one_pool_of_connections_is_reused_for_the_run(shop: Shop) -> None:
    shop.add(*(cart(name) for name in names(60)))
    with LoopbackSMTP() as server:
        result = send(shop, server, pool_size=3)
        assert result.exit_code == 0, result.output
        assert len(server.wait_for(60)) == 60
    assert 1 <= server.connections <= 3


@pytest.mark.parametrize("security", ["starttls", "tls"])
@pytest.mark.parametrize("mechanism", ["LOGIN", "PLAIN"])
def test_tls_and_auth(shop: Shop, security: str, mechanism: str) -> None:
    shop.add(*(cart(name) for name in names(5)))
    with LoopbackSMTP(security, auth=("shop-user", "pa55 wörd"), auth_mechanisms=(mechanism,)) as server:
        result = send(shop, server)
        assert result.exit_code == 0, result.output
        assert len(server.wait_for(5)) == 5
    assert result.json["counts"]["sent"] == 5
    assert {row["status"] for row in ledger_rows(shop)} == {"sent"}


def test_password_comes_from_the_environment(shop: Shop, monkeypatch: pytest.MonkeyPatch) -> None:
    shop.add(cart("c1"))
    monkeypatch.setenv("TEST_SMTP_PASSWORD", "from-env")
    with LoopbackSMTP("starttls", auth=("shop-user", "from-env")) as server:
        result = send(shop, server, password="${TEST_SMTP_PASSWORD}")
        assert result.exit_code == 0, result.output
        assert len(server.wait_for(1)) == 1
    assert "from-env" not in shop.config_path.read_text()


def test_a_relay_that_quotes_the_refused_password_never_gets_it_into_the_output_or_the_ledger(shop: Shop) -> None:
    shop.add(*(cart(name) for name in names(2)))
    with LoopbackSMTP("starttls", auth=("shop-user", "right"), echo_credentials=True) as server:
        refused = send(shop, server, username="shop-user", password="Wr0ng-Secret")
        doctor = shop.cli("doctor", "--json", now=None)
    assert refused.exit_code == 1 and "bad credentials, password ***" in refused.stdout
    assert "Wr0ng-Secret" not in refused.stdout + refused.stderr + doctor.stdout + doctor.stderr
    assert all("password ***" in row["reply"] and "Wr0ng" not in row["reply"] for row in ledger_rows(shop))


@pytest.mark.parametrize(("host", "helo", "expected"), [
    ("vm", None, "xn--bcher-kva.example"),  # a bare name: relays checking for a full one refused it
    ("mail1.shop.example", None, "mail1.shop.example"),
    ("vm", "relay-client.shop.example", "relay-client.shop.example"),
])
def test_the_ehlo_name_is_a_full_one(monkeypatch: pytest.MonkeyPatch, host: str, helo: str | None,
                                     expected: str) -> None:
    from cartrescue.channels.smtp import SmtpSettings

    monkeypatch.setattr("socket.gethostname", lambda: host)
    settings = SmtpSettings("127.0.0.1", 25, "none", "bounces@bücher.example", helo_name=helo)
    assert settings.ehlo_name == expected


def test_wrong_password_sends_nothing_and_the_next_run_retries(shop: Shop) -> None:
    shop.add(*(cart(name) for name in names(4)))
    with LoopbackSMTP("starttls", auth=("shop-user", "right")) as server:
        started = time.monotonic()
        refused = send(shop, server, username="shop-user", password="wrong")
        elapsed = time.monotonic() - started
        assert refused.exit_code == 1
        assert server.messages == []
        rows = ledger_rows(shop)
        assert {row["status"] for row in rows} == {"failed_transient"}
        assert all("AUTH refused: 535" in row["reply"] for row in rows)
        assert elapsed < 10  # a hopeless relay is not retried per message

        fixed = send(shop, server, username="shop-user", password="right")
        assert fixed.exit_code == 0, fixed.output
        assert len(server.wait_for(4)) == 4
    rows = ledger_rows(shop)
    assert {row["status"] for row in rows} == {"sent"}
    assert {row["attempts"] for row in rows} == {2}  # claimed again by the second run, same row


def test_untrusted_certificate_is_refused_unless_verification_is_off(shop: Shop) -> None:
    shop.add(cart("c1"))
    with LoopbackSMTP("tls") as server:
        refused = send(shop, server, ca_file=None)
        assert refused.exit_code == 1
        assert server.messages == []
        assert "certificate" in ledger_rows(shop)[0]["reply"]
        accepted = send(shop, server, ca_file=None, verify=False)
        assert accepted.exit_code == 0, accepted.output
        assert len(server.wait_for(1)) == 1


def test_an_untrusted_certificate_names_the_keys_that_trust_it(shop: Shop) -> None:
    """A private relay's self-signed certificate: the cron owner read "TLS certificate not
    trusted: self-signed certificate" and had to find the keys in the docs."""
    shop.add(cart("c1"))
    with LoopbackSMTP("starttls") as server:
        refused = send(shop, server, ca_file=None)
    assert refused.exit_code == 1
    reply = ledger_rows(shop)[0]["reply"]
    assert reply.endswith("TLS certificate not trusted: self-signed certificate (smtp.ca_file: the PEM file of "
                          "a private relay's CA; smtp.verify: false for a test relay only)")


@pytest.mark.parametrize("relay", ["none", "starttls"])
def test_implicit_tls_to_a_port_that_speaks_plain_text_says_so_and_is_tried_once(shop: Shop, relay: str) -> None:
    """``security: tls`` pointed at a port 587 or 25 relay (it greets in plain text): the owner
    read "SSLError: [SSL: WRONG_VERSION_NUMBER] wrong version number (_ssl.c:1006)", and the run
    retried it per message, as if the port might start speaking TLS."""
    shop.add(*(cart(name) for name in names(3)))
    with LoopbackSMTP(relay) as server:
        result = send(shop, server, security="tls", pool_size=1, retries=3)
        connections = server.connections
    assert result.exit_code == 1
    assert connections == 1
    replies = [row["reply"] for row in ledger_rows(shop)]
    first = next(reply for reply in replies if not reply.startswith("not attempted"))
    assert first == (f"127.0.0.1:{server.port} (tls): the relay answered in plain text, not TLS: this port takes "
                     "smtp.security: starttls (587) or none (25); tls is for a port that speaks TLS from the first "
                     "byte (465)")
    assert "WRONG_VERSION_NUMBER" not in result.output


@pytest.mark.parametrize("pipelining", [True, False])
def test_a_relay_that_ends_each_session_after_n_messages_gets_every_message_on_a_new_connection(
        shop: Shop, pipelining: bool) -> None:
    """A relay that takes a few messages per connection and answers the next MAIL "421 … too many
    messages in this session" (Exim's smtp_accept_max_per_connection, providers' limits) refused
    no message: it ended the session. That MAIL was retried with backoff as a refusal and counted
    as an attempt: with retries: 0 the message was left failed_transient, exit 1."""
    carts = names(7)
    shop.add(*(cart(name) for name in carts))
    with LoopbackSMTP(session_limit=3, pipelining=pipelining) as server:
        result = send(shop, server, pool_size=1, retries=0)
        server.wait_for(7)
        connections = server.connections
    assert result.exit_code == 0, result.output
    assert result.json["counts"]["deliveries"] == {"sent": 7}
    assert server.recipients() == Counter({f"{name}@example.com": 1 for name in carts})
    assert connections == 3


@pytest.mark.parametrize(("relay", "smtp", "needs"), [
    ({"security": "starttls"}, {"security": "none", "ca_file": None},
     "the relay requires STARTTLS before mail (smtp.security: starttls): 530 Must issue a STARTTLS command first"),
    ({"auth": ("shop", "s3cret")}, {"username": None, "password": None},
     "the relay requires AUTH before mail (smtp.username and smtp.password): 530 5.7.0 Authentication required"),
])
def test_a_relay_that_wants_tls_or_auth_before_mail_names_the_setting(
        shop: Shop, relay: dict, smtp: dict, needs: str) -> None:
    """A relay that takes the connection but answers MAIL "530 Must issue a STARTTLS command first"
    (security: none to a Postfix that enforces TLS) or "530 5.7.0 Authentication required" (no
    username): the owner was told "sender refused (check shop.from_email / smtp.envelope_from and
    the relay's AUTH)", and went to check an address that was right."""
    shop.add(cart("c1"))
    with LoopbackSMTP(**relay) as server:
        result = send(shop, server, **smtp)
    assert result.exit_code == 1
    assert [row["reply"] for row in ledger_rows(shop)] == [needs]
    assert [row["status"] for row in ledger_rows(shop)] == ["failed_transient"]


def test_plain_text_to_a_remote_relay_is_a_config_error(shop: Shop) -> None:
    shop.add(cart("c1"))
    shop.configure(smtp={"host": "mail.example.com", "security": "none"})
    result = shop.cli("run", "--send")
    assert result.exit_code == 2
    assert "smtp" in result.stderr and "clear text" in result.stderr


def test_relay_down_leaves_everything_for_the_next_run_quickly(shop: Shop, tmp_path: Path) -> None:
    shop.add(*(cart(name) for name in names(600)))  # three delivery chunks
    with LoopbackSMTP() as server:
        port = server.port
    shop.configure(smtp={"host": "127.0.0.1", "port": port, "security": "none", "backoff": 0.05, "timeout": 2})
    started = time.monotonic()
    result = shop.cli("run", "--send", "--json")
    assert time.monotonic() - started < 30
    assert result.exit_code == 1
    rows = ledger_rows(shop)
    assert len(rows) == 600 and {row["status"] for row in rows} == {"failed_transient"}
    assert all("127.0.0.1" in row["reply"] for row in rows)


def test_messages_do_not_go_to_unrelated_steps(shop: Shop) -> None:
    """A cart with step 1 sent gets step 2 a day later, from the same run loop, once."""
    shop.add(cart("c1", idle=timedelta(hours=2)))
    with LoopbackSMTP() as server:
        assert send(shop, server).exit_code == 0
        shop.configure(smtp=server.smtp_config())
        later = shop.cli("run", "--send", "--json", now=NOW + timedelta(days=1, hours=1))
        assert later.exit_code == 0, later.output
        received = server.wait_for(2)
    steps = [message.parsed()["X-Cartrescue-Step"] for message in received]
    assert steps == ["1", "2"]
