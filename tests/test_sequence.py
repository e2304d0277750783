"""Stepping the clock through a cart's life: each step once, in order, never twice."""

from __future__ import annotations

import email
import email.policy
import sqlite3
from contextlib import closing
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from conftest import NOW, Shop, cart, order

from cartrescue.decide.sequence import minute_text
from cartrescue.ledger import Ledger

H = timedelta(hours=1)
START = NOW - 5 * timedelta(minutes=1)  # the cart's last activity


def _outbox_run(shop: Shop, at_hours: float) -> tuple[int, list[str]]:
    """Run with --outbox at START + hours; return the exit code and the new .eml files."""
    folder = shop.folder / "out"
    before = set(folder.glob("*.eml")) if folder.exists() else set()
    result = shop.cli("run", "--outbox", str(folder), "--json", now=START + at_hours * H)
    assert result.exit_code == 0, result.output
    return result.exit_code, sorted(p.name for p in set(folder.glob("*.eml")) - before)


def _steps(shop: Shop) -> list[tuple[str, int, str]]:
    ledger = Ledger(f"sqlite:///{shop.folder / 'ledger.db'}")
    return [(m["cart_key"], m["step"], m["status"]) for m in ledger.messages()]


def test_steps_one_two_three_go_out_once_each_and_nothing_after(shop: Shop) -> None:
    shop.add(cart("c1", now=START, idle=timedelta(0)))
    delivered = {hours: _outbox_run(shop, hours)[1] for hours in (0.5, 1, 24, 72, 100)}
    assert [len(files) for files in delivered.values()] == [0, 1, 1, 1, 0]
    assert [name.split("-step")[1][0] for hours in (1, 24, 72) for name in delivered[hours]] == ["1", "2", "3"]
    assert _steps(shop) == [("csv:c1", 1, "sent"), ("csv:c1", 2, "sent"), ("csv:c1", 3, "sent")]


def test_rerunning_the_same_instant_delivers_nothing(shop: Shop) -> None:
    shop.add(cart("c1", now=START, idle=timedelta(0)))
    for hours in (1, 24, 72):
        assert len(_outbox_run(shop, hours)[1]) == 1
        assert _outbox_run(shop, hours)[1] == []
    assert len(_steps(shop)) == 3


def test_a_late_run_sends_the_first_step_not_a_later_one(shop: Shop) -> None:
    shop.configure(eligibility={"backfill": "4d"})
    shop.add(cart("c1", now=START, idle=timedelta(0)))
    files = _outbox_run(shop, 100 - 30)[1]  # cron was down for days: step 3's time has passed
    assert [name.split("-step")[1][0] for name in files] == ["1"]


def test_an_order_placed_after_step_one_stops_step_two(shop: Shop) -> None:
    shop.add(cart("c1", email="ann@example.com", now=START, idle=timedelta(0)))
    assert len(_outbox_run(shop, 1)[1]) == 1
    shop.add_orders(order("o1", email="ann@example.com", created=START + 3 * H))
    assert _outbox_run(shop, 24)[1] == []
    decision = shop.decisions(now=START + 24 * H)["c1"]
    assert (decision["action"], decision["reason"]) == ("skip", "ordered")


def test_activity_after_a_step_re_times_the_later_steps(shop: Shop) -> None:
    shop.add(cart("c1", now=START, idle=timedelta(0)))
    assert len(_outbox_run(shop, 1)[1]) == 1
    shop.carts.clear()
    shop.add(cart("c1", now=START + 10 * H, idle=timedelta(0)))  # the customer came back at +10 h
    assert _outbox_run(shop, 24)[1] == []  # step 2 now falls due 24 h after +10 h
    assert shop.decisions(now=START + 24 * H)["c1"]["reason"] == "step_not_due"
    assert len(_outbox_run(shop, 34.5)[1]) == 1


def test_every_eml_is_multipart_alternative_with_text_and_html(shop: Shop) -> None:
    for index, locale in enumerate(["en", "sv", "hu", "ru", "af", "kk"]):
        shop.add(cart(f"c{index}", locale=locale, first_name="Åsa Жанна", items=[("A", "Ärm ☕ mug", 2, "19.50")]))
    folder = shop.folder / "out"
    assert shop.cli("run", "--outbox", str(folder)).exit_code == 0
    files = sorted(folder.glob("*.eml"))
    assert len(files) == 6
    for path in files:
        message = email.message_from_bytes(Path(path).read_bytes(), policy=email.policy.default)
        assert message.get_content_type() == "multipart/alternative"
        parts = [part.get_content_type() for part in message.iter_parts()]
        assert parts == ["text/plain", "text/html"]
        assert message["Message-ID"].endswith("@example.com>") and message["Date"]
        assert "Ärm ☕ mug" in message.get_body(("plain",)).get_content()
        assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"


