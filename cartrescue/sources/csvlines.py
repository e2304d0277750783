"""A CSV reader that cuts a line without a quote character itself and gives the others to Python's.

Why: parsing is most of what the split of ``run --workers N`` costs, and the workers wait for
the split; it is a large part of a one-process pass too. The C reader walks every character
through its state machine (~40 instructions a character: ~16,000 a row of the sample export),
where ``str.split`` cuts a line at its delimiters in a few. For a line without the quote
character the two agree exactly under the dialect every export is read with (``csv.reader``'s
default but for its delimiter): nothing is quoted nor escaped, a delimiter always ends a cell,
and the line ends in ``\\n``, ``\\r\\n`` or ``\\r`` (the file is read with ``newline=""``, so a
line holds no other line break). Every other line goes to the C reader, followed by as many of
the file's lines as its record takes, but a line whose quotes each open or close a whole cell
(``a,"b, c",d``: most quoted lines of an export, a product name with a comma), which is cut
around them; a line longer than the reader's field limit goes to the C reader too, so that its
error is the reader's own.

It must not interpret cells: what a row means is :mod:`.csv`'s.
"""

from __future__ import annotations

import csv
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, TextIO

if TYPE_CHECKING:
    from _csv import Dialect


class CsvRows:
    """``csv.reader(handle, delimiter=delimiter)``'s twin: the same rows in the same order, the
    same ``line_num`` (lines read so far) and ``dialect``; :meth:`numbered` is the fast way
    through the rows."""

    def __init__(self, handle: TextIO, delimiter: str) -> None:
        self._file = handle
        self._back: list[str] = []  # a line read here for the C reader to read first
        self._reader = csv.reader(self._lines(), delimiter=delimiter)
        self.dialect: Dialect = self._reader.dialect
        self.line_num = 0

    def _lines(self) -> Iterator[str]:
        """What the C reader reads: a line given back first, else the file's next."""
        back, file = self._back, self._file
        while True:
            while back:
                yield back.pop()
            line = next(file, None)
            if line is None:
                return
            yield line

    def __iter__(self) -> CsvRows:
        return self

    def __next__(self) -> list[str]:
        """The next row, from the C reader (a header, a few rows: the fast way is :meth:`numbered`)."""
        reader = self._reader
        before = reader.line_num
        try:
            return next(reader)
        finally:
            self.line_num += reader.line_num - before

    def numbered(self, malformed: Callable[[int, csv.Error], None],
                 undecodable: Callable[[], Exception]) -> Iterator[tuple[int, list[str]]]:
        """The rows left, each with the line it starts on; a row the C reader refuses goes to
        ``malformed(line, error)`` and is skipped; text the codec cannot decode raises
        ``undecodable()``. ``line_num`` is up to date at each row."""
        file, back, reader = self._file, self._back, self._reader
        delimiter, quote = self.dialect.delimiter, self.dialect.quotechar or ""
        limit = csv.field_size_limit()
        line = self.line_num
        while True:
            start = line + 1
            try:
                text = next(file)
            except StopIteration:
                return
            except UnicodeError:
                raise undecodable() from None
            cells = None
            if len(text) <= limit:
                cut = text.rstrip("\r\n")
                if quote not in cut:
                    cells = cut.split(delimiter) if cut else []
                else:
                    cells = whole_cells_quoted(cut, delimiter, quote)
            if cells is not None:
                self.line_num = line = start
                yield start, cells
                continue
            back.append(text)
            before = reader.line_num
            try:
                row = next(reader)
            except StopIteration:  # the line given back is always read: never, but not a crash
                return
            except csv.Error as exc:
                self.line_num = line = line + reader.line_num - before
                malformed(start, exc)
                continue
            except UnicodeError:
                raise undecodable() from None
            self.line_num = line = line + reader.line_num - before
            yield start, row


def whole_cells_quoted(line: str, delimiter: str, quote: str) -> list[str] | None:
    """The cells of ``line`` (its ending stripped) where each quote character opens or closes a
    whole cell (``a,"b, c",d``): what the C reader makes of it. None where one does not (a
    doubled quote inside a cell, a quote inside an unquoted cell, a cell quoted and then
    continued, a quote left open to the next line): those are the C reader's to read."""
    parts = line.split(quote)
    last = len(parts) - 1
    if last & 1:  # an odd number of quotes: one is left open, or stands inside a cell
        return None
    first = parts[0]
    if not first:
        cells: list[str] = []
    elif first[-1] == delimiter:
        cells = first[:-1].split(delimiter)
    else:
        return None
    for at in range(1, last, 2):
        cells.append(parts[at])  # the quoted cell, as written between its quotes
        after = parts[at + 1]
        if at + 1 == last:  # after the line's last quote
            if after:
                if after[0] != delimiter:
                    return None
                cells.extend(after[1:].split(delimiter))
        elif not after or after[0] != delimiter or after[-1] != delimiter:
            return None  # "" (a quote inside a quoted cell), or a cell quoted and continued
        elif len(after) > 1:
            cells.extend(after[1:-1].split(delimiter))
    return cells
