"""Unsubscribe mails: what ``List-Unsubscribe``'s ``mailto:`` link made, read from a mailbox.

Owns finding those mails' tokens in what a mail system keeps -- an mbox file, a Maildir, a
folder of ``.eml`` files or one ``.eml`` -- so a shop that offers the ``mailto:`` target
(``shop.unsubscribe_mailto``) honours each request from cron instead of by hand; bulk senders'
rules ask for it within two days.

- The token is looked for in the subject (as sent, replied to or forwarded, see
  :func:`cartrescue.suppressions.token_from`), then in the first lines of the plain-text part,
  then as the reminder's own unsubscribe link anywhere in its text or HTML part.
- The mailbox is only read. Each mail is kept in ``cr_inbound`` by its ``Message-ID`` (or a
  hash of its bytes), together with what it did, in the transaction of its suppression: the
  next run skips it, so a mail refused once is reported once, and a suppression lifted since
  (``suppress remove``) is not undone by reading the same mail again. ``forget`` keeps the mail
  read under :func:`forgotten_key`, without the address's hash; a refused mail, whose sender no
  erasure can name, is kept under that key from the start.
- A mail without a valid token is refused and named, never suppressed by its sender's address
  unless ``trust_sender`` says so: a ``From:`` line is as easy to forge as a token is hard.
  Even then an automatic mail (``Auto-Submitted``, a delivery report) is not taken for its sender.
- A delivery report (RFC 3464) is read as a bounce (:mod:`cartrescue.bounce_mail`): the address
  it says failed for good is suppressed as bounced when the report returns a message sent to it;
  one about another message is listed and suppresses nobody, a delay nobody either.

It must not plan or send; it records inbound mails and suppressions in the ledger.
"""

from __future__ import annotations

import email
import email.errors
import email.policy
import hashlib
import html
import mailbox
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from email.message import EmailMessage
from email.utils import getaddresses
from pathlib import Path

from cartrescue.bounce_mail import bounced_addresses, complainers, is_delivery_report, is_feedback_report
from cartrescue.contacts import email_hash, is_valid_email, normalize_email
from cartrescue.errors import ConfigError
from cartrescue.ledger import Ledger
from cartrescue.suppressions import COMPLAINED, NO_SUCH_USER, UNSUBSCRIBED, BadToken, link_token, subject_token
from cartrescue.text import clipped
from cartrescue.unsubscribe import verify_token

BODY_SCAN = 4096  # characters of the plain-text part searched when the subject has no token
# Characters searched for the reminder's own unsubscribe link: it stands at the foot of a quoted
# or forwarded reminder, below the customer's words, the cart's lines and the survey's links.
LINK_SCAN = 256 * 1024


@dataclass(slots=True)
class MailboxResult:
    read: int = 0
    added: int = 0
    already: int = 0
    seen: int = 0  # read by an earlier run: skipped
    bounced: int = 0  # addresses suppressed by a delivery report (cartrescue.bounce_mail)
    complained: int = 0  # addresses suppressed by a feedback loop's spam complaint (cartrescue.bounce_mail)
    # (where, addresses, "bounce" or "complaint"): a report about no message sent to them
    not_ours: list[tuple[str, str, str]] = field(default_factory=list)
    refused: list[tuple[str, str, str]] = field(default_factory=list)  # (where, sender, why)
    warnings: list[str] = field(default_factory=list)  # what to know that is no refused mail (no_mail)


@dataclass(frozen=True, slots=True)
class Mail:
    where: str  # file name, "mbox file, mail N" or "Maildir/key": what a person looks for
    raw: bytes
    unreadable: str = ""  # why its file could not be read ("cannot read: Permission denied"); raw is empty


def _mail_folders(path: Path) -> list[Path]:
    """The folders whose files are the mails of the folder ``path``: a Maildir's new/ and cur/
    (either may be missing; tmp/ holds mails still being written), else ``path`` (its .eml files)."""
    return [path / sub for sub in ("new", "cur") if (path / sub).is_dir()] or [path]


