"""A `run --send` killed with SIGKILL mid-send, then run again: at most once, and fully accounted.

The run is a real subprocess sending to the loopback server at a limited rate; the test kills it
once the server has accepted some messages. Then:

- every message the server accepted is in the ledger, as ``claimed`` (the run died before
  recording it) or ``sent``; no ``sent`` row lacks a message at the server;
- the next run reports the claims without outcome and does not resend them, so no address gets
  a step twice (at most once: for marketing mail a missed reminder beats a duplicate);
- ``--resend-unconfirmed`` does resend them, and the test shows the price: the addresses whose
  message had arrived before the kill get it twice.
"""

from __future__ import annotations

import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from smtpserver import Fault, LoopbackSMTP, SilentRelay

from cartrescue.ledger import Ledger
from conftest import NOW, REPO, Shop, cart, iso

pytestmark = [pytest.mark.smtp, pytest.mark.slow]


def start_run(shop: Shop, *extra: str) -> subprocess.Popen[bytes]:
    """The real command in its own process; its output goes to files (a full pipe would block it)."""
    shop.write()
    command = [sys.executable, "-m", "cartrescue.cli", "run", "--send", "--json", "--config", str(shop.config_path),
               "--now", iso(NOW), *extra]
    runs = len(list(shop.folder.glob("run-*.out")))
    out = (shop.folder / f"run-{runs}.out").open("wb")
    err = (shop.folder / f"run-{runs}.err").open("wb")
    return subprocess.Popen(command, cwd=REPO, stdout=out, stderr=err)


def finish(shop: Shop, process: subprocess.Popen[bytes]) -> dict:
    """Wait for a run; its JSON report."""
    process.wait(120)
    number = len(list(shop.folder.glob("run-*.out"))) - 1
    error = (shop.folder / f"run-{number}.err").read_text()
    assert process.returncode == 0, error
    return json.loads((shop.folder / f"run-{number}.out").read_text())


def stop_mid_send(shop: Shop, server: LoopbackSMTP, after: int = 8) -> dict:
    """Start a run, SIGTERM it once the server has ``after`` messages (their replies still to
    come, with a "late" fault); its exit is 130 and this returns its JSON document."""
    process = start_run(shop)
    number = len(list(shop.folder.glob("run-*.out"))) - 1
    deadline = time.monotonic() + 60
    while len(server.messages) < after and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    assert process.poll() is None, (shop.folder / f"run-{number}.err").read_text()
    process.send_signal(signal.SIGTERM)
    assert process.wait(60) == 130
    return json.loads((shop.folder / f"run-{number}.out").read_text())


def rows(shop: Shop) -> dict[int, dict]:
    ledger = Ledger(f"sqlite:///{shop.folder / 'ledger.db'}")
    try:
        return {row["id"]: row for row in ledger.messages()}
    finally:
        ledger.close()


def accounted(shop: Shop, server: LoopbackSMTP) -> dict[int, dict]:
    """Assert every accepted message has its ledger row (claimed or sent), and the reverse for sent.

    The message is built before its claim, so the claim row carries its Message-ID.
    """
    ledger = rows(shop)
    by_message_id = {row["message_id"]: claim_id for claim_id, row in ledger.items()}
    assert len(by_message_id) == len(ledger) and "" not in by_message_id
    seen: set[int] = set()
    for message in server.messages:
        parsed = message.parsed()
        claim_id = by_message_id[parsed["Message-ID"]]
        row = ledger[claim_id]
        assert row["status"] in ("claimed", "sent"), row
        assert row["cart_key"] == parsed["X-Cartrescue-Cart"] and str(row["step"]) == parsed["X-Cartrescue-Step"]
        seen.add(claim_id)
    assert {i for i, row in ledger.items() if row["status"] == "sent"} <= seen
    return ledger


