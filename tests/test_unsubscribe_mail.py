"""`suppress mailbox`: the mails List-Unsubscribe's mailto: link made, read from a real mailbox.

Each test starts from a message cartrescue really wrote (``run --outbox``): the unsubscribe
mail is what a mail client makes of its ``List-Unsubscribe`` mailto: link (RFC 6068: the link's
subject, to the link's address, from the customer), kept the way mail systems keep mail:
an mbox file and a Maildir written by Python's ``mailbox`` module, ``.eml`` files.
"""

from __future__ import annotations

import email
import email.policy
import mailbox
import re
from email.message import EmailMessage
from pathlib import Path
from urllib.parse import unquote

import pytest

from cartrescue.contacts import email_hash
from cartrescue.unsubscribe import make_token
from conftest import Shop, cart

SECRET = "test-secret-of-the-suite"  # conftest's shop.unsubscribe_secret
MAILTO = "unsubscribe@shop.example.com"



def mailto_subjects(shop: Shop, tmp_path: Path, *addresses: str) -> dict[str, str]:
    """The subject each address's mail client puts on its unsubscribe mail: the mailto: link of
    the List-Unsubscribe header of the message cartrescue wrote for it."""
    shop.configure(shop={"unsubscribe_mailto": MAILTO})
    shop.add(*(cart(f"c{n}", email=address) for n, address in enumerate(addresses)))
    outbox = tmp_path / "outbox"
    assert shop.cli("run", "--outbox", str(outbox)).exit_code == 0
    subjects = {}
    for path in outbox.glob("*.eml"):
        message = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
        subjects[message["To"].addresses[0].addr_spec] = mailto_subject(message)
    assert set(subjects) == set(addresses)
    return subjects


def mailto_subject(message: email.message.EmailMessage) -> str:
    """The subject of the unsubscribe mail the message's List-Unsubscribe mailto: link makes."""
    link = re.search(r"<mailto:([^>]*)>", str(message["List-Unsubscribe"]))
    assert link is not None
    target, query = link.group(1).split("?", 1)
    assert target == MAILTO
    return unquote(dict(p.split("=", 1) for p in query.split("&"))["subject"])


def mail(sender: str, subject: str, body: str = "", **headers: str) -> EmailMessage:
    message = EmailMessage()
    message["From"], message["To"], message["Subject"] = sender, MAILTO, subject
    message["Message-ID"] = f"<{abs(hash((sender, subject, body)))}@client.example.org>"
    for name, value in headers.items():
        message[name.replace("_", "-")] = value
    message.set_content(body or "sent from my phone")
    return message


def mbox_of(path: Path, *messages: EmailMessage | bytes) -> Path:
    """An mbox file of ``messages``: built ones, or the bytes a relay wrote (a bounce report)."""
    box = mailbox.mbox(path)
    for message in messages:
        box.add(message)
    box.flush()
    box.close()
    return path


def test_an_mbox_of_unsubscribe_mails_suppresses_each_address_once(shop: Shop, tmp_path: Path) -> None:
    subjects = mailto_subjects(shop, tmp_path, "ann@example.com", "bob@example.com")
    box = mbox_of(tmp_path / "unsubscribe.mbox",
                  mail("ann@example.com", subjects["ann@example.com"]),
                  mail("Bob <bob@example.com>", "Re: " + subjects["bob@example.com"]),
                  mail("carl@example.com", "please stop"))
    result = shop.cli("suppress", "mailbox", str(box), "--json", now=None)
    assert result.exit_code == 1, result.output  # the third mail carries no token
    assert result.json == {"mailbox": str(box), "read": 3, "added": 2, "bounced": 0, "complained": 0, "already": 0, "seen_before": 0,
                           "refused": [{"where": "unsubscribe.mbox, mail 3", "from": "carl@example.com",
                                        "why": "no unsubscribe token in its subject or text"}],
                           "not_ours": [], "warnings": []}
    assert shop.suppression("ann@example.com")["reason"] == "unsubscribed"
    assert shop.suppression("bob@example.com") is not None
    assert shop.suppression("carl@example.com") is None


