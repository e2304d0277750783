"""Workers on one ledger, measured from the outside: 2,000 carts, a real SMTP server on loopback.

Four shard processes on one PostgreSQL ledger (``run --shard K/4``, as four hosts would run
them) and ``run --workers 2`` on one SQLite file, started together. What must hold:

- every due step is delivered exactly once, and no address gets two messages in a day (the
  addresses with two carts get one, for the newer cart);
- the vip tier's budget is kept across the shards, and the summary adds up;
- a worker killed with SIGKILL mid-run strands at most what it had in flight, and a re-run
  sends no step twice.
"""

from __future__ import annotations

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
from typing import Any

import pytest
from shopdb import shop_database
from smtpserver import Fault, LoopbackSMTP

from conftest import NOW, REPO, Shop, cart, iso, worker_pids
from test_exactly_once import _rows

pytestmark = [pytest.mark.smtp, pytest.mark.slow]

POOL = 4
SINGLES = 1800
PAIRS = 100
VIP_BUDGET = 60
LAYOUTS = [pytest.param(("sqlite", "workers", 2), id="sqlite-workers-2"),
           pytest.param(("postgres", "shards", 4), id="postgres-shards-4", marks=pytest.mark.postgres)]


@pytest.fixture
def layout(request: pytest.FixtureRequest, shop: Shop) -> Iterator[tuple[str, str, int]]:
    kind, launcher, count = request.param
    if kind == "sqlite":
        yield f"sqlite:///{shop.folder / 'ledger.db'}", launcher, count
        return
    with shop_database("postgres", "ledger") as db:
        yield db.url, launcher, count


def _shop(shop: Shop, server: LoopbackSMTP, url: str, singles: int = SINGLES, **smtp: Any) -> set[str]:
    """2,000 carts: 1,800 addresses (``singles``) with one (every tenth worth 250: tier vip) and 100
    with two."""
    shop.configure(ledger={"url": url, "lock_timeout": "30s"}, smtp=server.smtp_config(pool_size=POOL, **smtp),
                   priority={"tiers": [{"name": "vip", "min_score": 40, "budget": VIP_BUDGET},
                                       {"name": "standard", "min_score": 0}]})
    for n in range(singles):
        price = "250.00" if n % 10 == 0 else "25.00"
        shop.add(cart(f"c{n:04d}", email=f"a{n:04d}@example.com", items=[("SKU-1", "Mug", 1, price)]))
    for n in range(PAIRS):
        shop.add(cart(f"old{n:03d}", email=f"two{n:03d}@example.com", idle=timedelta(hours=5)),
                 cart(f"new{n:03d}", email=f"two{n:03d}@example.com", idle=timedelta(hours=2)))
    shop.write()
    return {f"a{n:04d}@example.com" for n in range(singles) if n % 10} | {f"two{n:03d}@example.com" for n in range(PAIRS)}


class _Launch:
    """``run --workers N`` (one parent) or N ``run --shard K/N`` processes, started together."""

    def __init__(self, shop: Shop, launcher: str, count: int) -> None:
        base = [sys.executable, "-m", "cartrescue.cli", "run", "--send", "--json", "--config", str(shop.config_path),
                "--now", iso(NOW)]
        number = len(list(shop.folder.glob("launch-*")))
        folder = shop.folder / f"launch-{number}"
        folder.mkdir()
        commands = [base + ["--workers", str(count)]] if launcher == "workers" else \
            [base + ["--shard", f"{k}/{count}"] for k in range(1, count + 1)]
        self.outs = [folder / f"{n}.out" for n in range(len(commands))]
        self.processes = [subprocess.Popen(command, cwd=REPO, stdout=out.open("wb"),
                                           stderr=(folder / f"{n}.err").open("wb"))
                          for n, (command, out) in enumerate(zip(commands, self.outs))]
        self.launcher = launcher

    def workers(self) -> list[int]:
        """The pids of the processes that deliver (the parent's children, or the shard processes)."""
        if self.launcher == "shards":
            return [p.pid for p in self.processes]
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            pids = worker_pids(self.processes[0].pid)
            if len(pids) >= 2:
                return pids
            time.sleep(0.01)
        raise AssertionError("the workers did not start")

    def finish(self) -> list[tuple[int, dict[str, Any]]]:
        results = []
        for process, out in zip(self.processes, self.outs):
            process.wait(180)
            killed = process.returncode < 0  # a shard process killed outright: its document is cut off
            results.append((128 - process.returncode if killed else process.returncode,
                            {} if killed else json.loads(out.read_text())))
        return results


def _counts(results: list[tuple[int, dict[str, Any]]]) -> dict[str, int]:
    total: dict[str, int] = {}
    for _code, document in results:
        for key in ("carts", "send", "skip", "defer", "sent", "failed"):
            total[key] = total.get(key, 0) + document["counts"][key]
    return total


