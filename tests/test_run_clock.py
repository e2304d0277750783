"""A run decides at its ``now`` but claims as it goes: one that starts at 23:59 and sends after
midnight counts its messages on the day they went out (cartrescue.clock). The real clock is
replaced by a fake one that crosses midnight: no test waits."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone

import pytest

from conftest import Shop, cart

START = datetime(2026, 11, 20, 22, 59, tzinfo=timezone.utc)  # 23:59 in Stockholm
CLAIMED = START + timedelta(minutes=3)  # 00:02 in Stockholm, the next day
MINUTE = timedelta(minutes=1)


@pytest.fixture
def crossing_midnight(monkeypatch: pytest.MonkeyPatch) -> Callable[[], None]:
    """The real clock reads 23:59 (shop time) as a run starts, then 00:02: its claims come after
    midnight. Call the fixture's value to start such a run's clock again."""
    from cartrescue import clock

    def start() -> None:
        readings: Iterator[datetime] = iter([START])
        monkeypatch.setattr(clock, "wall", lambda: next(readings, CLAIMED))

    start()
    return start


def test_a_run_that_claims_after_midnight_records_the_claim_at_that_time(
    shop: Shop, crossing_midnight: Callable[[], None]
) -> None:
    shop.add(cart("c1", now=START, idle=61 * MINUTE))
    first = shop.cli("run", "--outbox", str(shop.folder / "out"), "--json", now=None)
    assert first.exit_code == 0, first.output
    assert first.json["now"] == "2026-11-20T22:59:00Z"
    assert [row["claimed_at"].replace(tzinfo=timezone.utc) for row in shop.messages()] == [CLAIMED]


def test_a_message_sent_after_midnight_by_a_run_of_the_day_before_counts_as_messaged_today(
    shop: Shop, crossing_midnight: Callable[[], None]
) -> None:
    """The run at 00:10 must not send step 2 the same local day as step 1 (sent at 00:02 by the
    run that began at 23:59, which recorded it at 23:59 of the day before)."""
    shop.configure(sequences={"default": {"steps": [{"delay": "1h", "template": "reminder-1"},
                                                    {"delay": "65m", "template": "reminder-2"}]}})
    shop.add(cart("c1", now=START, idle=61 * MINUTE))
    first = shop.cli("run", "--outbox", str(shop.folder / "out"), now=None)
    assert first.exit_code == 0, first.output
    later = shop.decisions(now=CLAIMED + 8 * MINUTE)["c1"]  # 00:10: step 2 is due, 5 min after step 1
    assert (later["action"], later["reason"], later["step"], later["not_before"]) == (
        "defer", "messaged_today", 2, "2026-11-21T23:00:00Z")


def test_a_days_budget_counts_the_claims_a_run_of_the_day_before_made_after_midnight(
    shop: Shop, crossing_midnight: Callable[[], None]
) -> None:
    """They are the new day's messages: the day's budget of 2 is spent by 00:02."""
    shop.configure(priority={"tiers": [{"name": "standard", "min_score": 0, "budget": 2, "budget_per": "day"}]})
    shop.add(*(cart(f"c{n}", now=START, idle=(61 + n) * MINUTE) for n in range(3)))
    first = shop.cli("run", "--outbox", str(shop.folder / "out"), "--json", now=None)
    assert first.exit_code == 0, first.output
    assert first.json["counts"]["sent"] == 2
    later = shop.decisions(now=CLAIMED + 8 * MINUTE)
    assert [(d["action"], d["detail"]) for d in later.values() if d["step"] == 1] == [
        ("defer", "tier standard takes 0 today (its day's budget is 2; the day's earlier runs used 2)")]


def test_the_workers_of_a_run_whose_clock_is_not_pinned_record_their_claims_when_made(
    shop: Shop, crossing_midnight: Callable[[], None]
) -> None:
    """Each worker gets the run's ``now`` to decide by, not as a pinned clock (``--live-clock``).
    A worker is a process of its own, which reads the machine's real clock (later than START):
    with ``--now`` alone it stamped every claim with the run's start."""
    shop.add(*(cart(f"c{n}", email=f"ann{n}@example.com", now=START, idle=61 * MINUTE) for n in range(4)))
    first = shop.cli("run", "--outbox", str(shop.folder / "out"), "--json", "--workers", "2", now=None)
    assert first.exit_code == 0, first.output
    assert len(first.json["shards"]) == 2
    claimed = [row["claimed_at"].replace(tzinfo=timezone.utc) for row in shop.messages()]
    assert len(claimed) == 4 and min(claimed) > START, claimed
