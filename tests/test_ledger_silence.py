"""A PostgreSQL or MariaDB ledger that stops answering mid-run ends the run within
``ledger.statement_wait``, not never.

The real case: a proxy (pgbouncer, HAProxy, a cloud SQL proxy) whose backend went away keeps the
client's TCP connection open and acknowledges it, so no keepalive fires. The run hung for good,
its heartbeat too; the lock went stale, and each cron round added one more process hung on the
same proxy. Here a loopback proxy (``tcpproxy.FreezingProxy``) stands in front of the real
server and stops forwarding mid-send: the run stops with one line naming the ledger (exit 2,
one ``--json`` document), and once the proxy forwards again a run sends no step twice.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from smtpserver import Fault, LoopbackSMTP
from sqlalchemy.engine import make_url
from tcpproxy import FreezingProxy

from cartrescue.ledger import Ledger
from conftest import NOW, REPO, Shop, cart, iso
from shopdb import ShopDb, shop_database

KINDS = [pytest.param("postgres", marks=pytest.mark.postgres), pytest.param("mariadb", marks=pytest.mark.mariadb)]
#: The deadline of the tests' ledgers (ledger.statement_wait), and how long a process may take to end after the freeze.
WAIT = 2
BOUND = 30


def test_the_driver_internals_the_statement_deadline_relies_on_are_there() -> None:
    """Fails loudly when a psycopg or PyMySQL release changes what cartrescue/drivers.py uses: the
    timeout of psycopg's ``Connection.wait`` and its ``_WaitTimeout`` (3.3 and later, which the
    extras ask for), PyMySQL's read/write hooks and time-outs. Without them a ledger keeps no deadline."""
    import pymysql.connections

    from cartrescue.drivers import _deadline_classes, psycopg_waits_with_timeout

    assert psycopg_waits_with_timeout(), "psycopg's Connection.wait takes no timeout: no ledger deadline"
    for name in ("_execute_command", "_read_packet", "_write_bytes", "_force_close"):
        assert callable(getattr(pymysql.connections.Connection, name, None)), f"PyMySQL Connection.{name} is gone"
    assert set(_deadline_classes()) == {"psycopg", "pymysql"}


def proxied(db: ShopDb, proxy: FreezingProxy) -> str:
    """``db``'s URL through ``proxy``."""
    return make_url(db.url).set(port=proxy.port).render_as_string(hide_password=False)


@pytest.fixture(params=KINDS)
def ledger_behind_proxy(request: pytest.FixtureRequest) -> Iterator[tuple[ShopDb, FreezingProxy]]:
    with shop_database(request.param, "silence") as db, FreezingProxy(make_url(db.url).port) as proxy:
        yield db, proxy


def start(shop: Shop, *command: str) -> subprocess.Popen[bytes]:
    """``cartrescue COMMAND --json`` in its own process, its output to files (``out-N``, ``err-N``)."""
    shop.write()
    runs = len(list(shop.folder.glob("out-*")))
    now = ["--now", iso(NOW)] if command[0] == "run" else []
    return subprocess.Popen([sys.executable, "-m", "cartrescue.cli", *command, "--json", "--config",
                             str(shop.config_path), *now], cwd=REPO,
                            stdout=(shop.folder / f"out-{runs}").open("wb"),
                            stderr=(shop.folder / f"err-{runs}").open("wb"))


def output(shop: Shop, number: int) -> tuple[str, str]:
    return (shop.folder / f"out-{number}").read_text(), (shop.folder / f"err-{number}").read_text()


def sent_steps(server: LoopbackSMTP) -> Counter[tuple[str, str]]:
    """(cart, step) of each message the relay took."""
    return Counter((m.parsed()["X-Cartrescue-Cart"], m.parsed()["X-Cartrescue-Step"]) for m in server.messages)


