"""Opening a CSV export: its encoding, byte-order mark and delimiter, and whether it changed.

Owns what is true of an export as a file, before any of its cells mean anything: opening it
(a pipe refused, a byte-order mark of another encoding than the config's refused, Excel's
``sep=`` hint or the header line's delimiter), the error for text not in its encoding (with the
line and the key to set), the error for a 0-byte export, its rows numbered by the line each
starts on, and the stamp that tells an export rewritten while it was read. The carts, the orders
and the newsletter export (:mod:`.sends_csv`) are all opened here. Apart from :mod:`.csv`, which
is the source (what the cells mean), and from :mod:`.csvlines`, which only cuts lines into cells.
"""

from __future__ import annotations

import codecs
import os
import re
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import TextIO

from cartrescue.errors import SourceError
from cartrescue.model import RowProblem
from cartrescue.sources.base import ProblemSink
from cartrescue.sources.csvlines import CsvRows


#: The key of the carts' encoding, which errors about it name (the newsletter export has its own:
#: ``source.newsletters.encoding``).
ENCODING_SETTING = "source.encoding"
#: ... and the orders export's, the carts' unless set: an error about the orders names it, as
#: "set source.encoding" would have the owner change the carts' too (and break them).
ORDERS_ENCODING_SETTING = "source.orders_encoding"


def open_csv(path: Path, encoding: str, delimiter: str | None, key: str = "",
              setting: str = ENCODING_SETTING) -> tuple[TextIO, CsvRows]:
    """The export at ``path``, open, and a reader with its delimiter (given, or found in the
    header). ``key``: the config file and key that named it (``cartrescue.yaml: source.orders``),
    put in front of an error that it cannot be opened, so the owner knows which setting to fix;
    ``setting``: the key of its encoding, named by an error that it is in another."""
    named = f"{key}: {path}" if key else str(path)
    try:
        handle = path.open("r", encoding=encoding, newline="")
    except OSError as exc:
        raise SourceError(f"{named}: cannot open: {exc.strerror or exc}") from None
    if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):  # a pipe (/dev/stdin from cat ... |)
        handle.close()
        raise SourceError(f"{named}: not a regular file (a pipe?): cartrescue reads an export more than once "
                          "(every cart's activity first, then the carts); write it to a file and name that")
    wrong = _no_text(handle) or _marked_otherwise(handle, encoding, setting) or _utf8_otherwise(handle, encoding, setting)
    if wrong is not None:
        handle.close()
        raise SourceError(f"{named}{'' if wrong.startswith(':') else ': '}{wrong}")
    try:
        if delimiter is None:
            first = handle.readline()
            while first and not first.lstrip("\ufeff").strip():  # blank lines before the header: see read_header
                first = handle.readline()
            handle.seek(0)
            hint = SEP_LINE.fullmatch(first.lstrip("\ufeff").rstrip("\r\n"))
            delimiter = hint.group(1) if hint else detect_delimiter(first)
        _skip_bom(handle)
    except UnicodeError:  # UnicodeDecodeError, or a UTF-16 file without its byte-order mark
        handle.close()
        raise undecodable(path, encoding, setting) from None
    return handle, CsvRows(handle, delimiter)


#: The byte-order marks a file may start with: the encoding each says the file is in (the longest
#: first: UTF-32-LE's starts with UTF-16-LE's), what to set, and the codecs that read it as it is.
_MARKS = (
    (codecs.BOM_UTF32_LE, "UTF-32", "utf-32", ("utf-32", "utf-32-le")),
    (codecs.BOM_UTF32_BE, "UTF-32", "utf-32", ("utf-32", "utf-32-be")),
    (codecs.BOM_UTF8, "UTF-8", "utf-8-sig", ("utf-8", "utf-8-sig")),
    (codecs.BOM_UTF16_LE, "UTF-16", "utf-16", ("utf-16", "utf-16-le")),
    (codecs.BOM_UTF16_BE, "UTF-16", "utf-16", ("utf-16", "utf-16-be")),
)


