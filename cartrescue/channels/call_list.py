"""Call-list channel: the most expensive channel, a person phoning the customer.

Owns appending one row per cart to a CSV that shop staff work through (who, how to reach them,
what is in the cart, why they are on the list), and taking out the rows of people who opted out
since or are erased (:func:`suppressed_rows`, :func:`rows_of`). It renders no message. The file is the shop's,
re-saved by a spreadsheet: rows are written the way its header line was (:class:`Layout`).
"""

from __future__ import annotations

import csv
import io
import os
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone, tzinfo
from pathlib import Path
from typing import IO, Any
from zoneinfo import ZoneInfo

from cartrescue import private
from cartrescue.channels.base import Channel, Envelope, Outcome, Status
from cartrescue.model import Decision, score_text
from cartrescue.text import path_text, printable, spreadsheet_text, spreadsheet_value

COLUMNS = ("cart_id", "first_name", "last_name", "phone", "email", "locale", "currency", "total",
           "items", "score", "tier", "previous_orders", "recovery_url", "last_activity", "step", "added_at",
           "incentive", "timezone")


def cell(value: object) -> str:
    """A CSV cell that a spreadsheet shows as text, never runs as a formula.

    Staff open this file in Excel or LibreOffice; a name like ``=HYPERLINK(...)`` or ``+1-2``
    from cart data would be evaluated there (CSV/formula injection, OWASP). Such a cell gets a
    leading apostrophe, which spreadsheets hide and treat as "this is text". A line break in
    cart data (a product name exported on two lines) is a space: removed, it joined two words.
    """
    text = printable(value, keep_newlines=True)
    if "\n" in text:
        text = " ".join(text.split())
    return spreadsheet_text(text)


BOM = b"\xef\xbb\xbf"  # Excel's "CSV UTF-8" begins the file with it
DELIMITERS = (",", ";", "\t")  # Excel writes ";" where the comma is the decimal sign (SE, DE, FR)
#: The columns of decimal numbers: in a ";" list, written with the decimal comma of its locale
#: (``900,00``), which its spreadsheet reads as the number (``900.00`` is text there, and German
#: Excel took ``12.50`` for a date).
DECIMALS = ("total", "score")


#: What a call cannot go without: the number to dial and the cart it is about. A header without
#: one (another file, a column staff deleted or renamed) takes no row: each would be a call
#: nobody can make, recorded sent. The other columns may be left out (a list begun by an older
#: version has no ``step``, ``added_at``) or put in any order.
NEEDED = ("cart_id", "phone")
#: The header a run writes, as a problem with a list's header names it.
EXPECTED = (f"a call list's header names {' and '.join(NEEDED)}, in any order, separated by , ; or tab "
            f"(cartrescue begins one with {','.join(COLUMNS)})")


class UnusableList(Exception):
    """The list's header cannot be written under (rows staff could not read); names the file."""


@dataclass(frozen=True, slots=True)
class Layout:
    """How a list is written, read from its header line, so that appended rows read as its own."""

    header: tuple[str, ...] = COLUMNS
    delimiter: str = ","
    newline: str = "\r\n"
    bom: bool = False

    def writer(self, out: IO[str]) -> Any:
        return csv.writer(out, delimiter=self.delimiter, lineterminator=self.newline)


def layout_of(path: Path, first: bytes) -> Layout:
    """The layout of the list at ``path`` from its first line ``first`` (raises UnusableList).

    The delimiter is the one under which the header names the most of :data:`COLUMNS`: a
    header naming none of them (another file, a delimiter not in :data:`DELIMITERS`) would get
    rows whose cells stand under no column, and which nobody calls.
    """
    bom = first.startswith(BOM)
    try:
        text = first.removeprefix(BOM).decode("utf-8")
    except UnicodeDecodeError:
        raise UnusableList(f"{path}: its header is not UTF-8 text; save it as CSV UTF-8") from None
    line, *ending = re.split(r"(\r\n|\n|\r)", text, maxsplit=1)
    known = set(COLUMNS)
    header, delimiter = max(((_fields(line, delimiter), delimiter) for delimiter in DELIMITERS),
                            key=lambda found: (len(known.intersection(map(column_of, found[0]))),
                                               line.count(found[1])))
    if not known.intersection(map(column_of, header)):
        raise UnusableList(f"{path}: no row added, its header names no call-list column: {printable(line[:80])!r}; "
                           f"{EXPECTED}")  # the run's summary cuts a failure at 160: the header first
    return Layout(tuple(header), delimiter, ending[0] if ending else "\r\n", bom)