def test_reading_the_mailbox_again_changes_nothing_and_exits_0(shop: Shop, tmp_path: Path) -> None:
    """Cron reads the same mailbox every few minutes: a refused mail is reported once, not forever."""
    subjects = mailto_subjects(shop, tmp_path, "ann@example.com")
    box = mbox_of(tmp_path / "unsubscribe.mbox", mail("ann@example.com", subjects["ann@example.com"]),
                  mail("carl@example.com", "please stop"))
    assert shop.cli("suppress", "mailbox", str(box), now=None).exit_code == 1
    again = shop.cli("suppress", "mailbox", str(box), "--json", now=None)
    assert again.exit_code == 0, again.output
    assert again.json["seen_before"] == 2 and again.json["added"] == 0 and again.json["refused"] == []


def test_a_suppression_lifted_since_is_not_undone_by_the_same_mail(shop: Shop, tmp_path: Path) -> None:
    subjects = mailto_subjects(shop, tmp_path, "ann@example.com")
    box = mbox_of(tmp_path / "unsubscribe.mbox", mail("ann@example.com", subjects["ann@example.com"]))
    assert shop.cli("suppress", "mailbox", str(box), now=None).exit_code == 0
    assert shop.cli("suppress", "remove", "ann@example.com", now=None).exit_code == 0
    assert shop.cli("suppress", "mailbox", str(box), now=None).exit_code == 0
    assert shop.suppression("ann@example.com") is None


def test_a_maildir_a_folder_of_eml_files_and_one_eml_file_are_read(shop: Shop, tmp_path: Path) -> None:
    subjects = mailto_subjects(shop, tmp_path, "ann@example.com", "bob@example.com", "dora@example.com")
    maildir = mailbox.Maildir(tmp_path / "Maildir")  # creates cur, new and tmp
    maildir.add(mail("ann@example.com", subjects["ann@example.com"]))
    maildir.close()
    folder = tmp_path / "saved"
    folder.mkdir()
    (folder / "1.eml").write_bytes(bytes(mail("bob@example.com", "Fwd: " + subjects["bob@example.com"])))
    single = tmp_path / "dora.eml"
    single.write_bytes(bytes(mail("dora@example.com", subjects["dora@example.com"])))
    for path in (tmp_path / "Maildir", folder, single):
        result = shop.cli("suppress", "mailbox", str(path), "--json", now=None)
        assert result.exit_code == 0, result.output
        assert (result.json["read"], result.json["added"]) == (1, 1)
    for who in ("ann@example.com", "bob@example.com", "dora@example.com"):
        assert shop.suppression(who) is not None


@pytest.mark.parametrize("bad_id", ["<<<>>>", "<@>", "<>"])
def test_a_mail_with_a_malformed_message_id_is_read_and_does_not_stop_the_mailbox(shop: Shop, tmp_path: Path,
                                                                                  bad_id: str) -> None:
    """Any sender can write any Message-ID: ``<<<>>>`` made the header parser raise inside the
    fallback meant for malformed headers, and the command ended in an internal error (exit 70)
    at that mail, on every cron run, so nobody's unsubscribe mail was read any more."""
    subjects = mailto_subjects(shop, tmp_path, "ann@example.com", "bob@example.com")
    folder = tmp_path / "saved"
    folder.mkdir()
    odd = bytes(mail("ann@example.com", subjects["ann@example.com"]))
    odd = re.sub(rb"(?m)^Message-ID: .*$", b"Message-ID: " + bad_id.encode(), odd)
    (folder / "1.eml").write_bytes(odd)
    (folder / "2.eml").write_bytes(bytes(mail("bob@example.com", subjects["bob@example.com"])))
    result = shop.cli("suppress", "mailbox", str(folder), "--json", now=None)
    assert result.exit_code == 0, result.output
    assert (result.json["read"], result.json["added"], result.json["refused"]) == (2, 2, [])
    assert shop.suppression("ann@example.com") is not None and shop.suppression("bob@example.com") is not None
    again = shop.cli("suppress", "mailbox", str(folder), "--json", now=None)
    assert again.exit_code == 0 and again.json["seen_before"] == 2  # kept under the id as it stands


