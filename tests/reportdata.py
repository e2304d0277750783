"""Ledger rows and orders for the report tests, with the truth kept beside them.

The ledger is written through the real :class:`~cartrescue.ledger.Ledger` (claim, then record the
outcome, as a run does); orders go into a real orders CSV. Nothing here computes attribution:
the tests compute what they expect from the records they made.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import quote

from cartrescue.ledger import ClaimRequest, Ledger
from conftest import ORDER_COLUMNS, iso, write_csv


@dataclass(frozen=True)
class Row:
    """One ledger row: a sent message, or a held-out step (``held``)."""

    cart_id: str
    at: datetime
    step: int = 1
    held: bool = False
    email: str | None = None
    tier: str = "standard"
    variant: str | None = None
    channel: str = "email"
    sequence: str = "default"
    locale: str | None = "en"
    customer_id: str | None = None
    cart_value: str | None = "50.00"  # in the shop's currency; None: the cart's had no rate
    status: str = "sent"  # or "unconfirmed": the relay took it, its reply was lost


def write_ledger(path: Path | str, rows: Iterable[Row]) -> None:
    """Claim and record ``rows`` in the ledger at ``path`` (a SQLite file, or any ledger URL),
    grouped by moment, as runs do."""
    ledger = Ledger(path if isinstance(path, str) else "sqlite:///" + quote(str(path), safe="/"))
    try:
        by_moment: dict[datetime, list[Row]] = {}
        for row in rows:
            by_moment.setdefault(row.at, []).append(row)
        for moment, group in sorted(by_moment.items()):
            run = ledger.start_run("outbox", moment)
            requests = [ClaimRequest(f"csv:{r.cart_id}", r.cart_id, r.email or f"{r.cart_id}@example.com", r.step,
                                     r.channel, "holdout" if r.held else "outbox", f"reminder-{r.step}", r.variant,
                                     r.tier, 10.0, sequence=r.sequence, locale=r.locale, customer_id=r.customer_id,
                                     cart_value=r.cart_value) for r in group]
            with ledger.lock(run, timedelta(hours=1)):  # claims are fenced by the run lock
                won = ledger.claim(run, requests, moment)
                status = {(f"csv:{r.cart_id}", r.step, r.channel): "held_out" if r.held else r.status for r in group}
                ledger.record([(claim, status[key], "", "") for key, claim in won.items()])
            ledger.finish_run(run, "ok", {"sent": sum(not r.held for r in group)})
    finally:
        ledger.close()


def order_row(order_id: str, *, at: datetime, total: Decimal | str, cart_id: str = "", email: str = "",
              currency: str = "EUR", customer_id: str = "", status: str = "complete") -> dict[str, str]:
    return {"order_id": order_id, "email": email, "customer_id": customer_id, "cart_id": cart_id, "total": str(total),
            "currency": currency, "status": status, "created_at": iso(at), "delivered": "yes"}


def mailed_digest(shop: Any, *args: str, now: datetime) -> str:
    """The plain-text body of the digest ``report --quiet ARGS --email`` sends for ``shop`` through
    a loopback relay (the real SMTP channel)."""
    from smtpserver import LoopbackSMTP

    with LoopbackSMTP("none") as server:
        shop.configure(smtp=server.smtp_config())
        result = shop.cli("report", "--quiet", *args, "--email", "owner@example.com", now=now)
        assert result.exit_code == 0, result.output
        (received,) = server.wait_for(1)
    return received.parsed().get_body(("plain",)).get_content()


def write_orders(path: Path, orders: Sequence[dict[str, str]], extra: Sequence[str] = ()) -> Path:
    return write_csv(path, orders, ORDER_COLUMNS + list(extra))


def orders_with_column(shop: Any, orders: list[dict[str, str]], cells: dict[str, str], header: str) -> None:
    """Write ``shop``'s files with ``orders`` in its orders file, which gets a ``header`` column
    holding ``cells`` (order id -> cell; the others blank), and keep that file for its next commands."""
    for order in orders:
        order[header] = cells.get(order["order_id"], "")
    shop.write()
    write_orders(shop.folder / "orders.csv", orders, [header])
    shop.write = lambda: shop.config_path  # keep the file with the column


@dataclass(frozen=True)
class Experiment:
    """Treated and held-out carts that convert at known rates; the truth the report must find."""

    treated: int
    held: int
    p_treated: float
    p_held: float

    @property
    def true_lift(self) -> float:
        return self.p_treated - self.p_held

    def rows(self, at: datetime) -> list[Row]:
        return ([Row(f"t{n}", at) for n in range(self.treated)]
                + [Row(f"h{n}", at, held=True) for n in range(self.held)])

    def orders(self, at: datetime, seed: int) -> tuple[list[dict[str, str]], Decimal]:
        """One seeded draw of orders, and the attributed revenue it must give (treated carts'
        orders within the window after their message)."""
        rng = random.Random(seed)
        orders, attributed = [], Decimal(0)
        for prefix, count, p in (("t", self.treated, self.p_treated), ("h", self.held, self.p_held)):
            for n in range(count):
                if rng.random() < p:
                    total = Decimal(rng.randrange(1000, 20000)) / 100
                    orders.append(order_row(f"o-{prefix}{n}", at=at + timedelta(minutes=rng.randrange(5, 4 * 1440)),
                                            total=total, cart_id=f"{prefix}{n}"))
                    if prefix == "t":
                        attributed += total
        return orders, attributed