def writable_layout(path: Path, first: bytes) -> Layout:
    """:func:`layout_of`, and :class:`UnusableList` when the header lacks a column of
    :data:`NEEDED` (reading the list, as ``forget --files`` does, needs none of them)."""
    layout = layout_of(path, first)
    missing = [name for name in NEEDED if name not in map(column_of, layout.header)]
    if missing:
        line = layout.delimiter.join(layout.header)
        raise UnusableList(f"{path}: no row added, its header lacks {' and '.join(missing)}: "
                           f"{printable(line[:80])!r}; {EXPECTED}")
    return layout


def column_of(name: str) -> str:
    """The call-list column a header cell names, as a person reads it: ``cart_id, phone`` and
    ``Phone`` name ``phone`` (before, such a list got rows with every cell but the first
    empty, no number to call, recorded sent)."""
    return name.strip().lower()


def _fields(line: str, delimiter: str) -> list[str]:
    try:
        return next(csv.reader([line], delimiter=delimiter), [])
    except csv.Error:  # a quote it cannot parse with this delimiter
        return []


class CallListChannel(Channel):
    transport = "call-list"
    take_size = 50
    whole_batch = True  # one append writes every row of the batch

    def __init__(self, path: Path, tz: tzinfo = timezone.utc, region: str | None = None,
                 shop_url: str | None = None, clock: Callable[[], datetime] | None = None) -> None:
        self.path = path
        # A row's added_at: the time its claim was stamped with (the run's RunClock.now: the
        # pinned instant under --now or now:, as in the ledger), else the real time.
        self.clock = clock
        self.tz = tz  # the shop's: staff read the times as the shop's clock shows them
        self.region = region  # the shop's country: numbers are written as staff dial them from there
        self.shop_url = shop_url  # the link of a cart without its own, as its message has it

    def deliver(self, batch: Sequence[Envelope]) -> Iterator[Outcome]:
        where = path_text(self.path)
        try:
            append_rows(self.path, [envelope.decision for envelope in batch], self.tz,
                        None if self.clock is None else self.clock(), region=self.region,
                        shop_url=self.shop_url, offers=[(envelope.data or b"").decode("utf-8") for envelope in batch])
        except (OSError, UnusableList) as exc:  # transient: the next run retries once the file is fixed
            reason = str(exc) if isinstance(exc, UnusableList) else f"cannot write {where}: {exc.strerror or exc}"
            for envelope in batch:
                yield Outcome(envelope.claim_id, Status.TRANSIENT, reason)
            return
        for envelope in batch:
            yield Outcome(envelope.claim_id, Status.SENT, where)


