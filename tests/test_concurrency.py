"""Overlapping cron runs on one ledger: every message is delivered once, never twice."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import threading
import time
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from cartrescue.ledger import ClaimRequest, Ledger, process_identity
from conftest import NOW, Shop, cart, iso


def _start(shop: Shop, outbox: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "cartrescue.cli", "run", "--outbox", outbox, "--json", "--config",
         str(shop.config_path), "--now", iso(NOW)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ, "COLUMNS": "200"},
    )


@pytest.mark.slow
def test_two_runs_started_together_deliver_every_message_once(shop: Shop) -> None:
    shop.add(*(cart(f"c{i:03}", idle=timedelta(hours=2, minutes=i)) for i in range(300)))
    shop.write()
    outbox = shop.folder / "out"
    first, second = _start(shop, str(outbox)), _start(shop, str(outbox))
    errors = [process.communicate(timeout=120)[1] for process in (first, second)]
    codes = sorted(p.returncode for p in (first, second))
    files = sorted(outbox.glob("*.eml"))
    assert len(files) == 300
    assert len({f.name.split("-step")[0] for f in files}) == 300
    assert codes in ([0, 0], [0, 4]), errors  # the loser finds the lock, or nothing left to do
    messages = Ledger(f"sqlite:///{shop.folder / 'ledger.db'}").messages()
    assert len(messages) == 300 and {m["status"] for m in messages} == {"sent"}


def test_a_run_finding_the_lock_held_exits_4_and_delivers_nothing(shop: Shop) -> None:
    shop.add(cart("c1"))
    shop.write()
    ledger = Ledger(f"sqlite:///{shop.folder / 'ledger.db'}")
    holder = ledger.start_run("send", NOW)
    with ledger.lock(holder, timedelta(hours=2)):
        result = shop.cli("run", "--outbox", str(shop.folder / "out"))
    assert result.exit_code == 4 and "holds the lock" in result.stderr
    assert ledger.messages() == []


def test_a_lock_left_by_a_killed_run_is_taken_over(shop: Shop) -> None:
    shop.add(cart("c1"))
    shop.write()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    ledger = Ledger(f"sqlite:///{shop.folder / 'ledger.db'}")
    from sqlalchemy import insert

    from cartrescue.ledger import RunLock

    with ledger.engine.begin() as conn:  # what a SIGKILLed run leaves behind: its lock row
        conn.execute(insert(RunLock.__table__).values(  # type: ignore[attr-defined]
            name="run", run_id=999, host=os.uname().nodename, pid=dead.pid, acquired_at=NOW, heartbeat_at=NOW))
    time.sleep(0.01)
    result = shop.cli("run", "--outbox", str(shop.folder / "out"))
    assert result.exit_code == 0, result.output
    assert [m["status"] for m in ledger.messages()] == ["sent"]


def _left_behind(ledger: Ledger, pid: int, process: str | None, run_id: int = 996) -> None:
    """What a run killed with SIGKILL leaves: its lock row and its run row, running, with a claim."""
    from datetime import datetime, timezone

    from sqlalchemy import insert

    from cartrescue.ledger import Message, Run, RunLock

    now = datetime.now(timezone.utc)
    with ledger.engine.begin() as conn:
        conn.execute(insert(Run.__table__).values(  # type: ignore[attr-defined]
            id=run_id, mode="send", now=NOW, started_at=now, status="running", host=os.uname().nodename, pid=pid,
            process=process, heartbeat_at=now))
        conn.execute(insert(RunLock.__table__).values(  # type: ignore[attr-defined]
            name="run", run_id=run_id, host=os.uname().nodename, pid=pid, process=process, acquired_at=now,
            heartbeat_at=now))
        conn.execute(insert(Message.__table__).values(  # type: ignore[attr-defined]
            run_id=run_id, cart_key="csv:c0", cart_id="c0", email="c0@example.com", step=1, channel="email",
            template="reminder-1", status="claimed", claimed_at=now, message_id="<c0@example.com>"))


@pytest.fixture
def live_process() -> Any:
    """A process that lives through the test: the pid a killed run had, reused."""
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    yield child
    child.kill()
    child.wait()


def test_a_lock_whose_pid_now_belongs_to_another_process_is_taken_over(shop: Shop, live_process: Any) -> None:
    """A container restarted under the same host name gives its run the same pid: the killed
    run's lock was taken for a live one's (exit 4) until lock_timeout, 2 h, and its claims were
    never released. The pid's process now started at another time: the run is gone."""
    from cartrescue.ledger import process_identity

    shop.add(cart("c1"))
    shop.write()
    ledger = Ledger(f"sqlite:///{shop.folder / 'ledger.db'}")
    boot, started = process_identity(live_process.pid).split(":")  # type: ignore[union-attr]
    _left_behind(ledger, live_process.pid, f"{boot}:{int(started) - 100}")
    result = shop.cli("run", "--outbox", str(shop.folder / "out"), "--resend-unconfirmed")
    assert result.exit_code == 0, result.output
    statuses = {m["cart_key"]: m["status"] for m in ledger.messages()}
    assert statuses["csv:c1"] == "sent"
    assert statuses["csv:c0"] == "failed_transient"  # the dead run's claim was released for resending
    with ledger.engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT status FROM cr_run WHERE id = 996").scalar() == "killed"