def _marked_otherwise(handle: TextIO, encoding: str, setting: str = ENCODING_SETTING) -> str | None:
    """Why the file open as ``handle`` cannot be read as ``encoding`` when its byte-order mark
    says it is in another (None: no mark, or one ``encoding`` reads). Read as the config said, a
    UTF-8 file in cp1252 made every Åsa Ã…sa in the reminders; a UTF-16 one (Excel's "Unicode
    Text") was "not utf-8 text ... e.g. cp1252", then, so set, "missing column(s): cart_id, ..."
    of a header naming them all; set to utf-16-le, as for a file without the mark, it was taken
    for UTF-8. The mark is read from the file's first bytes, leaving the handle where it is."""
    start = os.pread(handle.fileno(), 4, 0)
    codec = codecs.lookup(encoding).name
    for mark, name, wanted, readers in _MARKS:
        if start.startswith(mark):
            if codec in readers:
                return None
            return (f"starts with {name}'s byte-order mark, and {setting} is {encoding}: the export is {name} "
                    "(read as the config says, its text would be garbled, every Åsa Ã…sa in the reminders, or its "
                    f"header unreadable); set {setting} to {wanted}"
                    + (", or leave it out" if wanted == "utf-8-sig" else ""))
    order = _utf16_without_mark(os.pread(handle.fileno(), _SNIFF, 0))
    if order is not None and not codec.startswith(("utf-16", "utf-32")):
        return (f"holds a NUL byte beside every letter: the export is UTF-16 without its byte-order mark (read as "
                f"{encoding}, its header is unreadable); set {setting} to {order}")
    return None


#: The first bytes of files that are no text at all, and what each is: an export compressed by
#: its job (``carts.csv.gz``), or the spreadsheet the owner saved it as (``.xlsx`` is a zip).
_NO_TEXT = (
    (b"\x1f\x8b", "gzip-compressed", "decompress it (gunzip -k) and name the .csv, or have the export job "
                                       "write it uncompressed"),
    (b"PK\x03\x04", "a zip archive (an Excel .xlsx workbook?)", "unzip the export, or save the workbook as "
                                                                 "\"CSV UTF-8\", and name the .csv"),
    (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", "an Excel .xls workbook", "save it as \"CSV UTF-8\" and name the .csv"),
)


def _no_text(handle: TextIO) -> str | None:
    """Why the file open as ``handle`` is no CSV text at all (None: it may be). A ``.csv.gz`` or an
    ``.xlsx`` named as the export was "not utf-8-sig text ...; set source.encoding to the export's
    encoding, e.g. cp1252", and so set its bytes were read as text: no encoding reads them."""
    start = os.pread(handle.fileno(), 8, 0)
    for magic, what, remedy in _NO_TEXT:
        if start.startswith(magic):
            return f"{what}, not CSV text: cartrescue reads the CSV export itself; {remedy}"
    return None


#: How much of a file is decoded at a time to tell UTF-8 text read as an 8-bit encoding.
_CHUNK = 1 << 20


