"""The call list after staff re-saved it in a spreadsheet: rows go in the way its header line was
written (delimiter, BOM, line ending, a last line without one), and a header the channel cannot
write under gets no row: its messages fail, for a later run, instead of being recorded sent.
"""

from __future__ import annotations

import contextlib
import csv
import io
import sqlite3
from datetime import timedelta
from pathlib import Path

import pytest

from cartrescue.channels.call_list import COLUMNS
from conftest import NOW, Shop, cart

PRICEY = [("S", "Lamp", 1, "900.00")]  # high value: the vip tier, called
OLD_ROW = ["old", "Ann"] + [""] * (len(COLUMNS) - 2)  # a row staff have already


def _calling_shop(shop: Shop, count: int) -> Shop:
    shop.configure(priority={"tiers": [{"name": "vip", "min_score": 40, "channel": "call-list"},
                                       {"name": "standard", "min_score": 0}]},
                   call_list={"path": "calls.csv"})
    for n in range(count):
        shop.add(cart(f"c{n}", email=f"c{n}@example.com", phone=f"+4670123456{n}", items=PRICEY))
    return shop


def _saved(shop: Shop, text: str) -> Path:
    """The list as a spreadsheet saved it: exactly these characters, UTF-8."""
    path = shop.folder / "calls.csv"
    path.write_bytes(text.encode("utf-8"))
    return path


def _text(path: Path) -> str:
    """The list's characters as they are in the file (no newline translated)."""
    return path.read_bytes().decode("utf-8")


def _rows(text: str, delimiter: str = ",") -> list[list[str]]:
    return list(csv.reader(io.StringIO(text, newline=""), delimiter=delimiter))


def _send(shop: Shop, now=NOW) -> None:
    result = shop.cli("run", "--outbox", str(shop.folder / "out"), now=now)
    assert result.exit_code in (0, 1), result.output


def test_a_semicolon_list_gets_its_rows_with_semicolons(shop: Shop) -> None:
    """Excel in SE/DE/FR saves CSV with ";": before, every row was one quoted comma-joined cell
    (``""``), all recorded sent and never retried."""
    path = _saved(_calling_shop(shop, 4), ";".join(COLUMNS) + "\r\n" + ";".join(OLD_ROW) + "\r\n")
    _send(shop)
    assert [m["status"] for m in shop.messages()] == ["sent"] * 4
    rows = _rows(_text(path), ";")
    assert rows[:2] == [list(COLUMNS), OLD_ROW] and {len(row) for row in rows} == {len(COLUMNS)}
    assert sorted((row[0], row[3]) for row in rows[2:]) == [(f"c{n}", f"'+46 70 123 45 6{n}") for n in range(4)]


def test_a_semicolon_list_gets_its_amounts_with_a_decimal_comma(shop: Shop) -> None:
    """A list saved with ";" is one a spreadsheet of a decimal-comma locale wrote (SE, DE, FR):
    there ``900.00`` is no number (and German Excel reads ``12.50`` as December 1950), so staff
    could neither sum nor sort the carts' values. Its rows' amounts take that locale's comma."""
    path = _saved(_calling_shop(shop, 1), ";".join(COLUMNS) + "\r\n")
    _send(shop)
    row = dict(zip(COLUMNS, _rows(_text(path), ";")[1]))
    assert (row["total"], row["score"]) == ("900,00", "40")


def test_a_list_saved_with_a_bom_gets_its_cart_ids(shop: Shop) -> None:
    """Excel's "CSV UTF-8" begins with a BOM, which made the first column ``\\ufeffcart_id``."""
    path = _saved(_calling_shop(shop, 2), "\ufeff" + ",".join(COLUMNS) + "\r\n")
    _send(shop)
    text = _text(path)
    assert text.startswith("\ufeffcart_id,") and text.count("\ufeff") == 1
    assert sorted(row[0] for row in _rows(text)[1:]) == ["c0", "c1"]


def test_a_list_without_a_newline_at_its_end_gets_its_rows_on_lines_of_their_own(shop: Shop) -> None:
    """Google Sheets exports end without one: the first new row was glued to the last old one."""
    path = _saved(_calling_shop(shop, 2), ",".join(COLUMNS) + "\r\n" + ",".join(OLD_ROW))
    _send(shop)
    rows = _rows(_text(path))
    assert rows[1] == OLD_ROW
    assert sorted(row[0] for row in rows[2:]) == ["c0", "c1"]


