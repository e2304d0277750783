"""The ambiguous SMTP outcome (issue 9, point 6): at most once, the same rule as for a kill.

A message whose whole DATA was written and that got no reply — the relay's 250 came after
``smtp.data_timeout``, or the connection dropped after the final dot — is recorded
``unconfirmed``: it may have arrived, so it is not retried in the run nor by later runs (unless
``run --resend-unconfirmed``), and it counts as done and as "messaged today". A slow reply
*within* ``data_timeout`` is simply ``sent``: the commands' ``smtp.timeout`` no longer covers
the reply to the message (RFC 5321 4.5.3.2 gives that one 10 minutes).

Everything runs against the real aiosmtpd server of tests/smtpserver.py, with and without
PIPELINING. ``pool_size=1`` makes the next message's commands travel behind the ambiguous one
on the same connection (pipelining), so the tests also show that the next message is not
lost with the connection.
"""

from __future__ import annotations

import time
from collections import Counter
from datetime import timedelta

import pytest
from smtpserver import Fault, LoopbackSMTP
from test_doctor import claim_c1
from test_smtp_faults import deliver, rows_by_email, settings

from cartrescue.channels.base import Status
from cartrescue.channels.smtp import SmtpChannel
from conftest import NOW, Shop, cart

pytestmark = pytest.mark.smtp

MODES = pytest.mark.parametrize("pipelining", [True, False], ids=["pipelined", "stepwise"])


@MODES
def test_a_250_after_the_data_timeout_is_unconfirmed_and_not_resent(pipelining: bool) -> None:
    with LoopbackSMTP(faults=[Fault(r"^late@", "late", stage="DATA", delay=1.0)], pipelining=pipelining) as server:
        channel = SmtpChannel(settings(server, pool_size=1, timeout=5.0, data_timeout=0.3, retries=3))
        outcomes = deliver(channel, ["late@example.com", "next@example.com"])
        time.sleep(1.0)  # the late 250 is written by now, to a connection the client closed
        accepted = server.recipients()
    late = outcomes["late@example.com"]
    assert late.status is Status.UNCONFIRMED
    assert "no reply within smtp.data_timeout (0.3 s) after the whole message was sent" in late.reply
    assert server.attempts["late@example.com"] == 1  # not retried: the relay has it once
    assert outcomes["next@example.com"].status is Status.SENT
    assert accepted == Counter({"late@example.com": 1, "next@example.com": 1})


@MODES
def test_a_drop_after_the_whole_message_is_unconfirmed_and_not_resent(pipelining: bool) -> None:
    with LoopbackSMTP(faults=[Fault(r"^lost@", "drop-after-data")], pipelining=pipelining) as server:
        channel = SmtpChannel(settings(server, pool_size=1, retries=3))
        outcomes = deliver(channel, ["lost@example.com", "next@example.com"])
        accepted = server.recipients()
    lost = outcomes["lost@example.com"]
    assert lost.status is Status.UNCONFIRMED and "after the whole message was sent" in lost.reply
    assert server.attempts["lost@example.com"] == 1
    assert outcomes["next@example.com"].status is Status.SENT
    assert accepted == Counter({"next@example.com": 1})  # this relay had dropped it: a lost reminder, no duplicate


def test_a_drop_while_the_relay_reads_the_body_is_unconfirmed_too() -> None:
    """The client had written the whole message when the relay closed: from its side this is
    the same as a drop after the final dot, and the same rule applies."""
    with LoopbackSMTP(faults=[Fault(r"^cut@", "drop-in-body")]) as server:
        channel = SmtpChannel(settings(server, retries=3))
        outcomes = deliver(channel, ["cut@example.com"])
    assert outcomes["cut@example.com"].status is Status.UNCONFIRMED
    assert server.attempts["cut@example.com"] == 1 and server.messages == []


@MODES
def test_a_slow_reply_to_the_message_within_data_timeout_is_sent_once(pipelining: bool) -> None:
    """The measured bug: the relay answered after smtp.timeout, the client retried, two copies."""
    with LoopbackSMTP(faults=[Fault(r"^slow@", "late", stage="DATA", delay=0.8)], pipelining=pipelining) as server:
        channel = SmtpChannel(settings(server, pool_size=1, timeout=0.3, data_timeout=5.0, retries=3))
        outcomes = deliver(channel, ["slow@example.com", "next@example.com"])
        accepted = server.recipients()
    assert outcomes["slow@example.com"].status is Status.SENT
    assert outcomes["next@example.com"].status is Status.SENT
    assert accepted == Counter({"slow@example.com": 1, "next@example.com": 1})
    assert channel.stats.retries == 0


