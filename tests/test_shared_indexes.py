"""Indexes a run shares with its workers (the orders file's, the newsletter export's): the run
builds each once, each worker reads it.

A worker given its run's index answers from it (not from the file), reports its rows' problems
only as shard 1, and reads the file itself when the run could not build the index; the run
deletes the indexes when it ends.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from datetime import timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from conftest import NOW, REPO, Shop, cart, iso, order

from cartrescue.config import load_config
from cartrescue.errors import SourceError
from cartrescue.model import RowProblem
from cartrescue.shards import Shard
from cartrescue.sources.base import Window
from cartrescue.sources.csv import CsvSource
from cartrescue.sources.sends_csv import CsvSends
from cartrescue.sources.shared import (
    ORDERS,
    SENDS,
    SharedIndexes,
    failed_marker,
    wait_for,
)

UTC = ZoneInfo("UTC")


def _orders_shop(shop: Shop) -> Shop:
    shop.add(cart("c1", email="a@example.com"), cart("c2", email="b@example.com"), cart("c3", email="c@example.com"))
    shop.add_orders(order("o1", email="a@example.com", created=NOW),  # converts c1
                    dict(order("o2", email="b@example.com", created=NOW), created_at="not a date"),
                    order("o3", cart_id="c3", created=NOW))
    shop.write()
    return shop


def _source(shop: Shop, problems: list[RowProblem], shared: Path | None = None, orders: str = "orders.csv") -> CsvSource:
    return CsvSource(shop.folder / "carts.csv", shop.folder / orders, shop_tz=UTC, on_problem=problems.append,
                     shared_orders=shared)


def _publish(shop: Shop, path: Path) -> list[RowProblem]:
    """What the parent does: index the orders file into ``path``; its own problem sink hears nothing."""
    heard: list[RowProblem] = []
    _source(shop, heard).publish_orders(path)
    assert heard == []
    return heard


def _orders_of(source: CsvSource, shard: Shard) -> dict[str, list[str]]:
    carts = list(source.shard_carts(None, shard))  # type: ignore[arg-type]
    found: dict[str, list[str]] = {}
    for found_order in source.orders_for(carts):
        found.setdefault(found_order.id, []).append(found_order.email or found_order.cart_id or "")
    return found


def test_a_worker_with_its_parents_index_answers_from_it_not_from_the_orders_file(shop: Shop, tmp_path: Path) -> None:
    _orders_shop(shop)
    index = tmp_path / "orders.db"
    _publish(shop, index)
    (shop.folder / "orders.csv").write_text("order_id,email,customer_id,cart_id,total,currency,status,created_at,"
                                            "delivered\n", encoding="utf-8")  # emptied after the parent read it
    shared = _source(shop, [], index)
    private = _source(shop, [])
    assert _orders_of(shared, Shard(1, 1)) == {"o1": ["a@example.com"], "o2": ["b@example.com"], "o3": ["c3"]}  # o2: unreadable, kept
    assert _orders_of(private, Shard(1, 1)) == {}
    shared.close()
    private.close()
    assert index.exists()  # a worker never deletes its parent's index


def test_the_rows_problems_travel_in_the_index_and_only_shard_1_reports_them(shop: Shop, tmp_path: Path) -> None:
    _orders_shop(shop)
    index = tmp_path / "orders.db"
    _publish(shop, index)
    alone: list[RowProblem] = []
    _orders_of(_source(shop, alone), Shard(1, 1))  # no parent: the source indexes and reports itself
    first: list[RowProblem] = []
    second: list[RowProblem] = []
    _orders_of(_source(shop, first, index), Shard(1, 2))
    _orders_of(_source(shop, second, index), Shard(2, 2))
    orders_problems = [str(p) for p in alone if "orders.csv" in p.location]
    assert len(orders_problems) == 1 and "order o2" in orders_problems[0]
    assert [str(p) for p in first if "orders.csv" in p.location] == orders_problems
    assert [p for p in second if "orders.csv" in p.location] == []


def test_a_parent_that_cannot_build_the_index_leaves_each_worker_to_meet_the_error(shop: Shop) -> None:
    _orders_shop(shop).configure(source={"orders": "missing.csv"}).write()
    parent = SharedIndexes(load_config(shop.config_path), NOW)
    index = parent.path(ORDERS)
    try:
        parent.start()
        assert wait_for(index, limit=30) is False  # the failed marker, not the time limit
        assert failed_marker(index).exists() and not index.exists()
        worker = _source(shop, [], index, orders="missing.csv")
        with pytest.raises(SourceError, match="missing.csv"):
            _orders_of(worker, Shard(1, 2))
    finally:
        parent.close()
    assert not index.parent.exists()


def _forking(monkeypatch: pytest.MonkeyPatch) -> None:
    """As the ``cartrescue`` command is (one thread, its own streams): the run may fork its helper.
    The test runner's captured streams otherwise make every start a thread or a fresh interpreter."""
    from cartrescue import processes

    monkeypatch.setattr(processes, "start_method", lambda: "fork")


