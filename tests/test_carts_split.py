"""The carts file split once for a run's workers: each worker follows its own spool instead of
parsing the whole export.

A worker that follows its shard's spool sees exactly what reading the file itself gives it (the
same activity, the same carts, the same problems, reported by shard 1 only), while the spool is
still being written; and a worker whose split failed, before or midway, reads the file itself and
still decides the same.
"""

from __future__ import annotations

import os
import threading
import time
import unicodedata
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from conftest import NOW, Shop, cart

from cartrescue.config import load_config
from cartrescue.model import Cart, RowProblem
from cartrescue.shards import Shard, owner
from cartrescue.sources.base import Activity
from cartrescue.sources.csv import CsvSource
from cartrescue.sources.shared import CARTS, SharedIndexes, carts_spool, failed_marker
from cartrescue.sources.spool import Abandoned, RowSpool, follow

UTC = ZoneInfo("UTC")


def _carts_shop(shop: Shop) -> Path:
    """Twelve carts (two of two rows), a row without a cart id and a cart with a bad quantity."""
    shop.add(*(cart(f"c{n}", email=f"buyer{n}@example.com") for n in range(10)),
             cart("multi", email="multi@example.com", items=(("A", "Mug", 1, "5.00"), ("B", "Cup", 2, "3.00"))),
             cart("guest", items=(("A", "Mug", 1, "5.00"), ("C", "Pot", 1, "9.00"))),  # no address: by its key
             [dict(cart("lost", email="lost@example.com")[0], cart_id="")],
             cart("badqty", email="bad@example.com", items=(("A", "Mug", "many", "5.00"),)))
    shop.write()
    return shop.folder / "carts.csv"


def _read(carts: Path, shard: Shard, shared: Path | None = None) -> tuple[list[Activity], list[Cart], list[str]]:
    """What one worker's two passes give: its activity, its carts and the problems it reports."""
    problems: list[RowProblem] = []
    source = CsvSource(carts, shop_tz=UTC, on_problem=problems.append, shared_carts=shared)
    activity = list(source.shard_activity(None, shard))  # type: ignore[arg-type]
    carts_read = list(source.shard_carts(None, shard))  # type: ignore[arg-type]
    return activity, carts_read, [str(problem) for problem in problems]


def _split(carts: Path, base: Path, count: int) -> None:
    CsvSource(carts, shop_tz=UTC).publish_shards([carts_spool(base, index) for index in range(1, count + 1)])


@pytest.mark.parametrize("count", [2, 3])
def test_a_worker_following_its_spool_reads_what_the_file_gives_it(shop: Shop, tmp_path: Path, count: int) -> None:
    carts = _carts_shop(shop)
    base = tmp_path / "carts.spool"
    _split(carts, base, count)
    seen = []
    for index in range(1, count + 1):
        shard = Shard(index, count)
        followed = _read(carts, shard, base)
        assert followed == _read(carts, shard)
        seen.extend(c.id for c in followed[1])
    assert sorted(seen) == sorted([f"c{n}" for n in range(10)] + ["multi", "guest"])  # each cart in one shard


def test_a_cart_without_an_address_reaches_its_shards_first_pass_with_its_number(shop: Shop, tmp_path: Path) -> None:
    """Its customer is their number (``newest.customer_key``): the split wrote no activity for a
    cart without an address, so a worker following its spool never knew which of a number's
    carts was the newest, while one reading the file itself did."""
    shop.add(*(cart(f"t{n}", email="", phone=f"+46 70 123 45 {n:02d}") for n in range(6)),
             cart("mailed", email="ann@example.com", phone="+46 70 123 45 99"), cart("neither", email=""))
    shop.write()
    carts = shop.folder / "carts.csv"
    base = tmp_path / "carts.spool"
    _split(carts, base, 2)
    numbers = {}
    for index in (1, 2):
        followed = _read(carts, Shard(index, 2), base)[0]
        assert followed == _read(carts, Shard(index, 2))[0]
        numbers.update((item.cart_key, (item.email, item.phone)) for item in followed)
    assert numbers == {**{f"csv:t{n}": ("", f"+46 70 123 45 {n:02d}") for n in range(6)},
                       "csv:mailed": ("ann@example.com", "")}  # an address is the key: no number beside it


