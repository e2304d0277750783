"""Where a carts export can be cut in two, so that two processes split it at once.

Why: with ``run --workers N`` every worker waits for the split of the export (one helper parsing
the whole file, :meth:`CsvSource.publish_shards <cartrescue.sources.csv.CsvSource.publish_shards>`)
before its carts pass, and on two cores the other core was two-thirds idle meanwhile (B2: ~1.4 s
of 7.4). A second helper splits the second half of the file while the first splits the first.

The cut is a guess, made cheaply from the bytes: past the middle of the file, the first line
before which the file holds an even number of quote characters (no quoted cell open: exact for a
well-formed export), then the first row after it whose cart id differs from the row before it (a
cart's rows are never cut in two). The line's number is the count of line feeds before it, so
the cut is refused for a file with a line that ends in a carriage return alone, and for any
encoding but UTF-8 (the export's usual, where a line feed byte is always a line feed). The second
helper reads from the cut as if the file began there; the first confirms the guess when its own
reading meets a row starting on exactly that line, with a cart id that starts a new group (what
its reader made of the file up to there is then what the second's made of the rest), and else
reads on to the end itself: a guess can cost time, never a row.

It must not parse carts nor write spools: :mod:`.csv` does.
"""

from __future__ import annotations

import codecs
import io
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from cartrescue.sources.csvlines import CsvRows

if TYPE_CHECKING:
    from cartrescue.processes import Helper

#: Below this size the export is split by one helper: a second costs a fork and a merge.
HALVE_FROM = 1 << 20
#: The bytes read past the middle to find the cut: a cart's rows and a quoted cell fit in it.
WINDOW = 1 << 20
_CHUNK = 1 << 20
#: The encodings whose bytes are counted for line feeds and quotes (codecs' names).
_COUNTED = ("utf-8", "utf-8-sig")

#: What identifies the file the cut was found in: device, inode, size, modification time (ns).
Identity = tuple[int, int, int, int]


def identity(descriptor: int) -> Identity:
    """The identity of the open file ``descriptor``: both helpers must read the same file."""
    status = os.fstat(descriptor)
    return status.st_dev, status.st_ino, status.st_size, status.st_mtime_ns


@dataclass
class Cut:
    """The line the second half starts on, its byte offset, and the file's :func:`identity`;
    for the first half's reading, the helper that splits the second."""

    line: int
    offset: int
    file: Identity
    helper: Helper | None = field(default=None, repr=False)
    #: The second half's split was used: the first half's reading stopped at the cut.
    taken: bool = False

    def hand_over(self) -> bool:
        """At the cut, confirmed by the first half's reading: wait for the second half's helper;
        True (and :attr:`taken`) when it split the rest, False when the first must read on."""
        self.taken = self.helper is not None and self.helper.succeeded()
        return self.taken

    def refuse(self) -> None:
        """The guess was wrong (or the split ends early): the second half's helper is ended."""
        if self.helper is not None:
            self.helper.end()


def counted(encoding: str) -> bool:
    """Whether an export in ``encoding`` can be cut (:data:`_COUNTED`)."""
    try:
        return codecs.lookup(encoding).name in _COUNTED
    except LookupError:
        return False


def find_cut(path: Path, delimiter: str, id_at: int, header_lines: int,
             least: int = HALVE_FROM) -> Cut | None:
    """Where the carts export at ``path`` (read with ``delimiter``, its cart id in cell ``id_at``,
    its header on its first ``header_lines`` lines) is cut (see the module); None: it is smaller
    than ``least`` bytes, or no cut was found near its middle (the first helper splits it all)."""
    with path.open("rb") as raw:
        file = identity(raw.fileno())
        size = file[2]
        if size < max(least, 1):
            return None
        half = size // 2
        lines = quotes = done = 0
        carried = False  # the last chunk ended in a carriage return: the next must start with a line feed
        while done < half:
            chunk = raw.read(min(_CHUNK, half - done))
            if not chunk or (carried and not chunk.startswith(b"\n")):
                return None
            carried = chunk.endswith(b"\r")
            if b"\r" in chunk and chunk.count(b"\r") != chunk.count(b"\r\n") + carried:
                return None  # a line ending in a carriage return alone (looked for first: memchr is cheap)
            lines += chunk.count(b"\n")
            quotes += chunk.count(b'"')
            done += len(chunk)
        window = raw.read(WINDOW)
    if carried and not window.startswith(b"\n"):
        return None
    whole = window.rfind(b"\n") + 1  # the window's whole lines only
    window = window[:whole]
    if window.count(b"\r") != window.count(b"\r\n"):
        return None
    at = window.find(b"\n") + 1  # the first line starting after the middle
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
    return Cut(found, half + offset, file)


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
