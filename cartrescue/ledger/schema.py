"""Creating the ledger's tables and bringing an older ledger's schema up to date.

Apart because it runs once as a ledger opens and never again: missing tables, columns and indexes, the
binary collation of MySQL and MariaDB, the SQLite times of older versions, and what a reader
finds missing. :class:`SchemaUpkeep` is a part of :class:`cartrescue.ledger.Ledger`.
"""

from __future__ import annotations

import time
import zlib
from collections.abc import Iterable
from functools import cache
from typing import Any

from sqlalchemy import bindparam
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError, OperationalError, ProgrammingError
from sqlmodel import SQLModel

from cartrescue.ledger.errors import NO_SCHEMA, NO_SCHEMA_HINT

#: MySQL's and MariaDB's collations of utf8mb4 that compare text as PostgreSQL and SQLite do,
#: code point by code point, best first: ``utf8mb4_bin`` (MySQL 5.7 has no other) still takes
#: ``c1`` and ``c1 `` for one (it pads with blanks), MariaDB's ``nopad_bin`` and MySQL 8's
#: ``0900_bin`` do not.
BINARY_COLLATIONS = ("utf8mb4_nopad_bin", "utf8mb4_0900_bin", "utf8mb4_bin")


def binary_collation(known: Iterable[str]) -> str:
    """The best of :data:`BINARY_COLLATIONS` among a server's ``known`` collations."""
    have = set(known)
    return next((name for name in BINARY_COLLATIONS if name in have), BINARY_COLLATIONS[-1])


#: ``PRAGMA user_version`` of a SQLite ledger whose times are all in SQLAlchemy's text format.
_SQLITE_MOMENTS_NORMALISED = 1


def schema_stamp(tables: Iterable[Any]) -> int:
    """The ``PRAGMA user_version`` of a SQLite ledger that has every table, column and index of
    ``tables`` (and its times in the current form): a checksum of their names and types, above
    :data:`_SQLITE_MOMENTS_NORMALISED` so that an older cartrescue still finds its times rewritten.

    Opening a ledger this version already brought up to date then reads one pragma instead of
    every table's columns (a cron run, each command of a test): a version whose schema differs
    has another stamp, and does the upkeep once. Only ever set after the upkeep succeeded."""
    shape = sorted(
        (table.name, sorted((column.name, str(column.type), column.nullable) for column in table.columns),
         sorted((index.name, [column.name for column in index.columns], bool(index.unique))
                for index in table.indexes))
        for table in tables)
    return 0x40000000 | (zlib.crc32(repr(shape).encode()) & 0x3FFFFFFF)


@cache
def _ledger_stamp() -> int:
    """:func:`schema_stamp` of this version's tables (computed once a process: they never change)."""
    from cartrescue.ledger.tables import TABLES

    return schema_stamp(model.__table__ for model in TABLES)  # type: ignore[attr-defined]


@cache
def _sqlite_ddl(table: Any) -> tuple[str, tuple[str, ...]]:
    """``CREATE TABLE IF NOT EXISTS`` of ``table`` and ``CREATE INDEX IF NOT EXISTS`` of each of its
    indexes, in SQLite's words, compiled once a process: a new ledger's DDL took half of its opening
    (every command of a test opens a new one; run-all's shops each open theirs)."""
    from sqlalchemy.dialects import sqlite
    from sqlalchemy.schema import CreateIndex, CreateTable

    dialect = sqlite.dialect()
    return (str(CreateTable(table, if_not_exists=True).compile(dialect=dialect)),
            tuple(str(CreateIndex(index, if_not_exists=True).compile(dialect=dialect)) for index in table.indexes))


def _normalise_sqlite_moments(engine: Any, tables: list[Any]) -> bool:
    """Rewrite the times an older cartrescue wrote as ``'… 23:00:00+00:00'`` or
    ``'… 23:00:00.123456+00:00'`` (its raw claim path) as SQLAlchemy writes them, ``'… 23:00:00.000000'``.

    Times are compared as text in SQLite, and the two forms sorted apart by a hair at a whole
    second. Once per ledger: ``PRAGMA user_version`` records that it was done, and a ledger that
    has it set skips even the check. Every stored time is UTC, so only the form changes.
    Whether it is done (False: a read-only or busy ledger, read as it is).
    """
    from sqlalchemy import DateTime

    try:
        with engine.begin() as conn:
            if conn.exec_driver_sql("PRAGMA user_version").scalar() >= _SQLITE_MOMENTS_NORMALISED:
                return True
            for table in tables:
                for column in table.columns:
                    if isinstance(getattr(column.type, "impl", column.type), DateTime):
                        name = column.name
                        conn.exec_driver_sql(
                            f"UPDATE {table.name} SET {name} = substr({name}, 1, 19) || CASE WHEN substr({name}, 20, 1)"
                            f" = '.' THEN substr({name}, 20, 7) ELSE '.000000' END WHERE {name} LIKE '%+00:00'")
            conn.exec_driver_sql(f"PRAGMA user_version = {_SQLITE_MOMENTS_NORMALISED}")
    except OperationalError:  # a read-only or busy ledger is read as it is; the next open tries again
        return False
    return True


