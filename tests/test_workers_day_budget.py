"""A tier's day budget (``budget_per: day``) over shards that run in cron rounds.

Shard K of N spends its share of the day's budget, charged with the day's claims of the
addresses it owns: a shard of a new round that starts while a slower shard of the last round
still plans cannot spend that shard's part, the shares add up to the budget when the shards run
one after another, and a layout that changes during the day never spends more than the budget,
even where two shards read the day before either claims (each reserves its part, one at a time).
Real shard processes (``run --shard K/N --outbox``) on a SQLite file and on PostgreSQL; the
reservations themselves on MariaDB too.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from typing import Any

import pytest
import test_exactly_once
from shopdb import shop_database

from cartrescue.ledger import Ledger
from cartrescue.pipeline import Planner
from cartrescue.shards import shard_of
from conftest import NOW, REPO, Shop, cart, iso

pytestmark = pytest.mark.slow  # real shard processes, a few per test

url = test_exactly_once.ledger_url  # the shop's SQLite file, or a throw-away PostgreSQL database


def _addresses(count: int, **shards: int) -> list[str]:
    """The first ``count`` addresses ``v<n>@example.com`` in the given shard of each layout
    (``of2=1``: shard 1 of 2), by the hash that assigns carts to shards."""
    found = []
    for n in range(10_000):
        address = f"v{n}@example.com"
        if all(shard_of(address, int(layout[2:])) == k for layout, k in shards.items()):
            found.append(address)
            if len(found) == count:
                return found
    raise AssertionError("too few addresses")


def _vip_shop(shop: Shop, url: str, budget: int, addresses: list[str]) -> None:
    """A vip tier of ``budget`` e-mails a day, and a vip cart (worth 250) for each address."""
    shop.configure(ledger={"url": url, "lock_timeout": "30s"},
                   priority={"tiers": [{"name": "vip", "min_score": 40, "budget": budget, "budget_per": "day"},
                                       {"name": "standard", "min_score": 0}]})
    _add(shop, addresses)


def _add(shop: Shop, addresses: list[str]) -> None:
    start = len(shop.carts)
    for n, address in enumerate(addresses, start=start):
        shop.add(cart(f"v{n:03d}", email=address, items=[("SKU-1", "Lamp", 1, "250.00")]))


def _shard(shop: Shop, spec: str, at: datetime) -> dict[str, Any]:
    """``run --shard spec --outbox`` as its own process (another host's cron), to its end."""
    shop.write()
    done = subprocess.run([sys.executable, "-m", "cartrescue.cli", "run", "--outbox", str(shop.folder / "out"),
                           "--json", "--shard", spec, "--config", str(shop.config_path), "--now", iso(at)],
                          cwd=REPO, capture_output=True, timeout=120)
    assert done.returncode == 0, done.stderr.decode()
    document: dict[str, Any] = json.loads(done.stdout)
    return document


def _sent(document: dict[str, Any]) -> int:
    return sum(d["delivery"] == "sent" and d["tier"] == "vip" for d in document["decisions"])


def _vip_claims(url: str) -> int:
    """The vip messages of the ledger that went out (the outbox's are ``sent``)."""
    ledger = Ledger(url)
    try:
        return sum(row["tier"] == "vip" and row["status"] == "sent" for row in ledger.messages())
    finally:
        ledger.close()


@contextlib.contextmanager
def _paused_after_planning_starts(monkeypatch: pytest.MonkeyPatch, meanwhile: Callable[[], None]) -> Iterator[None]:
    """The in-process run reads the day's claims and decides its first cart, then waits while
    ``meanwhile`` runs (other shards' processes), then claims and sends: a slow shard."""
    original = Planner.decide

    def decide(self: Planner, source: Any) -> Iterator[Any]:
        decisions = original(self, source)
        first = next(decisions, None)  # its budgets are read before its first decision
        meanwhile()
        if first is not None:
            yield first
        yield from decisions

    with monkeypatch.context() as patch:
        patch.setattr(Planner, "decide", decide)
        yield


def test_a_new_rounds_shard_cannot_spend_the_part_a_slower_shard_of_the_last_round_still_holds(
        shop: Shop, url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Round 1's shard 2 reads the day at its start and is slow; round 1's shard 1 ends, and
    round 2's shard 1 (ten minutes later) runs to its end before round 1's shard 2 claims."""
    budget = 4
    _vip_shop(shop, url, budget, _addresses(4, of2=1) + _addresses(4, of2=2))
    later: list[dict[str, Any]] = []

    def others() -> None:
        later.append(_shard(shop, "1/2", NOW))
        later.append(_shard(shop, "1/2", NOW + timedelta(minutes=10)))

    with _paused_after_planning_starts(monkeypatch, others):
        slow = shop.cli("run", "--outbox", str(shop.folder / "out"), "--json", "--shard", "2/2", now=NOW)
    assert slow.exit_code == 0, slow.output
    first, second = later
    assert (_sent(first), _sent(second), _sent(slow.json)) == (2, 0, 2)  # 4 // 2 each, and no more
    assert _vip_claims(url) == budget
    waiting = {d["detail"] for d in second["decisions"] if d["reason"] == "tier_budget"}
    assert waiting == {"tier vip takes 0 today in shard 1/2 (its share of the day's budget of 4 over 2 shards "
                       "is 2; the day's earlier runs used 2 of it, 2 in all; the other shards still running hold 2 "
                       "more)"}


def test_shards_that_run_one_after_another_spend_the_days_budget_exactly(shop: Shop, url: str) -> None:
    """No round overlaps: each shard takes its share of the day, whatever the other shards
    claimed before it; the day's later rounds take nothing, and the next day has it again."""
    budget = 5
    _vip_shop(shop, url, budget, _addresses(5, of2=1) + _addresses(5, of2=2))
    assert [_sent(_shard(shop, spec, NOW)) for spec in ("1/2", "2/2")] == [3, 2]  # 5 // 2, + 1 for shard 1
    assert [_sent(_shard(shop, spec, NOW + timedelta(minutes=10))) for spec in ("2/2", "1/2")] == [0, 0]
    assert _vip_claims(url) == budget
    tomorrow = NOW + timedelta(days=1)
    assert [_sent(_shard(shop, spec, tomorrow)) for spec in ("2/2", "1/2")] == [2, 3]
    assert _vip_claims(url) == 2 * budget


def test_a_layout_changed_during_the_day_never_spends_more_than_the_days_budget(shop: Shop, url: str) -> None:
    """Three shards in the morning, two in the afternoon: the morning's claims all fell in
    shard 1 of 2, over its share; shard 2 of 2 has room by its own count but the day has none."""
    budget = 6
    _vip_shop(shop, url, budget, [a for k in (1, 2, 3) for a in _addresses(2, of3=k, of2=1)])
    assert [_sent(_shard(shop, f"{k}/3", NOW)) for k in (1, 2, 3)] == [2, 2, 2]
    _add(shop, _addresses(3, of2=2))  # new carts, in the other half of the addresses
    afternoon = NOW + timedelta(hours=3)
    assert [_sent(_shard(shop, f"{k}/2", afternoon)) for k in (1, 2)] == [0, 0]
    assert _vip_claims(url) == budget


def test_two_shards_reading_the_day_together_after_a_layout_change_spend_no_more_than_what_it_has_left(
        shop: Shop, url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """An unsharded morning run sent 4 of the day's 5, all to addresses of shard 1 of 3. In the
    afternoon shard 2 of 3 reads the day and is slow; shard 3 of 3 runs to its end meanwhile.
    Each has room by its own count (shares 2, 2, 1), and the day has 1 left: one of them takes it."""
    budget = 5
    _vip_shop(shop, url, budget, _addresses(4, of3=1))
    assert _sent(_shard(shop, "1/1", NOW)) == 4
    _add(shop, _addresses(1, of3=2) + _addresses(1, of3=3))
    afternoon = NOW + timedelta(hours=3)
    later: list[dict[str, Any]] = []
    with _paused_after_planning_starts(monkeypatch, lambda: later.append(_shard(shop, "3/3", afternoon))):
        slow = shop.cli("run", "--outbox", str(shop.folder / "out"), "--json", "--shard", "2/3", now=afternoon)
    assert slow.exit_code == 0, slow.output
    assert (_sent(slow.json), _sent(later[0])) == (1, 0)
    assert _vip_claims(url) == budget
    waiting = {d["detail"] for d in later[0]["decisions"] if d["reason"] == "tier_budget"}
    assert waiting == {"tier vip takes 0 today in shard 3/3 (its share of the day's budget of 5 over 3 shards "
                       "is 1; the day's earlier runs used 0 of it, 4 in all; the other shards still running hold "
                       "1 more)"}


@pytest.mark.parametrize("kind", [
    "sqlite",
    pytest.param("postgres", marks=pytest.mark.postgres),
    pytest.param("mariadb", marks=pytest.mark.mariadb),
])
def test_a_reservation_counts_what_running_shards_reserved_and_not_what_ended_ones_did(shop: Shop, kind: str) -> None:
    """Shard 1 reserves all 3 of the day's budget; shard 2, while shard 1 still runs, gets none;
    once shard 1 has ended (having claimed nothing), its reservation no longer counts."""
    with contextlib.ExitStack() as stack:
        if kind == "sqlite":
            ledger_url = f"sqlite:///{shop.folder / 'ledger.db'}"
        else:
            ledger_url = stack.enter_context(shop_database(kind, "holds")).url
        ledger = Ledger(ledger_url)
        stack.callback(ledger.close)
        midnight = NOW.replace(hour=0, minute=0, second=0, microsecond=0)
        first, second = (ledger.start_run("send", NOW, f"{k}/2") for k in (1, 2))

        def reserve(run_id: int) -> tuple[int, int]:
            amount, use = ledger.reserve_day_budget(run_id, "vip", [(1, "email")], midnight, NOW, 3, 3,
                                                    lambda email, key, phone: True)
            return amount, use.pending

        with ledger.lock(first, timedelta(minutes=5), "run:1/2"), ledger.lock(second, timedelta(minutes=5), "run:2/2"):
            assert reserve(first) == (3, 0)
            assert reserve(second) == (0, 3)
        with ledger.lock(second, timedelta(minutes=5), "run:2/2"):
            assert reserve(second) == (3, 0)
