"""An export read while the shop's export job still writes it stops the run (exit 3), before a
cut row, a cart without its last items or a missing order can cost a customer; an export renamed
into place meanwhile is read whole, as it was when opened."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from cartrescue.errors import ExitCode, SourceError
from cartrescue.model import RowProblem
from cartrescue.sources.base import ALL_TIME
from cartrescue.sources.csv import CsvSource
from cartrescue.sources.order_index import OrderIndex
from conftest import Shop

HEADER = "cart_id,email,currency,created_at,updated_at,sku,name,quantity,unit_price,marketing_consent\n"
ORDERS = "order_id,email,customer_id,cart_id,total,status,created_at,delivered\n"


def _row(cart_id: str) -> str:
    return f"{cart_id},{cart_id}@example.com,EUR,2026-11-20T08:00:00Z,,A,Mug,1,1.00,yes\n"


def _carts(tmp_path: Path, count: int = 3) -> Path:
    path = tmp_path / "carts.csv"
    path.write_text(HEADER + "".join(_row(f"c{n}") for n in range(1, count + 1)), encoding="utf-8")
    return path


def test_a_carts_export_that_grows_while_the_first_pass_reads_it_stops_the_pass(tmp_path: Path) -> None:
    path = _carts(tmp_path)
    with CsvSource(path) as source:
        activity = source.activity(ALL_TIME)
        next(activity)
        with path.open("a", encoding="utf-8") as export:  # the export job writes on
            export.write("c4,c4@example.com,EUR,2026-11-20T08:00")
        with pytest.raises(SourceError, match="carts.csv: changed while it was read") as raised:
            list(activity)
    assert raised.value.exit_code == ExitCode.SOURCE
    assert "rename it into place" in str(raised.value)


def test_a_carts_export_renamed_into_place_while_it_is_read_is_read_as_it_was_opened(tmp_path: Path) -> None:
    path = _carts(tmp_path)
    with CsvSource(path) as source:
        activity = source.activity(ALL_TIME)
        first = next(activity)
        fresh = tmp_path / "carts.csv.tmp"
        fresh.write_text(HEADER + _row("new"), encoding="utf-8")
        os.replace(fresh, path)  # what the docs ask of an export job
        rest = list(activity)
        carts = list(source.carts())
    assert [a.cart_key.split(":")[-1] for a in [first, *rest]] == ["c1", "c2", "c3"]
    assert [c.id for c in carts] == ["c1", "c2", "c3"]


class _GrowingWhileIndexed(OrderIndex):
    """An orders index whose first batch lands while the export job appends an order."""

    def __init__(self, export: Path) -> None:
        super().__init__()
        self.export = export

    def add(self, rows):  # type: ignore[no-untyped-def]
        if self.export.exists():
            with self.export.open("a", encoding="utf-8") as handle:
                handle.write("o9,c1@example.com,,c1,1.00,completed,2026-11-20T09:00:00Z,\n")
            self.export = self.export.with_suffix(".done")  # once
        super().add(rows)


def test_an_orders_export_that_grows_while_it_is_indexed_stops_the_run(tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    import cartrescue.sources.csvorders as csv_orders  # where the orders reader reads it

    monkeypatch.setattr(csv_orders, "ORDER_BATCH", 1)
    orders = tmp_path / "orders.csv"
    orders.write_text(ORDERS + "o1,c2@example.com,,,1.00,completed,2026-11-01T08:00:00Z,\n"
                      + "o2,c3@example.com,,,1.00,completed,2026-11-01T08:00:00Z,\n", encoding="utf-8")
    with CsvSource(_carts(tmp_path), orders) as source:
        with pytest.raises(SourceError, match="orders.csv: changed while it was read"):
            source._index_orders(_GrowingWhileIndexed(orders))


def test_an_export_that_stays_as_it_was_opened_reads_without_a_word(tmp_path: Path) -> None:
    problems: list[RowProblem] = []
    orders = tmp_path / "orders.csv"
    orders.write_text(ORDERS + "o1,c2@example.com,,,1.00,completed,2026-11-01T08:00:00Z,\n", encoding="utf-8")
    with CsvSource(_carts(tmp_path), orders, on_problem=problems.append) as source:
        list(source.activity(ALL_TIME))
        carts = list(source.carts())
        assert [o.id for o in source.orders_for(carts)] == ["o1"]
        assert [o.id for o in source.orders(ALL_TIME)] == ["o1"]
    assert problems == [] and len(carts) == 3


@pytest.mark.slow
@pytest.mark.parametrize("workers", ["1", "2"])
def test_a_run_over_an_export_being_written_exits_3_and_delivers_nothing(shop: Shop, workers: str) -> None:
    import subprocess
    import sys
    import threading

    from conftest import NOW, REPO, cart, iso

    shop.add(*(cart(f"c{n:05}", email=f"a{n:05}@example.com") for n in range(3000)))
    shop.write()
    export = shop.folder / "carts.csv"
    line = export.read_text(encoding="utf-8").splitlines()[1]
    stop = threading.Event()

    def export_job() -> None:  # appends a cart every few milliseconds until the run has ended
        n = 0
        while not stop.wait(0.003):
            n += 1
            with export.open("a", encoding="utf-8") as handle:
                handle.write(line.replace("c00000", f"late{n}").replace("a00000@", f"late{n}@") + "\n")

    writer = threading.Thread(target=export_job)
    writer.start()
    try:
        done = subprocess.run(
            [sys.executable, "-m", "cartrescue.cli", "run", "--json", "--outbox", str(shop.folder / "out"),
             "--workers", workers, "--config", str(shop.config_path), "--now", iso(NOW)],
            cwd=REPO, capture_output=True, text=True, timeout=120, check=False)
    finally:
        stop.set()
        writer.join()
    assert done.returncode == 3, done.stderr
    assert "carts.csv: changed while it was read" in done.stderr
    document = json.loads(done.stdout)
    assert document["error"]["code"] == "source" and document["error"]["exit_code"] == 3
    assert not list((shop.folder / "out").glob("*.eml")) if (shop.folder / "out").exists() else True
    assert shop.messages() == []