def test_a_plain_dry_run_records_nothing(shop: Shop) -> None:
    shop.add(cart("c1"))
    result = shop.cli("run", "--json")
    assert result.exit_code == 0 and result.json["counts"]["send"] == 1
    assert _steps(shop) == []
    assert not (shop.folder / "out").exists()


def test_a_cart_id_repeated_further_down_the_file_is_delivered_once(shop: Shop) -> None:
    shop.add(cart("c1"), cart("c2", email="other@example.com"), cart("c1"))
    folder = shop.folder / "out"
    result = shop.cli("run", "--outbox", str(folder), "--json")
    assert result.exit_code == 1, result.output  # the repeat is reported as a bad row
    assert "carts.csv:4: cart c1: the same cart id again" in result.json["problems"][0]
    assert [m["status"] for m in Ledger(f"sqlite:///{shop.folder / 'ledger.db'}").messages()] == ["sent", "sent"]
    assert sorted(p.name.split("-step")[0] for p in folder.glob("*.eml")) == ["csv_c1", "csv_c2"]


def test_run_limit_caps_the_deliveries_and_defers_the_rest(shop: Shop) -> None:
    shop.add(*(cart(f"c{n}", email=f"c{n}@example.com") for n in range(5)))
    folder = shop.folder / "out"
    first = shop.cli("run", "--outbox", str(folder), "--json", "--limit", "2")
    assert first.exit_code == 0, first.output
    assert first.json["counts"]["sent"] == 2
    assert [(row["action"], row["reason"]) for row in first.json["decisions"][2:]] == [("defer", "run_limit")] * 3
    second = shop.cli("run", "--outbox", str(folder), "--json")
    assert second.json["counts"]["sent"] == 3
    assert len(list(folder.glob("*.eml"))) == 5


@pytest.mark.slow
def test_an_hourly_eight_day_replay_keeps_every_gap_and_one_message_a_day(shop: Shop) -> None:
    """Cron starts when carts are already days old, then runs hourly for eight days: every cart's
    steps go out in order, never closer than the gaps between their configured delays, and never
    two to one address on one shop-day."""
    from zoneinfo import ZoneInfo

    shop.configure(eligibility={"backfill": "7d", "max_age": "14d"})
    first_run = START + 6 * 24 * H
    ages = [6 * 24, 5 * 24 + 7, 3 * 24, 50, 30, 23, 5, 2, 0]
    shop.add(*(cart(f"c{n}", email=f"c{n}@example.com", now=first_run, idle=age * H) for n, age in enumerate(ages)))
    shop.add(*(cart(f"late{n}", email=f"late{n}@example.com", now=first_run + (20 + 13 * n) * H, idle=timedelta(0))
               for n in range(4)))
    sent: dict[str, list[tuple[int, Any]]] = {}
    for hour in range(8 * 24):
        at = first_run + hour * H
        result = shop.cli("run", "--outbox", str(shop.folder / "out"), "--json", now=at)
        assert result.exit_code == 0, result.output
        for row in result.json["decisions"]:
            if row["delivery"] == "sent":
                sent.setdefault(row["cart_id"], []).append((row["step"], at))
    gaps = {2: 23 * H, 3: 48 * H}
    stockholm = ZoneInfo("Europe/Stockholm")
    assert all(len(steps) == 3 for steps in sent.values()), sent
    assert len(sent) == len(ages) + 4
    for cart_id, steps in sent.items():
        assert [step for step, _ in steps] == [1, 2, 3], cart_id
        for (step, earlier), (_, later) in zip(steps, steps[1:]):
            assert later - earlier >= gaps[step + 1], (cart_id, step)
        days = [at.astimezone(stockholm).date() for _, at in steps]
        assert len(set(days)) == len(days), cart_id


@pytest.mark.parametrize(("sent_first", "hours", "step", "template"),
                         [(False, 50 / 60, 1, "reminder-1"), (True, 3, 2, "reminder-2")], ids=["step-1", "step-2"])
def test_a_cart_waiting_for_a_step_names_that_step(
    shop: Shop, sent_first: bool, hours: float, step: int, template: str
) -> None:
    """``step_not_due``: ``--json`` gives the step the cart waits for, as its detail says
    ("step 2"); it gave ``step: null``, and a script could not tell which step was coming."""
    shop.add(cart("c1", now=START, idle=timedelta(0)))
    if sent_first:
        assert len(_outbox_run(shop, 1)[1]) == 1
    found = shop.decisions(now=START + hours * H)["c1"]
    assert (found["reason"], found["detail"], found["step"], found["template"]) == (
        "step_not_due", f"step {step}", step, template)


