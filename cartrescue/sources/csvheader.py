"""A CSV export's header: where each field sits, and what is wrong with it or with a row's width.

Owns reading the header row (past blank lines and Excel's ``sep=`` line), mapping each field to
its column (``source.columns``; alternatives ``A|B``), the errors that stop a file whose header
lacks a required column (with a hint: a column named almost so, a header a few lines down) or
names one twice, the problems of a column named almost as a field or a mapped one absent, and
the problem of a row whose cells do not fit the header. Apart from :mod:`.csv` (the source),
since the orders reader (:mod:`.csvorders`) and the newsletter export (:mod:`.sends_csv`) read
their headers the same way.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from cartrescue.errors import SourceError
from cartrescue.model import RowProblem
from cartrescue.sources.csvfile import SEP_LINE, DELIMITERS, ENCODING_SETTING, undecodable
from cartrescue.sources.csvlines import CsvRows


@dataclass(frozen=True, slots=True)
class _Columns:
    """Where each generic field sits in this file's header (``-1`` = absent)."""

    index: dict[str, int]


def _sep_hint(row: list[str]) -> bool:
    """Whether ``row`` is Excel's ``sep=X`` line: read with X, its cells are ``sep=`` and an empty
    one; with a delimiter configured otherwise, the one cell ``sep=X``."""
    if len(row) == 2:
        return row[0].lstrip("\ufeff").lower() == "sep=" and not row[1]
    return len(row) == 1 and SEP_LINE.fullmatch(row[0].lstrip("\ufeff")) is not None


def read_header(reader: CsvRows, path: Path, encoding: str, setting: str = ENCODING_SETTING) -> list[str] | None:
    """The header row of a CSV file, its first line with a name in it (None: an empty file, or
    one of blank lines only); one it cannot read stops, naming the file.

    A blank line is no row, before the header too: one there was read as a header naming
    nothing, and the run stopped on "missing column(s): cart_id, ..." of a file whose next line
    names them all; and an export of a line break alone, as failed as one of 0 bytes, read as
    such a file, not as the empty export it is (:func:`empty_export`)."""
    try:
        hint = True  # Excel's sep= line may stand above the header (before it: blank lines only)
        for row in reader:
            if any(cell.strip() for cell in row):
                if hint and _sep_hint(row):
                    hint = False
                    continue
                return row
        return None
    except UnicodeError:
        raise undecodable(path, encoding, setting) from None
    except csv.Error as exc:
        raise SourceError(f"{path}:1: cannot read the header: {exc}") from None


def too_many_cells(cells: int, width: int) -> str:
    """The problem of a row with more cells than its header has columns (RFC 4180: every line
    has the same number of fields).

    Such a row's values have most likely slid under the wrong columns (a price written with a
    thousands separator equal to the delimiter, ``19,900.00``, or a name with an unquoted
    delimiter), so no cell of it can be trusted: a cart built from it would show a wrong price
    or link. That holds even when the cells past the header are blank, since the values that
    slid off the end may have been blank ones. An export that ends every line with a delimiter,
    its header included, has a last column with no name, and its rows fit; so do rows without
    that last delimiter (:func:`named_width`).
    """
    return (f"{cells} cells where the header has {width} columns: a value holds an unquoted delimiter? "
            "(quote it, or check the export's delimiter)")


def too_few_cells(cells: int, width: int) -> str:
    """The problem of a row with fewer cells than its header has columns: most likely cut short
    (an export that stopped mid-line, its last line cut, a line break inside an unquoted value).
    Its last value may be cut too (``219.00`` read as ``21``), and the values it lacks may be
    the cart's other facts: a cart built from it would show a wrong price."""
    return (f"{cells} cells where the header has {width} columns: the row is cut short? (an export that stopped "
            "mid-line, or a line break inside an unquoted value)")


def wrong_cells(cells: int, width: int, written: int) -> str:
    """The problem of a row with fewer than ``width`` cells (the header's named columns) or more
    than ``written`` (all its columns, unnamed last ones too: see :func:`named_width`)."""
    return too_many_cells(cells, written) if cells > width else too_few_cells(cells, width)


def named_width(header: Sequence[str]) -> int:
    """How many of ``header``'s columns count: up to its last named one. A header ending in a
    delimiter (``…;sms_consent;``) has an unnamed last column; some exports end every line so,
    others the header alone, and their rows one cell shorter were every one "cut short", every
    cart skipped. Rows from this many cells up to the header's whole width are read (the cells
    under no name never are). Once per file."""
    width = len(header)
    while width and not header[width - 1].strip():
        width -= 1
    return width


