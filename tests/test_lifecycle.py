"""Data lifecycle on a real SQLite ledger: `forget EMAIL` erases one person and keeps only a
hashed suppression; `ledger.retention` prunes old decisions and run records in the next
delivering run, one DELETE per table."""

from __future__ import annotations

import csv
from decimal import Decimal
import sqlite3
import unicodedata
from datetime import timedelta
from pathlib import Path

import pytest
from smtpserver import Fault, LoopbackSMTP
from sqlalchemy import event, insert

import shopdb
from cartrescue.config import load_config
from cartrescue.contacts import email_hash, fold_email
from cartrescue.errors import ConfigError
from cartrescue.ledger import Ledger, Message
from cartrescue.lifecycle import prune
from conftest import NOW, Shop, cart, cli

BOB = "bob@example.com"


def ledger_of(shop: Shop) -> Ledger:
    return Ledger(f"sqlite:///{shop.folder / 'ledger.db'}")


def columns_holding(db: Path, needle: str) -> list[tuple[str, str]]:
    """Every (table, column) of the SQLite file with a value containing ``needle`` (any case)."""
    found = []
    with sqlite3.connect(db) as conn:
        for (table,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'"):
            for _cid, column, *_rest in conn.execute(f'PRAGMA table_info("{table}")'):
                hits = conn.execute(f'SELECT COUNT(*) FROM "{table}" WHERE lower(CAST("{column}" AS TEXT)) LIKE ?',
                                    (f"%{needle.lower()}%",)).fetchone()[0]
                if hits:
                    found.append((table, column))
    return found


def file_bytes(db: Path) -> bytes:
    """The ledger file and its write-ahead log, as bytes: deleted rows must not linger there."""
    wal = db.with_name(db.name + "-wal")
    return db.read_bytes() + (wal.read_bytes() if wal.exists() else b"")


def _codes_shop(shop: Shop) -> Shop:
    shop.add(cart("c-bob", email="Bob@Example.com"), cart("c-alice", email="alice@example.com"))
    shop.configure(sequences={"default": {"steps": [
        {"delay": "1h", "template": "reminder-3",
         "incentive": {"kind": "percent", "value": 10, "valid_for": "3d",
                       "codes": {"pool": "comeback", "pattern": "CB-{random:8}"}}}]}})
    return shop


def test_forget_erases_every_row_with_the_address_and_keeps_only_its_hash(shop: Shop) -> None:
    _codes_shop(shop)
    outbox = shop.folder / "out"
    assert shop.cli("run", "--outbox", str(outbox)).exit_code == 0
    assert shop.cli("send-test", BOB, "c-alice", "--outbox", str(shop.folder / "tests")).exit_code == 0
    ledger = ledger_of(shop)  # Bob answered the survey of his reminder, in his own words
    ledger.save_survey_answer("csv:c-bob", 1, "price", "too dear for me, bob@example.com", "en", tier="standard",
                              variant=None, email="Bob@Example.com", now=NOW)
    ledger.close()
    db = shop.folder / "ledger.db"
    assert {table for table, _ in columns_holding(db, BOB)} == {
        "cr_message", "cr_decision", "cr_code", "cr_send_test", "cr_survey"}

    result = shop.cli("forget", " BOB@example.com ", "--keep-files", "--json", now=None)
    assert result.exit_code == 0, result.output
    assert result.json["erased"] == {"cr_message": 1, "cr_decision": 1, "cr_survey": 1, "cr_send_test": 1,
                                     "cr_inbound": 0}
    assert (result.json["codes_kept"], result.json["codes_freed"], result.json["suppression_added"]) == (1, 0, True)

    assert columns_holding(db, BOB) == [] and BOB.encode() not in file_bytes(db).lower()
    assert columns_holding(db, "alice@example.com")  # nobody else was touched
    ledger = ledger_of(shop)
    assert ledger.suppression(email_hash(BOB))["reason"] == "forgotten"
    codes = shop.cli("codes", "list", "--status", "all", "--json").json["codes"]
    bobs = [c for c in codes if c["email"] is None]
    assert len(codes) == 2 and len(bobs) == 1 and bobs[0]["status"] == "active"  # spent, whose unknown
    assert sorted(map(str, (m["email"] for m in ledger.messages()))) == ["None", "alice@example.com"]  # his step stays


def test_forget_keeps_the_record_of_a_carts_steps_so_none_goes_out_twice(shop: Shop) -> None:
    """The shop corrected the cart's address, then the old one was forgotten: its message rows
    had been deleted, and the next run sent the cart's step 1 again (to the new address), and
    the next new row took the deleted row's id (a webhook document's id)."""
    shop.add(cart("h1", email="old@example.com"))
    assert shop.cli("run", "--outbox", str(shop.folder / "out")).exit_code == 0
    (first,) = shop.messages()
    shop.carts.clear()
    shop.add(cart("h1", email="new@example.com"))
    assert shop.cli("forget", "old@example.com", "--keep-files", "--json", now=None).json["erased"]["cr_message"] == 1
    (decision,) = shop.cli("run", "--outbox", str(shop.folder / "out"), "--json",
                           now=NOW + timedelta(minutes=30)).json["decisions"]
    assert (decision["action"], decision["reason"]) == ("defer", "step_not_due")
    (kept,) = shop.messages()
    assert (kept["id"], kept["email"], kept["step"]) == (first["id"], None, 1)
    shop.add(cart("h2", email="other@example.com"))
    assert shop.cli("run", "--outbox", str(shop.folder / "out"), now=NOW + timedelta(minutes=30)).exit_code == 0
    assert [m["id"] for m in shop.messages()] == [first["id"], first["id"] + 1]


def test_forget_overwrites_the_deleted_rows_even_where_secure_deletion_is_off(tmp_path: Path) -> None:
    """SQLite keeps a deleted row's bytes in the file unless secure deletion is on (Debian's
    build has it on by default, others do not): forget turns it on for its own deletes, and
    checkpoints the write-ahead log, which would hold older copies of the pages."""
    from cartrescue.lifecycle import forget

    db = tmp_path / "ledger.db"
    ledger = Ledger(f"sqlite:///{db}")
    rows = [{"cart_key": f"csv:c{i}", "email": BOB if i % 7 == 0 else f"p{i}@example.com", "action": "skip",
             "reason": "too_old", "step": None, "tier": "standard", "score": 0.0} for i in range(700)]
    ledger.save_decisions(1, NOW, rows)
    event.listen(ledger.engine, "connect", lambda dbapi, _record: dbapi.execute("PRAGMA secure_delete = OFF"))
    ledger.engine.dispose()  # from here on, connections as a build without secure deletion makes them
    assert BOB.encode() in file_bytes(db)
    assert forget(ledger, BOB).rows["cr_decision"] == 100
    assert BOB.encode() not in file_bytes(db)  # looked at while the ledger is open: its WAL too
    ledger.close()


def test_the_runs_after_forget_never_learn_the_address_back(shop: Shop) -> None:
    _codes_shop(shop)
    assert shop.cli("run", "--outbox", str(shop.folder / "out")).exit_code == 0
    assert shop.cli("forget", BOB, "--keep-files", now=None).exit_code == 0
    later = shop.cli("run", "--outbox", str(shop.folder / "out"), "--json", now=NOW + timedelta(days=2))
    assert later.exit_code == 0, later.output
    bob = next(d for d in later.json["decisions"] if d["cart_id"] == "c-bob")
    assert (bob["action"], bob["reason"]) == ("skip", "suppressed")  # the shop's data still has the cart
    assert columns_holding(shop.folder / "ledger.db", BOB) == []


def test_suppress_remove_refuses_to_lift_an_erasure_without_force(shop: Shop) -> None:
    """The suppression forget left keeps the shop's export from bringing the person back: a
    slip of suppress remove must not undo an erasure request without a word."""
    _codes_shop(shop)
    assert shop.cli("run", "--outbox", str(shop.folder / "out")).exit_code == 0
    assert shop.cli("forget", BOB, "--keep-files", now=None).exit_code == 0
    refused = shop.cli("suppress", "remove", BOB, "--json", now=None)
    message = refused.json["error"]["message"]
    assert refused.exit_code == 2 and "erased" in message and "--force" in message
    assert [row["reason"] for row in ledger_of(shop).suppressions()] == ["forgotten"]
    lifted = shop.cli("suppress", "remove", BOB, "--force", "--json", now=None)
    assert lifted.exit_code == 0 and lifted.json["removed"] is True
    assert ledger_of(shop).suppressions() == []


def test_forgetting_twice_changes_nothing(shop: Shop) -> None:
    _codes_shop(shop)
    assert shop.cli("run", "--outbox", str(shop.folder / "out")).exit_code == 0
    first = shop.cli("forget", BOB, "--keep-files", "--json", now=None)
    again = shop.cli("forget", BOB, "--keep-files", "--json", now=None)
    assert first.exit_code == again.exit_code == 0
    assert sum(first.json["erased"].values()) == 2
    assert sum(again.json["erased"].values()) == 0 and again.json["codes_kept"] == 0
    assert again.json["suppressed"] is True and again.json["suppression_added"] is False
    assert len(ledger_of(shop).suppressions()) == 1


def test_an_address_that_unsubscribed_keeps_its_suppression(shop: Shop) -> None:
    shop.add(cart("c-bob", email=BOB))
    shop.write()
    assert shop.cli("unsubscribe", BOB, now=None).exit_code == 0
    result = shop.cli("forget", BOB, "--json", now=None)
    assert result.exit_code == 0 and result.json["suppression_added"] is False and result.json["suppressed"] is True
    (row,) = ledger_of(shop).suppressions()
    assert row["reason"] == "unsubscribed"


@pytest.mark.smtp
def test_a_code_whose_message_bounced_goes_back_to_its_pool_and_the_bounce_reply_is_scrubbed(shop: Shop) -> None:
    _codes_shop(shop)
    with LoopbackSMTP(faults=[Fault(r"^bob@", "550 5.1.1 <bob@example.com>: Recipient address rejected")]) as server:
        shop.configure(smtp=server.smtp_config())
        assert shop.cli("run", "--send").exit_code == 1
    (bounce,) = ledger_of(shop).suppressions()
    assert bounce["source"] == "smtp: 550 5.1.1 <(address)>: Recipient address rejected"  # not kept, from the start
    result = shop.cli("forget", BOB, "--json", now=None)
    assert (result.json["codes_kept"], result.json["codes_freed"], result.json["suppression_added"]) == (0, 1, False)
    (row,) = ledger_of(shop).suppressions()
    assert row["reason"] == "bounced: no such user" and BOB not in row["source"]
    pools = shop.cli("codes", "list", "--json").json["pools"]["comeback"]
    assert (pools["unused"], pools["active"], pools["undelivered"]) == (1, 1, 0)
    assert columns_holding(shop.folder / "ledger.db", BOB) == []


@pytest.mark.parametrize(("stored", "asked"), [("ann@xn--bcher-kva.example", "Ann@Bücher.example"),
                                                ("ann@bücher.example", "ANN@XN--BCHER-KVA.EXAMPLE")])
def test_forget_erases_the_address_in_either_form_of_its_international_domain(shop: Shop, stored: str,
                                                                               asked: str) -> None:
    """The export (or the relay) names the domain as xn--…, the erasure request as the person
    writes it, or the other way round: one mailbox. forget matched only the form it was given:
    it said "forgotten", erased no row, and the ledger kept the address in every table. (The
    ledger keeps the address in its one spelling, the domain's Unicode form: fold_email.)"""
    written, stored = stored, fold_email(stored)
    shop.add(cart("c-ann", email=written, phone="+46 70 000 00 01"), cart("c-eve", email="eve@example.com"))
    shop.configure(priority={"tiers": [{"name": "call", "min_score": 0, "channel": "call-list"}]},
                   sequences={"default": {"steps": [{"delay": "1h", "template": "reminder-1"}]}})
    assert shop.cli("run", "--outbox", str(shop.folder / "out")).exit_code == 0
    db = shop.folder / "ledger.db"
    assert {table for table, _ in columns_holding(db, stored)} == {"cr_message", "cr_decision"}

    result = shop.cli("forget", asked, "--files", "--json", now=None)
    assert result.exit_code == 0, result.output
    assert (result.json["erased"]["cr_message"], result.json["erased"]["cr_decision"]) == (1, 1)
    assert result.json["call_list"]["rows"] == 1  # --files: its row left the shop's call list too
    assert columns_holding(db, stored) == [] and stored.encode() not in file_bytes(db)
    assert written.encode() not in file_bytes(db)
    assert stored not in (shop.folder / "call-list.csv").read_text(encoding="utf-8")
    assert columns_holding(db, "eve@example.com")
    again = shop.cli("forget", asked, "--json", now=None)
    assert sum(again.json["erased"].values()) == 0 and again.json["suppression_added"] is False
    later = shop.cli("run", "--outbox", str(shop.folder / "out"), "--json", now=NOW + timedelta(days=2))
    ann = next(d for d in later.json["decisions"] if d["cart_id"] == "c-ann")
    assert (ann["action"], ann["reason"]) == ("skip", "suppressed") and columns_holding(db, stored) == []


@pytest.mark.postgres
def test_forget_erases_the_other_form_of_an_international_domain_on_a_postgresql_ledger(shop: Shop) -> None:
    """The same on PostgreSQL, whose lower() and IN see the Unicode form as SQLite's do not."""
    with shopdb.shop_database("postgres", "ledger") as db:
        shop.configure(ledger={"url": db.url})
        shop.add(cart("c-ann", email="ann@bücher.example"), cart("c-eve", email="eve@example.com"))
        assert shop.cli("run", "--outbox", str(shop.folder / "out")).exit_code == 0
        result = shop.cli("forget", "Ann@XN--BCHER-KVA.example", "--keep-files", "--json", now=None)
        assert result.exit_code == 0, result.output
        assert (result.json["erased"]["cr_message"], result.json["erased"]["cr_decision"]) == (1, 1)
        left = [(table, n) for table in ("cr_message", "cr_decision") for (n,) in db.execute(
            f"SELECT COUNT(*) FROM {table} WHERE email IN ('ann@bücher.example', 'ann@xn--bcher-kva.example')") if n]
        assert left == [] and db.execute("SELECT COUNT(*) FROM cr_message WHERE email IS NOT NULL")[0][0] == 1


ANN_COMPOSED = "ann@b\u00fccher.example"  # ü as one code point (NFC)
ANN_DECOMPOSED = unicodedata.normalize("NFD", ANN_COMPOSED)  # u + combining diaeresis


@pytest.mark.parametrize(("stored", "asked"), [(ANN_COMPOSED, ANN_DECOMPOSED), (ANN_DECOMPOSED, ANN_COMPOSED)])
def test_forget_erases_the_address_in_its_composed_and_decomposed_unicode_forms(shop: Shop, stored: str,
                                                                                asked: str) -> None:
    """``ü`` as one character or as u + combining diaeresis is one address (IDNA gives both
    ``xn--bcher-kva``): forget given one form erased no row kept in the other, and said
    "forgotten". A run keeps the composed form; rows an older version kept decomposed are
    written so here."""
    shop.add(cart("c-ann", email=stored), cart("c-eve", email="eve@example.com"))
    assert shop.cli("run", "--outbox", str(shop.folder / "out")).exit_code == 0
    db = shop.folder / "ledger.db"
    assert {table for table, _ in columns_holding(db, ANN_COMPOSED)} == {"cr_message", "cr_decision"}
    with sqlite3.connect(db) as conn:
        for table in ("cr_message", "cr_decision"):
            conn.execute(f"UPDATE {table} SET email = ? WHERE email = ?", (stored, ANN_COMPOSED))
    conn.close()
    assert {table for table, _ in columns_holding(db, stored)} == {"cr_message", "cr_decision"}
    result = shop.cli("forget", asked, "--keep-files", "--json", now=None)
    assert result.exit_code == 0, result.output
    assert (result.json["erased"]["cr_message"], result.json["erased"]["cr_decision"]) == (1, 1)
    assert columns_holding(db, ANN_COMPOSED) == columns_holding(db, ANN_DECOMPOSED) == []
    assert columns_holding(db, "eve@example.com")
    later = shop.cli("run", "--outbox", str(shop.folder / "out"), "--json", now=NOW + timedelta(days=2))
    ann = next(d for d in later.json["decisions"] if d["cart_id"] == "c-ann")
    assert (ann["action"], ann["reason"]) == ("skip", "suppressed")


@pytest.mark.postgres
def test_forget_erases_the_composed_form_when_asked_in_the_decomposed_one_on_a_postgresql_ledger(shop: Shop) -> None:
    with shopdb.shop_database("postgres", "ledger") as db:
        shop.configure(ledger={"url": db.url})
        shop.add(cart("c-ann", email=ANN_COMPOSED), cart("c-eve", email="eve@example.com"))
        assert shop.cli("run", "--outbox", str(shop.folder / "out")).exit_code == 0
        result = shop.cli("forget", ANN_DECOMPOSED.upper(), "--keep-files", "--json", now=None)
        assert result.exit_code == 0, result.output
        assert (result.json["erased"]["cr_message"], result.json["erased"]["cr_decision"]) == (1, 1)
        left = [n for table in ("cr_message", "cr_decision") for (n,) in db.execute(
            f"SELECT COUNT(*) FROM {table} WHERE email LIKE 'ann@%'") if n]
        assert left == [] and db.execute("SELECT COUNT(*) FROM cr_message WHERE email IS NOT NULL")[0][0] == 1


ledger_on = shopdb.ledger_on  # test_survey takes it from here


@pytest.mark.parametrize("kind", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres, id="postgres")])
def test_forget_empties_the_customer_id_and_number_of_the_persons_messages_and_keeps_value_and_locale(
        shop: Shop, kind: str) -> None:
    """The kept message rows lost the address but still held the shop's customer id (it leads
    straight back to the customer's record in the shop) and the number the step was texted to:
    the rows were the person's still. Their cart's value and locale stay, for the report."""
    from httpserver import TwilioEmulator
    from test_sms_channel import sms_shop

    with TwilioEmulator() as twilio, ledger_on(shop, kind) as url:
        sms_shop(shop, twilio.url, carts=0)
        shop.add(cart("c-bob", email=BOB, customer_id="cust-17", phone="070-123 45 00", sms_consent="yes",
                      locale="sv_SE", items=[("SKU-1", "Blue mug", 2, "25.00")]),
                 cart("c-eve", email="eve@example.com", customer_id="cust-18", phone="070-123 45 01",
                      sms_consent="yes"))
        assert shop.cli("run", "--send").exit_code == 0
        ledger = Ledger(url)
        try:
            before = {m["cart_id"]: m for m in ledger.messages()}
            assert (before["c-bob"]["customer_id"], before["c-bob"]["phone"]) == ("cust-17", "+46701234500")
            assert shop.cli("forget", BOB, now=None).exit_code == 0
            after = {m["cart_id"]: m for m in ledger.messages()}
        finally:
            ledger.close()
    bob, eve = after["c-bob"], after["c-eve"]
    assert (bob["email"], bob["phone"], bob["customer_id"]) == (None, None, None)
    assert (bob["id"], bob["cart_key"], bob["status"]) == (before["c-bob"]["id"], "csv:c-bob", "sent")
    assert (bob["cart_value"], bob["locale"]) == (before["c-bob"]["cart_value"], "sv_SE")
    assert Decimal(bob["cart_value"]) == Decimal("50.00")
    assert {key: eve[key] for key in ("email", "phone", "customer_id")} == \
        {"email": "eve@example.com", "phone": "+46701234501", "customer_id": "cust-18"}