def _mail_file(where: str, file: Path) -> Mail | None:
    """The mail of ``file``; one that cannot be read (its permissions, an I/O error) says why, and
    costs itself alone: it stopped the whole mailbox (exit 2) and every mail after it, run after
    run. None: the file went meanwhile (a mail client moves new/ to cur/, where the next run reads it)."""
    try:
        return Mail(where, file.read_bytes())
    except FileNotFoundError:
        return None
    except OSError as exc:
        return Mail(where, b"", f"cannot read: {exc.strerror or exc}")


def mails(path: Path) -> Iterator[Mail]:
    """Each mail kept at ``path``: a Maildir (a folder with ``cur``/``new``), a folder of
    ``.eml`` files, an mbox file (it starts with ``From ``) or one ``.eml`` file; one at a time."""
    try:
        if path.is_dir():
            folders = _mail_folders(path)
            maildir = folders != [path]
            for folder in folders:
                for file in sorted(folder.iterdir() if maildir else folder.glob("*.eml")):
                    if file.is_file() and not file.name.startswith("."):
                        found = _mail_file(f"{path.name}/{folder.name}/{file.name}" if maildir else file.name, file)
                        if found is not None:
                            yield found
            return
        with path.open("rb") as handle:
            head = handle.read(5)
        if not head.strip() and not path.read_bytes().strip():  # an mbox a mail client has just emptied
            return
        if head != b"From ":
            yield Mail(path.name, path.read_bytes())
            return
        mbox = mailbox.mbox(path, factory=None, create=False)
        for number, key in enumerate(mbox.iterkeys(), 1):
            yield Mail(f"{path.name}, mail {number}", mbox.get_bytes(key))
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror or exc}") from None


def _parsed(raw: bytes) -> EmailMessage:
    message = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    return message


#: What the header parser of ``email.policy.default`` raises on a malformed header
#: (``Message-ID: <<<>>>`` is an IndexError, a LookupError, inside it).
_MALFORMED = (ValueError, LookupError, AttributeError, TypeError, email.errors.MessageError)


def _header(message: EmailMessage, name: str) -> str:
    """A header as text; a malformed one (which the parser may refuse to decode) as it stands in
    the mail, read without the parser: one stranger's bad header stopped the whole mailbox."""
    try:
        return str(message.get(name, "") or "")
    except _MALFORMED:
        wanted = name.lower()
        return next((str(value) for key, value in message.raw_items() if key.lower() == wanted), "")


def _plain_text(message: EmailMessage, kind: str = "plain", limit: int = BODY_SCAN) -> str:
    """The first ``limit`` characters of the mail's ``kind`` (plain or html) part; "" without one."""
    try:
        part = message.get_body(preferencelist=(kind,))
        return str(part.get_content())[:limit] if isinstance(part, EmailMessage) else ""
    except (LookupError, ValueError, UnicodeError, KeyError):
        return ""


def token_of(message: EmailMessage, unsubscribe_url: str = "", *, quoted: bool = True) -> str | None:
    """The unsubscribe token a mail carries: in its subject, else in its plain-text part, as
    "unsubscribe TOKEN" or as the reminder's own unsubscribe link (``unsubscribe_url``). The link
    is looked for in the whole text, then in the HTML part: it stands at the foot of a quoted
    reminder, and many clients forward or reply in HTML alone. ``quoted=False``: the subject only."""
    found = subject_token(_header(message, "Subject"))
    if found is not None or not quoted:
        return found
    text = _plain_text(message, limit=LINK_SCAN)
    found = subject_token(text[:BODY_SCAN]) or link_token(text, unsubscribe_url)
    if found is None and unsubscribe_url:
        found = link_token(html.unescape(_plain_text(message, "html", LINK_SCAN)), unsubscribe_url)
    return found


#: Headers an auto-reply carries besides RFC 3834's ``Auto-Submitted`` (vacation programs, older clients).
_AUTOREPLY_HEADERS = ("X-Autoreply", "X-Autorespond")


def automatic(message: EmailMessage) -> bool:
    """Whether a machine sent the mail: RFC 3834's ``Auto-Submitted``, a delivery or read report
    (``multipart/report``), a vacation program's marks, or a mailer daemon's bounce. Such a mail
    speaks for nobody: neither its sender nor a reminder it quotes asked to unsubscribe."""
    if _header(message, "Auto-Submitted").strip().lower() not in ("", "no") \
            or message.get_content_type() == "multipart/report" \
            or _header(message, "Precedence").strip().lower() == "auto_reply" \
            or _header(message, "Return-Path").strip() == "<>":
        return True
    if any(_header(message, name).strip().lower() not in ("", "no") for name in _AUTOREPLY_HEADERS):
        return True
    senders = [address.lower() for _name, address in getaddresses([_header(message, "From")])]
    return any(address.split("@", 1)[0] == "mailer-daemon" for address in senders)


