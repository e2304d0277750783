"""`forget PHONE` and the `--outbox` files of the texts sent to the number, on a real SQLite
ledger: counted, deleted with `--files`, listed with `--keep-files`, refused without either,
as for an address. Before, only an address's files were found: the number and the text sent to
it stayed on disk after `forget PHONE --files`."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from test_lifecycle import columns_holding, forget_files_after_the_folder_moved, ledger_of
from test_sms_channel import sms_shop

from cartrescue.contacts import email_hash, phone_hash
from conftest import NOW, Shop, cart

NUMBER, OTHER = "+46701234500", "+46701234501"


def _two_texted_numbers(shop: Shop) -> Path:
    """Two carts texted by ``run --outbox`` (numbers ``NUMBER`` and ``OTHER``); the outbox folder."""
    sms_shop(shop, "https://api.example.com", carts=2)
    outbox = shop.folder / "out"
    assert shop.cli("run", "--outbox", str(outbox)).exit_code == 0
    assert len(list(outbox.glob("*.sms.txt"))) == 2
    return outbox


def _text_of(outbox: Path, cart_id: str) -> Path:
    (text,) = outbox.glob(f"csv_{cart_id}-*.sms.txt")
    return text


def test_forget_phone_files_deletes_the_texts_written_for_the_number(shop: Shop) -> None:
    outbox = _two_texted_numbers(shop)
    theirs, others = _text_of(outbox, "s000"), _text_of(outbox, "s001")
    done = shop.cli("forget", "070-123 45 00", "--files", "--json", now=None)
    assert done.exit_code == 0, done.output
    assert done.json["files"] == [str(theirs)] and done.json["files_removed"] == [str(theirs)]
    assert (done.json["files_not_found"], done.json["files_kept"]) == ([], [])
    assert not theirs.exists() and others.exists()
    assert columns_holding(shop.folder / "ledger.db", NUMBER) == []


def test_forget_phone_without_files_refuses_while_texts_hold_the_number(shop: Shop) -> None:
    """Erased, the message rows no longer carry the number: no later ``forget`` finds its texts."""
    outbox = _two_texted_numbers(shop)
    refused = shop.cli("forget", NUMBER, now=None)
    assert refused.exit_code == 2, refused.output
    assert "1 outbox file" in refused.stderr and "--files" in refused.stderr and "--keep-files" in refused.stderr
    assert ledger_of(shop).suppression(phone_hash(NUMBER)) is None  # nothing was changed
    assert columns_holding(shop.folder / "ledger.db", NUMBER) == [("cr_message", "phone")]
    as_json = shop.cli("forget", NUMBER, "--json", now=None)
    assert as_json.exit_code == 2 == as_json.json["error"]["exit_code"]
    assert as_json.json["files"] == [str(_text_of(outbox, "s000"))] and as_json.json["call_list"]["rows"] == 0


def test_forget_phone_keep_files_erases_the_ledger_and_lists_the_texts_it_leaves(shop: Shop) -> None:
    outbox = _two_texted_numbers(shop)
    kept = shop.cli("forget", NUMBER, "--keep-files", "--json", now=None)
    assert kept.exit_code == 0, kept.output
    assert kept.json["files_kept"] == [str(_text_of(outbox, "s000"))] and kept.json["files_removed"] == []
    assert _text_of(outbox, "s000").exists() and columns_holding(shop.folder / "ledger.db", NUMBER) == []
    said = shop.cli("forget", OTHER, "--keep-files", now=None)
    assert said.exit_code == 0 and str(_text_of(outbox, "s001")) in said.stderr
    assert "for this number" in said.stderr
    again = shop.cli("forget", NUMBER, now=None)  # nothing left to find: as any forget
    assert again.exit_code == 0, again.output


def test_forget_phone_files_finds_the_texts_of_a_shop_folder_that_moved(shop: Shop) -> None:
    """Where ``--outbox`` recorded them, else the folder of the same name beside the config."""
    sms_shop(shop, "https://api.example.com", carts=2)
    removed, outbox = forget_files_after_the_folder_moved(shop, NUMBER)
    assert [Path(name).name for name in removed] == ["csv_s000-step1-1.sms.txt"]
    assert [path.name for path in outbox.iterdir()] == ["csv_s001-step1-2.sms.txt"]


def _texted_and_mailed(shop: Shop) -> Path:
    """Bob gets step 1 by e-mail, step 2 as a text (his address and number on one cart), Eve the
    same; the outbox folder with the four files."""
    sms_shop(shop, "https://api.example.com", carts=0)
    shop.configure(priority={"tiers": [{"name": "standard", "min_score": 0, "channel": "email"}]},
                   sequences={"default": {"steps": [{"delay": "1h", "template": "reminder-1"},
                                                    {"delay": "24h", "template": "reminder-2", "channel": "sms"}]}})
    shop.add(cart("c-bob", email="bob@example.com", phone="070-123 45 00", sms_consent="yes"),
             cart("c-eve", email="eve@example.com", phone="070-123 45 01", sms_consent="yes"))
    outbox = shop.folder / "out"
    assert shop.cli("run", "--outbox", str(outbox), now=NOW).exit_code == 0
    assert shop.cli("run", "--outbox", str(outbox), now=NOW + timedelta(days=1)).exit_code == 0
    assert len(list(outbox.glob("*.eml"))) == 2 and len(list(outbox.glob("*.sms.txt"))) == 2
    return outbox


def _eves_only(outbox: Path) -> bool:
    left = sorted(outbox.iterdir())
    return len(left) == 2 and all("c-eve" in path.name for path in left)


def test_forget_address_then_number_with_files_leaves_no_file_of_the_person(shop: Shop) -> None:
    outbox = _texted_and_mailed(shop)
    by_address = shop.cli("forget", "bob@example.com", "--files", "--json", now=None)
    assert by_address.exit_code == 0, by_address.output
    by_number = shop.cli("forget", NUMBER, "--files", "--json", now=None)
    assert by_number.exit_code == 0, by_number.output
    assert _eves_only(outbox)
    assert columns_holding(shop.folder / "ledger.db", "bob@example.com") == []
    assert columns_holding(shop.folder / "ledger.db", NUMBER) == []


def test_forget_number_deletes_the_text_and_leaves_the_mail_to_forget_address(shop: Shop) -> None:
    """The e-mail is the address's (a separate request); ``forget ADDRESS --files`` after it
    deletes it, and is complete although the text it also records is gone already."""
    outbox = _texted_and_mailed(shop)
    by_number = shop.cli("forget", NUMBER, "--files", "--json", now=None)
    assert by_number.exit_code == 0, by_number.output
    assert [Path(name).name for name in by_number.json["files_removed"]] == ["csv_c-bob-step2-3.sms.txt"]
    assert (outbox / "csv_c-bob-step1-1.eml").exists()
    by_address = shop.cli("forget", "bob@example.com", "--files", "--json", now=None)
    assert by_address.exit_code == 0, by_address.output
    assert _eves_only(outbox) and ledger_of(shop).suppression(email_hash("bob@example.com")) is not None


def test_forget_phone_counts_one_message_and_one_call_list_row_in_the_singular(shop: Shop) -> None:
    """The text said "removed from 1 messages" and "removed its 1 rows"."""
    outbox = _two_texted_numbers(shop)
    (shop.folder / "call-list.csv").write_text(f"cart_id,phone,email\r\ns000,{NUMBER},\r\ns001,{OTHER},\r\n")
    done = shop.cli("forget", NUMBER, "--files", now=None)
    assert done.exit_code == 0, done.output
    assert "removed from 1 message;" in done.stderr and "messages" not in done.stderr, done.stderr
    assert f"call list {shop.folder / 'call-list.csv'}: removed 1 row\n" in done.stderr, done.stderr
    assert not list(outbox.glob("csv_s000-*")) and _text_of(outbox, "s001").exists()


def test_forget_phone_files_removes_the_send_test_file_of_the_numbers_cart(shop: Shop) -> None:
    """A customer known by a number alone (a text sequence): ``send-test`` renders their cart to
    the owner as an e-mail, their name and cart in it; neither forget found that file."""
    sms_shop(shop, "https://api.example.com", carts=2)
    tests = shop.folder / "tests"
    for cart_id in ("s000", "s001"):
        assert shop.cli("send-test", "owner@shop.example.com", cart_id, "--outbox", str(tests)).exit_code == 0
    done = shop.cli("forget", NUMBER, "--files", "--json", now=None)
    assert done.exit_code == 0, done.output
    assert done.json["files_removed"] == [str(tests / "csv_s000-step1-test1.eml")]
    assert [path.name for path in tests.iterdir()] == ["csv_s001-step1-test2.eml"]
    assert [row["cart_id"] for row in ledger_of(shop).send_tests()] == ["s001"]