def header_columns(path: Path, header: list[str], fields: Sequence[str], mapping: dict[str, str],
             required: Sequence[str], line: int = 1, key: str = "source.columns",
             reader: CsvRows | None = None) -> _Columns:
    """Where each field is in ``header`` (-1: absent). A mapped header may name alternatives,
    ``"Accepts Marketing|Accepts Email Marketing"``: the first the file has is read. ``line``:
    the header's (blank lines or Excel's ``sep=`` line may stand above it); ``key``: the config
    key that maps this file's columns, named in the error of a required one the header lacks;
    ``reader``: the file's, past the header, where that error looks for the real header below a
    title line (:func:`_header_below`)."""
    positions = {name.strip().lower(): index for index, name in enumerate(header)}
    index: dict[str, int] = {}
    for name in fields:
        index[name] = next((positions[wanted] for wanted in (part.strip().lower() for part in
                                                             mapping.get(name, name).split("|"))
                            if wanted in positions), -1)
    taken = _taken_by_mapping(index, mapping)
    for name in taken:
        index[name] = -1
    missing = [mapping.get(name, name) for name in required if index[name] < 0]
    if missing:
        hint = _rename_hint(header, index, mapping, required, key)
        if not hint and reader is not None:
            hint = _delimiter_hint(header, reader.dialect.delimiter, missing, key)
        below = None if hint or reader is None else _header_below(reader, missing)
        if below is not None:
            hint = f"line {below} names them: is the header there? Remove the lines above it"
        named = [f"{mapping[name]} ({key}.{name})" if name in mapping  # a mapped one: the key the owner wrote it under
                 else f"{name} (the header's {header[taken[name][1]].strip()!r} is {key}.{taken[name][0]}: map {name} "
                      "to its own column)" if name in taken
                 else name for name in required if index[name] < 0]
        raise SourceError(f"{path}:{line}: missing column(s): {', '.join(named)}" + (f" ({hint})" if hint else ""))
    if len(positions) < len(header):  # a name twice: which of them is read matters only if one is
        for name, at in index.items():
            if at >= 0:
                same = [n + 1 for n, other in enumerate(header) if other.strip().lower() == header[at].strip().lower()]
                if len(same) > 1:
                    raise SourceError(f"{path}:{line}: column {header[at].strip()!r} ({name}) appears {len(same)} times "
                                      f"(columns {', '.join(map(str, same))}): which one holds it? Rename or drop "
                                      "the others")
    return _Columns(index)


#: An order is tied to carts by one of these (README, "ordered"): an orders file with none of them
#: ties no order to any cart.
ORDER_LINKS = ("email", "customer_id", "cart_id", "phone")


def _delimiter_hint(header: Sequence[str], used: str, missing: Sequence[str], key: str) -> str:
    """What to set when the header, cut at another delimiter than ``used``, names every column of
    ``missing`` ("" when it does not). ``source.delimiter: ";"`` over an export in commas read
    the header as one cell: the run stopped on "missing column(s): cart_id, currency, ..." of a
    header naming them all, without a word of the delimiter. ``key``: the file's columns key
    (``source.columns``), beside which its delimiter's key is."""
    line = used.join(header)
    for other in DELIMITERS:
        if other == used:
            continue
        cells = {cell.strip().strip('"').lower() for cell in line.split(other)}
        if all(any(part.strip().lower() in cells for part in name.split("|")) for name in missing):
            setting = f"{key.rpartition('.')[0]}.delimiter"
            return (f"the header's columns are separated by {other!r}, not {used!r}: set {setting} to {other!r}, "
                    "or null to find it from the header")
    return ""


def _header_below(reader: CsvRows, names: Sequence[str], lines: int = 5) -> int | None:
    """The line of the next few that names every one of ``names`` (the columns the header read
    lacks), if one does: an export with a title line above its header ("Abandoned checkouts,
    6 Dec 2026") stopped on "missing column(s)" of the title, and named no other line. A line is
    also read in the other delimiters: the delimiter was guessed from the title, which has none,
    so a header in semicolons below it was one cell that named nothing."""
    wanted = {name.strip().lower() for name in names}
    try:
        for _row, row in zip(range(lines), reader):
            line = reader.dialect.delimiter.join(row)
            if any(wanted <= {cell.strip().strip('"').lower() for cell in line.split(delimiter)}
                   for delimiter in DELIMITERS):
                return reader.line_num
    except (csv.Error, UnicodeError):
        return None
    return None


def tied_to_carts(path: Path, header: Sequence[str], columns: _Columns, mapping: dict[str, str], line: int) -> None:
    """Refuse an orders file without any column that ties an order to a cart: read, it matched no
    order to anyone, and every buyer was reminded without a word (``--strict`` too). A column
    named almost as one of them (``E-Mail``, :func:`misnamed`) is named."""
    if all(columns.index[name] < 0 for name in ORDER_LINKS):
        names = ", ".join(mapping.get(name, name) for name in ORDER_LINKS)
        hint = _rename_hint(header, columns.index, mapping, ORDER_LINKS, "source.order_columns")
        raise SourceError(f"{path}:{line}: none of the columns that tie an order to a cart ({names}): no order would "
                          "be matched and every buyer reminded; map the export's one in source.order_columns"
                          + (f" ({hint})" if hint else ""))


