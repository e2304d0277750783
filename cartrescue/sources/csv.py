"""CSV source: the generic line-item format (docs/csv-format.md) and mapped exports.

Owns :class:`CsvSource`, reading carts from a CSV file: a cart's rows grouped, its fields read
where the header puts them, a cart in pieces or listed twice, the split of the file for
``run --workers`` and reporting bad rows as ``file:line: reason``. It streams: carts are built
one at a time from consecutive rows and never collected. Its parts of one job each live beside
it: opening the file (encoding, byte-order mark, delimiter: :mod:`.csvfile`), its header and
what is wrong with it (:mod:`.csvheader`), a quote left open (:mod:`.csvquote`), the values of
its cells (decimal commas, times with offsets, yes/no: :mod:`.values`) and its orders
(:mod:`.csvorders`, read on first use into a scratch index on disk,
:mod:`cartrescue.sources.order_index`, so memory does not grow with the orders file either).
The names other modules import from here are kept here (re-exported).
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Collection, Iterator, Sequence
from decimal import Decimal
from functools import lru_cache
from operator import itemgetter
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO
from zoneinfo import ZoneInfo

from cartrescue.contacts import fold_email, is_valid_email
from cartrescue.errors import SourceError
from cartrescue.model import Cart, Customer, LineItem, RowProblem, quick_new
from cartrescue.shards import shard_key, shard_of
from cartrescue.sources.apart import Apart, ApartIds
from cartrescue.sources.base import Activity, CartSource, ProblemSink, ProgressTotal, Window, ignore_problem
from cartrescue.sources.csvfile import (  # noqa: F401 - re-exported: csv.X as before the split
    ENCODING_SETTING,
    ORDERS_ENCODING_SETTING,
    open_csv,
    empty_export,
    numbered_rows,
    stamp,
    unchanged,
)
from cartrescue.sources.csvheader import (  # noqa: F401 - re-exported: csv.X as before the split
    header_columns,
    absent_columns,
    misnamed_columns,
    named_width,
    read_header,
    wrong_cells,
)
from cartrescue.sources.csvlines import CsvRows
from cartrescue.sources.csvorders import (  # noqa: F401 - re-exported: csv.X as before the split
    ORDER_BATCH,
    ORDER_FIELDS,
    REPORT_ORDER_FIELDS,
    CsvOrders,
)
from cartrescue.sources.csvquote import swallowed_lines, swallowed_rows
from cartrescue.sources.order_index import OrderIndex
from cartrescue.sources.pieces import PIECE_FROM, Cut, Pieces, counted, find_cuts, identity
from cartrescue.sources.spool import RowSpool
from cartrescue.sources.values import (  # noqa: F401 - re-exported: csv.X as before the split
    FALSE_WORDS,
    MAX_QUANTITY,
    OWNER_FIELDS,
    RowError,
    bounded_quantity,
    cart_limits,
    normalize_locale,
    owner_conflict,
    parse_amount,
    parse_bool,
    parse_currency,
    parse_decimal,
    parse_delivered,
    parse_int,
    parse_order_time,
    parse_time,
    refuse_nul,
    refuse_too_long,
    split_name,
    thousands_dot,
    utc_text,
)

if TYPE_CHECKING:
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
#: No cart-level value taken from a later row of its cart (the common case; never written to).
_NOT_LATER: dict[str, int] = {}


_NO_OWNER = ("",) * len(OWNER_FIELDS)  # a row that leaves them to the cart's first
REQUIRED_CART = ("cart_id", "currency", "created_at", "sku", "name", "quantity", "unit_price")

_NO_REFUSALS = (False, False)  # a cart that said no consent away (CsvSource._refusals)
_ZERO = Decimal("0")
#: ``LineItem(...)``, ``Customer(...)``, ``Cart(...)`` for ~2,000 instructions less each: three a
#: cart and one a line, the most objects the carts pass builds (:func:`~cartrescue.model.quick_new`).
_new_item, _new_customer, _new_cart = quick_new(LineItem), quick_new(Customer), quick_new(Cart)
_new_activity = quick_new(Activity)  # one a cart of the first pass


def _stock(text: str) -> int:
    """A stock cell: a whole number whose size is below the bound of any stock. ``isdecimal()``,
    not ``isdigit()``: that one takes ``²``, which ``int()`` refuses (the run stopped, exit 70)."""
    return int(text) if text.isdecimal() and len(text) < 12 else parse_int(text, "stock_on_hand")


def _said_no(rows: list[tuple[int, list[str]]], at: int) -> bool:
    """Whether the first consent cell written at ``at`` among a group's rows says no (read only
    where written; a cell that is no yes/no word is no "no": the carts pass reports it)."""
    for _, row in rows:
        word = row[at].strip()
        if word:
            return word.lower() in FALSE_WORDS
    return False


@lru_cache(maxsize=256)
def _locale(text: str) -> str | None:
    """:func:`normalize_locale`, remembered: a shop has a handful of locales."""
    return normalize_locale(text)


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


class CsvSource(CsvOrders, CartSource):
    """Carts (and optionally orders) from CSV files in the generic format or a mapped export.
    The orders are :class:`~cartrescue.sources.csvorders.CsvOrders`' (inherited)."""

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
        rows): the customer's latest word withdraws an older cart's yes (:mod:`cartrescue.decide.newest`).
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

        handle, reader = open_csv(self.carts_path, self.encoding, self.delimiter, self.carts_key)
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
            handle, reader = open_csv(self.carts_path, self.encoding, self.delimiter, self.carts_key)
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
        handle, reader = open_csv(self.carts_path, self.encoding, self.delimiter, self.carts_key)
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
                for problem in self._absent:
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
        self._cols = header_columns(self.carts_path, header, CART_FIELDS + LINE_FIELDS, self.column_map, REQUIRED_CART,
                              reader.line_num, reader=reader)
        self._absent = list(absent_columns(self.carts_path, self._cols, self.column_map, self.expected,
                                           "source.columns", reader.line_num))
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

    def close(self) -> None:
        self._drop_spool()
        if self._orders is not None:
            self._orders.close()
            self._orders = None