def test_a_silent_relay_before_the_message_is_still_retried() -> None:
    """No reply to RCPT within smtp.timeout: nothing of the message went out, so it is retried."""
    with LoopbackSMTP(faults=[Fault(r"^stuck@", "hang", times=1)]) as server:
        channel = SmtpChannel(settings(server, timeout=0.3, data_timeout=60.0, retries=1))
        outcomes = deliver(channel, ["stuck@example.com"])
        accepted = server.recipients()
    assert outcomes["stuck@example.com"].status is Status.SENT
    assert accepted == Counter({"stuck@example.com": 1}) and server.attempts["stuck@example.com"] == 2


# -- through the CLI: the ledger, later runs, --resend-unconfirmed -----------------------------


def test_an_unconfirmed_step_is_done_reported_and_resent_only_on_request(shop: Shop) -> None:
    shop.add(cart("u1"), cart("ok1"))
    with LoopbackSMTP(faults=[Fault(r"^u1@", "drop-after-data", times=1)]) as server:
        shop.configure(smtp=server.smtp_config())
        first = shop.cli("run", "--send", "--json")
        assert first.exit_code == 0, first.output  # nothing failed: one message is unconfirmed
        assert first.json["counts"]["deliveries"] == {"sent": 1, "unconfirmed": 1}
        assert rows_by_email(shop)["u1@example.com"]["status"] == "unconfirmed"

        human = shop.cli("run", "--send", now=NOW + timedelta(minutes=5))
        assert "1 earlier claim has no outcome" in human.stdout  # one claim: not "1 earlier claims have"
        later = shop.cli("run", "--send", "--json", now=NOW + timedelta(minutes=10))
        assert later.json["unconfirmed"] == 1 and later.json["counts"]["sent"] == 0
        assert server.attempts["u1@example.com"] == 1  # the step counts as done: not resent

        resend = shop.cli("run", "--send", "--json", "--resend-unconfirmed", now=NOW + timedelta(minutes=15))
        assert resend.json["released"] == 1 and resend.json["counts"]["sent"] == 1
        server.wait_for(2)
    assert server.recipients() == Counter({"ok1@example.com": 1, "u1@example.com": 1})
    assert rows_by_email(shop)["u1@example.com"]["status"] == "sent"


@pytest.mark.parametrize("workers", [[], pytest.param(["--workers", "2"], marks=pytest.mark.slow)])
def test_resend_unconfirmed_does_not_count_a_step_a_later_step_followed_as_released(shop: Shop,
                                                                                   workers: list[str]) -> None:
    """Step 1's outcome was lost, and the next day's run sent step 2 (step 1 counted as done).
    ``--resend-unconfirmed`` then released step 1, which the planner never sends after step 2:
    the run said it was "released and tried again", and nothing went out."""
    shop.add(cart("u1"))
    with LoopbackSMTP(faults=[Fault(r"^u1@", "drop-after-data", times=1)]) as server:
        shop.configure(smtp=server.smtp_config())
        assert shop.cli("run", "--send", "--json").json["counts"]["deliveries"] == {"unconfirmed": 1}
        later = shop.cli("run", "--send", "--json", now=NOW + timedelta(days=1))
        assert later.json["counts"]["sent"] == 1  # step 2
        resend = shop.cli("run", "--send", "--json", "--resend-unconfirmed", *workers,
                          now=NOW + timedelta(days=1, minutes=10))
    assert resend.json["counts"]["sent"] == 0 and server.attempts["u1@example.com"] == 2
    assert resend.json["released"] == 0 and resend.json["released_not_resent"] == 1
    step1 = next(row for row in shop.messages() if row["step"] == 1)
    assert "not resent: step 2 of this cart already went out" in step1["reply"]


def test_resend_unconfirmed_tells_a_step_a_later_step_followed_was_not_resent(shop: Shop) -> None:
    shop.add(cart("u1"))
    with LoopbackSMTP(faults=[Fault(r"^u1@", "drop-after-data", times=1)]) as server:
        shop.configure(smtp=server.smtp_config())
        shop.cli("run", "--send")
        shop.cli("run", "--send", now=NOW + timedelta(days=1))
        human = shop.cli("run", "--send", "--resend-unconfirmed", now=NOW + timedelta(days=1, minutes=10))
    said = " ".join(human.stdout.replace("\u2502", " ").split())
    assert "tried again" not in said
    assert "1 earlier claim without outcome was released but not resent: a later step of its cart had already gone out" in said