def _utf8_otherwise(handle: TextIO, encoding: str, setting: str = ENCODING_SETTING) -> str | None:
    """Why the file open as ``handle`` cannot be read as the 8-bit ``encoding`` (cp1252, latin-1):
    its text is UTF-8 (None: it is not, or ``encoding`` is a UTF). Every byte decodes in an 8-bit
    encoding, so an export job moved to UTF-8 without a byte-order mark under a config still
    saying cp1252 sent every Åsa as Ã…sa, exit 0, without a word. Text beyond ASCII that is valid
    UTF-8 throughout is UTF-8: 8-bit text is that only by a rare accident (``Ã¥`` written as
    such). Read as bytes, chunk by chunk, stopping at the first that is no UTF-8 (an 8-bit export
    is told at its first letter beyond ASCII); only for 8-bit encodings, the handle left as it is."""
    if codecs.lookup(encoding).name.startswith(("utf-", "utf_")):
        return None
    decoder = codecs.getincrementaldecoder("utf-8")()
    fd, offset, first = handle.fileno(), 0, -1
    while True:
        chunk = os.pread(fd, _CHUNK, offset)
        try:
            decoder.decode(chunk, final=not chunk)
        except UnicodeDecodeError:
            return None
        if first < 0 and not chunk.isascii():
            first = offset + next(at for at, byte in enumerate(chunk) if byte > 0x7F)
        if not chunk:
            break
        offset += len(chunk)
    if first < 0:
        return None
    before = os.pread(fd, first, 0)
    line = len(re.findall(rb"\r\n|\r|\n", before)) + 1
    letter = os.pread(fd, 4, first).decode("utf-8", errors="ignore")[:1]
    garbled = letter.encode("utf-8").decode(encoding, errors="replace")
    return (f":{line}: UTF-8 text, and {setting} is {encoding}: read as the config says, its {letter!r} would be "
            f"{garbled!r} in the reminders (every Åsa Ã…sa); set {setting} to utf-8-sig"
            + (", or leave it out" if setting == ENCODING_SETTING else ""))


#: How much of a file's start is looked at to tell UTF-16 without its mark, or no UTF-16 at all.
_SNIFF = 512


def _utf16_without_mark(start: bytes) -> str | None:
    """The UTF-16 byte order of a file starting ``start`` (no byte-order mark) when its text is
    that, else None. Latin text in UTF-16 has a NUL beside every letter, on the odd bytes
    (``utf-16-le``) or the even ones (``-be``); 8-bit or UTF-8 text has none, or a stray one
    in a damaged cell, never one in every pair."""
    pairs = len(start) // 2
    if pairs < 2:
        return None
    for order, nul_at in (("utf-16-le", 1), ("utf-16-be", 0)):
        if start[nul_at::2][:pairs].count(0) >= 0.9 * pairs and start[1 - nul_at::2][:pairs].count(0) < 0.1 * pairs:
            return order
    return None


def _likely_encoding(path: Path, encoding: str) -> str:
    """The encoding to suggest for ``path``, which ``encoding`` cannot read: the UTF-16 byte order
    its NULs show, utf-8-sig for a file of no NUL (a UTF-8 orders export beside "Unicode Text"
    carts was told "e.g. utf-16-le", which read it as garbage), else cp1252 (Excel's 8-bit)."""
    with path.open("rb") as handle:
        start = handle.read(_SNIFF)
    order = _utf16_without_mark(start)
    if order is not None:
        return order
    if codecs.lookup(encoding).name.startswith(("utf-16", "utf-32")) and 0 not in start:
        return "utf-8-sig"
    return "cp1252"


#: Excel's delimiter hint, a first line ``sep=;`` some exporters write above the header so that
#: Excel opens the file in columns whatever the region's list separator: it names the delimiter,
#: and is no header (:func:`read_header` passes it).
SEP_LINE = re.compile(r"sep=(.)", re.IGNORECASE)


#: The delimiters an export's header line is looked at for, the first of a tie winning: a comma,
#: a semicolon (Excel where the decimal mark is a comma), a tab (Excel's "Unicode Text", UTF-16).
DELIMITERS = (",", ";", "\t")


def detect_delimiter(header_line: str) -> str:
    """The delimiter of :data:`DELIMITERS` the header line holds most of. A tab counts too: a file
    Excel saved as "Unicode Text" (UTF-16, ``source.encoding: utf-16``) is tab-separated, and read
    with a comma its whole header was one column, the run stopped on ``missing column(s):
    cart_id, currency, ...`` of a header that names every one of them."""
    return max(DELIMITERS, key=header_line.count)


