"""The ledger failing under a run that sends: its connection ended by the server, new
connections refused, its disk full.

A run stops there (exit 2, one ``--json`` document): what it could not record keeps its claim
and is not resent. What cron mails is the error line alone (``--quiet``), so that line must name
the ledger (the config key and the URL) and say what became of the messages; a failure of the
run's last writes (its ``cr_run`` row) on the way out must not put its own words in its place.
Each test ends the connection for real (``pg_terminate_backend``, ``ALLOW_CONNECTIONS false``) or
fills a real small filesystem, and a run afterwards sends no step twice.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from smtpserver import Fault, LoopbackSMTP
from sqlalchemy.engine import make_url

from cartrescue.ledger import Ledger
from conftest import NOW, REPO, Shop, cart, iso
from shopdb import ShopDb, shop_database
from test_ledger_silence import output, sent_steps

pytestmark = [pytest.mark.smtp, pytest.mark.slow]
CARTS = 120
BOUND = 60  # seconds a run may take to end once its ledger failed


def start(shop: Shop, *args: str) -> subprocess.Popen[bytes]:
    """``cartrescue run --send ARGS`` in its own process, its output to files (``out-N``, ``err-N``)."""
    shop.write()
    runs = len(list(shop.folder.glob("out-*")))
    command = ["run", "--send", *args, "--config", str(shop.config_path), "--now", iso(NOW)]
    return subprocess.Popen([sys.executable, "-m", "cartrescue.cli", *command], cwd=REPO,
                            stdout=(shop.folder / f"out-{runs}").open("wb"),
                            stderr=(shop.folder / f"err-{runs}").open("wb"))


def a_few_sent(server: LoopbackSMTP, process: subprocess.Popen[bytes], shop: Shop) -> None:
    """Wait until the relay took a few messages, the run still going."""
    deadline = time.monotonic() + 60
    while len(server.messages) < 6 and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    assert process.poll() is None, output(shop, 0)


def ended(process: subprocess.Popen[bytes]) -> int:
    try:
        return process.wait(BOUND)
    except subprocess.TimeoutExpired:
        process.kill()
        pytest.fail(f"the run still goes {BOUND} s after its ledger failed")


def the_error_line(shop: Shop, number: int) -> str:
    """The one line a failed ``run --json`` printed on stderr, its document checked whole."""
    out, err = output(shop, number)
    document = json.loads(out)  # exactly one document
    assert document["error"]["exit_code"] == 2, document["error"]
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert document["error"]["message"] in lines[0]
    return lines[0]


def rerun_sends_the_rest_once(shop: Shop, server: LoopbackSMTP, url: str) -> None:
    """Every message the relay took was claimed first; a run afterwards sends the steps nobody
    claimed, none twice, and says once how many claims the failed run left without outcome."""
    before = sent_steps(server)
    assert before and max(before.values()) == 1
    ledger = Ledger(url)
    try:
        rows = {(r["cart_key"], str(r["step"])): r["status"] for r in ledger.messages()}
    finally:
        ledger.close()
    assert set(before) <= set(rows)
    assert all(status in ("claimed", "sent") for status in rows.values()), rows
    after = start(shop, "--json")
    assert after.wait(120) == 0, output(shop, 1)
    total = sent_steps(server)
    assert max(total.values()) == 1
    every = {(f"csv:c{n:03d}", "1") for n in range(CARTS)}
    assert set(total) - set(before) == every - set(rows)
    assert json.loads(output(shop, 1)[0])["killed_left"] == sum(status == "claimed" for status in rows.values())


@contextmanager
def sending(url: str, *args: str) -> Iterator[tuple[Shop, LoopbackSMTP, subprocess.Popen[bytes]]]:
    """A run of :data:`CARTS` carts on the ledger ``url`` to a slow relay, once the relay took a few."""
    with tempfile.TemporaryDirectory() as folder, \
            LoopbackSMTP(faults=[Fault(r".", "late", stage="DATA", delay=0.05)]) as server:
        shop = Shop(Path(folder))
        shop.add(*(cart(f"c{n:03d}", idle=timedelta(hours=2, minutes=n)) for n in range(CARTS)))
        shop.configure(smtp=server.smtp_config(pool_size=2), ledger={"url": url})
        process = start(shop, *args)
        a_few_sent(server, process, shop)
        yield shop, server, process


def on_server(db: ShopDb, statement: str) -> None:
    """``statement`` from the server's maintenance database, as an administrator (or a failover) does."""
    server = sa.create_engine(make_url(db.url).set(database="postgres"), poolclass=sa.pool.NullPool,
                              isolation_level="AUTOCOMMIT")
    try:
        with server.connect() as conn:
            conn.exec_driver_sql(statement)
    finally:
        server.dispose()


