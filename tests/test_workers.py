"""Shards and workers: ``run --shard K/N`` and ``run --workers N`` decide like one run.

The carts are split by a stable hash of the customer's address, so one address (its newest
cart, its one stream, its one message a day) lives in one shard; budgets and ``--limit`` are
shared with a documented rounding; N workers report as one run: one JSON document, counts
added up, one exit code. The lock is per shard, and shards of one layout only.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from datetime import datetime, timedelta, timezone
from hashlib import blake2b
from pathlib import Path
from typing import Any

import pytest
from shopdb import shop_database

from cartrescue.errors import LockHeld, LockLost
from cartrescue.ledger import ClaimRequest, Ledger
from cartrescue.shards import Shard, compatible, shard_of
from cartrescue.workers import ShardReport, merge, worst_exit_code
from conftest import NOW, REPO, Shop, cart, iso, order, worker_pids


def _shop(shop: Shop, carts: int = 60, **config: Any) -> Shop:
    """Carts of single addresses, a few addresses with two carts (the newer one is due), and
    every fifth cart worth 250 (tier vip, budget 5)."""
    shop.configure(priority={"tiers": [{"name": "vip", "min_score": 40, "budget": 5},
                                       {"name": "standard", "min_score": 0}]}, **config)
    for n in range(carts):
        price = "250.00" if n % 5 == 0 else "25.00"
        shop.add(cart(f"c{n:03d}", email=f"a{n:03d}@example.com", items=[("SKU-1", "Mug", 1, price)]))
    for n in range(8):
        shop.add(cart(f"old{n}", email=f"twice{n}@example.com", idle=timedelta(hours=5)),
                 cart(f"new{n}", email=f"twice{n}@example.com", idle=timedelta(hours=2)))
    shop.add(cart("nobody", email=""))
    return shop


def _decided_in_halves(shop: Shop, split: str) -> dict[str, tuple[str, str]]:
    """Each cart's decision in a dry-run of two shards: ``--workers 2`` (one run, its helper's
    spools), or ``--shard 1/2`` then ``2/2`` (each shard's own pass over the export)."""
    if split == "workers":
        result = shop.cli("run", "--json", "--workers", "2")
        assert result.exit_code == 0, result.output
        return _decisions(result.json)
    decided: dict[str, tuple[str, str]] = {}
    for k in (1, 2):
        part = shop.cli("run", "--json", "--shard", f"{k}/2")
        assert part.exit_code == 0, part.output
        decided.update(_decisions(part.json))
    return decided


def _decisions(document: dict[str, Any]) -> dict[str, tuple[str, str]]:
    return {row["cart_id"]: (row["action"], row["reason"]) for row in document["decisions"]}


def test_a_shard_is_named_k_of_n_and_refuses_anything_else() -> None:
    assert Shard.parse("2/4") == Shard(2, 4) and str(Shard(2, 4)) == "2/4"
    assert Shard(2, 4).lock_name == "run:2/4" and Shard(1, 1).lock_name == "run"
    for bad in ("0/4", "5/4", "2", "a/b", "1/0", "1/1000"):
        with pytest.raises(ValueError):
            Shard.parse(bad)


def test_shares_add_up_to_the_total_and_differ_by_at_most_one() -> None:
    for count in (1, 2, 3, 4, 7):
        for total in (0, 1, 5, 20, 101):
            shares = [Shard(k, count).share(total) for k in range(1, count + 1)]
            assert sum(shares) == total and max(shares) - min(shares) <= 1
    assert [Shard(k, 4).share(10) for k in (1, 2, 3, 4)] == [3, 3, 2, 2]


def test_every_address_belongs_to_exactly_one_shard_by_a_stable_hash() -> None:
    addresses = [f"user{n}@example.com" for n in range(400)]
    for address in addresses:
        owners = [k for k in range(1, 5) if Shard(k, 4).owns(address, "csv:whatever")]
        expected = int.from_bytes(blake2b(address.encode(), digest_size=8).digest(), "big") % 4 + 1
        assert owners == [expected]
    assert Shard(1, 4).owns(" User7@Example.COM ", "k") == Shard(1, 4).owns("user7@example.com", "k")
    spread = Counter(shard_of(address, 4) for address in addresses)
    assert min(spread.values()) > 60  # 100 expected per shard
    assert [k for k in range(1, 4) if Shard(k, 3).owns(None, "csv:c1")] == [shard_of("csv:c1", 3)]


def test_the_shards_of_a_dry_run_together_decide_every_cart_like_one_run(shop: Shop) -> None:
    _shop(shop)
    whole = shop.cli("run", "--json", "--workers", "1")
    assert whole.exit_code == 0, whole.output
    parts = [shop.cli("run", "--json", "--shard", f"{k}/3") for k in (1, 2, 3)]
    merged: dict[str, tuple[str, str]] = {}
    for part in parts:
        assert part.exit_code == 0, part.output
        decided = _decisions(part.json)
        assert not set(decided) & set(merged)  # no cart in two shards
        merged.update(decided)
    one = _decisions(whole.json)
    assert merged.keys() == one.keys()
    # Budgets differ by design (each shard takes its share of the best): compare the rest exactly.
    assert {k: v for k, v in merged.items() if v[1] != "tier_budget" and v[1] != "due"} == \
           {k: v for k, v in one.items() if v[1] != "tier_budget" and v[1] != "due"}
    sent_vip = [row for part in parts for row in part.json["decisions"]
                if row["tier"] == "vip" and row["action"] == "send"]
    assert len(sent_vip) == 5  # 2 + 2 + 1: the tier's budget of 5, shared
    for n in range(8):  # one address, one stream: the newer cart, in whichever shard holds the address
        assert merged[f"new{n}"] == ("send", "due") and merged[f"old{n}"][1] == "newer_cart_for_address"


@pytest.mark.parametrize("split", ["workers", "shards"])
def test_a_newer_empty_cart_leaves_the_older_cart_its_reminders_in_every_shard(shop: Shop, split: str) -> None:
    """Each shard finds its addresses' newest carts alone: from the activity spools the run's
    helper writes (``--workers``), or from its own pass over the export (``--shard``). Either
    way a newer cart with nothing in it is no address's newest."""
    for n in range(8):
        shop.add(cart(f"old{n}", email=f"emptied{n}@example.com", idle=timedelta(hours=5)),
                 cart(f"new{n}", email=f"emptied{n}@example.com", idle=timedelta(hours=2), items=[("", "", "", "")]))
    decided = _decided_in_halves(shop, split)
    assert {decided[f"old{n}"] for n in range(8)} == {("send", "due")}
    assert {decided[f"new{n}"] for n in range(8)} == {("skip", "empty_cart")}


@pytest.mark.parametrize("split", ["workers", "shards"])
def test_a_customer_known_by_the_number_gets_the_stream_of_their_newest_cart_in_its_shard(
    shop: Shop, split: str
) -> None:
    """A cart without an address goes to a shard by its cart key, and its customer is their
    number there (``newest.customer_key``): the activity spools the run's helper writes
    (``--workers``) and a shard's own pass over the export (``--shard``) carry the number, so two
    carts of one number in one shard are one stream, as in an unsharded run."""
    shop.configure(priority={"tiers": [{"name": "standard", "min_score": 0, "channel": "call-list"}]})
    pairs = [n for n in range(40) if shard_of(f"csv:old{n}", 2) == shard_of(f"csv:new{n}", 2)][:8]
    for n in pairs:
        shop.add(cart(f"old{n}", email="", phone=f"+46 8 123 456 {n:02d}", idle=timedelta(hours=5)),
                 cart(f"new{n}", email="", phone=f"+468123456{n:02d}", idle=timedelta(hours=2)))
    assert {shard_of(f"csv:new{n}", 2) for n in pairs} == {1, 2}  # both shards hold some
    decided = _decided_in_halves(shop, split)
    assert {decided[f"old{n}"] for n in pairs} == {("skip", "newer_cart_for_address")}
    assert {decided[f"new{n}"] for n in pairs} == {("send", "due")}


def test_n_workers_print_one_document_whose_counts_add_up(shop: Shop) -> None:
    _shop(shop)
    whole = shop.cli("run", "--json", "--workers", "1").json
    result = shop.cli("run", "--json", "--workers", "3")
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)  # exactly one document
    assert len(document["decisions"]) == len(whole["decisions"]) == document["counts"]["carts"]
    assert _decisions(document).keys() == _decisions(whole).keys()
    assert document["counts"]["send"] == whole["counts"]["send"]  # 8 + 1 + ... the same total, budget included
    assert document["workers"] == 3 and [s["shard"] for s in document["shards"]] == ["1/3", "2/3", "3/3"]
    assert sum(s["counts"]["carts"] for s in document["shards"]) == document["counts"]["carts"]
    for key in ("send", "skip", "defer"):
        assert sum(s["counts"][key] for s in document["shards"]) == document["counts"][key]
    assert sum(document["counts"]["reasons"].values()) == document["counts"]["carts"]


