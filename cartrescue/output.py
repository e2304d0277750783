"""Output for people and for scripts: rich tables and a streamed JSON document.

Owns how results look on a terminal and the ``--json`` schema (documented in the README). The
JSON is written incrementally, so a million decisions never sit in memory.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from json.encoder import encode_basestring as _string  # the C encoder of json.dumps(ensure_ascii=False)
from typing import IO, TYPE_CHECKING, Any

from cartrescue.text import printable

if TYPE_CHECKING:  # not imported at run time: `run --workers` prints without loading the pipeline
    from cartrescue.pipeline import Result

ACTION_STYLE = {"send": "green", "skip": "dim", "defer": "yellow", "holdout": "magenta"}


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat().replace("+00:00", "Z")


def result_dict(result: Result) -> dict[str, Any]:
    decision = result.decision
    cart = decision.cart
    row: dict[str, Any] = {
        "cart_id": cart.id,
        "cart_key": cart.key,
        "email": cart.customer.email,
        "action": decision.action.value,
        "reason": decision.reason.value,
        "detail": decision.detail or result.detail,
        "step": decision.step,
        "score": decision.score,
        "tier": decision.tier,
        "channel": decision.channel,
        "template": decision.template,
        "variant": decision.variant,
        "total": str(cart.total),
        "currency": cart.currency,
        "last_activity": _iso(cart.updated_at),
        "not_before": _iso(decision.not_before),
        "delivery": result.delivery or None,
    }
    if result.message is not None:
        row["subject"] = result.message.subject
    return row


def _float(value: float) -> str:
    """A score as ``json.dumps`` writes it (``NaN`` and ``Infinity`` included)."""
    if type(value) is not float:
        return json.dumps(value)
    if value != value:
        return "NaN"
    if value == _INFINITY:
        return "Infinity"
    if value == -_INFINITY:
        return "-Infinity"
    return float.__repr__(value)


_INFINITY = float("inf")


def result_json(result: Result) -> str:
    """``json.dumps(result_dict(result), ensure_ascii=False)``, several times faster.

    The row's shape is fixed, so it is written with one f-string and the C string encoder that
    ``json.dumps`` itself uses, instead of building a dict and walking it; a run writes one per
    cart. :func:`result_dict` stays the definition: the tests hold the two to the same bytes.
    """
    decision = result.decision
    cart = decision.cart
    email, step, score = cart.customer.email, decision.step, decision.score
    tier, channel, template, variant = decision.tier, decision.channel, decision.template, decision.variant
    updated, not_before, delivery = cart.updated_at, decision.not_before, result.delivery
    text = (
        f'{{"cart_id": {_string(cart.id)}, "cart_key": {_string(cart.key)}, '
        f'"email": {"null" if email is None else _string(email)}, '
        f'"action": {_string(decision.action.value)}, "reason": {_string(decision.reason.value)}, '
        f'"detail": {_string(decision.detail or result.detail)}, '
        f'"step": {"null" if step is None else int.__repr__(step)}, '
        f'"score": {"null" if score is None else _float(score)}, '
        f'"tier": {"null" if tier is None else _string(tier)}, '
        f'"channel": {"null" if channel is None else _string(channel)}, '
        f'"template": {"null" if template is None else _string(template)}, '
        f'"variant": {"null" if variant is None else _string(variant)}, '
        f'"total": {_string(str(cart.total))}, "currency": {_string(cart.currency)}, '
        f'"last_activity": {"null" if updated is None else _string(_iso(updated))}, '  # type: ignore[arg-type]
        f'"not_before": {"null" if not_before is None else _string(_iso(not_before))}, '  # type: ignore[arg-type]
        f'"delivery": {_string(delivery) if delivery else "null"}'
    )
    if result.message is not None:
        return f'{text}, "subject": {_string(result.message.subject)}}}'
    return text + "}"


class JsonStream:
    """``{"mode": ..., "now": ..., "decisions": [...], "counts": {...}}`` written as it goes."""

    def __init__(self, out: IO[str], header: dict[str, Any]) -> None:
        self.out = out
        self.first = True
        head = json.dumps(header, ensure_ascii=False)[:-1]
        out.write(head + (', ' if header else '') + '"decisions": [')

    def add(self, row: dict[str, Any]) -> None:
        self.add_json(json.dumps(row, ensure_ascii=False, default=str))

    def add_json(self, text: str) -> None:
        """Add a row already encoded (see :func:`result_json`)."""
        self.out.write(("\n  " if self.first else ",\n  ") + text)
        self.first = False

    def close(self, trailer: dict[str, Any]) -> None:
        tail = json.dumps(trailer, ensure_ascii=False, default=str)[1:]
        self.out.write("\n]" + (", " + tail if trailer else "}") + "\n")
        self.out.flush()


class DecisionTable:
    """A rich table of the first ``limit`` results, with a count of the rest."""

    def __init__(self, limit: int | None) -> None:
        from rich.table import Table

        self.limit = limit
        self.hidden = 0
        self.table = Table(show_lines=False, header_style="bold", expand=False)
        for column, justify in (("cart", "left"), ("email", "left"), ("tier", "left"), ("score", "right"),
                                ("step", "right"), ("action", "left"), ("reason", "left"), ("detail", "left")):
            self.table.add_column(column, justify=justify, overflow="fold")  # type: ignore[arg-type]

    @property
    def full(self) -> bool:
        return self.limit is not None and self.table.row_count >= self.limit

    def add(self, result: Result) -> None:
        if self.full:
            self.hidden += 1
            return
        self.add_row(result_dict(result))

    def add_row(self, row: dict[str, Any]) -> None:
        """One row from a result's JSON form (:func:`result_dict`; a worker's ``--json`` line)."""
        if self.full:
            self.hidden += 1
            return
        from rich.text import Text

        action, delivery, score, step = row.get("action") or "", row.get("delivery"), row.get("score"), row.get("step")
        detail = row.get("detail") or ""
        if delivery and delivery != "dry-run":
            detail = f"{delivery}: {detail}" if detail else delivery
        elif "subject" in row:
            detail = row["subject"]
        # Cells from shop data are Text, never markup, and without terminal control characters.
        self.table.add_row(
            Text(printable(row.get("cart_id") or "")), Text(printable(row.get("email") or "-")),
            printable(row.get("tier") or ""), "" if score is None else f"{score:g}",
            "" if step is None else str(step),
            Text(action, style=ACTION_STYLE.get(action, "")), printable(row.get("reason") or ""), Text(printable(detail)),
        )



@contextmanager
def progress(console: Any, enabled: bool, label: str) -> Iterator[Any]:
    """A progress display on a terminal (rate and count; total unknown while streaming)."""
    if not enabled:
        yield lambda n: None
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    with Progress(SpinnerColumn(), TextColumn(label), BarColumn(), MofNCompleteColumn(),
                  TextColumn("{task.fields[rate]}"), TimeElapsedColumn(), console=console, transient=True) as bar:
        task = bar.add_task(label, total=None, rate="")

        def advance(n: int) -> None:
            bar.advance(task, n)
            done = bar.tasks[0]
            if done.speed:
                bar.update(task, rate=f"{done.speed:,.0f} carts/s")

        yield advance