def test_a_token_in_the_text_counts_when_the_subject_lost_it(shop: Shop, tmp_path: Path) -> None:
    token = make_token("ann@example.com", SECRET)
    box = mbox_of(tmp_path / "box", mail("ann@example.com", "(no subject)", f"Hello,\n\nunsubscribe {token}\n"))
    assert shop.cli("suppress", "mailbox", str(box), now=None).exit_code == 0
    assert shop.suppression("ann@example.com") is not None


def reminder_of(shop: Shop, tmp_path: Path, **details: object) -> EmailMessage:
    """The reminder a real run writes for Ann's cart (``details``: more of :func:`cart`)."""
    shop.add(cart("c1", email="ann@example.com", **details))  # type: ignore[arg-type]
    outbox = tmp_path / "outbox"
    assert shop.cli("run", "--outbox", str(outbox)).exit_code == 0
    (eml,) = outbox.glob("*.eml")
    reminder = email.message_from_bytes(eml.read_bytes(), policy=email.policy.default)
    assert isinstance(reminder, EmailMessage)
    return reminder


def assert_suppresses_ann(shop: Shop, eml: Path, message: EmailMessage) -> None:
    """``suppress mailbox`` of ``message`` kept as the .eml file ``eml`` suppresses Ann, exit 0."""
    eml.write_bytes(bytes(message))
    result = shop.cli("suppress", "mailbox", str(eml), "--json", now=None)
    assert result.exit_code == 0, result.output
    assert shop.suppression("ann@example.com") is not None


def test_a_forwarded_reminder_whose_text_carries_its_unsubscribe_link_suppresses(shop: Shop, tmp_path: Path) -> None:
    """A customer forwards the reminder to the shop with "please unsubscribe me": its text holds
    the reminder's own unsubscribe link, and the mail was refused ("no unsubscribe token")."""
    reminder = reminder_of(shop, tmp_path)
    text = reminder.get_body(("plain",)).get_content()
    from cartrescue.suppressions import subject_token

    assert "/unsubscribe?token=" in text and subject_token(text) is None  # the link, no "unsubscribe TOKEN"
    quoted = "\n".join("> " + line for line in text.splitlines())
    box = mbox_of(tmp_path / "box", mail("ann@example.com", f"Fwd: {reminder['Subject']}",
                                         f"Please unsubscribe me.\n\n{quoted}\n"))
    result = shop.cli("suppress", "mailbox", str(box), "--json", now=None)
    assert result.exit_code == 0, result.output
    assert shop.suppression("ann@example.com") is not None


def test_a_reply_quoting_a_long_reminder_whose_link_is_past_the_first_lines_suppresses(
        shop: Shop, tmp_path: Path) -> None:
    """The reminder's link stands at its foot: below a long cart's lines the quoted link was past
    the first 4096 characters searched, and the reply was refused ("no unsubscribe token")."""
    from cartrescue.suppressions import subject_token

    items = [(f"SKU-{n}", f"Handmade ceramic coffee mug number {n}, glazed in ocean blue, 350 ml, dishwasher safe", 1, "25.00") for n in range(80)]
    reminder = reminder_of(shop, tmp_path, items=items)
    text = reminder.get_body(("plain",)).get_content()
    quoted = "\n".join("> " + line for line in text.splitlines())
    body = f"Please unsubscribe me.\n\nOn Monday, Test Shop wrote:\n{quoted}\n"
    assert body.index("/unsubscribe?token=") > 4096 and subject_token(body) is None
    reply = mail("ann@example.com", f"Re: {reminder['Subject']}", body)
    assert_suppresses_ann(shop, tmp_path / "reply.eml", reply)


def test_a_reminder_forwarded_in_html_alone_suppresses(shop: Shop, tmp_path: Path) -> None:
    """Many clients forward in HTML alone: the reminder's link was in the mail's HTML, no plain
    text part was there to search, and the mail was refused ("no unsubscribe token")."""
    reminder = reminder_of(shop, tmp_path)
    page = reminder.get_body(("html",)).get_content()
    assert "/unsubscribe?token=" in page
    forward = mail("ann@example.com", f"Fwd: {reminder['Subject']}")
    forward.set_content(f"<p>Please unsubscribe me.</p><blockquote>{page}</blockquote>", subtype="html")
    assert_suppresses_ann(shop, tmp_path / "forward.eml", forward)