def _run_command(shop: Shop, *args: str, env: dict[str, str] | None = None) -> dict[str, Any]:
    """``cartrescue run --json ...`` as a user starts it: its own process, its own streams."""
    done = subprocess.run([sys.executable, "-m", "cartrescue.cli", "run", "--json", "--config", str(shop.config_path),
                           "--now", iso(NOW), *args], cwd=REPO, capture_output=True, timeout=120, check=False,
                          env=dict(os.environ, **(env or {})))
    assert done.returncode == 0, done.stderr.decode()
    return json.loads(done.stdout)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="workers are forked on Linux only")
@pytest.mark.slow
def test_the_workers_of_the_command_are_forked_from_it_and_decide_like_fresh_interpreters(shop: Shop) -> None:
    _shop(shop)
    shop.write()
    forked = _run_command(shop, "--workers", "2")
    spawned = _run_command(shop, "--workers", "2", env={"CARTRESCUE_WORKER_START": "spawn"})
    assert [s["started"] for s in forked["shards"]] == ["fork", "fork"]
    assert [s["started"] for s in spawned["shards"]] == ["spawn", "spawn"]
    assert _decisions(forked) == _decisions(spawned)
    assert forked["counts"] == spawned["counts"]
    assert len({s["pid"] for s in forked["shards"]}) == 2