def test_resend_unconfirmed_says_a_released_step_that_went_out_again_was_tried_again(shop: Shop) -> None:
    shop.add(cart("u1"))
    with LoopbackSMTP(faults=[Fault(r"^u1@", "drop-after-data", times=1)]) as server:
        shop.configure(smtp=server.smtp_config())
        shop.cli("run", "--send")
        human = shop.cli("run", "--send", "--resend-unconfirmed", now=NOW + timedelta(minutes=10))
    said = " ".join(human.stdout.replace("\u2502", " ").split())
    assert "1 earlier claim without outcome was released and tried again (--resend-unconfirmed)" in said, said


def test_the_run_summary_counts_unconfirmed_messages(shop: Shop) -> None:
    shop.add(cart("u1"))
    with LoopbackSMTP(faults=[Fault(r"^u1@", "drop-after-data")]) as server:
        shop.configure(smtp=server.smtp_config())
        result = shop.cli("run", "--send")
    assert result.exit_code == 0, result.output
    assert "delivered 0, failed 0, unconfirmed 1" in result.stdout


def test_a_quiet_run_whose_messages_went_unconfirmed_says_so_once(shop: Shop) -> None:
    """A relay that hangs up after every final dot (a crashing content filter) leaves each message
    unconfirmed: not a failure (exit 0), but the cron owner must hear of it, once, to look at
    the relay's log and maybe ``--resend-unconfirmed``; a silent cron line hid it for good."""
    shop.add(cart("u1"), cart("u2"))
    with LoopbackSMTP(faults=[Fault(r"^u[12]@", "drop-after-data")]) as server:
        shop.configure(smtp=server.smtp_config())
        first = shop.cli("run", "--send", "--quiet")
        later = shop.cli("run", "--send", "--quiet", now=NOW + timedelta(minutes=10))
    assert first.exit_code == 0, first.output
    said = " ".join(first.stdout.replace("\u2502", " ").split())
    assert "delivered 0, failed 0, unconfirmed 2" in said
    assert later.exit_code == 0 and later.stdout == ""  # said by the run that left them, not again


def test_an_unconfirmed_message_counts_as_messaged_today(shop: Shop) -> None:
    """The address may have got a message this morning: a new cart waits for tomorrow."""
    shop.add(cart("a1", email="kim@example.com", idle=timedelta(hours=3)))
    with LoopbackSMTP(faults=[Fault(r"^kim@", "drop-after-data", times=1)]) as server:
        shop.configure(smtp=server.smtp_config())
        assert shop.cli("run", "--send", "--json").exit_code == 0
        shop.add(cart("a2", email="kim@example.com", idle=timedelta(hours=1), now=NOW + timedelta(hours=2)))
        later = shop.cli("run", "--send", "--json", now=NOW + timedelta(hours=2))
        assert server.attempts["kim@example.com"] == 1
    decisions = {row["cart_id"]: row for row in later.json["decisions"]}
    assert decisions["a2"]["action"] == "defer" and decisions["a2"]["reason"] == "messaged_today"


@pytest.mark.parametrize("workers", [[], pytest.param(["--workers", "2"], marks=pytest.mark.slow)])
def test_the_run_summary_names_the_sms_gateway_for_an_sms_claim_without_outcome(shop: Shop, workers: list[str]) -> None:
    """It said "or the relay did not answer" of every channel's claim: an SMS gateway is no relay."""
    claim_c1(shop, "sms", "twilio", "+46701234567")  # an earlier run's, without outcome
    shop.add(cart("c2"))
    human = shop.cli("run", "--outbox", str(shop.folder / "out"), *workers, now=NOW + timedelta(minutes=5))
    said = " ".join(human.stdout.replace("│", " ").split())  # the summary's panel, unwrapped
    assert "1 earlier claim has no outcome (a run was killed, or the SMS gateway did not answer after the " \
           "message)" in said, human.output
    assert "relay" not in said
    document = shop.cli("run", "--outbox", str(shop.folder / "out"), "--json", *workers,
                        now=NOW + timedelta(minutes=10)).json
    assert document["unconfirmed"] == 1 and document["unconfirmed_channels"] == ["sms"]