#: Why a machine's mail quoting a reminder is refused: a delay warning (4.x.x, a full mailbox),
#: a bounce or an out-of-office carries the reminder's link, and nobody asked for anything.
AUTOMATIC = "an automatic mail (an auto-reply or a delivery report): the reminder it quotes asks nothing"


def _sender(message: EmailMessage) -> str | None:
    """The one valid address of ``From:``, unless the mail was sent by a machine (:func:`automatic`)."""
    if automatic(message):
        return None
    found = [normalize_email(address) for _name, address in getaddresses([_header(message, "From")]) if address]
    return found[0] if len(found) == 1 and found[0] and is_valid_email(found[0]) else None


_MAIL, _HASHED = "mail ", "mail sha256:"  # how a mail's key in ``cr_inbound`` starts


def _mail_id(message: EmailMessage, raw: bytes) -> str:
    """The mail's key in ``cr_inbound`` (191 characters at most): its Message-ID, or a hash."""
    message_id = _header(message, "Message-ID").strip()
    if message_id and len(message_id) <= 160:
        return _MAIL + message_id
    return _HASHED + hashlib.sha256(message_id.encode() if message_id else raw).hexdigest()


def forgotten_key(key: str) -> str:
    """The ``cr_inbound`` key a mail keeps once its sender is forgotten: its Message-ID hashed, as
    a long one is from the start (a client writes the sender's domain, even address, into it).
    Any other key (a hash already, an SMS's provider id) is returned as it is."""
    if not key.startswith(_MAIL) or key.startswith(_HASHED):
        return key
    return _HASHED + hashlib.sha256(key[len(_MAIL):].encode()).hexdigest()


def check_mailbox(path: Path, secret: str) -> None:
    """Raise ConfigError when :func:`read_mailbox` could read nothing: no secret to check the
    tokens with, no mailbox at ``path``, or one it cannot read (a folder of mails it may not
    list, an mbox whose first bytes fail). Checked before the ledger is opened, so that a
    refused command (exit 2) makes no ledger file."""
    if not secret:
        raise ConfigError("shop.unsubscribe_secret is empty: the mails' tokens cannot be checked (nothing was read)")
    try:
        if path.is_dir():
            for folder in _mail_folders(path):
                next(folder.iterdir(), None)
        else:
            with path.open("rb") as handle:
                handle.read(5)  # what mails() reads first
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror or exc}") from None


def no_mail(path: Path) -> str:
    """What a mailbox without a single mail says. Empty is an unsubscribe mailbox's state between
    requests, and a path to the wrong folder looked the same: 0 mails, exit 0. A folder that is
    no Maildir and holds no .eml file says so, and how many files it leaves unread (a Maildir's
    new/ given for the Maildir: its mails have no .eml ending)."""
    if not path.is_dir() or _mail_folders(path) != [path]:
        return f"{path}: no mail found there (an empty mailbox)"
    try:
        others = sum(1 for file in path.iterdir() if file.is_file() and not file.name.startswith("."))
    except OSError:  # gone or unreadable since it was read: the line says what is known
        others = 0
    unread = (f"; its {others} other file{' is' if others == 1 else 's are'} not read (a Maildir's new/ or cur/? "
              "give the Maildir itself)") if others else ""
    return f"{path}: no mail found there: no .eml file in it, and not a Maildir (no cur/ or new/ in it){unread}"


