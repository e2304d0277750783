"""Eight days of cron, replayed hour by hour, beside a daily newsletter.

Every hour for eight days the real CLI runs ``run --outbox --now T``. Carts appear over the
first two days (the carts file holds those created by T, the orders file those placed by T);
every morning at 07:45 in Stockholm the shop's newsletter goes to a third of the addresses (a
different third each day). The export holds all eight days from the start: a send counts only
once it has happened. Quiet hours are 22:00-08:00.

Then every delivered reminder is checked against every rule: never on a day its address got
the newsletter, at most one a day per address, never in quiet hours, never after an order,
each step of a cart once, in order, never before its delay.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from datetime import datetime, time, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest

from cartrescue.ledger import Ledger
from conftest import Shop, cart, iso, order, write_csv

STOCKHOLM = ZoneInfo("Europe/Stockholm")
START = datetime(2026, 11, 16, 6, 0, tzinfo=timezone.utc)  # Monday 07:00 in Stockholm
DAYS = 8
CARTS = 24
DELAYS = (timedelta(hours=1), timedelta(hours=24), timedelta(hours=72))
ORDERED = {5: timedelta(hours=30), 11: timedelta(hours=3), 17: timedelta(hours=50)}  # cart -> order after activity


def activity(n: int) -> datetime:
    """Cart ``n``'s last activity: spread over the first two days, at odd minutes."""
    return START + timedelta(hours=2 * n, minutes=7 + 3 * n)


def address(n: int) -> str:
    return f"a{n:02d}@example.com"


def local_day(moment: datetime) -> object:
    return moment.astimezone(STOCKHOLM).date()


def newsletter_days() -> dict[str, set[object]]:
    """Address -> the local days it gets the 07:45 newsletter (a rotating third)."""
    first = local_day(START)
    days: dict[str, set[object]] = defaultdict(set)
    for d in range(DAYS + 1):
        day = first + timedelta(days=d)  # type: ignore[operator]
        for n in range(CARTS):
            if n % 3 == d % 3:
                days[address(n)].add(day)
    return days


@pytest.mark.slow
def test_eight_days_hourly_beside_a_daily_newsletter_break_no_rule(shop: Shop) -> None:
    shop.configure(eligibility={"quiet_hours": {"start": "22:00", "end": "08:00"}})
    got_newsletter = newsletter_days()
    sends = [{"email": email, "sent_at": iso(datetime.combine(day, time(7, 45), STOCKHOLM)), "campaign": f"Daily {day}"}
             for email, days in got_newsletter.items() for day in sorted(days)]
    write_csv(shop.folder / "sends.csv", sends, ["email", "sent_at", "campaign"])
    shop.configure(source={"newsletters": {"file": "sends.csv"}})
    orders = {n: activity(n) + after for n, after in ORDERED.items()}
    out = shop.folder / "out"

    delivered: list[tuple[datetime, dict]] = []
    deferred: Counter[str] = Counter()
    for hour in range(1, DAYS * 24 + 1):  # from the first cart on (an empty export is reported)
        now = START + timedelta(hours=hour)
        shop.carts = [row for n in range(CARTS) if activity(n) <= now
                      for row in cart(f"c{n:02d}", email=address(n), now=activity(n), idle=timedelta(0))]
        shop.orders = [order(f"o{n}", email=address(n), created=at) for n, at in orders.items() if at <= now]
        result = shop.cli("run", "--outbox", str(out), "--json", now=now)
        assert result.exit_code == 0, result.output
        for row in result.json["decisions"]:
            if row["delivery"] == "sent":
                delivered.append((now, row))
            if row["action"] == "defer":
                deferred[row["reason"]] += 1

    per_day: Counter[tuple[str, object]] = Counter()
    steps: dict[str, list[tuple[int, datetime]]] = defaultdict(list)
    for now, row in delivered:
        email, n = row["email"], int(row["cart_id"][1:])
        day = local_day(now)
        assert day not in got_newsletter[email], f"{email} got a reminder on its newsletter day {day}"
        per_day[(email, day)] += 1
        clock = now.astimezone(STOCKHOLM).time()
        assert time(8, 0) <= clock < time(22, 0), f"reminder in quiet hours: {row['cart_id']} at {clock}"
        if n in orders:
            assert now < orders[n], f"{row['cart_id']} reminded after its order"
        assert now >= activity(n) + DELAYS[row["step"] - 1], f"{row['cart_id']} step {row['step']} early"
        steps[row["cart_id"]].append((row["step"], now))
    assert max(per_day.values()) == 1  # one reminder per address per local day
    for cart_id, sent in steps.items():
        numbers = [step for step, _now in sent]
        assert numbers == list(range(1, len(numbers) + 1)), f"{cart_id}: steps {numbers}"
    never_ordered = [f"c{n:02d}" for n in range(CARTS) if n not in ORDERED]
    assert all(len(steps[cart_id]) == 3 for cart_id in never_ordered), {c: len(steps[c]) for c in never_ordered}
    assert deferred["newsletter_today"] > 0  # the rule was exercised, not dodged
    assert len(list(out.glob("*.eml"))) == len(delivered)
    ledger = Ledger(f"sqlite:///{shop.folder / 'ledger.db'}")
    try:
        rows = ledger.messages()
    finally:
        ledger.close()
    assert Counter((m["cart_key"], m["step"]) for m in rows).most_common(1)[0][1] == 1
    assert {m["status"] for m in rows} == {"sent"} and len(rows) == len(delivered)
