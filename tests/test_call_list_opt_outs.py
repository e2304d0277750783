"""A call-list row of a person who opts out after it was written: the next delivering run takes
it out of the list, so staff do not phone someone who unsubscribed (by the link, a STOP reply,
an imported list, a bounce or ``forget``). Before, the row stayed until staff called."""

from __future__ import annotations

import csv
import sys
from datetime import timedelta
from pathlib import Path

import pytest

from conftest import NOW, Shop, cart

PRICEY = [("S", "Lamp", 1, "900.00")]  # high value: the vip tier, called
LATER = NOW + timedelta(minutes=10)  # the next cron run: no step of the listed carts is due


def _calling_shop(shop: Shop) -> Path:
    """Bob's and Eve's carts on the call list (rows written by a delivering run); the list's path."""
    shop.configure(priority={"tiers": [{"name": "vip", "min_score": 40, "channel": "call-list"},
                                       {"name": "standard", "min_score": 0}]},
                   call_list={"path": "calls.csv"})
    shop.add(cart("c-bob", email="bob@example.com", phone="+46701234500", items=PRICEY),
             cart("c-eve", email="eve@example.com", phone="+46701234501", items=PRICEY))
    assert shop.cli("run", "--outbox", str(shop.folder / "out")).exit_code == 0
    path = shop.folder / "calls.csv"
    assert _listed(path) == ["c-bob", "c-eve"]
    return path


def _listed(path: Path) -> list[str]:
    with path.open(encoding="utf-8-sig", newline="") as handle:
        return [row["cart_id"] for row in csv.DictReader(handle, delimiter=";" if b";" in path.read_bytes() else ",")]


def test_the_next_delivering_run_removes_the_row_of_a_person_who_unsubscribed_since(shop: Shop) -> None:
    path = _calling_shop(shop)
    assert shop.cli("unsubscribe", "bob@example.com", now=None).exit_code == 0
    later = shop.cli("run", "--outbox", str(shop.folder / "out"), "--json", now=LATER)
    assert later.exit_code == 0, later.output
    assert _listed(path) == ["c-eve"]
    assert any("removed 1 row" in note and "calls.csv" in note for note in later.json["notes"])


def test_a_suppressed_number_takes_its_row_off_the_list_as_a_stop_reply_does(shop: Shop) -> None:
    """The row is matched by its ``phone`` column too: a STOP suppresses the number, not an address."""
    path = _calling_shop(shop)
    assert shop.cli("unsubscribe", "+46701234501", now=None).exit_code == 0
    assert shop.cli("run", "--outbox", str(shop.folder / "out"), now=LATER).exit_code == 0
    assert _listed(path) == ["c-bob"]


def test_a_list_a_spreadsheet_saved_keeps_its_layout_when_an_imported_opt_out_leaves_it(shop: Shop) -> None:
    shop.configure(priority={"tiers": [{"name": "vip", "min_score": 40, "channel": "call-list"},
                                       {"name": "standard", "min_score": 0}]})
    shop.add(cart("c1", email="ann@example.com")).write()
    path = shop.folder / "call-list.csv"
    path.write_bytes(b"\xef\xbb\xbfcart_id;phone;email;notes\r\n"
                     b"c-bob;070-123 45 00;bob@example.com;called once\r\n"
                     b"c-eve;070-123 45 01;eve@example.com;\r\n")
    imported = shop.folder / "opt-outs.txt"
    imported.write_text("bob@example.com\n", encoding="utf-8")
    assert shop.cli("suppress", "import", str(imported), now=None).exit_code == 0
    assert shop.cli("run", "--outbox", str(shop.folder / "out")).exit_code == 0
    assert path.read_bytes() == b"\xef\xbb\xbfcart_id;phone;email;notes\r\nc-eve;070-123 45 01;eve@example.com;\r\n"


def test_a_shop_whose_tiers_call_nobody_leaves_a_file_at_the_lists_path_alone(shop: Shop) -> None:
    """No tier calls: the file at ``call_list.path`` may be another of the shop's files."""
    shop.add(cart("c1", email="ann@example.com")).write()
    path = shop.folder / "call-list.csv"
    path.write_bytes(b"cart_id,phone,email\r\nc-bob,,bob@example.com\r\n")
    assert shop.cli("unsubscribe", "bob@example.com", now=None).exit_code == 0
    assert shop.cli("run", "--outbox", str(shop.folder / "out")).exit_code == 0
    assert path.read_bytes() == b"cart_id,phone,email\r\nc-bob,,bob@example.com\r\n"


