"""How a command leaves its process: quickly, without skipping what exit owes, and with one
clear line when its output cannot be written.

``cli.main`` freezes the objects a run allocated out of the interpreter's final collections
(they cost ~80 ms of a 100,000-cart run, freeing nothing reference counting would not). That
must not turn into an exit that skips work: exit functions run, and the SQLite ledger is
closed (its write-ahead log folded back and removed), as after an ordinary exit.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import NOW, REPO, Shop, besides_the_pinned_clock, cart, iso

FULL_DISK = "error: cannot write its output (or a working file in the temporary folder): No space left on device"
DELIVERED = "; what was delivered is in the ledger"  # said only by a command that delivers

# The console script's own entry point, with one exit function of a library registered before it.
WITH_AN_EXIT_FUNCTION = """
import atexit, sys
atexit.register(lambda: sys.stderr.write("exit functions ran\\n"))
sys.argv = ["cartrescue", *sys.argv[1:]]
from cartrescue.cli import main
main()
"""


def test_a_finished_run_still_runs_exit_functions_and_closes_its_ledger(shop: Shop) -> None:
    shop.add(cart("c-1", email="ann@example.com"), cart("c-2", email="bob@example.com"))
    shop.write()
    outbox = shop.folder / "out"
    result = subprocess.run(
        [sys.executable, "-c", WITH_AN_EXIT_FUNCTION, "run", "--outbox", str(outbox), "--quiet",
         "--config", str(shop.config_path), "--now", iso(NOW)],
        check=False, cwd=shop.folder, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stderr.splitlines()[-1] == "exit functions ran"
    assert len(list(outbox.glob("*.eml"))) == 2
    ledger = shop.folder / "ledger.db"
    assert ledger.exists()
    assert not ledger.with_name("ledger.db-wal").exists()  # closed: an os._exit would leave it


def _on_a_full_disk(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """The command with its stdout on ``/dev/full`` (every write fails with ENOSPC, as on a full
    disk where cron sends the output), stderr captured."""
    with open("/dev/full", "w") as full:
        return subprocess.run([sys.executable, "-m", "cartrescue.cli", *args], cwd=cwd, stdout=full,
                              stderr=subprocess.PIPE, text=True, timeout=120, check=False)


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs Linux's /dev/full")
@pytest.mark.parametrize("command", [["run", "--json"], ["run"], ["carts", "--json"], ["report", "--json"],
                                     ["suppress", "list", "--json"]])
def test_output_that_cannot_be_written_is_one_line_and_exit_1_not_a_bug(command: list[str], tmp_path: Path) -> None:
    """Before: a traceback, or "internal error ... a bug in cartrescue" (exit 70), and a second
    failure as the process exited. On a copy of the bundled demo (its ledger is written)."""
    for name in ("cartrescue.yaml", "carts.csv", "orders.csv"):
        shutil.copy(REPO / "examples" / name, tmp_path / name)
    done = _on_a_full_disk(*command, "--config", str(tmp_path / "cartrescue.yaml"), cwd=tmp_path)
    assert done.returncode == 1
    assert _errors(done.stderr) == [FULL_DISK]


def _errors(stderr: str) -> list[str]:
    """stderr's lines but a ``note:`` (a list command of a ledger not made yet says so:
    commands.common.reading_ledger) and the demo's warning that its config pins the clock."""
    return [line for line in besides_the_pinned_clock(stderr) if not line.startswith("note:")]


CLOSED_PIPE = "error: cannot write its output: the reader of the pipe closed it (Broken pipe)"


