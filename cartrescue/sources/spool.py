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
it), so memory does not grow with the export. It must not parse nor interpret the rows. Each
batch of groups starts with their cart ids (given by the pass that writes it), so that the few
carts the first pass must build (:meth:`CsvSource.unreadable
<cartrescue.sources.csv.CsvSource.unreadable>`) are found without decoding the others.

With ``run --workers N`` a helper process of the run splits the export once into one spool per
shard instead (:meth:`RowSpool.shared`), and beside each an activity spool of each cart's id,
address, last activity, whether it has anything in it and whether it said no to a consent: each batch reaches its file as soon as
it is written and an end mark closes the file, so a worker follows its activity spool while it
grows (its first pass, :func:`follow`) and reads its rows spool once, whole (its carts pass), and
no worker parses the export at all.
"""

from __future__ import annotations

import marshal
import shutil
import struct
import tempfile
import time
from collections.abc import Callable, Iterator, Set
from pathlib import Path
from typing import IO, Any

#: Entries are written in batches of this many: one ``marshal`` call and one write per batch.
BATCH = 256
#: ... and groups in batches of this many: :meth:`RowSpool.groups_of` decodes only the batches
#: that hold a group it looks for, a few carts of many, so a batch is small.
GROUP_BATCH = 16
#: A batch's head: the length of its entries, and of the ids of its groups before them (0: none).
_HEAD = struct.Struct("<QQ")
#: The end mark of a shared spool: a batch of length 0 (a batch is never empty).
_END = _HEAD.pack(0, 0)

#: One group: the line it starts on and its rows, each ``(line, cells)`` (as ``CsvSource._cart_rows``).
Group = tuple[int, list[tuple[int, list[str]]]]
#: One entry: a group, a problem ``(location, reason)``, or a shared spool's repeated cart ids;
#: an activity spool's ``(cart id, email, last activity, empty, free, no_marketing, no_sms, phone)``.
Entry = (Group | tuple[str, str] | tuple[None, dict[str, tuple[tuple[int, ...], bool, tuple[int, ...]]]]
         | tuple[str, str, str, bool, bool, bool, bool, str])


class RowSpool:
    """Groups of rows and problems, in the order they were met; written once, then read once
    (and a few groups found by their cart id before that, :meth:`groups_of`)."""

    def __init__(self, file: IO[bytes] | None = None, *, shared: bool = False) -> None:
        """A private spool in an anonymous file; ``file``: one of :meth:`shared` or :meth:`reading`."""
        self._file: IO[bytes] = file or tempfile.TemporaryFile(prefix="cartrescue-rows-")  # noqa: SIM115 - closed by close()
        self._shared = shared  # followed by another process: each batch written through, an end mark
        self._batch: list[Any] = []
        self._ids: list[str] = []  # of the batch's groups (groups_of)
        self._size = 0
        self._read = 0
        self.groups = 0
        # (location, reason) of the problems that are the whole file's (RowProblem.whole_file),
        # known to this process only: what preview shows with any cart
        self.whole: set[tuple[str, str]] = set()

    @classmethod
    def shared(cls, path: Path) -> RowSpool:
        """A spool written to ``path`` for a worker to :func:`follow` while it grows."""
        return cls(path.open("wb"), shared=True)

    @classmethod
    def reading(cls, path: Path) -> RowSpool:
        """A complete shared spool at ``path``, to read (once) like a private one."""
        spool = cls(path.open("rb"))
        spool._size = path.stat().st_size
        return spool

    def _add(self, entry: Entry) -> None:
        self._batch.append(entry)
        if len(self._batch) >= BATCH:
            self._flush()

    def add_group(self, start: int, rows: list[tuple[int, list[str]]], group_id: str) -> None:
        """A group of rows; ``group_id``: its cart id, by which :meth:`groups_of` finds it."""
        self._batch.append((start, rows))  # _add inlined: one call fewer for every cart
        self._ids.append(group_id)
        self.groups += 1
        if len(self._batch) >= GROUP_BATCH:
            self._flush()

    def add_problem(self, location: str, reason: str, whole_file: bool = False) -> None:
        """A problem met between groups (a malformed row, a row without a cart id; ``whole_file``:
        a column's)."""
        if whole_file:
            self.whole.add((location, reason))
        self._add((location, reason))

    def add_activity(self, cart_id: str, email: str, moment: str, empty: bool, free: bool,
                     no_marketing: bool, no_sms: bool, phone: str = "") -> None:
        """An entry of a shared activity spool: a cart's id, address (without one, its phone
        number) and last activity as written, and what the first pass saw of its contents and
        consent cells (a "no" withdraws an older cart's yes): the fields of
        :class:`~cartrescue.sources.base.Activity`."""
        self._batch.append((cart_id, email, moment, empty, free, no_marketing, no_sms, phone))  # _add inlined: once a cart
        if len(self._batch) >= BATCH:
            self._flush()

    def add_apart(self, apart: dict[str, tuple[tuple[int, ...], bool, tuple[int, ...]]]) -> None:
        """The last entry of a shared activity spool: the export's cart ids met in more than one
        place (:mod:`.apart`), ``(None, {id: (lines, alike, broken)})``, for the worker's carts pass."""
        self._add((None, apart))

    def _flush(self) -> None:
        if self._batch:
            data = marshal.dumps(self._batch)
            ids = marshal.dumps(self._ids) if self._ids else b""
            self._file.write(_HEAD.pack(len(data), len(ids)) + ids + data)
            self._batch, self._ids = [], []
            if self._shared:
                self._file.flush()

    def append_part(self, path: Path) -> None:
        """The entries of the part at ``path`` (a shared spool finished without its end mark),
        after those written so far: a later piece of a split by several helpers (:mod:`.pieces`)."""
        self._flush()
        with path.open("rb") as part:
            shutil.copyfileobj(part, self._file, 1 << 20)
        if self._shared:
            self._file.flush()

    def finish(self, *, end: bool = True) -> RowSpool:
        """End writing; the spool can now be read (once). A shared spool gets its end mark (its
        follower then knows it is complete; ``end=False``: a part, see :meth:`append_part`) and
        is closed: it is read from its file."""
        self._flush()
        if self._shared:
            if end:
                self._file.write(_END)
            self._file.close()
            return self
        self._size = self._file.tell()
        self._file.seek(0)
        return self

    def entries(self) -> Iterator[Entry]:
        """What was written, in order: ``(start, rows)`` for a group, ``(location, reason)`` for a
        problem, ``(None, apart)`` last in a shared spool (told apart by the type of the first item)."""
        read, seek = self._file.read, self._file.seek
        while True:
            head = read(_HEAD.size)
            if not head:
                return
            length, ids = _HEAD.unpack(head)
            if not length:  # a shared spool's end mark
                return
            if ids:
                seek(ids, 1)
            yield from marshal.loads(read(length))
            self._read = self._file.tell()

    def groups_of(self, ids: Set[str]) -> Iterator[Group]:
        """The groups whose id (:meth:`add_group`'s) is one of ``ids``, in order: only the
        batches that hold one are decoded (a batch's ids are its groups', in their order). Then the spool is read again from its start (the
        carts pass reads it whole)."""
        read, seek = self._file.read, self._file.seek
        try:
            while True:
                head = read(_HEAD.size)
                if not head:
                    return
                length, size = _HEAD.unpack(head)
                if not length:
                    return
                held = marshal.loads(read(size)) if size else ()
                if ids.isdisjoint(held):
                    seek(length, 1)
                    continue
                groups = (entry for entry in marshal.loads(read(length)) if type(entry[0]) is int)
                yield from (group for group_id, group in zip(held, groups, strict=True) if group_id in ids)
        finally:
            seek(0)
            self._read = 0

    def fraction(self) -> float:
        """How much of the spool has been read, 0 to 1 (for a progress bar)."""
        return self._read / self._size if self._size else 1.0

    def close(self) -> None:
        self._file.close()


class Abandoned(Exception):
    """The writer of a followed spool stopped before its end mark: read the export instead."""


def follow(path: Path, abandoned: Callable[[], bool], limit: float = 600.0) -> Iterator[Entry]:
    """The entries of the shared spool at ``path`` as its writer adds them, to its end mark.

    Waits for the file and for each batch (naps of 1 ms, up to 20 ms); raises :class:`Abandoned`
    when ``abandoned()`` says the writer stopped early, or after ``limit`` seconds without a
    byte (a stopped run).
    """
    nap, last = 0.001, time.monotonic()

    def wait() -> None:
        nonlocal nap
        if abandoned() or time.monotonic() - last > limit:
            raise Abandoned(str(path))
        time.sleep(nap)
        nap = min(nap * 2, 0.02)

    while not path.exists():
        wait()
    with path.open("rb") as handle:
        pending = b""

        def fill(size: int) -> None:
            """Read until ``pending`` holds ``size`` bytes, waiting for the writer as needed."""
            nonlocal pending, nap, last
            while len(pending) < size:
                more = handle.read(max(size - len(pending), 1 << 20))
                if more:
                    pending, nap, last = pending + more, 0.001, time.monotonic()
                else:
                    wait()

        while True:
            fill(_HEAD.size)
            length, ids = _HEAD.unpack_from(pending)
            if not length:
                return
            end = _HEAD.size + ids + length
            fill(end)
            batch, pending = pending[end - length:end], pending[end:]
            yield from marshal.loads(batch)
