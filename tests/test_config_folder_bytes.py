"""A config in a folder whose name is not UTF-8 (unpacked from a Windows zip: ``caf\\xe9/``).

Python holds such a name's bytes as lone surrogates (``\\udce9``). ``run`` quoted the folder into
the ledger's SQLite URL with ``quote``, which refused them: exit 70, "a bug". Quoted as bytes
instead, SQLAlchemy would have unquoted ``%E9`` to U+FFFD and opened a new, empty ledger in
another folder: every step sent again. Now the ledger opened is the file in that folder, and what
prints its path (or a file's in it) prints text: the ``--json`` documents stay valid UTF-8.

Real folders of such a name on this Linux file system, the real command line in its own process.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import NOW, REPO, Shop, cart, iso

FOLDER = os.fsdecode(b"caf\xe9")  # Latin-1's é: not UTF-8


@pytest.fixture
def latin1_shop(tmp_path: Path) -> Shop:
    """A shop whose config, carts and relative ledger are in ``tmp_path/caf\\xe9/``."""
    folder = tmp_path / FOLDER
    folder.mkdir()
    shop = Shop(folder)
    shop.add(*(cart(f"z{n}") for n in range(3)))
    shop.write()
    return shop


def _cli(shop: Shop, *arguments: str, strict: bool = False, now: bool = True) -> subprocess.CompletedProcess[bytes]:
    """The command line on the shop's config; ``strict``: stdout as a UTF-8 terminal's locale makes
    it (this machine's C.UTF-8 makes it ``surrogateescape``)."""
    env = dict(os.environ, PYTHONIOENCODING="utf-8") if strict else None
    clock = ["--now", iso(NOW)] if now else []
    return subprocess.run([sys.executable, "-m", "cartrescue.cli", *arguments, "--config", str(shop.config_path),
                           *clock], cwd=REPO, capture_output=True, timeout=120, env=env, check=False)


def _ledger_rows(shop: Shop) -> list[tuple[str, str]]:
    """(status, reply) of every message in ``ledger.db`` of the shop's own folder, opened by its bytes."""
    with sqlite3.connect(os.fsencode(shop.folder / "ledger.db")) as db:
        return db.execute("SELECT status, reply FROM cr_message ORDER BY id").fetchall()


@pytest.mark.parametrize("strict", [False, True], ids=["c-utf8", "utf8-terminal"])
def test_a_dry_run_beside_such_a_config_exits_0(latin1_shop: Shop, strict: bool) -> None:
    done = _cli(latin1_shop, "run", strict=strict)
    assert done.returncode == 0, done.stderr.decode("utf-8", "replace")


def test_a_delivering_run_records_in_the_ledger_file_of_that_folder(latin1_shop: Shop) -> None:
    outbox = latin1_shop.folder / "out"
    done = _cli(latin1_shop, "run", "--outbox", str(outbox), "--json")
    assert done.returncode == 0, done.stderr.decode("utf-8", "replace")
    assert json.loads(done.stdout.decode("utf-8"))["counts"]["sent"] == 3
    assert os.listdir(os.fsencode(latin1_shop.folder.parent)) == [b"caf\xe9"]  # no other folder made
    assert b"ledger.db" in os.listdir(os.fsencode(latin1_shop.folder))
    rows = _ledger_rows(latin1_shop)
    assert [status for status, _ in rows] == ["sent"] * 3
    assert all("caf\\xe9" in reply for _, reply in rows)  # the file's path, as text the column takes
    again = _cli(latin1_shop, "run", "--json")  # a dry-run reads the same ledger: nothing left to send
    assert json.loads(again.stdout.decode("utf-8"))["counts"]["send"] == 0


def test_messages_naming_the_ledger_path_are_printable(latin1_shop: Shop) -> None:
    listed = _cli(latin1_shop, "suppress", "list", strict=True, now=False)  # "no run has recorded anything there yet"
    assert listed.returncode == 0 and b"caf\\udce9" in listed.stderr
    listed.stderr.decode("utf-8")
    checked = _cli(latin1_shop, "doctor", "--json", now=False)
    assert checked.returncode != 70, checked.stderr.decode("utf-8", "replace")
    document = json.loads(checked.stdout.decode("utf-8"))  # valid UTF-8: no raw byte of the name
    assert "caf\udce9" in json.dumps(document, ensure_ascii=False)


def test_a_message_naming_such_a_folder_beside_another_lone_surrogate_is_still_text() -> None:
    """run-all and report-all write a shop's error message as its config's row does (``\\xe9``);
    a message may also quote a server's answer holding a surrogate no file name does (``\\ud83d``):
    that one is escaped too, not an error (exit 70) in the middle of the round's report."""
    from cartrescue.text import path_text

    shown = path_text(f"{FOLDER}/cartrescue.yaml: the gateway said \ud83d")
    assert shown.encode("utf-8") and "\\ud83d" in shown
    assert path_text(f"{FOLDER}/cartrescue.yaml: eligibility.cutoff") == "caf\\xe9/cartrescue.yaml: eligibility.cutoff"