def _into_a_closed_pipe(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """``cartrescue ARGS`` with its stdout a pipe whose reader is gone before the first byte."""
    read, write = os.pipe()
    os.close(read)
    try:
        return subprocess.run([sys.executable, "-m", "cartrescue.cli", *args], cwd=cwd, stdout=write,
                              stderr=subprocess.PIPE, text=True, timeout=120, check=False)
    finally:
        os.close(write)


@pytest.mark.parametrize("command", [["run", "--json"], ["carts", "--json"]])
def test_a_reader_that_closes_the_pipe_early_gets_one_line_and_exit_1(command: list[str], shop: Shop) -> None:
    """``cartrescue run --json | head -c 10``: the run exited 1 without a word (click's own
    broken-pipe exit), where a full disk said why."""
    shop.add(*(cart(f"c{n:04d}", email=f"c{n:04d}@example.com") for n in range(1500)))  # > 256 KiB of JSON
    shop.write()
    done = _into_a_closed_pipe(*command, "--workers", "1", "--now", iso(NOW), "--config", str(shop.config_path),
                               cwd=shop.folder)
    assert done.returncode == 1
    assert done.stderr.strip() == CLOSED_PIPE


@pytest.mark.parametrize("command", [["run"], ["run", "--outbox", "out"], ["carts"], ["codes", "list"]])
def test_a_reader_that_closes_the_pipe_early_gets_one_line_and_exit_1_without_json_too(
        command: list[str], shop: Shop) -> None:
    """``cartrescue run | head -1``: without ``--json`` the table's write failed into click's
    own broken-pipe exit, 1 without a word, where the README promises a line on stderr."""
    shop.add(*(cart(f"c{n}", email=f"c{n}@example.com") for n in range(3)))
    if command == ["codes", "list"]:  # a pool, so a table: without one it prints a note on stderr alone
        shop.configure(sequences={"default": {"steps": [{"delay": "1h", "template": "reminder-1", "incentive": {
            "kind": "percent", "value": 10, "valid_for": "3d", "codes": {"pool": "comeback", "pattern": "CR-{random:8}"}}}]}})
    shop.write()
    done = _into_a_closed_pipe(*command, "--now", iso(NOW), "--config", str(shop.config_path), cwd=shop.folder)
    assert done.returncode == 1
    assert _errors(done.stderr) == [CLOSED_PIPE + (DELIVERED if "--outbox" in command else "")]
    if "--outbox" in command:  # the run delivered before its table failed: the ledger has it all
        with sqlite3.connect(shop.folder / "ledger.db") as db:
            assert db.execute("SELECT status, COUNT(*) FROM cr_message GROUP BY status").fetchall() == [("sent", 3)]


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs Linux's /dev/full")
def test_a_delivering_run_whose_output_fails_has_recorded_every_file_it_wrote(shop: Shop) -> None:
    """The ``--json`` document fails mid-run (its first 256 KiB block): the run stops, and every
    file it wrote has its ``sent`` row, none is left ``claimed``; the next run writes the rest."""
    shop.add(*(cart(f"c{n:04d}", email=f"c{n:04d}@example.com") for n in range(1500)))
    shop.write()
    outbox = shop.folder / "out"
    args = ["run", "--outbox", str(outbox), "--json", "--workers", "1", "--now", iso(NOW),
            "--config", str(shop.config_path)]
    done = _on_a_full_disk(*args, cwd=shop.folder)
    assert done.returncode == 1 and done.stderr.strip() == FULL_DISK + DELIVERED
    with sqlite3.connect(shop.folder / "ledger.db") as db:
        statuses = dict(db.execute("SELECT status, COUNT(*) FROM cr_message GROUP BY status").fetchall())
    written = len(list(outbox.glob("*.eml")))
    assert 0 < written < 1500 and statuses == {"sent": written}
    again = subprocess.run([sys.executable, "-m", "cartrescue.cli", *args], cwd=shop.folder, capture_output=True,
                           text=True, timeout=120, check=False)
    assert again.returncode == 0, again.stderr
    assert len(list(outbox.glob("*.eml"))) == 1500


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs Linux's /dev/full")
def test_a_warning_that_cannot_be_written_costs_the_warning_not_the_run(shop: Shop) -> None:
    """stderr on a full disk (a cron job's ``>> log 2>&1``) and a bad row to warn of: the run
    still plans every other cart, and counts the problem. Before, the warning's failed write
    stopped the run, and nobody got a reminder."""
    bad = cart("c-bad", email="bob@example.com")
    bad[0]["updated_at"] = "garbage"
    shop.add(cart("c-1", email="ann@example.com"), bad, cart("c-3", email="cid@example.com"))
    shop.write()
    with open("/dev/full", "w") as full:
        done = subprocess.run([sys.executable, "-m", "cartrescue.cli", "run", "--json", "--now", iso(NOW),
                               "--config", str(shop.config_path)], cwd=shop.folder, stdout=subprocess.PIPE,
                              stderr=full, text=True, timeout=120, check=False)
    document = json.loads(done.stdout)
    assert "error" not in document
    assert (document["counts"]["carts"], document["counts"]["problems"]) == (2, 1)
    assert done.returncode == 1  # the problem, as with a writable stderr


def test_a_full_working_file_is_named_as_such_not_a_bug(tmp_path: Path) -> None:
    """A working file of the run (the orders index, report's scratch database) that fills its
    disk: SQLite's own "database or disk is full", here from a file capped at a few pages."""
    from cartrescue.commands.common import error_json, explained
    from cartrescue.errors import OutputError

    db = sqlite3.connect(tmp_path / "index.db")
    db.execute("PRAGMA max_page_count = 3")
    db.execute("CREATE TABLE t (x TEXT)")
    with pytest.raises(sqlite3.OperationalError) as full:
        db.executemany("INSERT INTO t VALUES (?)", [("x" * 1000,)] * 100)
    db.close()
    assert isinstance(explained(full.value), OutputError)
    error = error_json(full.value)
    assert (error["code"], error["exit_code"]) == ("failed", 1)
    assert error["message"].startswith("cannot write a working file in ")
    assert "database or disk is full" in error["message"]


def test_an_output_error_of_a_working_file_still_prints_the_one_document(capsys: pytest.CaptureFixture[str]) -> None:
    """A full temporary folder, stdout fine: ``--json`` still gets its document."""
    import typer

    from cartrescue.commands.common import fail
    from cartrescue.errors import OutputError

    with pytest.raises(typer.Exit) as done:
        fail(OutputError("cannot write a working file in /tmp: database or disk is full"), as_json=True)
    assert done.value.exit_code == 1
    assert json.loads(capsys.readouterr().out)["error"]["message"].startswith("cannot write a working file")


@pytest.mark.parametrize("command", [["run", "--outbox", "out", "--json"], ["survey", "export"], ["report", "--json"]])
def test_a_closed_stdout_discards_the_output_and_the_command_still_does_its_work(command: list[str],
                                                                                 tmp_path: Path) -> None:
    """A cron line with `>&-`: before, every --json command printed tracebacks, `run --send` sent
    nothing and `codes export` was "a bug" (exit 70)."""
    for name in ("cartrescue.yaml", "carts.csv", "orders.csv"):
        shutil.copy(REPO / "examples" / name, tmp_path / name)
    done = subprocess.run([sys.executable, "-m", "cartrescue.cli", *command, "--config", str(tmp_path / "cartrescue.yaml")],
                          cwd=tmp_path, stderr=subprocess.PIPE, text=True, timeout=120, check=False,
                          preexec_fn=lambda: os.close(1))
    assert done.returncode == 0, done.stderr
    assert done.stderr.startswith("cartrescue: stdout is closed: the command's output is discarded\n")
    assert "Traceback" not in done.stderr and "internal error" not in done.stderr
    if command[0] == "run":
        assert len(list((tmp_path / "out").glob("*.eml"))) > 0


def test_codes_export_refuses_a_closed_stdout_before_marking_any_code_exported(tmp_path: Path) -> None:
    """The codes are its product: written to nowhere and marked exported, the shop would never
    import them and customers would get codes that do not work."""
    for name in ("cartrescue.yaml", "carts.csv", "orders.csv"):
        shutil.copy(REPO / "examples" / name, tmp_path / name)
    done = subprocess.run([sys.executable, "-m", "cartrescue.cli", "codes", "export", "--config",
                           str(tmp_path / "cartrescue.yaml")], cwd=tmp_path, stderr=subprocess.PIPE, text=True,
                          timeout=120, check=False, preexec_fn=lambda: os.close(1))
    assert done.returncode == 2, done.stderr
    assert "stdout is closed, and the codes would go there: give --output FILE (nothing was marked exported)" \
        in done.stderr


@pytest.mark.parametrize("json_flag", [[], ["--json"]])
def test_codes_export_into_a_pipe_its_reader_closed_marks_no_code_exported(json_flag: list[str], shop: Shop) -> None:
    """``cartrescue codes export | head``: the codes were marked exported before they were
    written, so the shop never got them and the next export left them out."""
    from test_incentives import _incentive_shop

    _incentive_shop(shop)
    assert shop.cli("codes", "generate", "2000", "--pool", "ship", now=None).exit_code == 0  # > 64 KiB of CSV
    done = _into_a_closed_pipe("codes", "export", *json_flag, "--config", str(shop.config_path), cwd=shop.folder)
    assert done.returncode == 1, done.stderr
    assert done.stderr.strip().startswith("error: cannot write its output: the reader of the pipe closed it")
    assert shop.cli("codes", "export", "--json", now=None).json["exported"] == 2000


def test_codes_export_to_a_reader_that_leaves_mid_way_marks_no_code_exported(shop: Shop) -> None:
    """``cartrescue codes export | head -c 100``: the reader took the first bytes and left. The
    kernel took part of the one large write, no error came back, and all 2,000 codes were
    marked exported with exit 0 while the shop got 100 bytes of them."""
    from test_incentives import _incentive_shop

    _incentive_shop(shop)
    assert shop.cli("codes", "generate", "2000", "--pool", "ship", now=None).exit_code == 0  # > 64 KiB of CSV
    first, code, stderr = _read_then_gone(shop, "codes", "export")
    assert code == 1, stderr
    assert len(first) == 100  # the reader did get the start of the export
    assert stderr.strip().startswith("error: cannot write its output: the reader of the pipe closed it"), stderr
    assert shop.cli("codes", "export", "--json", now=None).json["exported"] == 2000


def test_a_table_that_is_the_commands_last_word_to_a_reader_that_leaves_mid_way_exits_1(shop: Shop,
                                                                                       tmp_path: Path) -> None:
    """``cartrescue suppress list | head -c 100``: the table is one large write; the kernel took
    the first 64 KiB, the rest was dropped without an error, and the command exited 0 without a
    word, where the README promises the closed-pipe line and exit 1."""
    addresses = tmp_path / "unsubscribed.txt"
    addresses.write_text("".join(f"person{n:05d}@example.com\n" for n in range(2500)), encoding="utf-8")
    assert shop.cli("suppress", "import", str(addresses), now=None).exit_code == 0  # > 64 KiB of table
    first, code, stderr = _read_then_gone(shop, "suppress", "list")
    assert code == 1, stderr
    assert len(first) == 100
    assert _errors(stderr) == [CLOSED_PIPE]


def _read_then_gone(shop: Shop, *args: str) -> tuple[bytes, int, str]:
    """``cartrescue ARGS | head -c 100``: the first 100 bytes of stdout, then the reader is gone;
    what it got, the exit code and stderr."""
    process = subprocess.Popen([sys.executable, "-m", "cartrescue.cli", *args, "--config", str(shop.config_path)],
                               cwd=shop.folder, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=False)
    assert process.stdout is not None and process.stderr is not None
    first = process.stdout.read(100)
    process.stdout.close()
    stderr = process.stderr.read().decode()
    return first, process.wait(timeout=120), stderr


@pytest.mark.parametrize(("args", "option"), [
    (["run", "--json", "--now", "9999-12-31T23:59:59Z"], "--now"),
    (["carts", "--json", "--now", "0001-01-01T00:00:00Z"], "--now"),
    (["report", "--json", "--since", "0001-01-01"], "--since"),
    (["report", "--json", "--until", "9999-12-31"], "--until"),
    (["survey", "summary", "--json", "--since", "0001-01-01"], "--since"),
])
def test_a_time_out_of_reach_is_a_usage_error_naming_the_option(shop: Shop, args: list[str], option: str) -> None:
    """A day or a week around year 1 or 9999 is no date: it was an OverflowError deep in a run,
    exit 70, "a bug in cartrescue"."""
    shop.add(cart("c-1"))
    result = shop.cli(*args, now=None)
    assert result.exit_code == 2, result.output
    error = result.json["error"]
    assert error["code"] == "config" and error["message"].startswith(f"{option}: ") and "between" in error["message"]


@pytest.mark.parametrize(("line", "delivers"), [
    ("run --send", True), ("run --config c.yaml --outbox out", True), ("run --outbox=out", True),
    ("run-all a.yaml --send --json", True), ("send-test me@example.com c1", True),
    ("run", False), ("run --json --eml look", False), ("run-all a.yaml", False), ("carts --json", False),
    ("report --json", False), ("codes list", False)])
def test_only_a_command_that_delivers_says_its_deliveries_are_in_the_ledger(line: str, delivers: bool) -> None:
    from cartrescue.commands.common import delivers as delivering

    assert delivering(line.split()) is delivers


# ``tempfile`` finds no folder it can write in (a full disk: TMPDIR, /tmp, /var/tmp and the working
# folder alike), as the console script then runs: the candidates are one file, not a folder.
WITHOUT_A_TEMPORARY_FOLDER = """
import sys, tempfile
candidate = sys.argv.pop(1)
tempfile._candidate_tempdir_list = lambda: [candidate]
sys.argv = ["cartrescue", *sys.argv[1:]]
from cartrescue.cli import main
main()
"""


@pytest.mark.parametrize("command", [["report", "--json"], ["run", "--json"]])
def test_no_temporary_folder_with_room_is_one_line_and_exit_1_not_a_bug(command: list[str], tmp_path: Path) -> None:
    """With every temporary folder full, ``tempfile`` says "No usable temporary directory found";
    it was taken for a bug in cartrescue (exit 70) where the README gives exit 1 for a full $TMPDIR."""
    for name in ("cartrescue.yaml", "carts.csv", "orders.csv"):
        shutil.copy(REPO / "examples" / name, tmp_path / name)
    not_a_folder = tmp_path / "not-a-folder"
    not_a_folder.write_text("", encoding="utf-8")
    done = subprocess.run([sys.executable, "-c", WITHOUT_A_TEMPORARY_FOLDER, str(not_a_folder), *command,
                           "--config", str(tmp_path / "cartrescue.yaml")], cwd=tmp_path, capture_output=True,
                          text=True, timeout=120, check=False)
    assert done.returncode == 1, done.stderr
    [line] = _errors(done.stderr)
    assert line.startswith("error: cannot write a working file: no temporary folder can take one"), line
    assert json.loads(done.stdout)["error"]["exit_code"] == 1