@pytest.mark.slow
def test_workers_started_inside_a_program_that_captures_the_output_are_fresh_interpreters(shop: Shop) -> None:
    _shop(shop)
    document = shop.cli("run", "--json", "--workers", "2").json  # the test runner captures stdout and stderr
    assert [s["started"] for s in document["shards"]] == ["spawn", "spawn"]


@pytest.mark.slow
def test_a_bad_row_of_the_orders_file_is_reported_once_by_n_workers(shop: Shop) -> None:
    _shop(shop)
    shop.add_orders(order("o1", email="a001@example.com", created=NOW - timedelta(days=30)),
                    dict(order("o2", email="a002@example.com", created=NOW), created_at="not a date"))
    whole = shop.cli("run", "--json", "--workers", "1").json
    sharded = shop.cli("run", "--json", "--workers", "3").json
    bad = [problem for problem in sharded["problems"] if "orders.csv" in problem]
    assert len(bad) == 1 and "order o2" in bad[0]
    assert sharded["counts"]["problems"] == whole["counts"]["problems"] == 1


@pytest.mark.slow
def test_a_bad_row_of_the_newsletter_export_is_reported_once_by_n_workers(shop: Shop) -> None:
    _shop(shop, source={"newsletters": {"file": "sends.csv"}})
    (shop.folder / "sends.csv").write_text("email,sent_at,campaign\na001@example.com,2026-11-20T08:00:00Z,Winter\n"
                                           "a002@example.com,yesterday-ish,Winter\n", encoding="utf-8")
    whole = shop.cli("run", "--json", "--workers", "1").json
    sharded = shop.cli("run", "--json", "--workers", "3").json
    bad = [problem for problem in sharded["problems"] if "sends.csv" in problem]
    assert len(bad) == 1 and "yesterday-ish" in bad[0]
    assert sharded["counts"]["problems"] == whole["counts"]["problems"] == 1
    assert _decisions(sharded)["c001"] == _decisions(whole)["c001"]  # the good row still counts


@pytest.mark.slow
def test_n_workers_deliver_every_message_once_and_record_a_run_per_shard(shop: Shop) -> None:
    _shop(shop)
    out = shop.folder / "out"
    result = shop.cli("run", "--json", "--workers", "2", "--outbox", str(out))
    assert result.exit_code == 0, result.output
    document = result.json
    files = list(out.glob("*.eml"))
    assert len(files) == document["counts"]["sent"] == document["counts"]["send"]
    ledger = Ledger(f"sqlite:///{shop.folder / 'ledger.db'}")
    try:
        rows = ledger.messages()
        runs = ledger.engine.connect().exec_driver_sql("SELECT shard, status FROM cr_run ORDER BY shard").all()
    finally:
        ledger.close()
    assert Counter(row["email"] for row in rows) == Counter({row["email"]: 1 for row in rows})
    assert sorted(runs) == [("1/2", "ok"), ("2/2", "ok")]
    again = shop.cli("run", "--json", "--workers", "2", "--outbox", str(out)).json
    # Only the vip carts the first run's budget deferred go now (a budget is per run); nothing twice.
    assert 0 < again["counts"]["sent"] <= 5 and again["counts"]["sent"] == again["counts"]["reasons"]["due"]
    assert {row["tier"] for row in again["decisions"] if row["delivery"] == "sent"} == {"vip"}
    ledger = Ledger(f"sqlite:///{shop.folder / 'ledger.db'}")
    try:
        assert set(Counter(row["email"] for row in ledger.messages()).values()) == {1}
    finally:
        ledger.close()


