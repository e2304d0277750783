"""CSV source: the generic line-item format (docs/csv-format.md) and mapped exports.

Owns reading carts and orders from CSV files: header mapping, delimiter detection, BOM, decimal
commas, times with offsets, and reporting bad rows as ``file:line: reason``. It streams: carts are
built one at a time from consecutive rows and never collected. Orders are read on first use into
a scratch index on disk (:mod:`cartrescue.sources.order_index`), so memory does not grow with the
orders file either.
"""

from __future__ import annotations

import codecs
import csv
import os
import re
import stat
import sys
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timezone
from decimal import Decimal
from functools import lru_cache
from operator import itemgetter
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO
from zoneinfo import ZoneInfo

from cartrescue.contacts import fold_email, is_valid_email
from cartrescue.errors import SourceError
from cartrescue.model import UNREADABLE, Cart, Customer, LineItem, Order, RowProblem, quick_new
from cartrescue.shards import shard_key, shard_of
from cartrescue.sources.apart import Apart, ApartIds
from cartrescue.sources.base import Activity, CartSource, OrderFilter, ProblemSink, ProgressTotal, Window, ignore_problem
from cartrescue.sources.csvlines import CsvRows
from cartrescue.sources.pieces import PIECE_FROM, Cut, Pieces, counted, find_cuts, identity
from cartrescue.sources.values import (  # noqa: F401 - parse_delivered: csv.parse_delivered, as before
    OWNER_FIELDS,
    owner_conflict,
    parse_amount,
    parse_decimal,
    COUNT_DIGITS,
    FALSE_WORDS,
    IGNORED_ORDER_STATUSES,
    RUN_IGNORED_ORDER_STATUSES,
    MAX_QUANTITY,
    TRUE_WORDS,
    RowError,
    below,
    bounded_amount,
    bounded_quantity,
    cart_limits,
    normalize_locale,
    parse_currency,
    parse_delivered,
    refund_amount,
    refunded_whole,
    refuse_nul,
    refuse_too_long,
    written_with_words,
)
from cartrescue.sources.order_index import OrderIndex, Row
from cartrescue.sources.spool import RowSpool

if TYPE_CHECKING:
    from _csv import Dialect as CsvDialect

    from cartrescue.shards import Shard

CART_FIELDS = (
    "cart_id", "customer_id", "email", "phone", "first_name", "last_name", "locale",
    "marketing_consent", "is_guest", "currency", "total", "created_at", "updated_at",
    "recovery_url", "device", "store_id", "sms_consent", "full_name",
)
LINE_FIELDS = (
    "sku", "name", "quantity", "unit_price", "unit_cost", "stock_on_hand", "image_url", "product_url",
)
#: The line columns that make a row a line of its cart (:meth:`CsvSource._build_item`): a row with
#: none of them (an image or a link at most) is none, and a cart without a line is empty.
ITEM_FIELDS = LINE_FIELDS[:6]
#: What the first pass saw of a cart's contents, ``(empty, free)`` of :class:`Activity`: shared
#: tuples, none built per cart.
_EMPTY, _FREE, _FULL = (True, False), (False, True), (False, False)
#: What an amount of 0 is written with (" 0.00", "0,00"): one written with anything else is no 0.
_ZERO_WRITTEN = "0., "
#: What two groups of one cart id must share to be the same cart listed twice (:mod:`.apart`):
#: its items, its times and whose it is; fewer cells than the row's, for a cheap digest of every
#: group. Without the owner and created_at, two customers' carts under one id (a spreadsheet
#: rounded both to 3.50123E+13) with the same items were "listed twice": the second customer's
#: was dropped, and on a later day, listed first, took over the first one's sequence (step 2).
ALIKE_FIELDS = ("sku", "name", "quantity", "unit_price", "updated_at", "created_at", *OWNER_FIELDS)
ORDER_FIELDS = (
    "order_id", "email", "customer_id", "cart_id", "total", "currency", "status", "created_at", "delivered",
    "cancelled_at",
)
#: Order columns the report reads beyond ORDER_FIELDS (:meth:`CsvSource.orders`).
REPORT_ORDER_FIELDS = ("discount_code", "refunded")
#: What a run's order reader reads: ``refunded`` too, since an order refunded in full (its status
#: still "paid") awaits no delivery and must not hold back reminders (``Order.awaits_delivery``).
RUN_ORDER_FIELDS = (*ORDER_FIELDS, "refunded")
#: No cart-level value taken from a later row of its cart (the common case; never written to).
_NOT_LATER: dict[str, int] = {}


_NO_OWNER = ("",) * len(OWNER_FIELDS)  # a row that leaves them to the cart's first
REQUIRED_CART = ("cart_id", "currency", "created_at", "sku", "name", "quantity", "unit_price")
REQUIRED_ORDER = ("order_id", "created_at")

_TRUE, _FALSE = TRUE_WORDS, FALSE_WORDS
#: :func:`parse_bool` of each yes/no word as written in lower case.
_WORDS = {**dict.fromkeys(TRUE_WORDS, True), **dict.fromkeys(FALSE_WORDS, False)}
_NO_REFUSALS = (False, False)  # a cart that said no consent away (CsvSource._refusals)
_OFFSET_WITH_SPACE = re.compile(r"^(.*\d)\s+([+-]\d{2}):?(\d{2})$")
_LINE_BREAK = re.compile(r"\r\n|\r|\n")
#: ``1.500``: a decimal point before three decimals, or a thousands dot (European exports).
_GROUPED_OR_POINT = re.compile(r"^-?[1-9]\d{0,2}\.\d{3}$")
_ZERO = Decimal("0")
ORDER_BATCH = 5000  # order rows indexed per SQLite call
#: ``LineItem(...)``, ``Customer(...)``, ``Cart(...)`` for ~2,000 instructions less each: three a
#: cart and one a line, the most objects the carts pass builds (:func:`~cartrescue.model.quick_new`).
_new_item, _new_customer, _new_cart = quick_new(LineItem), quick_new(Customer), quick_new(Cart)
_new_activity = quick_new(Activity)  # one a cart of the first pass


@lru_cache(maxsize=256)
def _minor_digits(currency: str) -> int:
    from babel.numbers import get_currency_precision

    return get_currency_precision(currency)


def thousands_dot(text: str, what: str, currency: str) -> None:
    """Raise :class:`RowError` for an amount like ``1.500`` in a currency of fewer than three
    decimals: a thousands dot (a price of 1,500 in a European export read as 1.50, a customer
    shown a sofa for €1.30) far more often than a price in thousandths. KWD, BHD, JOD, OMR and
    TND have three decimals, so there it is a price."""
    if text[-4:-3] == "." and _GROUPED_OR_POINT.match(text) and _minor_digits(currency) < 3:
        whole = text.replace(".", "")
        raise RowError(f"{what}: ambiguous: {text!r} is {Decimal(text).normalize()} with a decimal point, {whole} "
                       f"with a thousands dot, and {currency} has {_minor_digits(currency)} decimals: write it "
                       f"without the dot, or with its decimals ({whole}.00 or {text},00)")


def parse_int(text: str, what: str) -> int:
    """A whole number below the bound of any count (``1e999999`` is refused before ``int()``)."""
    if written_with_words(text):  # "2 pcs": parse_decimal would take the word for a currency
        raise RowError(f"{what}: not a number: {text!r} (a unit in it? write the number alone, as 3)")
    number = parse_decimal(text, what)
    if not below(number, COUNT_DIGITS):
        raise RowError(f"{what}: out of range: {text[:40]!r}")
    if number != number.to_integral_value():
        raise RowError(f"{what}: not a whole number: {text!r}")
    return int(number)


def _stock(text: str) -> int:
    """A stock cell: a whole number whose size is below the bound of any stock. ``isdecimal()``,
    not ``isdigit()``: that one takes ``²``, which ``int()`` refuses (the run stopped, exit 70)."""
    return int(text) if text.isdecimal() and len(text) < 12 else parse_int(text, "stock_on_hand")


def _not_a_time(text: str, what: str) -> RowError:
    """A time cartrescue cannot read, with the forms it can: ``06/12/2026 14:05`` may be June or
    December, so the owner's export must write it as ISO 8601 (the hint shows how)."""
    return RowError(f"{what}: not an ISO 8601 time: {text!r} (write e.g. 2026-11-20T10:03:00Z, "
                    "2026-11-20 11:03:00+01:00, or 2026-11-20 11:03 in the shop's timezone)")


def parse_time(text: str, what: str, tz: ZoneInfo) -> datetime:
    """ISO 8601 (with ``Z`` or an offset; also ``2026-11-20 10:03:00 +0100``) -> aware UTC.

    A time without an offset is read in the shop's timezone ``tz``.
    """
    value = text.strip()
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        match = _OFFSET_WITH_SPACE.match(value)
        if not match:
            raise _not_a_time(text, what) from None
        try:
            moment = datetime.fromisoformat(f"{match.group(1)}{match.group(2)}:{match.group(3)}")
        except ValueError:
            raise _not_a_time(text, what) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=tz)
    try:
        return moment.astimezone(timezone.utc)
    except OverflowError:  # 0001-01-01 east of UTC, 9999-12-31 west of it: no such UTC time
        raise RowError(f"{what}: out of range: {text!r}") from None


def parse_order_time(text: str, what: str, tz: ZoneInfo) -> tuple[datetime, datetime | None]:
    """:func:`parse_time` of an order's time, and ``None``; but a date alone (``2026-11-20``,
    as some exports write it) is the *end* of that day in the shop's timezone, not its midnight,
    with the day's start (:attr:`Order.day_start`): a cart abandoned that morning and bought
    that afternoon then counts as ordered (at midnight the order read as one placed before the
    cart, and the customer got a reminder for what they had bought). The report takes the whole
    day: such an order counts after that day's messages, and within a window that holds any of it."""
    value = text.strip()
    if len(value) <= 10 and ":" not in value:
        try:
            day = date.fromisoformat(value)
        except ValueError:
            pass  # parse_time says what is wrong with it
        else:
            return (datetime.combine(day, time.max, tz).astimezone(timezone.utc),
                    datetime.combine(day, time(), tz).astimezone(timezone.utc))
    return parse_time(text, what, tz), None


