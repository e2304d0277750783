"""A quote left open in a CSV export: the rows of the file a quoted cell took in.

Owns finding, in a row that spans lines, the other rows of the file inside its cells
(``"12 inch pan,1,10`` opens a cell that runs to the next quote, other customers' rows and all),
with the line each stands on, and the orders such a span took in. Apart from :mod:`.csv` and
:mod:`.csvorders`, since the carts pass and both orders readers must see one span alike.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from cartrescue.sources.csvlines import CsvRows

if TYPE_CHECKING:
    from _csv import Dialect as CsvDialect

_LINE_BREAK = re.compile(r"\r\n|\r|\n")


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