def test_the_ledger_keeps_the_step_a_deferred_cart_waits_for(shop: Shop) -> None:
    """The ledger's latest decision of the cart (``cr_decision``) says which step it waits for,
    as the run's ``--json`` does."""
    shop.add(cart("c1", now=START, idle=timedelta(0)))
    assert len(_outbox_run(shop, 1)[1]) == 1
    assert _outbox_run(shop, 3)[1] == []
    with closing(sqlite3.connect(shop.folder / "ledger.db")) as db:
        assert db.execute("SELECT reason, step FROM cr_decision WHERE cart_key = 'csv:c1'").fetchall() == [
            ("step_not_due", 2)]


def test_a_sequence_not_started_for_the_backfill_names_its_step_1(shop: Shop) -> None:
    shop.add(cart("old", now=START, idle=timedelta(0)))
    decided = shop.decisions(now=START + 70 * H)["old"]
    assert (decided["reason"], decided["step"]) == ("outside_backfill", 1)


def test_a_sequence_is_not_started_when_step_1_came_due_before_the_backfill(shop: Shop) -> None:
    shop.add(cart("old", now=START, idle=timedelta(0)), cart("recent", email="r@example.com", now=START + 60 * H,
                                                             idle=timedelta(0)))
    decided = shop.decisions(now=START + 70 * H)  # default backfill 2d: step 1 of "old" came due 69h ago
    assert (decided["old"]["action"], decided["old"]["reason"]) == ("skip", "outside_backfill")
    assert decided["recent"]["reason"] == "due"


@pytest.mark.parametrize("moment", [
    datetime(2026, 11, 14, 22, 13, 38, tzinfo=timezone.utc), datetime(2026, 1, 2, 3, 4), datetime(1000, 1, 1),
    datetime(999, 12, 31, 23, 59), datetime(1, 1, 1), datetime(9999, 12, 31, 23, 59, 59, 999_999),
])
def test_a_verdicts_time_is_written_as_strftime_writes_it(moment: datetime) -> None:
    assert minute_text(moment) == f"{moment:%Y-%m-%d %H:%M}"


def test_each_step_waits_its_own_delay_and_the_gap_to_the_last_as_the_planner_reads_them() -> None:
    """The planner hands ``next_step`` the steps' delays read once per run: the step that comes
    due, and when, are the same as read from the sequence itself."""
    from decimal import Decimal

    from cartrescue.config import Config
    from cartrescue.decide.orders import OrderBook
    from cartrescue.decide.sequence import next_step
    from cartrescue.ledger import History, SentStep
    from cartrescue.model import Cart, Customer, LineItem
    from cartrescue.pipeline import Planner

    config = Config.model_validate({
        "source": {"type": "csv", "carts": "carts.csv"},
        "sequences": {"default": {"steps": [{"delay": "1h", "template": "reminder-1"},
                                            {"delay": "3h", "template": "reminder-2"},
                                            {"delay": "30h", "template": "reminder-3"}]}},
    })
    planner = Planner(config, NOW)
    active = NOW - 4 * H
    made = Cart("c1", "csv", Customer("c1@example.com", marketing_consent=True), "EUR",
                (LineItem("A", "Mug", 1, Decimal("20.00")),), Decimal("20.00"), active, active)

    def decide(sent: list[SentStep]) -> tuple[object, ...]:
        d = planner._decide(made, OrderBook([]), History(by_cart={made.key: sent}), {}, set(), {}, set())
        return d.action.value, d.step, d.not_before

    one = SentStep(1, "email", "sent", NOW - 1.5 * H, sequence="default")
    two = SentStep(2, "email", "sent", NOW - 0.5 * H, sequence="default")
    assert decide([]) == ("send", 1, None)
    assert decide([one]) == ("defer", 2, NOW + 0.5 * H)  # the 2h gap after step 1, later than 3h after activity
    assert decide([one, two]) == ("defer", 3, NOW + 26.5 * H)  # the 27h gap after step 2, later than 30h
    sequence = config.sequences["default"]
    for sent in ([], [one], [one, two], [one, two, SentStep(3, "email", "sent", NOW, sequence="default")]):
        for now in (NOW, NOW + 2 * H, NOW + 40 * H):
            assert next_step(made, sequence, sent, now, None, planner._routes[0].delays) == \
                next_step(made, sequence, sent, now), (len(sent), now)


def _two_sequence_shop(shop: Shop) -> Shop:
    """A vip tier with its own one-step sequence, a call; the others get the three e-mails."""
    return shop.configure(
        priority={"tiers": [{"name": "vip", "min_score": 40, "channel": "call-list", "sequence": "call"},
                            {"name": "standard", "min_score": 0}]},
        sequences={"default": {"steps": [{"delay": "1h", "template": "reminder-1"},
                                         {"delay": "24h", "template": "reminder-2"},
                                         {"delay": "72h", "template": "reminder-3"}]},
                   "call": {"steps": [{"delay": "1h", "template": "reminder-1"}]}})


