"""Keys that differ only in case, an accent or a trailing blank are two carts on every ledger.

MariaDB's default collation (``utf8mb4_general_ci``) compares text without case and accents, and
its ``utf8mb4_bin`` pads with blanks: cart ids ``Kx7aB`` and ``kX7Ab`` were one key to
``cr_decision``'s primary key and ``cr_message``'s unique (cart, step, channel), so the second
cart's claim failed (``Duplicate entry 'csv:kX7Ab' for key 'PRIMARY'``), the run stopped with
exit 2 and ``"decisions": []``, every run after too, and that cart was never reminded, while
SQLite and PostgreSQL sent both. cartrescue's tables on MySQL and MariaDB now compare text byte
for byte (``utf8mb4_nopad_bin``), and a ledger an older version made is converted when a run
opens it to write.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from shopdb import KINDS, ShopDb, shop_database
from sqlmodel import SQLModel

from cartrescue.ledger import TABLES, ClaimRequest, Ledger
from conftest import NOW, Shop, cart

ALL_KINDS = [pytest.param("sqlite", id="sqlite"), *KINDS]
#: Cart ids MariaDB's default collation took for one: in case, in an accent.
LOOKALIKES = ("Kx7aB", "kX7Ab", "Cafe", "Café")


@pytest.fixture(params=ALL_KINDS)
def ledger_url(request: pytest.FixtureRequest, shop: Shop) -> Iterator[str]:
    """A ledger of each kind for ``shop``, configured: its SQLite file, or a throw-away database."""
    if request.param == "sqlite":
        yield f"sqlite:///{shop.folder / 'ledger.db'}"
        return
    with shop_database(request.param, "ledgerkeys") as db:
        shop.configure(ledger={"url": db.url})
        yield db.url


def _rows(url: str, table: str) -> list[dict[str, Any]]:
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as conn:
            return [dict(row) for row in conn.execute(sa.text(f"SELECT * FROM {table}")).mappings()]
    finally:
        engine.dispose()


def _run(shop: Shop, minutes: int = 0) -> Any:
    result = shop.cli("run", "--outbox", str(shop.folder / "out"), "--json", now=NOW + timedelta(minutes=minutes))
    assert result.exit_code == 0, result.output
    return result


def test_carts_whose_ids_differ_only_in_case_or_an_accent_each_get_their_reminder(shop: Shop, ledger_url: str) -> None:
    shop.add(*(cart(cart_id, email=f"c{n}@example.com") for n, cart_id in enumerate(LOOKALIKES)))
    first = _run(shop)
    assert sorted(row["cart_id"] for row in first.json["decisions"] if row["delivery"] == "sent") == \
        sorted(LOOKALIKES)
    _run(shop, minutes=10)  # and the next run, which finds them all claimed
    assert sorted(row["cart_id"] for row in _rows(ledger_url, "cr_message")) == sorted(LOOKALIKES)
    assert sorted(row["cart_key"] for row in _rows(ledger_url, "cr_decision")) == \
        sorted(f"csv:{cart_id}" for cart_id in LOOKALIKES)


def test_the_ledger_keeps_keys_apart_that_differ_in_case_an_accent_or_a_trailing_blank(ledger_url: str) -> None:
    """A shop database's cart id is read as it is stored: ``c1`` and ``c1 `` are two carts there."""
    keys = ["sql:c1", "sql:c1 ", "sql:C1", "sql:ç1"]
    ledger = Ledger(ledger_url)
    try:
        run_id = ledger.start_run("send", NOW)
        with ledger.lock(run_id, timedelta(minutes=5)):
            claimed = ledger.claim(run_id, [
                ClaimRequest(key, key.removeprefix("sql:"), f"c{n}@example.com", 1, "email", "outbox", "reminder-1",
                             None, "standard", 0.0) for n, key in enumerate(keys)], NOW)
        ledger.save_decisions(run_id, NOW, [{"cart_key": key, "email": None, "action": "send", "reason": "due",
                                             "step": 1, "tier": "standard", "score": 0.0} for key in keys])
        assert sorted(key for key, _step, _channel in claimed) == sorted(keys)
        assert sorted(ledger.history(keys, [], []).by_cart) == sorted(keys)
    finally:
        ledger.close()
    assert sorted(row["cart_key"] for row in _rows(ledger_url, "cr_decision")) == sorted(keys)


def _collations(db: ShopDb) -> set[str]:
    """The collations of the tables of cartrescue and of their text columns."""
    return {name for (name,) in db.execute(
        "SELECT TABLE_COLLATION FROM information_schema.TABLES WHERE TABLE_SCHEMA = DATABASE() "
        "AND TABLE_NAME LIKE 'cr\\_%' UNION SELECT COLLATION_NAME FROM information_schema.COLUMNS "
        "WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME LIKE 'cr\\_%' AND COLLATION_NAME IS NOT NULL")}


@pytest.mark.mariadb
def test_an_older_case_insensitive_mariadb_ledger_is_converted_when_a_run_opens_it(shop: Shop) -> None:
    """The tables as an older cartrescue made them, in the database's default collation, with
    ``Kx7aB``'s step 1 sent: a command that only reads leaves them as they are, the next
    delivering run converts them, keeps what they hold, and reminds ``kX7Ab`` too."""
    shop.add(cart("Kx7aB", email="anna@example.com"), cart("kX7Ab", email="bert@example.com"))
    with shop_database("mariadb", "oldledger") as db:
        shop.configure(ledger={"url": db.url})
        SQLModel.metadata.create_all(db.admin, tables=[model.__table__ for model in TABLES])  # type: ignore[attr-defined]
        assert _collations(db) == {"utf8mb4_general_ci"}
        db.execute("INSERT INTO cr_message (cart_key, cart_id, email, step, channel, transport, template, status, "
                   "reply, message_id, attempts, claimed_at) VALUES ('csv:Kx7aB', 'Kx7aB', 'anna@example.com', 1, "
                   "'email', 'outbox', 'reminder-1', 'sent', '', '', 1, :at)", {"at": NOW - timedelta(minutes=30)})
        looked = shop.cli("carts", "--json")
        assert looked.exit_code == 0, looked.output
        assert _collations(db) == {"utf8mb4_general_ci"}  # only read
        first = _run(shop)
        assert _collations(db) == {"utf8mb4_nopad_bin"}
        assert [row["cart_id"] for row in first.json["decisions"] if row["delivery"] == "sent"] == ["kX7Ab"]
        _run(shop, minutes=10)
        assert sorted((row["cart_id"], row["status"]) for row in _rows(db.url, "cr_message")) == [
            ("Kx7aB", "sent"), ("kX7Ab", "sent")]
        assert sorted(row["cart_key"] for row in _rows(db.url, "cr_decision")) == ["csv:Kx7aB", "csv:kX7Ab"]