def _taken_by_mapping(index: dict[str, int], mapping: dict[str, str]) -> dict[str, tuple[str, int]]:
    """The unmapped fields whose own name is a header the config maps to another field: each
    with that field and the header's position. Such a header is the mapped field's alone: with
    ``cart_id: Name`` (Shopify's ``#1001``) and the product's column unmapped, ``Name`` was read as
    the product's ``name`` too, and the reminder listed "#1001 × 1" as the product."""
    claimed = {index[name]: name for name in mapping if index.get(name, -1) >= 0}
    return {name: (claimed[at], at) for name, at in index.items()
            if name not in mapping and at in claimed and claimed[at] != name}


def _rename_hint(header: Sequence[str], index: dict[str, int], mapping: dict[str, str], wanted: Sequence[str],
                 key: str) -> str:
    """What to do about the header cells named almost as the fields of ``wanted`` the file lacks
    (:func:`misnamed`), for an error that stops on those fields ("" when none is)."""
    return "; ".join(f"the header has {header[at].strip()!r}: rename it {name}, or map it in {key}"
                     for name, at in misnamed(header, index, mapping) if name in wanted)


def _loose(name: str) -> str:
    """A column name as a person may have meant it: letters and digits only, in lower case
    (``E-Mail``, ``e_mail`` and ``email`` alike)."""
    return "".join(char for char in name.lower() if char.isalnum())


def _one_slip(written: str, meant: str) -> bool:
    """Whether ``written`` is ``meant`` with one letter wrong, added, left out, or two swapped
    (``emial``, ``quantitiy``). A digit added or left out is no slip: ``phone2`` is a column of
    its own. Names shorter than five letters are left alone: ``name`` and ``note`` are two."""
    if len(meant) < 5 or abs(len(written) - len(meant)) > 1:
        return False
    if len(written) == len(meant):
        wrong = [at for at in range(len(meant)) if written[at] != meant[at]]
        return len(wrong) == 1 or (len(wrong) == 2 and wrong[1] == wrong[0] + 1
                                   and written[wrong[0]] == meant[wrong[1]] and written[wrong[1]] == meant[wrong[0]])
    longer, shorter = (written, meant) if len(written) > len(meant) else (meant, written)
    at = next((at for at in range(len(shorter)) if longer[at] != shorter[at]), len(shorter))
    return longer[at].isalpha() and longer[at + 1:] == shorter[at:]


def misnamed(header: Sequence[str], index: dict[str, int], mapping: dict[str, str]) -> Iterator[tuple[str, int]]:
    """``(field, position)`` of each header cell no field reads that names a field the file lacks
    almost as the format does (``E-Mail``, ``Unit Price``, ``emial``): read as absent, that field
    was blank on every row in silence, an address column every cart a no_contact skip. A field
    the config maps is left out: its own header is the user's choice, reported when absent
    (:func:`absent_columns`)."""
    read = set(index.values())
    cells = [(at, _loose(cell)) for at, cell in enumerate(header) if at not in read and _loose(cell)]
    for name, at in index.items():
        if at >= 0 or name in mapping:
            continue
        meant = _loose(name)
        found = next((cell_at for cell_at, cell in cells if cell == meant or _one_slip(cell, meant)), None)
        if found is not None:
            yield name, found


def misnamed_columns(path: Path, header: Sequence[str], columns: _Columns, mapping: dict[str, str], what: str,
                     line: int) -> Iterator[RowProblem]:
    """A problem for each column of :func:`misnamed`, naming it and the field it may be."""
    for name, at in misnamed(header, columns.index, mapping):
        cell = header[at].strip()
        yield RowProblem(f"{path}:{line}", f"column {cell!r} is no column cartrescue reads: is it {name}? Rename it "
                                           f"{name}, or map it ({what}: {{{name}: \"{cell}\"}}); as it is, {name} "
                                           "is blank on every row", whole_file=True)


def absent_columns(path: Path, columns: _Columns, mapping: dict[str, str], expected: Iterable[str],
                   what: str, line: int = 1) -> Iterator[RowProblem]:
    """A problem for each field of ``expected`` (the ones a user mapped, and the few a preset
    cannot do without) whose header the file lacks: its value would be blank on every row, and
    a blank consent leaves every cart without one, with no other sign than the skips. ``line``:
    the header's (below Excel's ``sep=`` line or blank lines it is not line 1)."""
    for name in expected:
        if columns.index.get(name, 0) < 0:
            yield RowProblem(f"{path}:{line}", f"no column {mapping.get(name, name)!r} ({what}.{name}) in the header: "
                                          f"{name} is blank on every row", whole_file=True)