def test_a_lock_whose_pid_is_the_process_that_took_it_is_respected(shop: Shop, live_process: Any) -> None:
    from cartrescue.ledger import process_identity

    shop.add(cart("c1"))
    shop.write()
    ledger = Ledger(f"sqlite:///{shop.folder / 'ledger.db'}")
    _left_behind(ledger, live_process.pid, process_identity(live_process.pid))
    result = shop.cli("run", "--outbox", str(shop.folder / "out"), "--resend-unconfirmed")
    assert result.exit_code == 4 and "holds the lock" in result.stderr
    assert ledger.close_dead_runs(0, timedelta(hours=2)) == {}
    assert ledger.release_unconfirmed(0, timedelta(hours=2)) == 0


@pytest.mark.parametrize("process", [None, "another process"])
def test_a_lock_with_this_processs_own_pid_left_by_another_process_is_taken_over(shop: Shop,
                                                                                 process: str | None) -> None:
    """The restarted container's run has the very pid of the killed one (2): the lock row of an
    older cartrescue (no identity recorded) or of the killed process names this process."""
    from cartrescue.ledger import process_identity

    shop.add(cart("c1"))
    shop.write()
    ledger = Ledger(f"sqlite:///{shop.folder / 'ledger.db'}")
    mine = process_identity()
    assert mine is not None
    _left_behind(ledger, os.getpid(), None if process is None else mine.split(":")[0] + ":1")
    result = shop.cli("run", "--outbox", str(shop.folder / "out"))
    assert result.exit_code == 0, result.output


def test_a_ledger_of_an_older_cartrescue_gets_the_process_columns_and_its_killed_runs_lock_is_taken_over(
        shop: Shop) -> None:
    from sqlalchemy import insert

    from cartrescue.ledger import RunLock

    shop.add(cart("c1"))
    shop.write()
    path = shop.folder / "ledger.db"
    Ledger(f"sqlite:///{path}").close()
    with sqlite3.connect(path) as db:  # as an older cartrescue made it
        db.execute("ALTER TABLE cr_lock DROP COLUMN process")
        db.execute("ALTER TABLE cr_run DROP COLUMN process")
        db.execute("PRAGMA user_version = 1")  # an older cartrescue's (no stamp of this version's schema)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    ledger = Ledger(f"sqlite:///{path}")  # a sending run's: the columns are added
    with ledger.engine.begin() as conn:
        conn.execute(insert(RunLock.__table__).values(  # type: ignore[attr-defined]
            name="run", run_id=999, host=os.uname().nodename, pid=dead.pid, acquired_at=NOW, heartbeat_at=NOW))
    result = shop.cli("run", "--outbox", str(shop.folder / "out"))
    assert result.exit_code == 0, result.output
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT process FROM cr_run").fetchone()[0]


def test_a_lock_whose_heartbeat_stopped_on_another_host_is_taken_over(shop: Shop) -> None:
    shop.add(cart("c1"))
    shop.write()
    ledger = Ledger(f"sqlite:///{shop.folder / 'ledger.db'}")
    from datetime import datetime, timezone

    from sqlalchemy import insert

    from cartrescue.ledger import RunLock

    long_ago = datetime.now(timezone.utc) - timedelta(hours=3)  # lock_timeout is 2 h
    with ledger.engine.begin() as conn:
        conn.execute(insert(RunLock.__table__).values(  # type: ignore[attr-defined]
            name="run", run_id=998, host="other-host", pid=1, acquired_at=long_ago, heartbeat_at=long_ago))
    assert shop.cli("run", "--outbox", str(shop.folder / "out")).exit_code == 0


def test_a_live_lock_on_another_host_with_a_fresh_heartbeat_is_respected(shop: Shop) -> None:
    shop.add(cart("c1"))
    shop.write()
    ledger = Ledger(f"sqlite:///{shop.folder / 'ledger.db'}")
    from datetime import datetime, timezone

    from sqlalchemy import insert

    from cartrescue.ledger import RunLock

    started = datetime.now(timezone.utc) - timedelta(hours=3)
    with ledger.engine.begin() as conn:
        conn.execute(insert(RunLock.__table__).values(  # type: ignore[attr-defined]
            name="run", run_id=997, host="other-host", pid=1, acquired_at=started, heartbeat_at=started))
    ledger.heartbeat(997)  # a long run that is still alive
    assert shop.cli("run", "--outbox", str(shop.folder / "out")).exit_code == 4


