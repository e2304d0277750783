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


def _texted_after_midnight_by_another_run(shop: Shop, number: str) -> None:
    """Another run's text to ``number`` at 00:01, the new day: this run, planning at 23:59, sees
    no message today; its claim at 00:02 is refused (one message a day)."""
    from cartrescue.ledger import ClaimRequest, Ledger

    at = CLAIMED - MINUTE
    ledger = Ledger(f"sqlite:///{shop.folder / 'ledger.db'}")
    try:
        other = ledger.start_run("send", at)
        with ledger.lock(other, timedelta(hours=1)):
            won = ledger.claim(other, [ClaimRequest("csv:elsewhere", "elsewhere", "bo@example.com", 1, "sms", "sms",
                                                    "reminder-1", None, "standard", 1.0, phone=number)], at)
            ledger.record([(claim_id, "sent", "201 queued", "") for claim_id in won.values()])
        ledger.finish_run(other, "ok", {"sent": 1})
    finally:
        ledger.close()


def test_a_send_deferred_at_its_claim_gives_its_run_limit_slot_to_the_next_waiting_send(
    shop: Shop, crossing_midnight: Callable[[], None]
) -> None:
    """``--limit 2`` of three due texts, the first one's number texted by another run after this
    one planned: it waits for tomorrow, unclaimed, and the third text goes in its place."""
    from httpserver import TwilioEmulator
    from test_sms_channel import sms_shop

    with TwilioEmulator() as twilio:
        sms_shop(shop, twilio.url, carts=0)
        shop.add(*(cart(f"c{n}", email=f"c{n}@example.com", now=START, idle=61 * MINUTE,
                        phone=f"070-123 45 0{n}", sms_consent="yes") for n in range(3)))
        shop.write()
        _texted_after_midnight_by_another_run(shop, "+46701234500")
        result = shop.cli("run", "--send", "--json", "--limit", "2", now=None)
        assert result.exit_code == 0, result.output
        assert sorted(m["To"] for m in twilio.messages) == ["+46701234501", "+46701234502"]
    decided = {row["cart_id"]: row for row in result.json["decisions"]}
    assert (decided["c0"]["action"], decided["c0"]["reason"]) == ("defer", "messaged_today")
    assert [decided[key]["delivery"] for key in ("c1", "c2")] == ["sent", "sent"]
    counts = result.json["counts"]
    assert counts["sent"] == 2 and counts["send"] + counts["skip"] + counts["defer"] + counts["holdout"] == counts["carts"] == 3
    assert sorted(row["cart_key"] for row in shop.messages()) == ["csv:c1", "csv:c2", "csv:elsewhere"]


EVENING = datetime(2026, 11, 20, 19, 59, tzinfo=timezone.utc)  # 20:59 in Stockholm
NIGHT = EVENING + 2 * MINUTE  # 21:01: inside quiet hours 21:00-08:00
MORNING = datetime(2026, 11, 21, 7, 1, tzinfo=timezone.utc)  # 08:01 the next day
QUIET = {"eligibility": {"quiet_hours": {"start": "21:00", "end": "08:00"}}}


def _wall_reads(monkeypatch: pytest.MonkeyPatch, start: datetime, then: datetime) -> None:
    """The real clock reads ``start`` as the run starts, ``then`` at every claim after it."""
    from cartrescue import clock

    readings: Iterator[datetime] = iter([start])
    monkeypatch.setattr(clock, "wall", lambda: next(readings, then))


