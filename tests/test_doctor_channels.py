"""`cartrescue doctor`'s staleness per channel: a channel whose every delivery failed for
``doctor.stale_after`` stops the shop's reminders on it, though the runs deliver on another.

The ledgers are real (SQLite files; one PostgreSQL database), written by the ledger's own calls
as runs write them, then dated back as hours of cron runs would have left them."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
import shopdb
from sqlalchemy import update

from cartrescue.doctor import FAIL, OK
from cartrescue.errors import ExitCode
from cartrescue.ledger import ClaimRequest, Ledger, Message, Run
from conftest import Shop, cart

#: Two channels: the VIP tier's carts are called, the others' e-mailed.
TIERS = {"tiers": [{"name": "vip", "min_score": 40, "channel": "call-list"}, {"name": "standard", "min_score": 0}]}


def two_channel_shop(shop: Shop) -> Shop:
    return shop.configure(priority=TIERS, call_list={"path": "calls.csv"}, doctor={"stale_after": "2h"}).add(cart("c1"))


def record_run(url: str, ago: timedelta, outcomes: list[tuple[str, str, str]], shard: str = "") -> None:
    """One delivering run that finished ``ago``, as it records itself: ``outcomes`` are
    ``(cart id, channel, status)``; a cart failed before is claimed again (its retry)."""
    ledger = Ledger(url)
    lock = f"run:{shard}" if shard else "run"
    try:
        start = datetime.now(timezone.utc)
        run_id = ledger.start_run("send", start, shard=shard)
        with ledger.lock(run_id, timedelta(hours=2), name=lock):
            requests = [ClaimRequest(f"csv:{cart_id}", cart_id, f"{cart_id}@example.com", 1, channel,
                                     "call-list" if channel == "call-list" else "smtp", "reminder-1", None,
                                     "vip" if channel == "call-list" else "standard", 0.0, phone="+46701234567")
                        for cart_id, channel, _status in outcomes]
            won = ledger.claim(run_id, requests, start, lock_name=lock)
            status_of = {(f"csv:{cart_id}", 1, channel): status for cart_id, channel, status in outcomes}
            ledger.record([(claim, status_of[key], "250 ok" if status_of[key] == "sent" else "451 4.3.0 try later", "")
                           for key, claim in won.items()])
        sent = sum(1 for *_rest, status in outcomes if status == "sent")
        ledger.finish_run(run_id, "ok", {"sent": sent, "failed": len(outcomes) - sent})
        when = datetime.now(timezone.utc) - ago
        with ledger.engine.begin() as conn:  # hours of cron runs, dated back
            conn.execute(update(Run.__table__).where(Run.__table__.c.id == run_id)  # type: ignore[attr-defined]
                         .values(started_at=when - timedelta(minutes=1), finished_at=when))
            conn.execute(update(Message.__table__).where(Message.__table__.c.run_id == run_id)  # type: ignore[attr-defined]
                         .values(claimed_at=when - timedelta(minutes=1), finished_at=when))
    finally:
        ledger.close()


def staleness_of(shop: Shop) -> tuple[int, dict]:
    result = shop.cli("doctor", "--no-smtp", "--json", now=None)
    found = {check["name"]: check for check in result.json["checks"]}
    return result.exit_code, found["staleness"]


def relay_refusing_for_hours(url: str, shard: str = "") -> None:
    """Four hours of runs that each wrote a call-list row while every e-mail was deferred (its
    retry too), after e-mails that went out a day ago."""
    record_run(url, timedelta(days=1), [("e0", "email", "sent")], shard)
    for hour in (4, 3, 2, 1):
        retried = [(f"e{hour + 1}", "email", "failed_transient")] if hour < 4 else []
        record_run(url, timedelta(hours=hour) - timedelta(minutes=5),
                   [(f"v{hour}", "call-list", "sent"), (f"e{hour}", "email", "failed_transient"), *retried], shard)


@pytest.mark.parametrize("kind", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres, id="postgres")])
def test_a_channel_whose_every_delivery_failed_for_stale_after_makes_the_shop_stale(shop: Shop, kind: str) -> None:
    """The audit's shop: the relay refused every e-mail for hours while each run wrote its call
    rows, so every run delivered something and the doctor stayed green (exit 0)."""
    two_channel_shop(shop)
    with shopdb.ledger_on(shop, kind) as url:
        Ledger(url).close()  # the ledger's tables, as the first run makes them
        relay_refusing_for_hours(url)
        code, stale = staleness_of(shop)
    assert code == ExitCode.STALE and stale["status"] == FAIL, stale
    assert stale["exit_code"] == ExitCode.STALE
    assert "email delivered nothing" in stale["detail"], stale["detail"]
    assert "last delivered 24h" in stale["detail"], stale["detail"]
    assert "is the relay refusing or deferring mail?" in stale["detail"], stale["detail"]
    assert "call-list delivered nothing" not in stale["detail"], stale["detail"]


def test_a_channel_that_never_delivered_is_named_so(shop: Shop) -> None:
    two_channel_shop(shop)
    url = f"sqlite:///{shop.folder / 'ledger.db'}"
    for hour in (4, 3, 2, 1):
        record_run(url, timedelta(hours=hour), [(f"v{hour}", "call-list", "sent"), (f"e{hour}", "email", "failed_permanent")])
    code, stale = staleness_of(shop)
    assert code == ExitCode.STALE and "email delivered nothing" in stale["detail"], stale
    assert "never delivered" in stale["detail"], stale["detail"]


def assert_not_stale(shop: Shop, runs: list[tuple[timedelta, list[tuple[str, str, str]]]]) -> None:
    """After ``runs`` (each: how long ago it finished, its outcomes), the doctor is green."""
    two_channel_shop(shop)
    url = f"sqlite:///{shop.folder / 'ledger.db'}"
    for ago, outcomes in runs:
        record_run(url, ago, outcomes)
    code, stale = staleness_of(shop)
    assert code == 0 and stale["status"] == OK, stale


def test_a_channel_without_attempts_is_fine(shop: Shop) -> None:
    """No cart was due for a call for days: nothing failed, the call list is not stale."""
    assert_not_stale(shop, [(timedelta(days=3), [("v0", "call-list", "sent")]),
                            *((timedelta(hours=hour), [(f"e{hour}", "email", "sent")]) for hour in (4, 3, 2, 1))])


def test_a_channel_that_delivers_between_its_refusals_is_fine(shop: Shop) -> None:
    """Some addresses refused every hour (bounces), the others' e-mails delivered: not stopped."""
    assert_not_stale(shop, [(timedelta(hours=hour), [(f"e{hour}", "email", "sent"), (f"b{hour}", "email", "failed_permanent")])
                            for hour in (4, 3, 2, 1)])