def _decided(shop: Shop, items: tuple[tuple[str, str, int, str], ...], at: datetime) -> dict[str, Any]:
    """c1 with ``items``, last changed two hours before ``at``; its decision in a run at ``at``."""
    shop.carts = []
    shop.add(cart("c1", phone="+46701234567", items=items, now=at))
    result = shop.cli("run", "--outbox", str(shop.folder / "out"), "--json", now=at)
    assert result.exit_code == 0, result.output
    (decision,) = result.json["decisions"]
    return decision


MUG = (("S1", "Blue mug", 1, "25.00"),)
LAMP = (("S2", "Lamp", 1, "900.00"),)


def test_a_cart_that_moves_up_to_a_tier_with_its_own_sequence_starts_that_sequence(shop: Shop) -> None:
    """Mailed step 1 of default, then worth a call: counted across sequences, the call's one
    step was "done" (sequence_done), and the best cart got neither the call nor steps 2 and 3."""
    _two_sequence_shop(shop)
    first = _decided(shop, MUG, NOW)
    assert (first["tier"], first["step"], first["channel"], first["action"]) == ("standard", 1, "email", "send")
    later = _decided(shop, MUG + LAMP, NOW + 24 * H)
    assert (later["tier"], later["step"], later["channel"], later["action"], later["reason"]) == \
        ("vip", 1, "call-list", "send", "due")


def test_a_cart_that_moves_up_to_a_call_it_cannot_get_counts_its_mailed_step_as_done(shop: Shop) -> None:
    """Mailed step 1 of default, then worth a call but without a number: vip's step 1 goes by
    e-mail, a claim default's step 1 holds (one per cart, step and channel). Every run then
    decided a "send" that said "another run claimed this step" (claimed_elsewhere), for the
    two days until eligibility.backfill ended it; the step the customer got counts as done."""
    _two_sequence_shop(shop)
    shop.add(cart("c1", items=MUG, now=NOW))
    assert shop.cli("run", "--outbox", str(shop.folder / "out"), "--json", now=NOW).exit_code == 0
    shop.carts = []
    shop.add(cart("c1", items=MUG + LAMP, now=NOW + 24 * H))  # no phone number: the call goes by e-mail
    result = shop.cli("run", "--outbox", str(shop.folder / "out"), "--json", now=NOW + 24 * H)
    assert result.exit_code == 0, result.output
    (decision,) = result.json["decisions"]
    assert (decision["tier"], decision["action"], decision["reason"]) == ("vip", "skip", "sequence_done")
    assert result.json["counts"]["deliveries"] == {}
    assert len(list((shop.folder / "out").glob("*.eml"))) == 1


def test_a_call_over_budget_goes_by_email_only_where_that_step_was_not_mailed(shop: Shop) -> None:
    """Mailed step 1 of default, then worth a call the day's budget has no room for: with
    ``over_budget: email`` the call went "by e-mail instead", a claim default's step 1 holds.
    It ended claimed_elsewhere every run; it waits for the budget (tier_budget) instead."""
    _two_sequence_shop(shop)
    shop.configure(priority={"tiers": [{"name": "vip", "min_score": 40, "channel": "call-list", "sequence": "call",
                                        "budget": 0, "budget_per": "day", "over_budget": "email"},
                                       {"name": "standard", "min_score": 0}]})
    assert _decided(shop, MUG, NOW)["channel"] == "email"
    later = _decided(shop, MUG + LAMP, NOW + 24 * H)
    assert (later["tier"], later["step"], later["channel"], later["action"], later["reason"]) == \
        ("vip", 1, "call-list", "defer", "tier_budget")
    assert later["delivery"] is None


def test_a_cart_that_moves_down_starts_its_new_sequence_at_step_one(shop: Shop) -> None:
    """Called, then worth less: it got default's step 2 by e-mail, never its first message."""
    _two_sequence_shop(shop)
    assert _decided(shop, LAMP, NOW)["channel"] == "call-list"
    later = _decided(shop, MUG, NOW + 24 * H)
    assert (later["tier"], later["step"], later["template"], later["action"]) == ("standard", 1, "reminder-1", "send")
    ledger = Ledger(f"sqlite:///{shop.folder / 'ledger.db'}")
    try:
        assert sorted((m["step"], m["channel"], m["sequence"]) for m in ledger.messages()) == [
            (1, "call-list", "call"), (1, "email", "default")]
    finally:
        ledger.close()