class SchemaUpkeep:
    """The ledger's schema upkeep: a part of :class:`~cartrescue.ledger.Ledger`, which sets ``engine``."""

    engine: Engine

    def _up_to_date(self) -> bool:
        """A SQLite ledger this version already brought up to date (:func:`schema_stamp`): its
        tables need no upkeep, and a reader finds nothing missing. Never so on other databases."""
        if self.engine.dialect.name != "sqlite":
            return False
        with self.engine.connect() as conn:
            return conn.exec_driver_sql("PRAGMA user_version").scalar() == _ledger_stamp()

    def _stamp(self) -> None:
        """Record that this SQLite ledger is up to date (after :meth:`_create_tables` said it
        is); a read-only or busy file keeps its value, and the next open does the upkeep again."""
        try:
            with self.engine.begin() as conn:
                conn.exec_driver_sql(f"PRAGMA user_version = {_ledger_stamp()}")
        except OperationalError:
            pass

    def _create_tables(self, models: list[type[SQLModel]]) -> bool:
        """Create missing tables; two processes starting together may race, so retry. On SQLite
        also add the columns an older ledger lacks and rewrite its times; whether all of that is
        done (:meth:`_stamp` may record it), which a new file is as soon as its tables are made."""
        tables = [model.__table__ for model in models]  # type: ignore[attr-defined]
        if self.engine.dialect.name == "sqlite":
            # IF NOT EXISTS makes the race harmless: check-then-create is not atomic across processes.
            with self.engine.begin() as conn:
                older = {name for (name,) in conn.exec_driver_sql("SELECT name FROM sqlite_master WHERE type = 'table'")
                         } & {table.name for table in tables}
                for table in tables:
                    conn.exec_driver_sql(_sqlite_ddl(table)[0])
            # An index may be on a column an older ledger lacks; tables made just now have them all.
            done = self._add_missing_columns([m for m in models if m.__table__.name in older])  # type: ignore[attr-defined]
            done = _normalise_sqlite_moments(self.engine, tables) and done
            with self.engine.begin() as conn:
                for table in tables:
                    for index in _sqlite_ddl(table)[1]:
                        conn.exec_driver_sql(index)
            return done
        for attempt in range(5):
            try:
                SQLModel.metadata.create_all(self.engine, tables=tables)
                return True
            except (OperationalError, IntegrityError, ProgrammingError):
                if attempt == 4:
                    raise
                time.sleep(0.2 * (attempt + 1))
        return True  # not reached: the last attempt returns or raises

    def _add_missing_columns(self, models: list[type[SQLModel]]) -> bool:
        """Bring a ledger made by an older cartrescue up to date: add the columns it lacks;
        whether it has them all now (False: one could not be added, the next open tries again).

        Only nullable (or defaulted) columns are ever added, so old rows stay valid; nothing is
        renamed or dropped. Cheap: one catalogue read per table, once per process.
        """
        if not models:
            return True
        from sqlalchemy import inspect
        from sqlalchemy.schema import CreateColumn

        inspector = inspect(self.engine)
        done = True
        for model in models:
            table = model.__table__  # type: ignore[attr-defined]
            present = {info["name"] for info in inspector.get_columns(table.name)}
            for wanted in table.columns:
                if wanted.name in present:
                    continue
                ddl = CreateColumn(wanted).compile(dialect=self.engine.dialect)
                text = str(ddl).replace(" NOT NULL", "")
                if wanted.default is not None and getattr(wanted.default, "is_scalar", False):
                    text += f" DEFAULT {wanted.default.arg!r}".replace('"', "'")
                try:
                    with self.engine.begin() as conn:
                        conn.exec_driver_sql(f"ALTER TABLE {table.name} ADD COLUMN {text}")
                except (OperationalError, ProgrammingError) as exc:  # another process added it first?
                    done = done and "duplicate" in str(exc).lower()
        return done

    def _add_missing_indexes(self, models: list[type[SQLModel]]) -> None:
        """Make the indexes of ``models``' tables that a ledger of an older cartrescue lacks, on
        PostgreSQL, MySQL and MariaDB (SQLite's path makes them in :meth:`_create_tables`).

        ``create_all`` skips a table that exists, its indexes too: an index added since (a
        look-up by phone number) was never made on such a ledger, and that look-up read every
        message of it. Each index is only for speed, so one that cannot be made (a role without
        the right, another process making it first) is left for the next open."""
        from sqlalchemy import inspect
        from sqlalchemy.schema import CreateIndex

        inspector = inspect(self.engine)
        for model in models:
            table = model.__table__  # type: ignore[attr-defined]
            if not table.indexes:
                continue
            present = {info["name"] for info in inspector.get_indexes(table.name)}
            for index in table.indexes:
                if index.name in present:
                    continue
                try:
                    with self.engine.begin() as conn:
                        conn.execute(CreateIndex(index))
                except (OperationalError, ProgrammingError, IntegrityError):  # PostgreSQL: a race on its catalogue
                    pass

    def _binary_text(self, models: list[type[SQLModel]]) -> None:
        """On MySQL and MariaDB, make the text columns of ``models``' tables compare byte for
        byte (:func:`binary_collation`), as PostgreSQL's and SQLite's do; convert those of a
        ledger an older cartrescue made, and new tables, which take the database's default.

        That default (``utf8mb4_general_ci``) took cart ids differing only in case (``Kx7aB``,
        ``kX7Ab``), or in a trailing blank or an accent, for one: the second cart's claim and
        decision broke ``cr_decision``'s and ``cr_message``'s unique keys, and the run stopped
        there (exit 2), every run after too, that cart never reminded. A finer collation never
        makes two stored values one, so converting cannot fail on duplicates. Cheap when done:
        one catalogue read per process; each conversion rewrites its table once.
        """
        if self.engine.dialect.name not in ("mysql", "mariadb"):
            return
        from sqlalchemy import text

        names = [model.__table__.name for model in models]  # type: ignore[attr-defined]
        with self.engine.connect() as conn:
            wanted = binary_collation(conn.execute(text(
                "SELECT COLLATION_NAME FROM information_schema.COLLATIONS WHERE COLLATION_NAME IN :known"
            ).bindparams(bindparam("known", expanding=True)), {"known": list(BINARY_COLLATIONS)}).scalars())
            behind = sorted(set(conn.execute(text(
                "SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = DATABASE() "
                "AND TABLE_NAME IN :names AND TABLE_COLLATION <> :wanted "
                "UNION SELECT TABLE_NAME FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = DATABASE() "
                "AND TABLE_NAME IN :names AND COLLATION_NAME <> :wanted"
            ).bindparams(bindparam("names", expanding=True)), {"names": names, "wanted": wanted}).scalars()))
        for name in behind:
            with self.engine.begin() as conn:
                conn.exec_driver_sql(f"ALTER TABLE {name} CONVERT TO CHARACTER SET utf8mb4 COLLATE {wanted}")

    def _schema_gaps(self, models: list[type[SQLModel]]) -> list[str]:
        """The tables and columns of ``models`` the database lacks (``cr_lock``, ``cr_run.shard``),
        and on SQLite times still in an older cartrescue's form: what opening it to write would
        add (:meth:`_create_tables`). Only reads the catalogue. Every table missing: no ledger."""
        from sqlalchemy import inspect

        inspector = inspect(self.engine)
        present = set(inspector.get_table_names())
        gaps: list[str] = []
        for model in models:
            table = model.__table__  # type: ignore[attr-defined]
            if table.name not in present:
                gaps.append(table.name)
                continue
            columns = {info["name"] for info in inspector.get_columns(table.name)}
            gaps.extend(f"{table.name}.{c.name}" for c in table.columns if c.name not in columns)
        if self.engine.dialect.name == "sqlite" and len(gaps) < len(models):
            with self.engine.connect() as conn:
                if (conn.exec_driver_sql("PRAGMA user_version").scalar() or 0) < _SQLITE_MOMENTS_NORMALISED:
                    gaps.append("times in the current form (PRAGMA user_version)")
        return gaps

    def _cannot_create(self, tables_missing: bool) -> str | None:
        """PostgreSQL: why the first run that records could not create the ledger's tables, or None.

        The URL's search_path names no schema that exists (:data:`NO_SCHEMA`), or, where the
        tables are still to be made, the role may not create in its schema (PostgreSQL 15 takes
        that right on ``public`` from every role but the database's owner): either way reading
        finds no tables, as in a new ledger, and every sending run stops (exit 2). One query, only
        where a command that records nothing opens the ledger."""
        if self.engine.dialect.name != "postgresql":
            return None
        with self.engine.connect() as conn:
            schema, user, may = conn.exec_driver_sql(
                "SELECT current_schema(), current_user, has_schema_privilege(current_schema(), 'CREATE')").one()
        if schema is None:
            return NO_SCHEMA + NO_SCHEMA_HINT
        if tables_missing and not may:
            return (f"permission denied for schema {schema} (role {user} may not create the ledger's tables there: "
                    f"GRANT CREATE ON SCHEMA {schema} TO {user}, or give the ledger a schema or database it owns)")
        return None