def end_connections(db: ShopDb) -> None:
    """End every connection to ``db`` (PostgreSQL's ``pg_terminate_backend``, MariaDB's ``KILL``)."""
    if db.kind == "postgres":
        on_server(db, f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{db.name}'")
        return
    with db.admin.connect() as conn:
        ids = conn.execute(sa.text("SELECT id FROM information_schema.processlist WHERE db = :name AND id <> "
                                   "CONNECTION_ID()"), {"name": db.name}).scalars().all()
        for number in ids:
            conn.exec_driver_sql(f"KILL {int(number)}")


@contextmanager
def connection_ended(db: ShopDb, *args: str) -> Iterator[tuple[Shop, LoopbackSMTP]]:
    """A run on the ledger ``db`` whose connections the server ended mid-send, once it stopped (exit 2)."""
    with sending(db.url, *args) as (shop, server, process):
        end_connections(db)
        assert ended(process) == 2, output(shop, 0)
        yield shop, server


def allow_connections(db: ShopDb, allowed: bool) -> None:
    on_server(db, f'ALTER DATABASE "{db.name}" ALLOW_CONNECTIONS {str(allowed).lower()}')


def names_the_ledger_and_what_became_of_the_messages(line: str, url: str) -> None:
    safe = make_url(url).render_as_string(hide_password=True)
    assert f"ledger.url {safe}" in line, line
    assert "while this run delivered" in line, line
    assert "have no outcome and are not resent" in line, line


@pytest.fixture
def pg_ledger() -> Iterator[ShopDb]:
    with shop_database("postgres", "ledgeroutage") as db:
        yield db


@pytest.fixture(params=[pytest.param("postgres", marks=pytest.mark.postgres),
                        pytest.param("mariadb", marks=pytest.mark.mariadb)])
def server_ledger(request: pytest.FixtureRequest) -> Iterator[ShopDb]:
    with shop_database(request.param, "ledgeroutage") as db:
        yield db


def test_a_ledger_connection_the_server_ends_mid_send_stops_the_run_with_a_line_naming_the_ledger(
        server_ledger: ShopDb) -> None:
    with connection_ended(server_ledger, "--json") as (shop, server):
        line = the_error_line(shop, 0)
        names_the_ledger_and_what_became_of_the_messages(line, server_ledger.url)
        assert "its connection was lost" in line, line
        rerun_sends_the_rest_once(shop, server, server_ledger.url)


@pytest.mark.postgres
def test_a_ledger_that_refuses_connections_as_the_run_ends_keeps_the_line_of_why_it_stopped(
        pg_ledger: ShopDb) -> None:
    """Its connection ended and no new one taken: the run's last writes (its ``cr_run`` row) fail
    too, and their ``connection failed`` replaced the line that says what became of the messages."""
    with sending(pg_ledger.url, "--json") as (shop, server, process):
        allow_connections(pg_ledger, False)
        try:
            end_connections(pg_ledger)
            code = ended(process)
        finally:
            allow_connections(pg_ledger, True)
        assert code == 2, output(shop, 0)
        names_the_ledger_and_what_became_of_the_messages(the_error_line(shop, 0), pg_ledger.url)
        rerun_sends_the_rest_once(shop, server, pg_ledger.url)


@pytest.mark.postgres
def test_under_quiet_the_ledgers_line_says_how_many_messages_the_run_delivered_before_it_failed(
        pg_ledger: ShopDb) -> None:
    """``--quiet`` (cron) prints the error line alone: it counts what went out before the stop."""
    with connection_ended(pg_ledger, "--quiet") as (shop, _server):
        out, err = output(shop, 0)
    lines = [line for line in err.splitlines() if line.strip()]
    assert out == "" and len(lines) == 1, (out, err)
    ledger = Ledger(pg_ledger.url)
    try:
        recorded = sum(row["status"] == "sent" for row in ledger.messages())
    finally:
        ledger.close()
    said = lines[0].split("it stopped after ", 1)[-1].split(" delivered")[0]
    assert said.isdigit() and int(said) >= recorded > 0, (lines[0], recorded)


@pytest.fixture
def small_disk() -> Iterator[Path]:
    """A real filesystem of 16 MiB (tmpfs), unmounted afterwards; skipped where this process may not mount one."""
    if os.geteuid() != 0 or shutil.which("mount") is None or sys.platform != "linux":
        pytest.skip("mounting a small tmpfs needs root on Linux")
    folder = Path(tempfile.mkdtemp(prefix="cartrescue-full-"))
    made = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(folder)], capture_output=True)
    if made.returncode != 0:
        folder.rmdir()
        pytest.skip(f"cannot mount a tmpfs here: {made.stderr.decode(errors='replace').strip()}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", str(folder)], check=True)
        folder.rmdir()