def _read_report(ledger: Ledger, result: MailboxResult, mail: Mail, message: EmailMessage, mail_id: str,
                 before: str | None, now: datetime | None) -> None:
    """Suppress the address a delivery report says failed for good (:data:`NO_SUCH_USER`), or a
    feedback report says complained (:data:`COMPLAINED`), when it returns a message sent to it
    (:mod:`cartrescue.bounce_mail`), and keep the report read. One that names a stranger is
    listed; a delay, a success or a not-spam report names nobody. A report refused by an older
    version (a report asks nothing to unsubscribe) is taken now."""
    complaint = is_feedback_report(message)
    ours, strangers = complainers(ledger, message) if complaint else bounced_addresses(ledger, message)
    kind, reason = ("complaint", COMPLAINED) if complaint else ("bounce", NO_SUCH_USER)
    source = f"{kind} {mail.where}"
    if not ours:
        if before is not None:  # refused by an older version, and reported then
            result.seen += 1
        # Kept under its Message-ID's hash: the report may name a stranger's address.
        elif not ledger.inbound(forgotten_key(mail_id), "", "ignored", None, source, now):
            result.seen += 1
        elif strangers:
            result.not_ours.append((mail.where, clipped(", ".join(strangers), 256), kind))
        return
    hashed = email_hash(ours[0])  # one at most: each message cartrescue sends has one recipient
    known = ledger.suppression(hashed) is not None
    if before == "refused":
        taken = ledger.retake_inbound((mail_id, forgotten_key(mail_id)), hashed, reason, source, now)
    else:
        taken = ledger.inbound(mail_id, hashed, "suppressed", reason, source, now)
    if not taken:
        result.seen += 1
    elif known:
        result.already += 1
    elif complaint:
        result.complained += 1
    else:
        result.bounced += 1


def read_mailbox(ledger: Ledger, path: Path, secret: str, *, trust_sender: bool = False,
                 now: datetime | None = None, unsubscribe_url: str = "") -> MailboxResult:
    """Suppress the address of every unsubscribe mail at ``path`` not read before; see the module.
    ``unsubscribe_url``: ``shop.unsubscribe_url``, whose links in a mail's text carry a token too.

    A mail refused before is checked again: its token may verify now (a secret that was not
    set, or set to another value, when it came): it was a customer's request all along."""
    check_mailbox(path, secret)
    result = MailboxResult()
    for mail in mails(path):
        result.read += 1
        if mail.unreadable:  # nothing of it to remember: the next run tries it again, and says so again
            result.refused.append((mail.where, "", mail.unreadable))
            continue
        message = _parsed(mail.raw)
        mail_id = _mail_id(message, mail.raw)
        before = ledger.inbound_action(mail_id, forgotten_key(mail_id))  # read, and its sender forgotten since
        if before is not None and before != "refused":
            result.seen += 1
            continue
        if is_delivery_report(message) or is_feedback_report(message):
            _read_report(ledger, result, mail, message, mail_id, before, now)
            continue
        sender = _sender(message)
        # A machine's mail counts by its subject alone (a client's unsubscribe button may mark its
        # mail generated): the link its text quotes is the reminder's, not a request.
        machine = automatic(message)
        token = token_of(message, unsubscribe_url, quoted=not machine)
        address, why = None, ""
        if token is None and machine and token_of(message, unsubscribe_url) is not None:
            why = AUTOMATIC
        elif token is None:
            why = "no unsubscribe token in its subject or text"
        else:
            try:
                address = normalize_email(verify_token(token, secret))
            except BadToken as exc:
                why = f"refused: {exc}"
        how = "token"
        if address is None and trust_sender and sender:
            address, how = sender, "sender"
        hashed = email_hash(address) if address else ""
        known = bool(hashed) and ledger.suppression(hashed) is not None
        source = f"mail ({how}) {mail.where}"
        if before == "refused":  # reported by an earlier run: now taken, or still refused (said once)
            if hashed and ledger.retake_inbound((mail_id, forgotten_key(mail_id)), hashed, UNSUBSCRIBED, source, now):
                result.added += not known
                result.already += known
            else:
                result.seen += 1
            continue
        # A refused mail speaks for nobody the ledger knows, so no erasure could find it by its
        # sender: its Message-ID (which may name the sender's domain, even address) is kept hashed.
        fresh = ledger.inbound(mail_id if hashed else forgotten_key(mail_id), hashed,
                               "suppressed" if hashed else "refused", UNSUBSCRIBED if hashed else None, source, now)
        if not fresh:
            result.seen += 1
        elif not hashed:
            result.refused.append((mail.where, clipped(sender or _header(message, "From"), 256), why))
        elif known:
            result.already += 1
        else:
            result.added += 1
    if not result.read:
        result.warnings.append(no_mail(path))
    return result
