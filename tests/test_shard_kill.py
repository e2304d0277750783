"""Shards killed outright (SIGKILL, the out-of-memory killer), then a new run, on every ledger.

What a dead shard leaves must not stand in the way of the runs after it, whatever their layout:

- its lock, also while its process is a zombie that PID 1 has not reaped yet (a second and more
  here; for good in a container whose PID 1 reaps nothing): ``run --workers 3`` right after a
  killed ``run --workers 2`` exited 4 until ``ledger.lock_timeout``;
- its reservation of a day's budget, which held back the shards still running until it ran again;
- and the next run's ``killed_left`` counts only the claims the killed run left without outcome,
  not the messages it had recorded ``unconfirmed``.

A live run of any layout still excludes a conflicting one (``tests/test_workers.py``).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from shopdb import ledger_on, shop_database
from smtpserver import Fault, LoopbackSMTP

from cartrescue.ledger import Ledger
from conftest import NOW, REPO, Shop, cart, iso, worker_pids
from test_exactly_once import _rows
from test_workers_exactly_once import POOL, _shop

pytestmark = [pytest.mark.slow]

KINDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres),
         pytest.param("mariadb", marks=pytest.mark.mariadb)]

#: Started by a process that does not reap its orphans (PR_SET_CHILD_SUBREAPER, then no wait):
#: as PID 1 of a container that runs a shell script, or the moment before PID 1 gets to them.
_NO_REAPER = """
import ctypes, subprocess, sys
ctypes.CDLL(None).prctl(36, 1, 0, 0, 0)
with open(sys.argv[1], "wb") as out, open(sys.argv[2], "wb") as err:
    child = subprocess.Popen(sys.argv[3:], stdout=out, stderr=err)
print(child.pid, flush=True)
sys.stdin.read()
"""

#: A shard's process: takes its lock, reserves the day's budget, says so and waits to be killed.
_SHARD = """
import sys, time
from datetime import datetime, timedelta
from cartrescue.ledger import Ledger
url, shard, now = sys.argv[1], sys.argv[2], datetime.fromisoformat(sys.argv[3])
ledger = Ledger(url)
run_id = ledger.start_run("send", now, shard)
with ledger.lock(run_id, timedelta(minutes=30), f"run:{shard}"):
    amount, _use = ledger.reserve_day_budget(run_id, "vip", [(1, "email")], now.replace(hour=0), now, 3, 3,
                                             lambda email, key, phone: True)
    print(amount, flush=True)
    time.sleep(600)