@pytest.mark.parametrize("kill_after", [40, 290], ids=["in-first-batch", "in-second-batch"])
def test_sigkill_mid_send_then_rerun_sends_no_step_twice(shop: Shop, kill_after: int) -> None:
    addresses = [f"k{n:03d}@example.com" for n in range(400)]
    shop.add(*(cart(f"k{n:03d}") for n in range(400)))
    with LoopbackSMTP() as server:
        shop.configure(smtp=server.smtp_config(rate_per_second=150, pool_size=4))
        process = start_run(shop)
        deadline = time.monotonic() + 60
        while len(server.messages) < kill_after and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.005)
        assert process.poll() is None, (shop.folder / "run-0.err").read_text()
        os.kill(process.pid, signal.SIGKILL)
        process.wait(10)
        time.sleep(0.3)  # whatever was in flight lands now or never
        before_kill = Counter(r for m in server.messages for r in m.rcpt_tos)
        assert kill_after <= sum(before_kill.values()) < 400

        ledger = accounted(shop, server)
        claimed = {i for i, row in ledger.items() if row["status"] == "claimed"}
        assert claimed  # the killed run left claims without outcome
        undelivered = {ledger[i]["email"] for i in claimed} - set(before_kill)
        assert len(undelivered) <= 4  # claims are made as connections take them: at most the pool in flight

        report = finish(shop, start_run(shop))
        assert report["unconfirmed"] == len(claimed) and report["released"] == 0
        assert report["killed_left"] == len(claimed)  # this run found the killed one: said once
        with sqlite3.connect(shop.folder / "ledger.db") as db:  # the killed run's record is closed, not "running"
            killed_sent = db.execute("SELECT COUNT(*) FROM cr_message WHERE run_id = 1 AND status = 'sent'").fetchone()[0]
            assert db.execute("SELECT status, sent FROM cr_run WHERE id = 1").fetchone() == ("killed", killed_sent)

        received = server.recipients()
        assert set(received.values()) == {1}  # no address got its step twice
        ledger = accounted(shop, server)
        assert {i for i, row in ledger.items() if row["status"] == "claimed"} == claimed  # reported, not resent
        lost = {ledger[i]["email"] for i in claimed} - set(before_kill)
        assert lost.isdisjoint(received)  # at most once: those are not retried without --resend-unconfirmed
        assert set(received) | lost == set(addresses)  # everyone else got exactly one message

        # The opt-in: resend the unconfirmed ones. Those that had arrived arrive a second time.
        report = finish(shop, start_run(shop, "--resend-unconfirmed"))
        assert report["released"] == len(claimed)
        server.wait_for(len(server.messages))
    final = rows(shop)
    assert {row["status"] for row in final.values()} == {"sent"}
    twice = {address for address, count in server.recipients().items() if count == 2}
    assert twice == {ledger[i]["email"] for i in claimed} & set(before_kill)
    assert set(server.recipients()) == set(addresses)


def test_sigterm_mid_send_records_the_messages_in_flight_and_a_rerun_sends_the_rest(shop: Shop) -> None:
    """A stopped run (SIGTERM, Ctrl-C) claims nothing more and waits for the replies to the
    messages already on their way (up to channels.base.STOP_GRACE): each is recorded as what its reply
    says, none is left ``claimed`` to be reported unconfirmed (and not sent again) later."""
    addresses = [f"t{n:03d}@example.com" for n in range(60)]
    shop.add(*(cart(f"t{n:03d}") for n in range(60)))
    with LoopbackSMTP(faults=[Fault(r"^t", "late", stage="DATA", delay=0.2)]) as server:  # replies come late
        shop.configure(smtp=server.smtp_config(pool_size=4))
        document = stop_mid_send(shop, server)
        assert document["error"]["code"] == "interrupted"
        ledger = accounted(shop, server)
        assert {row["status"] for row in ledger.values()} <= {"sent", "failed_transient"}  # none left claimed
        sent = sum(row["status"] == "sent" for row in ledger.values())
        assert sent == len(server.messages) < 60
        # The document and the run's record in the ledger count every message the run recorded,
        # those in flight at the stop too (their results never reached the run's loop).
        assert document["counts"]["sent"] == sent
        with sqlite3.connect(shop.folder / "ledger.db") as db:
            assert db.execute("SELECT status, sent FROM cr_run").fetchall() == [("interrupted", sent)]

        report = finish(shop, start_run(shop))
        assert report["unconfirmed"] == 0
    received = server.recipients()
    assert set(received.values()) == {1} and set(received) == set(addresses)