def test_a_forged_token_is_refused_and_suppresses_nobody(shop: Shop, tmp_path: Path) -> None:
    forged = make_token("ann@example.com", "not-the-shops-secret")
    box = mbox_of(tmp_path / "box", mail("mallory@example.org", f"unsubscribe {forged}"))
    result = shop.cli("suppress", "mailbox", str(box), "--json", now=None)
    assert result.exit_code == 1
    (refused,) = result.json["refused"]
    assert refused["why"] == "refused: unsubscribe token signature does not match"
    assert shop.suppression("ann@example.com") is None and shop.suppression("mallory@example.org") is None


def test_the_unsubscribe_mail_of_a_send_tests_mailto_link_is_refused_and_suppresses_nobody(
        shop: Shop, tmp_path: Path) -> None:
    """A test mail's List-Unsubscribe mailto: link (a mail client's button) carried a real token:
    the mail it made unsubscribed whoever the test went to."""
    shop.configure(shop={"unsubscribe_mailto": MAILTO}).add(cart("c1", email="ann@example.com"))
    assert shop.cli("send-test", "dev@example.org", "c1", "--outbox", str(tmp_path / "t")).exit_code == 0
    (path,) = (tmp_path / "t").glob("*.eml")
    subject = mailto_subject(email.message_from_bytes(path.read_bytes(), policy=email.policy.default))
    box = mbox_of(tmp_path / "box", mail("dev@example.org", subject))
    result = shop.cli("suppress", "mailbox", str(box), "--json", now=None)
    assert result.exit_code == 1
    (refused,) = result.json["refused"]
    assert refused["why"] == "refused: a link from a preview, send-test or dry-run message: it unsubscribes nobody"
    assert shop.suppression("ann@example.com") is None and shop.suppression("dev@example.org") is None


def test_trust_sender_unsubscribes_the_sender_of_a_mail_without_a_token(shop: Shop, tmp_path: Path) -> None:
    box = mbox_of(tmp_path / "box", mail("Carl <Carl@Example.com>", "please stop sending me these"))
    result = shop.cli("suppress", "mailbox", str(box), "--trust-sender", "--json", now=None)
    assert result.exit_code == 0, result.output
    assert result.json["added"] == 1
    assert shop.suppression("carl@example.com") is not None


@pytest.mark.parametrize("headers", [{"Auto_Submitted": "auto-replied"},
                                     {"Content_Type": "multipart/report; report-type=delivery-status"}])
def test_trust_sender_never_takes_an_automatic_mail_for_its_sender(shop: Shop, tmp_path: Path, headers) -> None:
    message = mail("mailer-daemon@example.net", "Out of office")
    for name, value in headers.items():
        del message[name.replace("_", "-")]
        message[name.replace("_", "-")] = value
    box = mbox_of(tmp_path / "box", message)
    result = shop.cli("suppress", "mailbox", str(box), "--trust-sender", "--json", now=None)
    assert result.exit_code == 1 and result.json["added"] == 0
    assert shop.suppression("mailer-daemon@example.net") is None


def test_a_missing_mailbox_is_an_error_naming_it(shop: Shop, tmp_path: Path) -> None:
    result = shop.cli("suppress", "mailbox", str(tmp_path / "nothing.mbox"), "--json", now=None)
    assert result.exit_code == 2
    assert result.json["error"]["message"] == f"{tmp_path / 'nothing.mbox'}: cannot read: No such file or directory"


def test_quiet_prints_nothing_when_every_mail_was_taken(shop: Shop, tmp_path: Path) -> None:
    subjects = mailto_subjects(shop, tmp_path, "ann@example.com")
    box = mbox_of(tmp_path / "box", mail("ann@example.com", subjects["ann@example.com"]))
    quiet = shop.cli("suppress", "mailbox", str(box), "--quiet", now=None)
    assert quiet.exit_code == 0 and quiet.output == ""
    loud = shop.cli("suppress", "mailbox", str(mbox_of(tmp_path / "more", mail("x@example.com", "hi"))), "-q", now=None)
    assert loud.exit_code == 1 and "more, mail 1: x@example.com: no unsubscribe token" in loud.stderr


