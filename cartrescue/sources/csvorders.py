"""A CSV source's orders: the run's scratch index of them, and the report's stream of them.

Owns reading the orders export (``source.orders``, its columns mapped by
``source.order_columns``): for a run, into a scratch index on disk
(:mod:`cartrescue.sources.order_index`), the first row of an order id winning and an order that
cannot be read still holding back its customer's carts; for ``report``, as a stream of the
orders placed in a window. Apart from :mod:`.csv`, which builds the carts: the two halves of
:class:`~cartrescue.sources.csv.CsvSource` share nothing but its settings and its memo of amounts,
and the orders half is this class, which ``CsvSource`` inherits.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from decimal import Decimal
from operator import itemgetter
from pathlib import Path
from typing import TYPE_CHECKING

from cartrescue.contacts import fold_email, normalize_phone
from cartrescue.model import UNREADABLE, Cart, Order, RowProblem
from cartrescue.sources.base import CartSource, OrderFilter, Window, ignore_problem, reads_phones
from cartrescue.sources.csvfile import (
    ORDERS_ENCODING_SETTING,
    open_csv,
    undecodable,
    empty_export,
    numbered_rows,
    stamp,
    unchanged,
)
from cartrescue.sources.csvheader import (
    header_columns,
    tied_to_carts,
    absent_columns,
    misnamed_columns,
    named_width,
    read_header,
    too_few_cells,
    too_many_cells,
    wrong_cells,
)
from cartrescue.sources.csvquote import open_quote_orders
from cartrescue.sources.order_index import OrderIndex, Row
from cartrescue.sources.values import (
    IGNORED_ORDER_STATUSES,
    RUN_IGNORED_ORDER_STATUSES,
    RowError,
    order_status,
    parse_delivered,
    parse_order_time,
    refund_amount,
    refunded_whole,
    thousands_dot,
    utc_text,
)

if TYPE_CHECKING:
    from zoneinfo import ZoneInfo


ORDER_FIELDS = (
    "order_id", "email", "customer_id", "cart_id", "total", "currency", "status", "created_at", "delivered",
    "cancelled_at", "phone",
)
#: Order columns the report reads beyond ORDER_FIELDS (:meth:`CsvSource.orders`).
REPORT_ORDER_FIELDS = ("discount_code", "refunded")
#: What a run's order reader reads: ``refunded`` too, since an order refunded in full (its status
#: still "paid") awaits no delivery and must not hold back reminders (``Order.awaits_delivery``).
RUN_ORDER_FIELDS = (*ORDER_FIELDS, "refunded")
REQUIRED_ORDER = ("order_id", "created_at")
_ZERO = Decimal("0")
ORDER_BATCH = 5000  # order rows indexed per batch (OrderIndex.add)


def _unreadable_order(order_id: str, line: int, email: str, customer_id: str, cart_id: str,
                      phone: str | None = None) -> Row:
    """An orders index row for an order row found but not read, with the ids it gives (stripped
    cells, blank: none; ``phone`` in E.164): it may be the order of the very cart a reminder
    would be about, so the carts of its customer wait (``unreadable_order``) until the row can be read."""
    return (order_id, line, 2, None, fold_email(email) or None, customer_id or None, cart_id or None, None, None,
            UNREADABLE, None, None, phone)


def _not_an_order(order_id: str, line: int) -> Row:
    """An orders index row of an order id that is no order (an ignored status, cancelled): kept
    only so that its id counts as seen."""
    return (order_id, line, 0, None, None, None, None, None, None, None, None, None, None)


def _no_order_id(line: int) -> str:
    """The key of an order row without an order id in the orders index: one of its own (no real
    id is written so), as every row is kept under its id."""
    return f"(no order_id, line {line})"


class CsvOrders(CartSource):
    """The orders of :class:`~cartrescue.sources.csv.CsvSource`, which inherits them: what it
    reads of ``source.orders``, for a run (:meth:`orders_for`) and for the report (:meth:`orders`)."""

    if TYPE_CHECKING:  # CsvSource's, set in its __init__
        orders_path: Path | None
        orders_encoding: str
        orders_key: str
        order_column_map: dict[str, str]
        expected_orders: Sequence[str]
        region: str | None
        delimiter: str | None
        shop_tz: ZoneInfo
        shared_orders: Path | None
        _orders: OrderIndex | None
        _reports_shared: bool

        def _decimal(self, text: str, what: str) -> Decimal: ...

    _codes_read = False  # whether the orders file read by orders() has a discount_code column

    def orders_carry_codes(self) -> bool:
        """Whether the orders file has a ``discount_code`` column (Shopify's "Discount Code"): an
        order with a blank one used none. Without the column the report assumes an incentive used."""
        return self._codes_read

    # -- orders ------------------------------------------------------------------------------

    def orders_for(self, carts: Sequence[Cart]) -> Iterator[Order]:
        if self.orders_path is None:
            return iter(())
        if self._orders is None:
            self._orders = self._shared_index() or self._index_orders()
        return self._orders.matching(carts, self.region)

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
            raise undecodable(self.orders_path, self.orders_encoding, ORDERS_ENCODING_SETTING) from None
        except BaseException:
            index.close()
            raise
        index.finish()
        return index

    def _read_orders(self, index: OrderIndex) -> None:
        path = self.orders_path
        assert path is not None
        handle, reader = open_csv(path, self.orders_encoding, self.delimiter, self.orders_key, ORDERS_ENCODING_SETTING)
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
                raise empty_export(path, "remind customers of carts they bought", self.orders_key)
            cols = header_columns(path, header, RUN_ORDER_FIELDS, self.order_column_map, REQUIRED_ORDER, reader.line_num,
                            "source.order_columns", reader)
            tied_to_carts(path, header, cols, self.order_column_map, reader.line_num)
            pending.extend((None, 0, problem) for problem in absent_columns(
                path, cols, self.order_column_map, self.expected_orders, "source.order_columns", reader.line_num))
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
                 delivered_text, cancelled_text, phone_text) = map(str.strip, fields(row))
                # In E.164, read in the shop's region as a cart's number is: one that is none keys nothing.
                phone = normalize_phone(phone_text, self.region) if phone_text else None
                if cells < width:  # cut short: the ids it has are read, the rest cannot be trusted
                    pending.append((order_id, start, RowProblem(f"{path}:{start}",
                                                                f"order {order_id}: {too_few_cells(cells, width)}")))
                    batch.append(_unreadable_order(order_id, start, email_text, customer_id, cart_id, phone))
                    continue
                if cancelled_text:  # a cancelled order (Shopify's status may still say "paid"): not an order
                    batch.append(_not_an_order(order_id, start))
                    continue
                try:
                    email = fold_email(email_text) or None  # normalize_email() of a stripped value
                    created, _ = parse_order_time(created_text, "created_at", self.shop_tz)
                    total = self._decimal(total_text, "total") if total_text else _ZERO
                    status = order_status(status_text)
                    delivered = parse_delivered(delivered_text)
                except RowError as exc:
                    pending.append((order_id, start, RowProblem(f"{path}:{start}", f"order {order_id}: {exc}")))
                    # Its ids are read: its customer's carts wait until the row can be read.
                    batch.append(_unreadable_order(order_id, start, email_text, customer_id, cart_id, phone))
                    continue
                # A negative total: a refund, not a purchase. A status of refunded is still the
                # purchase of its cart (README, ``ordered``), which awaits no delivery; the report's
                # rows (:meth:`orders`) are no sale.
                if status in RUN_IGNORED_ORDER_STATUSES or total < 0:
                    batch.append(_not_an_order(order_id, start))
                else:
                    refunded_text = row[refunded_at].strip() if refunded_at >= 0 else ""
                    refunded = self._run_refund(refunded_text, order_id, start, pending) if refunded_text else None
                    batch.append((order_id, start, 1, utc_text(created_text, created), email, customer_id or None,
                                  cart_id or None,
                                  str(total), currency.upper() or None, status,
                                  None if delivered is None else int(delivered),
                                  None if not refunded else str(refunded), phone))
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
        handle, reader = open_csv(path, self.orders_encoding, self.delimiter, self.orders_key, ORDERS_ENCODING_SETTING)
        with handle:
            opened = stamp(handle)
            header = read_header(reader, path, self.orders_encoding, ORDERS_ENCODING_SETTING)
            if header is None:
                raise empty_export(path, "count none of the orders placed after a reminder", self.orders_key)
            names = ORDER_FIELDS + REPORT_ORDER_FIELDS
            cols = header_columns(path, header, names, self.order_column_map, REQUIRED_ORDER, reader.line_num,
                            "source.order_columns", reader)
            self._codes_read = cols.index["discount_code"] >= 0  # a blank cell then is no code used
            tied_to_carts(path, header, cols, self.order_column_map, reader.line_num)
            for problem in misnamed_columns(path, header, cols, self.order_column_map, "source.order_columns",
                                            reader.line_num):
                self.on_problem(problem)
            width, written = named_width(header), len(header)
            padding = [""] * (width + 1)
            fields = itemgetter(*(cols.index[name] if cols.index[name] >= 0 else width for name in names))
            id_at = cols.index["order_id"]
            cart_at, email_at, customer_at, status_at, cancelled_at, phone_at = (
                cols.index[name] if cols.index[name] >= 0 else width
                for name in ("cart_id", "email", "customer_id", "status", "cancelled_at", "phone"))
            phones = reads_phones(wanted)
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
                if row[cancelled_at].strip() or order_status(row[status_at]) in IGNORED_ORDER_STATUSES:
                    not_orders.add(order_id)
                    continue
                if wanted is not None and not wanted(row[cart_at].strip() or None, fold_email(row[email_at].strip()) or None,
                                                     row[customer_at].strip() or None, row[phone_at]):
                    continue  # cannot match what the caller looks for: not even parsed
                (_id, email, customer_id, cart_id, total_text, currency, status, created_text, delivered_text,
                 cancelled, phone, code, refunded_text) = map(str.strip, fields(row))
                email = fold_email(email)
                status = order_status(status)
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
                            currency.upper() or None, status, delivered, discount_codes=(code,) if code else (),
                            day_start=day_start, refunded=refunded,
                            phone=normalize_phone(phone, self.region) if phone and phones else None)
            unchanged(handle, path, opened)
