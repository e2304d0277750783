"""Where a carts export can be cut in pieces, so that several processes split it at once.

Why: with ``run --workers N`` every worker waits for the split of the export (one helper parsing
the whole file, :meth:`CsvSource.publish_shards <cartrescue.sources.csv.CsvSource.publish_shards>`)
before its carts pass, and on two cores the other core was two-thirds idle meanwhile (B2: ~1.4 s
of 7.4); with more cores the split is a larger part of the run. So the helper that splits the
file cuts it in as many pieces as the run has workers and cores (each of at least
:data:`PIECE_FROM` bytes) and forks a helper for each piece after its own.

A cut is a guess, made cheaply from the bytes: past its point of the file, the first line before
which the file holds an even number of quote characters (no quoted cell open: exact for a
well-formed export), then the first row after it whose cart id differs from the row before it
(a cart's rows are never cut in two). The line's number is the count of line feeds before it, so
a file with a line that ends in a carriage return alone is not cut, nor one in any encoding but
UTF-8 (the export's usual, where a line feed byte is always a line feed). The helper of a piece
reads from its cut as if the file began there, and stops at the next cut only where its own
reading meets a row starting on exactly that line with a cart id that starts a new cart (what it
made of the file up to there is then what the next piece's helper made of the rest); else it reads
on to the end. The first helper, at its own cut, takes the pieces in order up to the first that
read to the end: a wrong guess or a failed helper costs time, never a row (:class:`Pieces`).

It must not parse carts nor write spools: :mod:`.csv` does.
"""

from __future__ import annotations

import codecs
import io
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

from cartrescue import processes
from cartrescue.sources.csvlines import CsvRows

#: The smallest piece: below twice this size the export is split by one helper (a second costs a
#: fork and a merge).
PIECE_FROM = 1 << 20
#: The bytes read past a cut's point to find it: a cart's rows and a quoted cell fit in it.
WINDOW = 1 << 20
_CHUNK = 1 << 20
#: The encodings whose bytes are counted for line feeds and quotes (codecs' names).
_COUNTED = ("utf-8", "utf-8-sig")

#: What identifies the file the cut was found in: device, inode, size, modification time (ns).
Identity = tuple[int, int, int, int]


def identity(descriptor: int) -> Identity:
    """The identity of the open file ``descriptor``: every helper must read the same file."""
    status = os.fstat(descriptor)
    return status.st_dev, status.st_ino, status.st_size, status.st_mtime_ns


def _never() -> bool:
    return False


def _nothing() -> None:
    pass


@dataclass
class Cut:
    """The line a piece starts on, its byte offset, and the file's :func:`identity`; and what the
    reading of the piece before does at it once confirmed: ``hand_over()``, True when that piece
    stops there (the rest is another's), else it reads on; ``refuse()``, when it is not confirmed."""

    line: int
    offset: int
    file: Identity
    hand_over: Callable[[], bool] = field(default=_never, repr=False, compare=False)
    refuse: Callable[[], None] = field(default=_nothing, repr=False, compare=False)


def counted(encoding: str) -> bool:
    """Whether an export in ``encoding`` can be cut (:data:`_COUNTED`)."""
    try:
        return codecs.lookup(encoding).name in _COUNTED
    except LookupError:
        return False