def test_a_dry_run_leaves_the_list_as_it_is(shop: Shop) -> None:
    path = _calling_shop(shop)
    before = path.read_bytes()
    assert shop.cli("unsubscribe", "bob@example.com", now=None).exit_code == 0
    assert shop.cli("run", now=LATER).exit_code == 0
    assert path.read_bytes() == before


def _uncleanable(shop: Shop, path: Path, *, directory: bool = False) -> None:
    """Bob unsubscribed since he was listed, and the list cannot be rewritten without him: a
    folder where the file was (what no user, root included, can rewrite as a file), or a row a
    spreadsheet saved in Windows-1252 (the list is read as UTF-8)."""
    assert shop.cli("unsubscribe", "bob@example.com", now=None).exit_code == 0
    if directory:
        path.unlink()
        path.mkdir()
    else:
        path.write_bytes(path.read_bytes() + "c-old,,ann@example.com,Müller\r\n".encode("cp1252"))


def test_a_list_the_run_cannot_clean_is_a_warning_that_quiet_prints(shop: Shop) -> None:
    """cron mails what ``--quiet`` prints: a note alone said nothing, while staff could phone Bob."""
    path = _calling_shop(shop)
    _uncleanable(shop, path)
    later = shop.cli("run", "--outbox", str(shop.folder / "out"), "--quiet", now=LATER)
    assert later.exit_code == 0, later.output
    assert "warning:" in later.stderr
    assert "could not be removed" in later.stderr and "calls.csv" in later.stderr


def test_a_list_the_run_cannot_clean_is_in_the_json_warnings(shop: Shop) -> None:
    path = _calling_shop(shop)
    _uncleanable(shop, path, directory=True)
    later = shop.cli("run", "--outbox", str(shop.folder / "out"), "--json", "--quiet", now=LATER)
    assert later.exit_code == 0, later.output
    assert [line for line in later.json["warnings"] if "could not be removed" in line and "calls.csv" in line]
    assert not [note for note in later.json["notes"] if "could not be removed" in note]


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="workers are forked on Linux only")
def test_a_run_with_workers_cleans_the_list_once(shop: Shop) -> None:
    """One shard rewrites the list (the first), not each: one warning when it cannot."""
    path = _calling_shop(shop)
    _uncleanable(shop, path, directory=True)
    later = shop.cli("run", "--outbox", str(shop.folder / "out"), "--workers", "2", "--json", now=LATER)
    assert later.exit_code == 0, later.output
    assert len(later.json["shards"]) == 2
    assert later.stderr.count("could not be removed") == 1, later.stderr
    assert len([line for line in later.json["warnings"] if "could not be removed" in line]) == 1


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="workers are forked on Linux only")
def test_a_run_with_workers_names_the_config_in_its_call_list_note_as_given(
        shop: Shop, monkeypatch: pytest.MonkeyPatch) -> None:
    """Its workers are given the config's absolute path: their note named it so, where a single
    run's names it as the command line gave it (``cartrescue.yaml: call_list.path: …``)."""
    from conftest import cli, iso

    path = _calling_shop(shop)
    assert shop.cli("unsubscribe", "bob@example.com", now=None).exit_code == 0
    monkeypatch.chdir(shop.folder)
    later = cli("run", "--outbox", "out", "--workers", "2", "--json", "--config", "cartrescue.yaml", "--now", iso(LATER))
    assert later.exit_code == 0, later.output
    assert _listed(path) == ["c-eve"]
    (note,) = [note for note in later.json["notes"] if "removed 1 row" in note]
    assert note.startswith(f"cartrescue.yaml: call_list.path: {path}: removed 1 row"), note


def test_a_number_written_as_a_tel_uri_that_replied_stop_is_not_called(shop: Shop) -> None:
    """A cart's ``tel:+46…`` (a form that stores the link) was dialled by the call list but read
    as no number by the opt-out check (letters): a number that had replied STOP was called."""
    shop.configure(priority={"tiers": [{"name": "vip", "min_score": 40, "channel": "call-list"},
                                       {"name": "standard", "min_score": 0}]},
                   call_list={"path": "calls.csv"})
    shop.add(cart("c-bob", email="bob@example.com", phone="tel:+46701234500", items=PRICEY))
    assert shop.cli("unsubscribe", "+46701234500", now=None).exit_code == 0
    decisions = shop.decisions(command="run")
    assert decisions["c-bob"]["reason"] == "suppressed", decisions["c-bob"]
