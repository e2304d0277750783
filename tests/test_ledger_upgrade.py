"""A ledger an older cartrescue made, opened by this one: it gets what this version's tables have.

The fixtures under ``tests/fixtures/ledgers/`` are the schemas cartrescue created on 2026-11-30
(``bbb390e``), captured from that version on each kind of database. On PostgreSQL and MariaDB
opening such a ledger added its missing tables and columns but not the indexes made since on
tables it already had (``ix_cr_message_phone_claimed``: the one-message-a-day look-up by phone
number scanned every message of the ledger, once per SMS cart); SQLite's path made them.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import sqlalchemy as sa
from shopdb import KINDS, ledger_on, shop_database

from cartrescue.ledger import TABLES
from conftest import Shop, cart

FIXTURES = Path(__file__).parent / "fixtures" / "ledgers"


def _statements(kind: str) -> list[str]:
    """The fixture's SQL statements, without its comment lines."""
    text = (FIXTURES / f"{kind}-2026-11-30.sql").read_text(encoding="utf-8")
    lines = [line for line in text.splitlines() if not line.startswith("--")]
    return [part.strip() for part in "\n".join(lines).split(";\n") if part.strip().rstrip(";")]


@contextmanager
def older_ledger(shop: Shop, kind: str, label: str) -> Iterator[str]:
    """The URL of a ledger made with the 2026-11-30 schema (a database named after ``label`` on a
    server), configured for ``shop``."""
    if kind == "sqlite":
        url = f"sqlite:///{shop.folder / 'ledger.db'}"
        engine = sa.create_engine(url)
        with engine.begin() as conn:
            conn.connection.executescript(";\n".join(_statements("sqlite")) + ";")
        engine.dispose()
        shop.configure(ledger={"url": url})
        yield url
        return
    with shop_database(kind, label) as db:
        with db.admin.begin() as conn:
            for statement in _statements(kind):
                conn.exec_driver_sql(statement.rstrip(";"))
        shop.configure(ledger={"url": db.url})
        yield db.url


@pytest.fixture(params=[pytest.param("sqlite", id="sqlite"), *KINDS])
def old_ledger(request: pytest.FixtureRequest, shop: Shop) -> Iterator[str]:
    """The URL of a ledger made with the 2026-11-30 schema, configured for ``shop``."""
    with older_ledger(shop, request.param, "oldschema") as url:
        yield url


def _index_names(url: str) -> dict[str, set[str]]:
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    try:
        inspector = sa.inspect(engine)
        return {name: {index["name"] for index in inspector.get_indexes(name)} for name in inspector.get_table_names()}
    finally:
        engine.dispose()


def test_a_run_on_an_older_ledger_adds_the_indexes_its_tables_lack(shop: Shop, old_ledger: str) -> None:
    assert "ix_cr_message_phone_claimed" not in _index_names(old_ledger)["cr_message"]
    shop.add(cart("c1", email="anna@example.com"))
    result = shop.cli("run", "--outbox", str(shop.folder / "out"), "--json")
    assert result.exit_code == 0, result.output
    have = _index_names(old_ledger)
    wanted = {model.__table__.name: {index.name for index in model.__table__.indexes}  # type: ignore[attr-defined]
              for model in TABLES}
    assert {table: names - have.get(table, set()) for table, names in wanted.items() if names - have.get(table, set())} == {}


def _indexed_first(url: str, table: str) -> set[str]:
    """The columns some index of ``table`` begins with (a range on them is a search, not a scan)."""
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    try:
        return {index["column_names"][0] for index in sa.inspect(engine).get_indexes(table)}
    finally:
        engine.dispose()


@pytest.mark.parametrize("kind", [pytest.param("sqlite", id="sqlite"), *KINDS])
def test_an_older_ledgers_decisions_get_an_index_on_their_time(shop: Shop, kind: str) -> None:
    """The report reads the decisions of its period and retention deletes the old ones, both by
    ``decided_at``: with no index on it, each read every decision the ledger kept."""
    with older_ledger(shop, kind, "ledgersmallold") as url:
        assert "decided_at" not in _indexed_first(url, "cr_decision")
        shop.add(cart("c1", email="anna@example.com"))
        assert shop.cli("run", "--outbox", str(shop.folder / "out")).exit_code == 0
        assert "decided_at" in _indexed_first(url, "cr_decision")


@pytest.mark.parametrize("kind", [pytest.param("sqlite", id="sqlite"), *KINDS])
def test_a_new_ledgers_decisions_have_an_index_on_their_time(shop: Shop, kind: str) -> None:
    with ledger_on(shop, kind, "ledgersmallnew") as url:
        shop.add(cart("c1", email="anna@example.com"))
        assert shop.cli("run", "--outbox", str(shop.folder / "out")).exit_code == 0
        assert "decided_at" in _indexed_first(url, "cr_decision")