def test_an_empty_secret_reads_no_mail_and_loses_none(shop: Shop, tmp_path: Path) -> None:
    """Without the secret every mail was refused and remembered as read: once the secret was
    set again, the requests were 'seen before' and nobody was unsubscribed."""
    subjects = mailto_subjects(shop, tmp_path, "ann@example.com")
    box = mbox_of(tmp_path / "box", mail("ann@example.com", subjects["ann@example.com"]))
    secret = shop.config["shop"]["unsubscribe_secret"]
    shop.configure(shop={"unsubscribe_secret": ""})
    refused = shop.cli("suppress", "mailbox", str(box), "--json", now=None)
    assert refused.exit_code == 2 and "unsubscribe_secret is empty" in refused.json["error"]["message"]
    assert refused.json["error"]["message"].startswith(f"{shop.config_path}: shop.unsubscribe_secret")
    shop.configure(shop={"unsubscribe_secret": secret})
    assert shop.cli("suppress", "mailbox", str(box), now=None).exit_code == 0
    assert shop.suppression("ann@example.com") is not None


def test_a_mail_refused_under_another_secret_is_taken_once_its_token_verifies(shop: Shop, tmp_path: Path) -> None:
    subjects = mailto_subjects(shop, tmp_path, "ann@example.com")
    box = mbox_of(tmp_path / "box", mail("ann@example.com", subjects["ann@example.com"]))
    secret = shop.config["shop"]["unsubscribe_secret"]
    shop.configure(shop={"unsubscribe_secret": "a-rotated-secret-by-mistake-0123"})
    assert shop.cli("suppress", "mailbox", str(box), now=None).exit_code == 1  # refused, reported once
    shop.configure(shop={"unsubscribe_secret": secret})
    again = shop.cli("suppress", "mailbox", str(box), "--json", now=None)
    assert again.exit_code == 0 and again.json["added"] == 1
    assert shop.suppression("ann@example.com") is not None


def test_an_emptied_mbox_holds_no_mail_and_says_so_unless_quiet(shop: Shop, tmp_path: Path) -> None:
    """An unsubscribe mailbox is empty between requests: exit 0, a warning, and nothing under
    --quiet (cron reads it every few minutes)."""
    box = tmp_path / "unsubscribe.mbox"
    box.write_bytes(b"")
    result = shop.cli("suppress", "mailbox", str(box), "--json", now=None)
    assert result.exit_code == 0 and result.json["read"] == 0
    assert result.json["warnings"] == [f"{box}: no mail found there (an empty mailbox)"]
    loud = shop.cli("suppress", "mailbox", str(box), now=None)
    assert loud.exit_code == 0 and f"warning: {box}: no mail found there (an empty mailbox)" in loud.stderr
    quiet = shop.cli("suppress", "mailbox", str(box), "--quiet", now=None)
    assert quiet.exit_code == 0 and quiet.output == ""


def test_a_folder_without_mail_says_it_is_no_maildir_and_holds_no_eml_file(shop: Shop, tmp_path: Path) -> None:
    """A path to the wrong folder (empty, or a Maildir's new/ whose files have no .eml ending) read
    as a mailbox without a mail: 0 mails, exit 0, not a word of why."""
    empty = tmp_path / "unsubscribe"
    empty.mkdir()
    result = shop.cli("suppress", "mailbox", str(empty), "--json", now=None)
    assert result.exit_code == 0 and result.json["read"] == 0
    assert result.json["warnings"] == [f"{empty}: no mail found there: no .eml file in it, and not a Maildir "
                                       "(no cur/ or new/ in it)"]
    new = tmp_path / "Maildir" / "new"
    new.mkdir(parents=True)
    (new / "1733526000.M1P2.host").write_bytes(bytes(mail("ann@example.com", "unsubscribe")))
    inside = shop.cli("suppress", "mailbox", str(new), now=None)
    assert inside.exit_code == 0
    assert (f"warning: {new}: no mail found there: no .eml file in it, and not a Maildir (no cur/ or new/ in it); "
            "its 1 other file is not read (a Maildir's new/ or cur/? give the Maildir itself)") in \
        " ".join(inside.stderr.split())