def test_shard_1_alone_reports_the_rows_of_no_cart(shop: Shop, tmp_path: Path) -> None:
    carts = _carts_shop(shop)
    base = tmp_path / "carts.spool"
    _split(carts, base, 2)
    reported = {index: _read(carts, Shard(index, 2), base)[2] for index in (1, 2)}
    assert f"{carts}:16: missing cart_id" in reported[1]
    assert not any("missing cart_id" in problem for problem in reported[2])


def test_a_worker_follows_a_spool_while_it_is_written(tmp_path: Path) -> None:
    path = tmp_path / "carts.spool.1"
    groups = [(n + 2, [(n + 2, [f"cart{n}", "x"])]) for n in range(1000)]  # many batches

    def write() -> None:
        spool = RowSpool.shared(path)
        for start, rows in groups:
            spool.add_group(start, rows, rows[0][1][0])
            if start % 300 == 0:
                time.sleep(0.05)  # the follower catches up and waits
        spool.add_problem("carts.csv:9999", "missing cart_id")
        spool.finish()

    writer = threading.Thread(target=write)
    writer.start()
    try:
        assert list(follow(path, lambda: False)) == [*groups, ("carts.csv:9999", "missing cart_id")]
    finally:
        writer.join()


def test_a_spool_whose_writer_stopped_raises_abandoned_after_what_it_wrote(tmp_path: Path) -> None:
    path = tmp_path / "carts.spool.1"
    spool = RowSpool.shared(path)
    spool.add_group(2, [(2, ["c1"])], "c1")
    spool._flush()  # one batch on disk, and no end mark: the writer died
    stopped = tmp_path / "carts.spool.failed"
    stopped.touch()
    entries: list[object] = []
    with pytest.raises(Abandoned):
        entries.extend(follow(path, stopped.exists))  # what came before the exception stays
    assert entries == [(2, [(2, ["c1"])])]
    spool.close()


def test_a_spool_finds_a_few_groups_by_cart_id_and_is_then_read_whole(tmp_path: Path) -> None:
    """The first pass builds a few carts (CsvSource.unreadable) before the carts pass reads them all."""
    spool = RowSpool.shared(tmp_path / "carts.spool.1")
    groups = [(n + 2, [(n + 2, [f"cart{n}", "x"])]) for n in range(1000)]
    for number, (start, rows) in enumerate(groups):
        spool.add_group(start, rows, rows[0][1][0])
        if number == 500:
            spool.add_problem("carts.csv:9999", "missing cart_id")
    spool.finish()
    spool = RowSpool.reading(tmp_path / "carts.spool.1")
    try:
        assert list(spool.groups_of({"cart7", "cart512", "cart999", "nowhere"})) == [groups[7], groups[512], groups[999]]
        assert list(spool.entries()) == [*groups[:501], ("carts.csv:9999", "missing cart_id"), *groups[501:]]
    finally:
        spool.close()


def test_a_worker_whose_split_failed_reads_the_file_itself(shop: Shop, tmp_path: Path) -> None:
    carts = _carts_shop(shop)
    base = tmp_path / "carts.spool"
    failed_marker(base).touch()  # the helper could not split it: no spool at all
    for index in (1, 2):
        assert _read(carts, Shard(index, 2), base) == _read(carts, Shard(index, 2))