def utc_text(text: str, moment: datetime) -> str:
    """``moment.isoformat()`` for ``moment = parse_time(text, ...)``: ``text`` itself when it is
    already that (``2026-11-20T09:12:41+00:00``, as most exports write their times), which
    saves formatting it again for each of a file's orders."""
    if len(text) == 25 and text[10] == "T" and text.endswith("+00:00") and text.isascii():
        return text
    return moment.isoformat()


def split_name(full_name: str, locale: str) -> tuple[str, str]:
    """``full_name`` as (first name, the rest): the first word is the given name, but in
    Hungarian the family name comes first (``Kovács Ágnes``), so there it is the last."""
    words = full_name.split()
    if len(words) < 2:
        return full_name, ""
    if locale.lower().replace("-", "_").split("_")[0] == "hu":
        return words[-1], " ".join(words[:-1])
    return words[0], " ".join(words[1:])


def _said_no(rows: list[tuple[int, list[str]]], at: int) -> bool:
    """Whether the first consent cell written at ``at`` among a group's rows says no (read only
    where written; a cell that is no yes/no word is no "no": the carts pass reports it)."""
    for _, row in rows:
        word = row[at].strip()
        if word:
            return word.lower() in _FALSE
    return False


def parse_bool(text: str, what: str) -> bool | None:
    """A yes/no cell: a word as most exports write it (lower case, no spaces) is one dict
    lookup (:data:`_WORDS`, three cells a cart); any other case or spelling is parsed."""
    known = _WORDS.get(text)
    if known is not None:
        return known
    value = text.strip().lower()
    if not value:
        return None
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise RowError(f"{what}: expected yes/no, got {text!r}")


@lru_cache(maxsize=256)
def _locale(text: str) -> str | None:
    """:func:`normalize_locale`, remembered: a shop has a handful of locales."""
    return normalize_locale(text)


@dataclass(frozen=True, slots=True)
class _Columns:
    """Where each generic field sits in this file's header (``-1`` = absent)."""

    index: dict[str, int]


#: The key of the carts' encoding, which errors about it name (the newsletter export has its own:
#: ``source.newsletters.encoding``).
ENCODING_SETTING = "source.encoding"
#: ... and the orders export's, the carts' unless set: an error about the orders names it, as
#: "set source.encoding" would have the owner change the carts' too (and break them).
ORDERS_ENCODING_SETTING = "source.orders_encoding"