def test_the_call_list_is_the_shops_file_until_asked(shop: Shop) -> None:
    shop.add(cart("c-bob", email=BOB, phone="+46 70 000 00 01"), cart("c-eve", email="eve@example.com",
                                                                      phone="+46 70 000 00 02"))
    shop.configure(priority={"tiers": [{"name": "call", "min_score": 0, "channel": "call-list"}]},
                   sequences={"default": {"steps": [{"delay": "1h", "template": "reminder-1"}]}})
    assert shop.cli("run", "--outbox", str(shop.folder / "out")).exit_code == 0
    call_list = shop.folder / "call-list.csv"
    before = call_list.read_text(encoding="utf-8")

    told = shop.cli("forget", BOB, now=None)
    assert told.exit_code == 2 and call_list.read_text(encoding="utf-8") == before
    assert "1 call-list row" in told.stderr and "--files" in told.stderr and "--keep-files" in told.stderr
    assert ledger_of(shop).suppression(email_hash(BOB)) is None  # nothing was changed

    removed = shop.cli("forget", BOB, "--files", "--json", now=None)
    assert removed.json["call_list"] == {"path": str(call_list), "rows": 1, "removed": True}
    with call_list.open(encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [row["email"] for row in rows] == ["eve@example.com"]


def _bob_and_eve_in_an_outbox(shop: Shop) -> Path:
    """Bob's and Eve's reminders written by ``run --outbox``; the outbox folder."""
    shop.add(cart("c-bob", email=BOB), cart("c-eve", email="eve@example.com"))
    outbox = shop.folder / "out"
    assert shop.cli("run", "--outbox", str(outbox)).exit_code == 0
    return outbox


def test_forget_without_files_refuses_while_outbox_files_hold_the_person_so_they_stay_findable(shop: Shop) -> None:
    """``forget`` without ``--files`` erased the ledger rows that say which ``--outbox`` files
    hold the person: a ``forget --files`` after it found none of them, and the erasure could
    never be finished by the tool. Now it changes nothing and says how to go on."""
    outbox = _bob_and_eve_in_an_outbox(shop)
    refused = shop.cli("forget", BOB, now=None)
    assert refused.exit_code == 2, refused.output
    assert "1 outbox file" in refused.stderr and "--files" in refused.stderr and "--keep-files" in refused.stderr
    assert ledger_of(shop).suppression(email_hash(BOB)) is None
    assert columns_holding(shop.folder / "ledger.db", BOB)  # nothing was erased
    done = shop.cli("forget", BOB, "--files", "--json", now=None)
    assert done.exit_code == 0, done.output
    assert len(done.json["files_removed"]) == 1 and [p.name for p in outbox.iterdir()] == ["csv_c-eve-step1-2.eml"]


def test_forget_refusing_under_json_is_one_document_counting_the_files_and_rows(shop: Shop) -> None:
    shop.add(cart("c-bob", email=BOB))
    assert shop.cli("run", "--outbox", str(shop.folder / "out")).exit_code == 0
    (shop.folder / "call-list.csv").write_text("cart_id,phone,email\r\nc-bob,+46700000001,bob@example.com\r\n")
    refused = shop.cli("forget", BOB, "--json", now=None)
    assert refused.exit_code == 2 == refused.json["error"]["exit_code"]
    assert refused.json["call_list"]["rows"] == 1 and len(refused.json["files"]) == 1
    assert refused.json["files"][0].endswith(".eml")


def test_forget_refusing_under_json_has_no_warnings_as_no_failed_commands_document_has(shop: Shop) -> None:
    """README: a failed command's document has no ``warnings`` (the keys nothing reads are said
    on stderr); the refusal's had ``"warnings": []``, or the keys, as a finished forget's."""
    shop.add(cart("c-bob", email=BOB))
    assert shop.cli("run", "--outbox", str(shop.folder / "out")).exit_code == 0
    shop.configure(sms={"sender": "MyShop"})  # a key nothing reads: no tier texts
    refused = shop.cli("forget", BOB, "--json", now=None)
    assert refused.exit_code == 2 == refused.json["error"]["exit_code"]
    assert set(refused.json) == {"error", "call_list", "files"}, refused.json
    assert "sms.sender: ignored" in refused.stderr


def test_forget_keep_files_erases_the_ledger_and_lists_the_files_it_leaves(shop: Shop) -> None:
    outbox = _bob_and_eve_in_an_outbox(shop)
    kept = shop.cli("forget", BOB, "--keep-files", "--json", now=None)
    assert kept.exit_code == 0, kept.output
    (left,) = kept.json["files_kept"]
    assert Path(left).exists() and kept.json["files_removed"] == []
    assert columns_holding(shop.folder / "ledger.db", BOB) == []
    said = shop.cli("forget", BOB, "--keep-files", now=None)  # nothing left to find: as any forget
    assert said.exit_code == 0 and left not in said.stderr
    with_files = shop.cli("forget", "eve@example.com", "--keep-files", now=None)
    assert with_files.exit_code == 0 and str(next(outbox.glob("*c-eve*"))) in with_files.stderr


def test_forget_files_and_keep_files_together_is_a_usage_error(shop: Shop) -> None:
    shop.add(cart("c1")).write()
    result = shop.cli("forget", BOB, "--files", "--keep-files", "--json", now=None)
    assert result.exit_code == 2 and "give one" in result.json["error"]["message"]
    assert ledger_of(shop).suppressions() == []


def test_forget_files_removes_the_rows_of_a_call_list_a_spreadsheet_saved_and_keeps_its_layout(shop: Shop) -> None:
    """Excel in SE/DE/FR saves ";" (here with the BOM of "CSV UTF-8"): the header read with ","
    had no ``email`` column, so forget said the list had no rows of the address and left them."""
    shop.add(cart("c1")).write()
    call_list = shop.folder / "call-list.csv"
    call_list.write_bytes(b"\xef\xbb\xbfcart_id;phone;email\r\nc-bob;;bob@example.com\r\nc-eve;;eve@example.com\r\n")
    removed = shop.cli("forget", BOB, "--files", "--json", now=None)
    assert removed.json["call_list"] == {"path": str(call_list), "rows": 1, "removed": True}
    assert call_list.read_bytes() == b"\xef\xbb\xbfcart_id;phone;email\r\nc-eve;;eve@example.com\r\n"


def test_files_removes_the_eml_files_of_the_address(shop: Shop) -> None:
    outbox = _bob_and_eve_in_an_outbox(shop)
    result = shop.cli("forget", BOB, "--files", "--json", now=None)
    assert result.exit_code == 0, result.output
    assert len(result.json["files"]) == 1 and result.json["files_removed"] == result.json["files"]
    left = list(outbox.glob("*.eml"))
    assert [path.name for path in left] == [p.name for p in left if "c-eve" in p.name] and len(left) == 1


def test_files_finds_the_eml_files_of_a_shop_folder_that_moved_since_they_were_written(shop: Shop) -> None:
    """The ledger keeps the absolute path: after the folder moved, the person's messages stayed
    where they now were, and forget said nothing of it (exit 0)."""
    shop.add(cart("c-bob", email=BOB), cart("c-eve", email="eve@example.com"))
    removed, outbox = forget_files_after_the_folder_moved(shop, BOB)
    assert [Path(name).name for name in removed] == ["csv_c-bob-step1-1.eml"]
    assert [path.name for path in outbox.glob("*.eml")] == ["csv_c-eve-step1-2.eml"]


def forget_files_after_the_folder_moved(shop: Shop, contact: str) -> tuple[list[str], Path]:
    """``run --outbox out`` (a folder beside the config), the shop's folder moved, then ``forget
    contact --files``: the files it removed, and the outbox folder where it is now."""
    assert shop.cli("run", "--outbox", "out").exit_code == 0
    moved = shop.folder.with_name(shop.folder.name + "-moved")
    shop.folder.rename(moved)
    done = cli("forget", contact, "--files", "--json", "--config", str(moved / "cartrescue.yaml"))
    assert done.exit_code == 0, done.output
    return done.json["files_removed"], moved / "out"


def test_forget_files_that_are_nowhere_to_be_found_is_an_error_listing_them(shop: Shop) -> None:
    """The erasure is not complete: a script must not take it for done."""
    shop.add(cart("c-bob", email=BOB))
    outbox = shop.folder / "out"
    assert shop.cli("run", "--outbox", str(outbox)).exit_code == 0
    written = next(outbox.glob("*.eml"))
    written.rename(shop.folder / "elsewhere.eml")
    done = shop.cli("forget", BOB, "--files", "--json", now=None)
    assert done.exit_code == 1 == done.json["exit_code"]
    assert done.json["files_not_found"] == [str(written)] and done.json["files_removed"] == []


def test_files_removes_the_webhook_documents_of_the_address_too(shop: Shop) -> None:
    """``--outbox`` writes a webhook's document as ``.json`` (an SMS as ``.sms.txt``): they hold
    the address too, and only ``.eml`` files had been found, counted and removed."""
    shop.configure(priority={"tiers": [{"name": "standard", "min_score": 0, "channel": "webhook"}]},
                   webhook={"url": "https://hooks.example.com/cart", "secret": "whsec-" + "k" * 30})
    outbox = _bob_and_eve_in_an_outbox(shop)
    result = shop.cli("forget", BOB, "--files", "--json", now=None)
    assert len(result.json["files"]) == 1 and result.json["files_removed"] == result.json["files"]
    assert [path.name for path in outbox.iterdir()] == [p.name for p in outbox.iterdir() if "c-eve" in p.name]


def test_files_removes_the_send_test_files_rendered_from_the_persons_cart(shop: Shop) -> None:
    """``send-test --outbox`` renders a customer's cart to the owner: the file holds their name
    and cart, and forget found only the run's files (by the message rows), never the tests'."""
    shop.add(cart("c-bob", email=BOB, first_name="Bobbert", last_name="Privatsson"), cart("c-eve", email="eve@example.com"))
    assert shop.cli("run", "--outbox", str(shop.folder / "out")).exit_code == 0
    tests = shop.folder / "tests"
    for cart_id in ("c-bob", "c-eve"):
        assert shop.cli("send-test", "owner@shop.example.com", cart_id, "--outbox", str(tests)).exit_code == 0
    assert any("Bobbert" in path.read_text(encoding="utf-8") for path in tests.iterdir())  # greeted by name
    result = shop.cli("forget", BOB, "--files", "--json", now=None)
    assert result.exit_code == 0, result.output
    assert result.json["erased"]["cr_send_test"] == 1 and len(result.json["files_removed"]) == 2  # the run's, the test's
    assert [path.name for path in tests.iterdir()] == ["csv_c-eve-step2-test2.eml"]  # the step it waits for
    assert [row["cart_id"] for row in ledger_of(shop).send_tests()] == ["c-eve"]


def test_files_removes_the_send_test_file_of_a_cart_no_run_has_messaged_yet(shop: Shop) -> None:
    """The owner's first test before the first run (the cart a run would message now): no ledger
    row but the test's named the customer, so forget found no cart of theirs and left the file,
    their name and cart in it, on disk."""
    shop.add(cart("c-bob", email=BOB, first_name="Bobbert"), cart("c-eve", email="eve@example.com"))
    tests = shop.folder / "tests"
    for cart_id in ("c-bob", "c-eve"):
        assert shop.cli("send-test", "owner@shop.example.com", cart_id, "--outbox", str(tests)).exit_code == 0
    refused = shop.cli("forget", BOB, "--json", now=None)  # without --files: the file holds the person
    assert refused.exit_code == 2 and refused.json["files"] == [str(tests / "csv_c-bob-step1-test1.eml")], refused.output
    result = shop.cli("forget", BOB, "--files", "--json", now=None)
    assert result.exit_code == 0, result.output
    assert result.json["erased"]["cr_send_test"] == 1
    assert [path.name for path in tests.iterdir()] == ["csv_c-eve-step1-test2.eml"]


def test_files_removes_the_send_test_files_sent_to_the_address(shop: Shop) -> None:
    """A test sent to the address (``To:``) is its file too: forget deleted the test's row, and
    with it the only record of the file."""
    shop.add(cart("c-eve", email="eve@example.com"))
    tests = shop.folder / "tests"
    assert shop.cli("send-test", BOB, "c-eve", "--outbox", str(tests)).exit_code == 0
    result = shop.cli("forget", BOB, "--files", "--json", now=None)
    assert result.exit_code == 0, result.output
    assert result.json["files_removed"] == [str(tests / "csv_c-eve-step1-test1.eml")]
    assert list(tests.iterdir()) == []


def test_forget_of_a_non_address_is_exit_2_and_changes_nothing(shop: Shop) -> None:
    shop.add(cart("c1"))
    shop.write()
    result = shop.cli("forget", "bob at example", "--json", now=None)
    assert result.exit_code == 2 and "not an e-mail address" in result.json["error"]["message"]
    assert ledger_of(shop).suppressions() == []


# -- retention --------------------------------------------------------------------------------


def test_retention_prunes_old_decisions_and_runs_in_the_next_delivering_run(shop: Shop) -> None:
    shop.configure(ledger={"url": "sqlite:///ledger.db", "retention": {"decisions": "2d", "runs": "3d"}})
    shop.add(cart("c-old", idle=timedelta(hours=2)))
    out = str(shop.folder / "out")
    assert shop.cli("run", "--outbox", out).exit_code == 0  # run 1 at NOW
    assert shop.cli("run", "--outbox", out, now=NOW + timedelta(days=1)).exit_code == 0  # run 2: c-old again
    shop.carts = []
    shop.add(cart("c-new", now=NOW + timedelta(days=4)))
    dry = shop.cli("run", "--json", now=NOW + timedelta(days=4))
    assert dry.json["pruned"] == {}  # a dry-run writes nothing, deletes nothing
    third = shop.cli("run", "--outbox", out, "--json", now=NOW + timedelta(days=4))
    assert third.exit_code == 0, third.output
    assert third.json["pruned"] == {"decisions": 1, "runs": 1}  # c-old's decision of day 1, run 1 of day 0
    db = shop.folder / "ledger.db"
    with sqlite3.connect(db) as conn:
        assert [r[0] for r in conn.execute("SELECT cart_key FROM cr_decision")] == ["csv:c-new"]
        assert [r[0] for r in conn.execute("SELECT id FROM cr_run ORDER BY id")] == [2, 3]
        assert conn.execute("SELECT COUNT(*) FROM cr_message").fetchone()[0] == 3  # c-old's 2 steps, c-new's 1: kept


def test_a_run_whose_claims_have_no_outcome_is_kept_whatever_its_age(tmp_path: Path) -> None:
    ledger = Ledger(f"sqlite:///{tmp_path / 'ledger.db'}")
    dead, finished = ledger.start_run("send", NOW), ledger.start_run("send", NOW)
    ledger.finish_run(finished, "ok", {})
    with ledger.engine.begin() as conn:
        conn.execute(insert(Message.__table__).values(  # type: ignore[attr-defined]
            cart_key="csv:c1", cart_id="c1", email="c1@example.com", step=1, channel="email", status="claimed",
            run_id=dead, claimed_at=NOW))
    current = ledger.start_run("send", NOW + timedelta(days=400))
    pruned = prune(ledger, NOW + timedelta(days=400), decisions=timedelta(days=90), runs=timedelta(days=180),
                   current_run=current)
    assert pruned.runs == 1
    with ledger.engine.connect() as conn:
        assert sorted(r[0] for r in conn.exec_driver_sql("SELECT id FROM cr_run")) == [dead, current]


def test_pruning_is_one_delete_per_table(tmp_path: Path) -> None:
    ledger = Ledger(f"sqlite:///{tmp_path / 'ledger.db'}")
    ledger.save_decisions(1, NOW, [{"cart_key": f"csv:c{i}", "email": None, "action": "skip", "reason": "too_old",
                                    "step": None, "tier": "standard", "score": 0.0} for i in range(1200)])
    for _ in range(30):
        ledger.start_run("send", NOW)
    statements: list[str] = []
    event.listen(ledger.engine, "before_cursor_execute", lambda *args: statements.append(args[2]))
    pruned = prune(ledger, NOW + timedelta(days=365), decisions=timedelta(days=90), runs=timedelta(days=180))
    assert pruned.as_dict() == {"decisions": 1200, "runs": 30}
    assert [s.split()[0] for s in statements if s.lstrip().upper().startswith("DELETE")] == ["DELETE", "DELETE"]


@pytest.mark.parametrize(("value", "expected"), [
    ("30d", (timedelta(days=30), timedelta(days=30))),
    (None, (None, None)),
    ({"runs": "1w"}, (timedelta(days=90), timedelta(weeks=1))),
    ({"decisions": None}, (None, timedelta(days=180))),
])
def test_retention_reads_one_duration_null_or_per_table(tmp_path: Path, value: object, expected: tuple) -> None:
    path = tmp_path / "c.yaml"
    import yaml

    path.write_text(yaml.safe_dump({"source": {"type": "csv", "carts": "c.csv"}, "ledger": {"retention": value}}))
    retention = load_config(path).ledger.retention
    assert (retention.decisions, retention.runs) == expected


def test_retention_below_a_day_is_a_config_error_naming_the_key(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("source: {type: csv, carts: c.csv}\nledger: {retention: {decisions: 2h}}\n")
    with pytest.raises(ConfigError, match=r"ledger\.retention\.decisions: must be at least 1d"):
        load_config(path)


@pytest.mark.parametrize("kind", shopdb.KINDS)
def test_forget_and_retention_on_a_server_ledger(shop: Shop, kind: str) -> None:
    """The same statements on PostgreSQL and MariaDB ledgers (no SQLite pragmas there)."""
    with shopdb.shop_database(kind, "ledger") as db:
        shop.configure(ledger={"url": db.url, "retention": {"decisions": "2d", "runs": "2d"}})
        shop.add(cart("c-bob", email="Bob@Example.com"), cart("c-alice", email="alice@example.com"))
        assert shop.cli("run", "--outbox", str(shop.folder / "out")).exit_code == 0
        forgotten = shop.cli("forget", BOB, "--keep-files", "--json", now=None)
        assert forgotten.exit_code == 0, forgotten.output
        assert forgotten.json["erased"]["cr_message"] == 1 and forgotten.json["erased"]["cr_decision"] == 1
        later = shop.cli("run", "--outbox", str(shop.folder / "out"), "--json", now=NOW + timedelta(days=3))
        assert later.exit_code == 0, later.output
        assert later.json["pruned"] == {"decisions": 1, "runs": 1}  # c-alice's first decision was replaced
        ledger = Ledger(db.url)
        try:
            assert sorted(map(str, (m["email"] for m in ledger.messages()))) == ["None"] + ["alice@example.com"] * 2
            assert ledger.suppression(email_hash(BOB))["reason"] == "forgotten"
            with ledger.engine.connect() as conn:
                found = conn.exec_driver_sql("SELECT COUNT(*) FROM cr_decision WHERE LOWER(email) = 'bob@example.com'")
                assert found.scalar() == 0
        finally:
            ledger.close()


def test_forget_of_a_phone_number_removes_it_from_every_message_and_no_text_reaches_it_again(shop: Shop) -> None:
    from httpserver import TwilioEmulator
    from test_sms_channel import sms_shop

    from cartrescue.contacts import phone_hash

    with TwilioEmulator() as twilio:
        sms_shop(shop, twilio.url, carts=2)
        assert shop.cli("run", "--send").exit_code == 0
        db = shop.folder / "ledger.db"
        assert columns_holding(db, "+46701234500") == [("cr_message", "phone")]
        result = shop.cli("forget", "070-123 45 00", "--json", now=None)  # read in the shop's country
        assert result.exit_code == 0, result.output
        assert (result.json["phone"], result.json["email"]) == ("+46701234500", None)
        assert result.json["erased"] == {"cr_message": 1, "cr_send_test": 0, "cr_inbound": 0} and result.json["suppressed"] is True
        assert columns_holding(db, "+46701234500") == [] and b"+46701234500" not in file_bytes(db)
        assert columns_holding(db, "+46701234501")  # the other customer's number stays
        ledger = ledger_of(shop)
        assert ledger.suppression(phone_hash("+46701234500"))["reason"] == "forgotten"
        assert len(ledger.messages()) == 2  # the steps stay recorded: none is sent twice
        ledger.close()
        later = shop.cli("run", "--send", "--json", now=NOW + timedelta(days=1, hours=1))
        assert later.exit_code == 0, later.output
        assert "+46701234500" not in [m["To"] for m in twilio.messages[2:]]
        assert "+46701234501" in [m["To"] for m in twilio.messages[2:]]


def test_a_forgotten_address_does_not_come_back_with_a_cart_that_fails_an_earlier_gate(shop: Shop) -> None:
    """"Later runs store a suppressed cart's decision without the address": a cart without
    consent was judged ``no_consent`` before the suppression was looked at, and its decision row
    took the forgotten address back into the ledger."""
    shop.add(cart("c3", email="carol@example.org", consent="no"))
    assert shop.cli("forget", "carol@example.org", now=None).exit_code == 0
    result = shop.cli("run", "--outbox", str(shop.folder / "out"), "--json")
    assert [d["reason"] for d in result.json["decisions"]] == ["suppressed"]
    assert columns_holding(shop.folder / "ledger.db", "carol@example.org") == []


def test_forget_files_on_a_list_it_cannot_open_says_so_after_erasing_the_ledger(shop: Shop) -> None:
    """A call list that cannot be opened (unwritable, or a folder in its place) ended the command
    in an internal error after the ledger was erased, without saying the list was left as it was."""
    (shop.folder / "call-list.csv").mkdir()
    result = shop.cli("forget", "ann@example.com", "--files", "--json", now=None)
    assert result.exit_code == 1, result.output
    assert "the call list could not be rewritten" in result.json["error"]["message"]
    assert "the ledger is erased" in result.json["error"]["message"]


# -- a ledger.url that names no ledger ---------------------------------------------------------


def test_forget_into_a_ledger_file_that_was_not_there_says_so(shop: Shop) -> None:
    Ledger(f"sqlite:///{shop.folder / 'ledger.db'}").close()  # the ledger the shop's runs use
    shop.configure(ledger={"url": "sqlite:///ledgr.db"})  # a typo: the erasure must not pass in silence
    result = shop.cli("forget", "ann@example.com", "--json", now=None)
    assert result.exit_code == 0
    assert "no ledger was at" in result.stderr and "ledgr.db" in result.stderr and "ledger.url" in result.stderr
    assert result.json["email"] == "ann@example.com"  # still the one document on stdout


def test_forget_in_the_ledger_the_runs_use_says_nothing_more(shop: Shop) -> None:
    Ledger(f"sqlite:///{shop.folder / 'ledger.db'}").close()
    result = shop.cli("forget", "ann@example.com", now=None)
    assert result.exit_code == 0 and "forgotten" in result.stderr and "no ledger was at" not in result.stderr


def test_unsubscribe_into_a_ledger_file_that_was_not_there_says_so(shop: Shop) -> None:
    result = shop.cli("unsubscribe", "ann@example.com", now=None)
    assert result.exit_code == 0 and "no ledger was at" in result.stderr and "ledger.db" in result.stderr


@pytest.mark.parametrize("command", [("survey", "summary"), ("survey", "export"), ("codes", "list"),
                                     ("suppress", "list")])
def test_a_listing_of_a_ledger_file_that_is_not_there_says_so(shop: Shop, command: tuple[str, ...]) -> None:
    """A mistyped ledger.url listed "0 answers" or nothing, read as the shop's real state."""
    result = shop.cli(*command, "--json", now=None)
    assert result.exit_code == 0 and result.json is not None, result.output
    assert "note:" in result.stderr and "ledger.db does not exist" in result.stderr and "a typo" in result.stderr
    assert not (shop.folder / "ledger.db").exists()


@pytest.mark.parametrize("command", [("survey", "summary"), ("survey", "export"), ("codes", "list"),
                                     ("suppress", "list")])
def test_a_listing_of_a_ledger_whose_folder_is_not_there_says_so_and_makes_no_folder(
        shop: Shop, command: tuple[str, ...]) -> None:
    """A ledger in a folder no run has made yet stopped the listing (exit 2, "unable to open
    database file"), where a missing file in an existing folder got the note."""
    shop.configure(ledger={"url": "sqlite:///state/ledger.db"})
    result = shop.cli(*command, "--json", now=None)
    assert result.exit_code == 0 and result.json is not None, result.output
    assert "note:" in result.stderr and "ledger.db does not exist" in result.stderr and "a typo" in result.stderr
    assert not (shop.folder / "state").exists()


def test_suppress_list_of_a_ledger_file_that_is_not_there_makes_no_file(shop: Shop) -> None:
    result = shop.cli("suppress", "list", "--json", now=None)
    assert result.exit_code == 0 and result.json is not None and not (shop.folder / "ledger.db").exists()


@pytest.mark.parametrize("command", [("forget", "nobody"), ("forget", "nobody@"), ("unsubscribe", "not-a-token"),
                                     ("unsubscribe", "bob@"), ("suppress", "import", "no-such-file.txt"),
                                     ("suppress", "mailbox", "no-such-dir")])
def test_a_refused_request_leaves_no_ledger_file_behind(shop: Shop, command: tuple[str, ...]) -> None:
    """A request refused for its input ("nothing was changed", exit 2) made a new, empty ledger
    first, and said the request was recorded in it."""
    *words, argument = command
    if words[0] == "suppress":  # a file or mailbox that is not there
        argument = str(shop.folder / argument)
    result = shop.cli(*words, argument, "--json", now=None)
    assert result.exit_code == 2, result.output
    assert not (shop.folder / "ledger.db").exists()
    assert "no ledger was at" not in result.stderr


def _lost_webhook_answers(shop: Shop) -> None:
    """Both carts' coded messages sent over the webhook, taken by the receiver and never answered:
    each is ``failed_transient``, and the receiver may have passed its code on."""
    from httpserver import Answer, WebhookReceiver
    from test_webhook_channel import SECRET

    _codes_shop(shop)
    with WebhookReceiver(SECRET) as receiver:
        shop.configure(priority={"tiers": [{"name": "standard", "min_score": 0, "channel": "webhook"}]},
                       webhook={"url": receiver.url, "secret": SECRET, "retries": 0})
        receiver.plan(Answer(0, process=True, drop=True), Answer(0, process=True, drop=True))  # taken, unanswered
        assert shop.cli("run", "--send").exit_code == 1
        assert len(receiver.accepted) == 2
    assert {row["status"] for row in shop.messages()} == {"failed_transient"}


def test_codes_list_counts_the_code_of_a_webhook_message_whose_answer_was_lost_as_handed_out(shop: Shop) -> None:
    """``codes list`` and ``forget`` read one rule (``ledger.may_have_reached``): such a code is
    active, not ``undelivered``, as ``forget`` keeps it spent."""
    _lost_webhook_answers(shop)
    pools = shop.cli("codes", "list", "--json").json["pools"]["comeback"]
    assert (pools["active"], pools["undelivered"]) == (2, 0), pools


def test_a_code_whose_webhook_answer_was_lost_stays_spent_after_forget(shop: Shop) -> None:
    """The webhook channel sends a request again when its answer was lost, so a message left
    ``failed_transient`` may have reached the receiver, which may have passed its code on to the
    customer: ``forget`` put that code back in its pool, and the next cart got it too."""
    _lost_webhook_answers(shop)
    result = shop.cli("forget", BOB, "--json", now=None)
    assert (result.json["codes_kept"], result.json["codes_freed"]) == (1, 0), result.output
    pools = shop.cli("codes", "list", "--json").json["pools"]["comeback"]
    assert pools["unused"] == 0
