"""`survey export` and `survey summary`: the answers customers gave to "why did you leave?"."""

import sys
from datetime import datetime, timedelta
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from cartrescue import private
from cartrescue.commands.common import (
    ConfigOption,
    ExportJsonOption,
    JsonOption,
    err_console,
    fail,
    json_out,
    load,
    out_console,
    output_file,
    reading_ledger,
    stdout_or_file,
    sub_typer,
)
from cartrescue.errors import CartrescueError, ConfigError
from cartrescue.text import counted

app = sub_typer("The cart survey: why customers left their carts, as they answered (docs/survey.md).")

SinceOption = Annotated[Optional[str], typer.Option(
    "--since", metavar="DATE", help="Only answers from this day or time on (2026-11-01, or ISO 8601; a day is the shop's).")]
UntilOption = Annotated[Optional[str], typer.Option(
    "--until", metavar="DATE", help="Last day (inclusive), or the ISO time the answers end just before (as in report).")]


def _window(cfg: Any, since: str | None, until: str | None) -> tuple[datetime | None, datetime | None]:
    """``[start, end)`` of the answers, read as ``report`` reads its period (a day given to
    ``--until`` is included), so a survey summary beside a report of the same dates agrees."""
    from cartrescue.commands.report import parse_bound, reversed_period

    tz = cfg.shop.tz
    last = parse_bound(until, tz, end=True)  # inclusive: a day's last microsecond, a time's one before
    start, end = parse_bound(since, tz, end=False), None if last is None else last + timedelta(microseconds=1)
    if start is not None and last is not None and start > last:  # as report refuses it: 0 answers said nothing
        raise ConfigError(reversed_period(cfg, since or "", until or "", start, last))
    return start, end


@app.command("export")
def survey_export(
    config: ConfigOption = None,
    as_json: ExportJsonOption = False,
    output: Annotated[Optional[Path], typer.Option("--output", "-o", metavar="FILE", help="Write the CSV here (default, or -: stdout).")] = None,
    since: SinceOption = None,
    until: UntilOption = None,
) -> None:
    """Write every answer as CSV: one row per cart (a later answer replaced an earlier one).

    Columns: answered_at, cart_key, step, reason, label, text, locale, tier, variant, email,
    answers (how often the cart was answered), first_answered_at. The free text is the
    customer's, as typed (control characters removed): open it as data, never as HTML. A cell
    starting with = + - @, a tab or a CR (also = + - @ behind spaces) gets a ' in front, so no
    spreadsheet runs it as a formula.

    Example:

        cartrescue survey export --since 2026-11-01 -o survey.csv
    """
    from cartrescue.survey import labelled, write_csv

    rows: list[dict[str, Any]] = []
    output = stdout_or_file(output)
    try:
        cfg = load(config)
        start, end = _window(cfg, since, until)
        ledger = reading_ledger(cfg)  # only reads: leaves the ledger as it is
        try:
            if output is not None:
                with output_file("--output", output), \
                        open(output, "w", encoding="utf-8", newline="", opener=private.opener) as handle:
                    count = write_csv(ledger.survey_answers(start, end), handle, cfg)
            elif as_json:
                rows = [{key: _plain(value) for key, value in row.items() if key != "id"}
                        for row in labelled(ledger.survey_answers(start, end), cfg)]
                count = len(rows)
            else:
                count = write_csv(ledger.survey_answers(start, end), sys.stdout, cfg)
        finally:
            ledger.close()
    except CartrescueError as error:
        fail(error, as_json)
    if as_json:
        json_out({"file": str(output), "answers": count} if output is not None else {"answers": count, "rows": rows},
                 config=cfg)
    elif output is not None:
        err_console().print(f"{output}: {counted(count, 'answer')}", highlight=False, markup=False)


def _plain(value: Any) -> Any:
    """A JSON value: times as ISO 8601 UTC (``...Z``)."""
    return value.isoformat().replace("+00:00", "Z") if isinstance(value, datetime) else value


@app.command("summary")
def survey_summary(
    config: ConfigOption = None,
    as_json: JsonOption = False,
    since: SinceOption = None,
    until: UntilOption = None,
) -> None:
    """Count the answers per reason, with their share, overall and per tier and locale.

    Example:

        cartrescue survey summary --since 2026-11-01 --json
    """
    from cartrescue.survey import counts

    try:
        cfg = load(config)
        start, end = _window(cfg, since, until)
        ledger = reading_ledger(cfg)  # only reads: leaves the ledger as it is
        try:
            summary = counts(ledger.survey_counts(start, end))
        finally:
            ledger.close()
    except CartrescueError as error:
        fail(error, as_json)
    if as_json:
        json_out(summary, config=cfg)
        return
    _print_summary(summary)


def _print_summary(summary: dict[str, Any]) -> None:
    from rich.table import Table
    from rich.text import Text

    from cartrescue.text import printable

    console = out_console()
    table = Table(header_style="bold", title=counted(summary["answers"], "answer"))
    for column, justify in (("group", "left"), ("reason", "left"), ("answers", "right"), ("share", "right")):
        table.add_column(column, justify=justify)  # type: ignore[arg-type]
    groups = [("all", summary["reasons"])]
    groups += [(f"tier {tier}", reasons) for tier, reasons in summary["by_tier"].items()]
    groups += [(f"locale {locale}", reasons) for locale, reasons in summary["by_locale"].items()]
    for group, reasons in groups:
        for reason, figures in reasons.items():
            table.add_row(Text(printable(group)), Text(printable(reason)), str(figures["count"]),
                          f"{figures['share']:.0%}")
    console.print(table)