def _reaped(pid: int) -> bool:
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return True
    return False


@pytest.mark.skipif(not hasattr(os, "fork"), reason="a helper process is forked only where fork exists")
def test_a_helper_process_builds_the_index_while_the_run_goes_on(
        shop: Shop, monkeypatch: pytest.MonkeyPatch) -> None:
    _orders_shop(shop)
    _forking(monkeypatch)
    run = SharedIndexes(load_config(shop.config_path), NOW)
    index = run.path(ORDERS)
    try:
        run.start_early()
        assert len(run._helpers) == 1
        helper = next(iter(run._helpers))
        run.start()  # the thread only watches the helper
        assert wait_for(index, limit=30) is True
        problems: list[RowProblem] = []
        assert _orders_of(_source(shop, problems, index), Shard(1, 2)) != {}
        assert [p.location for p in problems if "orders.csv" in p.location] == [f"{shop.folder / 'orders.csv'}:3"]
    finally:
        run.close()
    assert _reaped(helper) and not index.parent.exists()


@pytest.mark.skipif(not hasattr(os, "fork"), reason="a helper process is forked only where fork exists")
def test_a_helper_that_dies_unfinished_leaves_the_workers_to_read_the_files(
        shop: Shop, monkeypatch: pytest.MonkeyPatch) -> None:
    import signal

    _orders_shop(shop)
    _forking(monkeypatch)
    monkeypatch.setattr(SharedIndexes, "_orders", lambda self, path: os.kill(os.getpid(), signal.SIGKILL))
    run = SharedIndexes(load_config(shop.config_path), NOW)
    index = run.path(ORDERS)
    try:
        run.start_early()
        run.start()
        assert wait_for(index, limit=30) is False  # the run's marker, not the time limit
        assert failed_marker(index).exists() and not index.exists()
        assert _orders_of(_source(shop, [], index), Shard(1, 2)) != {}  # read from the file
    finally:
        run.close()
    assert not index.parent.exists()


@pytest.mark.skipif(not hasattr(os, "fork"), reason="a helper process is forked only where fork exists")
def test_a_run_that_ends_early_ends_its_helper(shop: Shop, monkeypatch: pytest.MonkeyPatch) -> None:
    _orders_shop(shop)
    _forking(monkeypatch)
    monkeypatch.setattr(SharedIndexes, "_orders", lambda self, path: time.sleep(60))
    run = SharedIndexes(load_config(shop.config_path), NOW)
    run.start_early()
    assert len(run._helpers) == 1
    helper = next(iter(run._helpers))
    run.start()
    started = time.monotonic()
    run.close()  # the workers stopped at once (a held lock): the helper is not waited for
    assert time.monotonic() - started < 5
    assert _reaped(helper)


def test_a_worker_indexes_the_orders_itself_when_its_parents_file_is_no_index(shop: Shop, tmp_path: Path) -> None:
    _orders_shop(shop)
    index = tmp_path / "orders.db"
    index.write_bytes(b"not a database at all" * 100)
    problems: list[RowProblem] = []
    assert _orders_of(_source(shop, problems, index), Shard(1, 1)) == {"o1": ["a@example.com"], "o2": ["b@example.com"], "o3": ["c3"]}  # o2: unreadable, kept
    assert [str(p) for p in problems if "orders.csv" in p.location] != []  # read from the file: its bad row


def test_a_worker_waits_for_the_index_until_it_is_complete(tmp_path: Path) -> None:
    index = tmp_path / "orders.db"
    timer = threading.Timer(0.2, lambda: index.write_bytes(b""))
    started = time.monotonic()
    timer.start()
    try:
        assert wait_for(index, limit=30) is True
    finally:
        timer.cancel()
    assert time.monotonic() - started >= 0.2


def test_a_worker_stops_waiting_after_the_limit(tmp_path: Path) -> None:
    started = time.monotonic()
    assert wait_for(tmp_path / "never.db", limit=0.1) is False
    assert time.monotonic() - started < 5