"""


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except (OSError, IndexError):
        return False


@contextlib.contextmanager
def _url(shop: Shop, kind: str) -> Iterator[str]:
    if kind == "sqlite":
        yield f"sqlite:///{shop.folder / 'ledger.db'}"
    else:
        with shop_database(kind, "shardkill") as db:
            yield db.url


def _killed_shard(url: str, shard: str) -> tuple[subprocess.Popen[str], int]:
    """A process holding shard ``shard``'s lock and a reservation of the day's budget, SIGKILLed
    and not reaped (a zombie until the caller waits for it); and what it had reserved."""
    process = subprocess.Popen([sys.executable, "-c", _SHARD, url, shard, NOW.isoformat()], cwd=REPO,
                               stdout=subprocess.PIPE, text=True)
    assert process.stdout is not None
    reserved = int(process.stdout.readline())
    os.kill(process.pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while not _zombie(process.pid) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert _zombie(process.pid)
    return process, reserved


@pytest.mark.parametrize("kind", KINDS)
def test_a_new_layout_takes_over_the_locks_of_killed_shards_their_parent_has_not_reaped(shop: Shop, kind: str) -> None:
    with _url(shop, kind) as url:
        killed = [_killed_shard(url, f"{k}/2") for k in (1, 2)]
        ledger = Ledger(url)
        try:
            with contextlib.ExitStack() as held:
                for shard in ("1/3", "2/3", "3/3"):  # each beside the others, none refused
                    run_id = ledger.start_run("send", NOW, shard)
                    held.enter_context(ledger.lock(run_id, timedelta(minutes=30), f"run:{shard}"))
        finally:
            ledger.close()
            for process, _reserved in killed:
                process.wait()


@pytest.mark.parametrize("kind", KINDS)
def test_a_killed_shards_unspent_reservation_goes_back_to_the_day_for_the_shards_still_running(
        shop: Shop, kind: str) -> None:
    with _url(shop, kind) as url:
        process, reserved = _killed_shard(url, "1/2")
        process.wait()  # reaped: dead for good, and shard 1/2 does not run again today
        assert reserved == 3
        ledger = Ledger(url)
        try:
            run_id = ledger.start_run("send", NOW, "2/2")
            with ledger.lock(run_id, timedelta(minutes=30), "run:2/2"):
                amount, use = ledger.reserve_day_budget(run_id, "vip", [(1, "email")], NOW.replace(hour=0), NOW, 3, 3,
                                                        lambda email, key, phone: True)
            assert (amount, use.pending) == (3, 0)
        finally:
            ledger.close()


@pytest.mark.smtp
@pytest.mark.parametrize("kind", KINDS)
def test_run_with_more_workers_right_after_a_killed_run_with_workers_goes_ahead_and_sends_no_step_twice(
        shop: Shop, kind: str) -> None:
    """SIGKILL to ``run --workers 2`` and its workers mid-send, in a container whose PID 1 reaps
    nothing: their locks are a zombie's; ``run --workers 3`` from cron right after goes ahead."""
    with ledger_on(shop, kind) as url, LoopbackSMTP(faults=[Fault("@", "late", delay=0.2)]) as server:
        due = _shop(shop, server, url, singles=60)
        command = [sys.executable, "-m", "cartrescue.cli", "run", "--send", "--json", "--config",
                   str(shop.config_path), "--now", iso(NOW)]
        reaper = subprocess.Popen([sys.executable, "-c", _NO_REAPER, str(shop.folder / "killed.out"),
                                   str(shop.folder / "killed.err"), *command, "--workers", "2"], cwd=REPO,
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        try:
            assert reaper.stdout is not None
            parent = int(reaper.stdout.readline())
            deadline = time.monotonic() + 60
            workers: list[int] = []
            while (len(workers) < 2 or len(server.messages) < 2 * POOL) and time.monotonic() < deadline:
                workers = workers if len(workers) == 2 else worker_pids(parent)
                time.sleep(0.005)
            for pid in (parent, *workers):
                os.kill(pid, signal.SIGKILL)
            while not all(_zombie(pid) for pid in workers) and time.monotonic() < deadline:
                time.sleep(0.01)
            assert all(_zombie(pid) for pid in workers)
            server.faults.clear()
            rerun = subprocess.run([*command, "--workers", "3"], cwd=REPO, capture_output=True, text=True, timeout=120)
            document = json.loads(rerun.stdout)
            assert rerun.returncode == 0, document.get("error")
        finally:
            reaper.communicate("", timeout=30)
        time.sleep(0.3)  # whatever was in flight lands now or never
        rows = {row["message_id"]: row for row in _rows(url)}
        with server.lock:
            received = [message.parsed()["Message-ID"] for message in server.messages]
        steps = Counter((rows[m]["cart_id"], rows[m]["step"]) for m in received)
        assert set(steps.values()) == {1}  # no step twice
        left = {row["email"] for row in rows.values() if row["status"] == "claimed"}
        assert due <= set(server.recipients()) | left  # every due step went out, or is the killed run's in flight
        assert document["killed_left"] == len(left) <= 2 * POOL


@pytest.mark.smtp
@pytest.mark.parametrize("kind", KINDS)
def test_killed_left_counts_the_claims_a_killed_run_left_without_outcome_not_its_unconfirmed_messages(
        shop: Shop, kind: str) -> None:
    """docs/sending.md: the run that closes a killed run says how many claims it left without
    outcome (``killed_left``). The killed run's message that the relay took whole and never
    answered has its outcome, ``unconfirmed``: it was counted as one left without outcome."""
    with ledger_on(shop, kind) as url, LoopbackSMTP(faults=[Fault("^k00@", "drop-after-data"),
                                                           Fault("@", "late", delay=5.0)]) as server:
        shop.configure(ledger={"url": url}, smtp=server.smtp_config(pool_size=2))
        shop.add(*(cart(f"k{n:02d}", email=f"k{n:02d}@example.com") for n in range(12)))
        shop.write()
        command = [sys.executable, "-m", "cartrescue.cli", "run", "--send", "--json", "--config",
                   str(shop.config_path), "--now", iso(NOW)]
        killed = subprocess.Popen(command, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not (
                len(server.messages) >= 2 and any(row["status"] == "unconfirmed" for row in _rows(url))):
            time.sleep(0.05)
        killed.kill()
        killed.wait(10)
        statuses = Counter(row["status"] for row in _rows(url))
        assert statuses["unconfirmed"] == 1 and statuses["claimed"] >= 1
        server.faults.clear()
        rerun = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=120)
        assert rerun.returncode == 0, rerun.stderr
        document = json.loads(rerun.stdout)
        assert document["killed_left"] == statuses["claimed"]
        assert document["unconfirmed"] == statuses["claimed"] + 1  # both have no outcome the run can confirm
