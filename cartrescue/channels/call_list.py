"""Call-list channel: the most expensive channel, a person phoning the customer.

Owns appending one row per cart to a CSV that shop staff work through (who, how to reach them,
what is in the cart, why they are on the list). It renders no message.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime, timezone, tzinfo
from pathlib import Path
from typing import IO

from cartrescue.channels.base import Channel, Envelope, Outcome, Status
from cartrescue.model import Decision
from cartrescue.text import printable

COLUMNS = ("cart_id", "first_name", "last_name", "phone", "email", "locale", "currency", "total",
           "items", "score", "tier", "previous_orders", "recovery_url", "last_activity", "step", "added_at")


def cell(value: object) -> str:
    """A CSV cell that a spreadsheet shows as text, never runs as a formula.

    Staff open this file in Excel or LibreOffice; a name like ``=HYPERLINK(...)`` or ``+1-2``
    from cart data would be evaluated there (CSV/formula injection, OWASP). Such a cell gets a
    leading apostrophe, which spreadsheets hide and treat as "this is text".
    """
    text = printable(value)
    if text[:1] in _FORMULA_START:
        return "'" + text
    return text


_FORMULA_START = frozenset("=+-@")  # OWASP; tab and CR are removed by printable()


class CallListChannel(Channel):
    transport = "call-list"
    take_size = 50

    def __init__(self, path: Path, tz: tzinfo = timezone.utc) -> None:
        self.path = path
        self.tz = tz  # the shop's: staff read the times as the shop's clock shows them

    def deliver(self, batch: Sequence[Envelope]) -> Iterator[Outcome]:
        try:
            append_rows(self.path, (envelope.decision for envelope in batch), self.tz)
        except OSError as exc:
            for envelope in batch:
                yield Outcome(envelope.claim_id, Status.TRANSIENT, f"cannot write {self.path}: {exc.strerror or exc}")
            return
        for envelope in batch:
            yield Outcome(envelope.claim_id, Status.SENT, str(self.path))


def append_rows(path: Path, decisions: Iterable[Decision], tz: tzinfo, now: datetime | None = None) -> None:
    """Append one row per decision to the list at ``path`` (raises OSError).

    A list begun by an older version keeps its own columns: its rows are written under its
    header, so staff never get a file whose rows do not match their header. The workers of
    ``run --workers`` append to one list: each holds the file's lock while it writes, so no two
    write the header and no row is cut by another's.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    added = (now or datetime.now(timezone.utc)).astimezone(tz).isoformat(timespec="seconds")
    text = io.StringIO()
    writer = csv.writer(text)
    with path.open("a+", encoding="utf-8", newline="") as handle:
        _lock(handle)
        handle.seek(0)
        header = next(csv.reader(handle), None)
        if not header:
            header = list(COLUMNS)
            writer.writerow(header)
        for decision in decisions:
            values = _values(decision, tz, added)
            writer.writerow([cell(values.get(name, "")) for name in header])
        handle.seek(0, io.SEEK_END)
        handle.write(text.getvalue())
        handle.flush()  # before the lock goes with the file's closing


def _lock(handle: IO[str]) -> None:
    """An exclusive lock on the open list, released when it is closed (POSIX; elsewhere none)."""
    try:
        import fcntl
    except ImportError:  # Windows: the list is written unlocked (run one process there)
        return
    fcntl.flock(handle.fileno(), fcntl.LOCK_EX)


def _values(decision: Decision, tz: tzinfo, added: str) -> dict[str, object]:
    cart, customer = decision.cart, decision.cart.customer
    return {
        "cart_id": cart.id, "first_name": customer.first_name or "", "last_name": customer.last_name or "",
        "phone": customer.phone or "", "email": customer.email or "", "locale": customer.locale or "",
        "currency": cart.currency, "total": str(cart.total),
        "items": "; ".join(f"{item.quantity} x {item.name}" for item in cart.items),
        "score": f"{decision.score:g}" if decision.score is not None else "", "tier": decision.tier or "",
        "previous_orders": decision.facts.previous_orders if decision.facts else 0,
        "recovery_url": cart.recovery_url or "",
        "last_activity": cart.updated_at.astimezone(tz).isoformat(timespec="seconds"),
        "step": decision.step or "", "added_at": added,
    }


def rows_of(path: Path, email: str | None = None, *, phone: str | None = None, region: str | None = None,
            remove: bool = False) -> int:
    """How many rows of the call list at ``path`` are for ``email`` (normalized), or for
    ``phone`` (E.164, matched against the list's ``phone`` column read in ``region``); with
    ``remove`` the file is rewritten without them (``forget --files``).

    The rewrite goes to a temporary file renamed over the list, so staff never open half a
    file; a missing list has no rows. The list is the shop's: cartrescue only ever appends to
    it, and removes rows only when asked.
    """
    import os

    from cartrescue.contacts import normalize_email, normalize_phone

    if not path.exists():
        return 0
    with path.open("r", encoding="utf-8", newline="") as handle:
        rows = list(csv.reader(handle))
    column, wanted = ("phone", phone) if phone else ("email", email)
    if not rows or column not in rows[0]:
        return 0
    at = rows[0].index(column)

    def address(row: list[str]) -> str | None:
        value = row[at] if at < len(row) else ""
        if value[:2] in {"'" + start for start in _FORMULA_START}:
            value = value[1:]  # the apostrophe cell() puts before a formula character
        return normalize_phone(value, region) if phone else normalize_email(value)

    keep = [rows[0], *(row for row in rows[1:] if address(row) != wanted)]
    found = len(rows) - len(keep)
    if remove and found:
        partial = path.with_name(path.name + ".part")
        with partial.open("w", encoding="utf-8", newline="") as handle:
            csv.writer(handle).writerows(keep)
        os.replace(partial, path)
    return found