def test_a_csv_source_shares_its_orders_and_a_newsletter_export_its_sends(shop: Shop) -> None:
    _orders_shop(shop)
    shared = SharedIndexes.for_run(load_config(shop.config_path), NOW)
    assert shared is not None and list(shared.env) == [ORDERS]
    shared.close()
    shop.configure(source={"orders": None}).write()
    assert SharedIndexes.for_run(load_config(shop.config_path), NOW) is None
    shop.configure(source={"newsletters": {"file": "sends.csv"}}).write()
    shared = SharedIndexes.for_run(load_config(shop.config_path), NOW)
    assert shared is not None and list(shared.env) == [SENDS]
    shared.close()


def test_without_a_writable_temporary_folder_the_workers_index_their_orders_themselves(
        shop: Shop, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import tempfile

    _orders_shop(shop)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "gone"))  # mkdtemp fails: no such folder
    assert SharedIndexes.for_run(load_config(shop.config_path), NOW) is None


def test_a_run_deletes_the_folders_that_killed_runs_left(
        shop: Shop, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import tempfile

    _orders_shop(shop)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()  # a pid that no process has any more
    here = os.stat("/proc/self/ns/pid").st_ino if Path("/proc/self/ns/pid").exists() else 0
    killed = tmp_path / f"cartrescue-shared-{here}-{dead.pid}-x1"
    (killed / "carts.spool.1").parent.mkdir()
    (killed / "carts.spool.1").write_bytes(b"rows")
    alive = tmp_path / f"cartrescue-shared-{here}-{os.getppid()}-x2"  # a live run's (this test's parent)
    elsewhere = tmp_path / f"cartrescue-shared-{here + 1}-{dead.pid}-x3"  # another namespace's: not ours to judge
    other = tmp_path / "cartrescue-shared-nopid"
    for folder in (alive, elsewhere, other):
        folder.mkdir()
    run = SharedIndexes.for_run(load_config(shop.config_path), NOW)
    assert run is not None
    run.close()
    assert not killed.exists() and alive.exists() and elsewhere.exists() and other.exists()


def test_a_run_without_workers_deletes_the_scratch_folders_that_killed_runs_left(shop: Shop, tmp_path: Path) -> None:
    # A killed run (or a forked worker, which ends past every finalizer) leaves its newest-cart
    # and orders indexes behind: the next run of any kind sweeps those whose process is gone.
    _orders_shop(shop)
    shop.write()
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    here = os.stat("/proc/self/ns/pid").st_ino if Path("/proc/self/ns/pid").exists() else 0
    left = [scratch / f"cartrescue-{kind}-{here}-{dead.pid}-x{n}" for n, kind in enumerate(("newest", "orders"))]
    for folder in left:
        folder.mkdir()
        (folder / "index.db").write_bytes(b"rows")
    done = subprocess.run([sys.executable, "-m", "cartrescue.cli", "run", "--json", "--workers", "1", "--config",
                           str(shop.config_path), "--now", iso(NOW)], cwd=REPO, capture_output=True, timeout=120,
                          check=False, env={**os.environ, "TMPDIR": str(scratch)})
    assert done.returncode in (0, 1), done.stderr.decode()
    assert list(scratch.glob("cartrescue-*")) == []


@pytest.mark.slow
def test_n_workers_decide_like_one_process_and_leave_no_index_behind(shop: Shop, tmp_path: Path) -> None:
    _orders_shop(shop)
    for n in range(30):
        shop.add(cart(f"d{n:02d}", email=f"d{n:02d}@example.com"))
        shop.add_orders(order(f"p{n:02d}", email=f"d{n:02d}@example.com", created=NOW - timedelta(days=40)))
    shop.configure(source={"newsletters": {"file": "sends.csv"}}).write()
    (shop.folder / "sends.csv").write_text(
        f"email,sent_at,campaign\nd07@example.com,{iso(NOW - timedelta(hours=1))},Winter\n"
        "d08@example.com,yesterday-ish,Winter\n", encoding="utf-8")
    scratch = tmp_path / "tmp"
    scratch.mkdir()

    def run(*args: str) -> dict:
        done = subprocess.run([sys.executable, "-m", "cartrescue.cli", "run", "--json", "--config", str(shop.config_path),
                               "--now", iso(NOW), *args], cwd=REPO, capture_output=True, timeout=120, check=False,
                              env={**{k: v for k, v in os.environ.items() if k not in (ORDERS, SENDS)},
                                   "TMPDIR": str(scratch)})
        assert done.returncode == 1, done.stderr.decode()  # 1: the run went through, with a bad row
        return json.loads(done.stdout)

    whole, sharded = run("--workers", "1"), run("--workers", "3")
    decided = {row["cart_id"]: (row["action"], row["reason"]) for row in whole["decisions"]}
    assert {row["cart_id"]: (row["action"], row["reason"]) for row in sharded["decisions"]} == decided
    assert decided["c1"] == ("skip", "ordered") and decided["c3"] == ("skip", "ordered")
    assert decided["d07"] == ("defer", "newsletter_today")
    assert sharded["counts"] == whole["counts"]
    for name in ("orders.csv", "sends.csv"):
        assert len([p for p in whole["problems"] if name in p]) == 1
        assert [p for p in sharded["problems"] if name in p] == [p for p in whole["problems"] if name in p]
    assert list(scratch.glob("cartrescue-*")) == []  # no shared index, no worker's scratch index


SENDS_CSV = ("email,sent_at,campaign\n"
             f"a@example.com,{iso(NOW - timedelta(hours=2))},Winter\n"  # today
             f"b@example.com,{iso(NOW - timedelta(days=3))},Autumn\n"  # another day
             "c@example.com,yesterday-ish,Winter\n")  # line 4: no readable time


def _sends(folder: Path, problems: list[RowProblem], shared: Path | None = None) -> CsvSends:
    return CsvSends(folder / "sends.csv", shop_tz=UTC, on_problem=problems.append, shared=shared)


def _today() -> Window:
    return Window(NOW.replace(hour=0, minute=0, second=0, microsecond=0), NOW)


def _sent(reader: CsvSends, window: Window) -> list[tuple[str, str | None]]:
    emails = ["a@example.com", "b@example.com", "c@example.com"]
    return sorted((send.email, send.campaign) for send in reader.sends_for(emails, window))


def test_a_worker_with_its_runs_sends_index_answers_from_it_not_from_the_export(tmp_path: Path) -> None:
    (tmp_path / "sends.csv").write_text(SENDS_CSV, encoding="utf-8")
    index = tmp_path / "sends.db"
    heard: list[RowProblem] = []
    _sends(tmp_path, heard).publish(index, _today())
    assert heard == []  # the run builds; the worker reports
    (tmp_path / "sends.csv").write_text("email,sent_at,campaign\n", encoding="utf-8")  # emptied afterwards
    problems: list[RowProblem] = []
    shared = _sends(tmp_path, problems, index)
    assert _sent(shared, _today()) == [("a@example.com", "Winter")]
    expected = (f"{tmp_path / 'sends.csv'}:4: newsletter send: sent_at: not an ISO 8601 time: 'yesterday-ish' (write "
                "e.g. 2026-11-20T10:03:00Z, 2026-11-20 11:03:00+01:00, or 2026-11-20 11:03 in the shop's timezone)")
    assert [str(p) for p in problems] == [expected]
    shared.close()
    assert index.exists()  # a worker never deletes its run's index
    assert _sent(_sends(tmp_path, []), _today()) == []  # the emptied export, read by a reader of its own


def test_a_sends_index_of_another_window_is_not_used(tmp_path: Path) -> None:
    (tmp_path / "sends.csv").write_text(SENDS_CSV, encoding="utf-8")
    index = tmp_path / "sends.db"
    yesterday = Window(_today().start - timedelta(days=1), _today().start)
    _sends(tmp_path, []).publish(index, yesterday)
    problems: list[RowProblem] = []
    assert _sent(_sends(tmp_path, problems, index), _today()) == [("a@example.com", "Winter")]  # read from the file
    assert len(problems) == 1  # reported once: by the reading of the file, not also from the index


def test_a_run_that_cannot_index_the_export_leaves_each_worker_to_meet_the_error(shop: Shop) -> None:
    _orders_shop(shop).configure(source={"newsletters": {"file": "missing-sends.csv"}}).write()
    parent = SharedIndexes(load_config(shop.config_path), NOW)
    index = parent.path(SENDS)
    try:
        parent.start()
        assert wait_for(index, limit=30) is False
        assert parent.path(ORDERS).exists()  # the orders index does not depend on it
        with pytest.raises(SourceError, match="missing-sends.csv"):
            _sent(CsvSends(shop.folder / "missing-sends.csv", shared=index), _today())
    finally:
        parent.close()