def test_a_list_keeps_its_line_ending(shop: Shop) -> None:
    path = _saved(_calling_shop(shop, 2), ",".join(COLUMNS) + "\n" + ",".join(OLD_ROW) + "\n")
    _send(shop)
    data = path.read_bytes()
    assert b"\r" not in data and data.count(b"\n") == 4


def test_a_header_naming_no_column_gets_no_row_and_its_calls_wait_for_the_fixed_file(shop: Shop) -> None:
    """Rows under a header they do not match are rows nobody calls: the messages fail (transient,
    naming the file), and the run after the file is fixed adds them."""
    path = _saved(_calling_shop(shop, 2), "Kund|Telefon\r\nAnn|+46700000000\r\n")
    _send(shop)
    assert path.read_bytes() == b"Kund|Telefon\r\nAnn|+46700000000\r\n"
    failed = shop.messages()
    assert [m["status"] for m in failed] == ["failed_transient"] * 2
    assert all(str(path) in m["reply"] and "names no call-list column" in m["reply"] for m in failed)
    _saved(shop, ";".join(COLUMNS) + "\r\n")  # staff fix the file
    _send(shop, NOW + timedelta(minutes=30))
    assert [m["status"] for m in shop.messages()] == ["sent"] * 2
    assert sorted(row[0] for row in _rows(_text(path), ";")[1:]) == ["c0", "c1"]


def test_a_dry_run_with_eml_lays_out_the_call_lists_rows_as_the_shops_list(shop: Shop) -> None:
    _saved(_calling_shop(shop, 2), ";".join(COLUMNS) + "\r\n")
    look = shop.folder / "look"
    assert shop.cli("run", "--eml", str(look), "--json").exit_code == 0
    rows = _rows(_text(look / "call-list.csv"), ";")
    assert rows[0] == list(COLUMNS) and sorted(row[0] for row in rows[1:]) == ["c0", "c1"]


def test_a_dry_run_with_eml_says_the_shops_list_could_not_take_the_rows(shop: Shop) -> None:
    path = _saved(_calling_shop(shop, 1), "Kund|Telefon\r\n")
    look = shop.folder / "look"
    result = shop.cli("run", "--eml", str(look), "--json")
    assert result.exit_code == 0, result.output
    (detail,) = {d["detail"] for d in result.json["decisions"] if d["channel"] == "call-list"}
    assert detail.startswith(f"not written: {path}: no row added") and not (look / "call-list.csv").exists()


def test_forget_files_and_a_run_appending_at_once_lose_no_row(tmp_path: Path) -> None:
    """``forget --files`` rewrote the list (a new file renamed over it) without its lock: a run
    waiting for the lock then appended to the replaced file, and its calls were recorded
    ``sent`` in rows nobody would ever see."""
    import fcntl
    import threading
    import time as clock
    from datetime import timezone
    from decimal import Decimal

    from cartrescue.channels.call_list import append_rows, rows_of
    from cartrescue.model import Action, Cart, Customer, Decision, Reason

    def decision(name: str) -> Decision:
        cart = Cart(id=name, source="csv", customer=Customer(email=f"{name}@example.com", phone="+46701234567"),
                    currency="EUR", items=(), total=Decimal("10"), created_at=NOW, updated_at=NOW)
        return Decision(cart=cart, action=Action.SEND, reason=Reason.DUE, tier="vip", step=1, channel="call-list")

    path = tmp_path / "call-list.csv"
    append_rows(path, [decision("ann"), decision("bob")], timezone.utc, NOW)
    holder = path.open("a+b")
    fcntl.flock(holder.fileno(), fcntl.LOCK_EX)  # a third process in the middle of its own append
    appending = threading.Thread(target=append_rows, args=(path, [decision("carl")], timezone.utc, NOW))
    appending.start()
    clock.sleep(0.3)  # the run has opened the list and waits for its lock
    forgetting = threading.Thread(target=rows_of, args=(path, "ann@example.com"), kwargs={"remove": True})
    forgetting.start()
    clock.sleep(0.3)
    holder.close()  # the lock goes: the run and forget go on, in either order
    appending.join(10)
    forgetting.join(10)
    names = [row["cart_id"] for row in csv.DictReader(io.StringIO(path.read_text(encoding="utf-8")))]
    assert sorted(names) == ["bob", "carl"]