@pytest.mark.smtp
@pytest.mark.slow
def test_a_ledger_that_stops_answering_mid_send_stops_the_run_and_a_rerun_sends_no_step_twice(
        ledger_behind_proxy: tuple[ShopDb, FreezingProxy]) -> None:
    db, proxy = ledger_behind_proxy
    with tempfile.TemporaryDirectory() as folder, \
            LoopbackSMTP(faults=[Fault(r".", "late", stage="DATA", delay=0.05)]) as server:
        shop = Shop(Path(folder))
        shop.add(*(cart(f"c{n:03d}", idle=timedelta(hours=2, minutes=n)) for n in range(120)))
        shop.configure(smtp=server.smtp_config(pool_size=2),
                       ledger={"url": proxied(db, proxy), "statement_wait": f"{WAIT}s"})
        process = start(shop, "run", "--send")
        deadline = time.monotonic() + 60
        while len(server.messages) < 6 and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.005)
        assert process.poll() is None, output(shop, 0)
        proxy.freeze()
        frozen = time.monotonic()
        try:
            code = process.wait(BOUND)
        except subprocess.TimeoutExpired:
            process.kill()
            pytest.fail(f"the run still waits for the ledger {BOUND} s after it stopped answering")
        took = time.monotonic() - frozen
        out, err = output(shop, 0)
        assert code == 2, err
        document = json.loads(out)  # exactly one document
        assert document["error"]["exit_code"] == 2
        lines = [line for line in err.splitlines() if line.strip()]
        assert len(lines) == 1, err
        safe = make_url(proxied(db, proxy)).render_as_string(hide_password=True)
        assert f"{safe} stopped answering for {WAIT} s (ledger.statement_wait)" in lines[0]
        assert took < WAIT + 5  # the stop path's writes did not each wait a deadline
        before = sent_steps(server)
        assert before and max(before.values()) == 1

        proxy.thaw()
        ledger = Ledger(db.url)
        try:
            rows = {(r["cart_key"], str(r["step"])): r["status"] for r in ledger.messages()}
        finally:
            ledger.close()
        assert set(before) <= set(rows)  # every message that went out was claimed first
        assert all(status in ("claimed", "sent") for status in rows.values()), rows

        shop.configure(ledger={"url": proxied(db, proxy)})
        after = start(shop, "run", "--send")
        assert after.wait(120) == 0, output(shop, 1)
        total = sent_steps(server)
        assert max(total.values()) == 1  # no step twice
        every = {(f"csv:c{n:03d}", "1") for n in range(120)}
        assert set(total) - set(before) == every - set(rows)  # the rest, and no claim of the stopped run again
        left = sum(status == "claimed" for status in rows.values())
        assert json.loads(output(shop, 1)[0])["killed_left"] == left  # said once: claims without outcome


def doctor_on_a_silent_ledger(db: ShopDb, proxy: FreezingProxy, statement_wait: str, *args: str) -> dict[str, Any]:
    """The ledger check of ``doctor ARGS`` on a ledger (``ledger.statement_wait``) whose first
    look at its tables goes unanswered, which must end within :data:`BOUND` with exit 2."""
    with tempfile.TemporaryDirectory() as folder:
        shop = Shop(Path(folder))
        shop.add(cart("c1"))
        shop.configure(ledger={"url": proxied(db, proxy), "statement_wait": statement_wait})
        Ledger(db.url).close()  # the tables are there
        proxy.freeze_on(b"cr_run")  # connected, its first look at the ledger's tables goes unanswered
        process = start(shop, "doctor", *args)
        try:
            code = process.wait(BOUND)
        except subprocess.TimeoutExpired:
            process.kill()
            pytest.fail(f"doctor still waits for a ledger that stopped answering {BOUND} s ago")
        out, err = output(shop, 0)
    assert code == 2, err
    ledger: dict[str, Any] = {check["name"]: check for check in json.loads(out)["checks"]}["ledger"]
    assert (ledger["status"], ledger["exit_code"]) == ("fail", 2), ledger
    return ledger


@pytest.mark.slow
def test_doctor_against_a_ledger_that_stopped_answering_ends(
        ledger_behind_proxy: tuple[ShopDb, FreezingProxy]) -> None:
    db, proxy = ledger_behind_proxy
    ledger = doctor_on_a_silent_ledger(db, proxy, f"{WAIT}s")
    safe = make_url(proxied(db, proxy)).render_as_string(hide_password=True)
    assert ledger["detail"].endswith(f"ledger.url {safe} stopped answering for {WAIT} s (ledger.statement_wait)")