def test_a_worker_whose_split_stopped_midway_decides_as_from_the_file(shop: Shop, tmp_path: Path) -> None:
    carts = _carts_shop(shop)
    base = tmp_path / "carts.spool"
    full = tmp_path / "full.spool"
    _split(carts, full, 2)
    whole = carts_spool(full, 1).read_bytes()
    carts_spool(base, 1).write_bytes(whole[:len(whole) // 2])  # cut: no end mark
    failed_marker(base).touch()
    activity, carts_read, problems = _read(carts, Shard(1, 2), base)
    expected = _read(carts, Shard(1, 2))
    assert (carts_read, problems) == expected[1:]  # the carts pass reads the file: nothing twice
    assert set(activity) == set(expected[0])  # the activity given again is the same


@pytest.mark.skipif(not hasattr(os, "fork"), reason="the carts file is split only by a forked helper")
def test_the_run_splits_the_carts_file_in_a_helper_and_tells_its_workers(
        shop: Shop, monkeypatch: pytest.MonkeyPatch) -> None:
    from cartrescue import processes

    carts = _carts_shop(shop)
    config = load_config(shop.config_path)
    run = SharedIndexes.for_run(config, NOW, 2)
    assert run is not None
    try:
        run.start_early()  # the test runner captures the streams: no fork, so no split
        assert CARTS not in run.env
    finally:
        run.close()
    monkeypatch.setattr(processes, "start_method", lambda: "fork")
    run = SharedIndexes.for_run(config, NOW, 2)
    assert run is not None
    try:
        run.start_early()
        run.start()
        base = Path(run.env[CARTS])
        for index in (1, 2):
            assert _read(carts, Shard(index, 2), base) == _read(carts, Shard(index, 2))
    finally:
        run.close()
    assert not base.parent.exists()


@pytest.mark.skipif(not hasattr(os, "fork"), reason="the carts file is split only by a forked helper")
def test_a_split_helper_that_dies_leaves_the_workers_to_read_the_file(
        shop: Shop, monkeypatch: pytest.MonkeyPatch) -> None:
    import signal

    from cartrescue import processes

    carts = _carts_shop(shop)
    monkeypatch.setattr(processes, "start_method", lambda: "fork")
    monkeypatch.setattr(CsvSource, "publish_shards", lambda self, spools: os.kill(os.getpid(), signal.SIGKILL))
    run = SharedIndexes.for_run(load_config(shop.config_path), NOW, 2)
    assert run is not None
    try:
        run.start_early()
        run.start()
        base = Path(run.env[CARTS])
        assert _read(carts, Shard(2, 2), base) == _read(carts, Shard(2, 2))  # waited for the run's marker
        assert failed_marker(base).exists()
    finally:
        run.close()


def test_one_address_in_two_unicode_spellings_is_one_shards(shop: Shop, tmp_path: Path) -> None:
    """``müller`` composed (ü) and decomposed (u and U+0308) is one person to the planner and the
    ledger: their carts went to two shards by the address lower-cased alone, each shard took its
    cart for the newest, and the person got two messages a day. Both ways of splitting (a worker
    reading the file, the run's split helper) give both carts to one shard."""
    composed = [f"j\u00fcrgen.m\u00fcller{n}@example.de" for n in range(12)]
    shop.add(*(cart(f"nfc{n}", email=address) for n, address in enumerate(composed)),
             *(cart(f"nfd{n}", email=unicodedata.normalize("NFD", address)) for n, address in enumerate(composed)))
    shop.write()
    carts = shop.folder / "carts.csv"
    base = tmp_path / "carts.spool"
    _split(carts, base, 4)
    for shared in (None, base):
        owned = {}
        for index in range(1, 5):
            for read in _read(carts, Shard(index, 4), shared)[1]:
                owned[read.id] = index
        assert all(owned[f"nfc{n}"] == owned[f"nfd{n}"] for n in range(12)), owned
    assert all(owner(address, "", count) == owner(unicodedata.normalize("NFD", address.upper()), "", count)
               for count in range(2, 9) for address in composed)  # and as Shard.owns finds it