def fill(folder: Path) -> Path:
    """Fill the filesystem of ``folder`` to its last byte with one file; return the file."""
    filler = folder / "filler"
    descriptor = os.open(filler, os.O_WRONLY | os.O_CREAT)
    try:
        for size in (1 << 16, 1):
            try:
                while True:
                    os.write(descriptor, b"\0" * size)
            except OSError:
                pass
    finally:
        os.close(descriptor)
    return filler


def test_a_sqlite_ledger_whose_disk_fills_mid_send_stops_the_run_with_a_line_naming_the_ledger(
        small_disk: Path) -> None:
    url = f"sqlite:///{small_disk / 'ledger.db'}"
    with sending(url, "--json") as (shop, server, process):
        filler = fill(small_disk)
        try:
            code = ended(process)
        finally:
            filler.unlink()
        assert code == 2, output(shop, 0)
        line = the_error_line(shop, 0)
        names_the_ledger_and_what_became_of_the_messages(line, url)
        assert "disk is full" in line, line
        rerun_sends_the_rest_once(shop, server, url)


@pytest.mark.postgres
def test_a_shard_whose_ledger_connection_ends_counts_its_own_deliveries_as_the_shards(pg_ledger: ShopDb) -> None:
    """A worker of ``run --workers`` (a shard) stops alone and its parent relays its line: "it
    stopped after 6 delivered" read as the whole run's while the run's document counted 179."""
    with connection_ended(pg_ledger, "--json", "--shard", "1/2") as (shop, _server):
        line = the_error_line(shop, 0)
    assert ": shard 1/2 stopped after " in line, line


def test_the_outcomes_a_run_had_in_hand_when_its_ledger_connection_ended_are_recorded_on_a_new_one(
        server_ledger: ShopDb) -> None:
    """A claim whose transaction also carried the outcomes gathered so far failed with the
    connection, and those outcomes were gone: messages the relay took and the run's document
    listed as sent stayed claimed without outcome in the ledger, for ``--resend-unconfirmed`` to
    send again. The server took a new connection at once; the run's last write records them."""
    with connection_ended(server_ledger, "--json") as (shop, _server):
        document = json.loads(output(shop, 0)[0])
    listed = {(d["cart_key"], d["step"]) for d in document["decisions"] if d.get("delivery") == "sent"}
    ledger = Ledger(server_ledger.url)
    try:
        recorded = {(r["cart_key"], r["step"]): r["status"] for r in ledger.messages()}
    finally:
        ledger.close()
    assert listed and {key: recorded.get(key) for key in listed} == dict.fromkeys(listed, "sent")