def test_sigterm_gives_up_a_retry_still_waiting_and_the_next_run_sends_it(shop: Shop) -> None:
    """A greylisted message waits out its backoff when the run is stopped: the run ends now (not
    after the backoff), the row is ``failed_transient`` rather than a claim without outcome, and
    the next run sends it."""
    shop.add(cart("grey"), *(cart(f"ok{n}") for n in range(3)))
    with LoopbackSMTP(faults=[Fault(r"^grey@", "451 4.7.1 Greylisted, try again later", times=1)]) as server:
        shop.configure(smtp=server.smtp_config(backoff="60s", backoff_max="60s"))
        process = start_run(shop)
        deadline = time.monotonic() + 60
        while (len(server.messages) < 3 or not server.attempts["grey@example.com"]) and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.2)  # the other outcomes are recorded; grey@ waits for its retry
        assert process.poll() is None, (shop.folder / "run-0.err").read_text()
        process.send_signal(signal.SIGTERM)
        assert process.wait(30) == 130  # not after the 60 s backoff
        grey = next(row for row in rows(shop).values() if row["email"] == "grey@example.com")
        assert grey["status"] == "failed_transient" and "the run was stopped" in grey["reply"]

        report = finish(shop, start_run(shop))
        assert report["unconfirmed"] == 0 and report["counts"]["sent"] == 1
    assert server.recipients() == Counter({"grey@example.com": 1, "ok0@example.com": 1, "ok1@example.com": 1,
                                           "ok2@example.com": 1})


@pytest.mark.usefixtures("stop_signal")
def test_a_stop_while_the_outcomes_of_sent_messages_are_written_waits_until_they_are(
        shop: Shop, monkeypatch: pytest.MonkeyPatch) -> None:
    """The signal comes just as the run writes the outcomes of messages the relay accepted (the
    moment is forced here: outcomes are written only at the end, and the write raises SIGTERM
    first). Raised there, the KeyboardInterrupt rolled the write back: the rows stayed
    ``claimed`` and the next run reported them unconfirmed, never to be sent again."""
    from cartrescue.ledger import Ledger as LedgerClass
    from cartrescue.pipeline import executor

    monkeypatch.setattr(executor, "FLUSH_EVERY", 10**6)  # no outcome written before the end
    monkeypatch.setattr(executor, "FLUSH_SECONDS", 10**6.0)
    original = LedgerClass.record

    def record(self: LedgerClass, outcomes: Any) -> None:
        outcomes = list(outcomes)
        if any(status == "sent" for _id, status, _reply, _mid in outcomes):
            signal.raise_signal(signal.SIGTERM)  # handled at once, unless the signals are held
        original(self, outcomes)

    monkeypatch.setattr(LedgerClass, "record", record)
    shop.add(*(cart(f"h{n}") for n in range(3)))
    with LoopbackSMTP() as server:
        shop.configure(smtp=server.smtp_config(pool_size=4))
        result = shop.cli("run", "--send", "--json")
        assert result.exit_code == 130, result.output
        assert len(server.messages) == 3
    assert [row["status"] for row in rows(shop).values()] == ["sent"] * 3