def test_one_refused_address_after_quiet_hours_is_no_stopped_channel(shop: Shop) -> None:
    """A shop with few carts: yesterday's e-mail went out, the one e-mail of this hour was
    refused (a mistyped address); nothing failed before it, so the relay has not stopped."""
    assert_not_stale(shop, [(timedelta(days=1), [("e0", "email", "sent")]),
                            *((timedelta(hours=hour), [(f"v{hour}", "call-list", "sent")]) for hour in (4, 3, 2)),
                            (timedelta(minutes=30), [("v1", "call-list", "sent"), ("e1", "email", "failed_permanent")])])


def test_a_channel_new_in_the_config_is_given_stale_after_before_it_fails(shop: Shop) -> None:
    """The call list was added half an hour ago and its rows fail (a file not yet writable);
    a failure of the e-mails hours before says nothing about it: not yet stale."""
    assert_not_stale(shop, [(timedelta(hours=5), [("e5", "email", "sent"), ("e6", "email", "failed_permanent")]),
                            *((timedelta(hours=hour), [(f"e{hour}", "email", "sent")]) for hour in (4, 3, 2)),
                            (timedelta(minutes=30), [("e1", "email", "sent"), ("v1", "call-list", "failed_transient")])])


def test_a_shard_whose_channel_stopped_makes_the_shop_stale_though_the_other_shard_delivers(shop: Shop) -> None:
    """Shard 2/2's host has a relay that refuses all; shard 1/2's delivers: half the customers
    get no e-mail, however recent shard 1/2's deliveries."""
    two_channel_shop(shop)
    url = f"sqlite:///{shop.folder / 'ledger.db'}"
    Ledger(url).close()
    for hour in (4, 3, 2, 1):
        record_run(url, timedelta(hours=hour), [(f"a{hour}", "email", "sent")], shard="1/2")
    relay_refusing_for_hours(url, shard="2/2")
    code, stale = staleness_of(shop)
    assert code == ExitCode.STALE and stale["status"] == FAIL, stale
    assert "email of shard 2/2 delivered nothing" in stale["detail"], stale["detail"]


def test_a_stale_shop_names_its_stopped_channels_too() -> None:
    """No run succeeded for hours and the call list's rows all failed: both are said."""
    from cartrescue.doctor import staleness
    from cartrescue.ledger import StoppedChannel

    now = datetime(2026, 1, 1, 12, tzinfo=timezone.utc)
    verdict = staleness(now - timedelta(hours=3), timedelta(hours=2), now,
                        stopped=[StoppedChannel("call-list", "", 2, None)])
    assert verdict.status == FAIL and verdict.exit_code == ExitCode.STALE
    assert "last successful run finished 3h 0m ago" in verdict.detail, verdict.detail
    assert "call-list delivered nothing for over 2h 0m: its 2 attempts in that time failed (never delivered; see " \
           "`cartrescue report`)" in verdict.detail, verdict.detail
    assert "relay" not in verdict.detail
