"""Bounce mails: RFC 3464 delivery status notifications, read from the mailbox bounces go to, and
the spam complaints a mailbox provider's feedback loop mails back (RFC 5965 ARF reports).

Owns telling which address a delivery report says cannot get mail, and whether that report is
about a message cartrescue sent to it. A relay (the shop's own smarthost, an ESP's) accepts every
message and bounces later, by mail to ``smtp.envelope_from``: without reading those reports a dead
address got every step of the sequence, which costs the shop's sender reputation.

- Only a ``multipart/report; report-type=delivery-status`` with a ``message/delivery-status``
  part is one; its per-recipient blocks whose ``Action`` is ``failed`` and whose ``Status`` says
  the mailbox does not exist (5.1.1, 5.1.10: :func:`cartrescue.channels.smtp.is_unknown_user`,
  as an SMTP reply's) name the addresses (``Final-Recipient``). A policy refusal (5.7.x: the
  shop's mail, not the address), a full mailbox (5.2.2), a delay (4.x.x) or a ``delivered``,
  ``relayed``, ``expanded`` block names nobody.
- An address counts only when the returned original (``message/rfc822`` or
  ``text/rfc822-headers``) carries a Message-ID the ledger holds for a message sent (or sent
  without its reply) to that same address: backscatter, a forged bounce or another program's
  mail suppresses nobody.

- A feedback report (``multipart/report; report-type=feedback-report``, a
  ``message/feedback-report`` part) of ``Feedback-Type: abuse`` or ``fraud`` is a recipient's
  "This is spam": it names the recipient the ledger sent the returned original to (its Message-ID
  again; providers often redact the addresses in the report). Another type (``not-spam``, a
  virus or authentication report) names nobody.

It must not read mailboxes or write the ledger: :mod:`cartrescue.unsubscribe_mail` does both.
"""

from __future__ import annotations

import email
import email.policy
from email.message import Message

from cartrescue.contacts import email_hashes, fold_email
from cartrescue.ledger import Ledger

#: The parts that return the original message, whole or its headers (RFC 3462, RFC 6533).
_RETURNED = ("message/rfc822", "message/global", "text/rfc822-headers", "message/global-headers")


def _raw(message: Message, name: str) -> str:
    """A field as it stands in the mail, unparsed and unfolded: a malformed one (``Message-ID:
    <<<>>>``), which the parser may refuse to decode, never stops the mailbox."""
    wanted = name.lower()
    value = next((str(value) for key, value in message.raw_items() if key.lower() == wanted), "")
    return " ".join(value.split())


def is_delivery_report(message: Message) -> bool:
    """Whether ``message`` is an RFC 3464 delivery report: a multipart/report that holds the
    machine-readable ``message/delivery-status`` part (a bare Content-Type line is not one)."""
    return message.get_content_type() == "multipart/report" and any(
        part.get_content_type() == "message/delivery-status" for part in message.walk())


def is_feedback_report(message: Message) -> bool:
    """Whether ``message`` is an RFC 5965 feedback report: a multipart/report that holds the
    machine-readable ``message/feedback-report`` part."""
    return message.get_content_type() == "multipart/report" and any(
        part.get_content_type() == "message/feedback-report" for part in message.walk())


def _blocks(message: Message, kind: str = "message/delivery-status") -> list[Message]:
    """The field blocks of the report's ``kind`` part: for a delivery status the per-message one
    first, then one per recipient (the parser reads each block as a header-only message)."""
    for part in message.walk():
        if part.get_content_type() == kind:
            payload = part.get_payload()
            return [block for block in payload if isinstance(block, Message)] if isinstance(payload, list) else []
    return []


def _address(field: str) -> str:
    """The address of a ``Final-Recipient`` field (``rfc822; ann@example.com``); "" for another
    address type (``x400;``, ``utf-8;`` ...) or none."""
    kind, _, address = str(field).partition(";")
    if kind.strip().lower() != "rfc822":
        return ""
    return fold_email(address.strip().strip("<>").strip())


def failed_recipients(message: Message) -> list[str]:
    """The addresses the report says do not exist: ``Action: failed`` with a ``Status`` of a missing
    mailbox (5.1.1, 5.1.10), the only refusal an SMTP reply suppresses for too."""
    from cartrescue.channels.smtp import is_unknown_user

    found: list[str] = []
    for block in _blocks(message)[1:]:
        if _raw(block, "Action").lower() == "failed" and is_unknown_user(550, _raw(block, "Status").strip()):
            address = _address(_raw(block, "Final-Recipient"))
            if address and address not in found:
                found.append(address)
    return found


def returned_message_ids(message: Message) -> list[str]:
    """The Message-IDs of the originals the report returns, whole or as headers only."""
    found: list[str] = []
    for part in message.walk():
        kind = part.get_content_type()
        if kind not in _RETURNED:
            continue
        if kind.startswith("message/"):
            payload = part.get_payload()
            originals = [item for item in payload if isinstance(item, Message)] if isinstance(payload, list) else []
        else:
            text = part.get_payload(decode=True) or b""
            originals = [email.message_from_bytes(text if isinstance(text, bytes) else b"", policy=email.policy.compat32)]
        for original in originals:
            value = _raw(original, "Message-ID")
            if value and value not in found:
                found.append(value)
    return found


def bounced_addresses(ledger: Ledger, message: Message) -> tuple[list[str], list[str]]:
    """``(ours, strangers)``: the addresses a delivery report says failed for good, parted by
    whether the ledger holds a message it returns as sent to that address. Ours are spelt as the
    ledger has them (as the cart does); a relay may write a domain in its ASCII form (IDNA)."""
    failed = failed_recipients(message)
    if not failed:
        return [], []
    sent_to = {known: address for address in ledger.recipients_of(returned_message_ids(message))
               for known in email_hashes(address)}
    ours: list[str] = []
    strangers: list[str] = []
    for address in failed:
        found = next((sent_to[known] for known in email_hashes(address) if known in sent_to), None)
        if found is None:
            strangers.append(address)
        elif found not in ours:
            ours.append(found)
    return ours, strangers


#: The feedback types that are a recipient's complaint (RFC 5965 7.3): "This is spam", "This is a scam".
_COMPLAINTS = frozenset({"abuse", "fraud"})


def complainers(ledger: Ledger, message: Message) -> tuple[list[str], list[str]]:
    """``(ours, strangers)`` of a feedback report: the addresses the ledger sent the messages it
    returns to, when its type is a complaint; else, for a complaint about no message of the
    ledger's, the recipient the report names (``Original-Rcpt-To``), to be listed."""
    fields = _blocks(message, "message/feedback-report")
    if not fields or _raw(fields[0], "Feedback-Type").lower() not in _COMPLAINTS:
        return [], []
    ours: list[str] = []
    for address in ledger.recipients_of(returned_message_ids(message)):
        if address not in ours:
            ours.append(address)
    if ours:
        return ours, []
    named = fold_email(_raw(fields[0], "Original-Rcpt-To").strip().strip("<>").strip())
    return [], [named] if named else []
