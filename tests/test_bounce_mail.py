"""`suppress mailbox` reads the bounces a relay mailed to ``smtp.envelope_from`` (RFC 3464).

Each test starts from a reminder a real run sent (``run --send``) to a real SMTP server
(:class:`tests.smtpserver.LoopbackSMTP`), recorded in the shop's SQLite ledger; the bounce is
what Postfix mails back when the next hop refuses it later: a ``multipart/report`` with a
``message/delivery-status`` part and the returned original (whole, or its headers only).
"""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path

import pytest

from conftest import NOW, Shop, cart
from smtpserver import LoopbackSMTP
from test_unsubscribe_mail import mbox_of

pytestmark = pytest.mark.slow  # a real run to a real SMTP server per test


def sent_reminders(shop: Shop, *addresses: str) -> dict[str, bytes]:
    """The reminder a real run sent to each address, as the relay got it."""
    shop.add(*(cart(f"c{number}", email=address) for number, address in enumerate(addresses, 1)))
    with LoopbackSMTP() as server:
        shop.configure(smtp=server.smtp_config())
        result = shop.cli("run", "--send", "--json")
        assert result.exit_code == 0, result.output
        received = server.wait_for(len(addresses))
    assert [row["status"] for row in shop.messages()] == ["sent"] * len(addresses)
    return {message.rcpt_tos[0]: message.data for message in received}


def postfix_report(recipient: str, original: bytes, *, status: str = "5.1.1", action: str = "failed",
                   headers_only: bool = False, number: int = 1) -> bytes:
    """A delivery status notification as Postfix writes it (RFC 3464), returning ``original``."""
    diagnostic = {"5": "550 {1} <{0}>: Recipient address rejected: User unknown",
                  "4": "451 4.4.1 <{0}>: host mx.example.net said: try again later"}[status[0]].format(recipient, status)
    if headers_only:
        returned = "Content-Type: text/rfc822-headers\n\n" + original.decode().split("\r\n\r\n", 1)[0].replace("\r\n", "\n")
    else:
        returned = "Content-Type: message/rfc822\n\n" + original.decode().replace("\r\n", "\n")
    return f"""From: MAILER-DAEMON@relay.example.org (Mail Delivery System)
To: shop@example.com
Subject: Undelivered Mail Returned to Sender
Date: Fri, 20 Nov 2026 10:05:0{number} +0000
Message-ID: <20261120100501.{number}ABC@relay.example.org>
Auto-Submitted: auto-replied
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status; boundary="4C2B5A.1605867901/relay.example.org"

This is a MIME-encapsulated message.

--4C2B5A.1605867901/relay.example.org
Content-Description: Notification
Content-Type: text/plain; charset=us-ascii

This is the mail system at host relay.example.org.

I'm sorry to have to inform you that your message could not
be delivered to one or more recipients.

<{recipient}>: host mx.example.net said: {diagnostic}

--4C2B5A.1605867901/relay.example.org
Content-Description: Delivery report
Content-Type: message/delivery-status

Reporting-MTA: dns; relay.example.org
X-Postfix-Queue-ID: 4C2B5A
Arrival-Date: Fri, 20 Nov 2026 10:00:01 +0000

Final-Recipient: rfc822; {recipient}
Original-Recipient: rfc822;{recipient}
Action: {action}
Status: {status}
Remote-MTA: dns; mx.example.net
Diagnostic-Code: smtp; {diagnostic}

--4C2B5A.1605867901/relay.example.org
Content-Description: Undelivered Message
{returned}
--4C2B5A.1605867901/relay.example.org--
""".encode()


def read(shop: Shop, box: Path):
    result = shop.cli("suppress", "mailbox", str(box), "--json", now=None)
    assert result.exit_code == 0, result.output
    return result.json


def test_a_postfix_bounce_returning_the_whole_reminder_suppresses_its_recipient_as_bounced(
        shop: Shop, tmp_path: Path) -> None:
    """The relay accepted the reminder, then mx.example.net refused it: the bounce came by mail."""
    sent = sent_reminders(shop, "ann@example.com", "bob@example.com")
    box = mbox_of(tmp_path / "bounces", postfix_report("ann@example.com", sent["ann@example.com"]))
    result = read(shop, box)
    assert (result["read"], result["bounced"], result["added"], result["not_ours"]) == (1, 1, 0, [])
    suppression = shop.suppression("ann@example.com")
    assert suppression is not None and suppression["reason"] == "bounced: no such user"  # as a 5.1.1 reply's
    assert shop.suppression("bob@example.com") is None


def test_a_bounce_returning_the_reminders_headers_only_suppresses_its_recipient(shop: Shop, tmp_path: Path) -> None:
    sent = sent_reminders(shop, "ann@example.com")
    box = mbox_of(tmp_path / "bounces", postfix_report("ann@example.com", sent["ann@example.com"], headers_only=True))
    assert read(shop, box)["bounced"] == 1
    assert shop.suppression("ann@example.com") is not None


def test_a_delay_report_suppresses_nobody(shop: Shop, tmp_path: Path) -> None:
    """A 4.4.1 "delayed" report: the relay is still trying; Ann's mailbox may take it tomorrow."""
    sent = sent_reminders(shop, "ann@example.com")
    box = mbox_of(tmp_path / "bounces", postfix_report("ann@example.com", sent["ann@example.com"],
                                                       status="4.4.1", action="delayed"))
    result = read(shop, box)
    assert (result["bounced"], result["added"], result["refused"], result["not_ours"]) == (0, 0, [], [])
    assert shop.suppression("ann@example.com") is None