def test_a_maildir_with_new_only_and_a_folder_with_a_subfolder_are_read(shop: Shop, tmp_path: Path) -> None:
    subjects = mailto_subjects(shop, tmp_path, "ann@example.com", "bob@example.com")
    (tmp_path / "Maildir" / "new").mkdir(parents=True)
    (tmp_path / "Maildir" / "new" / "1.host").write_bytes(bytes(mail("ann@example.com", subjects["ann@example.com"])))
    folder = tmp_path / "saved"
    (folder / "old.eml").mkdir(parents=True)
    (folder / "1.eml").write_bytes(bytes(mail("bob@example.com", subjects["bob@example.com"])))
    for path in (tmp_path / "Maildir", folder):
        result = shop.cli("suppress", "mailbox", str(path), "--json", now=None)
        assert result.exit_code == 0 and result.json["added"] == 1, result.output


# -- forget ------------------------------------------------------------------------------------

def _read_and_forget(shop: Shop, tmp_path: Path, who: str) -> Path:
    """``who`` unsubscribes by mail (its client wrote the address into the Message-ID, as some do),
    the mailbox is read, then ``who`` is forgotten; the mailbox."""
    subjects = mailto_subjects(shop, tmp_path, who)
    message = mail(who, subjects[who])
    message.replace_header("Message-ID", f"<1732093200.5f3a.{who}>")
    box = mbox_of(tmp_path / "unsubscribe.mbox", message)
    assert shop.cli("suppress", "mailbox", str(box), now=None).exit_code == 0
    assert shop.cli("forget", who, "--keep-files", now=None).exit_code == 0
    return box


def test_forget_unlinks_the_unsubscribe_mails_read_from_the_address(shop: Shop, tmp_path: Path) -> None:
    """``cr_inbound`` kept each mail by its Message-ID with the address's hash: forget left both,
    and the Message-ID may name the sender."""
    from test_lifecycle import columns_holding, file_bytes

    _read_and_forget(shop, tmp_path, "bob@example.com")
    db = shop.folder / "ledger.db"
    assert columns_holding(db, "bob@example.com") == [] and b"bob@example.com" not in file_bytes(db)
    assert columns_holding(db, email_hash("bob@example.com")) == [("cr_suppression", "email_hash")]


def test_a_mail_read_before_forget_is_not_acted_on_again_after_it(shop: Shop, tmp_path: Path) -> None:
    """The next cron read of the mailbox skips the mail: taken again, it would record the hash of
    the address forgotten beside the mail once more."""
    from test_lifecycle import columns_holding

    box = _read_and_forget(shop, tmp_path, "bob@example.com")
    again = shop.cli("suppress", "mailbox", str(box), "--json", now=None)
    assert again.exit_code == 0, again.output
    assert (again.json["seen_before"], again.json["added"], again.json["already"]) == (1, 0, 0)
    assert columns_holding(shop.folder / "ledger.db", email_hash("bob@example.com")) == [("cr_suppression", "email_hash")]


def test_a_refused_mail_keeps_no_message_id_naming_its_sender_and_is_still_taken_once_it_verifies(
        shop: Shop, tmp_path: Path) -> None:
    """A refused mail names no address the ledger knows, so ``forget`` cannot tell whose it is:
    its raw Message-ID (a client may write the sender's address into it) stayed after the
    sender was forgotten."""
    from test_lifecycle import columns_holding

    subjects = mailto_subjects(shop, tmp_path, "bob@example.com")
    refused = mail("bob@example.com", subjects["bob@example.com"])
    refused.replace_header("Message-ID", "<20261205.bob@example.com>")
    box = mbox_of(tmp_path / "box", refused)
    secret = shop.config["shop"]["unsubscribe_secret"]
    shop.configure(shop={"unsubscribe_secret": "a-rotated-secret-by-mistake-0123"})
    assert shop.cli("suppress", "mailbox", str(box), now=None).exit_code == 1  # refused
    assert shop.cli("forget", "bob@example.com", "--keep-files", now=None).exit_code == 0
    assert columns_holding(shop.folder / "ledger.db", "bob@example.com") == []
    shop.configure(shop={"unsubscribe_secret": secret})
    again = shop.cli("suppress", "mailbox", str(box), "--json", now=None)  # its token verifies now
    assert again.exit_code == 0, again.output
    assert (again.json["added"], again.json["already"]) == (0, 1)  # taken, and bob was suppressed already
    assert shop.cli("suppress", "mailbox", str(box), "--json", now=None).json["seen_before"] == 1