def _open_csv(path: Path, encoding: str, delimiter: str | None, key: str = "",
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
    marked = _marked_otherwise(handle, encoding, setting)
    if marked is not None:
        handle.close()
        raise SourceError(f"{named}: {marked}")
    try:
        if delimiter is None:
            first = handle.readline()
            while first and not first.lstrip("\ufeff").strip():  # blank lines before the header: see read_header
                first = handle.readline()
            handle.seek(0)
            hint = _SEP_LINE.fullmatch(first.lstrip("\ufeff").rstrip("\r\n"))
            delimiter = hint.group(1) if hint else detect_delimiter(first)
        _skip_bom(handle)
    except UnicodeError:  # UnicodeDecodeError, or a UTF-16 file without its byte-order mark
        handle.close()
        raise _undecodable(path, encoding, setting) from None
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
    return None


#: Excel's delimiter hint, a first line ``sep=;`` some exporters write above the header so that
#: Excel opens the file in columns whatever the region's list separator: it names the delimiter,
#: and is no header (:func:`read_header` passes it).
_SEP_LINE = re.compile(r"sep=(.)", re.IGNORECASE)


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


def _sep_hint(row: list[str]) -> bool:
    """Whether ``row`` is Excel's ``sep=X`` line: read with X, its cells are ``sep=`` and an empty
    one; with a delimiter configured otherwise, the one cell ``sep=X``."""
    if len(row) == 2:
        return row[0].lstrip("\ufeff").lower() == "sep=" and not row[1]
    return len(row) == 1 and _SEP_LINE.fullmatch(row[0].lstrip("\ufeff")) is not None


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
        raise _undecodable(path, encoding, setting) from None
    except csv.Error as exc:
        raise SourceError(f"{path}:1: cannot read the header: {exc}") from None


def empty_export(path: Path, without: str) -> SourceError:
    """A 0-byte export (not even a header): most likely its job failed. Unlike an empty carts file
    (nothing to remind), an empty orders or newsletter file would let the run remind people it
    should not (``without``), so it stops the run, exit 3. A header alone is a file with no rows."""
    return SourceError(f"{path}: empty, not even a header (did the export job fail?); without it the run would "
                       f"{without}, so it stops. A shop with none yet exports the header line alone")


def numbered_rows(reader: CsvRows, path: Path, encoding: str,
                  on_problem: ProblemSink, setting: str = ENCODING_SETTING) -> Iterator[tuple[int, list[str]]]:
    """The rows after the header, each with the line it starts on (a quoted cell may span
    lines); a malformed row is reported as ``file:line`` and skipped, undecodable text stops."""
    return reader.numbered(lambda start, exc: on_problem(RowProblem(f"{path}:{start}", f"malformed CSV: {exc}")),
                           lambda: _undecodable(path, encoding, setting))


def swallowed_rows(row: Sequence[str], dialect: "CsvDialect", width: int) -> list[list[str]]:
    """The rows of the file inside ``row``'s cells: each line of a cell (after its first) with a
    row's worth of delimiters, read as a row. Asked only of a row that spans lines.

    A quote that is never closed where it should be (``"12 inch pan,1,10``) makes one cell of
    every line up to the next quote. The cells that follow often still add up to the header's
    width, so nothing else notices: the other customers' rows, addresses and all, became one
    product's name in this customer's message, and their carts were gone without a word. A
    legitimate multi-line cell (an address, a note) is not a whole row of the file.

    A quote that closes on the very next line leaves no whole line inside the cell: its first
    line holds the rest of its own row, its last the start of the next row, up to the quote. So
    a cell whose first and last lines together hold a row's worth of delimiters is that too: the
    next row, its start read from the cell's last line and its end from the cells after it
    (``o2,…,complete",2026-11-20…,yes``: o2's whole row, which was silently lost)."""
    delimiter = dialect.delimiter
    found: list[list[str]] = []
    if "".join(row).count(delimiter) < width - 1:  # not even a row's worth in all its cells (cheap)
        return found
    for at, cell in enumerate(row):
        if "\n" in cell or "\r" in cell:
            lines = cell.splitlines()
            whole = [line for line in lines[1:] if line.count(delimiter) >= width - 1]
            if whole:
                found.extend(csv.reader(whole, dialect))
            elif len(lines) > 1 and lines[0].count(delimiter) + lines[-1].count(delimiter) >= width - 1:
                found.append(next(csv.reader([lines[-1]], dialect), []) + list(row[at + 1:]))
    return found


def swallowed_lines(row: Sequence[str], dialect: "CsvDialect", start: int) -> list[tuple[int, list[str]]]:
    """Every line of the file inside ``row``'s cells (each line of a cell after its first), read as
    a row, with the line it stands on (``row`` starts on line ``start``). Asked only of a row that
    :func:`swallowed_rows` found rows in: a quote left open.

    Unlike :func:`swallowed_rows` it keeps the lines without a row's worth of delimiters: the
    last one is the start of the row where the quote closed (``c3,c@example.com,…,"Pot",2,20``),
    whose cart lost that row too."""
    found: list[tuple[int, list[str]]] = []
    line = start
    for cell in row:
        parts = _LINE_BREAK.split(cell)
        for offset, part in enumerate(parts[1:], 1):
            found.extend((line + offset, cells) for cells in csv.reader([part], dialect))
        line += len(parts) - 1
    return found


@dataclass(frozen=True, slots=True)
class OpenQuote:
    """A quote left open in the orders file (:func:`open_quote_orders`): each line it took that
    names an order, ``(line, order id, email, customer id, cart id)`` (stripped, blank: none),
    and the problem, for each reader to end with what it does about those orders."""

    orders: list[tuple[int, str, str, str, str]]
    reason: str


def open_quote_orders(row: Sequence[str], reader: CsvRows, start: int, width: int,
                      ids_at: Sequence[int]) -> OpenQuote | None:
    """The orders a quote left open in ``row`` (on line ``start``, just read by ``reader``) took
    in, the one it opened in and the one it closed in too; None: none (a legitimate multi-line
    cell). Asked only of a row over several lines. Shared by the run's reader (the customers of
    those orders wait) and the report's (those orders are missing from it): both must see one span.
    ``ids_at``: where the order id, email, customer id and cart id are (``width``: absent)."""
    taken = swallowed_rows(row, reader.dialect, width)
    if not taken:
        return None
    padding = [""] * (width + 1)
    orders = []
    for line, cells in ((start, row), *swallowed_lines(row, reader.dialect, start)):
        cells = list(cells[:width]) + padding[min(len(cells), width):]  # a blank cell at width, for absent ids
        order_id, email, customer_id, cart_id = (cells[at].strip() for at in ids_at)
        if order_id or email or customer_id or cart_id:
            orders.append((line, order_id, email, customer_id, cart_id))
    names = ", ".join(order[1] for order in orders if order[1])
    return OpenQuote(orders, f"a quoted cell runs to line {reader.line_num} and holds {len(taken)} row(s) of the "
                             f"file (order {names}): a quote left open?")


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


def stripped_cells(positions: Sequence[int]) -> Callable[[list[str]], list[str]]:
    """A function of a row that gives its cells at ``positions``, stripped, in a new list: what
    ``list(map(str.strip, itemgetter(*positions)(row)))`` gives, for ~250 instructions a cell
    less (callgrind). Its code is written for this file's header, each cell read with the
    interpreter's own list indexing and ``strip`` called in place: no ``itemgetter`` (a generic
    lookup a cell) and no ``map``. Made once per file; called once per cart and per line."""
    cells = ", ".join(f"row[{int(position)}].strip()" for position in positions)
    names: dict[str, Any] = {}
    exec(f"def cells(row):\n    return [{cells}]\n", names)  # noqa: S102 - our own text: indexes only
    function: Callable[[list[str]], list[str]] = names["cells"]
    return function


def _ignore_broken(cart_id: str, line: int) -> None:
    """A pass that does not look for a cart's other groups (see ``CsvSource._cart_rows``)."""


def _unreadable_order(order_id: str, line: int, email: str, customer_id: str, cart_id: str) -> Row:
    """An orders index row for an order row found but not read, with the ids it gives (stripped
    cells, blank: none): it may be the order of the very cart a reminder would be about, so the
    carts of its customer wait (``unreadable_order``) until the row can be read."""
    return (order_id, line, 2, None, fold_email(email) or None, customer_id or None, cart_id or None, None, None,
            UNREADABLE, None, None)


def _no_order_id(line: int) -> str:
    """The key of an order row without an order id in the orders index: one of its own (no real
    id is written so), as every row is kept under its id."""
    return f"(no order_id, line {line})"


def _undecodable(path: Path, encoding: str, setting: str = ENCODING_SETTING) -> SourceError:
    """The error for a file that is not in ``encoding``, naming the first line that is not and
    the key that sets its encoding (``setting``: the newsletter export has its own).

    The text reader decodes ahead in blocks, so its error does not say where; the file is read
    again as bytes to find the line (only on this error path). UTF-16 and UTF-32 raise a plain
    :class:`UnicodeError` for a file without a byte-order mark: which byte order is it in?
    """
    import codecs

    decoder = codecs.getincrementaldecoder(encoding)()
    number = 0
    with path.open("rb") as handle:
        for number, raw in enumerate(handle, 1):
            try:
                decoder.decode(raw)
            except UnicodeDecodeError as exc:
                return SourceError(f"{path}:{number}: not {encoding} text (byte {exc.start + 1} of the line: "
                                   f"{exc.reason}); set {setting} to the export's encoding, e.g. cp1252")
            except UnicodeError as exc:
                return SourceError(f"{path}:{number}: not {encoding} text ({exc}); set {setting} to the "
                                   f"export's encoding, e.g. {encoding}-le")
    return SourceError(f"{path}: not {encoding} text; set {setting} to the export's encoding, e.g. cp1252")


def _columns(path: Path, header: list[str], fields: Sequence[str], mapping: dict[str, str],
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
    missing = [mapping.get(name, name) for name in required if index[name] < 0]
    if missing:
        hint = _rename_hint(header, index, mapping, required, key)
        below = None if hint or reader is None else _header_below(reader, missing)
        if below is not None:
            hint = f"line {below} names them: is the header there? Remove the lines above it"
        raise SourceError(f"{path}:{line}: missing column(s): {', '.join(missing)}" + (f" ({hint})" if hint else ""))
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
ORDER_LINKS = ("email", "customer_id", "cart_id")


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


def _tied_to_carts(path: Path, header: Sequence[str], columns: _Columns, mapping: dict[str, str], line: int) -> None:
    """Refuse an orders file without any column that ties an order to a cart: read, it matched no
    order to anyone, and every buyer was reminded without a word (``--strict`` too). A column
    named almost as one of them (``E-Mail``, :func:`misnamed`) is named."""
    if all(columns.index[name] < 0 for name in ORDER_LINKS):
        names = ", ".join(mapping.get(name, name) for name in ORDER_LINKS)
        hint = _rename_hint(header, columns.index, mapping, ORDER_LINKS, "source.order_columns")
        raise SourceError(f"{path}:{line}: none of the columns that tie an order to a cart ({names}): no order would "
                          "be matched and every buyer reminded; map the export's one in source.order_columns"
                          + (f" ({hint})" if hint else ""))


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
                   what: str) -> Iterator[RowProblem]:
    """A problem for each field of ``expected`` (the ones a user mapped, and the few a preset
    cannot do without) whose header the file lacks: its value would be blank on every row, and
    a blank consent leaves every cart without one, with no other sign than the skips."""
    for name in expected:
        if columns.index.get(name, 0) < 0:
            yield RowProblem(f"{path}:1", f"no column {mapping.get(name, name)!r} ({what}.{name}) in the header: "
                                          f"{name} is blank on every row", whole_file=True)


class CsvSource(CartSource):
    """Carts (and optionally orders) from CSV files in the generic format or a mapped export."""

    name = "csv"

    def __init__(
        self,
        carts: Path,
        orders: Path | None = None,
        *,
        shop_tz: ZoneInfo = ZoneInfo("UTC"),
        columns: dict[str, str] | None = None,
        order_columns: dict[str, str] | None = None,
        delimiter: str | None = None,
        encoding: str = "utf-8-sig",
        orders_encoding: str | None = None,
        name: str = "csv",
        on_problem: ProblemSink = ignore_problem,
        shared_orders: Path | None = None,
        shared_carts: Path | None = None,
        expected: Sequence[str] = (),
        expected_orders: Sequence[str] = (),
        carts_key: str = "",
        orders_key: str = "",
        region: str | None = None,
    ) -> None:
        """``shared_orders``: where the run of this worker builds the orders index that all its
        workers read (:mod:`cartrescue.sources.shared`); None: this source indexes them.
        ``shared_carts``: where the run splits the carts file into one spool per shard
        (:meth:`publish_shards`); None: this source reads the carts file.
        ``carts_key``, ``orders_key``: what named each file (``cartrescue.yaml: source.carts``),
        for an error that it cannot be opened. ``region``: the shop's (``Config.phone_region``),
        which the number of a customer without an address is read in (their key for the newest
        cart, and their shard). ``orders_encoding``: the orders export's, where it is not the
        carts' ``encoding`` (``source.orders_encoding``)."""
        super().__init__(on_problem)
        self.carts_key, self.orders_key = carts_key, orders_key
        self.region = region
        self.shared_orders = shared_orders
        self.shared_carts = shared_carts
        self.carts_path = carts
        self._carts_at = f"{carts}:"  # each cart's origin, less its line: a Path's str is a Python call
        self.orders_path = orders
        self.shop_tz = shop_tz
        self.column_map = columns or {}
        self.order_column_map = order_columns or {}
        # Mapped fields whose header must be there (see absent_columns): a problem when it is not.
        self.expected, self.expected_orders = expected, expected_orders
        self.delimiter = delimiter
        self.encoding = encoding
        self.orders_encoding = orders_encoding or encoding
        self.name = name
        self._orders: OrderIndex | None = None
        self._decimals: dict[str, Decimal] = {}
        self._currencies: set[str] = set()
        self._dotted = False  # the cart being built has a price like 1.299 (see thousands_dot)
        self._reading: TextIO | None = None  # the file the carts pass reads (progress)
        self._reading_spool: RowSpool | None = None  # ... or the spool it reads instead
        self._halves = False  # the file is read by an activity pass whose spool the carts pass reads
        self._spool: RowSpool | None = None  # the rows the last complete activity pass kept
        self._spool_shard: Shard | None = None  # ... for this shard (None: the whole file)
        self._apart: dict[str, Apart] = {}  # ... and the cart ids that pass met in more than one place
        self._unique = False  # the carts pass under way reads a spool, repeated ids handled
        # This carts pass reports the problems of rows that are no cart of its own (rows of no cart,
        # the orders file's): an unsharded run does, and of N shards shard 1 only.
        self._reports_shared = True

    # -- carts -------------------------------------------------------------------------------

    def carts(self, window: Window | None = None) -> Iterator[Cart]:
        """Every readable cart of the file (the window is not applied: the pipeline reports
        carts outside it with their reason, which a CSV can afford). Right after a complete
        :meth:`activity` pass, from that pass's spool instead of the file."""
        self._reports_shared = True
        spool = self._take_spool(None)
        if spool is not None:
            yield from self._spooled_carts(spool)
            return
        self._halves, self._reading_spool, self._unique = False, None, False
        for start_line, rows in self._cart_rows(track=True):
            cart = self._build_cart(start_line, rows)
            if cart is not None:
                yield cart

    def activity(self, window: Window) -> Iterator[Activity]:
        """The first pass, cheaply: only the id, address and times of each cart are read (and
        the rows kept in a spool for the carts pass that follows; see :mod:`.spool`)."""
        return self._activity(None)

    def unreadable(self, cart_keys: Sequence[str]) -> Collection[str]:
        """This first pass reads no line of a cart: those of ``cart_keys`` that cannot be built
        are found by building them from the pass's spool (only the batches that hold one are
        decoded; their problems are the carts pass's to report). A cart given in two places is
        left out if one of them cannot be built."""
        spool, prefix = self._spool, f"{self.name}:"
        ids = {key[len(prefix):] for key in cart_keys if key.startswith(prefix)}
        if spool is None or not ids:
            return ()
        unreadable: set[str] = set()
        saved, self.on_problem = self.on_problem, ignore_problem
        try:
            for start, rows in spool.groups_of(ids):
                if self._build_cart(start, rows) is None:
                    unreadable.add(prefix + rows[0][1][self._id_at].strip())
        finally:
            self.on_problem = saved
        return unreadable

    def _activity(self, shard: Shard | None) -> Iterator[Activity]:
        if shard is not None and not shard.whole and self.shared_carts is not None:
            from cartrescue.sources.shared import activity_spool, carts_spool, failed_marker
            from cartrescue.sources.spool import Abandoned

            path, failed = carts_spool(self.shared_carts, shard.index), failed_marker(self.shared_carts)
            try:
                yield from self._followed_activity(activity_spool(path), path, failed.exists, shard)
                return
            except Abandoned:
                # The run could not split the file: this worker reads it itself, as without a
                # split. The activity given so far comes again: the newest-cart index keeps the newest.
                pass
        saved = self.on_problem
        spool = RowSpool()
        apart = ApartIds()
        self.on_problem = lambda problem: spool.add_problem(problem.location, problem.reason, problem.whole_file)
        complete = False
        try:
            name = self.name
            owns = None if shard is None else shard.owns
            self._halves, self._reading_spool = True, None
            # every cart, a shard's or not, goes to apart: its pieces may go to two
            for start, rows, cart_id, email in self._carts_read(apart, track=True):
                key = f"{name}:{cart_id}"
                phone = "" if email else self._first(rows, "phone")  # the key of a cart without an address
                if owns is not None and not owns(email, key, phone):
                    continue
                spool.add_group(start, rows, cart_id)
                if email or phone:
                    empty, free = self._contents(rows)
                    moment = self._moment(rows)
                    activity = self._activity_of(email, moment, key, empty, free, *self._refusals(rows, empty or free),
                                                 phone)
                    if activity is not None:
                        yield activity
            complete = True
        finally:
            self.on_problem = saved
            self._drop_spool()
            if complete:
                self._spool, self._spool_shard, self._apart = spool.finish(), shard, apart.finish()
            else:
                spool.close()
                apart.close()

    def _carts_read(self, apart: ApartIds, *, track: bool = False, begin: Cut | None = None,
                    end: Cut | None = None) -> Iterator[tuple[int, list[tuple[int, list[str]]], str, str]]:
        """Each cart group of the export (:meth:`_cart_rows`) with its id and its address
        (:meth:`_first`'s: stripped, "" without one), its digest given to ``apart``: what the
        first pass and the split read of every cart. The first row's cell is taken where it is
        written (most carts): a call fewer each, once per cart of the export. ``begin``, ``end``:
        :meth:`_cart_rows`'."""
        id_at = email_at = -1
        alike: Any = None
        for start, rows in self._cart_rows(track=track, broken=apart.add_broken, begin=begin, end=end):
            if id_at < 0:  # known once the header is read
                id_at, email_at, alike = self._id_at, self._at["email"], self._alike_getter
            first = rows[0][1]
            cart_id = first[id_at].strip()
            apart.add(cart_id, start, hash(alike(first)) if len(rows) == 1 else self._digest(rows))
            email = first[email_at]
            email = email.strip() if email and not email.isspace() else self._first(rows, "email")
            yield start, rows, cart_id, email

    def _moment(self, rows: list[tuple[int, list[str]]]) -> str:
        """A group's last activity as written (updated, else created; "" when neither is): the
        first row's cell where it is written (most carts), without a call per row."""
        moment = rows[0][1][self._at["updated_at"]]
        if moment and not moment.isspace():
            return moment.strip()
        return self._first(rows, "updated_at") or self._first(rows, "created_at")

    def _activity_of(self, email: str, moment: str, key: str, empty: bool, free: bool,
                     no_marketing: bool = False, no_sms: bool = False, phone: str = "") -> Activity | None:
        """What the first pass learns of one cart: its address (without one, its phone number as
        written), last activity, whether it has anything in it (:meth:`_contents`) and whether it
        said no to a consent (:meth:`_refusals`) (None: without an address, a number or a time,
        the cart is no customer's newest, nor a withdrawal)."""
        if not (email or phone) or not moment:
            return None
        try:
            updated = parse_time(moment, "updated_at", self.shop_tz)
        except RowError:
            return None
        return _new_activity(fold_email(email), updated, key, empty, free, no_marketing, no_sms, phone)

    def _refusals(self, rows: list[tuple[int, list[str]]], withdraws: bool) -> tuple[bool, bool]:
        """``(no_marketing, no_sms)`` of a group: whether its ``marketing_consent`` and
        ``sms_consent`` say no, as :meth:`_build_cart` reads them (the first written among the
        rows): the customer's latest word withdraws an older cart's yes (:mod:`cartrescue.newest`).
        Read only where it ``withdraws``: a cart that is empty or free, and so no competitor for
        the newest; a column the file lacks costs nothing (most exports have none for texts):
        this is the first pass, once per cart."""
        if not withdraws:
            return _NO_REFUSALS
        marketing_at, sms_at = self._marketing_at, self._sms_at
        no_marketing = marketing_at >= 0 and _said_no(rows, marketing_at)
        return no_marketing, sms_at >= 0 and _said_no(rows, sms_at)

    def _contents(self, rows: list[tuple[int, list[str]]]) -> tuple[bool, bool]:
        """``(empty, free)`` of a group as :meth:`_build_cart` would find them: no line (no row
        with any of :data:`ITEM_FIELDS`), or a total of 0 (its ``total``, else every line priced
        0). A value this pass cannot read is something to pay: the carts pass reports it.

        Only "empty" and "free" must be sure (either takes the cart out of the newest-cart
        pass); "neither" is the old behaviour, so the first row alone says it for most carts:
        a total written above 0, or none and a price above 0."""
        first = rows[0][1]
        total = first[self._total_at].strip()
        if (total or first[self._price_at]).strip(_ZERO_WRITTEN):  # the first row's total, else its price
            return _FULL
        if not self._has_line(rows):
            return _EMPTY
        total = total or self._first(rows, "total")
        if total:
            return _FREE if self._zero(total, "total") else _FULL
        price_at = self._price_at
        for _, row in rows:  # every line priced 0?
            price = row[price_at].strip()
            if price and not self._zero(price, "unit_price"):
                return _FULL
        return _FREE

    def _zero(self, text: str, what: str) -> bool:
        """Whether an amount as written is 0 (parsed only when it looks so: zeros and separators)."""
        if text.strip(_ZERO_WRITTEN):
            return False
        try:
            return not self._decimal(text, what)
        except RowError:
            return False

    def _has_line(self, rows: list[tuple[int, list[str]]]) -> bool:
        """Whether a row of the group is a line: one of :data:`ITEM_FIELDS` written in it."""
        positions = self._item_at
        for _, row in rows:
            for at in positions:
                cell = row[at]
                if cell and not cell.isspace():
                    return True
        return False

    def _followed_activity(self, path: Path, rows_path: Path, abandoned: Callable[[], bool],
                           shard: Shard) -> Iterator[Activity]:
        """The first pass over this shard's activity spool, which the run's helper writes beside
        its rows spool (``rows_path``, complete once the activity spool is): each cart's id,
        address and last activity as written and its contents, then the file's repeated cart
        ids. The rows are then read once, by the carts pass. The header is read here (where each
        field is)."""
        from cartrescue.sources.shared import WAIT_LIMIT
        from cartrescue.sources.spool import follow

        handle, reader = _open_csv(self.carts_path, self.encoding, self.delimiter, self.carts_key)
        with handle:
            self._read_header(reader)
        name = self.name
        apart: dict[str, Apart] = {}
        for entry in follow(path, abandoned, WAIT_LIMIT):
            if entry[0] is None:  # the file's repeated cart ids, the spool's last entry
                apart = {cart_id: Apart(tuple(lines), alike, tuple(broken))  # type: ignore[union-attr]
                         for cart_id, (lines, alike, broken) in entry[1].items()}  # type: ignore[union-attr]
                continue
            cart_id, email, moment, empty, free, no_marketing, no_sms, phone = entry  # type: ignore[misc]
            activity = self._activity_of(email, moment, f"{name}:{cart_id}",  # type: ignore[has-type]
                                         empty, free, no_marketing, no_sms, phone)
            if activity is not None:
                yield activity
        self._drop_spool()
        self._spool, self._spool_shard, self._apart = RowSpool.reading(rows_path), shard, apart

    def publish_shards(self, spools: Sequence[Path]) -> int:
        """Split the carts file into one spool per shard (``spools[K - 1]`` for shard K of
        ``len(spools)``), each cart where :func:`~cartrescue.shards.owner` puts it (a number
        without ``+`` read in :attr:`region`, as the workers' shards read it) and the
        problems of rows that are no cart in shard 1's, all in file order: what each worker's
        first pass would keep, for its carts pass to read instead of each worker parsing the
        whole file. Beside each, an activity spool (:func:`~cartrescue.sources.shared.activity_spool`)
        with each cart's id, address, last activity, contents and consent withdrawals, and last the file's repeated
        cart ids, which the worker's first pass follows (:func:`~cartrescue.sources.spool.follow`)
        while it is written: it never decodes the rows for it. Run by a helper process of ``run
        --workers``, which cuts a file of UTF-8 in as many pieces as the run has workers and cores,
        each of :attr:`piece_from` bytes or more, and forks a helper for each piece after its own
        (:mod:`.pieces`): how many pieces after its own it took."""
        from dataclasses import replace

        from cartrescue.sources.shared import activity_spool, piece_ids, piece_spool, piece_stopped

        cuts = self._cuts(len(spools))
        pieces = Pieces(len(cuts), lambda number: self._split_piece(number, cuts, spools),
                        lambda number: piece_stopped(spools[0], number))
        writers = [RowSpool.shared(path) for path in spools]
        activities = [RowSpool.shared(activity_spool(path)) for path in spools]
        apart = ApartIds()
        saved = self.on_problem
        self.on_problem = lambda problem: writers[0].add_problem(problem.location, problem.reason)
        try:
            end = replace(cuts[0], hand_over=pieces.hand_over, refuse=pieces.end) if pieces.forked else None
            self._split_into(writers, activities, apart, end=end)
            for number in range(2, pieces.taken + 2):  # each piece's entries after the ones before, its cart ids too
                for path, writer, activity in zip(spools, writers, activities, strict=True):
                    writer.append_part(piece_spool(path, number))
                    activity.append_part(piece_spool(activity_spool(path), number))
                apart.merge(piece_ids(spools[0], number))
            for writer in writers:  # complete before the activity spools are: see _followed_activity
                writer.finish()
            found = {cart_id: (entry.lines, entry.alike, entry.broken) for cart_id, entry in apart.finish().items()}
            for activity in activities:  # every shard: a cart's pieces may have gone to two of them
                activity.add_apart(found)
                activity.finish()
            return pieces.taken
        finally:
            self.on_problem = saved
            apart.close()
            for writer in writers + activities:
                writer.close()
            pieces.end()  # a helper still at work (a wrong guess, an error): ended

    #: The smallest piece :meth:`publish_shards` cuts the file in for another helper.
    piece_from = PIECE_FROM

    def _cuts(self, shards: int) -> list[Cut]:
        """Where the carts file is cut for the helpers of a split in ``shards`` spools
        (:func:`~.pieces.find_cuts`), in as many pieces as there are shards and cores; none: one
        helper splits it all (a small file, one not in UTF-8, no cut found, or the file not
        readable: the split then meets that error where one helper would)."""
        from cartrescue.workers import usable_cores

        pieces = min(shards, usable_cores())
        if pieces < 2 or not counted(self.encoding):
            return []
        try:
            handle, reader = _open_csv(self.carts_path, self.encoding, self.delimiter, self.carts_key)
            with handle:
                if self._read_header(reader) is None:
                    return []
                header_lines = reader.line_num
            return find_cuts(self.carts_path, reader.dialect.delimiter, self._id_at, header_lines, pieces,
                             self.piece_from)
        except Exception:  # noqa: BLE001 - the split by one helper meets it and says what it is
            return []

    def _split_piece(self, number: int, cuts: list[Cut], spools: Sequence[Path]) -> None:
        """The work of the helper of piece ``number`` (2, 3, ...; :class:`~.pieces.Pieces`): the
        rows from its cut to the next, if its reading confirms that one (it then leaves
        :func:`~cartrescue.sources.shared.piece_stopped`), else to the end, into its parts
        (:func:`~cartrescue.sources.shared.piece_spool`) of ``spools`` and of their activity
        spools, its cart ids into :func:`~cartrescue.sources.shared.piece_ids`."""
        from dataclasses import replace

        from cartrescue.sources.shared import activity_spool, piece_ids, piece_spool, piece_stopped

        def stop() -> bool:
            piece_stopped(spools[0], number).touch()
            return True

        end = replace(cuts[number - 1], hand_over=stop) if number - 1 < len(cuts) else None
        writers = [RowSpool.shared(piece_spool(path, number)) for path in spools]
        activities = [RowSpool.shared(piece_spool(activity_spool(path), number)) for path in spools]
        apart = ApartIds()
        self.on_problem = lambda problem: writers[0].add_problem(problem.location, problem.reason)
        self._split_into(writers, activities, apart, begin=cuts[number - 2], end=end)
        for writer in writers + activities:
            writer.finish(end=False)
        apart.save(piece_ids(spools[0], number))

    def _split_into(self, writers: list[RowSpool], activities: list[RowSpool], apart: ApartIds, *,
                    begin: Cut | None = None, end: Cut | None = None) -> None:
        """Each cart of the file (from ``begin``; to ``end``, if the rest is handed over there)
        into its shard's spool and its activity into that shard's activity spool
        (:meth:`publish_shards`)."""
        count, name, region = len(writers), self.name, self.region
        # The shard as owner() finds it, of the address already stripped (the number, else the
        # cart key, read only for a cart without one): this helper's work is what every worker waits for.
        for start, rows, cart_id, email in self._carts_read(apart, begin=begin, end=end):
            phone = "" if email else self._first(rows, "phone")  # the key of a cart without an address
            shard = shard_of(fold_email(email) if email else shard_key(None, phone, f"{name}:{cart_id}", region),
                             count) - 1
            writers[shard].add_group(start, rows, cart_id)
            if email or phone:  # without either, the cart is no customer's newest: no activity
                empty, free = self._contents(rows)
                moment = self._moment(rows)
                refusals = self._refusals(rows, True) if empty or free else _NO_REFUSALS
                activities[shard].add_activity(cart_id, email, moment, empty, free, *refusals, phone)

    def _take_spool(self, shard: Shard | None) -> RowSpool | None:
        """The spool of the activity pass just completed for ``shard`` (None: the whole file), if
        any; it is read once, so it is handed over and forgotten here."""
        spool, self._spool = self._spool, None
        if spool is not None and self._spool_shard != shard:
            spool.close()
            return None
        return spool

    def _drop_spool(self) -> None:
        if self._spool is not None:
            self._spool.close()
            self._spool = None

    def _spooled_carts(self, spool: RowSpool) -> Iterator[Cart]:
        """The carts pass over a spool: its groups built in file order, its problems (rows that
        are none of these carts) reported only if this pass reports them (``_reports_shared``)."""
        self._reading_spool = spool
        build = self._build_cart
        apart, self._apart, self._unique = self._apart, {}, True
        try:
            for first, second in spool.entries():  # type: ignore[misc]  # a rows spool: pairs only
                if type(first) is int:
                    if apart and not self._whole(apart, first, second):  # type: ignore[arg-type]
                        continue
                    cart = build(first, second)  # type: ignore[arg-type]
                    if cart is not None:
                        yield cart
                elif self._reports_shared:
                    self.on_problem(RowProblem(first, second, whole_file=(first, second) in spool.whole))  # type: ignore[arg-type]
        finally:
            spool.close()

    def keys_unique(self) -> bool:
        return self._unique

    def _digest(self, rows: list[tuple[int, list[str]]]) -> int:
        """The group's items and last change (:data:`ALIKE_FIELDS`), not its lines: two groups of
        one cart id with the same digest are one cart listed twice. A hash collision could only
        take a cart in pieces for one listed twice, as before pieces were looked for."""
        getter = self._alike_getter
        return hash(getter(rows[0][1])) if len(rows) == 1 else hash(tuple([getter(cells) for _, cells in rows]))

    def _whole(self, apart: dict[str, Apart], start: int, rows: list[tuple[int, list[str]]]) -> bool:
        """Whether the group at ``start`` is built: not when its cart id stands in several places
        (:mod:`.apart`), but for the first of a cart listed twice alike; reported where that says."""
        cart_id = rows[0][1][self._id_at].strip()
        entry = apart.get(cart_id)
        if entry is None:
            return True
        problem = entry.problem(cart_id, start)
        if problem is not None:
            self.on_problem(RowProblem(f"{self.carts_path}:{start}", problem))
        return entry.built(start)

    def shard_carts(self, window: Window, shard: Shard) -> Iterator[Cart]:
        """The shard's carts, the others skipped before they are built (only their address is
        read). Problems of rows that are none of this shard's carts (malformed CSV, no cart id,
        the orders file, read while this pass runs) are reported by shard 1 only. Right after a
        complete :meth:`shard_activity` pass for the same shard, from that pass's spool."""
        self._reports_shared = shard.index == 1  # the orders file too, indexed as this pass runs (orders_for)
        spool = self._take_spool(shard)
        if spool is not None:
            yield from self._spooled_carts(spool)
            return
        owns, name = shard.owns, self.name
        self._unique = False
        reporter = self.on_problem
        if shard.index != 1:
            self.on_problem = ignore_problem
        try:
            for start_line, rows in self._cart_rows():
                email = self._first(rows, "email")
                if owns(email, f"{name}:{rows[0][1][self._id_at].strip()}", "" if email else self._first(rows, "phone")):
                    self.on_problem = reporter  # a problem of the shard's own cart: reported here
                    cart = self._build_cart(start_line, rows)
                    if shard.index != 1:
                        self.on_problem = ignore_problem
                    if cart is not None:
                        yield cart
        finally:
            self.on_problem = reporter

    def shard_activity(self, window: Window, shard: Shard) -> Iterator[Activity]:
        return self._activity(shard)

    def _first(self, rows: list[tuple[int, list[str]]], name: str) -> str:
        """The first non-blank value of a cart-level column among the cart's rows."""
        position = self._at[name]
        for _, row in rows:
            value = row[position]
            if value and not value.isspace():
                return value.strip()
        return ""

    def progress_total(self, window: Window) -> ProgressTotal | None:
        """The carts file's size: :meth:`carts` reports how many of its bytes it has read."""
        try:
            size = self.carts_path.stat().st_size
        except OSError:
            return None
        return ProgressTotal(size, "bytes", self._bytes_read)

    def _bytes_read(self) -> int:
        """How far the run has got through the file (to the block: 8 KiB).

        When the carts pass reads the spool of an activity pass, the activity pass is the first
        half of the bar (its position in the file) and the spool the second: the export is
        parsed once, and the bar moves all along.
        """
        try:
            size = self.carts_path.stat().st_size
        except OSError:
            return 0
        spool = self._reading_spool
        if spool is not None:
            return size // 2 + int(size / 2 * spool.fraction())
        handle = self._reading
        if handle is None:
            return 0
        position = size if handle.closed else handle.buffer.tell()  # type: ignore[attr-defined]
        return position // 2 if self._halves else position

    def _cart_rows(self, *, track: bool = False, broken: Callable[[str, int], None] | None = None,
                   begin: Cut | None = None, end: Cut | None = None
                   ) -> Iterator[tuple[int, list[tuple[int, list[str]]]]]:
        """Group consecutive rows by cart id: yields (first line, [(line, row), ...]).

        Rows are cut or padded to the header's width, plus one blank cell where absent columns
        point, so that every field is read by direct indexing. A row with more cells than the
        header (see :func:`too_many_cells`) costs its cart, and so does a row the CSV reader
        cannot read (a field past its size limit) between two rows of one cart: reported and not
        yielded, never built without that row; elsewhere an unreadable row is reported alone.
        So do a quote left open and the carts whose rows it took in (:func:`swallowed_lines`).
        ``broken(cart id, line)`` hears of each group so skipped: its cart may have rows
        elsewhere in the file, which the first pass must not let go out alone (:mod:`.apart`).
        ``track``: the pass whose
        position :meth:`progress_total` reports (the carts, not the first pass's activity).
        ``begin``: the rows from that cut on only, as if the file began there after its header (the
        pieces after the first of a split by several helpers, :mod:`.pieces`); ``end``: the rows before
        that cut, and the rest too unless the reading confirms the cut and the rest is handed over.
        """
        broken = broken or _ignore_broken
        handle, reader = _open_csv(self.carts_path, self.encoding, self.delimiter, self.carts_key)
        if track:
            self._reading = handle
        with handle:
            opened = stamp(handle)
            width = self._read_header(reader)
            if width is None:
                self._empty()
                return
            if begin is not None:  # a piece after the first: the header read, on from its cut
                if identity(handle.fileno()) != begin.file:
                    raise SourceError(f"{self.carts_path}: changed while it was being split")
                handle.seek(begin.offset)
                reader = CsvRows(handle, reader.dialect.delimiter)
                reader.line_num = begin.line - 1
            else:
                for problem in absent_columns(self.carts_path, self._cols, self.column_map, self.expected,
                                              "source.columns"):
                    self.on_problem(problem)
                for problem in self._misnamed:
                    self.on_problem(problem)
            cut_at = end.line if end is not None else sys.maxsize
            padding = [""] * (width + 1)
            id_at, written = self._id_at, self._written
            group: list[tuple[int, list[str]]] = []
            group_id = None
            unread: list[RowProblem] = []  # the rows the reader could not read since the last one it did
            dropped: Collection[str] | None = None  # the carts an unreadable row was part of: their further rows are skipped
            for start, row in numbered_rows(reader, self.carts_path, self.encoding, unread.append):
                if start >= cut_at:  # the piece's end, if the cut is confirmed (see .pieces)
                    assert end is not None
                    cut_at = sys.maxsize
                    here = row[id_at].strip() if len(row) > id_at else ""
                    # A fresh reading from this row on (the next piece's) is then this one's.
                    if start == end.line and here and here != group_id and not unread \
                            and (dropped is None or here not in dropped) and identity(handle.fileno()) == end.file:
                        if group:
                            yield group[0][0], group
                        group, group_id, dropped = [], None, None
                        if end.hand_over():
                            unchanged(handle, self.carts_path, opened)
                            return
                    else:
                        end.refuse()
                cells = len(row)
                if cells < width:
                    if not any(cell.strip() for cell in row):
                        continue
                    row.extend(padding[cells:])
                elif cells == width:
                    row.append("")
                elif cells <= written:  # the header's unnamed last columns (a delimiter ending each line)
                    del row[width:]
                    row.append("")
                    cells = width
                cart_id = row[id_at].strip()
                if reader.line_num > start:  # over several lines: has a quoted cell taken rows in?
                    taken = swallowed_rows(row, reader.dialect, width)
                    if taken:
                        if group and cart_id != group_id:
                            yield group[0][0], group
                            group = []
                        # Its own cart and every cart with a line in the span, the one whose row
                        # the quote closed in too: skipped whole, here and wherever else they stand.
                        lost = {cart_id: group[0][0] if group else start}
                        for line, taken_row in swallowed_lines(row, reader.dialect, start):
                            if len(taken_row) > id_at:
                                lost.setdefault(taken_row[id_at].strip(), line)
                        lost.pop("", None)
                        for lost_id, line in lost.items():
                            broken(lost_id, line)
                        group, group_id, dropped = [], cart_id, lost.keys() or None
                        ids = ", ".join(dict.fromkeys(cells[id_at].strip() for cells in taken if len(cells) > id_at))
                        skipped = f"with cart{'s' if len(lost) > 1 else ''} {', '.join(lost)} whole, " if lost else ""
                        self.on_problem(RowProblem(
                            f"{self.carts_path}:{start}",
                            f"{f'cart {cart_id}: ' if cart_id else ''}a quoted cell runs to line {reader.line_num} "
                            f"and holds {len(taken)} row(s) of the file (cart {ids}): a quote left open? Lines "
                            f"{start}-{reader.line_num} are skipped, {skipped}"
                            "never one customer's rows in another's message"))
                        continue
                if unread:
                    if cart_id and cart_id == group_id and group:  # a row of this cart is missing
                        problem = unread.pop(0)
                        self.on_problem(RowProblem(problem.location, f"cart {cart_id}: {problem.reason} (its "
                                                   "other rows are skipped too: never half a cart)"))
                        broken(cart_id, group[0][0])
                        group, dropped = [], (cart_id,)
                    for problem in unread:
                        self.on_problem(problem)
                    unread.clear()
                if dropped is not None:
                    if cart_id in dropped:
                        continue
                    dropped = None
                if not cart_id:
                    if any(cell.strip() for cell in row):
                        # As a row the reader cannot read: between two rows of one cart, that cart
                        # is skipped whole (the row may be its own, its id lost), never half sent.
                        unread.append(RowProblem(f"{self.carts_path}:{start}", "missing cart_id"))
                    continue
                if cells != width:  # cut short, or its values under the wrong columns: its cart is not built
                    if cart_id != group_id and group:
                        yield group[0][0], group
                        group = []
                    broken(cart_id, group[0][0] if group else start)
                    group, group_id, dropped = [], cart_id, (cart_id,)
                    self.on_problem(RowProblem(f"{self.carts_path}:{start}",
                                               f"cart {cart_id}: {wrong_cells(cells, width, written)}"))
                    continue
                if cart_id != group_id and group:
                    yield group[0][0], group
                    group = []
                group_id = cart_id
                group.append((start, row))
            for problem in unread:  # the last rows
                self.on_problem(problem)
            unchanged(handle, self.carts_path, opened)  # before the last group: it may be cut
            if group:
                yield group[0][0], group
            # A header and no row: no abandoned cart right now, which a small shop's export often
            # says; a run has nothing to do and nothing to report (a job that stopped writing the
            # file is source.export_stale_after's to catch). A 0-byte file is reported, above.

    def _read_header(self, reader: CsvRows) -> int | None:
        """Read the carts file's header and set where each field is: its width (None: an empty file)."""
        header = read_header(reader, self.carts_path, self.encoding)
        if header is None:
            return None
        self._cols = _columns(self.carts_path, header, CART_FIELDS + LINE_FIELDS, self.column_map, REQUIRED_CART,
                              reader.line_num, reader=reader)
        self._misnamed = list(misnamed_columns(self.carts_path, header, self._cols, self.column_map, "source.columns",
                                               reader.line_num))
        width, self._written = named_width(header), len(header)
        # Every row is cut or padded to the header's width plus one blank cell at ``width``,
        # where absent columns point: each field is then one plain index, no checks.
        at = {name: (position if position >= 0 else width) for name, position in self._cols.index.items()}
        self._at = at
        self._cart_positions = tuple(at[name] for name in CART_FIELDS)
        self._cart_cells = stripped_cells(self._cart_positions)
        self._cart_written = tuple(index for index, position in enumerate(self._cart_positions) if position != width)
        self._line_cells = stripped_cells(tuple(at[name] for name in LINE_FIELDS))
        self._item_at = tuple(at[name] for name in ITEM_FIELDS)
        self._total_at, self._price_at = at["total"], at["unit_price"]
        self._alike_getter = itemgetter(*(at[name] for name in ALIKE_FIELDS))
        self._owner_getter = itemgetter(*(at[name] for name in OWNER_FIELDS))
        self._id_at = self._cols.index["cart_id"]
        self._limits = cart_limits(self.name)
        self._marketing_at, self._sms_at = self._cols.index["marketing_consent"], self._cols.index["sms_consent"]
        return width

    def _empty(self) -> None:
        """Not even a header (0 bytes): most likely the export job failed, which the owner should hear of."""
        self.on_problem(RowProblem(f"{self.carts_path}", "no carts in the file, not even a header (an empty "
                                   "export? check the job that writes it)"))

    def _build_cart(self, start_line: int, rows: list[tuple[int, list[str]]]) -> Cart | None:
        # Cart-level fields: the first non-blank value among the cart's rows (usually the first).
        values = self._cart_cells(rows[0][1])
        later = _NOT_LATER  # the line of each value taken from a later row, to report it where it is
        if len(rows) > 1 and "" in values:
            positions = self._cart_positions
            for index in self._cart_written:  # a column the file lacks is blank in every row
                if not values[index]:
                    position = positions[index]
                    for at, row in rows:
                        value = row[position].strip()
                        if value:
                            values[index] = value
                            later = later or {}
                            later[CART_FIELDS[index]] = at
                            break
        (cart_id, customer_text, email_text, phone, first_name, last_name, locale_text, consent_text, guest_text,
         currency_text, total_text, created_text, updated_text, recovery_url, device, store_id, sms_text,
         full_name) = values
        if full_name and not first_name:  # an export with the whole name in one cell (Shopify's Billing Name)
            first_name, rest = split_name(full_name, locale_text)
            last_name = last_name or rest
        line = start_line
        self._dotted = False
        try:
            if "\x00" in "".join(values):  # Python's csv module reads a NUL since 3.11
                refuse_nul(zip(CART_FIELDS, values))
            if len(rows) > 1:  # do its rows name one customer and currency? (most write the first's)
                getter = self._owner_getter
                owner = getter(rows[0][1])
                for _, row in rows:
                    cells = getter(row)
                    if cells != owner and cells != _NO_OWNER:  # then as a set of one tuple a row
                        written = {getter(row) for _, row in rows}
                        written.discard(_NO_OWNER)  # rows that leave them to the cart's first
                        if len(written) > 1:
                            self._one_owner(rows)
                        break
            items = []
            build_item = self._build_item
            for line, row in rows:
                item = build_item(row)
                if item is not None:
                    items.append(item)
            line = start_line
            if not created_text:
                raise RowError("created_at: missing")
            created = parse_time(created_text, "created_at", self.shop_tz)
            updated = parse_time(updated_text, "updated_at", self.shop_tz) if updated_text else created
            currency = currency_text.upper()
            if currency not in self._currencies:
                currency = parse_currency(currency_text)
                self._currencies.add(currency)
            if self._dotted or total_text[-4:-3] == ".":  # a price like 1.299 (_build_item saw it)
                thousands_dot(total_text, "total", currency)
                price_at, cost_at = self._at["unit_price"], self._at["unit_cost"]
                for line, row in rows:
                    thousands_dot(row[price_at].strip(), "unit_price", currency)
                    # a cost of 1,299 read as 1.30 made the line look all margin (high_margin)
                    thousands_dot(row[cost_at].strip(), "unit_cost", currency)
                line = start_line
            email = None
            if email_text:
                email = fold_email(email_text)
                if not is_valid_email(email):
                    raise RowError(f"email: not a valid address: {email_text!r}")
            if total_text:
                total = self._decimal(total_text, "total")
            else:  # the lines' totals, added as sum() adds them (without its generator)
                total = _ZERO
                for item in items:
                    total += item.line_total
            customer_id = customer_text or None
            guest = parse_bool(guest_text, "is_guest") if guest_text else None
            customer = _new_customer(
                email,
                customer_id,
                phone or None,
                first_name or None,
                last_name or None,
                _locale(locale_text) if locale_text else None,
                (customer_id is None) if guest is None else guest,
                parse_bool(consent_text, "marketing_consent") if consent_text else None,
                parse_bool(sms_text, "sms_consent") if sms_text else None,
            )
            limits = self._limits  # the cells first: a locale read is never longer than its cell
            if len(cart_id) > limits.cart_id or len(customer_text) > limits.customer_id \
                    or len(locale_text) > limits.locale or (email is not None and len(email) > limits.email):
                refuse_too_long(self.name, cart_id, customer)
        except RowError as exc:
            if later and line == start_line:  # a cart-level value: on the row it was taken from
                line = later.get(str(exc).partition(":")[0], line)
            self.on_problem(RowProblem(f"{self.carts_path}:{line}", f"cart {rows[0][1][self._id_at].strip()}: {exc}"))
            return None
        return _new_cart(
            cart_id,
            self.name,
            customer,
            currency,
            tuple(items),
            total,
            created,
            updated,
            recovery_url or None,
            store_id or None,
            device or None,
            f"{self._carts_at}{start_line}",
        )

    def _one_owner(self, rows: list[tuple[int, list[str]]]) -> None:
        """Raise :class:`RowError` when the rows of one cart name two addresses, customers or
        currencies: two carts under one id (an id Excel rounded, ``3.50123E+13``), which read
        as one would show one customer another's products, priced in the wrong currency.
        :meth:`_build_cart` compares the cells as written first (a set of one tuple a row, blank
        rows left out): this looks closely at a cart whose rows differ."""
        for name in OWNER_FIELDS:
            position = self._at[name]
            found = owner_conflict(name, ((line, row[position]) for line, row in rows))
            if found is not None:
                (first, at), (other, line) = found
                raise RowError(f"{name} {first!r} (line {at}) and {other!r} (line {line}) in one cart: "
                               "two carts under one id? (an id a spreadsheet rounded: 3.50123E+13)")

    def _decimal(self, text: str, what: str) -> Decimal:
        """:func:`parse_decimal` within the bounds of every amount, remembered: prices and costs
        repeat across carts (Decimals are immutable, so one instance can serve them all)."""
        number = self._decimals.get(text)
        if number is None:
            number = parse_amount(text, what)
            if len(self._decimals) >= 50_000:
                self._decimals.clear()
            self._decimals[text] = number
        return number

    def _build_item(self, row: list[str]) -> LineItem | None:
        """One line, or None for a row without any line columns (a cart with no items)."""
        sku, name, quantity_text, price_text, cost_text, stock_text, image, url = self._line_cells(row)
        if not (sku or name or quantity_text or price_text or cost_text or stock_text):
            return None
        if not sku and not name:
            raise RowError("line without sku and name")
        if "\x00" in sku or "\x00" in name:  # it went out in the message (=00), which a relay may refuse
            refuse_nul((("sku", sku), ("name", name)))
        if not quantity_text:
            raise RowError("quantity: missing")
        quantity = int(quantity_text) if quantity_text.isdecimal() and len(quantity_text) < 6 \
            else parse_int(quantity_text, "quantity")
        if quantity <= 0 or quantity > MAX_QUANTITY:
            quantity = bounded_quantity(quantity, "quantity", quantity_text)  # raises: out of bounds
        if not price_text:
            raise RowError("unit_price: missing")
        # The amounts read before (most prices and costs) taken from _decimal's memo here: a
        # method call fewer for each; compared with a Decimal 0, not the int (converted each time).
        decimals = self._decimals
        price = decimals.get(price_text)
        if price is None:
            price = self._decimal(price_text, "unit_price")
        if price < _ZERO:
            raise RowError(f"unit_price: negative: {price_text!r}")
        if price_text[-4:-3] == "." or cost_text[-4:-3] == ".":  # 1.299: its cart checks it once its currency is known
            self._dotted = True
        cost = None
        if cost_text:
            cost = decimals.get(cost_text)
            if cost is None:
                cost = self._decimal(cost_text, "unit_cost")
            if cost < _ZERO:  # would make the line look more than 100 % margin
                raise RowError(f"unit_cost: negative: {cost_text!r}")
        return _new_item(
            sku or name,
            name or sku,
            quantity,
            price,
            cost,
            _stock(stock_text) if stock_text else None,
            image or None,
            url or None,
        )

    # -- orders ------------------------------------------------------------------------------

    def orders_for(self, carts: Sequence[Cart]) -> Iterator[Order]:
        if self.orders_path is None:
            return iter(())
        if self._orders is None:
            self._orders = self._shared_index() or self._index_orders()
        return self._orders.matching(carts)

    def _shared_index(self) -> OrderIndex | None:
        """The index the run built for its workers, once it is complete, its rows' problems
        reported as :meth:`_read_orders` reports them; None: none to wait for, or the run could
        not build it, or it is no orders index (this source then indexes the file itself)."""
        from cartrescue.sources.shared import open_index

        report = self.on_problem if self._reports_shared else ignore_problem
        db = open_index(self.shared_orders, report, OrderIndex.is_one)
        return None if db is None else OrderIndex.open(db, self.shared_orders)  # type: ignore[arg-type]

    def publish_orders(self, path: Path) -> None:
        """Index the orders file into ``path`` for the workers that share it, with the problems
        its rows have (for shard 1 to report: :mod:`cartrescue.sources.shared`)."""
        index = OrderIndex.create(path)
        saved, reports = self.on_problem, self._reports_shared
        self.on_problem, self._reports_shared = index.add_problem, True
        try:
            self._index_orders(index)
        finally:
            self.on_problem, self._reports_shared = saved, reports
            index.close()

    def close(self) -> None:
        self._drop_spool()
        if self._orders is not None:
            self._orders.close()
            self._orders = None

    def _index_orders(self, index: OrderIndex | None = None) -> OrderIndex:
        """Read the orders file into ``index``, by default a new scratch index (see
        :mod:`cartrescue.sources.order_index`); on failure it is closed.

        The first row of an order id wins; later rows with that id are skipped without a word,
        even unreadable ones. Problems are therefore reported once a batch is indexed, when it
        is known whether their row was its id's first, in file order.
        """
        index = index or OrderIndex()
        try:
            self._read_orders(index)
        except UnicodeError:
            index.close()
            assert self.orders_path is not None
            raise _undecodable(self.orders_path, self.orders_encoding, ORDERS_ENCODING_SETTING) from None
        except BaseException:
            index.close()
            raise
        index.finish()
        return index

    def _read_orders(self, index: OrderIndex) -> None:
        path = self.orders_path
        assert path is not None
        handle, reader = _open_csv(path, self.orders_encoding, self.delimiter, self.orders_key, ORDERS_ENCODING_SETTING)
        batch: list[Row] = []
        pending: list[tuple[str | None, int, RowProblem]] = []  # (order id, line, problem)

        report = self.on_problem if self._reports_shared else ignore_problem  # one shard reports them

        def flush() -> None:
            index.add(batch)
            batch.clear()
            for order_id, start, problem in pending:
                if order_id is None or index.first_line(order_id) == start:
                    report(problem)
            pending.clear()

        with handle:
            opened = stamp(handle)
            header = read_header(reader, path, self.orders_encoding, ORDERS_ENCODING_SETTING)
            if header is None:
                raise empty_export(path, "remind customers of carts they bought")
            cols = _columns(path, header, RUN_ORDER_FIELDS, self.order_column_map, REQUIRED_ORDER, reader.line_num,
                            "source.order_columns", reader)
            _tied_to_carts(path, header, cols, self.order_column_map, reader.line_num)
            pending.extend((None, 0, problem) for problem in absent_columns(
                path, cols, self.order_column_map, self.expected_orders, "source.order_columns"))
            pending.extend((None, 0, problem) for problem in misnamed_columns(
                path, header, cols, self.order_column_map, "source.order_columns", reader.line_num))
            width, written = named_width(header), len(header)
            padding = [""] * (width + 1)
            # As for carts: rows cut or padded to the header plus one blank cell for absent columns.
            fields = itemgetter(*(position if position >= 0 else width for position in
                                  (cols.index[name] for name in ORDER_FIELDS)))
            refunded_at = cols.index["refunded"]  # -1: no such column (read only where it is)
            id_at = cols.index["order_id"]
            ids_at = tuple(position if position >= 0 else width for position in
                           (cols.index[name] for name in ("order_id", "email", "customer_id", "cart_id")))

            def unreadable(problem: RowProblem) -> None:  # a row the CSV reader cannot read: no id known
                pending.append((None, 0, problem))

            for start, row in numbered_rows(reader, path, self.orders_encoding, unreadable, ORDERS_ENCODING_SETTING):
                cells = len(row)
                if reader.line_num > start and (quote := open_quote_orders(row, reader, start, width, ids_at)):
                    # A quote left open took the next orders in: none of them can be read, and each
                    # one's customer waits (unreadable), never reminded of a cart they bought. Each
                    # is where its own row starts (swallowed_lines), as a cart the quote took is.
                    batch.extend(_unreadable_order(order_id or _no_order_id(line), line, email_text, customer_id,
                                                   cart_id)
                                 for line, order_id, email_text, customer_id, cart_id in quote.orders)
                    pending.append((None, start, RowProblem(
                        f"{path}:{start}", f"{quote.reason} Those orders' customers' carts wait until it is fixed")))
                    continue
                if cells <= id_at or not row[id_at].strip():
                    if any(cell.strip() for cell in row):
                        pending.append((None, start, RowProblem(f"{path}:{start}", "missing order_id")))
                        # An order all the same, perhaps this very cart's: its customer's carts wait.
                        if cells > written:  # its cells may have slid: only an address found in it is trusted
                            address = next((cell.strip() for cell in row if "@" in cell), "")
                            batch.append(_unreadable_order(_no_order_id(start), start, address, "", ""))
                        else:
                            _, email_text, customer_id, cart_id = (
                                (row + padding[cells:])[i].strip() for i in ids_at)
                            batch.append(_unreadable_order(_no_order_id(start), start, email_text, customer_id,
                                                           cart_id))
                    continue
                if cells < width:
                    row.extend(padding[cells:])
                else:
                    del row[width:]
                    row.append("")
                    if cells > written:
                        order_id = row[id_at].strip()
                        reason = f"order {order_id}: {too_many_cells(cells, written)}"
                        pending.append((order_id, start, RowProblem(f"{path}:{start}", reason)))
                        # Its cells may have slid: only an address found in it is trusted.
                        address = next((cell.strip() for cell in row if "@" in cell), "")
                        batch.append(_unreadable_order(order_id, start, address, "", ""))
                        continue
                (order_id, email_text, customer_id, cart_id, total_text, currency, status_text, created_text,
                 delivered_text, cancelled_text) = map(str.strip, fields(row))
                if cells < width:  # cut short: the ids it has are read, the rest cannot be trusted
                    pending.append((order_id, start, RowProblem(f"{path}:{start}",
                                                                f"order {order_id}: {too_few_cells(cells, width)}")))
                    batch.append(_unreadable_order(order_id, start, email_text, customer_id, cart_id))
                    continue
                if cancelled_text:  # a cancelled order (Shopify's status may still say "paid"): not an order
                    batch.append((order_id, start, 0, None, None, None, None, None, None, None, None, None))
                    continue
                try:
                    email = fold_email(email_text) or None  # normalize_email() of a stripped value
                    created, _ = parse_order_time(created_text, "created_at", self.shop_tz)
                    total = self._decimal(total_text, "total") if total_text else _ZERO
                    status = status_text.lower()
                    delivered = parse_delivered(delivered_text)
                except RowError as exc:
                    pending.append((order_id, start, RowProblem(f"{path}:{start}", f"order {order_id}: {exc}")))
                    # Its ids are read: its customer's carts wait until the row can be read.
                    batch.append(_unreadable_order(order_id, start, email_text, customer_id, cart_id))
                    continue
                # A negative total: a refund, not a purchase. A status of refunded is still the
                # purchase of its cart (README, ``ordered``), which awaits no delivery; the report's
                # rows (:meth:`orders`) are no sale.
                if status in RUN_IGNORED_ORDER_STATUSES or total < 0:
                    batch.append((order_id, start, 0, None, None, None, None, None, None, None, None, None))
                else:
                    refunded_text = row[refunded_at].strip() if refunded_at >= 0 else ""
                    refunded = self._run_refund(refunded_text, order_id, start, pending) if refunded_text else None
                    batch.append((order_id, start, 1, utc_text(created_text, created), email, customer_id or None,
                                  cart_id or None,
                                  str(total), currency.upper() or None, status,
                                  None if delivered is None else int(delivered),
                                  None if not refunded else str(refunded)))
                if len(batch) >= ORDER_BATCH:
                    flush()
            unchanged(handle, path, opened)
            flush()

    def _run_refund(self, text: str, order_id: str, line: int,
                    pending: list[tuple[str | None, int, RowProblem]]) -> Decimal | None:
        """What a run reads of an order's ``refunded`` cell; one it cannot read is reported and
        taken as none (the order counts as before the column was read: it may still hold back
        its customer's reminders), never a reason to make the whole order unreadable."""
        try:
            return refund_amount(self._decimal(text, "refunded"))
        except RowError as exc:
            pending.append((order_id, line, RowProblem(f"{self.orders_path}:{line}", f"order {order_id}: {exc}")))
            return None

    # -- orders by time (report) -------------------------------------------------------------

    def orders(self, window: Window, wanted: OrderFilter | None = None) -> Iterator[Order]:
        """Every readable order placed in ``window``, in file order, streamed (for ``report``).

        Consecutive rows with one order id (Shopify writes one row per line item, totals on the
        first) give one order, from the first row. An id repeated further down comes again: the
        report keeps the first. Ignored statuses are left out, and so is every later row of
        their ids; unreadable rows are reported.
        Reads the optional ``discount_code`` column (Shopify's "Discount Code") and ``refunded``
        (Shopify's "Refunded Amount"): revenue is the total less it, and an order refunded in
        full is no order, as one with a negative total.
        """
        path = self.orders_path
        if path is None:
            return
        handle, reader = _open_csv(path, self.orders_encoding, self.delimiter, self.orders_key, ORDERS_ENCODING_SETTING)
        with handle:
            opened = stamp(handle)
            header = read_header(reader, path, self.orders_encoding, ORDERS_ENCODING_SETTING)
            if header is None:
                raise empty_export(path, "count none of the orders placed after a reminder")
            names = ORDER_FIELDS + REPORT_ORDER_FIELDS
            cols = _columns(path, header, names, self.order_column_map, REQUIRED_ORDER, reader.line_num,
                            "source.order_columns", reader)
            _tied_to_carts(path, header, cols, self.order_column_map, reader.line_num)
            for problem in misnamed_columns(path, header, cols, self.order_column_map, "source.order_columns",
                                            reader.line_num):
                self.on_problem(problem)
            width, written = named_width(header), len(header)
            padding = [""] * (width + 1)
            fields = itemgetter(*(cols.index[name] if cols.index[name] >= 0 else width for name in names))
            id_at = cols.index["order_id"]
            cart_at, email_at, customer_at, status_at, cancelled_at = (
                cols.index[name] if cols.index[name] >= 0 else width
                for name in ("cart_id", "email", "customer_id", "status", "cancelled_at"))
            ids_at = (id_at, email_at, customer_at, cart_at)
            previous = None
            # The ids whose first row is no order (refunded, cancelled): a later row of one (an
            # export that appends a row per change) is no order either. The first row wins, as
            # in a run (OrderIndex); only these ids are kept, a few in a hundred orders.
            not_orders: set[str] = set()
            for start, row in numbered_rows(reader, path, self.orders_encoding, self.on_problem,
                                            ORDERS_ENCODING_SETTING):
                cells = len(row)
                if reader.line_num > start and (quote := open_quote_orders(row, reader, start, width, ids_at)):
                    # A quote left open took orders in: none of them can be read, so none counts
                    # (nor a later row of one), and the report says so instead of showing less.
                    not_orders.update(order[1] for order in quote.orders if order[1])
                    self.on_problem(RowProblem(f"{path}:{start}", f"{quote.reason} Those orders are not counted: "
                                               "the revenue shown may be short until it is fixed"))
                    continue
                if cells <= width:
                    row.extend(padding[cells:])
                else:
                    del row[width:]
                    row.append("")
                order_id = row[id_at].strip()
                if not order_id or order_id == previous:
                    if not order_id and any(cell.strip() for cell in row):
                        self.on_problem(RowProblem(f"{path}:{start}", "missing order_id"))
                    continue
                previous = order_id
                if cells != width and not width < cells <= written:  # not even under the unnamed last columns
                    self.on_problem(RowProblem(f"{path}:{start}",
                                               f"order {order_id}: {wrong_cells(cells, width, written)}"))
                    continue
                if order_id in not_orders:
                    continue
                if row[cancelled_at].strip() or row[status_at].strip().lower() in IGNORED_ORDER_STATUSES:
                    not_orders.add(order_id)
                    continue
                if wanted is not None and not wanted(row[cart_at].strip() or None, fold_email(row[email_at].strip()) or None,
                                                     row[customer_at].strip() or None):
                    continue  # cannot match what the caller looks for: not even parsed
                (_id, email, customer_id, cart_id, total_text, currency, status, created_text, delivered_text,
                 cancelled, code, refunded_text) = map(str.strip, fields(row))
                email = fold_email(email)
                status = status.lower()
                try:
                    created, day_start = parse_order_time(created_text, "created_at", self.shop_tz)
                    if not window.overlaps(day_start or created, created):
                        continue
                    if currency:  # 1.299 EUR is a sale of 1,299 far more often than of 1.30 (thousands_dot)
                        thousands_dot(total_text, "total", currency.upper())
                        thousands_dot(refunded_text, "refunded", currency.upper())
                    total = self._decimal(total_text, "total") if total_text else _ZERO
                    refunded = refund_amount(self._decimal(refunded_text, "refunded")) if refunded_text else _ZERO
                    delivered = parse_delivered(delivered_text)
                except RowError as exc:
                    self.on_problem(RowProblem(f"{path}:{start}", f"order {order_id}: {exc}"))
                    continue
                if total < 0 or refunded_whole(total, refunded):  # a credit note, or all given back: no sale
                    not_orders.add(order_id)
                    continue
                yield Order(order_id, created, email or None, customer_id or None, cart_id or None, total,
                            currency.upper() or None, status, delivered, discount_code=code or None,
                            day_start=day_start, refunded=refunded)
            unchanged(handle, path, opened)
