"""`suppress mailbox` reads the spam complaints a mailbox provider's feedback loop mails back
(RFC 5965 ARF reports: Yahoo's, Microsoft's, most providers' but Gmail's).

A customer who pressed "This is spam" must get nothing more: each further message to them is
another complaint, and complaints are what mailbox providers judge a sender by. The report was
refused ("no unsubscribe token in its subject or text": the reminder it returns is an
attachment, not its text) and the customer got every later step. Each test starts from a
reminder a real ``run --send`` delivered to a real SMTP server, recorded in the SQLite ledger.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from conftest import NOW, Shop
from test_bounce_mail import read, sent_reminders
from test_unsubscribe_mail import mbox_of

pytestmark = pytest.mark.slow  # a real run to a real SMTP server per test


def arf_report(recipient: str, original: bytes, *, feedback_type: str = "abuse", number: int = 1) -> bytes:
    """A feedback report as a provider's loop sends it (RFC 5965), returning ``original`` whole."""
    returned = original.decode().replace("\r\n", "\n")
    return f"""From: Feedback Loop <feedback@fbl.example.org>
To: fbl@example.com
Subject: complaint about message from 192.0.2.25
Date: Fri, 20 Nov 2026 11:00:0{number} +0000
Message-ID: <fbl-{number}@fbl.example.org>
MIME-Version: 1.0
Content-Type: multipart/report; report-type=feedback-report; boundary="fbl_boundary"

--fbl_boundary
Content-Type: text/plain; charset="us-ascii"

This is an email abuse report for an email message received from IP 192.0.2.25.

--fbl_boundary
Content-Type: message/feedback-report

Feedback-Type: {feedback_type}
User-Agent: ExampleFBL/1.0
Version: 1
Original-Mail-From: <shop@example.com>
Original-Rcpt-To: <{recipient}>
Arrival-Date: Fri, 20 Nov 2026 10:00:01 +0000
Source-IP: 192.0.2.25
Reported-Domain: example.com

--fbl_boundary
Content-Type: message/rfc822
Content-Disposition: inline

{returned}
--fbl_boundary--
""".encode()


def test_a_spam_complaint_about_a_reminder_suppresses_its_recipient_and_the_next_run_skips_them(
        shop: Shop, tmp_path: Path) -> None:
    sent = sent_reminders(shop, "ann@example.com", "bob@example.com")
    box = mbox_of(tmp_path / "fbl", arf_report("ann@example.com", sent["ann@example.com"]))
    result = read(shop, box)
    assert (result["read"], result["complained"], result["refused"], result["not_ours"]) == (1, 1, [], [])
    suppression = shop.suppression("ann@example.com")
    assert suppression is not None and suppression["reason"] == "complained: marked as spam"
    assert shop.suppression("bob@example.com") is None
    decisions = shop.decisions(now=NOW + timedelta(days=2))
    assert decisions["c1"]["reason"] == "suppressed"
    assert decisions["c2"]["action"] == "send"  # step 2 is due: only the complainer is skipped


def test_a_complaint_about_a_message_cartrescue_never_sent_suppresses_nobody_and_is_listed(
        shop: Shop, tmp_path: Path) -> None:
    """A forged report, or one about another program's mail: its Message-ID is none of the ledger's."""
    sent = sent_reminders(shop, "ann@example.com")
    forged = sent["ann@example.com"].replace(b"Message-ID: <cr.", b"Message-ID: <spam.")
    assert forged != sent["ann@example.com"]
    result = read(shop, mbox_of(tmp_path / "fbl", arf_report("ann@example.com", forged)))
    assert result["complained"] == 0 and result["refused"] == []
    assert result["not_ours"] == [{"where": "fbl, mail 1", "recipients": "ann@example.com"}]
    assert shop.suppression("ann@example.com") is None


def test_a_not_spam_report_suppresses_nobody(shop: Shop, tmp_path: Path) -> None:
    """``Feedback-Type: not-spam`` is the customer taking the reminder out of their spam folder."""
    sent = sent_reminders(shop, "ann@example.com")
    result = read(shop, mbox_of(tmp_path / "fbl", arf_report("ann@example.com", sent["ann@example.com"],
                                                               feedback_type="not-spam")))
    assert result["complained"] == 0 and result["refused"] == [] and result["not_ours"] == []
    assert shop.suppression("ann@example.com") is None
