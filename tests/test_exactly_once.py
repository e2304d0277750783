"""The ledger's promises measured from the outside, on SQLite and on PostgreSQL.

A real `run --send` process delivers to a real SMTP server on loopback that records every
message it accepts. The process is killed (SIGKILL) at random moments, paused (SIGSTOP) past
``ledger.lock_timeout`` while another run takes over, and resumed. What must hold:

- no address ever gets a step twice;
- a kill leaves at most the messages truly in flight claimed without delivery (claims are made
  as the pooled connections take messages, so at most ``smtp.pool_size``);
- a run that lost its lock delivers nothing more after it wakes, and exits 6;
- ``--resend-unconfirmed`` never releases the claims of a run that is only paused;
- a step refused permanently (552) still counts: the next step waits for another shop-day.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from shopdb import shop_database
from smtpserver import Fault, LoopbackSMTP

from cartrescue.ledger import Ledger
from conftest import NOW, REPO, Shop, cart, iso

pytestmark = [pytest.mark.smtp, pytest.mark.slow]

POOL = 4


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def ledger_url(request: pytest.FixtureRequest, shop: Shop) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{shop.folder / 'ledger.db'}"
        return
    with shop_database("postgres", "ledger") as db:
        yield db.url


class _Run:
    """A real `run --send` process; its stdout (the JSON report) goes to its own file."""

    def __init__(self, shop: Shop, *extra: str, now: Any = NOW) -> None:
        shop.write()
        number = len(list(shop.folder.glob("run-*.out")))
        self.out = shop.folder / f"run-{number}.out"
        command = [sys.executable, "-m", "cartrescue.cli", "run", "--send", "--json", "--config",
                   str(shop.config_path), "--now", iso(now), *extra]
        self.process = subprocess.Popen(command, cwd=REPO, stdout=self.out.open("wb"),
                                        stderr=(shop.folder / f"run-{number}.err").open("wb"))
        self.pid = self.process.pid

    def poll(self) -> int | None:
        return self.process.poll()

    def finish(self, timeout: float = 120) -> tuple[int, dict[str, Any]]:
        self.process.wait(timeout)
        text = self.out.read_text()
        return self.process.returncode, json.loads(text) if text.strip() else {}


def _rows(url: str) -> list[dict[str, Any]]:
    ledger = Ledger(url)
    try:
        return ledger.messages()
    finally:
        ledger.close()


def _received_ids(server: LoopbackSMTP) -> set[str]:
    with server.lock:
        return {message.parsed()["Message-ID"] for message in server.messages}


def _pause_outside_a_transaction(run: _Run, url: str) -> None:
    """SIGSTOP ``run`` at a moment it holds no database lock.

    A process stopped inside a write transaction blocks every other writer of a SQLite ledger
    (and the rows it locked on PostgreSQL) until it is resumed: the other run then reports the
    ledger busy and exits 4 -- a different scenario from the one these tests are about.
    """
    import sqlalchemy as sa

    for _attempt in range(200):
        os.kill(run.pid, signal.SIGSTOP)
        time.sleep(0.05)
        if url.startswith("sqlite"):
            import sqlite3

            probe = sqlite3.connect(url.removeprefix("sqlite:///"), timeout=0.1)
            try:
                probe.execute("BEGIN IMMEDIATE")
                probe.rollback()
                return
            except sqlite3.OperationalError:
                pass
            finally:
                probe.close()
        else:
            engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
            with engine.connect() as connection:
                busy = connection.execute(sa.text(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                    "AND pid <> pg_backend_pid() AND state <> 'idle'")).scalar()
            engine.dispose()
            if not busy:
                return
        os.kill(run.pid, signal.SIGCONT)
        time.sleep(0.01)
    raise AssertionError("could not pause the run outside a transaction")


def _wait_for(server: LoopbackSMTP, count: int, process: _Run, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while len(server.messages) < count and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.002)


def _configure(shop: Shop, server: LoopbackSMTP, url: str, carts: int, **smtp: Any) -> list[str]:
    shop.configure(ledger={"url": url, "lock_timeout": "5s"},
                   smtp=server.smtp_config(pool_size=POOL, **smtp))
    shop.add(*(cart(f"x{n:04d}") for n in range(carts)))
    return [f"x{n:04d}@example.com" for n in range(carts)]


def test_sigkill_at_random_moments_never_sends_twice_and_strands_at_most_the_pool(shop: Shop, ledger_url: str) -> None:
    rng = random.Random(9)
    with LoopbackSMTP() as server:
        addresses = _configure(shop, server, ledger_url, 500, rate_per_second=400)
        stranded_total: set[int] = set()
        for _round in range(10):
            process = _Run(shop)
            _wait_for(server, len(server.messages) + rng.randint(3, 30), process)
            assert process.poll() is None, "the run ended before it could be killed"
            time.sleep(rng.random() * 0.02)  # a random moment, not just after an acceptance
            os.kill(process.pid, signal.SIGKILL)
            process.process.wait(10)
            time.sleep(0.3)  # whatever was in flight lands now or never
            received = _received_ids(server)
            rows = _rows(ledger_url)
            stranded = {row["id"] for row in rows if row["status"] == "claimed" and row["message_id"] not in received}
            assert len(stranded - stranded_total) <= POOL  # only what was in flight at the kill
            stranded_total |= stranded
            assert set(server.recipients().values()) == {1}
        code, report = _Run(shop).finish()
        assert code == 0, report
        assert set(server.recipients().values()) == {1}  # never twice, whatever the kills hit
        lost = {row["email"] for row in _rows(ledger_url) if row["id"] in stranded_total}
        assert set(server.recipients()) | lost == set(addresses)  # the rest got exactly one


def test_a_paused_lock_holder_is_taken_over_and_stops_when_it_wakes(shop: Shop, ledger_url: str) -> None:
    with LoopbackSMTP() as server:
        addresses = _configure(shop, server, ledger_url, 200, rate_per_second=60)
        holder = _Run(shop)
        _wait_for(server, 15, holder)
        _pause_outside_a_transaction(holder, ledger_url)
        try:
            time.sleep(6)  # past ledger.lock_timeout (5s): the holder's heartbeat went stale
            code, report = _Run(shop).finish()
            assert code == 0, report
        finally:
            os.kill(holder.pid, signal.SIGCONT)
        holder_code, holder_report = holder.finish()
        assert holder_code == 6, holder_report
        assert holder_report["error"]["code"] == "lock_lost"
        time.sleep(0.3)
        assert set(server.recipients().values()) == {1}
        rows = _rows(ledger_url)
        not_sent = [(row["email"], row["status"], row["reply"], row["run_id"]) for row in rows if row["status"] != "sent"]
        assert [row["status"] for row in rows].count("sent") == len(server.messages), (not_sent, holder_report.get("counts"))
        assert set(server.recipients()) | {r["email"] for r in _rows(ledger_url) if r["status"] == "claimed"} \
            == set(addresses)


def test_resend_unconfirmed_leaves_a_paused_runs_claims_alone(shop: Shop, ledger_url: str) -> None:
    with LoopbackSMTP() as server:
        _configure(shop, server, ledger_url, 120, rate_per_second=40)
        holder = _Run(shop)
        _wait_for(server, 10, holder)
        _pause_outside_a_transaction(holder, ledger_url)
        try:
            time.sleep(6)
            code, report = _Run(shop, "--resend-unconfirmed").finish()
            assert code == 0, report
            assert report["released"] == 0  # the paused run's claims are not a dead run's
        finally:
            os.kill(holder.pid, signal.SIGCONT)
        assert holder.finish()[0] == 6
        time.sleep(0.3)
        assert set(server.recipients().values()) == {1}


def test_a_permanent_refusal_of_step_1_keeps_step_2_off_that_shop_day(shop: Shop, tmp_path: Path) -> None:
    url = f"sqlite:///{shop.folder / 'ledger.db'}"
    refused = Fault("refused@example.com", "552 5.3.4 message refused by policy", stage="DATA")
    with LoopbackSMTP(faults=[refused]) as server:
        shop.configure(ledger={"url": url}, smtp=server.smtp_config(),
                       sequences={"default": {"steps": [{"delay": "1h", "template": "reminder-1"},
                                                        {"delay": "3h", "template": "reminder-2"}]}})
        shop.add(cart("c1", email="refused@example.com", idle=timedelta(minutes=90)))
        first = _Run(shop, now=NOW).finish()[1]
        assert [row["delivery"] for row in first["decisions"]] == ["failed_permanent"]
        for hours in (2, 4, 8):  # step 2 is due by its delay, but not on the same shop-day
            later = _Run(shop, now=NOW + timedelta(hours=hours)).finish()[1]
            assert [(row["action"], row["reason"]) for row in later["decisions"]] == [("defer", "messaged_today")]
        refused.times = 0  # the next day the relay takes it
        next_day = _Run(shop, now=NOW + timedelta(hours=24)).finish()[1]
        assert [(row["step"], row["delivery"]) for row in next_day["decisions"]] == [(2, "sent")]
