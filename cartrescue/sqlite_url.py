"""Which file a SQLite URL names, for the ledger and a shop's database alike.

Owns one question: a path (``sqlite:///shop.db``) or a ``file:`` URI (``sqlite:///file:shop.db?
uri=true``) both name a file, which may not exist yet. Opening a missing one creates it, so the
callers ask first: a shop's database is only read, and a command that records nothing must not
make an empty ledger at a mistyped path. A ledger that is to be made is made private first
(:func:`create_private`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


def sqlite_file(url: Any) -> Path | None:
    """The file a SQLite URL (text or parsed) names, resolved; None for another database, one in
    memory, or a URL that does not parse (opening it says why, naming its config key)."""
    from urllib.parse import unquote, urlsplit

    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError
    from sqlalchemy.util import asbool

    try:
        url = make_url(url)
    except ArgumentError:
        return None
    if url.get_backend_name() != "sqlite" or not url.database or url.database == ":memory:":
        return None
    if url.database.startswith("file:") and asbool(url.query.get("uri", False)):
        if url.query.get("mode") == "memory":
            return None
        path = unquote(urlsplit(url.database).path, errors="surrogateescape")  # a folder's bytes that are not UTF-8
        return Path(path).resolve() if path and path != ":memory:" else None
    return Path(url.database).resolve()


def sqlite_tables(path: Path) -> list[str] | None:
    """The tables of the existing SQLite file ``path``, read through a read-only connection (its
    bytes do not change, as opening it for a ledger would: WAL mode, cartrescue's tables); None
    when it cannot be read so (not a database, locked): opening it the usual way says why."""
    import sqlite3
    from urllib.parse import quote

    try:
        connection = sqlite3.connect(f"file:{quote(str(path), errors='surrogateescape')}?mode=ro", uri=True, timeout=5)
        try:
            return [name for (name,) in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        finally:
            connection.close()
    except sqlite3.Error:
        return None


def create_private(url: str) -> None:
    """Make the SQLite file ``url`` names, when it is not there yet, empty and readable by its
    owner only (0600): SQLite makes a new file under the umask (0644 under the usual 022), and a
    ledger holds every address, name and phone number the shop reminded. SQLite gives its
    journal and WAL files the database file's mode. An existing file keeps its mode (an owner
    who shared it with a group meant to); a file that cannot be made here is left for SQLite
    to fail on and explain."""
    import os

    path = sqlite_file(url)
    if path is None or "mode=ro" in url:  # a read-only URI never makes its file
        return
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    except OSError:
        pass