@pytest.mark.parametrize("mode", [["--send"], ["--outbox", "out"]])
def test_under_quiet_a_held_lock_is_exit_4_and_prints_nothing(shop: Shop, mode: list[str]) -> None:
    """Cron mails whatever a job prints: another run doing the work is no news."""
    shop.add(cart("c1"))
    shop.write()
    ledger = Ledger(f"sqlite:///{shop.folder / 'ledger.db'}")
    holder = ledger.start_run("send", NOW)
    with ledger.lock(holder, timedelta(hours=2)):
        quiet = shop.cli("run", *mode, "--quiet")
        loud = shop.cli("run", *mode)
        as_json = shop.cli("run", *mode, "--quiet", "--json")
    assert (quiet.exit_code, quiet.stdout, quiet.stderr) == (4, "", "")
    assert loud.exit_code == 4 and "error:" in loud.stderr and "holds the lock" in loud.stderr
    assert as_json.exit_code == 4 and as_json.json["error"]["code"] == "locked" and as_json.stderr == ""
    assert ledger.messages() == []


def test_under_quiet_a_run_that_went_well_prints_nothing(shop: Shop) -> None:
    shop.add(cart("c1"), cart("c2"))
    result = shop.cli("run", "--outbox", str(shop.folder / "out"), "--quiet")
    assert (result.exit_code, result.stdout, result.stderr) == (0, "", "")
    assert len(list((shop.folder / "out").glob("*.eml"))) == 2


def test_under_quiet_a_run_with_a_bad_row_prints_the_warning_and_the_summary(shop: Shop) -> None:
    shop.add(cart("c1"), cart("c2", items=(("SKU-1", "Mug", "many", "25.00"),)))
    result = shop.cli("run", "--outbox", str(shop.folder / "out"), "--quiet")
    assert result.exit_code == 1
    assert "warning:" in result.stderr and "quantity" in result.stderr
    assert "1 problem (a source row that could not be read" in result.stdout and "delivered 1" in result.stdout


def _claim_request(n: int) -> ClaimRequest:
    return ClaimRequest(f"csv:c{n}", f"c{n}", f"a{n}@example.com", 1, "email", "smtp", "reminder-1", None, None, None)


def _hold_write_lock(path: str, seconds: float) -> tuple[threading.Thread, threading.Event]:
    """Another connection (another process, as far as SQLite's locks go) holds the write lock."""
    taken = threading.Event()

    def hold() -> None:
        other = sqlite3.connect(path, isolation_level=None)
        other.execute("BEGIN IMMEDIATE")
        taken.set()
        time.sleep(seconds)
        other.execute("COMMIT")
        other.close()

    thread = threading.Thread(target=hold)
    thread.start()
    taken.wait(5)
    return thread, taken


def test_a_claim_waits_while_another_writer_holds_the_sqlite_ledger_and_then_goes_through(shop: Shop) -> None:
    path = str(shop.folder / "ledger.db")
    ledger = Ledger(f"sqlite:///{path}")
    run = ledger.start_run("send", NOW)
    with ledger.lock(run, timedelta(hours=1)):
        ledger.claim(run, [_claim_request(1)], NOW)  # the run's writer connection is open
        thread, _taken = _hold_write_lock(path, 0.3)
        started = time.monotonic()
        won = ledger.claim(run, [_claim_request(2)], NOW)
        waited = time.monotonic() - started
        thread.join()
    assert list(won) == [("csv:c2", 1, "email")]
    assert waited >= 0.25  # it waited for the other writer instead of failing at once
    assert {m["cart_key"] for m in ledger.messages()} == {"csv:c1", "csv:c2"}


def test_a_claim_gives_up_with_the_ledgers_error_when_the_write_lock_stays_taken(
        shop: Shop, monkeypatch: pytest.MonkeyPatch) -> None:
    from sqlalchemy.exc import OperationalError

    import cartrescue.ledger.engine

    monkeypatch.setattr(cartrescue.ledger.engine, "WRITE_LOCK_WAIT", 0.2)
    path = str(shop.folder / "ledger.db")
    ledger = Ledger(f"sqlite:///{path}")
    run = ledger.start_run("send", NOW)
    with ledger.lock(run, timedelta(hours=1)):
        thread, _taken = _hold_write_lock(path, 1.0)
        with pytest.raises(OperationalError, match="locked"):
            ledger.claim(run, [_claim_request(1)], NOW)
        thread.join()
        assert ledger.claim(run, [_claim_request(1)], NOW)  # the writer is still good once the lock is free
    assert [m["cart_key"] for m in ledger.messages()] == ["csv:c1"]