@pytest.mark.usefixtures("stop_signal")
def test_a_stop_in_the_outbox_writes_the_file_under_way_and_leaves_the_rest_for_the_next_run(
        shop: Shop, monkeypatch: pytest.MonkeyPatch) -> None:
    """``--outbox`` claims 16 messages at a time. The signal comes as the fifth file is named
    (the moment is forced here): that file is written and recorded, the other eleven claimed with
    it are ``failed_transient``, and the next run writes them. Raised there, the KeyboardInterrupt
    had left those twelve ``claimed`` with no file: never to be written (at most once)."""
    from cartrescue.channels.outbox import OutboxChannel

    named: list[str] = []
    original = OutboxChannel.filename

    def filename(self: OutboxChannel, envelope: Any) -> Path:
        named.append(envelope.decision.cart.key)
        if len(named) == 5:
            signal.raise_signal(signal.SIGTERM)
        return original(self, envelope)

    monkeypatch.setattr(OutboxChannel, "filename", filename)
    shop.add(*(cart(f"o{n:02d}") for n in range(40)))
    stopped = shop.cli("run", "--outbox", "out", "--json")
    assert stopped.exit_code == 130, stopped.output
    statuses = Counter(row["status"] for row in rows(shop).values())
    assert statuses == Counter({"sent": 5, "failed_transient": 11})
    assert len(list((shop.folder / "out").glob("*.eml"))) == 5

    again = shop.cli("run", "--outbox", "out", "--json")
    assert again.exit_code == 0, again.output
    assert again.json["unconfirmed"] == 0
    files = list((shop.folder / "out").glob("*.eml"))
    carts = Counter(path.name.split("-step")[0] for path in files)
    assert len(carts) == 40 and set(carts.values()) == {1}  # every cart's step once


def test_sigterm_under_a_rate_limit_sends_none_of_the_messages_waiting_for_their_turn(shop: Shop) -> None:
    """Under ``smtp.rate_per_second`` each free connection takes (claims) a message and waits for
    its turn. A stop ends those waits: none of them goes out afterwards, each is recorded
    ``failed_transient`` for the next run, and nothing is left ``claimed``."""
    shop.add(*(cart(f"r{n:02d}") for n in range(8)))
    with LoopbackSMTP() as server:
        shop.configure(smtp=server.smtp_config(rate_per_second=2, pool_size=4))
        process = start_run(shop)
        deadline = time.monotonic() + 60
        while len(server.messages) < 2 and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.005)
        process.send_signal(signal.SIGTERM)
        stopped_at = time.monotonic()
        assert process.wait(30) == 130
        after = [m for m in server.messages if m.at > stopped_at]
        assert len(after) <= 1  # at most the one in flight; before, each one waiting went out, 0.5 s apart
        ledger = accounted(shop, server)
        statuses = Counter(row["status"] for row in ledger.values())
        assert statuses["sent"] == len(server.messages) and set(statuses) <= {"sent", "failed_transient"}
        assert statuses["failed_transient"] >= 1

        report = finish(shop, start_run(shop))
        assert report["unconfirmed"] == 0
    received = server.recipients()
    assert set(received.values()) == {1} and len(received) == 8


def test_sigterm_while_the_relay_has_not_greeted_leaves_every_claim_for_the_next_run(shop: Shop) -> None:
    """A relay that takes the connections and never greets, and a stop (cron's ``timeout``, a
    service manager): after the grace the claims of the messages that never went out are
    ``failed_transient``, and the next run sends them. They had stayed ``claimed``, which the
    next runs counted as unconfirmed and skipped: those customers never got their reminder."""
    shop.add(*(cart(f"s{n}") for n in range(3)))
    with SilentRelay() as relay:
        shop.configure(smtp=relay.smtp_config(pool_size=2, timeout="15m"))
        process = start_run(shop)
        deadline = time.monotonic() + 60
        while len(relay.accepted) < 2 and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)
        assert process.poll() is None, (shop.folder / "run-0.err").read_text()
        process.send_signal(signal.SIGTERM)
        assert process.wait(60) == 130
    stopped = rows(shop).values()
    assert len(stopped) == 2  # one a connection; the third cart was never claimed
    assert all(row["status"] == "failed_transient" and "the run was stopped" in row["reply"] for row in stopped)
    with LoopbackSMTP() as server:
        shop.configure(smtp=server.smtp_config())
        report = finish(shop, start_run(shop))
    assert report["unconfirmed"] == 0 and report["counts"]["sent"] == 3
    assert server.recipients() == Counter({f"s{n}@example.com": 1 for n in range(3)})