@pytest.mark.slow
def test_limit_is_for_the_whole_run_and_each_shard_takes_its_share(shop: Shop) -> None:
    _shop(shop)
    out = shop.folder / "out"
    result = shop.cli("run", "--json", "--workers", "3", "--outbox", str(out), "--limit", "7")
    assert result.exit_code == 0, result.output
    assert result.json["counts"]["sent"] == 7
    assert [s["counts"]["sent"] for s in result.json["shards"]] == [3, 2, 2]


@pytest.mark.slow
def test_the_table_of_n_workers_shows_the_carts_and_one_summary(shop: Shop, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "250")
    _shop(shop)
    result = shop.cli("run", "--workers", "2", "--all")
    assert result.exit_code == 0, result.output
    assert "new3" in result.stdout and "twice3@example.com" in result.stdout
    assert "2 workers (shards 1/2: exit 0, 2/2: exit 0)" in result.stdout


def test_workers_and_shard_exclude_each_other_and_a_bad_shard_is_a_usage_error(shop: Shop) -> None:
    _shop(shop)
    both = shop.cli("run", "--json", "--workers", "2", "--shard", "1/2")
    assert both.exit_code == 2 and both.json["error"]["code"] == "config"
    bad = shop.cli("run", "--json", "--shard", "3/2")
    assert bad.exit_code == 2 and "--shard" in bad.json["error"]["message"]


def test_a_failure_of_every_shard_is_one_error_with_its_exit_code(shop: Shop) -> None:
    _shop(shop, source={"carts": "missing.csv"})
    result = shop.cli("run", "--json", "--workers", "2")
    assert result.exit_code == 3
    document = json.loads(result.stdout)
    # Before any decision: the error document alone, as a run without workers prints it (README).
    assert list(document) == ["error"]
    assert document["error"]["code"] == "source" and "missing.csv" in document["error"]["message"]
    assert result.stderr.count("error:") == 1  # said once, by the parent


def test_the_most_serious_exit_code_of_the_shards_wins() -> None:
    assert worst_exit_code([0, 1, 0]) == 1
    assert worst_exit_code([1, 4]) == 1  # a held lock needs no action; failed carts do
    assert worst_exit_code([0, 4]) == 4
    assert worst_exit_code([6, 3, 1]) == 3
    assert worst_exit_code([2, 3]) == 2
    assert worst_exit_code([2, 70]) == 70
    assert worst_exit_code([70, 137]) == 137  # a worker killed by SIGKILL
    assert worst_exit_code([]) == 0


