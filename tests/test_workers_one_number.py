"""One number, one text a day, whatever the shards.

Carts are split over workers by address, so two addresses with one phone number may fall in two
shards, whose planners each see only their own carts. The ledger's claim checks the number in
its own transaction: a text or call to a number that had a message that day is refused, whichever
shard, worker or host claimed that message. Real runs against the loopback Twilio emulator, and
claims on SQLite, PostgreSQL and MariaDB ledgers.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest
import shopdb
from httpserver import Answer, Seen, TwilioEmulator

from cartrescue.ledger import ClaimRequest, Ledger
from cartrescue.shards import shard_of
from conftest import NOW, Shop, cart
from test_sms_channel import sms_shop

SHARED = "+46701234500"
LEDGERS = ["sqlite", *shopdb.KINDS]
#: NOW's day in Stockholm (the test shop's timezone): 2026-11-19 23:00 to 2026-11-20 23:00 UTC.
DAY = (datetime.fromisoformat("2026-11-19T23:00:00+00:00"), datetime.fromisoformat("2026-11-20T23:00:00+00:00"))


@pytest.fixture(params=LEDGERS)
def ledger_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'ledger.db'}"
        return
    with shopdb.shop_database(request.param, "ledger") as db:
        yield db.url


class TwoShardsPlanFirst(TwilioEmulator):
    """Holds the answer to each shard's first text until both shards have sent theirs: by then
    both have planned all their carts, so neither planner saw the other's text to the shared
    number (the race of two workers, made certain)."""

    def __init__(self) -> None:
        super().__init__()
        self.both_sending = threading.Barrier(2, timeout=30)

    def answer(self, seen: Seen) -> Answer:
        if seen.method == "POST" and seen.form.get("To") != SHARED:
            self.both_sending.wait()
        return super().answer(seen)


@pytest.mark.parametrize("ledger_url", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)],
                         indirect=True)
def test_one_number_under_two_addresses_in_two_workers_gets_one_text_a_day(shop: Shop, ledger_url: str) -> None:
    first, second = shard_of("ann3@example.com", 2), shard_of("ann0@example.com", 2)
    assert first != second and shard_of("ann4@example.com", 2) == first and shard_of("ann1@example.com", 2) == second
    with TwoShardsPlanFirst() as twilio:
        sms_shop(shop, twilio.url, carts=0, concurrency=1)
        shop.configure(ledger={"url": ledger_url})
        shop.add(cart("f1", email="ann4@example.com", phone="070-123 45 11", sms_consent="yes"),
                 cart("f2", email="ann1@example.com", phone="070-123 45 12", sms_consent="yes"),
                 cart("p1", email="ann3@example.com", phone="070-123 45 00", sms_consent="yes"),
                 cart("p2", email="ann0@example.com", phone="+46 70 123 45 00", sms_consent="yes"))
        result = shop.cli("run", "--send", "--json", "--workers", "2")
        assert result.exit_code == 0, result.output
        assert Counter(m["To"] for m in twilio.messages) == {SHARED: 1, "+46701234511": 1, "+46701234512": 1}
        decided = {row["cart_id"]: row for row in result.json["decisions"]}
        texted, waits = sorted(("p1", "p2"), key=lambda key: decided[key]["action"] != "send")
        assert decided[texted]["delivery"] == "sent"
        assert (decided[waits]["action"], decided[waits]["reason"]) == ("defer", "messaged_today")
        assert decided[waits]["not_before"] == "2026-11-20T23:00:00Z"  # the shop's midnight
        assert result.json["counts"]["reasons"] == {"due": 3, "messaged_today": 1}
        after_midnight = shop.decisions(NOW + timedelta(hours=14))  # 01:00 the next day, shop time
        assert after_midnight[waits]["reason"] == "due" and after_midnight[texted]["reason"] == "step_not_due"


def _text(key: str, phone: str, channel: str = "sms") -> ClaimRequest:
    return ClaimRequest(f"csv:{key}", key, f"{key}@example.com", 1, channel, channel, "reminder-1", None, "standard",
                        1.0, phone=phone)


def test_a_claim_refuses_a_text_or_call_to_a_number_another_shard_messaged_that_day(ledger_url: str) -> None:
    one, two = Ledger(ledger_url), Ledger(ledger_url)
    try:
        hour = timedelta(hours=1)
        first, second = one.start_run("send", NOW, "1/2"), two.start_run("send", NOW, "2/2")
        with one.lock(first, hour, "run:1/2"), two.lock(second, hour, "run:2/2"):
            mailed = one.claim(first, [_text("a", SHARED, "email")], NOW, lock_name="run:1/2", day=DAY)
            assert list(mailed) == [("csv:a", 1, "email")]  # an e-mail to another address of the number
            refused = two.claim(second, [_text("b", SHARED), _text("c", SHARED, "call-list"),
                                         _text("d", "+46701234599")], NOW, lock_name="run:2/2", day=DAY)
            assert list(refused) == [("csv:d", 1, "sms")]
            assert refused.refused == {("csv:b", 1, "sms"), ("csv:c", 1, "call-list")}
            tomorrow = two.claim(second, [_text("b", SHARED)], NOW + timedelta(days=1), lock_name="run:2/2",
                                 day=(DAY[0] + timedelta(days=1), DAY[1] + timedelta(days=1)))
            assert list(tomorrow) == [("csv:b", 1, "sms")] and not tomorrow.refused
    finally:
        one.close()
        two.close()


def test_texts_to_one_number_claimed_at_once_by_two_shards_give_one_claim(ledger_url: str) -> None:
    """The two claims meet in the ledger at the same moment: the second must see the first."""
    shards = [Ledger(ledger_url) for _ in range(2)]
    try:
        runs = [ledger.start_run("send", NOW, f"{k}/2") for k, ledger in enumerate(shards, start=1)]
        at_once = threading.Barrier(2)
        won: list[list[str]] = [[], []]

        def claim(k: int) -> None:
            for number in range(15):
                at_once.wait()
                got = shards[k].claim(runs[k], [_text(f"n{number}-{k}", f"+467012346{number:02d}")], NOW,
                                      lock_name=f"run:{k + 1}/2", day=DAY)
                won[k] += [key for key, _step, _channel in got]

        hour = timedelta(hours=1)
        with shards[0].lock(runs[0], hour, "run:1/2"), shards[1].lock(runs[1], hour, "run:2/2"):
            threads = [threading.Thread(target=claim, args=(k,)) for k in (0, 1)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(60)
        assert len(won[0]) + len(won[1]) == 15  # one text per number, whoever won it
        assert Counter(row["phone"] for row in shards[0].messages()).most_common(1)[0][1] == 1
    finally:
        for ledger in shards:
            ledger.close()
