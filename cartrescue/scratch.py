"""Scratch databases: a private SQLite file per run for indexes too large to keep in memory.

Owns creating one (in a private temporary folder, durability off: it is thrown away) and
deleting it. Used by the newest-cart index and the CSV orders index, so that a million carts
cost the same memory as a thousand.
"""

from __future__ import annotations

import sqlite3
import tempfile
from pathlib import Path

PRAGMAS = "PRAGMA journal_mode=OFF; PRAGMA synchronous=OFF; PRAGMA cache_size=-8000; PRAGMA temp_store=FILE;"


class ScratchDb:
    """A throw-away SQLite connection created with ``schema``; :meth:`close` deletes the file."""

    def __init__(self, name: str, schema: str, *, shared: bool = False) -> None:
        """``shared``: the connection may be closed (and used, one at a time) by another thread
        than the one that made it (a loader thread fills it, the main thread reads it)."""
        self._dir = tempfile.TemporaryDirectory(prefix=f"cartrescue-{name}-")
        self.path = Path(self._dir.name) / f"{name}.db"
        self.connection = sqlite3.connect(self.path, check_same_thread=not shared)
        self.connection.executescript(PRAGMAS + schema)

    def close(self) -> None:
        self.connection.close()
        self._dir.cleanup()
