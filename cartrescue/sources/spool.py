"""A scratch file of a CSV's cart rows, written by one pass and read back by the next.

A run reads a cart export twice: the first pass finds each address's newest cart, the second
builds and decides the carts. Parsing CSV is most of the cost of a pass, and with ``--workers N``
every worker parses the whole file (it cannot tell its own carts from the others' without
reading their addresses). So the first pass keeps the rows of the carts it owns, already split
into cells and in file order, together with the problems it met on the way, in this spool; the
second pass reads them back instead of parsing the export again. A worker then parses the export
once, and the second pass costs only its own carts.

The spool lives in an anonymous temporary file (gone when closed or when the process ends), in
batches encoded with :mod:`marshal` (our own data, read back by the same interpreter that wrote
it), so memory does not grow with the export. It must not parse nor interpret the rows.
"""

from __future__ import annotations

import marshal
import struct
import tempfile
from collections.abc import Iterator
from typing import IO, Any

#: Entries are written in batches of this many: one ``marshal`` call and one write per batch.
BATCH = 256
_LENGTH = struct.Struct("<Q")

#: One group: the line it starts on and its rows, each ``(line, cells)`` (as ``CsvSource._cart_rows``).
Group = tuple[int, list[tuple[int, list[str]]]]


class RowSpool:
    """Groups of rows and problems, in the order they were met; written once, then read once."""

    def __init__(self) -> None:
        self._file: IO[bytes] = tempfile.TemporaryFile(prefix="cartrescue-rows-")  # noqa: SIM115 - closed by close()
        self._batch: list[Any] = []
        self._size = 0
        self._read = 0
        self.groups = 0

    def add_group(self, start: int, rows: list[tuple[int, list[str]]]) -> None:
        self._batch.append((start, rows))
        self.groups += 1
        if len(self._batch) >= BATCH:
            self._flush()

    def add_problem(self, location: str, reason: str) -> None:
        """A problem met between groups (a malformed row, a row without a cart id)."""
        self._batch.append((location, reason))
        if len(self._batch) >= BATCH:
            self._flush()

    def _flush(self) -> None:
        if self._batch:
            data = marshal.dumps(self._batch)
            self._file.write(_LENGTH.pack(len(data)) + data)
            self._batch = []

    def finish(self) -> RowSpool:
        """End writing; the spool can now be read (once)."""
        self._flush()
        self._size = self._file.tell()
        self._file.seek(0)
        return self

    def entries(self) -> Iterator[Group | tuple[str, str]]:
        """What was written, in order: ``(start, rows)`` for a group, ``(location, reason)`` for a
        problem (told apart by the type of the first item)."""
        read = self._file.read
        while True:
            head = read(_LENGTH.size)
            if not head:
                return
            (length,) = _LENGTH.unpack(head)
            yield from marshal.loads(read(length))
            self._read = self._file.tell()

    def fraction(self) -> float:
        """How much of the spool has been read, 0 to 1 (for a progress bar)."""
        return self._read / self._size if self._size else 1.0

    def close(self) -> None:
        self._file.close()
