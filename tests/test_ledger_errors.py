"""A ledger database that refuses to write -- a PostgreSQL replica after a failover, a role
without the grant -- is reported as the ledger's error: one line, exit 2, one ``--json``
document, in every command that writes. It used to be "internal error: ... a bug in
cartrescue", exit 70, with the SQL statement and its parameters on stderr."""

from __future__ import annotations

import hashlib
import json
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path

import pytest
from shopdb import shop_database
from sqlalchemy import text

from cartrescue.ledger import Ledger
from conftest import NOW, Shop, cart, iso
from test_ledger_outage import fill, small_disk as small_disk  # small_disk: a fixture

REFUSED = "the ledger: cannot execute {} in a read-only transaction"


@pytest.mark.postgres
@pytest.mark.parametrize(("command", "statement"), [
    (["run", "--outbox", "out", "--json"], "INSERT"),
    (["forget", "ann@example.com", "--json"], "DELETE"),
    (["send-test", "qa@example.com", "--outbox", "tests", "--json"], "INSERT"),
])
def test_a_read_only_ledger_is_the_ledgers_error_not_a_bug(shop: Shop, command: list[str], statement: str) -> None:
    shop.add(cart("c-1", email="ann@example.com"))
    with shop_database("postgres", "readonly") as db:
        shop.configure(ledger={"url": db.url})
        Ledger(db.url).close()  # the ledger's tables exist: only writing fails
        with db.admin.begin() as connection:
            connection.execute(text(f'ALTER DATABASE "{db.name}" SET default_transaction_read_only = on'))
        args = [str(shop.folder / arg) if arg in ("out", "tests") else arg for arg in command]
        if command[0] != "forget":
            args += ["--now", iso(NOW)]
        shop.write()
        # The console script's process: cli.main's last net is part of what is tested.
        done = subprocess.run([sys.executable, "-m", "cartrescue.cli", *args, "--config", str(shop.config_path)],
                              cwd=shop.folder, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 2, done.stderr
    said = REFUSED.format(statement)
    if command[0] == "run":  # a run names the ledger by its config key and URL
        said = said.replace("the ledger", f"{shop.config_path}: ledger.url {db.url}", 1)
    assert json.loads(done.stdout)["error"] == {"code": "config", "exit_code": 2, "message": said}
    assert done.stderr.strip() == "error: " + said


@pytest.mark.parametrize(("kind", "refusal", "said"), [
    pytest.param("postgres", "read-only database", "cannot execute UPDATE in a read-only transaction",
                 marks=pytest.mark.postgres),
    pytest.param("postgres", "select-only role", "permission denied for table cr_lock", marks=pytest.mark.postgres),
    pytest.param("mariadb", "select-only user", "UPDATE command denied", marks=pytest.mark.mariadb),
])
def test_doctor_fails_a_ledger_that_reads_but_refuses_to_write(shop: Shop, kind: str, refusal: str,
                                                               said: str) -> None:
    """Refused writes are invisible to a read: the ledger check also tries a write that changes
    nothing (an UPDATE of no row, rolled back), as every run would stop at its first write."""
    shop.add(cart("c-1", email="ann@example.com"))
    with shop_database(kind, "doctorro") as db:
        shop.configure(ledger={"url": db.url})
        Ledger(db.url).close()  # the ledger's tables, as a first run makes them
        healthy = shop.cli("doctor", "--json", "--no-smtp", now=None)
        assert {c["name"]: c["status"] for c in healthy.json["checks"]}["ledger"] == "ok"
        if refusal == "read-only database":
            with db.admin.begin() as connection:
                connection.execute(text(f'ALTER DATABASE "{db.name}" SET default_transaction_read_only = on'))
        else:
            shop.configure(ledger={"url": db.read_only_user()})
        result = shop.cli("doctor", "--json", "--no-smtp", now=None)
    ledger = next(c for c in result.json["checks"] if c["name"] == "ledger")
    assert ledger["status"] == "fail" and said in ledger["detail"], ledger
    assert result.exit_code == 2 == result.json["exit_code"]


@pytest.mark.postgres
def test_a_password_in_the_ledger_urls_query_string_is_never_shown(shop: Shop, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CR_TEST_LEDGER_PW", "Sup3rS3cret!")
    shop.configure(ledger={"url": "postgresql+psycopg://postgres@127.0.0.1:5432/cr_no_such_db"
                                  "?password=${CR_TEST_LEDGER_PW}&sslmode=disable"}).add(cart("c1"))
    result = shop.cli("run", "--json")
    assert result.exit_code == 2
    assert "?password=***&sslmode=disable" in result.json["error"]["message"]
    doctor = shop.cli("doctor", "--no-smtp", "--json", now=None)
    for said in (result.output, doctor.output):
        assert "Sup3rS3cret" not in said and "Sup3rS3cret%21" not in said


def _lock_exclusively(path: Path) -> sqlite3.Connection:
    """Take SQLite's write lock as another process would, waiting out the run's own short write
    transactions: asking once could meet one of them and fail ("database is locked")."""
    import time

    other = sqlite3.connect(path, timeout=0)
    deadline = time.monotonic() + 30
    while True:
        try:
            other.execute("BEGIN EXCLUSIVE")
            return other
        except sqlite3.OperationalError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.001)


@pytest.mark.smtp
def test_a_ledger_locked_by_another_process_mid_run_stops_it_as_a_ledger_error_not_a_held_lock(
        shop: Shop, monkeypatch: pytest.MonkeyPatch) -> None:
    """exit 4 means "another run holds the lock: nothing to do"; a run that delivered and then
    met a ledger locked by someone else (a backup, a sqlite3 shell) must not say so in silence."""
    import threading
    import time

    from smtpserver import LoopbackSMTP

    import cartrescue.ledger.engine

    monkeypatch.setattr(cartrescue.ledger.engine, "WRITE_LOCK_WAIT", 0.3)
    with LoopbackSMTP() as server:
        shop.configure(smtp=server.smtp_config(rate_per_second=20))
        shop.add(*(cart(f"c{n}", email=f"c{n}@example.com") for n in range(60)))
        shop.write()

        def lock_it() -> None:
            server.wait_for(5, timeout=30)
            other = _lock_exclusively(shop.folder / "ledger.db")
            time.sleep(3)
            other.rollback()
            other.close()

        holder = threading.Thread(target=lock_it)
        holder.start()
        try:
            result = shop.cli("run", "--send", "--json", "--quiet")
        finally:
            holder.join()
    assert result.exit_code == 2, result.output
    assert result.json["error"]["code"] != "locked"
    assert "the ledger stayed locked by another process while this run delivered" in result.json["error"]["message"]
    assert "stayed locked" in result.stderr  # said even under --quiet


@pytest.mark.smtp
def test_a_ledger_locked_by_another_process_until_the_run_ends_is_still_a_ledger_error_not_a_held_lock(
        shop: Shop, monkeypatch: pytest.MonkeyPatch) -> None:
    """The other process (a backup, a sqlite3 shell) keeps its lock for longer than the run lives:
    releasing the run's own lock row then fails too ("database is locked"), and that failure
    replaced the run's error: exit 4, "the other run does the work", silent under --quiet. The
    row left behind is stale once the process is gone; a later run takes the lock over."""
    import threading
    import time

    from smtpserver import LoopbackSMTP

    import cartrescue.ledger.engine

    monkeypatch.setattr(cartrescue.ledger.engine, "WRITE_LOCK_WAIT", 0.3)  # every wait for SQLite's lock
    release = threading.Event()
    locked = threading.Event()
    with LoopbackSMTP() as server:
        shop.configure(smtp=server.smtp_config(rate_per_second=20))
        shop.add(*(cart(f"c{n}", email=f"c{n}@example.com") for n in range(60)))
        shop.write()

        def lock_it() -> None:
            server.wait_for(5, timeout=30)
            other = _lock_exclusively(shop.folder / "ledger.db")
            locked.set()
            release.wait(300)  # longer than the old code took to fail every write (4 x 30 s)
            other.rollback()
            other.close()

        holder = threading.Thread(target=lock_it)
        holder.start()
        try:
            started = time.monotonic()
            result = shop.cli("run", "--send", "--json", "--quiet")
            took = time.monotonic() - started
        finally:
            release.set()
            holder.join()
        assert locked.is_set()
        assert result.exit_code == 2, result.output
        assert result.json["error"]["code"] == "config" and result.json["error"]["exit_code"] == 2, result.output
        assert "the ledger stayed locked by another process while this run delivered" in result.json["error"]["message"]
        assert "stayed locked" in result.stderr  # said even under --quiet
        assert took < 20, took  # each wait for the lock is WRITE_LOCK_WAIT, not SQLite's 30 s default
        with sqlite3.connect(shop.folder / "ledger.db") as db:  # the run could not remove its lock row
            left = db.execute("SELECT run_id FROM cr_lock").fetchall()
        assert len(left) == 1
        later = shop.cli("run", "--send", "--json")  # the row is stale: this process's run is over
        assert later.exit_code in (0, 1), later.output
        assert later.json["counts"]["sent"] > 0


@pytest.mark.parametrize(("where", "said"), [
    ("{folder}", "{folder} is a folder: give a file name, e.g. {folder}/ledger.db"),
    ("{folder}/no/such/ledger.db", "no folder {folder}/no/such: create it"),
    ("{folder}/cartrescue.yaml/ledger.db", "{folder}/cartrescue.yaml is a file, not a folder"),
])
def test_a_sqlite_ledger_that_cannot_be_opened_says_why(shop: Shop, where: str, said: str) -> None:
    """A delivering run's: a dry-run reads a ledger whose folder is not there as a first run."""
    folder = str(shop.folder)
    shop.configure(ledger={"url": "sqlite:///" + where.format(folder=folder)}).add(cart("c1"))
    result = shop.cli("run", "--outbox", str(shop.folder / "out"), "--json")
    assert result.exit_code == 2
    assert result.json["error"]["message"].endswith(f"unable to open database file ({said.format(folder=folder)})")


@pytest.mark.parametrize("command", [["run", "--outbox", "out"], ["unsubscribe", "ann@example.com"],
                                     ["forget", "ann@example.com"]])
def test_a_ledger_that_cannot_be_opened_is_named_by_its_config_file_and_key(shop: Shop, command: list[str]) -> None:
    """By the commands that record (those that only read take a missing folder for no ledger yet)."""
    shop.configure(ledger={"url": f"sqlite:///{shop.folder}/no/such/ledger.db"}).add(cart("c1"))
    result = shop.cli(*command, "--json", now=None)
    assert result.exit_code == 2, result.output
    message = result.json["error"]["message"] if "error" in result.json else json.dumps(result.json)
    assert f"{shop.config_path}: ledger.url sqlite:///{shop.folder}/no/such/ledger.db: cannot open" in message


@pytest.mark.mariadb
def test_a_ledger_url_option_the_driver_trips_over_is_the_urls_error_not_a_bug(shop: Shop) -> None:
    with shop_database("mariadb", "badcharset") as db:
        shop.configure(ledger={"url": db.url + ("&" if "?" in db.url else "?") + "charset=bogus"}).add(cart("c1"))
        result = shop.cli("run", "--json")
    assert result.exit_code == 2, result.output
    assert "cannot open: the URL's options: AttributeError" in result.json["error"]["message"]


@pytest.mark.parametrize("command", [["carts"], ["run"], ["preview", "c1"]])
def test_a_command_that_records_nothing_does_not_make_a_missing_ledger_file(shop: Shop, command: list[str]) -> None:
    """``carts``, a dry-run and ``preview`` made an empty ledger at a mistyped ``ledger.url``,
    which doctor and the next sending run then took for a shop that never sent anything."""
    shop.configure(ledger={"url": "sqlite:///ledgr.db"}).add(cart("c1"))
    result = shop.cli(*command)
    assert result.exit_code == 0, result.output
    assert not (shop.folder / "ledgr.db").exists()



@pytest.mark.parametrize("command", [["doctor", "--no-smtp"], ["carts"], ["report"]])
def test_a_ledger_url_that_does_not_parse_is_a_config_error_naming_its_key(shop: Shop, command: list[str]) -> None:
    """Asking whether its SQLite file is there parsed the URL first: an internal error (exit 70)."""
    shop.configure(ledger={"url": "not a url"}).add(cart("c1"))
    result = shop.cli(*command, "--json", now=None)
    message = result.json["error"]["message"] if "error" in result.json else json.dumps(result.json)
    assert result.exit_code == 2, result.output
    assert "ledger.url" in message and "internal" not in message


def _shop_database_at_the_ledger_url(shop: Shop) -> tuple[Path, str]:
    """The shop's own SQLite database, named by ``ledger.url`` by mistake; its md5."""
    path = shop.folder / "shop.db"
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE orders (id INTEGER PRIMARY KEY, total TEXT)")
        db.execute("INSERT INTO orders (total) VALUES ('12.00')")
    db.close()
    shop.configure(ledger={"url": "sqlite:///shop.db"}).add(cart("c1"))
    return path, hashlib.md5(path.read_bytes()).hexdigest()


def _tables(path: Path) -> list[str]:
    with sqlite3.connect(path) as db:
        names = [name for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
    db.close()
    return names


@pytest.mark.parametrize("command", [["carts"], ["run"], ["preview", "c1"], ["report"]])
def test_a_command_that_records_nothing_does_not_make_the_shops_database_a_ledger(shop: Shop, command: list[str]) -> None:
    """Opened as a ledger, an existing SQLite file that is not one (here the shop's own database)
    got cartrescue's cr_* tables from ``carts``, a dry-run, ``preview`` and ``report``; they now
    read it as the empty ledger they read for a missing file, and its bytes stay as they were."""
    path, before = _shop_database_at_the_ledger_url(shop)
    result = shop.cli(*command)
    assert result.exit_code == 0, result.output
    assert hashlib.md5(path.read_bytes()).hexdigest() == before
    assert _tables(path) == ["orders"]


def test_doctor_says_a_database_that_is_not_a_ledger_is_not_one_and_leaves_it_unchanged(shop: Shop) -> None:
    path, before = _shop_database_at_the_ledger_url(shop)
    result = shop.cli("doctor", "--no-smtp", "--json", now=None)
    found = {check["name"]: check for check in result.json["checks"]}
    assert found["ledger"]["status"] == "fail", found["ledger"]
    assert f"{path} is not a cartrescue ledger" in found["ledger"]["detail"]
    assert "ledger.url" in found["ledger"]["detail"] and "orders" in found["ledger"]["detail"]
    assert result.exit_code == 2 and found["staleness"]["status"] == "skip"
    assert hashlib.md5(path.read_bytes()).hexdigest() == before


def test_an_older_ledger_is_left_as_it_is_by_commands_that_record_nothing_and_upgraded_by_a_sending_run(
        shop: Shop, tmp_path: Path) -> None:
    """A ledger of an older version (only an older cr_run) is still a ledger: doctor says what it
    lacks and what brings it up to date, a report stops (exit 2) saying so; neither changes it."""
    path = shop.folder / "old.db"
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE cr_run (id INTEGER PRIMARY KEY, mode VARCHAR(16) NOT NULL, now DATETIME NOT NULL,"
                   " started_at DATETIME NOT NULL, finished_at DATETIME, status VARCHAR(16) NOT NULL, sent INTEGER"
                   " NOT NULL, failed INTEGER NOT NULL, skipped INTEGER NOT NULL, deferred INTEGER NOT NULL,"
                   " problems INTEGER NOT NULL)")
    db.close()
    before = hashlib.md5(path.read_bytes()).hexdigest()
    shop.configure(ledger={"url": "sqlite:///old.db"}).add(cart("c1"))
    report = shop.cli("report", "--json")
    assert report.exit_code == 2 and "older cartrescue (it lacks cr_message" in report.json["error"]["message"]
    doctor = shop.cli("doctor", "--no-smtp", "--json", now=None)
    assert {c["name"]: c["status"] for c in doctor.json["checks"]}["ledger"] == "warn", doctor.output
    assert _tables(path) == ["cr_run"] and hashlib.md5(path.read_bytes()).hexdigest() == before
    assert shop.cli("run", "--outbox", str(tmp_path / "out")).exit_code == 0
    assert {"cr_message", "cr_run", "cr_lock"} <= set(_tables(path))
    assert shop.cli("doctor", "--no-smtp", now=None).exit_code == 0


def test_a_ledger_without_the_table_only_sending_shards_use_is_read_by_report_and_doctor_as_it_is(
        shop: Shop, tmp_path: Path) -> None:
    """The version that added cr_budget_hold (a sending shard's reservations) found every ledger
    without it: read-only commands read on, and do not call that ledger older."""
    shop.add(cart("c1"))
    assert shop.cli("run", "--outbox", str(tmp_path / "out")).exit_code == 0
    path = shop.folder / "ledger.db"
    with sqlite3.connect(path) as db:
        db.execute("DROP TABLE cr_budget_hold")
        db.execute("PRAGMA user_version = 1")  # an older cartrescue's (no stamp of this version's schema)
    db.close()
    report = shop.cli("report", "--json")
    assert report.exit_code == 0, report.output
    doctor = shop.cli("doctor", "--no-smtp", "--json", now=None)
    assert {c["name"]: c["status"] for c in doctor.json["checks"]}["ledger"] == "ok", doctor.output
    assert "cr_budget_hold" not in _tables(path)


def test_the_report_notes_that_its_ledger_url_names_a_database_that_is_not_a_ledger(shop: Shop) -> None:
    path, before = _shop_database_at_the_ledger_url(shop)
    result = shop.cli("report", "--json")
    assert result.exit_code == 0, result.output
    assert result.json["notes"][0] == (f"{shop.config_path}: ledger.url: {path} has none of cartrescue's cr_* tables: "
                                       "no run has recorded anything there yet (a typo in the path?): read as an "
                                       "empty ledger, left unchanged")
    assert hashlib.md5(path.read_bytes()).hexdigest() == before


@pytest.mark.parametrize("command", [
    ["run", "--outbox", "out/today"],
    ["run", "--outbox", "out/today", "--workers", "2"],
    ["send-test", "qa@example.com", "--outbox", "out/today"],
])
def test_a_run_stopped_by_a_ledger_it_cannot_open_leaves_no_folder_behind(shop: Shop, command: list[str]) -> None:
    """The folder for its files was made before the ledger was opened: an empty ``out/today``
    looked like a run that had delivered nothing, where it had never started."""
    shop.configure(ledger={"url": f"sqlite:///{shop.folder}/ledger.db/no/ledger.db"}).add(cart("c1"))
    (shop.folder / "ledger.db").write_text("not a folder", encoding="utf-8")
    result = shop.cli(*command)
    assert result.exit_code == 2, result.output
    assert "cannot open" in result.stderr, result.stderr
    assert not (shop.folder / "out").exists()


def test_a_failed_run_keeps_a_folder_it_did_not_make(shop: Shop) -> None:
    shop.configure(ledger={"url": f"sqlite:///{shop.folder}/no/such/ledger.db"}).add(cart("c1"))
    (shop.folder / "out").mkdir()
    result = shop.cli("run", "--outbox", "out/today")
    assert result.exit_code == 2, result.output
    assert (shop.folder / "out").is_dir() and not (shop.folder / "out" / "today").exists()


def test_a_dry_run_stopped_by_a_source_it_cannot_read_leaves_no_eml_folder_behind(shop: Shop) -> None:
    shop.configure(source={"carts": "missing.csv"}).add(cart("c1"))
    result = shop.cli("run", "--eml", "out/today")
    assert result.exit_code == 3, result.output
    assert not (shop.folder / "out").exists()


def test_a_run_that_works_keeps_the_outbox_folder_it_made_even_with_nothing_to_write(shop: Shop) -> None:
    shop.add(cart("c1", idle=timedelta(minutes=5)))  # not due yet: nothing to write
    result = shop.cli("run", "--outbox", "out/today")
    assert result.exit_code == 0, result.output
    assert (shop.folder / "out" / "today").is_dir()


def test_a_run_that_finds_the_lock_held_leaves_the_outbox_folder_to_the_run_that_holds_it(shop: Shop) -> None:
    """Two cron runs at once, both making ``out/today``: the one that found the lock held (exit 4)
    removed the folder while the other was about to write its messages there, and they failed
    (exit 1). A held lock means another run works in that folder: it is not this run's to remove."""
    from datetime import datetime, timezone

    from sqlalchemy import insert

    from cartrescue.ledger import RunLock

    shop.add(cart("c1"))
    shop.write()
    ledger = Ledger(f"sqlite:///{shop.folder / 'ledger.db'}")
    now = datetime.now(timezone.utc)
    with ledger.engine.begin() as conn:
        conn.execute(insert(RunLock.__table__).values(  # type: ignore[attr-defined]
            name="run", run_id=997, host="other-host", pid=1, acquired_at=now, heartbeat_at=now))
    ledger.heartbeat(997)
    ledger.close()
    result = shop.cli("run", "--outbox", "out/today")
    assert result.exit_code == 4, result.output
    assert (shop.folder / "out" / "today").is_dir()


def test_a_sqlite_ledger_whose_disk_is_full_stops_the_run_with_a_line_naming_ledger_url_and_the_file(
        small_disk: Path, shop: Shop) -> None:
    """Exit 2 names the file and the key (README): "the ledger: database or disk is full" named
    neither. The ledger opens (its write-ahead log holds what was written since the last
    checkpoint, which a full disk does not let SQLite copy into the file); the run's first write fails."""
    url = f"sqlite:///{small_disk / 'ledger.db'}"
    shop.add(cart("c1"))
    shop.configure(ledger={"url": url})
    with full_behind_its_log(small_disk):
        done = shop.cli("run", "--outbox", str(shop.folder / "out"), "--json")
    assert done.exit_code == 2, done.output
    message = json.loads(done.stdout)["error"]["message"]
    assert message.startswith(f"{shop.config_path}: ledger.url {url}: ") and "disk is full" in message, message


@contextmanager
def full_behind_its_log(folder: Path) -> Iterator[None]:
    """A ledger in ``folder`` whose disk is full while its write-ahead log holds writes not yet in
    the file, as a run that filled the disk leaves it (the checkpoint finds no room either):
    it reads fine, and the next write fails."""
    Ledger(f"sqlite:///{folder / 'ledger.db'}").close()
    keeper = sqlite3.connect(folder / "ledger.db")  # an open connection keeps the log
    keeper.execute("PRAGMA wal_autocheckpoint=0")
    keeper.execute("CREATE TABLE ballast (x BLOB)")
    keeper.executemany("INSERT INTO ballast VALUES (?)", [(b"x" * 4000,)] * 200)
    keeper.commit()
    filler = fill(folder)
    try:
        yield
    finally:
        filler.unlink()
        keeper.close()


def test_doctor_fails_a_sqlite_ledger_whose_disk_is_full(small_disk: Path, shop: Shop) -> None:
    """Every run stops at its first write there (exit 2); the ledger check read the ledger fine and
    passed, and only the staleness check, hours later, said that nothing had been sent."""
    shop.add(cart("c-1"))
    shop.configure(ledger={"url": f"sqlite:///{small_disk / 'ledger.db'}"})
    with full_behind_its_log(small_disk):
        result = shop.cli("doctor", "--json", "--no-smtp", now=None)
    ledger = next(c for c in result.json["checks"] if c["name"] == "ledger")
    assert ledger["status"] == "fail" and f"the disk holding {small_disk / 'ledger.db'} has " in ledger["detail"], ledger
    assert result.exit_code == 2 == result.json["exit_code"]


def test_a_command_on_a_ledger_in_another_journal_mode_that_another_process_holds_gives_up_within_the_lock_wait(
        shop: Shop, monkeypatch: pytest.MonkeyPatch) -> None:
    """A ledger file in SQLite's default journal mode (converted, or restored by a tool that
    wrote it so) while a backup or a sqlite3 shell holds it: switching it to WAL answered
    "locked" only after each busy timeout, and the switch was tried a hundred times (50 minutes
    at the real 30 s wait). It now gives up after the one wait, saying the command did nothing."""
    import time

    import cartrescue.ledger.engine

    shop.add(cart("c1", email="c1@example.com"))
    shop.write()
    assert shop.cli("run", "--outbox", str(shop.folder / "out"), "--json").exit_code == 0
    with sqlite3.connect(shop.folder / "ledger.db") as db:
        assert db.execute("PRAGMA journal_mode=DELETE").fetchone() == ("delete",)
    monkeypatch.setattr(cartrescue.ledger.engine, "WRITE_LOCK_WAIT", 0.3)
    other = _lock_exclusively(shop.folder / "ledger.db")
    try:
        started = time.monotonic()
        result = shop.cli("unsubscribe", "c1@example.com", "--json", now=None)
        took = time.monotonic() - started
    finally:
        other.rollback()
        other.close()
    assert result.exit_code == 2, result.output
    assert "database is locked" in result.json["error"]["message"]
    assert "this command did nothing: run it again once the other process lets go" in result.json["error"]["message"]
    assert took < 15, took  # one wait of 0.3 s, not a hundred (30 s here)
    assert shop.cli("unsubscribe", "c1@example.com", "--json", now=None).exit_code == 0  # let go: it goes through


def test_a_command_that_is_no_run_meeting_a_busy_ledger_says_it_did_nothing_not_that_a_later_run_goes_on(
        shop: Shop, monkeypatch: pytest.MonkeyPatch) -> None:
    """exit 4 tells a run that another does the work; an opt-out or an erasure refused by a busy
    ledger is done by nobody unless it is given again."""
    import sqlalchemy as sa

    from cartrescue.commands.common import explained
    from cartrescue.errors import LockHeld

    path = shop.folder / "busy.db"
    sqlite3.connect(path).execute("CREATE TABLE t(x)").connection.close()
    other = _lock_exclusively(path)
    engine = sa.create_engine(f"sqlite:///{path}", connect_args={"timeout": 0})
    try:
        with pytest.raises(sa.exc.OperationalError) as refused, engine.begin() as conn:
            conn.exec_driver_sql("INSERT INTO t VALUES (1)")
    finally:
        other.rollback()
        other.close()
        engine.dispose()
    monkeypatch.setattr(sys, "argv", ["cartrescue", "unsubscribe", "c1@example.com"])
    for_a_command = explained(refused.value)
    monkeypatch.setattr(sys, "argv", ["cartrescue", "run", "--send"])
    for_a_run = explained(refused.value)
    assert isinstance(for_a_command, LockHeld) and isinstance(for_a_run, LockHeld)
    assert "this command did nothing: run it again" in str(for_a_command) and "a later run" not in str(for_a_command)
    assert "a later run goes on" in str(for_a_run)


def test_a_mysql_ledger_that_does_not_answer_is_said_in_words_not_as_the_drivers_tuple(shop: Shop) -> None:
    """PyMySQL's error is a (code, message) tuple, and its str was what the line said:
    ``cannot open: (2003, "Can't connect to MySQL server on '127.0.0.1' (…)")``."""
    import socket

    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    shop.configure(ledger={"url": f"mysql+pymysql://root@127.0.0.1:{port}/cr_nowhere"})
    shop.add(cart("c1", email="c1@example.com"))
    shop.write()
    result = shop.cli("run", "--json")
    message = result.json["error"]["message"]
    assert result.exit_code == 2, result.output
    assert "ledger.url" in message and "Can't connect to MySQL server on '127.0.0.1'" in message
    assert "(MySQL error 2003)" in message and "(2003," not in message