@pytest.mark.parametrize("status", ["5.7.1", "5.2.2", "5.7.26"])
def test_a_refusal_that_is_no_missing_mailbox_suppresses_nobody(shop: Shop, tmp_path: Path, status: str) -> None:
    """A policy refusal (5.7.1 spam content, 5.7.26 DMARC: the shop's mail, not the address) or a
    full mailbox (5.2.2) says nothing about the address: as an SMTP reply, only a missing mailbox
    (X.1.1, X.1.10) suppresses it."""
    sent = sent_reminders(shop, "ann@example.com")
    box = mbox_of(tmp_path / "bounces", postfix_report("ann@example.com", sent["ann@example.com"], status=status))
    result = read(shop, box)
    assert (result["bounced"], result["added"]) == (0, 0)
    assert shop.suppression("ann@example.com") is None


def test_a_bounce_of_a_message_cartrescue_never_sent_suppresses_nobody_and_is_listed(shop: Shop, tmp_path: Path) -> None:
    """Backscatter, or a forged bounce: the returned message's Message-ID is none of the ledger's."""
    sent = sent_reminders(shop, "ann@example.com")
    forged = sent["ann@example.com"].replace(b"Message-ID: <cr.", b"Message-ID: <spam.")
    assert forged != sent["ann@example.com"]
    box = mbox_of(tmp_path / "bounces", postfix_report("ann@example.com", forged))
    result = read(shop, box)
    assert result["bounced"] == 0
    assert result["not_ours"] == [{"where": "bounces, mail 1", "recipients": "ann@example.com"}]
    assert shop.suppression("ann@example.com") is None
    text = shop.cli("suppress", "mailbox", str(mbox_of(tmp_path / "again", postfix_report(
        "ann@example.com", forged, number=2))), now=None)
    assert text.exit_code == 0, text.output
    said = " ".join(text.output.split())
    assert "again, mail 1: a bounce of no message cartrescue sent to ann@example.com: nobody suppressed" in said
    assert "1 mails, 0 unsubscribed, 0 bounced," in said


def test_a_bounce_naming_another_recipient_than_the_messages_suppresses_nobody(shop: Shop, tmp_path: Path) -> None:
    """Bob's address in a report that returns Ann's reminder: the report is not about Bob's mail."""
    sent = sent_reminders(shop, "ann@example.com", "bob@example.com")
    box = mbox_of(tmp_path / "bounces", postfix_report("bob@example.com", sent["ann@example.com"]))
    result = read(shop, box)
    assert result["bounced"] == 0 and len(result["not_ours"]) == 1
    assert shop.suppression("bob@example.com") is None and shop.suppression("ann@example.com") is None


def test_reading_the_bounces_again_changes_nothing(shop: Shop, tmp_path: Path) -> None:
    """Cron reads the same mailbox again: nothing is counted twice, and a suppression lifted since
    (``suppress remove``: Ann's mailbox works again) is not put back by the old bounce."""
    sent = sent_reminders(shop, "ann@example.com")
    box = mbox_of(tmp_path / "bounces", postfix_report("ann@example.com", sent["ann@example.com"]),
                  postfix_report("ann@example.com", sent["ann@example.com"].replace(b"<cr.", b"<other."), number=2))
    first = read(shop, box)
    assert (first["bounced"], len(first["not_ours"]), first["seen_before"]) == (1, 1, 0)
    again = read(shop, box)
    assert (again["bounced"], again["already"], again["not_ours"], again["seen_before"]) == (0, 0, [], 2)
    assert shop.cli("suppress", "remove", "ann@example.com", now=None).exit_code == 0
    assert read(shop, box)["seen_before"] == 2
    assert shop.suppression("ann@example.com") is None


def test_the_next_run_skips_a_bounced_customer_as_suppressed(shop: Shop, tmp_path: Path) -> None:
    sent = sent_reminders(shop, "ann@example.com", "bob@example.com")
    read(shop, mbox_of(tmp_path / "bounces", postfix_report("ann@example.com", sent["ann@example.com"])))
    later = NOW + timedelta(days=2)
    decisions = shop.decisions(now=later)
    assert decisions["c1"]["reason"] == "suppressed"
    assert decisions["c2"]["action"] == "send"  # step 2 is due: only the bounced address is skipped


def test_a_bounce_an_older_version_refused_is_taken_once(shop: Shop, tmp_path: Path) -> None:
    """Before bounces were read, ``suppress mailbox`` refused a delivery report (no token in it) and
    kept it as refused: the same mailbox read now suppresses its recipient, once."""
    from cartrescue.ledger import Ledger
    from cartrescue.unsubscribe_mail import forgotten_key

    sent = sent_reminders(shop, "ann@example.com")
    ledger = Ledger(f"sqlite:///{shop.folder / 'ledger.db'}")
    try:  # what the older version kept of the report: its Message-ID hashed, refused
        assert ledger.inbound(forgotten_key("mail <20261120100501.1ABC@relay.example.org>"), "", "refused", None, "")
    finally:
        ledger.close()
    box = mbox_of(tmp_path / "bounces", postfix_report("ann@example.com", sent["ann@example.com"]))
    assert (read(shop, box)["bounced"], read(shop, box)["seen_before"]) == (1, 1)
    assert shop.suppression("ann@example.com") is not None


def test_a_bounce_whose_original_has_a_malformed_message_id_is_read_and_suppresses_nobody(
        shop: Shop, tmp_path: Path) -> None:
    sent = sent_reminders(shop, "ann@example.com")
    broken = re.sub(rb"Message-ID: <[^>]*>", b"Message-ID: <<<>>>", sent["ann@example.com"])
    box = mbox_of(tmp_path / "bounces", postfix_report("ann@example.com", broken))
    result = read(shop, box)
    assert result["bounced"] == 0 and len(result["not_ours"]) == 1
    assert shop.suppression("ann@example.com") is None