@pytest.mark.slow
def test_doctors_timeout_bounds_the_ledger_check_below_the_statement_wait(
        ledger_behind_proxy: tuple[ShopDb, FreezingProxy]) -> None:
    """``ledger.statement_wait: 10m`` (a run's to afford) held an agency's loop of ``doctor``."""
    db, proxy = ledger_behind_proxy
    ledger = doctor_on_a_silent_ledger(db, proxy, "10m", "--timeout", f"{WAIT}s")
    safe = make_url(proxied(db, proxy)).render_as_string(hide_password=True)
    assert ledger["detail"].endswith(f"ledger.url {safe} stopped answering for {WAIT} s (doctor --timeout; "
                                     "ledger.statement_wait allows 600 s)"), ledger


@pytest.mark.slow
@pytest.mark.parametrize("kind", KINDS)
def test_once_a_statement_went_unanswered_the_ledgers_other_writes_fail_at_once(kind: str) -> None:
    """The stop path (outcomes, ``finish_run``, the lock's release, the heartbeat) must not wait
    another deadline per write, nor ``CONNECT_WAIT`` per new connection through the same proxy."""
    from datetime import datetime, timezone

    from sqlalchemy.exc import DBAPIError

    with shop_database(kind, "failfast") as db, FreezingProxy(make_url(db.url).port) as proxy:
        ledger = Ledger(proxied(db, proxy), where="ledger.url", statement_wait=WAIT)
        try:
            run_id = ledger.start_run("send", NOW, "")
            with ledger.engine.connect(), ledger.engine.connect():  # two pooled connections, pinged on their next use
                pass
            proxy.freeze()
            started = time.monotonic()
            with pytest.raises(DBAPIError, match="stopped answering"):
                ledger.heartbeat(run_id)
            assert WAIT <= time.monotonic() - started < WAIT + 5
            for write in (lambda: ledger.record([(1, "sent", "250 ok", "<m@example.com>")]),
                          lambda: ledger.finish_run(run_id, "failed", {}),
                          lambda: ledger.heartbeat(run_id),
                          lambda: ledger.start_run("send", datetime.now(timezone.utc), "")):
                started = time.monotonic()
                with pytest.raises(DBAPIError, match="stopped answering"):
                    write()
                assert time.monotonic() - started < 1
            assert ledger._release(run_id, "run") is not None
        finally:
            started = time.monotonic()
            ledger.close()
            assert time.monotonic() - started < 1


@pytest.mark.postgres
def test_report_waits_ten_times_the_statement_wait_and_every_other_command_the_wait_itself() -> None:
    """``report`` groups and sorts a whole period's rows: its statements get longer."""
    from cartrescue.config import load_config

    with tempfile.TemporaryDirectory() as folder, shop_database("postgres", "waits") as db:
        shop = Shop(Path(folder))
        shop.configure(ledger={"url": db.url, "statement_wait": "45s"})
        Ledger(db.url).close()
        config = load_config(shop.write())
        for ledger, seconds in ((config.open_ledger(), 45), (config.open_ledger(create=False), 45),
                                (config.open_ledger(create=False, reads_a_period=True), 450)):
            try:
                assert ledger.silence is not None and ledger.silence.seconds == seconds
            finally:
                ledger.close()


def test_a_statement_wait_under_a_second_is_refused(tmp_path: Path) -> None:
    from cartrescue.config import load_config
    from cartrescue.errors import ConfigError

    shop = Shop(tmp_path)
    shop.configure(ledger={"statement_wait": "0s"})
    with pytest.raises(ConfigError, match="ledger.statement_wait: must be at least 1s"):
        load_config(shop.write())


@pytest.mark.slow
@pytest.mark.parametrize("kind", KINDS)
def test_a_ledger_that_answers_again_is_used_again_once_the_wait_has_passed(kind: str) -> None:
    """A process that lives on (the unsubscribe and survey server, ``cartrescue.webhook``) keeps
    its ledger: the ledger's writes fail at once for one ``statement_wait`` after it went silent,
    then a statement tries again, and works once the server answers."""
    with shop_database(kind, "again") as db, FreezingProxy(make_url(db.url).port) as proxy:
        ledger = Ledger(proxied(db, proxy), where="ledger.url", statement_wait=WAIT)
        try:
            run_id = ledger.start_run("send", NOW, "")
            proxy.freeze()
            with pytest.raises(Exception, match="stopped answering"):
                ledger.heartbeat(run_id)
            proxy.thaw()
            time.sleep(WAIT)
            started = time.monotonic()
            ledger.finish_run(run_id, "ok", {})
            assert time.monotonic() - started < WAIT
        finally:
            ledger.close()