# -- the lock, per shard -------------------------------------------------------------------


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def ledger(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    if request.param == "sqlite":
        handle = Ledger(f"sqlite:///{tmp_path / 'ledger.db'}")
        yield handle
        handle.close()
        return
    with shop_database("postgres", "ledger") as db:
        handle = Ledger(db.url)
        yield handle
        handle.close()


def test_shards_of_one_layout_lock_side_by_side_and_exclude_everything_else(ledger: Ledger) -> None:
    assert compatible("run:1/2", "run:2/2") and not compatible("run", "run:1/2")
    assert not compatible("run:1/2", "run:1/3") and not compatible("run:1/2", "run:1/2")
    hour = timedelta(hours=1)
    first, second, third = (ledger.start_run("send", NOW) for _ in range(3))
    with ledger.lock(first, hour, "run:1/2"), ledger.lock(second, hour, "run:2/2"):
        for name in ("run", "run:1/2", "run:1/3", "run:3/4"):
            with pytest.raises(LockHeld, match="holds the lock"):
                with ledger.lock(third, hour, name):
                    pass
    with ledger.lock(first, hour, "run"):
        with pytest.raises(LockHeld, match="holds the lock"):
            with ledger.lock(second, hour, "run:2/2"):
                pass


def test_a_shard_of_another_layout_is_told_the_hosts_disagree_on_n(ledger: Ledger) -> None:
    """A host with ``--shard 1/2`` beside hosts of ``/3`` only heard "another run holds the
    lock" (exit 4, silent under --quiet): nothing said that the layouts differ, while whichever
    layout locks first shuts the other out every round."""
    hour = timedelta(hours=1)
    first, second = (ledger.start_run("send", NOW) for _ in range(2))
    with ledger.lock(first, hour, "run:3/3"):
        with pytest.raises(LockHeld, match=r"shard 3/3, .* holds the lock: it is a shard of 3, this run "
                                           r"one of 2; every host needs the same N"):
            with ledger.lock(second, hour, "run:1/2"):
                pass
        with pytest.raises(LockHeld) as same_layout:
            with ledger.lock(second, hour, "run:3/3"):
                pass
    assert str(same_layout.value).endswith("holds the lock")


def test_a_shard_whose_lock_was_taken_over_claims_nothing_while_other_shards_go_on(ledger: Ledger) -> None:
    hour = timedelta(hours=1)
    old, other, new = (ledger.start_run("send", NOW) for _ in range(3))

    def request(key: str) -> ClaimRequest:
        return ClaimRequest(f"csv:{key}", key, f"{key}@example.com", 1, "email", "smtp", "reminder-1", None,
                            "standard", 1.0)

    with ledger.lock(old, hour, "run:1/2"), ledger.lock(other, hour, "run:2/2"):
        with ledger.engine.begin() as conn:  # run #new takes shard 1 over (as after a stale heartbeat)
            conn.exec_driver_sql("UPDATE cr_lock SET run_id = %d WHERE name = 'run:1/2'" % new)
        with pytest.raises(LockLost):
            ledger.claim(old, [request("a")], NOW, lock_name="run:1/2")
        assert not ledger.heartbeat(old, "run:1/2")
        assert ledger.claim(other, [request("b")], NOW, lock_name="run:2/2")  # shard 2 is unaffected
        assert ledger.claim(new, [request("a")], NOW, lock_name="run:1/2")
    assert sorted((row["cart_key"], row["run_id"]) for row in ledger.messages()) == [("csv:a", new), ("csv:b", other)]


def test_resend_unconfirmed_of_a_shard_releases_only_that_shards_dead_claims(ledger: Ledger) -> None:
    dead = ledger.start_run("send", NOW)
    requests = [ClaimRequest(f"csv:k{n}", f"k{n}", f"k{n}@example.com", 1, "email", "smtp", "reminder-1", None,
                             "standard", 1.0) for n in range(40)]
    with ledger.lock(dead, timedelta(hours=1)):
        ledger.claim(dead, requests, NOW)
    ledger.finish_run(dead, "failed", {})
    released = 0
    for index in (1, 2):
        shard = Shard(index, 2)
        run = ledger.start_run("send", NOW, str(shard))
        mine = len(ledger.unconfirmed(run, shard.owns))
        assert mine == sum(shard.owns(r.email, r.cart_key) for r in requests)
        released += ledger.release_unconfirmed(run, timedelta(hours=1), shard.owns)
    assert released == 40


def test_resend_unconfirmed_waits_an_hour_for_a_silent_run_on_another_host(ledger: Ledger) -> None:
    """A run on another host whose heartbeat stopped may be a frozen VM whose messages in flight
    reached the relay: it loses its lock after lock_timeout, its claims only after an hour."""
    from sqlalchemy import update

    from cartrescue.ledger import Run

    paused = ledger.start_run("send", NOW)
    requests = [ClaimRequest(f"csv:p{n}", f"p{n}", f"p{n}@example.com", 1, "email", "smtp", "reminder-1", None,
                             "standard", 1.0) for n in range(3)]
    with ledger.lock(paused, timedelta(seconds=5)):
        ledger.claim(paused, requests, NOW)

    def silent_for(age: timedelta) -> None:
        with ledger.engine.begin() as conn:
            conn.execute(update(Run.__table__).where(Run.__table__.c.id == paused).values(  # type: ignore[attr-defined]
                host="other-host.example.com", heartbeat_at=datetime.now(timezone.utc) - age))

    silent_for(timedelta(minutes=10))
    run = ledger.start_run("send", NOW)
    assert ledger.release_unconfirmed(run, timedelta(seconds=5)) == 0
    # Any run closes it as killed after lock_timeout of silence: its claims still wait the hour.
    assert ledger.close_dead_runs(run, timedelta(seconds=5)) == {paused: 3}  # its claims without outcome
    assert ledger.release_unconfirmed(run, timedelta(seconds=5)) == 0
    silent_for(timedelta(hours=2))
    assert ledger.release_unconfirmed(run, timedelta(seconds=5)) == 3


def test_the_claims_a_stopped_run_left_without_outcome_are_said_once_among_the_next_runs_shards(ledger: Ledger) -> None:
    """A run stopped (SIGTERM, a ledger error) with messages in flight ends ``interrupted``, not
    ``running``: no later run closed it as killed, and none said that its claims had no outcome.
    The next run's shards each look; one of them counts the claims, once, and they stay
    ``claimed`` (no outcome, not resent)."""
    stopped = ledger.start_run("send", NOW)
    requests = [ClaimRequest(f"csv:s{n}", f"s{n}", f"s{n}@example.com", 1, "email", "smtp", "reminder-1", None,
                             "standard", 1.0) for n in range(3)]
    with ledger.lock(stopped, timedelta(seconds=5)):
        won = ledger.claim(stopped, requests, NOW)
        ledger.record([(won[("csv:s0", 1, "email")], "sent", "250 ok", "")])
    ledger.finish_run(stopped, "interrupted", {})
    other = Ledger(ledger.engine.url.render_as_string(hide_password=False))  # the other shard's process
    try:
        first, second = ledger.start_run("send", NOW, "1/2"), other.start_run("send", NOW, "2/2")
        assert ledger.close_dead_runs(first, timedelta(seconds=5)) == {stopped: 2}
        assert other.close_dead_runs(second, timedelta(seconds=5)) == {}
        assert ledger.close_dead_runs(ledger.start_run("send", NOW), timedelta(seconds=5)) == {}  # said once
    finally:
        other.close()
    statuses = sorted((row["cart_key"], row["status"]) for row in ledger.messages())
    assert statuses == [("csv:s0", "sent"), ("csv:s1", "claimed"), ("csv:s2", "claimed")]
    assert len(ledger.unconfirmed(0)) == 2  # later runs still count them, as doctor does


# -- signals -------------------------------------------------------------------------------


def test_a_process_is_orphaned_only_once_the_run_that_started_it_is_gone(monkeypatch: pytest.MonkeyPatch) -> None:
    """What decides a stop's grace (0.5 s for an orphaned worker, 5 s else): a run of its own, or a
    worker whose parent lives, is not orphaned; one whose parent is not the run that started it is."""
    from cartrescue.processes import PARENT_ENV, orphaned

    monkeypatch.delenv(PARENT_ENV, raising=False)
    assert not orphaned()
    monkeypatch.setenv(PARENT_ENV, str(os.getppid()))
    assert not orphaned()
    monkeypatch.setenv(PARENT_ENV, str(os.getpid()))  # not its parent: the one that started it is gone
    assert orphaned()




@pytest.mark.slow
@pytest.mark.smtp
def test_sigterm_to_the_parent_ends_its_workers_and_still_prints_one_document(shop: Shop) -> None:
    from smtpserver import LoopbackSMTP

    with LoopbackSMTP() as server:
        _shop(shop, carts=200, smtp=server.smtp_config(rate_per_second=20))
        shop.write()
        out = shop.folder / "run.out"
        parent = subprocess.Popen([sys.executable, "-m", "cartrescue.cli", "run", "--send", "--json", "--workers", "2",
                                   "--config", str(shop.config_path), "--now", iso(NOW)], cwd=REPO,
                                  stdout=out.open("wb"), stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 60
        while len(server.messages) < 5 and time.monotonic() < deadline:
            time.sleep(0.05)
        workers = worker_pids(parent.pid)
        assert len(workers) == 2 and parent.poll() is None
        parent.send_signal(signal.SIGTERM)
        assert parent.wait(60) == 130
        document = json.loads(out.read_text())
        assert document["error"]["code"] == "interrupted"
        for pid in workers:
            assert not Path(f"/proc/{pid}").exists() or "Z" in Path(f"/proc/{pid}/stat").read_text().split()[2]
        assert set(server.recipients().values()) == {1}
    # The document adds up what each worker had delivered when it stopped, as the ledger has it.
    sent = sum(message["status"] == "sent" for message in shop.messages())
    assert document["counts"]["sent"] == sent > 0
    assert document["workers"] == 2 and len(document["shards"]) == 2


def _worker_document(rows: int) -> bytes:
    import io

    from cartrescue.output import JsonStream

    out = io.StringIO()
    stream = JsonStream(out, {"mode": "plan", "now": "2026-11-20T10:00:00Z"})
    for n in range(rows):
        stream.add_json(json.dumps({"cart_id": f"c{n}", "detail": "a \"quoted\" ], with a bracket"}))
    stream.close({"counts": {"carts": rows}, "run_id": 7})
    return out.getvalue().encode("utf-8")


@pytest.mark.parametrize("lines_a_block", [1, 2, 5, 1000])
def test_the_parent_relays_a_workers_decisions_in_blocks_as_one_valid_document(lines_a_block: int) -> None:
    import io

    from cartrescue.output import JsonStream
    from cartrescue.workers import Document, ShardReport

    lines = _worker_document(5).rstrip(b"\n").split(b"\n")
    report = ShardReport(Shard(1, 2), 1)
    document = Document(report)
    out = io.StringIO()
    merged = JsonStream(out, {"mode": "plan"})
    merged.add_json('{"cart_id": "from another shard"}')
    counted = 0
    for start in range(0, len(lines), lines_a_block):  # the reading thread hands over whole lines
        counted += document.feed(b"\n".join(lines[start:start + lines_a_block]), lambda lines, n: merged.add_lines(lines))
    merged.close({"counts": {}})
    parsed = json.loads(out.getvalue())
    assert [row["cart_id"] for row in parsed["decisions"]] == ["from another shard"] + [f"c{n}" for n in range(5)]
    assert counted == report.decisions == 5
    assert report.header == {"mode": "plan", "now": "2026-11-20T10:00:00Z"}
    assert report.trailer == {"counts": {"carts": 5}, "run_id": 7}


def test_the_parent_relays_a_workers_decisions_to_a_file_byte_for_byte(tmp_path: Path) -> None:
    import io

    from cartrescue.output import DocumentWriter, JsonStream
    from cartrescue.workers import Document, ShardReport

    text = io.StringIO()
    worker = JsonStream(text, {"mode": "plan"})
    names = ["Åsa Öberg", 'Zoë "Zed" ], \u2028', "李小龍", "plain"]
    for n, name in enumerate(names):
        worker.add_json(json.dumps({"cart_id": f"c{n}", "name": name}, ensure_ascii=False))
    worker.close({"counts": {"carts": len(names)}})
    lines = text.getvalue().encode("utf-8").rstrip(b"\n").split(b"\n")
    report = ShardReport(Shard(1, 1), 1)
    document = Document(report)
    path = tmp_path / "merged.json"
    with path.open("wb") as handle:
        merged = JsonStream(DocumentWriter(handle.fileno()), {"mode": "plan"})
        counted = sum(document.feed(b"\n".join(lines[start:start + 2]), lambda block, n: merged.add_lines(block))
                      for start in range(0, len(lines), 2))
        merged.close({"counts": {}})
    relayed = path.read_bytes()
    assert [row["name"] for row in json.loads(relayed)["decisions"]] == names
    assert counted == report.decisions == len(names)
    assert report.trailer == {"counts": {"carts": len(names)}}
    decision_lines = [line.rstrip(b",") for line in lines[1:-1]]  # as the worker wrote them
    assert [line.rstrip(b",") for line in relayed.split(b"\n")[1:-2]] == decision_lines


def test_a_worker_document_without_decisions_is_read_for_its_error() -> None:
    from cartrescue.workers import Document, ShardReport

    report = ShardReport(Shard(2, 2), 1)
    error = {"error": {"code": "config", "exit_code": 2, "message": "bad"}}
    assert Document(report).feed(json.dumps(error).encode(), lambda lines, n: None) == 0
    assert report.trailer == error and report.decisions == 0


def _report(index: int, code: int, error: dict[str, Any] | None = None, failed: int = 0) -> ShardReport:
    trailer: dict[str, Any] = {"counts": {"carts": 10, "failed": failed}}
    if error is not None:
        trailer["error"] = error
    return ShardReport(Shard.parse(f"{index}/2"), pid=100 + index, trailer=trailer, returncode=code)


def test_a_shard_that_stopped_with_exit_1_gives_the_run_its_error_line() -> None:
    """Exit 1 is also a shard that stopped on an error of its own (its output or working files
    could not be written): the run's document and stderr say why, not only its shard's row."""
    stopped = {"code": "failed", "exit_code": 1, "message": "cannot write a working file in /tmp: disk full"}
    merged = merge([_report(1, 1, stopped), _report(2, 0)], "dry-run", NOW)
    assert merged.exit_code == 1 and merged.error == stopped


def test_failed_carts_alone_give_exit_1_and_no_run_error() -> None:
    merged = merge([_report(1, 1, failed=2), _report(2, 0)], "dry-run", NOW)
    assert merged.exit_code == 1 and merged.error is None and merged.counts["failed"] == 2


def test_a_child_killed_after_its_interrupted_document_is_reported_killed() -> None:
    """run-all (or run --workers) after a second Ctrl-C: the child had written "interrupted", then
    was killed once the grace was over; the exit code (137) and the error must say the same."""
    from cartrescue.workers import error_of

    interrupted = {"error": {"code": "interrupted", "exit_code": 130, "message": "interrupted"}}
    assert error_of(interrupted, 130, "the run (pid 7)", [], "killed")["code"] == "interrupted"
    killed = error_of(interrupted, 137, "the run (pid 7)", [], "killed")
    assert (killed["code"], killed["exit_code"]) == ("killed", 137) and "SIGKILL" in killed["message"]
    failed = {"error": {"code": "config", "exit_code": 2, "message": "bad"}}
    assert error_of(failed, 2, "the run (pid 7)", [], "killed") == failed["error"]


def test_the_shards_connections_add_up_to_the_relays_pool_and_each_shard_has_one(shop: Shop) -> None:
    """``pool_size`` and an HTTP channel's ``concurrency`` are shared like a budget: ⌈16 / 3⌉ a
    shard opened 18 connections to a relay that allows 16. A shard cannot send with none, so a
    limit below the number of shards gives each shard one."""
    from cartrescue.config import load_config
    from cartrescue.job import shard_config

    shop.configure(smtp={"host": "127.0.0.1", "port": 2525, "pool_size": 16},
                   webhook={"url": "http://127.0.0.1:9/hook", "concurrency": 1})
    config = load_config(shop.write())
    shards = [shard_config(config, Shard(index, 3)) for index in (1, 2, 3)]
    assert [part.smtp.pool_size for part in shards] == [6, 5, 5]
    assert [part.webhook.concurrency for part in shards] == [1, 1, 1]


def _with_bad_rows(shop: Shop) -> Shop:
    """``_shop`` with every seventh cart's ``updated_at`` unreadable: bad rows spread over the
    file, so each worker holds some of them."""
    _shop(shop)
    for n, rows in enumerate(shop.carts):
        if rows.get("updated_at") and n % 7 == 3:
            rows["updated_at"] = f"not a date {n}"
    return shop


@pytest.mark.slow
def test_n_workers_list_the_same_problems_in_the_same_order_as_one(shop: Shop) -> None:
    _with_bad_rows(shop)
    whole = shop.cli("run", "--json", "--workers", "1").json
    sharded = shop.cli("run", "--json", "--workers", "3").json
    assert len(whole["problems"]) >= 6
    assert sharded["problems"] == whole["problems"]


@pytest.mark.slow
def test_n_workers_keep_the_files_first_problems_when_they_are_cut(shop: Shop, monkeypatch: pytest.MonkeyPatch) -> None:
    import cartrescue.workers

    _with_bad_rows(shop)
    whole = shop.cli("run", "--json", "--workers", "1").json
    monkeypatch.setattr(cartrescue.workers, "PROBLEMS_KEPT", 3)
    sharded = shop.cli("run", "--json", "--workers", "3").json
    assert sharded["problems"] == whole["problems"][:3]
    assert sharded["counts"]["problems"] == whole["counts"]["problems"]


def test_merged_problems_are_in_file_and_line_order_whatever_the_shard() -> None:
    first, second = ShardReport(Shard(1, 2), 1), ShardReport(Shard(2, 2), 1)
    first.trailer = {"counts": {}, "problems": ["carts.csv:9: bad", "carts.csv:30: bad", "orders.csv:2: bad"]}
    second.trailer = {"counts": {}, "problems": ["carts.csv:4: bad", "carts.csv:10: bad", "carts.csv:10: worse"]}
    merged = merge([first, second], "plan", NOW)
    assert merged.problems == ["carts.csv:4: bad", "carts.csv:9: bad", "carts.csv:10: bad", "carts.csv:10: worse",
                               "carts.csv:30: bad", "orders.csv:2: bad"]