def test_forget_hashes_the_message_ids_of_refused_mails_an_older_version_kept(shop: Shop, tmp_path: Path) -> None:
    from test_lifecycle import columns_holding

    from cartrescue.ledger import Ledger
    from cartrescue.unsubscribe_mail import forgotten_key

    ledger = Ledger(f"sqlite:///{shop.folder / 'ledger.db'}")
    assert ledger.inbound("mail <42.bob@example.com>", "", "refused", None, "mail (token) box")  # as kept before
    ledger.close()
    shop.add(cart("c-bob", email="bob@example.com"))
    shop.write()
    assert shop.cli("forget", "bob@example.com", "--keep-files", now=None).exit_code == 0
    assert columns_holding(shop.folder / "ledger.db", "bob@example.com") == []
    ledger = Ledger(f"sqlite:///{shop.folder / 'ledger.db'}")
    assert ledger.inbound_action(forgotten_key("mail <42.bob@example.com>")) == "refused"  # still read once
    ledger.close()


def _unreadable(path: Path) -> Path:
    """A file whose every read fails (EIO), as on a failing disk, for root too (who reads a file
    of any permissions): a link to /proc/self/mem, whose first page is never mapped."""
    if not Path("/proc/self/mem").exists():
        pytest.skip("needs Linux's /proc")
    path.symlink_to("/proc/self/mem")
    return path


def test_a_mail_that_cannot_be_read_is_listed_and_the_others_of_the_maildir_are_taken(
        shop: Shop, tmp_path: Path) -> None:
    """It stopped the whole mailbox (exit 2, naming the Maildir), every run, so the mails after it
    were never read, and the new ledger the command had made recorded nothing."""
    subjects = mailto_subjects(shop, tmp_path, "ann@example.com", "bob@example.com")
    (shop.folder / "ledger.db").unlink()
    box = mailbox.Maildir(tmp_path / "Maildir")
    for address in ("ann@example.com", "bob@example.com"):
        box.add(mail(address, subjects[address]))
    box.close()
    _unreadable(tmp_path / "Maildir" / "new" / "1-damaged")  # sorted before the others
    result = shop.cli("suppress", "mailbox", str(tmp_path / "Maildir"), "--json", now=None)
    assert result.exit_code == 1, result.output
    assert result.json["refused"] == [{"where": "Maildir/new/1-damaged", "from": "",
                                       "why": "cannot read: Input/output error"}]
    assert (result.json["read"], result.json["added"]) == (3, 2)
    assert shop.suppression("ann@example.com") is not None and shop.suppression("bob@example.com") is not None
    again = shop.cli("suppress", "mailbox", str(tmp_path / "Maildir"), "--json", now=None)
    assert again.exit_code == 1 and again.json["seen_before"] == 2  # not remembered: said until it is read
    assert [entry["where"] for entry in again.json["refused"]] == ["Maildir/new/1-damaged"]


def test_an_mbox_that_cannot_be_read_is_refused_without_making_a_ledger(shop: Shop, tmp_path: Path) -> None:
    """It could be opened, not read: the ledger was made first (and a warning said the request was
    recorded in it), then the command stopped, exit 2."""
    box = _unreadable(tmp_path / "unsubscribe.mbox")
    result = shop.cli("suppress", "mailbox", str(box), "--json", now=None)
    assert result.exit_code == 2, result.output
    assert result.json["error"]["message"] == f"{box}: cannot read: Input/output error"
    assert not (shop.folder / "ledger.db").exists()
    assert "no ledger was at" not in result.stderr


AUTOMATIC_WHY = "an automatic mail (an auto-reply or a delivery report): the reminder it quotes asks nothing"