@pytest.mark.postgres
def test_a_claim_after_the_ledgers_connection_was_cut_fails_as_a_ledger_error_and_the_next_reconnects() -> None:
    from shopdb import shop_database
    from sqlalchemy import text
    from sqlalchemy.exc import OperationalError

    with shop_database("postgres", "ledger") as db:
        ledger = Ledger(db.url)
        try:
            run = ledger.start_run("send", NOW)
            with ledger.lock(run, timedelta(hours=1)):
                ledger.claim(run, [_claim_request(1)], NOW)  # the run's writer connection is open
                with ledger.engine.connect() as other:  # the server drops it (a restart, a failover)
                    other.execute(text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE "
                                       "datname = current_database() AND pid <> pg_backend_pid() AND state = 'idle'"))
                with pytest.raises(OperationalError) as cut:
                    ledger.claim(run, [_claim_request(2)], NOW)
                assert cut.value.connection_invalidated
                assert ledger.claim(run, [_claim_request(2)], NOW)  # a new connection, the same run
            assert sorted(m["cart_key"] for m in ledger.messages()) == ["csv:c1", "csv:c2"]
        finally:
            ledger.close()


def _lock_row_kept(ledger: Ledger, run_id: int) -> None:
    """Run ``run_id`` takes the lock and ends, its lock row left behind as a run leaves it when
    the ledger stays locked by another process until the run ends (tests/test_ledger_errors.py)."""
    from sqlalchemy import insert, select

    from cartrescue.ledger import RunLock

    table = RunLock.__table__  # type: ignore[attr-defined]
    with ledger.lock(run_id, timedelta(hours=2)):
        with ledger.engine.connect() as conn:
            row = dict(conn.execute(select(table)).mappings().one())
    ledger.finish_run(run_id, "failed", {})
    with ledger.engine.begin() as conn:
        conn.execute(insert(table).values(**row))


def test_a_lock_row_an_ended_run_left_is_taken_over_by_another_ledger_sharing_the_processs_runs(
        shop: Shop) -> None:
    """The row has this process's pid and identity: only the runs this process ended, known to
    each of its ledgers (RunsOver), tell it from a live run's, until its heartbeat is 2 h old."""
    from cartrescue.ledger import RunsOver

    url, runs = f"sqlite:///{shop.folder / 'ledger.db'}", RunsOver()
    first = Ledger(url, runs_over=runs)
    _lock_row_kept(first, first.start_run("send", NOW))
    first.close()
    later = Ledger(url, runs_over=runs)
    with later.lock(later.start_run("send", NOW), timedelta(hours=2)):
        assert later.close_dead_runs(0, timedelta(hours=2)) == {}  # the first run's row says failed: not killed


def test_a_run_another_ledger_of_the_process_has_going_keeps_its_lock(shop: Shop) -> None:
    from cartrescue.errors import LockHeld
    from cartrescue.ledger import RunsOver

    url, runs = f"sqlite:///{shop.folder / 'ledger.db'}", RunsOver()
    first, other = Ledger(url, runs_over=runs), Ledger(url, runs_over=runs)
    with first.lock(first.start_run("send", NOW), timedelta(hours=2)):
        with pytest.raises(LockHeld, match="holds the lock"):
            with other.lock(other.start_run("send", NOW), timedelta(hours=2)):
                pass


def test_a_later_command_of_the_same_process_takes_over_the_lock_row_its_first_run_left(shop: Shop) -> None:
    """Two commands of one process (a test's, a Python caller's CliRunner) each open a ledger of
    their own; the command line hands both the process's RunsOver (cartrescue.cli.runs_over)."""
    from sqlalchemy import insert, select

    from cartrescue.ledger import RunLock

    shop.add(cart("c1"))
    ledger = Ledger(f"sqlite:///{shop.folder / 'ledger.db'}")
    table = RunLock.__table__  # type: ignore[attr-defined]
    first = shop.cli("run", "--outbox", str(shop.folder / "out"), "--json")
    assert first.exit_code == 0, first.output
    with ledger.engine.begin() as conn:  # its lock row, as a run leaves it when its release failed
        conn.execute(insert(table).values(name="run", run_id=first.json["run_id"], host=os.uname().nodename,
                                          pid=os.getpid(), process=process_identity(), acquired_at=NOW,
                                          heartbeat_at=datetime.now(timezone.utc)))
    shop.add(cart("c2"))
    later = shop.cli("run", "--outbox", str(shop.folder / "out"), "--json")
    assert later.exit_code == 0, later.output
    assert [m["cart_id"] for m in ledger.messages() if m["status"] == "sent"] == ["c1", "c2"]
    with ledger.engine.connect() as conn:
        assert conn.execute(select(table)).all() == []