def test_a_list_emptied_and_saved_with_a_blank_line_gets_a_header_and_its_rows(tmp_path: Path) -> None:
    """A list whose one line is blank failed every call of every run as 'its header names no
    call-list column'."""
    from datetime import timezone
    from decimal import Decimal

    from cartrescue.channels.call_list import append_rows
    from cartrescue.model import Action, Cart, Customer, Decision, Reason

    cart = Cart(id="ann", source="csv", customer=Customer(email="ann@example.com", phone="+46701234567"),
                currency="EUR", items=(), total=Decimal("10"), created_at=NOW, updated_at=NOW)
    path = tmp_path / "call-list.csv"
    path.write_bytes(b"\r\n")
    append_rows(path, [Decision(cart=cart, action=Action.SEND, reason=Reason.DUE, step=1)], timezone.utc, NOW)
    rows = [row for row in csv.reader(io.StringIO(path.read_text(encoding="utf-8"))) if row]
    assert rows[0] == list(COLUMNS) and rows[1][0] == "ann"


def test_a_header_with_spaces_after_its_commas_gets_every_cell_under_its_column(shop: Shop) -> None:
    """``cart_id, first_name, …, phone`` (as a person types it, or ``Phone``): its names were
    compared with their spaces, only ``cart_id`` matched, and each call went in as a row with
    no number, recorded sent; ``forget --files`` found no row of the address to remove."""
    header = ", ".join(COLUMNS).replace("phone", "Phone")
    path = _saved(_calling_shop(shop, 2), header + "\r\n")
    _send(shop)
    rows = _rows(_text(path))
    assert rows[0] == header.split(",")
    assert sorted((row[0], row[3], row[4]) for row in rows[1:]) == [
        ("c0", "'+46 70 123 45 60", "c0@example.com"), ("c1", "'+46 70 123 45 61", "c1@example.com")]
    forgotten = shop.cli("forget", "c0@example.com", "--files", "--json", now=None)
    assert forgotten.exit_code == 0, forgotten.output
    assert [row[0] for row in _rows(_text(path))[1:]] == ["c1"]


@pytest.mark.parametrize(("header", "said"), [
    ("cart_id,first_name,last_name,email", "its header lacks phone"),  # staff deleted the column
    ("email,first_name,newsletter", "its header lacks cart_id and phone"),  # another file of the shop's
    ("Kund|Telefon", "its header names no call-list column"),
], ids=["no-phone", "another-file", "no-column"])
def test_a_header_a_call_cannot_go_under_gets_no_row_and_one_note_naming_the_file_and_the_header(
        shop: Shop, header: str, said: str) -> None:
    """A header naming some call-list columns but not the number (or the cart) got every call
    as a row nobody could make, recorded sent, and the run said nothing; one naming none failed
    its calls without a note, and a run with no call due said nothing at all."""
    path = _saved(_calling_shop(shop, 2), header + "\r\n")
    expected = ",".join(COLUMNS)
    result = shop.cli("run", "--outbox", str(shop.folder / "out"), "--json")
    assert result.exit_code == 1, result.output
    assert path.read_bytes() == (header + "\r\n").encode("utf-8")  # no row added
    assert [m["status"] for m in shop.messages()] == ["failed_transient"] * 2
    (note,) = [note for note in result.json["notes"] if str(path) in note]
    assert note.startswith(f"{shop.config_path}: call_list.path: {path}: no row added, {said}: "), note
    assert expected in note and "retried by the next run" in note
    again = shop.cli("run", "--outbox", str(shop.folder / "out"), now=NOW + timedelta(minutes=30))  # retried: failed
    assert again.exit_code == 1 and "failed 2" in again.stdout, again.output
    shown = " ".join((again.stdout + again.stderr).replace("│", " ").split())
    assert shown.count("no row added") == 1, again.output  # the note, not its failures again
    fixed = _saved(shop, ",".join(reversed(COLUMNS)) + "\r\n")  # any order of the columns is a call list's
    ok = shop.cli("run", "--outbox", str(shop.folder / "out"), "--json", now=NOW + timedelta(hours=1))
    assert ok.exit_code == 0 and not [note for note in ok.json["notes"] if str(path) in note], ok.output
    assert sorted(row[-1] for row in _rows(_text(fixed))[1:]) == ["c0", "c1"]