def _skip_bom(handle: TextIO) -> None:
    """Move ``handle`` past a byte-order mark at its start. ``utf-8-sig`` and ``utf-16`` drop it
    themselves; read as ``utf-8`` (or ``utf-16-le`` / ``-be``) it is a U+FEFF, and made the first
    header ``\ufeffemail``: that column read as absent, blank on every row (an orders file's
    addresses: its buyers reminded). Once per file, before the header; a mark of another
    encoding than the config's has stopped the run before (:func:`_marked_otherwise`)."""
    if handle.read(1) != "\ufeff":
        handle.seek(0)


def stamp(handle: TextIO) -> tuple[int, int]:
    """The size and modification time of the open file ``handle``: see :func:`unchanged`."""
    status = os.fstat(handle.fileno())
    return status.st_size, status.st_mtime_ns


def unchanged(handle: TextIO, path: Path, before: tuple[int, int]) -> None:
    """Raise :class:`SourceError` if the file open as ``handle`` has changed since its
    :func:`stamp` ``before``, taken when it was opened: call it once the file is read to its end.

    A cron job may read an export while the shop's export job still writes it. What was read
    then ends with a cut row, a cart without its last items, or without the latest orders (and
    those customers would be reminded of carts they have bought). The run stops instead, exit 3;
    the next run reads the finished file. An export renamed into place meanwhile is no change:
    the open file is still the old one, read whole.
    """
    if stamp(handle) != before:
        raise SourceError(f"{path}: changed while it was read (is the export still being written?); the run "
                          "stops, the next run reads it again. Let the export job write a temporary file and "
                          "rename it into place (docs/csv-format.md)")


def empty_export(path: Path, without: str, key: str = "") -> SourceError:
    """A 0-byte export (not even a header): most likely its job failed. Unlike an empty carts file
    (nothing to remind), an empty orders or newsletter file would let the run remind people it
    should not (``without``), so it stops the run, exit 3. A header alone is a file with no rows.
    ``key``: the config file and key that named it (``cartrescue.yaml: source.orders``), as
    :func:`open_csv` names it, so the owner knows which setting points at the empty file."""
    named = f"{key}: {path}" if key else str(path)
    return SourceError(f"{named}: empty, not even a header (did the export job fail?); without it the run would "
                       f"{without}, so it stops. A shop with none yet exports the header line alone")


def numbered_rows(reader: CsvRows, path: Path, encoding: str,
                  on_problem: ProblemSink, setting: str = ENCODING_SETTING) -> Iterator[tuple[int, list[str]]]:
    """The rows after the header, each with the line it starts on (a quoted cell may span
    lines); a malformed row is reported as ``file:line`` and skipped, undecodable text stops."""
    return reader.numbered(lambda start, exc: on_problem(RowProblem(f"{path}:{start}", f"malformed CSV: {exc}")),
                           lambda: undecodable(path, encoding, setting))


def undecodable(path: Path, encoding: str, setting: str = ENCODING_SETTING) -> SourceError:
    """The error for a file that is not in ``encoding``, naming the first line that is not and
    the key that sets its encoding (``setting``: the newsletter export has its own).

    The text reader decodes ahead in blocks, so its error does not say where; the file is read
    again as bytes to find the line (only on this error path). UTF-16 and UTF-32 raise a plain
    :class:`UnicodeError` for a file without a byte-order mark: which byte order is it in?
    """
    decoder = codecs.getincrementaldecoder(encoding)()
    likely = _likely_encoding(path, encoding)
    number = 0
    with path.open("rb") as handle:
        for number, raw in enumerate(handle, 1):
            try:
                decoder.decode(raw)
            except UnicodeDecodeError as exc:
                return SourceError(f"{path}:{number}: not {encoding} text (byte {exc.start + 1} of the line: "
                                   f"{exc.reason}); set {setting} to the export's encoding, e.g. {likely}")
            except UnicodeError as exc:
                return SourceError(f"{path}:{number}: not {encoding} text ({exc}); set {setting} to the "
                                   f"export's encoding, e.g. {likely}")
    return SourceError(f"{path}: not {encoding} text; set {setting} to the export's encoding, e.g. {likely}")
