"""Output for people and for scripts: rich tables and a streamed JSON document.

Owns how results look on a terminal and the ``--json`` schema (documented in the README). The
JSON is written incrementally, so a million decisions never sit in memory.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from json.encoder import encode_basestring as _string  # the C encoder of json.dumps(ensure_ascii=False)
from typing import IO, TYPE_CHECKING, Any

from rich.cells import cell_len

from cartrescue.model import Reason, score_text
from cartrescue.stops import held
from cartrescue.text import printable

if TYPE_CHECKING:  # not imported at run time: `run --workers` prints without loading the pipeline
    from cartrescue.pipeline import Result
    from cartrescue.sources.base import ProgressTotal

ACTION_STYLE = {"send": "green", "skip": "dim", "defer": "yellow", "holdout": "magenta"}


def stopped_line(counts: dict[str, Any]) -> str:
    """What a delivering run stopped by Ctrl-C or SIGTERM (or ``run-all --timeout``) had delivered,
    and how many messages were in flight without an answer: they keep their claim without outcome
    (``unconfirmed``) and are not resent, which the cron mail must not leave out. Said by ``run``
    and, for each shop's run (which writes only its document), by ``run-all``."""
    in_flight = (counts.get("deliveries") or {}).get("unconfirmed", 0)
    pending = (f", {in_flight} in flight without an answer (unconfirmed: they may have arrived, and are not resent "
               "unless --resend-unconfirmed)" if in_flight else "")
    return (f"stopped: {counts.get('sent', 0)} delivered, {counts.get('failed', 0)} failed{pending} before the stop "
            "(the ledger has every message, and the next run goes on)")


_UTC = timezone.utc
_TWO_DIGITS = tuple(f"{number:02d}" for number in range(100))


def _iso(moment: datetime | None) -> str | None:
    """``moment.isoformat()`` with ``Z`` for ``+00:00``. A whole second in UTC (every cart's
    last activity read from an export) is put together from its fields: ``isoformat`` formats
    the offset and each field with C's printf (~11,000 instructions, twice a row of ``--json``)."""
    if moment is None:
        return None
    if moment.tzinfo is _UTC and not moment.microsecond:
        year = moment.year
        return (f"{year if year >= 1000 else f'{year:04d}'}-{_TWO_DIGITS[moment.month]}-{_TWO_DIGITS[moment.day]}"
                f"T{_TWO_DIGITS[moment.hour]}:{_TWO_DIGITS[moment.minute]}:{_TWO_DIGITS[moment.second]}Z")
    return moment.isoformat().replace("+00:00", "Z")


class _Encoded(dict[str, str]):
    """The JSON text of a value every row repeats from a small set (an action, a reason, a tier,
    a channel, a template, a currency), encoded once each: ``_string`` copies it a row at a time.
    Bounded, in case a source brings many currencies."""

    def __missing__(self, value: str) -> str:
        text = _string(value)
        if len(self) < 4096:
            self[value] = text
        return text


#: Keyed by the text: an Action or Reason member is its own value (StrEnum), without the
#: ``.value`` property's two Python calls.
_ENCODED = _Encoded()


def detail_of(result: Result) -> str:
    """What to say about a result: the decision's detail (why it was made, or a send's channel
    fallback) and the delivery's (where it went, why it failed), both when there are both."""
    said, delivered = result.decision.detail, result.detail
    if said and delivered:
        return f"{said}; {delivered}"
    return said or delivered


def with_not_before(detail: str, not_before: datetime | None) -> str:
    """A deferred cart's detail with the moment a run looks at it again (``idle 10m, not before
    2026-11-20 10:35 UTC``): a table, or a preview, that said only ``idle 10m`` or ``step 2``
    left the reader to work out when, which ``--json`` gives as ``not_before``."""
    if not_before is None:
        return detail
    return f"{detail}, not before {not_before:%Y-%m-%d %H:%M} UTC".lstrip(", ")