def test_a_delay_warning_quoting_the_reminders_headers_suppresses_nobody(shop: Shop, tmp_path: Path) -> None:
    """Exim's "message delayed" warning (a 4.x.x: Ann's mailbox is full for a day) is plain text
    with a copy of the reminder's headers, List-Unsubscribe's link among them: read from a mailbox
    that also takes the shop's bounces, it unsubscribed Ann for good."""
    reminder_of(shop, tmp_path)
    (eml,) = (tmp_path / "outbox").glob("*.eml")
    headers = eml.read_text().split("\n\n", 1)[0]  # as the relay got them
    assert "/unsubscribe?token=" in headers
    warning = mail("Mail Delivery System <Mailer-Daemon@mx.example.org>", "Warning: message 1kXyZ-0003 delayed 24 hours",
                   "A message that you sent has not yet been delivered to one or more of its recipients after more\n"
                   "than 24 hours on the queue.\n\n  ann@example.com\n    452 4.2.2 Mailbox full\n\n"
                   f"------ This is a copy of the message's headers. ------\n\n{headers}\n",
                   Auto_Submitted="auto-replied")
    box = mbox_of(tmp_path / "box", warning)
    result = shop.cli("suppress", "mailbox", str(box), "--json", now=None)
    assert result.exit_code == 1, result.output
    assert [refused["why"] for refused in result.json["refused"]] == [AUTOMATIC_WHY]
    assert shop.suppression("ann@example.com") is None


@pytest.mark.parametrize("headers", [{"Auto_Submitted": "auto-replied"}, {"X_Autoreply": "yes"},
                                     {"Precedence": "auto_reply"}])
def test_an_out_of_office_reply_quoting_the_reminder_suppresses_nobody(shop: Shop, tmp_path: Path, headers) -> None:
    """An auto-reply that quotes the reminder carries its unsubscribe link at its foot, as a
    person's reply does; but nobody asked for anything: it unsubscribed Ann while she was away."""
    reminder = reminder_of(shop, tmp_path)
    quoted = "\n".join("> " + line for line in reminder.get_body(("plain",)).get_content().splitlines())
    reply = mail("ann@example.com", f"Automatic reply: {reminder['Subject']}",
                 f"I am out of the office until 14 December.\n\n{quoted}\n", **headers)
    result = shop.cli("suppress", "mailbox", str(mbox_of(tmp_path / "box", reply)), "--json", now=None)
    assert result.exit_code == 1, result.output
    assert [refused["why"] for refused in result.json["refused"]] == [AUTOMATIC_WHY]
    assert shop.suppression("ann@example.com") is None


def test_a_clients_unsubscribe_mail_marked_automatic_still_suppresses(shop: Shop, tmp_path: Path) -> None:
    """A mail client's unsubscribe button sends the mailto: link's subject, and may mark its mail
    as generated: that subject is the request itself, whoever typed it."""
    subjects = mailto_subjects(shop, tmp_path, "ann@example.com")
    button = mail("ann@example.com", subjects["ann@example.com"], Auto_Submitted="auto-generated")
    result = shop.cli("suppress", "mailbox", str(mbox_of(tmp_path / "box", button)), "--json", now=None)
    assert result.exit_code == 0, result.output
    assert shop.suppression("ann@example.com") is not None


@pytest.mark.parametrize("headers", [{"X_Autoreply": "yes"}, {"X_Autorespond": "Out of office"},
                                     {"Precedence": "auto_reply"}])
def test_trust_sender_never_takes_a_vacation_programs_reply_for_its_sender(shop: Shop, tmp_path: Path, headers) -> None:
    """A vacation program that marks its reply the older way (no ``Auto-Submitted``) was taken for
    its sender's request: ``--trust-sender`` unsubscribed a customer for being away."""
    box = mbox_of(tmp_path / "box", mail("Carl <carl@example.com>", "Out of office", "Back on Monday.", **headers))
    result = shop.cli("suppress", "mailbox", str(box), "--trust-sender", "--json", now=None)
    assert result.exit_code == 1 and result.json["added"] == 0, result.output
    assert shop.suppression("carl@example.com") is None
