"""The report in the terminal: rich tables, every value from data printed as text.

Owns the terminal layout: the headline (attributed and incremental side by side), the lift with
its sentence, A/B results, money per tier, the funnel, and the breakdowns asked for with
``--by``. Every value goes through :func:`cartrescue.text.printable` into a rich ``Text`` (data
is never markup). It must not compute anything.
"""

from __future__ import annotations

from typing import Any

from rich.cells import cell_len
from rich.console import Console
from rich.table import Table
from rich.text import Text

from cartrescue.output import narrow
from cartrescue.report.files import NOT_ONE_CURRENCY, each_currency, headline, percent, points, shown
from cartrescue.text import printable

LABELS = {"step": "step", "tier": "tier", "variant": "variant", "locale": "locale", "channel": "channel", "day": "day"}


def _t(value: Any, style: str = "") -> Text:
    return Text(printable("–" if value is None else value), style=style)


def _table(title: str, columns: list[str]) -> Table:
    table = Table(title=Text(title, style="bold"), title_justify="left", header_style="bold")
    for index, column in enumerate(columns):
        table.add_column(column, justify="left" if index == 0 else "right")
    return table


#: A cell longer than this may wrap between its words (the headline's "€75.00 (-€2,669.58 to
#: €2,819.58)"); a shorter one, a figure, is never broken or cut.
_WHOLE_UP_TO = 24
#: The narrowest a header is shortened to ("messa…") before the table is printed wider instead.
_HEADER_LEAST = 6


def _show(console: Console, table: Table) -> None:
    """Print ``table`` with every figure whole. Left to rich, a table wider than the console
    (80 columns in a pipe or cron's mail) cut its cells to fit: "SEK34,2…", an ROI "114133…",
    a tier "standa…". Labels and headers wrap between their words, then a header is shortened
    ("messa…", never below :data:`_HEADER_LEAST`); a table still too wide is printed wider
    than the console (a terminal folds its lines) rather than cut."""
    naturals, words, figures = [], [], []
    for index, column in enumerate(table.columns):
        cells = [cell.plain if isinstance(cell, Text) else str(cell) for cell in column.cells]
        header = column.header.plain if isinstance(column.header, Text) else str(column.header)
        naturals.append(max([cell_len(header), *map(cell_len, cells)]))
        whole = max([0, *(cell_len(c) if index and cell_len(c) <= _WHOLE_UP_TO else _longest_word(c) for c in cells)])
        words.append(max(whole, _longest_word(header)))
        figures.append(max(whole, min(_longest_word(header), _HEADER_LEAST)))
    borders = 3 * len(naturals) + 1  # "│ " before each cell and " │" after the last
    excess = sum(naturals) + borders - console.width
    if excess <= 0:
        console.print(table)
        return
    widths = list(naturals)
    for floors in (words, figures):  # headers' words whole while that fits, then shortened headers
        excess = narrow(widths, floors, excess)
    for column, width in zip(table.columns, widths):
        column.width = width
    if excess > 0:
        table.width = sum(widths) + borders
    console.print(table, crop=False)


def _rate(rate: float | None, interval: list[float], digits: int = 1) -> str:
    """A conversion rate with its 95 % interval, ``6.9 % (3.7–12.5)``: of the held-out
    comparison and of each A/B arm (docs/reporting.md gives both the interval)."""
    low, high = interval
    return f"{percent(rate, digits)} ({low * 100:.1f}–{high * 100:.1f})"


def _longest_word(text: str) -> int:
    return max((cell_len(word) for word in text.split()), default=0)


