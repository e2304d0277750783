"""A `run --send` on the SMS and webhook channels killed with SIGKILL mid-run, then run again.

The run is a real subprocess talking to the loopback Twilio emulator (or webhook receiver) at a
limited rate; the test kills it once some messages were accepted. Then, as for SMTP:

- every accepted message has its ledger row (``claimed`` when the run died before recording it,
  else ``sent``), and no ``sent`` row lacks an accepted message;
- a kill leaves at most ``concurrency`` claims whose message never arrived (each request is
  claimed only as a free slot takes it);
- the next run reports the claims without outcome and sends none of them again: no number (or
  cart) gets a step twice.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from typing import Any

import pytest
from httpserver import ACCOUNT_SID, AUTH_TOKEN, TwilioEmulator, WebhookReceiver

from conftest import NOW, REPO, Shop, cart, iso

pytestmark = pytest.mark.slow

CONCURRENCY = 4
CARTS = 240


def start_run(shop: Shop) -> subprocess.Popen[bytes]:
    shop.write()
    runs = len(list(shop.folder.glob("run-*.out")))
    return subprocess.Popen(
        [sys.executable, "-m", "cartrescue.cli", "run", "--send", "--json", "--config", str(shop.config_path),
         "--now", iso(NOW)], cwd=REPO, stdout=(shop.folder / f"run-{runs}.out").open("wb"),
        stderr=(shop.folder / f"run-{runs}.err").open("wb"))


def finish(shop: Shop, process: subprocess.Popen[bytes]) -> dict[str, Any]:
    process.wait(120)
    number = len(list(shop.folder.glob("run-*.out"))) - 1
    assert process.returncode == 0, (shop.folder / f"run-{number}.err").read_text()
    return json.loads((shop.folder / f"run-{number}.out").read_text())


def rows(shop: Shop) -> dict[int, dict[str, Any]]:
    return {row["id"]: row for row in shop.messages()}


def kill_midway(shop: Shop, accepted: Any, at_least: int) -> None:
    process = start_run(shop)
    deadline = time.monotonic() + 60
    while accepted() < at_least and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    assert process.poll() is None, (shop.folder / "run-0.err").read_text()
    os.kill(process.pid, signal.SIGKILL)
    process.wait(10)
    time.sleep(0.3)  # whatever was in flight lands now or never


def test_sigkill_mid_sms_run_then_rerun_texts_no_number_twice(shop: Shop) -> None:
    numbers = [f"+46701{n:06d}" for n in range(CARTS)]
    shop.add(*(cart(f"k{n:03d}", phone=numbers[n], sms_consent="yes") for n in range(CARTS)))
    with TwilioEmulator() as twilio:
        shop.configure(priority={"tiers": [{"name": "standard", "min_score": 0, "channel": "sms"}]},
                       sms={"sender": "+46700000001", "quiet_hours": None, "concurrency": CONCURRENCY,
                            "rate_per_second": 120,
                            "twilio": {"account_sid": ACCOUNT_SID, "auth_token": AUTH_TOKEN, "base_url": twilio.url}})
        kill_midway(shop, lambda: len(twilio.messages), 60)
        before = Counter(m["To"] for m in twilio.messages)
        assert 60 <= sum(before.values()) < CARTS and set(before.values()) == {1}

        ledger = rows(shop)
        by_sid = {row["reply"].split()[-1]: row for row in ledger.values() if row["status"] == "sent"}
        assert set(by_sid) <= {m["sid"] for m in twilio.messages}  # nothing is sent that the provider lacks
        assert all(row["phone"] in before for row in by_sid.values())
        claimed = {i for i, row in ledger.items() if row["status"] == "claimed"}
        assert claimed  # the killed run left claims without outcome
        assert {row["phone"] for row in ledger.values()} >= set(before)  # every accepted text has its row
        assert len({ledger[i]["phone"] for i in claimed} - set(before)) <= CONCURRENCY

        report = finish(shop, start_run(shop))
        assert report["unconfirmed"] == len(claimed)
        received = Counter(m["To"] for m in twilio.messages)
        assert set(received.values()) == {1}  # no number got its step twice
        lost = {rows(shop)[i]["phone"] for i in claimed} - set(before)
        assert lost.isdisjoint(received) and set(received) | lost == set(numbers)


def test_sigkill_mid_webhook_run_then_rerun_posts_no_cart_twice(shop: Shop) -> None:
    secret = "whsec-" + "k" * 30
    shop.add(*(cart(f"k{n:03d}") for n in range(CARTS)))
    with WebhookReceiver(secret) as receiver:
        shop.configure(priority={"tiers": [{"name": "standard", "min_score": 0, "channel": "webhook"}]},
                       webhook={"url": receiver.url, "secret": secret, "concurrency": CONCURRENCY,
                                "rate_per_second": 120})
        kill_midway(shop, lambda: len(receiver.accepted), 60)
        before = {str(document["id"]) for document in receiver.accepted.values()}  # the ledger ids taken
        ledger = rows(shop)
        claimed = {i for i, row in ledger.items() if row["status"] == "claimed"}
        assert claimed
        assert {str(i) for i, row in ledger.items() if row["status"] == "sent"} <= before
        assert before <= {str(i) for i in ledger}
        assert len({str(i) for i in claimed} - before) <= CONCURRENCY

        report = finish(shop, start_run(shop))
        assert report["unconfirmed"] == len(claimed)
        carts = Counter(doc["cart"]["id"] for doc in receiver.accepted.values())
        assert set(carts.values()) == {1} and receiver.replayed == []
        # The only requests not taken are those the kill cut short: their body never fully arrived.
        assert len(receiver.requests) == len(receiver.accepted) + len(receiver.refused)
        assert all(len(seen.body) < int(seen.headers["content-length"]) for seen in receiver.refused)
        lost = {str(i) for i in claimed} - before
        assert len(carts) + len(lost) == CARTS