@pytest.mark.parametrize("layout", LAYOUTS, indirect=True)
def test_workers_started_together_deliver_every_due_step_exactly_once(shop: Shop, layout: tuple[str, str, int]) -> None:
    url, launcher, count = layout
    with LoopbackSMTP() as server:
        due = _shop(shop, server, url)
        results = _Launch(shop, launcher, count).finish()
        assert [code for code, _doc in results] == [0] * len(results), results[0][1].get("error")
        time.sleep(0.2)
        received = server.recipients()
        vip = {f"a{n:04d}@example.com" for n in range(0, SINGLES, 10)}
        assert set(received.values()) == {1}  # no address twice (also not the ones with two carts)
        assert set(received) - vip == due  # every due standard step, once
        assert len(set(received) & vip) == VIP_BUDGET  # the budget, shared, exactly
        rows = _rows(url)
        assert sum(row["status"] == "sent" for row in rows) == len(server.messages) == len(due) + VIP_BUDGET
        assert {row["cart_id"] for row in rows if row["email"].startswith("two")} == {f"new{n:03d}" for n in range(PAIRS)}
        counts = _counts(results)  # the summary adds up: every cart decided once, every send delivered
        assert counts["carts"] == SINGLES + 2 * PAIRS
        assert counts["send"] == counts["sent"] == len(server.messages) and counts["failed"] == 0
        if launcher == "workers":
            document = results[0][1]
            assert len(document["decisions"]) == document["counts"]["carts"] == SINGLES + 2 * PAIRS
            assert sum(s["counts"]["sent"] for s in document["shards"]) == document["counts"]["sent"]
        again = _Launch(shop, launcher, count).finish()  # the same moment again: the budget's rest only
        time.sleep(0.2)
        assert set(server.recipients().values()) == {1}
        assert _counts(again)["sent"] == min(VIP_BUDGET, len(vip) - VIP_BUDGET)


@pytest.mark.parametrize("layout", LAYOUTS, indirect=True)
def test_a_worker_killed_mid_run_strands_only_its_flight_and_a_rerun_sends_no_step_twice(
        shop: Shop, layout: tuple[str, str, int]) -> None:
    url, launcher, count = layout
    with LoopbackSMTP() as server:
        due = _shop(shop, server, url, rate_per_second=600)
        launch = _Launch(shop, launcher, count)
        victim = launch.workers()[-1]
        deadline = time.monotonic() + 60
        while len(server.messages) < 300 and time.monotonic() < deadline:
            time.sleep(0.005)
        os.kill(victim, signal.SIGKILL)
        results = launch.finish()
        if launcher == "workers":
            code, document = results[0]
            assert code == 128 + signal.SIGKILL and document["error"]["code"] == "worker_killed"
            assert [s["exit_code"] for s in document["shards"]].count(137) == 1
        else:
            assert sorted(code for code, _doc in results) == [0] * (count - 1) + [137]
        time.sleep(0.3)  # whatever was in flight lands now or never
        received = {message.parsed()["Message-ID"] for message in server.messages}
        stranded = [row for row in _rows(url) if row["status"] == "claimed" and row["message_id"] not in received]
        assert len(stranded) <= POOL  # only the killed worker's messages in flight
        assert set(server.recipients().values()) == {1}
        rerun = _Launch(shop, launcher, count).finish()
        assert all(code == 0 for code, _doc in rerun), rerun[0][1].get("error")
        time.sleep(0.2)
        recipients = server.recipients()
        assert set(recipients.values()) == {1}  # never twice, whatever the kill hit
        assert due <= set(recipients) | {row["email"] for row in stranded}


def _alive(pid: int) -> bool:
    """Whether process ``pid`` still runs (a zombie, dead but not yet reaped by its new parent, does not)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


@pytest.mark.parametrize("delay", [0.2, 3.0], ids=["slow-relay", "stalling-relay"])
def test_workers_of_a_killed_parent_end_within_a_second_and_a_rerun_sends_no_step_twice(
        shop: Shop, delay: float) -> None:
    """SIGKILL to ``run --workers 2`` mid-send: its workers (SIGTERM by PR_SET_PDEATHSIG) are gone
    within a second, not after the stop's grace; a cron re-run right after finds their locks free
    (exit 0, not 4) and sends nothing twice; every message the relay took has its ledger row."""
    url = f"sqlite:///{shop.folder / 'ledger.db'}"
    with LoopbackSMTP(faults=[Fault("@", "late", delay=delay)]) as server:  # each reply comes late
        _shop(shop, server, url, singles=300)
        launch = _Launch(shop, "workers", 2)
        workers = launch.workers()
        deadline = time.monotonic() + 60
        while len(server.messages) < 3 * POOL and time.monotonic() < deadline:
            time.sleep(0.005)
        parent = launch.processes[0]
        parent.kill()
        killed = time.monotonic()
        while any(_alive(pid) for pid in workers) and time.monotonic() < killed + 30:
            time.sleep(0.01)
        lasted = time.monotonic() - killed
        parent.wait(10)
        assert lasted < 4, f"the workers outlived their killed parent by {lasted:.1f} s"
        server.faults.clear()
        rerun = _Launch(shop, "workers", 2).finish()
        assert [code for code, _doc in rerun] == [0], rerun[0][1].get("error")
        time.sleep(0.3)  # whatever was in flight lands now or never
        rows = {row["message_id"]: row for row in _rows(url)}
        with server.lock:
            received = [message.parsed()["Message-ID"] for message in server.messages]
        assert all(message_id in rows for message_id in received)  # each message the relay got is on record
        steps = Counter((rows[m]["cart_id"], rows[m]["step"]) for m in received)
        assert set(steps.values()) == {1}  # no step twice, whatever the kill hit
        assert all(rows[m]["status"] in ("sent", "claimed", "unconfirmed") for m in received)