def print_report(document: dict[str, Any], console: Console, by: list[str], locale: str) -> None:
    """The report; amounts in its currency as ``locale`` (``shop.default_locale``) writes it."""
    period, summary, lift = document["period"], document["summary"], document["incrementality"]
    currency = document["currency"] or ""
    several = "by_currency" in document  # orders in several currencies: an amount in each, never their sum

    def money(value: str | None) -> str | None:
        return shown(value, currency, locale)

    console.print(Text.assemble(("cartrescue report ", "bold"), printable(
        f"{period['first_day']} – {period['last_day']} ({period['timezone']}) · attribution window "
        f"{period['attribution_window_days']:g} days · "
        f"{currency or ('amounts per currency' if several else 'amounts as the shop gives them')}")))
    head = _table("Won back", ["", "attributed (any order after a message)", "incremental (against the holdout)"])
    if lift["measured"]:
        revenue, orders = lift["incremental_revenue"], lift["incremental_orders"]
        bounds = revenue["interval"]
        incremental_revenue = (NOT_ONE_CURRENCY if revenue["estimate"] is None
                               else f"{money(revenue['estimate'])} ({money(bounds[0])} to {money(bounds[1])})" if bounds
                               else f"{money(revenue['estimate'])} (no interval)")
        incremental_orders = (f"{orders['estimate']:,.0f} ({orders['interval'][0]:,.0f} to "
                              f"{orders['interval'][1]:,.0f})")
        conversion = f"{points(lift['absolute']['estimate'])} points"
    else:
        incremental_revenue = incremental_orders = conversion = "not measured"
    head.add_row(_t("revenue"), _t(headline(document, "revenue", locale)), _t(incremental_revenue))
    head.add_row(_t("orders"), _t(f"{summary['orders']:,}"), _t(incremental_orders))
    head.add_row(_t("conversion"), _t(f"{summary['converted_carts']:,} of {summary['recipients']:,} carts "
                                      f"({percent(summary['conversion_rate'])})"), _t(conversion))
    head.add_row(_t("revenue per recipient"), _t(headline(document, "revenue_per_recipient", locale)), _t(""))
    if several:  # the money table's incentive cost is left out: here it is per currency
        head.add_row(_t("incentive cost"), _t(each_currency(document, "incentive_cost", locale)), _t(""))
    _show(console, head)
    console.print(_t(lift["sentence"], "bold" if lift["measured"] else "yellow"))
    if lift.get("contamination_note"):
        console.print(_t(lift["contamination_note"], "dim"))
    if lift["measured"]:
        groups = _table("Treated and held-out carts", ["group", "carts", "converted", "rate (95 %)", "revenue per cart"])
        for label, arm in (("messaged", lift["treated"]), ("held out", lift["holdout"])):
            groups.add_row(_t(label), _t(f"{arm['carts']:,}"), _t(f"{arm['converted']:,}"),
                           _t(_rate(arm["rate"], arm["interval"])),
                           _t(money(arm["revenue_per_cart"])))
        _show(console, groups)
    for experiment in document["experiments"]:
        if not experiment["variants"]:  # promoted earlier, no message of the step in the period: no table
            console.print(Text.assemble((f"A/B: {experiment['sequence']} step {experiment['step']}: ", "bold"),
                                        _t(experiment["verdict"])))
            continue
        table = _table(f"A/B: {experiment['sequence']} step {experiment['step']} (control {experiment['control']})",
                       ["variant", "recipients", "conversions", "rate (95 %)", "revenue / recipient",
                        "P(beats control)", "P(best)"])
        for arm in experiment["variants"]:
            table.add_row(_t(arm["variant"]), _t(f"{arm['recipients']:,}"), _t(f"{arm['conversions']:,}"),
                          _t(_rate(arm["conversion_rate"], arm["interval"], 2)),
                          _t(money(arm["revenue_per_recipient"])),
                          _t(percent(arm["p_beats_control"], 0)), _t(percent(arm["p_best"], 0)))
        _show(console, table)
        promoted = experiment.get("promoted")
        line = experiment["verdict"] + (f" — promoted {promoted['variant']} on {promoted['at'][:10]}" if promoted else "")
        console.print(_t(line, "green" if experiment["winner"] else ""))
    spent = document["money"]
    if spent["by_tier"]:
        gross = "margin" if spent["basis"] == "margin" else "revenue"
        table = _table("Money in, money out (per tier" + (f", {currency})" if currency else ")"),
                       ["tier", "messages", "orders", gross, "sending cost", "incentive cost", "net", "ROI"])
        for row in spent["by_tier"]:
            table.add_row(_t(row["tier"]), _t(f"{row['messages']:,}"), _t(f"{row['orders']:,}"), _t(money(row["gross"])),
                          _t(money(row["channel_cost"])), _t(money(row["incentive_cost"])), _t(money(row["net"])),
                          _t(None if row["roi"] is None else f"{row['roi']:.1f}×"))
        _show(console, table)
    funnel = document["funnel"]
    table = _table("Funnel", ["stage", "carts"])
    for stage in ("seen", "eligible", "messaged", "ordered"):
        table.add_row(_t(stage), _t(f"{funnel[stage]:,}"))
    for skip in funnel["skips"][:5]:
        table.add_row(_t(f"  skipped: {skip['reason']}", "dim"), _t(f"{skip['carts']:,}", "dim"))
    _show(console, table)
    survey = document.get("survey") or {}
    if survey.get("answers"):
        table = _table("Why carts were left", ["survey answer", "carts", "share"])
        for reason, figures in survey["reasons"].items():
            table.add_row(_t(reason), _t(f"{figures['count']:,}"), _t(percent(figures["share"], 0)))
        _show(console, table)
    for name in by:
        _print_breakdown(console, name, document["breakdowns"][name], currency, locale)
    for note in document["notes"]:
        console.print(Text.assemble(("note: ", "yellow"), printable(note)))


def _print_breakdown(console: Console, name: str, rows: list[dict[str, Any]], currency: str, locale: str) -> None:
    def money(value: str | None) -> str | None:
        return shown(value, currency, locale)

    if name == "day":
        table = _table("By day", ["day", "messages", "held out", "orders", f"revenue {currency}".strip()])
        for row in rows:
            table.add_row(_t(row["day"]), _t(f"{row['messages']:,}"), _t(f"{row['held_out']:,}"),
                          _t(f"{row['orders']:,}"), _t(money(row["revenue"])))
        _show(console, table)
        return
    if not rows:  # as the HTML page's charts say it; an empty table read as a broken one
        console.print(Text.assemble((f"By {LABELS[name]}", "bold"), ": no messages in this period."))
        return
    table = _table(f"By {LABELS[name]}", [LABELS[name], "recipients", "conversions", "rate", "orders",
                                          f"revenue {currency}".strip(), "per recipient"])
    for row in rows:
        if name == "step":
            label = f"{row['sequence'] or '?'} {row['step']}"
        elif name == "variant":
            label = f"{row['sequence'] or '?'} {row['step']} {row['variant']}"
        else:
            label = row[name] or "(unknown)"
        table.add_row(_t(label), _t(f"{row['recipients']:,}"), _t(f"{row['conversions']:,}"),
                      _t(percent(row["conversion_rate"])), _t(f"{row['orders']:,}"), _t(money(row["revenue"])),
                      _t(money(row["revenue_per_recipient"])))
    _show(console, table)
