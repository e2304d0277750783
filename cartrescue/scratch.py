"""Scratch databases and private folders: what a run keeps on disk for itself, and throws away.

Owns creating a run's private temporary folders, named after the process that made them
(``<temp>/cartrescue-<kind>-<pid namespace>-<pid>-<random>``), sweeping those of processes that are
gone, and the throw-away SQLite files in them (durability off) that the newest-cart index and the
CSV orders index use, so that a million carts cost the same memory as a thousand.

A run ends by deleting its folders, but a process that was killed (SIGKILL, the out-of-memory
killer, ``run-all --timeout``) or a forked worker (which ends with ``os._exit``, past every
finalizer) cannot: so every run sweeps, as it starts, the folders whose process is gone.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import tempfile
from collections.abc import Collection, Sequence
from itertools import chain
from pathlib import Path
from typing import Any

_ESCAPED = bytes(range(0x20)) + b"\\"  # what a JSON string cannot hold as it is, besides '"'
_json_list = json.JSONEncoder(ensure_ascii=False).encode

PRAGMAS = "PRAGMA journal_mode=OFF; PRAGMA synchronous=OFF; PRAGMA cache_size=-8000; PRAGMA temp_store=FILE;"
_PREFIX = "cartrescue-"


def _namespace() -> int:
    """This process's PID namespace (Linux; 0 elsewhere): a pid means something only inside it."""
    try:
        return os.stat("/proc/self/ns/pid").st_ino
    except OSError:
        return 0


def private_folder(kind: str) -> Path:
    """A new private folder (mode 0700) for this process's ``kind`` of files (no ``-`` in it).

    mkdtemp, not TemporaryDirectory: a forked worker must not inherit a finalizer that deletes
    its parent's folder. The caller deletes it (``shutil.rmtree``); :func:`sweep_stale` does
    when the process could not.
    """
    return Path(tempfile.mkdtemp(prefix=f"{_PREFIX}{kind}-{_namespace()}-{os.getpid()}-"))


def sweep_stale() -> None:
    """Delete the private folders of processes that are gone: their spools and indexes can hold
    the whole carts export, and nothing else deletes them. A folder goes only when it was made in
    this PID namespace (a temporary folder shared with a container is not ours to judge) and the
    process its name gives is gone; a live one (any user's) stays."""
    root = Path(tempfile.gettempdir())
    try:
        folders = [entry for entry in root.iterdir() if entry.name.startswith(_PREFIX)]
    except OSError:
        return
    here = str(_namespace())
    for folder in folders:
        _kind, _, rest = folder.name[len(_PREFIX):].partition("-")
        namespace, _, rest = rest.partition("-")
        pid = rest.partition("-")[0]
        if namespace != here or not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            shutil.rmtree(folder, ignore_errors=True)
        except (PermissionError, OverflowError, OSError):
            continue  # alive (another user's), or no pid this system can have


class ScratchDb:
    """A throw-away SQLite connection created with ``schema``; :meth:`close` deletes the file."""

    def __init__(self, name: str, schema: str, *, shared: bool = False) -> None:
        """``shared``: the connection may be closed (and used, one at a time) by another thread
        than the one that made it (a loader thread fills it, the main thread reads it)."""
        self._dir = private_folder(name)
        self.path = self._dir / f"{name}.db"
        self.connection = sqlite3.connect(self.path, check_same_thread=not shared)
        self.connection.executescript(PRAGMAS + schema)

    def close(self) -> None:
        self.connection.close()
        shutil.rmtree(self._dir, ignore_errors=True)


#: Rows a :class:`ManyRows` statement inserts (a few hundred parameters, far below SQLite's limit).
ROWS_A_STATEMENT = 100


class ManyRows:
    """An ``INSERT`` (an upsert too) run for many rows, :data:`ROWS_A_STATEMENT` a statement.

    ``executemany`` steps the statement once a row: ~10,800 instructions a row of the newest-cart
    pass's upsert (callgrind), of which a third is the step's own start and end and the driver's
    loop. One statement of many ``VALUES`` rows binds as many parameters and steps once: ~7,900.
    SQLite inserts a statement's rows one after another, each seeing the rows before it (an
    upsert of an address twice in one statement keeps the newer), as ``executemany`` did.
    """

    def __init__(self, statement: str, row: str, per_statement: int = 0) -> None:
        """``statement``: the ``INSERT`` with ``{values}`` where its ``VALUES`` rows go; ``row``:
        one of them (``(?, ?, 1)``), a ``?`` for each value of a row given to :meth:`run`;
        ``per_statement``: rows a statement (0: :data:`ROWS_A_STATEMENT`)."""
        self.statement, self.row = statement, row
        self._per = per_statement or ROWS_A_STATEMENT
        self._one = statement.format(values=row)
        self._many = statement.format(values=", ".join([row] * self._per))
        self._width = row.count("?")

    def run(self, connection: sqlite3.Connection, rows: Sequence[Sequence[Any]]) -> None:
        """Insert ``rows``, in their order."""
        whole = len(rows) - len(rows) % self._per
        if whole:
            flat = list(chain.from_iterable(rows[:whole] if whole < len(rows) else rows))
            step = self._per * self._width
            execute, many = connection.execute, self._many
            for start in range(0, len(flat), step):
                execute(many, flat[start:start + step])
        if whole < len(rows):
            connection.executemany(self._one, rows[whole:])


def reads_json(connection: sqlite3.Connection) -> bool:
    """Can this SQLite read a list from one JSON parameter (json_each: built in since 3.38)?"""
    try:
        connection.execute("SELECT value FROM json_each('[1]')").fetchall()
    except sqlite3.OperationalError:
        return False
    return True


def json_keys(keys: Collection[str]) -> str | None:
    """``keys`` as one JSON list, the parameter of a lookup that reads it with ``json_each``
    (``SELECT ... FROM json_each(?) AS wanted CROSS JOIN t WHERE t.key = wanted.value``): one
    statement, prepared once, probing ``t``'s index key by key, where an ``IN (?, ?, ...)`` list
    is prepared again whenever its length changes and its values are bound one by one and
    sorted into a temporary index first. None if a key holds a NUL (json_each ends a string
    there): the caller then asks with an ``IN`` list. Keys with nothing to escape (nearly all)
    are joined as they are, at a tenth of the JSON encoder's cost."""
    text = '","'.join(keys)
    if text.count('"') == 2 * len(keys) - 2:  # no key holds a '"' (a regex search cost more than the encoder)
        data = text.encode()
        if len(data.translate(None, _ESCAPED)) == len(data):
            return f'["{text}"]'
    return None if "\x00" in text else _json_list(list(keys))
