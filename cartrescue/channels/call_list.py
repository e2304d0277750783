"""Call-list channel: the most expensive channel, a person phoning the customer.

Owns appending one row per cart to a CSV that shop staff work through (who, how to reach them,
what is in the cart, why they are on the list). It renders no message.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator, Sequence
from pathlib import Path

from cartrescue.channels.base import Channel, Envelope, Outcome, Status
from cartrescue.text import printable

COLUMNS = ("cart_id", "first_name", "last_name", "phone", "email", "locale", "currency", "total",
           "items", "score", "tier", "previous_orders", "recovery_url", "last_activity")


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

    def __init__(self, path: Path) -> None:
        self.path = path

    def deliver(self, batch: Sequence[Envelope]) -> Iterator[Outcome]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        new = not self.path.exists() or self.path.stat().st_size == 0
        try:
            with self.path.open("a", encoding="utf-8", newline="") as handle:
                writer = csv.writer(handle)
                if new:
                    writer.writerow(COLUMNS)
                for envelope in batch:
                    decision = envelope.decision
                    cart, customer = decision.cart, decision.cart.customer
                    writer.writerow([cell(value) for value in (
                        cart.id, customer.first_name or "", customer.last_name or "", customer.phone or "",
                        customer.email or "", customer.locale or "", cart.currency, str(cart.total),
                        "; ".join(f"{item.quantity} x {item.name}" for item in cart.items),
                        f"{decision.score:g}" if decision.score is not None else "", decision.tier or "",
                        decision.facts.previous_orders if decision.facts else 0, cart.recovery_url or "",
                        cart.updated_at.isoformat(),
                    )])
                handle.flush()
        except OSError as exc:
            for envelope in batch:
                yield Outcome(envelope.claim_id, Status.TRANSIENT, f"cannot write {self.path}: {exc.strerror or exc}")
            return
        for envelope in batch:
            yield Outcome(envelope.claim_id, Status.SENT, str(self.path))


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
