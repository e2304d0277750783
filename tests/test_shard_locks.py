"""The shards of one layout take their locks and reserve their day budgets side by side, on
every ledger: the transactions that do it are serialized, and none may fail for another's sake.

On MariaDB the serialization was a locking read (``SELECT ... FOR UPDATE``), whose gap locks do
not exclude each other: four workers starting together deadlocked on their inserts, and one of
them stopped with "ledger is busy" (exit 4) in about a third of the runs.
"""

from __future__ import annotations

import contextlib
import threading
from datetime import datetime, timedelta, timezone

import pytest
from shopdb import shop_database

from cartrescue.ledger import Ledger
from conftest import Shop

pytestmark = pytest.mark.slow  # a few dozen rounds of four threads

NOW = datetime(2026, 11, 20, 10, 0, tzinfo=timezone.utc)
MIDNIGHT = NOW.replace(hour=0)
WORKERS = 4
ROUNDS = 12


@pytest.mark.parametrize("kind", [
    "sqlite",
    pytest.param("postgres", marks=pytest.mark.postgres),
    pytest.param("mariadb", marks=pytest.mark.mariadb),
])
def test_shards_starting_together_all_take_their_locks_and_reserve_no_more_than_the_budget(
        shop: Shop, kind: str) -> None:
    with contextlib.ExitStack() as stack:
        url = f"sqlite:///{shop.folder / 'ledger.db'}" if kind == "sqlite" else \
            stack.enter_context(shop_database(kind, "shardlocks")).url
        ledgers = [Ledger(url) for _ in range(WORKERS)]
        for ledger in ledgers:
            stack.callback(ledger.close)
        failures: list[str] = []
        for _round in range(ROUNDS):
            start = threading.Barrier(WORKERS)
            reserved: list[int] = []

            def shard(index: int) -> None:
                ledger = ledgers[index]
                run_id = ledger.start_run("send", NOW, f"{index + 1}/{WORKERS}")
                start.wait()
                try:
                    with ledger.lock(run_id, timedelta(minutes=5), f"run:{index + 1}/{WORKERS}"):
                        amount, _use = ledger.reserve_day_budget(run_id, "vip", [(1, "email")], MIDNIGHT, NOW, 5, 5,
                                                                 lambda email, key, phone: True)
                        reserved.append(amount)
                        start.wait()  # every shard holds its lock and its reservation at once
                except Exception as exc:  # noqa: BLE001 - LockHeld, a deadlock: each one is the finding
                    failures.append(f"{type(exc).__name__}: {exc}")
                    start.abort()

            threads = [threading.Thread(target=shard, args=(index,)) for index in range(WORKERS)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(60)
            assert not failures, failures
            assert sum(reserved) == 5 and len(reserved) == WORKERS
