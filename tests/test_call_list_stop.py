"""A run stopped (SIGTERM, Ctrl-C) while it appends to the call list: each row once, ever.

The rows of a batch go into the list in one write; a stop that came during it was raised after
the first row's outcome, and the other rows, already in the list, were recorded as not sent: the
next run wrote them again, and staff phoned those customers twice.
"""

from __future__ import annotations

import csv
import fcntl
import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter

import pytest

from conftest import NOW, REPO, Shop, cart, iso

pytestmark = pytest.mark.slow

PRICEY = [("S", "Lamp", 1, "900.00")]  # high value: the call tier
CALLS = 3


def test_a_run_stopped_while_it_writes_the_call_list_records_every_row_it_wrote(shop: Shop) -> None:
    shop.configure(priority={"tiers": [{"name": "vip", "min_score": 40, "channel": "call-list"},
                                       {"name": "standard", "min_score": 0}]}, call_list={"path": "calls.csv"})
    shop.add(*(cart(f"c{n}", phone=f"+4670123456{n}", items=PRICEY) for n in range(CALLS)))
    shop.write()
    calls = shop.folder / "calls.csv"
    with calls.open("a+b") as held:
        fcntl.flock(held.fileno(), fcntl.LOCK_EX)  # staff's spreadsheet, say: the run waits to append
        run = subprocess.Popen(
            [sys.executable, "-m", "cartrescue.cli", "run", "--outbox", str(shop.folder / "out"), "--json",
             "--config", str(shop.config_path), "--now", iso(NOW)],
            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and run.poll() is None:
            if (shop.folder / "ledger.db").exists() and \
                    sum(row["status"] == "claimed" for row in shop.messages()) == CALLS:
                break  # claimed, and waiting for the list's lock inside the append
            time.sleep(0.05)
        assert run.poll() is None, run.communicate()
        time.sleep(0.2)
        os.kill(run.pid, signal.SIGTERM)
        time.sleep(0.2)
    stdout, stderr = run.communicate(timeout=60)  # the lock is released: the rows go in
    assert run.returncode in (0, 130), stderr.decode()
    recorded = Counter(row["status"] for row in shop.messages())
    again = shop.cli("run", "--outbox", str(shop.folder / "out"), "--json")  # the next cron run
    assert again.exit_code == 0, again.output
    with calls.open(encoding="utf-8", newline="") as handle:
        assert Counter(row["cart_id"] for row in csv.DictReader(handle)) == {f"c{n}": 1 for n in range(CALLS)}
    assert recorded == {"sent": CALLS} and json.loads(stdout)["counts"]["sent"] == CALLS