def test_the_document_of_a_stopped_run_lists_each_message_it_recorded(shop: Shop) -> None:
    """The stop lands while a group of carts is being delivered: the document said ``sent: 8``
    and listed no cart (``carts: 0``, ``decisions: []``); now each message the run recorded is
    there with its outcome, and the counts add up."""
    shop.add(*(cart(f"t{n:03d}") for n in range(60)))
    with LoopbackSMTP(faults=[Fault(r"^t", "late", stage="DATA", delay=0.2)]) as server:
        shop.configure(smtp=server.smtp_config(pool_size=4))
        document = stop_mid_send(shop, server)
    recorded = {row["cart_key"].rpartition(":")[2]: row["status"] for row in rows(shop).values()}
    listed = {d["cart_id"]: d["delivery"] for d in document["decisions"]}
    assert listed == recorded and len(recorded) >= 8
    assert document["counts"]["sent"] == sum(status == "sent" for status in recorded.values())
    assert document["counts"]["carts"] == len(document["decisions"])


def test_a_stopped_run_lists_the_messages_in_flight_and_the_next_run_says_once_they_have_no_outcome(
        shop: Shop) -> None:
    """The relay takes every message whole and never answers; SIGTERM. The messages in flight
    keep their claim without outcome (they may have arrived). The document listed none of them
    (``send`` 0 while the relay had them all, the ledger their claims); now each is there,
    ``unconfirmed``, and the counts add up. The next run says once that they were left without
    outcome (``killed_left``), as for a killed run: the stopped run ended ``interrupted``, not
    ``running``, and no run said it."""
    shop.add(*(cart(f"t{n:03d}") for n in range(12)))
    with LoopbackSMTP(faults=[Fault(r"^t", "late", stage="DATA", delay=3600)]) as server:  # no answer, ever
        shop.configure(smtp=server.smtp_config(pool_size=3))
        document = stop_mid_send(shop, server, after=3)
        relay_had = len(server.messages)
    recorded = {row["cart_key"].rpartition(":")[2]: row["status"] for row in rows(shop).values()}
    in_flight = {cart_id for cart_id, status in recorded.items() if status == "claimed"}
    assert len(in_flight) == relay_had >= 3
    listed = {d["cart_id"]: d["delivery"] for d in document["decisions"] if d["action"] == "send"}
    assert listed == {cart_id: "unconfirmed" if status == "claimed" else status for cart_id, status in recorded.items()}
    assert all("in flight at the stop" in d["detail"] for d in document["decisions"] if d["cart_id"] in in_flight)
    counts = document["counts"]
    assert counts["deliveries"].get("unconfirmed") == len(in_flight)
    assert counts["send"] == len(listed) == counts["sent"] + counts["failed"] + counts["deliveries"]["unconfirmed"]
    assert counts["carts"] == len(document["decisions"])

    with LoopbackSMTP() as server:
        shop.configure(smtp=server.smtp_config())
        after = finish(shop, start_run(shop))
        assert (after["unconfirmed"], after["killed_left"]) == (len(in_flight), len(in_flight))  # said
        again = finish(shop, start_run(shop))
        assert (again["unconfirmed"], again["killed_left"]) == (len(in_flight), 0)  # once
    assert not in_flight & {r.split("@")[0] for r in server.recipients()}  # at most once: not resent