def append_rows(path: Path, decisions: Iterable[Decision], tz: tzinfo, now: datetime | None = None, *,
                like: Path | None = None, region: str | None = None, offers: Sequence[str] = (),
                shop_url: str | None = None) -> None:
    """Append one row per decision to the list at ``path`` (raises OSError, UnusableList).

    The rows are written as the list's header line was: under its columns (a list begun by an
    older version keeps its own), with its delimiter and line ending, after the BOM that
    Excel's "CSV UTF-8" writes, and on a line of their own where the file does not end with
    one (a Google Sheets export). ``like``: the list whose layout a new ``path`` takes (``run
    --eml`` shows the rows as the shop's list would get them). ``region``: the shop's country,
    whence staff dial (:func:`~cartrescue.contacts.dialable`). The workers of ``run
    --workers`` append to one list: each holds the file's lock while it writes, so no two write
    the header and no row is cut by another's; the rows go in one write, after the header was
    checked, so a list that cannot take them gets none. ``offers``: each decision's incentive
    as staff offer it (its ``incentive`` cell), in the order of ``decisions``. ``shop_url``: the
    ``recovery_url`` of a cart without one (:func:`recovery_link`).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    instant = now or datetime.now(timezone.utc)
    added = instant.astimezone(tz).isoformat(timespec="seconds")
    fresh = layout_like(like)
    text = io.StringIO()
    with _locked(path) as handle:
        handle.seek(0)
        first = handle.readline()
        end = handle.seek(0, io.SEEK_END)
        if first.removeprefix(BOM).strip():
            layout = writable_layout(path, first)
            handle.seek(end - 1)
            if handle.read(1) not in (b"\n", b"\r"):
                text.write(layout.newline)
        else:  # a new list (or one holding only a BOM, or an emptied one saved with a blank line)
            layout = fresh
            if end > len(BOM) or (end and not first.startswith(BOM)):
                handle.seek(end - 1)
                if handle.read(1) not in (b"\n", b"\r"):
                    text.write(layout.newline)
            if layout.bom and not end:
                text.write(BOM.decode("utf-8"))
            layout.writer(text).writerow(layout.header)
        writer = layout.writer(text)
        for at, decision in enumerate(decisions):
            offer = offers[at] if at < len(offers) else ""
            writer.writerow([value for _name, value in row(decision, layout, tz, instant, added=added, region=region,
                                                         offer=offer, shop_url=shop_url)])
        handle.write(text.getvalue().encode("utf-8"))
        handle.flush()  # before the lock goes with the file's closing


def list_problem(path: Path) -> str | None:
    """Why the list at ``path`` takes no row (the text :func:`append_rows` fails its calls
    with), or None; a missing or empty list is fine (the first call begins it). ``doctor``
    checks it and a run notes it: a run keeps sending its e-mails and fails each call claim on
    such a list as transient, run after run, so a person must hear of it."""
    try:
        with path.open("rb") as handle:
            first = handle.readline()
    except FileNotFoundError:
        return None
    except OSError as exc:
        return f"{path}: cannot read: {exc.strerror or exc}"
    if not first.removeprefix(BOM).strip():
        return None
    try:
        writable_layout(path, first)
    except UnusableList as exc:
        return str(exc)
    return None


def append_problem(path: Path) -> str | None:
    """Why the user running this may not append to the list at ``path``, or None: a file it may
    not write (a list left owned by root, cron running as the shop's user), or no list yet in a
    folder it may not create one in. :func:`list_problem` reads only the header, which such a
    list passes, while every call failed with "Permission denied"; ``doctor`` checks both."""
    if path.exists():
        return None if os.access(path, os.W_OK) else f"{path}: no permission to write it"
    folder = next((above for above in path.parents if above.exists()), None)  # the first call makes the rest
    if folder is None or not folder.is_dir() or os.access(folder, os.W_OK | os.X_OK):
        return None  # a file in a folder's place: list_problem says so
    return f"{path}: not there yet, and no permission to create it in {folder}"


def layout_like(like: Path | None) -> Layout:
    """The layout of the list at ``like``; the default where there is none or it is empty
    (raises OSError, UnusableList)."""
    if like is None:
        return Layout()
    try:
        with like.open("rb") as handle:
            first = handle.readline()
    except FileNotFoundError:
        return Layout()
    return writable_layout(like, first) if first.removeprefix(BOM) else Layout(bom=first.startswith(BOM))


def _locked(path: Path) -> IO[bytes]:
    """The list at ``path`` open for appending (``a+b``, made when missing, owner-only: it holds
    customers' names and numbers) under an exclusive lock, released when it is closed (POSIX;
    elsewhere none).

    ``forget --files`` replaces the file (a new one renamed over it): a process that opened the
    old one and waited for its lock would append to a file nobody sees any more. So once the
    lock is held, the open file must still be the one at ``path``, else it is opened again.
    """
    try:
        import fcntl
    except ImportError:  # Windows: the list is written unlocked (run one process there)
        return open(path, "a+b", opener=private.opener)
    while True:
        handle = open(path, "a+b", opener=private.opener)
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
            if os.fstat(handle.fileno()).st_ino == os.stat(path).st_ino:
                return handle
        except FileNotFoundError:  # renamed away meanwhile: open what stands there now
            pass
        except BaseException:
            handle.close()
            raise
        handle.close()


def recovery_link(recovery_url: str | None, shop_url: str | None) -> str:
    """The link a call gives the customer, and a webhook document's ``cart.recovery_url``: the
    one their message would have had (the cart's own if it is http(s), else the shop's, as
    :meth:`~cartrescue.compose.render.Renderer.context` fills ``recovery_url``), without the
    message's UTM tags: no message carries it."""
    from cartrescue.compose.links import safe_url

    return safe_url(recovery_url) or safe_url(shop_url) or ""


def row(decision: Decision, layout: Layout, tz: tzinfo, instant: datetime, *, added: str | None = None,
        region: str | None = None, offer: str = "", shop_url: str | None = None) -> list[tuple[str, str]]:
    """The row a call appends under ``layout``'s header, as (header name, cell) in its order:
    what staff see of the call (``preview`` of a call-list step shows it). ``instant``: when it
    is written (``added``: that time as its ``added_at`` cell, else worked out); ``offer``: its
    ``incentive`` cell (:meth:`~cartrescue.pipeline.composer.Composer.call_offer`)."""
    added = added or instant.astimezone(tz).isoformat(timespec="seconds")
    values = _values(decision, tz, added, region, shop_url)
    values["incentive"] = offer
    values["timezone"] = customer_clock(decision.cart.customer.phone, region, instant)
    if layout.delimiter == ";":  # saved where the comma is the decimal sign: its amounts so too
        values.update({name: str(values[name]).replace(".", ",") for name in DECIMALS})
    return [(name, cell(values.get(column_of(name), ""))) for name in layout.header]


def _values(decision: Decision, tz: tzinfo, added: str, region: str | None,
            shop_url: str | None = None) -> dict[str, object]:
    from cartrescue.contacts import dialable

    cart, customer = decision.cart, decision.cart.customer
    return {
        "cart_id": cart.id, "first_name": customer.first_name or "", "last_name": customer.last_name or "",
        "phone": dialable(customer.phone.strip(), region) if customer.phone else "",
        "email": customer.email or "", "locale": customer.locale or "",
        "currency": cart.currency, "total": str(cart.total),
        "items": "; ".join(f"{item.quantity} x {item.name}" for item in cart.items),
        "score": score_text(decision.score) if decision.score is not None else "", "tier": decision.tier or "",
        "previous_orders": decision.facts.previous_orders if decision.facts else 0,
        "recovery_url": recovery_link(cart.recovery_url, shop_url),
        "last_activity": cart.updated_at.astimezone(tz).isoformat(timespec="seconds"),
        "step": decision.step or "", "added_at": added,
    }


def customer_clock(phone: str | None, region: str | None, at: datetime) -> str:
    """The ``timezone`` cell: the zone the number's plan places the customer in, with its UTC
    offset at ``at`` (``America/New_York (UTC-05:00)``); of a plan of several zones (a Russian
    mobile) the westernmost and the easternmost, as a text's quiet hours read them; empty where
    the number does not say. A call has no quiet hours (staff call when they work), so staff
    must see that the shop's 09:00 is 03:00 in New York."""
    from cartrescue.contacts import normalize_phone, phone_zones

    number = normalize_phone(phone, region)
    clocks = [at.astimezone(ZoneInfo(name)) for name in phone_zones(number)] if number else []
    if not clocks:
        return ""
    west = min(clocks, key=_offset)
    east = max(clocks, key=_offset)
    ends = [west] if _offset(west) == _offset(east) else [west, east]
    return " to ".join(f"{clock.tzinfo} ({_utc(clock)})" for clock in ends)


def _offset(local: datetime) -> timedelta:
    return local.utcoffset() or timedelta(0)


def _utc(local: datetime) -> str:
    """``local``'s offset as ``UTC+05:30``."""
    minutes = int(_offset(local).total_seconds()) // 60
    return f"UTC{'-' if minutes < 0 else '+'}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"


#: A data row's contacts as the list holds them: its ``email`` (normalized) and its ``phone``
#: (E.164, read in the shop's country), each ``None`` where the list has no such column or cell.
Contact = tuple[str | None, str | None]


def rows_of(path: Path, email: str | None = None, *, phone: str | None = None, region: str | None = None,
            remove: bool = False) -> int:
    """How many rows of the call list at ``path`` are for ``email`` (normalized, in either form
    of an international domain: :func:`~cartrescue.contacts.email_forms`), or for
    ``phone`` (E.164, matched against the list's ``phone`` column read in ``region``); with
    ``remove`` the file is rewritten without them (``forget --files``).

    The list is read as :func:`append_rows` writes it (as a spreadsheet saved it: delimiter,
    BOM, line ending) and rewritten so. The rewrite goes to a temporary file renamed over the
    list, so staff never open half a file; a missing list, or one whose header names no column
    of ours, has no rows. The list is the shop's: cartrescue only ever appends to it, and
    removes rows only when asked, or when their person opted out (:func:`suppressed_rows`).
    """
    from cartrescue.contacts import email_forms

    wanted = {phone} if phone else set(email_forms(email or ""))
    return _drop_rows(path, remove, region,
                      lambda contacts: [(number if phone else address) in wanted for address, number in contacts])


def suppressed_rows(path: Path, suppressed: Callable[[list[str]], set[str]], region: str | None = None, *,
                    remove: bool = True) -> int:
    """How many rows of the call list at ``path`` are of a person suppressed since they were
    written (their address or number: unsubscribed, STOP, bounced, imported, forgotten), rewritten
    without them as :func:`rows_of` rewrites (``remove``): staff must not phone them.
    ``suppressed`` answers which of the contact hashes it is given are suppressed (the ledger:
    one query for the whole list, asked under the list's lock, so no row a run appends
    meanwhile is lost)."""
    from cartrescue.contacts import email_hashes, phone_hash
    from cartrescue.decide.eligibility import suppresses

    def theirs(contacts: list[Contact]) -> list[bool]:
        hashes = {digest for address, number in contacts
                  for digest in (*(email_hashes(address) if address else ()), *((phone_hash(number),) if number else ()))}
        found = suppressed(sorted(hashes)) if hashes else set()
        return [bool(found) and suppresses(found, address, number) for address, number in contacts]

    return _drop_rows(path, remove, region, theirs)


def _drop_rows(path: Path, rewrite: bool, region: str | None, pick: Callable[[list[Contact]], list[bool]]) -> int:
    """How many data rows of the list at ``path`` ``pick`` chooses (given every row's
    :data:`Contact`); with ``rewrite`` the list is replaced by one without them, under its
    lock (no run appends while it is rewritten)."""
    if not path.exists():
        return 0
    with _locked(path) if rewrite else path.open("rb") as handle:
        handle.seek(0)
        data = handle.read()
        try:
            layout = layout_of(path, io.BytesIO(data).readline())
        except UnusableList:
            return 0
        text = data.removeprefix(BOM).decode("utf-8")
        rows = list(csv.reader(io.StringIO(text, newline=""), delimiter=layout.delimiter))
        if not rows:
            return 0
        names = [column_of(name) for name in rows[0]]
        chosen = pick([_contact(row, names, region) for row in rows[1:]])
        keep = [rows[0], *(row for row, out in zip(rows[1:], chosen) if not out)]
        found = len(rows) - len(keep)
        if rewrite and found:
            _replace(path, keep, layout)
        return found


def _contact(row: list[str], names: list[str], region: str | None) -> Contact:
    """The :data:`Contact` of one data row under the header ``names``."""
    from cartrescue.contacts import normalize_email, normalize_phone

    def value(column: str) -> str:
        at = names.index(column) if column in names else len(row)
        return spreadsheet_value(row[at] if at < len(row) else "")  # without the apostrophe cell() puts

    address, number = value("email"), value("phone")
    return (normalize_email(address) if address else None), (normalize_phone(number, region) if number else None)


def _replace(path: Path, rows: list[list[str]], layout: Layout) -> None:
    """The list at ``path`` rewritten with ``rows`` as it was laid out, through a temporary file
    renamed over it, as the same file to staff: where a link points to it (a list kept in the
    staff's shared folder), the file it points to is replaced, not the link (the shared list
    kept the forgotten rows and got no call after), and it keeps its permissions and owner as far
    as this user may give them (a list the staff's group could save stayed the cron user's)."""
    target = path.resolve()
    partial = target.with_name(target.name + ".part")
    partial.unlink(missing_ok=True)  # a killed rewrite's: opening it would keep its mode
    with open(partial, "w", encoding="utf-8-sig" if layout.bom else "utf-8", newline="",
              opener=private.opener) as handle:  # 0600 until it takes the list's mode below
        layout.writer(handle).writerows(rows)
    was = target.stat()
    os.chmod(partial, was.st_mode & 0o7777)
    for owner in ((was.st_uid, was.st_gid), (-1, was.st_gid)) if hasattr(os, "chown") else ():
        try:  # another user's file: only root gives it back; its group, where this user is in it
            os.chown(partial, *owner)
            break
        except OSError:
            pass
    os.replace(partial, target)