def test_a_dry_run_says_a_sending_run_would_add_no_call_to_the_list(shop: Shop) -> None:
    path = _saved(_calling_shop(shop, 1), "cart_id,name,email\r\n")
    result = shop.cli("run", "--json")
    assert result.exit_code == 0, result.output
    (note,) = [note for note in result.json["notes"] if str(path) in note]
    assert note.startswith("a sending run would add no call to the call list: ") and "lacks phone" in note
    assert ",".join(COLUMNS) in note and path.read_bytes() == b"cart_id,name,email\r\n"


def test_forget_files_rewrites_a_list_linked_into_a_shared_folder_in_place_keeping_its_mode(shop: Shop) -> None:
    """A list kept in the folder staff share (a link to it beside the config), writable by the
    staff's group: ``forget --files`` replaced the link with a file of its own, so the shared
    list kept the forgotten customer's row and never got another call, and the new file was
    the cron user's alone."""
    _calling_shop(shop, 2)
    shared = shop.folder / "shared"
    shared.mkdir()
    listed = shared / "calls.csv"
    listed.write_bytes(",".join(COLUMNS).encode() + b"\r\n")
    listed.chmod(0o664)
    (shop.folder / "calls.csv").symlink_to(listed)
    _send(shop)
    assert sorted(row[0] for row in _rows(_text(listed))[1:]) == ["c0", "c1"]
    forgotten = shop.cli("forget", "c0@example.com", "--files", "--json", now=None)
    assert forgotten.exit_code == 0, forgotten.output
    assert (shop.folder / "calls.csv").is_symlink()
    assert [row[0] for row in _rows(_text(listed))[1:]] == ["c1"]
    assert listed.stat().st_mode & 0o777 == 0o664
    assert not list(shared.glob("*.part")) and not list(shop.folder.glob("*.part"))


def test_a_line_break_in_a_product_name_is_a_space_in_the_call_lists_row(shop: Shop) -> None:
    """A name exported with a line break (``Lamp`` / ``with shade``) was joined into one word,
    ``1 x Lampwith shade``, in the row staff read out on the phone."""
    _calling_shop(shop, 0)
    shop.add(cart("c1", phone="+46701234561", first_name="Ann\nMarie",
                  items=[("S", "Lamp\r\nwith shade", 1, "900.00"), ("T", "Mug\twhite", 2, "5.00")]))
    _send(shop)
    row = dict(zip(COLUMNS, _rows(_text(shop.folder / "calls.csv"))[1]))
    assert (row["first_name"], row["items"]) == ("Ann Marie", "1 x Lamp with shade; 2 x Mug white")


def test_a_call_with_an_incentive_gives_staff_its_own_code_to_offer_in_the_row(shop: Shop) -> None:
    """A call-list step with a per-recipient code allocated none and its row said nothing of
    the offer: staff phoned without the discount the step promises, and no code was handed out."""
    _calling_shop(shop, 2).configure(sequences={"default": {"steps": [
        {"delay": "1h", "template": "reminder-3",
         "incentive": {"kind": "percent", "value": 10, "valid_for": "3d",
                       "codes": {"pool": "calls", "pattern": "CALL-{random:6}"}}}]}})
    _send(shop)
    rows = [dict(zip(COLUMNS, row)) for row in _rows(_text(shop.folder / "calls.csv"))[1:]]
    with contextlib.closing(sqlite3.connect(shop.folder / "ledger.db")) as db:
        codes = dict(db.execute("SELECT code, email FROM cr_code WHERE claim_id IS NOT NULL").fetchall())
    assert len(rows) == 2 and len(codes) == 2
    for row in rows:
        code = next(code for code, email in codes.items() if email == row["email"])
        assert row["incentive"] == f"10% off with code {code}, valid until 2026-11-23"


def test_a_call_with_a_shared_code_names_it_in_the_row(shop: Shop) -> None:
    _calling_shop(shop, 1).configure(sequences={"default": {"steps": [
        {"delay": "1h", "template": "reminder-3",
         "incentive": {"kind": "free_shipping", "code": "SHIPFREE", "valid_for": "2d"}}]}})
    _send(shop)
    row = dict(zip(COLUMNS, _rows(_text(shop.folder / "calls.csv"))[1]))
    assert row["incentive"] == "free shipping with code SHIPFREE, valid until 2026-11-22"