def test_a_stopped_run_without_json_says_how_many_messages_were_in_flight(shop: Shop) -> None:
    """What cron mails of a stopped run: it said ``stopped: 0 delivered, 0 failed`` while the
    relay held two whole messages whose claims have no outcome."""
    shop.add(*(cart(f"t{n}") for n in range(4)))
    with LoopbackSMTP(faults=[Fault(r"^t", "late", stage="DATA", delay=3600)]) as server:
        shop.configure(smtp=server.smtp_config(pool_size=2))
        shop.write()
        process = subprocess.Popen([sys.executable, "-m", "cartrescue.cli", "run", "--send", "--quiet", "--config",
                                    str(shop.config_path), "--now", iso(NOW)], cwd=REPO,
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 60
        while len(server.messages) < 2 and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.005)
        process.send_signal(signal.SIGTERM)
        _out, err = process.communicate(timeout=60)
    assert process.returncode == 130
    # (failed: the messages queued behind them, not sent: failed_transient, the next run sends them)
    assert re.search(r"stopped: 0 delivered, \d+ failed, 2 in flight without an answer \(unconfirmed",
                     " ".join(err.split())), err


@pytest.mark.postgres
def test_a_run_stopped_by_the_ledger_lists_each_message_it_claimed_and_the_next_run_says_so_once() -> None:
    """The PostgreSQL ledger's connections are cut (a failover, ``pg_terminate_backend``) while
    three messages wait for replies that never come: the run stops, exit 2. Its document listed
    none of the chunk's messages (``send`` 0 beside ``sent`` N); now each one the run claimed is
    there, the three as ``unconfirmed``, and the counts add up. The next run says once that they
    were left without outcome."""
    from shopdb import shop_database
    from sqlalchemy import text

    import tempfile

    with tempfile.TemporaryDirectory() as folder, shop_database("postgres", "ledger") as db:
        shop = Shop(Path(folder))
        shop.add(*(cart(f"h{n}", idle=timedelta(hours=3)) for n in range(3)),  # first in line: the oldest
                 *(cart(f"t{n:03d}") for n in range(40)))
        with LoopbackSMTP(faults=[Fault(r"^h", "late", stage="DATA", delay=3600),
                                  Fault(r"^t", "late", stage="DATA", delay=0.2)]) as server:
            shop.configure(smtp=server.smtp_config(pool_size=4), ledger={"url": db.url})
            process = start_run(shop)
            deadline = time.monotonic() + 60
            while len(server.messages) < 8 and process.poll() is None and time.monotonic() < deadline:
                time.sleep(0.005)
            assert {m.rcpt_tos[0][:1] for m in server.messages} == {"h", "t"}, (shop.folder / "run-0.err").read_text()
            with db.admin.connect() as admin:
                admin.execute(text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE "
                                   "datname = current_database() AND pid <> pg_backend_pid()"))
            assert process.wait(60) == 2
            document = json.loads((shop.folder / "run-0.out").read_text())
            ledger = Ledger(db.url)
            try:
                recorded = {row["cart_key"].rpartition(":")[2]: row["status"] for row in ledger.messages()}
            finally:
                ledger.close()
            assert document["error"]["exit_code"] == 2
            listed = {d["cart_id"]: d["delivery"] for d in document["decisions"] if d["action"] == "send"}
            assert set(listed) == set(recorded)  # every claim of the run, listed
            assert {listed[f"h{n}"] for n in range(3)} == {"unconfirmed"}
            assert all(listed[cart_id] == status for cart_id, status in recorded.items() if status != "claimed")
            counts = document["counts"]
            assert counts["send"] == len(listed) == counts["sent"] + counts["failed"] + counts["deliveries"]["unconfirmed"]
            assert "error ignored" not in (shop.folder / "run-0.err").read_text()
        left = sum(status == "claimed" for status in recorded.values())
        with LoopbackSMTP() as server:
            shop.configure(smtp=server.smtp_config())
            after = finish(shop, start_run(shop))
            again = finish(shop, start_run(shop))
        assert after["killed_left"] == left >= 3 and again["killed_left"] == 0
        assert not {f"h{n}@example.com" for n in range(3)} & set(server.recipients())  # at most once