def result_dict(result: Result) -> dict[str, Any]:
    decision = result.decision
    cart = decision.cart
    row: dict[str, Any] = {
        "cart_id": cart.id,
        "cart_key": cart.key,
        "email": cart.customer.email,
        "action": decision.action.value,
        "reason": decision.reason.value,
        "detail": detail_of(result),
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


class ScoreTexts(dict[float, str]):
    """Scores' JSON texts (:func:`_float`), each written once per run (a :class:`JsonStream`
    keeps one): a run's carts share a few scores (the sums of a few rules' weights), and
    ``float.__repr__`` is ~2,000 instructions a row. Keyed by floats only: two equal non-zero
    finite floats are one value, so one text; ``0.0`` and ``-0.0`` are equal with different
    texts, and neither is kept, nor NaN or an infinity. Bounded, as scores could be many."""

    def __missing__(self, score: float) -> str:
        text = _float(score)
        if score and score - score == 0 and len(self) < 4096:  # not zero, finite
            self[score] = text
        return text


def result_json(result: Result, scores: ScoreTexts | None = None) -> str:
    """``json.dumps(result_dict(result), ensure_ascii=False)``, several times faster.

    The row's shape is fixed, so it is written with one f-string and the C string encoder that
    ``json.dumps`` itself uses, instead of building a dict and walking it; a run writes one per
    cart. :func:`result_dict` stays the definition: the tests hold the two to the same bytes.
    The row is one f-string (a subject appended after it copied the row again), the detail
    joined here (not by a call of :func:`detail_of`), a score's text taken from ``scores``
    (queried only with a ``float``: ``1 == 1.0``, but ``json.dumps`` writes ``1`` and ``1.0``).
    """
    decision = result.decision
    cart = decision.cart
    email, step, score = cart.customer.email, decision.step, decision.score
    tier, channel, template, variant = decision.tier, decision.channel, decision.template, decision.variant
    updated, not_before, delivery = cart.updated_at, decision.not_before, result.delivery
    said, delivered = decision.detail, result.detail  # detail_of(result), without its call
    message = result.message
    return (
        f'{{"cart_id": {_string(cart.id)}, "cart_key": {_string(cart.key)}, '
        f'"email": {"null" if email is None else _string(email)}, '
        f'"action": {_ENCODED[decision.action]}, "reason": {_ENCODED[decision.reason]}, '
        f'"detail": {_string(f"{said}; {delivered}" if said and delivered else said or delivered)}, '
        f'"step": {"null" if step is None else int.__repr__(step)}, '
        f'"score": {"null" if score is None else scores[score] if type(score) is float and scores is not None else _float(score)}, '
        f'"tier": {"null" if tier is None else _ENCODED[tier]}, '
        f'"channel": {"null" if channel is None else _ENCODED[channel]}, '
        f'"template": {"null" if template is None else _ENCODED[template]}, '
        f'"variant": {"null" if variant is None else _ENCODED[variant]}, '
        f'"total": {_string(str(cart.total))}, "currency": {_ENCODED[cart.currency]}, '
        f'"last_activity": {"null" if updated is None else _string(_iso(updated))}, '  # type: ignore[arg-type]
        f'"not_before": {"null" if not_before is None else _string(_iso(not_before))}, '  # type: ignore[arg-type]
        f'"delivery": {_string(delivery) if delivery else "null"}'
        f'{"}" if message is None else f", {_SUBJECT}{_string(message.subject)}}}"}'  # the row copied once
    )


_SUBJECT = '"subject": '  # a constant: an f-string inside an f-string cannot reuse its quote (Python 3.11)


class DocumentWriter:
    """Text to a file descriptor in large blocks, none of it lost or written twice on Ctrl-C.

    ``io.TextIOWrapper`` hands its pending text to the buffer before the kernel has taken it.
    When SIGTERM or Ctrl-C raises KeyboardInterrupt inside a write that waits (a full pipe: a
    ``| jq``, the parent of ``run --workers`` or ``run-all`` reading), the text of that write
    was gone and the document broken where the run still ended it. Here the signals wait while
    a block is written (a write that blocks for good is ended by the reader's exit, or by
    SIGKILL), and bytes leave the buffer only once written: ``close`` can always end the document.
    """

    def __init__(self, descriptor: int, block: int = 1 << 18) -> None:
        self.descriptor = descriptor
        self.block = block
        self.pending = bytearray()

    def write(self, text: str) -> int:
        self.pending += text.encode("utf-8", "backslashreplace")  # a path's bytes that are not UTF-8: JSON's \udce9
        if len(self.pending) >= self.block:
            self.flush()
        return len(text)

    def write_bytes(self, data: bytes) -> None:
        """Text already encoded as UTF-8 (another process's output, relayed as it came)."""
        self.pending += data
        if len(self.pending) >= self.block:
            self.flush()

    def flush(self) -> None:
        import os

        if not self.pending:
            return
        with held():
            while self.pending:
                written = os.write(self.descriptor, self.pending)
                del self.pending[:written]


def json_stdout() -> Any:
    """Where a command's ``--json`` document goes: stdout's descriptor, through
    :class:`DocumentWriter` (an interrupt cannot break it, 256 KiB blocks), not ``sys.stdout``.

    ``sys.stdout`` loses text when a signal whose handler returns (cli.main's, inside
    :func:`~cartrescue.stops.held`) interrupts a write blocked on a full pipe: the kernel took
    part of it, ``BufferedWriter.write`` returns that part, and ``TextIOWrapper`` drops the rest
    (seen with CPython 3.11). Its 8 KiB blocks also cost a ``run --workers`` parent a wake-up of its
    reading thread each. A terminal, or what is not a file (a test runner's capture), gets
    ``sys.stdout`` as it is. The caller flushes (``JsonStream.close`` does).
    """
    import sys

    try:
        if sys.stdout.isatty():
            return sys.stdout
        descriptor = sys.stdout.fileno()
    except (AttributeError, OSError, ValueError):
        return sys.stdout
    sys.stdout.flush()
    return DocumentWriter(descriptor)


class JsonStream:
    """``{"mode": ..., "now": ..., "decisions": [...], "counts": {...}}`` written as it goes.

    The opening is written with the first decision, or by :meth:`close`: until then nothing is
    (:attr:`begun`), so a run that fails in its start-up checks (a delivering run's secret, the
    steps' templates) prints the ``error`` document alone, as README promises for a failure
    before any output, instead of a run's document with an ``error`` in it.
    """

    def __init__(self, out: IO[str], header: dict[str, Any]) -> None:
        self.out = out
        self.first = True
        self.scores = ScoreTexts()
        self.head = json.dumps(header, ensure_ascii=False)[:-1] + (', ' if header else '') + '"decisions": ['

    @property
    def begun(self) -> bool:
        """Whether any of the document was written: after that only :meth:`close` may end it."""
        return not self.first

    def add(self, row: dict[str, Any]) -> None:
        self.add_json(json.dumps(row, ensure_ascii=False, default=str))

    def add_result(self, result: Result) -> None:
        """Add a run's result as :func:`result_json` writes it, its score's text kept for the run."""
        self.add_json(result_json(result, self.scores))

    def add_json(self, text: str) -> None:
        """Add a row already encoded (see :func:`result_json`)."""
        if self.first:
            self.first = False
            self.out.write(self.head + "\n  " + text)
        else:
            self.out.write(",\n  " + text)

    def add_lines(self, lines: bytes) -> None:
        """Add rows already encoded (UTF-8) and laid out as this stream lays them out: one a line,
        each indented by two spaces, all but the last ending in a comma (another run's decisions).

        Written as they are where the stream goes to a :class:`DocumentWriter` (a file or a pipe):
        a ``run --workers`` parent relays megabytes of them and never decodes them.
        """
        if not lines:
            return
        separator = (self.head + "\n").encode("utf-8", "backslashreplace") if self.first else b",\n"
        self.first = False
        write_bytes = getattr(self.out, "write_bytes", None)
        if write_bytes is not None:
            write_bytes(separator + lines)
        else:  # a terminal, or a test runner's capture: text
            self.out.write((separator + lines).decode("utf-8", errors="replace"))

    def close(self, trailer: dict[str, Any]) -> None:
        """End the document, whole, as the command's last word: a Ctrl-C or SIGTERM meanwhile or
        after it is let go (:func:`cartrescue.stops.held`). The run has ended and the document
        says how; a stop after it made cli.main print a second document, or the process exit
        130 or 143 under one that said 0."""
        tail = json.dumps(trailer, ensure_ascii=False, default=str)[1:]
        with held(settles=True):
            self.out.write(("" if self.begun else self.head) + "\n]" + (", " + tail if trailer else "}") + "\n")
            self.out.flush()


#: Below this many columns a terminal gets the compact tables (``--wide`` shows every column).
COMPACT_BELOW = 120


def table_mode(width: int, wide: bool) -> str:
    """``"wide"`` (every column, long cells folded), ``"full"`` (every column, one line a row) or
    ``"compact"`` (the columns that matter, one line a row) for a terminal ``width`` columns wide."""
    if wide:
        return "wide"
    return "compact" if width < COMPACT_BELOW else "full"


@dataclass(frozen=True, slots=True)
class Column:
    header: str
    justify: str = "left"
    whole: bool = False  # never folded over lines, even by ``--wide`` (a code a person copies)


def narrow(widths: list[int], floors: Sequence[int], excess: int) -> int:
    """Take up to ``excess`` columns off ``widths`` (in place), one at a time from the column
    with the most to spare above its floor, so that no column is cut far while another keeps
    room; return the excess left when every column is at its floor."""
    while excess > 0:
        slack, index = max((width - floor, i) for i, (width, floor) in enumerate(zip(widths, floors)))
        if slack <= 0:
            break
        widths[index] -= 1
        excess -= 1
    return excess


#: The narrowest a column beside one kept whole (a code) is made, cut or folded (its header, if longer).
_FOLD_LEAST = 6


class FitTable:
    """A table that fits the terminal: one line a row, long cells cut with an ellipsis.

    Rows are kept as they come (a command shows a page unless asked for all); the widths are
    settled when it is rendered for a terminal ``width`` columns wide: each column's natural
    width (its header or longest cell), then, while the table is too wide, the steps of
    ``shrink`` in order -- ``(header, floor)``: narrow that column down to ``floor``. A column
    named in no step is never cut (a code, a reason code: values a person copies). ``wide``
    keeps every cell whole and lets rich fold long ones over several lines.
    """

    def __init__(self, columns: Sequence[Column], shrink: Sequence[tuple[str, int]] = (), *,
                 wide: bool = False) -> None:
        self.columns = list(columns)
        self.shrink = list(shrink)
        self.wide = wide
        self.rows: list[tuple[Any, ...]] = []
        self.longest = [cell_len(column.header) for column in self.columns]

    @property
    def row_count(self) -> int:
        return len(self.rows)

    def add_row(self, *cells: Any) -> None:
        """Cells are ``str`` (ours) or rich ``Text`` (anything from data, built with printable);
        a cell of several lines (ours) is as wide as its longest."""
        longest = self.longest
        for index, cell in enumerate(cells):
            text = cell.plain if hasattr(cell, "plain") else cell
            size = max(map(cell_len, text.split("\n"))) if "\n" in text else cell_len(text)
            if size > longest[index]:
                longest[index] = size
        self.rows.append(cells)

    def at_least(self, header: str, width: int) -> None:
        """Keep the column at least ``width`` wide (a reason column the same width every run)."""
        index = self._index(header)
        self.longest[index] = max(self.longest[index], width)

    def _index(self, header: str) -> int:
        return next(i for i, column in enumerate(self.columns) if column.header == header)

    def widths(self, width: int) -> list[int]:
        """Each column's width in a terminal ``width`` columns wide (see the class docstring)."""
        widths = list(self.longest)
        excess = sum(widths) + 3 * len(widths) + 1 - width  # "│ " before each cell, " │" at the end
        for header, floor in self.shrink:
            if excess <= 0:
                break
            index = self._index(header)
            cut = max(0, min(excess, widths[index] - floor))
            widths[index] -= cut
            excess -= cut
        if excess > 0 and any(column.whole for column in self.columns):
            # Beside a column kept whole, the others narrow to their floor, the widest first; a
            # table still too wide is printed wider (:meth:`render`), its whole column whole.
            floors = [width if column.whole else min(width, self._floor(column))
                      for column, width in zip(self.columns, widths)]
            narrow(widths, floors, excess)
        return widths

    @staticmethod
    def _floor(column: Column) -> int:
        """The narrowest a column beside a whole one is made: its header, at least :data:`_FOLD_LEAST`."""
        return max(cell_len(column.header), _FOLD_LEAST)

    def render(self, width: int) -> Any:
        """The rich table for a terminal ``width`` columns wide. One that cannot fit with its
        whole columns whole (a pool file's 64-character code at 80 columns) is made wider than
        the terminal, which folds its lines: left to rich, it cut the code (``AAAA…``), or, with
        ``wide``, squeezed every other column to nothing. So is one whose columns are all at
        their floor and still wider than the terminal: the columns never cut stay whole. Print
        it with ``crop=False``."""
        from rich.table import Table

        table = Table(header_style="bold", expand=False, show_lines=False)
        if self.wide:
            # Folded over lines, whole; a column kept ``whole`` (a code) stays on one line, as a
            # person copies it: folded, CALL-BWKHC and G were two lines, and no code.
            widths = []
            for column, longest in zip(self.columns, self.longest):
                if column.whole:
                    widths.append(longest)
                    table.add_column(column.header, justify=column.justify, no_wrap=True,  # type: ignore[arg-type]
                                     overflow="ignore", min_width=longest)
                else:
                    widths.append(min(longest, self._floor(column)))
                    table.add_column(column.header, justify=column.justify, overflow="fold",  # type: ignore[arg-type]
                                     min_width=widths[-1])
        else:
            widths = self.widths(width)
            for column, size in zip(self.columns, widths):
                table.add_column(column.header, justify=column.justify, no_wrap=True,  # type: ignore[arg-type]
                                 overflow="ellipsis", width=size)
        needed = sum(widths) + 3 * len(widths) + 1
        if needed > width and (not self.wide or any(column.whole for column in self.columns)):
            # Every column cut to its floor and still too wide (a 40-column terminal): left to
            # rich, the step and action columns went to nothing and the reasons were cut.
            table.width = needed
        for row in self.rows:
            table.add_row(*row)
        return table


#: The longest reason or outcome a decision table shows (``newer_cart_for_address``).
_REASON_WIDTH = max(len(word) for word in (*[reason.value for reason in Reason], "failed_permanent",
                                           "claimed_elsewhere", "render_error", "unconfirmed"))


def step_label(step: int | None, variant: str | None) -> str:
    """The step column of ``run``'s and ``carts``' table: ``1``, or ``1 (b)`` for a send in an
    A/B variant, so a dry-run shows the arm as ``--json``'s ``variant`` does."""
    if step is None:
        return ""
    return f"{step} ({variant})" if variant is not None else str(step)


class DecisionTable:
    """A table of the first ``limit`` results of ``run`` or ``carts``, with a count of the rest.

    Its columns follow the terminal (see :func:`table_mode`): below :data:`COMPACT_BELOW`
    columns cart, address, step, action and reason, where a delivered send shows its outcome
    (``sent``, ``failed_transient``) as its reason; wider, also tier, score and detail (the
    subject, or what happened); ``--wide`` every column with nothing cut. Outside ``--wide``
    every row is one line, a long address or detail cut with an ellipsis, a reason never; but a
    deferred cart's reason has a second line, when a run may act on it (``not before 2026-11-21
    07:00 UTC``, the ``not_before`` of ``--json``): at the end of its detail, that moment was
    cut below 160 columns and not shown below 120, where it is what an operator asks of a defer.
    """

    def __init__(self, limit: int | None, *, width: int = 80, wide: bool = False) -> None:
        self.limit = limit
        self.hidden = 0
        self.width = width
        self.mode = table_mode(width, wide)
        if self.mode == "compact":
            columns = [Column("cart"), Column("email"), Column("step", "right"), Column("action"), Column("reason")]
            shrink = [("email", 20), ("cart", 12), ("email", 12), ("cart", 8)]
        else:
            columns = [Column("cart"), Column("email"), Column("tier"), Column("score", "right"),
                       Column("step", "right"), Column("action"), Column("reason"), Column("detail")]
            shrink = [("detail", 40), ("email", 24), ("tier", 8), ("cart", 12), ("detail", 10), ("email", 12),
                      ("cart", 8), ("tier", 4)]
        self.rows = FitTable(columns, shrink, wide=wide)
        self.rows.at_least("reason", _REASON_WIDTH)  # never cut, and as wide in every run

    @property
    def table(self) -> Any:
        """The rich table for this terminal."""
        return self.rows.render(self.width)

    @property
    def full(self) -> bool:
        return self.limit is not None and self.rows.row_count >= self.limit

    def add(self, result: Result) -> None:
        if self.full:
            self.hidden += 1
            return
        decision = result.decision
        subject = result.message.subject if result.message is not None else None
        self._add(decision.cart.id, decision.cart.customer.email, step_label(decision.step, decision.variant),
                  decision.action.value, decision.reason.value, result.delivery, decision.tier, decision.score,
                  detail_of(result), subject, decision.not_before)

    def add_row(self, row: dict[str, Any]) -> None:
        """One row from a result's JSON form (:func:`result_dict`; a worker's ``--json`` line)."""
        if self.full:
            self.hidden += 1
            return
        not_before = row.get("not_before")
        self._add(row.get("cart_id") or "", row.get("email"), step_label(row.get("step"), row.get("variant")),
                  row.get("action") or "",
                  row.get("reason") or "", row.get("delivery") or "", row.get("tier"), row.get("score"),
                  row.get("detail") or "", row.get("subject"),
                  datetime.fromisoformat(not_before.replace("Z", "+00:00")) if not_before else None)

    def _add(self, cart_id: str, email: str | None, step: str, action: str, reason: str, delivery: str,
             tier: str | None, score: float | None, detail: str, subject: str | None,
             not_before: datetime | None) -> None:
        from rich.text import Text

        delivered = delivery not in ("", "dry-run", "held_out")
        # Cells from shop data are Text, never markup, and without terminal control characters.
        cart = Text(printable(cart_id))
        address = Text(printable(email or "-"))
        step_cell = printable(step)
        action_cell = Text(action, style=ACTION_STYLE.get(action, ""))
        why = printable(delivery if delivered and self.mode == "compact" else reason)
        if not_before is not None:
            why += "\n" + with_not_before("", not_before)
        if self.mode == "compact":
            self.rows.add_row(cart, address, step_cell, action_cell, why)
            return
        if delivered:
            detail = f"{delivery}: {detail}" if detail else delivery
        elif subject is not None:
            detail = subject
        self.rows.add_row(
            cart, address, Text(printable(tier or "")), "" if score is None else score_text(score),
            step_cell, action_cell, why, Text(printable(detail)),
        )


class Meter:
    """What a run reports its progress to: ``meter(n)`` for every ``n`` carts done, and
    :meth:`total` once the source has said how much there is to read. ``unit`` names what is
    counted (carts, or the codes ``codes generate`` makes)."""

    def __init__(self, bar: Any, task: Any, unit: str = "carts") -> None:
        self.bar = bar
        self.task = task
        self.unit = unit
        self.carts = 0
        self.position: Callable[[], int] | None = None
        self.started = time.monotonic()

    def total(self, total: ProgressTotal) -> None:
        """The bar gets a total, so a percentage and an ETA: bytes of a file, or a count of carts."""
        self.position = total.position if total.unit == "bytes" else None
        self.bar.update(self.task, total=max(total.total, 1))

    def __call__(self, n: int) -> None:
        self.carts += n
        elapsed = time.monotonic() - self.started
        rate = f"{self.carts / elapsed:,.0f} {self.unit}/s" if elapsed > 0 else ""
        done = f"{self.carts:,} {self.unit}"
        if self.position is not None:
            self.bar.update(self.task, completed=self.position(), carts=done, rate=rate)
        else:
            self.bar.update(self.task, advance=n, carts=done, rate=rate)


class _Off:
    """The meter when nobody watches (``--json``, ``--quiet``, not a terminal): does nothing."""

    def __call__(self, n: int) -> None:
        pass

    def total(self, total: ProgressTotal) -> None:
        pass


@contextmanager
def progress(console: Any, enabled: bool, label: str, unit: str = "carts") -> Iterator[Any]:
    """A progress bar on a terminal: carts (or another ``unit``) done, rate, and -- once the
    source tells how much there is (:meth:`Meter.total`) -- the share done and the time left."""
    if not enabled:
        yield _Off()
        return
    from rich.progress import (
        BarColumn,
        Progress,
        SpinnerColumn,
        TaskProgressColumn,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    with Progress(SpinnerColumn(), TextColumn(label), BarColumn(), TaskProgressColumn(),
                  TextColumn("{task.fields[carts]}"), TextColumn("{task.fields[rate]}"), TimeElapsedColumn(),
                  TextColumn("ETA"), TimeRemainingColumn(), console=console, transient=True) as bar:
        yield Meter(bar, bar.add_task(label, total=None, carts="", rate=""), unit)
