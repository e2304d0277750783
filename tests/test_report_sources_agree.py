"""The same orders give the same report whether they come from an orders CSV or from a shop
database through a ``sql`` source, also around a clock change, where the database's naive
local times repeat an hour. On the real MariaDB and PostgreSQL servers, through ``report --json``."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import closing, contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

import shopdb
from conftest import cli
from reportdata import Row, order_row, write_ledger, write_orders

UTC = timezone.utc
#: Stockholm turns 03:00 CEST back to 02:00 CET on 25 October 2026 (01:00Z).
SENT = datetime(2026, 10, 25, 0, 30, tzinfo=UTC)     # 02:30 CEST, the first 02:30
PLACED = datetime(2026, 10, 25, 0, 40, tzinfo=UTC)   # 02:40 CEST: stored naive as 2026-10-25 02:40
NOW = "2026-10-25T01:20:00Z"                           # 02:20 CET, the second 02:20: after the order
SHOP = {"timezone": "Europe/Stockholm", "currency": "EUR"}
PLACED_QUERY = ("SELECT id AS order_id, email, cart_id, created AS created_at, status, total FROM orders "
                "WHERE created >= :start AND created <= :end ORDER BY id")


def _fill(db: shopdb.ShopDb) -> None:
    naive = "datetime" if db.kind == "mariadb" else "timestamp"  # a shop-local time without a zone
    db.execute(f"CREATE TABLE orders (id integer, email varchar(100), cart_id varchar(20), created {naive} NULL, "
               "status varchar(20), total decimal(10,2))")
    db.insert("orders", [{"id": 1, "email": "c1@example.com", "cart_id": "c1", "created": datetime(2026, 10, 25, 2, 40),
                          "status": "paid", "total": "80.00"}])


def _summary(config: Path) -> dict[str, Any]:
    write_ledger(config.parent / "ledger.db", [Row("c1", SENT)])
    result = cli("report", "--json", "--since", "2026-10-24", "--config", str(config), "--now", NOW)
    assert result.exit_code == 0, result.output
    return {key: result.json["summary"][key] for key in ("messages", "orders", "revenue")}


@pytest.mark.parametrize("kind", shopdb.KINDS)
def test_an_order_in_the_repeated_hour_counts_from_a_database_as_from_a_csv_export(kind, tmp_path):
    """A report run in the second 02:20 asked the database for orders up to a naive 02:20, and the
    order of the first 02:40, 40 minutes earlier, was not among them: the sql source showed 0.00
    won back where the CSV export of the same order showed 80.00."""
    csv_folder = tmp_path / "csv"
    csv_folder.mkdir()
    write_orders(csv_folder / "orders.csv", [order_row("1", at=PLACED, total="80.00", cart_id="c1",
                                                       email="c1@example.com", status="paid")])
    (csv_folder / "carts.csv").write_text("cart_id,email,created_at,updated_at,total\n", encoding="utf-8")
    from_csv = _summary(shopdb.write_config(csv_folder, {"type": "csv", "carts": "carts.csv", "orders": "orders.csv"},
                                            shop=SHOP))
    db_folder = tmp_path / "db"
    db_folder.mkdir()
    source = {"type": "sql", "options": {"db_timezone": "shop"},
              "queries": {"carts": "SELECT id AS cart_id FROM orders WHERE 1 = 0", "orders_placed": PLACED_QUERY}}
    with shopdb.configured(kind, "sqlrepeated", _fill, db_folder, source, shop=SHOP) as (_, config):
        from_db = _summary(config)
    assert from_csv == {"messages": 1, "orders": 1, "revenue": "80.00"}
    assert from_db == from_csv


#: e + combining acute, as macOS keyboards and some form libraries send it
ADDRESS_STORED_DECOMPOSED = "Jose\u0301@example.com"


def _fill_decomposed(db: shopdb.ShopDb) -> None:
    """An order whose address the shop stored decomposed, under a cart id the ledger does not know."""
    naive = "datetime" if db.kind == "mariadb" else "timestamp"
    db.execute(f"CREATE TABLE orders (id integer, email varchar(100), cart_id varchar(20), created {naive} NULL, "
               "status varchar(20), total decimal(10,2))")
    db.insert("orders", [{"id": 1, "email": ADDRESS_STORED_DECOMPOSED, "cart_id": "web-77",
                          "created": datetime(2026, 10, 25, 2, 40), "status": "paid", "total": "80.00"}])


@contextmanager
def _decomposed_shop(kind: str, folder: Path, source: dict[str, Any]) -> Iterator[Path]:
    """A config reading :func:`_fill_decomposed`'s order from ``kind``: a server's throw-away
    database, or a real SQLite file (its times as the text SQLite keeps)."""
    if kind != "sqlite":
        with shopdb.configured(kind, "sqlnfc", _fill_decomposed, folder, source, shop=SHOP) as (_, config):
            yield config
        return
    path = folder / "shop.db"
    with closing(sqlite3.connect(path)) as connection, connection:
        connection.execute("CREATE TABLE orders (id integer, email text, cart_id text, created text, status text, "
                           "total text)")
        connection.execute("INSERT INTO orders VALUES (1, ?, 'web-77', '2026-10-25 02:40:00', 'paid', '80.00')",
                           (ADDRESS_STORED_DECOMPOSED,))
    yield shopdb.write_config(folder, {**source, "url": f"sqlite:///{path}"}, shop=SHOP)


@pytest.mark.parametrize("kind", ["sqlite", *shopdb.KINDS])
def test_an_order_whose_address_is_stored_decomposed_counts_for_the_message_to_that_address(kind, tmp_path):
    """The database's rows were filtered by their address lower-cased alone, the ledger's in
    normal form C: the order of josé@ (decomposed) never reached the report, 0.00 won back."""
    source = {"type": "sql", "options": {"db_timezone": "shop"},
              "queries": {"carts": "SELECT id AS cart_id FROM orders WHERE 1 = 0", "orders_placed": PLACED_QUERY}}
    with _decomposed_shop(kind, tmp_path, source) as config:
        write_ledger(config.parent / "ledger.db", [Row("c1", SENT, email="jos\u00e9@example.com")])
        result = cli("report", "--json", "--since", "2026-10-24", "--config", str(config), "--now", NOW)
    assert result.exit_code == 0, result.output
    assert (result.json["summary"]["orders"], result.json["summary"]["revenue"]) == (1, "80.00")
