"""The report reads a PostgreSQL or MariaDB ledger (streamed rows) exactly as a SQLite one (read in place)."""

from __future__ import annotations

from datetime import timedelta

import pytest

import shopdb
from conftest import NOW, Shop
from reportdata import Experiment, Row, order_row, write_ledger

LATER = NOW + timedelta(days=6)


def _document(shop: Shop) -> dict:
    result = shop.cli("report", "--json", "--since", "2026-11-19", "--until", "2026-11-21", now=LATER)
    assert result.exit_code == 0, result.output
    return result.json


@pytest.mark.parametrize("kind", shopdb.KINDS)
def test_a_database_ledger_gives_the_same_report_as_a_sqlite_one(make_shop, kind: str) -> None:
    rows = Experiment(60, 40, 0, 0).rows(NOW) + [
        Row("t1", NOW + timedelta(days=1), step=2, variant="b"), Row("t2", NOW, channel="call-list", tier="vip"),
        Row("e1", NOW - timedelta(days=3), email="old@example.com"),
        # a stream that began before the rows the period reads (step 2 re-timed by the customer's return)
        Row("long", NOW - timedelta(days=15)), Row("long", NOW + timedelta(hours=5), step=2),
        Row("idn", NOW, email="ann@xn--bcher-kva.example")]  # as an older cartrescue kept the export's address
    orders = [order_row(f"o{n}", at=NOW + timedelta(hours=n), total=f"{10 + n}.25", cart_id=f"t{n}") for n in range(0, 60, 4)]
    orders += [order_row(f"h{n}", at=NOW + timedelta(hours=n), total="9.99", cart_id=f"h{n}") for n in range(0, 40, 9)]
    orders.append(order_row("by-mail", at=NOW - timedelta(days=2), total="5.00", email="old@example.com"))
    orders.append(order_row("by-idn", at=NOW + timedelta(hours=1), total="7.00", email="ann@xn--bcher-kva.example"))
    local = make_shop("sqlite")
    write_ledger(local.folder / "ledger.db", rows)
    local.add_orders(*orders)
    with shopdb.shop_database(kind, "ledger") as db:
        remote = make_shop(kind)
        remote.configure(ledger={"url": db.url})
        write_ledger(db.url, rows)
        remote.add_orders(*orders)
        expected, got = _document(local), _document(remote)
    for document in (expected, got):
        document.pop("ledger")
        document.pop("period")
    assert got == expected
    # o0 and h0 were placed the same second as their row: not after it, so not counted
    assert expected["summary"]["orders"] == 15 and expected["incrementality"]["holdout"]["converted"] == 4
    assert expected["incrementality"]["treated"]["carts"] == 61  # "idn", not "long": its stream began 15 days before