def test_a_run_that_starts_before_quiet_hours_does_not_claim_inside_them(
    shop: Shop, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Planned at 20:59 (not yet quiet), reached at 21:01: it waits for 08:00, unclaimed, and the
    first run after the window sends it once."""
    shop.configure(**QUIET)
    shop.add(cart("c1", now=EVENING, idle=61 * MINUTE))
    _wall_reads(monkeypatch, EVENING, NIGHT)
    first = shop.cli("run", "--outbox", str(shop.folder / "out"), "--json", now=None)
    assert first.exit_code == 0, first.output
    [decision] = first.json["decisions"]
    assert (decision["action"], decision["reason"], decision["not_before"]) == (
        "defer", "quiet_hours", "2026-11-21T07:00:00Z")
    assert first.json["counts"]["sent"] == 0
    assert shop.messages() == []

    _wall_reads(monkeypatch, MORNING, MORNING)
    second = shop.cli("run", "--outbox", str(shop.folder / "out"), "--json", now=None)
    assert second.exit_code == 0, second.output
    assert second.json["counts"]["sent"] == 1
    assert [(row["cart_key"], row["status"]) for row in shop.messages()] == [("csv:c1", "sent")]
    third = shop.cli("run", "--outbox", str(shop.folder / "out"), "--json", now=None)
    assert third.json["counts"]["sent"] == 0
    assert len(list((shop.folder / "out").iterdir())) == 1


def test_a_text_reached_inside_its_own_quiet_hours_waits_for_their_end(
    shop: Shop, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A text keeps sms.quiet_hours (20:00-09:00) at its claim too: planned at 19:59, reached at
    20:01, it waits for 09:00 (the shop's e-mail has no quiet hours at all)."""
    shop.configure(shop={"country": "SE"},
                   priority={"tiers": [{"name": "standard", "min_score": 0, "channel": "sms"}]},
                   sms={"sender": "+46700000000", "quiet_hours": {"start": "20:00", "end": "09:00"},
                        "twilio": {"account_sid": "AC" + "0" * 32, "auth_token": "not-a-token",
                                   "base_url": "http://127.0.0.1:9"}})
    started = EVENING - 60 * MINUTE  # 19:59 in Stockholm
    shop.add(cart("c1", now=started, idle=61 * MINUTE, phone="070-123 45 67", sms_consent="yes"))
    _wall_reads(monkeypatch, started, started + 2 * MINUTE)
    result = shop.cli("run", "--outbox", str(shop.folder / "out"), "--json", now=None)
    assert result.exit_code == 0, result.output
    [decision] = result.json["decisions"]
    assert (decision["action"], decision["reason"], decision["channel"], decision["not_before"]) == (
        "defer", "quiet_hours", "sms", "2026-11-21T08:00:00Z")
    assert shop.messages() == []


def test_a_run_wholly_outside_quiet_hours_sends_as_planned(shop: Shop, monkeypatch: pytest.MonkeyPatch) -> None:
    """Started at 20:50 and claiming at 20:55: before the window, the message goes out."""
    shop.configure(**QUIET)
    shop.add(cart("c1", now=EVENING - 9 * MINUTE, idle=61 * MINUTE))
    _wall_reads(monkeypatch, EVENING - 9 * MINUTE, EVENING - 4 * MINUTE)
    result = shop.cli("run", "--outbox", str(shop.folder / "out"), "--json", now=None)
    assert result.exit_code == 0, result.output
    [decision] = result.json["decisions"]
    assert (decision["action"], decision["reason"], decision["delivery"]) == ("send", "due", "sent")
    assert [row["claimed_at"].replace(tzinfo=timezone.utc) for row in shop.messages()] == [EVENING - 4 * MINUTE]


def test_a_run_that_reaches_quiet_hours_midway_sends_what_it_claimed_before_and_holds_the_rest(
    shop: Shop, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The outbox claims 16 at a time: the first 16 at 20:55 go out, the last 4, reached at
    21:01, wait for 08:00 unclaimed (the window's start, read once, is passed midway)."""
    from cartrescue import clock

    shop.configure(**QUIET)
    started = EVENING - 9 * MINUTE  # 20:50
    shop.add(*(cart(f"c{n:02d}", now=started, idle=61 * MINUTE) for n in range(20)))
    readings: Iterator[datetime] = iter([started, started + 5 * MINUTE])
    monkeypatch.setattr(clock, "wall", lambda: next(readings, NIGHT))
    result = shop.cli("run", "--outbox", str(shop.folder / "out"), "--json", now=None)
    assert result.exit_code == 0, result.output
    held = [(d["action"], d["reason"], d["not_before"]) for d in result.json["decisions"] if d["action"] != "send"]
    assert result.json["counts"]["sent"] == 16 and len(shop.messages()) == 16
    assert held == [("defer", "quiet_hours", "2026-11-21T07:00:00Z")] * 4


def test_a_pinned_clock_keeps_the_planners_word_on_quiet_hours(shop: Shop, monkeypatch: pytest.MonkeyPatch) -> None:
    """``--now 20:59`` replays that instant: its claims are stamped then, whatever the real clock."""
    shop.configure(**QUIET)
    shop.add(cart("c1", now=EVENING, idle=61 * MINUTE))
    _wall_reads(monkeypatch, NIGHT, NIGHT)
    result = shop.cli("run", "--outbox", str(shop.folder / "out"), "--json", now=EVENING)
    assert result.exit_code == 0, result.output
    assert result.json["counts"]["sent"] == 1


def test_sends_waiting_for_a_run_limit_slot_reached_in_quiet_hours_wait_for_their_end(
    shop: Shop, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``--limit 1`` and quiet hours at the claim: the chosen send gives its slot back, each
    waiting send takes it in turn and waits for 08:00 too; none is claimed."""
    shop.configure(**QUIET)
    shop.add(*(cart(f"c{n}", email=f"c{n}@example.com", now=EVENING, idle=61 * MINUTE) for n in range(3)))
    _wall_reads(monkeypatch, EVENING, NIGHT)
    result = shop.cli("run", "--outbox", str(shop.folder / "out"), "--json", "--limit", "1", now=None)
    assert result.exit_code == 0, result.output
    assert [(d["action"], d["reason"], d["not_before"]) for d in result.json["decisions"]] == [
        ("defer", "quiet_hours", "2026-11-21T07:00:00Z")] * 3
    assert result.json["counts"]["defer"] == result.json["counts"]["carts"] == 3
    assert shop.messages() == []