def find_cuts(path: Path, delimiter: str, id_at: int, header_lines: int, pieces: int,
              least: int = PIECE_FROM) -> list[Cut]:
    """Where the carts export at ``path`` (read with ``delimiter``, its cart id in cell ``id_at``,
    its header on its first ``header_lines`` lines) is cut in up to ``pieces`` pieces of about
    equal size, each of at least ``least`` bytes (see the module), in file order; none where it is
    too small, or where no cut is found near a point (the pieces around it are then one)."""
    with path.open("rb") as raw:
        file = identity(raw.fileno())
        size = file[2]
        count = min(pieces, size // max(least, 1))
        cuts: list[Cut] = []
        lines = quotes = done = 0
        carried = False  # the last chunk ended in a carriage return: the next must start with a line feed
        for point in (size * k // count for k in range(1, count)):
            while done < point:
                chunk = raw.read(min(_CHUNK, point - done))
                if not chunk or (carried and not chunk.startswith(b"\n")):
                    return cuts
                carried = chunk.endswith(b"\r")
                if b"\r" in chunk and chunk.count(b"\r") != chunk.count(b"\r\n") + carried:
                    return cuts  # a line ending in a carriage return alone (looked for first: memchr is cheap)
                lines += chunk.count(b"\n")
                quotes += chunk.count(b'"')
                done += len(chunk)
            window = raw.read(WINDOW)
            raw.seek(done)
            if carried and not window.startswith(b"\n"):
                return cuts
            cut = _cut_in(window, point, lines, quotes, delimiter, id_at, header_lines, file)
            if cut is not None and (not cuts or cut.line > cuts[-1].line):
                cuts.append(cut)
    return cuts


def _cut_in(window: bytes, point: int, lines: int, quotes: int, delimiter: str, id_at: int,
            header_lines: int, file: Identity) -> Cut | None:
    """The cut in ``window``, the file's bytes from ``point`` on, before which the file holds
    ``lines`` line feeds and ``quotes`` quote characters (see the module); None: none in it."""
    window = window[:window.rfind(b"\n") + 1]  # its whole lines only
    if window.count(b"\r") != window.count(b"\r\n"):
        return None
    at = window.find(b"\n") + 1  # the first line starting after the point
    if not at:
        return None
    quotes += window.count(b'"', 0, at)
    line = lines + 2  # the number of the line starting at ``at``
    while quotes & 1:  # inside a quoted cell: the next line
        after = window.find(b"\n", at) + 1
        if not after:
            return None
        quotes += window.count(b'"', at, after)
        line, at = line + 1, after
    if line <= header_lines:
        return None
    found = _group_start(window[at:], line, delimiter, id_at)
    if found is None:
        return None
    offset = at
    for _ in range(found - line):
        offset = window.index(b"\n", offset) + 1
    return Cut(found, point + offset, file)


def _group_start(data: bytes, line: int, delimiter: str, id_at: int) -> int | None:
    """The line of the first row in ``data`` (whole lines, the first numbered ``line``) whose cart
    id differs from the row's before it; None where there is none, or the text is not UTF-8."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return None
    reader = CsvRows(io.StringIO(text, newline=""), delimiter)
    reader.line_num = line - 1
    first = None
    for start, row in reader.numbered(lambda _line, _error: None, lambda: ValueError()):
        cart_id = row[id_at].strip() if len(row) > id_at else ""
        if not cart_id:
            continue
        if first is None:
            first = cart_id
        elif cart_id != first:
            return start
    return None


class Pieces:
    """The helpers of the pieces after the first, forked by the first piece's helper, and which
    of their work it takes at its cut. ``work(number)`` splits piece ``number`` (2, 3, ...) and
    leaves ``stopped(number)`` (a file) where its reading stopped at the next cut. Without cuts
    (``count`` 0), or where one cannot be forked, none is: the first helper splits it all."""

    def __init__(self, count: int, work: Callable[[int], None], stopped: Callable[[int], Path]) -> None:
        self._stopped = stopped
        self._helpers: list[processes.Helper] = []
        #: How many pieces after the first were taken (0: the first piece's helper read on).
        self.taken = 0
        for number in range(2, count + 2):
            pid = processes.fork_helper(partial(work, number), name=f"carts-{number}")
            if pid is None:  # all or none: a piece nobody splits would be a hole
                self.end()
                self._helpers.clear()
                return
            self._helpers.append(processes.Helper(pid))

    @property
    def forked(self) -> bool:
        return bool(self._helpers)

    def hand_over(self) -> bool:
        """At the first cut, confirmed: wait for the pieces in order, up to the first whose helper
        read to the end of the file. True when each did its work (:attr:`taken`); False when one
        failed first: the first helper reads on, the others' work is thrown away."""
        for number, helper in enumerate(self._helpers, start=2):
            if not helper.succeeded():
                break
            if not self._stopped(number).exists():  # it read on to the end: the pieces after it are moot
                self.taken = number - 1
                self.end()
                return True
        self.end()
        return False

    def end(self) -> None:
        """End every helper still at work (a wrong guess, a split that ends early), and reap it."""
        for helper in self._helpers:
            helper.end()
