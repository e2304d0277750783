"""A SQLite ledger this version brought up to date says so in ``PRAGMA user_version``
(``ledger.schema.schema_stamp``): opening it again reads one pragma, not every table's columns,
and a ledger an older cartrescue left is still brought up to date once."""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from sqlalchemy import Column, Integer, MetaData, String, Table, event
from sqlalchemy.engine import Engine

from cartrescue.ledger import Ledger
from cartrescue.ledger.schema import schema_stamp
from cartrescue.ledger.tables import READ_TABLES, TABLES

STAMP = schema_stamp(model.__table__ for model in TABLES)  # type: ignore[attr-defined]


def _user_version(path: Path) -> int:
    with contextlib.closing(sqlite3.connect(path)) as db:
        return int(db.execute("PRAGMA user_version").fetchone()[0])


def _columns(path: Path, table: str) -> set[str]:
    with contextlib.closing(sqlite3.connect(path)) as db:
        return {row[1] for row in db.execute(f"PRAGMA table_info({table})")}


@contextlib.contextmanager
def _statements() -> Iterator[list[str]]:
    """Every SQL statement any engine runs meanwhile."""
    seen: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        seen.append(statement)

    event.listen(Engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(Engine, "before_cursor_execute", record)


def _open(path: Path, create: bool = True) -> Ledger:
    ledger = Ledger(f"sqlite:///{path}", create=create)
    ledger.close()
    return ledger


def test_a_new_sqlite_ledger_carries_the_stamp_of_this_versions_schema(tmp_path: Path) -> None:
    _open(tmp_path / "ledger.db")
    assert _user_version(tmp_path / "ledger.db") == STAMP


def test_opening_a_ledger_this_version_made_creates_and_inspects_nothing(tmp_path: Path) -> None:
    _open(tmp_path / "ledger.db")
    with _statements() as seen:
        _open(tmp_path / "ledger.db")
        _open(tmp_path / "ledger.db", create=False)
    catalogue = [s for s in seen if "table_info" in s or "CREATE" in s.upper() or "sqlite_master" in s]
    assert catalogue == [], catalogue
    assert any("user_version" in s for s in seen)  # what it read instead


def test_a_ledger_an_older_version_left_gets_its_missing_column_and_then_the_stamp(tmp_path: Path) -> None:
    path = tmp_path / "ledger.db"
    _open(path)
    with contextlib.closing(sqlite3.connect(path)) as db, db:
        db.execute("ALTER TABLE cr_code DROP COLUMN replaced_claim_id")
        db.execute("PRAGMA user_version = 1")  # an older cartrescue's value
    assert _open(path, create=False).behind == ["cr_code.replaced_claim_id"]  # a reader says what it lacks
    _open(path)
    assert "replaced_claim_id" in _columns(path, "cr_code")
    assert _user_version(path) == STAMP


def test_a_reader_of_a_ledger_without_the_stamp_still_checks_its_tables(tmp_path: Path) -> None:
    path = tmp_path / "ledger.db"
    _open(path)
    with contextlib.closing(sqlite3.connect(path)) as db, db:
        db.execute("DROP TABLE cr_promotion")
        db.execute("PRAGMA user_version = 1")
    assert "cr_promotion" in _open(path, create=False).behind
    assert _user_version(path) == 1  # a reader changes nothing


def test_a_schema_with_another_column_or_index_has_another_stamp() -> None:
    def table(*extra: Column[Any]) -> Table:
        return Table("cr_x", MetaData(), Column("id", Integer, primary_key=True), Column("a", String), *extra)

    plain = schema_stamp([table()])
    assert schema_stamp([table()]) == plain
    assert schema_stamp([table(Column("b", String))]) != plain
    assert schema_stamp([table(Column("b", String, index=True))]) != schema_stamp([table(Column("b", String))])
    assert schema_stamp(model.__table__ for model in READ_TABLES) != STAMP  # type: ignore[attr-defined]
    assert STAMP > 1  # an older cartrescue still finds its times rewritten (user_version >= 1)
