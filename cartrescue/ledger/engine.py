"""SQLite connection pragmas and the driver-level hooks the ledger's hot statements use.

Apart because this is the layer below SQLAlchemy (the driver's cursor, SQLite's write lock and
how long to wait for it). :data:`WRITE_LOCK_WAIT` is read here at each wait, so a test that
shortens it patches this module (``cartrescue.ledger`` does not re-export it).
"""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy.exc import DBAPIError, OperationalError


def sqlite_read_pragmas(dbapi_connection: Any, _record: Any) -> None:
    """A reader's (``Ledger(create=False)``): waits for a writer's lock, changes nothing.

    Every statement waits :data:`WRITE_LOCK_WAIT` for the lock, as a claim does (read when the
    connection opens, so that a test can shorten it)."""
    cursor = dbapi_connection.cursor()
    cursor.execute(f"PRAGMA busy_timeout={int(WRITE_LOCK_WAIT * 1000)}")
    cursor.close()


def sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    sqlite_read_pragmas(dbapi_connection, _record)  # first: the next pragmas may wait for a lock
    cursor = dbapi_connection.cursor()
    # Switching a new file to WAL needs a moment alone with it, and SQLite answers "locked" at
    # once (no busy wait) while another process creates it: retry briefly. A file in another
    # journal mode that another process holds (a backup, a sqlite3 shell) answers "locked" only
    # after the busy timeout: the retries end with WRITE_LOCK_WAIT in all, not a hundred of them
    # (a command waited 50 minutes on such a ledger).
    deadline = time.monotonic() + WRITE_LOCK_WAIT
    while True:
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            break
        except Exception as exc:  # sqlite3.OperationalError; the driver module is not imported here
            if "locked" not in str(exc) or time.monotonic() >= deadline:
                raise
            time.sleep(0.02)
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def driver_sql(conn: Any, statement: str, params: Any, *, many: bool = False) -> Any:
    """``statement`` on the driver's own cursor of SQLAlchemy connection ``conn``, in its transaction.

    What ``conn.exec_driver_sql`` does, without the ~20 µs of its events, context and result
    objects, for the statements a run executes per message (a claim, its outcome); on SQLite
    they run while the write lock is held. A driver error becomes SQLAlchemy's, as there, and a
    lost connection is invalidated, so that the next transaction opens a new one.
    """
    dbapi_connection = conn.connection.dbapi_connection
    cursor = dbapi_connection.cursor()
    try:
        if many:
            cursor.executemany(statement, params)
        else:
            cursor.execute(statement, params)
    except Exception as exc:
        dialect = conn.dialect
        if not isinstance(exc, dialect.loaded_dbapi.Error):
            raise
        lost = dialect.is_disconnect(exc, dbapi_connection, cursor)
        if lost:
            conn.invalidate(exc)
        raise DBAPIError.instance(statement, params, exc, dialect.loaded_dbapi.Error,
                                  connection_invalidated=lost, dialect=dialect) from exc
    return cursor


#: How long a SQLite writer waits for the write lock in all (as ``busy_timeout`` for the rest),
#: and its naps between attempts: 50 µs for the first 20, then doubled up to 2 ms.
WRITE_LOCK_WAIT = 30.0
_FIRST_NAP, _SHORT_NAPS, _LONGEST_NAP = 0.00005, 20, 0.002


def write_lock(dbapi_connection: Any) -> None:
    """Begin a SQLite transaction holding the write lock (``BEGIN IMMEDIATE``), waiting in short naps.

    SQLite's own busy handler sleeps 1, 2, 5, 10 ms ... between attempts. Workers of one run on
    one SQLite ledger each commit a claim per message (~0.1 ms holding the lock), so they meet
    often, and each meeting cost the waiter at least a millisecond: ~25 % of a worker's time in
    a 2-worker send was spent asleep. Here the waiter tries again every 50 µs for about a
    millisecond, then after 100 µs, 200 ... up to 2 ms, for :data:`WRITE_LOCK_WAIT` seconds in
    all; the lock is taken before any statement of the transaction runs, so a failed attempt
    leaves nothing to undo.
    """
    nap = _FIRST_NAP
    deadline = 0.0
    attempts = 0
    while True:
        try:
            dbapi_connection.execute("BEGIN IMMEDIATE")
            return
        except Exception as exc:  # sqlite3.OperationalError; the driver module is not imported here
            if "locked" not in str(exc) and "busy" not in str(exc):
                raise
            now = time.monotonic()
            if not deadline:
                deadline = now + WRITE_LOCK_WAIT
            elif now > deadline:
                raise OperationalError("BEGIN IMMEDIATE", None, exc) from None  # as any statement's error
        time.sleep(nap)
        attempts += 1
        if attempts > _SHORT_NAPS:
            nap = min(nap * 2, _LONGEST_NAP)


def sqlite_version() -> tuple[int, ...]:
    import sqlite3

    return sqlite3.sqlite_version_info
