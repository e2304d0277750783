"""`report-all`: what every shop of an agency won back, one row a shop, totals per currency.

Each shop's figures are its own ``report``'s (:func:`cartrescue.commands.report.compute`, the
one entry point of ``report``), never derived again here: a row is what ``report --json`` of
that config says for the same period. One shop that cannot be reported (a bad config, a source
that cannot be read) costs only its row. Amounts are added only within one currency: an
agency's kronor and euros are two totals, never one. With ``--jobs N`` each shop is reported in
a process of its own (:func:`cartrescue.batch.run_shops`, as ``run-all`` runs its shops), by this
same command for its one config, whose row is taken as it is: the output is the same whatever N.
"""

from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any

import typer

from cartrescue.commands.common import (
    ConfigsArgument,
    JobsOption,
    JsonOption,
    NowOption,
    err_console,
    error_line,
    json_out,
    out_console,
    say_shops_interrupted,
)
from cartrescue.commands.report import SinceOption, UntilOption, check_period
from cartrescue.errors import ConfigError

#: The summary's counts a currency's total adds up (its amounts: ``revenue``, ``incentive_cost``).
_COUNTS = ("messages", "recipients", "orders", "converted_carts")


@dataclass(slots=True)
class ShopReport:
    """One shop's row: its own report's figures, or the error that kept it from being reported."""

    config: Path
    shop: str | None = None
    document: dict[str, Any] | None = None
    error: dict[str, Any] | None = None
    notes: list[str] = field(default_factory=list)  # on what no currency's total holds of it (:func:`_shop_notes`)
    said: bool = True  # its error is on stderr already (a line of its report's, or of report-all's)

    @property
    def exit_code(self) -> int:
        return 0 if self.error is None else int(self.error["exit_code"])

    @property
    def currency(self) -> str | None:
        return None if self.document is None else self.document["currency"]

    @property
    def incentive_cost(self) -> str | None:
        """The incentives the report costs, in the shop's currency to its minor unit (as the
        report's amounts are): its tiers' ``incentive_cost`` added up. ``None`` for a report whose
        orders are in several currencies (its ``by_currency`` gives the cost in each)."""
        from cartrescue.report.analysis import in_currency

        if self.document is not None and "by_currency" in self.document:
            return None
        tiers = [] if self.document is None else self.document["money"]["by_tier"]
        return in_currency(sum((Decimal(tier["incentive_cost"]) for tier in tiers), Decimal(0)), self.currency)

    def amounts(self, key: str) -> str:
        """``summary[key]`` or the incentive cost as the table shows it: with its currency (a krona
        shop's cost beside a euro shop's read as one figure), or, for a shop whose orders are in
        several currencies, in each of them (never their sum)."""
        assert self.document is not None
        several = self.document.get("by_currency")
        if several is not None:
            return ", ".join(f"{entry[key]} {code}" for code, entry in several.items())
        value = self.incentive_cost if key == "incentive_cost" else self.document["summary"][key]
        return f"{value} {self.currency or ''}".rstrip()

    @classmethod
    def of_process(cls, run: Any) -> "ShopReport":
        """The row of a shop reported in a process of its own (``report-all --jobs N``): the row
        and notes of its one-config ``report-all --json``, as they are; or, for a report that
        never started, was killed or ended without its document, the error that says so."""
        from cartrescue.batch import lost_row_error, own_row

        shop = cls(run.config)
        row = own_row(run)
        if row is not None:
            shop.shop, shop.error, shop.notes = row.get("shop"), row.get("error"), list((run.trailer or {}).get("notes") or [])
            if shop.error is None:
                shop.document = {key: row[key] for key in ("currency", "summary", "money", "notes", "by_currency")
                                 if key in row}
            return shop
        shop.error, shop.said = lost_row_error(run, "report-all", "the report")
        return shop

    def as_json(self) -> dict[str, Any]:
        from cartrescue.text import path_text

        row: dict[str, Any] = {"config": path_text(self.config), "shop": self.shop, "exit_code": self.exit_code}
        if self.error is not None:
            row["error"] = self.error
            return row
        assert self.document is not None
        row.update(currency=self.currency, summary=self.document["summary"], money=self.document["money"],
                   incentive_cost=self.incentive_cost, notes=self.document["notes"])
        if "by_currency" in self.document:  # its orders in several currencies: no sum, an amount in each
            row["by_currency"] = self.document["by_currency"]
        return row


def report_all(
    configs: ConfigsArgument,
    as_json: JsonOption = False,
    now: NowOption = None,
    since: SinceOption = None,
    until: UntilOption = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help=(
        "Print nothing but errors and warnings (the shops that could not be reported, a shop's bad order row)."))] = False,
    jobs: JobsOption = None,
) -> None:
    """What every shop won back: each shop's `report` for the same period, one row a shop (shop,
    config, messages sent, orders attributed and carts recovered, revenue attributed and incentive
    cost in the shop's currency, exit code), and totals per currency: amounts in different
    currencies are never added together. A shop without `shop.currency` is in no total (a note).

    Each row is exactly what `report --json --config CONFIG` says for that period. A shop that
    cannot be reported (a bad config, its source unreadable) costs only its row, which names its
    config and error; the others are reported. What a shop's report says on stderr (a bad order
    row) starts with its config, as run-all's lines do. A --since, --until or --now that is no
    date, or a --since after the --until, is one error before any shop is read (exit 2). Writes
    nothing but what each shop's `report` writes (with `report.auto_promote`, a promoted A/B
    winner). See docs/reporting.md.

    With --jobs N (default: the cores, at most 8) N shops are reported at once, each in a process
    of its own forked from this one, as run-all runs them: the rows stay in the order of the
    configs given, and the output is the same whatever N (--jobs 1 reads them one after another
    in this process).

    Exit code: the most serious of the shops', ranked as `run-all` ranks them: 70 a bug, 2 a
    config or ledger error, 3 a source that cannot be read; 0 every shop was reported (130
    interrupted: Ctrl-C or SIGTERM).

    Example (last week, for every shop of an agency):

        cartrescue report-all --since 2026-11-16 --until 2026-11-22 /srv/shops/*/cartrescue.yaml
    """
    from cartrescue.batch import config_files, shop_jobs
    from cartrescue.commands.common import fail, parse_now
    from cartrescue.commands.shops_progress import each_here
    from cartrescue.workers import worst_exit_code

    try:  # a typo here is the command's (exit 2, once), not a row of every shop
        parse_now(now)
        check_period(since, until)
    except ConfigError as error:
        fail(error, as_json)
    files = config_files(configs)
    bar = not (as_json or quiet) and len(files) > 1
    if shop_jobs(jobs) == 1 or len(files) == 1:  # a stop keeps a row a shop, as doctor-all's
        shops, interrupted = each_here(files, bar, lambda config: _report_shop(config, now, since, until),
                                       lambda config, error: ShopReport(config, error=error),
                                       command="report-all", halted="its report was stopped")
    else:
        shops, interrupted = _report_in_processes(files, shop_jobs(jobs), bar, now, since, until)
    code = worst_exit_code([shop.exit_code for shop in shops] + ([130] if interrupted else []))
    totals, notes = _totals(shops)
    if as_json:
        document: dict[str, Any] = {"shops": [shop.as_json() for shop in shops], "totals": totals, "notes": notes,
                                    "exit_code": code}
        if interrupted:  # as every interrupted command's document says it (and run-all's)
            document["error"] = {"code": "interrupted", "exit_code": 130, "message": "interrupted"}
        json_out(document)
    elif not quiet:
        _print_table(shops, totals)
        for note in [*_reports_notes(shops), *notes]:
            err_console().print(error_line(note, "note", "yellow"), soft_wrap=True)
    if interrupted:
        say_shops_interrupted([(shop.config, shop.error) for shop in shops], "report-all", "reported")
    if code:
        raise typer.Exit(code)


#: What a shop's report imports on its way to its figures: imported once before the shops are forked.
REPORT_PRELOAD = ("cartrescue.commands.report", "cartrescue.report.build", "cartrescue.report.analysis",
                  "cartrescue.job", "cartrescue.sources.csv")


def _report_in_processes(files: list[Path], jobs: int, bar: bool, now: str | None, since: str | None,
                         until: str | None) -> tuple[list[ShopReport], bool]:
    """Every shop's report in a process of its own, ``jobs`` at once (:func:`cartrescue.batch.run_shops`,
    as run-all's shops run): each is this command for its one config, ``--json --jobs 1``, whose
    row is taken as it is; its stderr's lines come through, naming its config. The shops' rows, in
    the order given, and whether a stop (Ctrl-C, SIGTERM) ended the batch."""
    from cartrescue.commands.shops_progress import each_in_process

    period = [*(["--now", now] if now else []), *(["--since", since] if since else []),
              *(["--until", until] if until else [])]
    return each_in_process("report-all", period, files, jobs=jobs, bar=bar, preload=REPORT_PRELOAD,
                           row=ShopReport.of_process)


def _report_shop(config: Path, now: str | None, since: str | None, until: str | None) -> ShopReport:
    """One shop's report, or its error said on stderr as one line naming its config."""
    from cartrescue.batch import shop_stderr
    from cartrescue.commands.common import shop_failed
    from cartrescue.commands.report import compute

    shop = ShopReport(config)
    try:
        with shop_stderr(config):  # its warnings (a bad order row) name it, as run-all's lines do
            shop.document, loaded = compute(config, now, since, until)
        shop.shop = loaded.shop.name
    except Exception as exc:  # noqa: BLE001 - a bug in one shop's report costs its row, as a config error does
        shop.error = shop_failed(config, exc)
    shop.notes = _shop_notes(shop)
    return shop


def _reports_notes(shops: list[ShopReport]) -> list[str]:
    """The notes of each shop's own report (an orders export its job stopped writing, a ledger
    not there yet), each naming its config: its row's figures alone would pass for all there is."""
    from cartrescue.batch import named

    return [named(shop.config, note) for shop in shops if shop.document is not None for note in shop.document["notes"]]


def _shop_notes(shop: ShopReport) -> list[str]:
    """What no currency's total holds of ``shop``: all of it (no ``shop.currency``), or its orders
    in other currencies without a rate. Kept with its row: a shop reported in a process of its
    own brings them back in its document (``notes``), where its report is no longer at hand."""
    from cartrescue.batch import named

    if shop.document is None:
        return []
    if shop.currency is None:
        return [named(shop.config, "shop.currency is not set: its amounts are in no currency's total")]
    if shop.document.get("unconverted"):
        listed = ", ".join(f"{entry['orders']} in {entry['currency']}" for entry in shop.document["unconverted"])
        return [named(shop.config, f"orders in other currencies without a rate ({listed}) are left out of its "
                                   "revenue (shop.exchange_rates)")]
    return []


def _totals(shops: list[ShopReport]) -> tuple[dict[str, dict[str, Any]], list[str]]:
    """Per currency: how many shops, their counts and amounts added up; and the notes on what no
    total holds (a shop without ``shop.currency``, orders left out for want of a rate).

    The report's modules are imported only where there is a total: a shop's report that came back
    had them imported whole, while a stop (Ctrl-C, SIGTERM) may have left them half imported, and
    importing them again then failed (exit 70 in place of the interrupted document)."""
    totals: dict[str, dict[str, Any]] = {}
    notes = [note for shop in shops for note in shop.notes]
    for shop in shops:
        if shop.document is None or shop.currency is None:
            continue
        summary = shop.document["summary"]
        total = totals.setdefault(shop.currency, {"shops": 0, **{key: 0 for key in _COUNTS},
                                                  "revenue": Decimal(0), "incentive_cost": Decimal(0)})
        total["shops"] += 1
        for key in _COUNTS:
            total[key] += summary[key]
        total["revenue"] += Decimal(summary["revenue"])
        total["incentive_cost"] += Decimal(shop.incentive_cost or 0)
    if totals:
        from cartrescue.report.analysis import in_currency

        for currency, total in totals.items():  # amounts are strings in --json, as the report's own are
            for key in ("revenue", "incentive_cost"):
                total[key] = in_currency(total[key], currency)
    return dict(sorted(totals.items())), notes


def _print_table(shops: list[ShopReport], totals: dict[str, dict[str, Any]]) -> None:
    """One line a shop (an agency's 30 or 300 stay readable), then a line per currency's total.

    The figures are never cut: on a terminal the shop's name, its config and the error give way
    (cut with "…"); elsewhere (cron's mail, a file) the line is as wide as it needs, as run-all's."""
    from rich import box
    from rich.table import Table
    from rich.text import Text

    from cartrescue.text import counted, path_text, printable

    failed = any(shop.error is not None for shop in shops)
    rows: list[list[str]] = []
    for shop in shops:
        if shop.document is None:
            error = shop.error or {}
            message = printable(error.get("message", "")).removeprefix(f"{path_text(shop.config)}: ")
            rows.append(["", "", "", "", "", str(shop.exit_code), f"{error.get('code', '')}: {message}"])
            continue
        summary = shop.document["summary"]
        rows.append([f"{summary['messages']:,}", f"{summary['orders']:,}", f"{summary['converted_carts']:,}",
                     shop.amounts("revenue"), shop.amounts("incentive_cost"),
                     str(shop.exit_code), ""])
    sums = [[f"{total['messages']:,}", f"{total['orders']:,}", f"{total['converted_carts']:,}",
             f"{total['revenue']} {currency}", f"{total['incentive_cost']} {currency}", "", ""]
            for currency, total in totals.items()]
    # A total is one currency's shops, not every shop's: "all (2 shops)" under a table of three
    # passed the euro shops' messages and orders off as the agency's.
    names = [printable(shop.shop or "") for shop in shops] + [
        f"all in {currency} ({counted(t['shops'], 'shop')})" for currency, t in totals.items()]
    configs = [path_text(shop.config) for shop in shops]
    console = out_console()
    headers = ("sent", "orders", "carts", "revenue", "incentives", "exit")
    widths = [max([len(header), *(len(row[n]) for row in rows + sums)]) for n, header in enumerate(headers)]
    shop_width, config_width, error_width = (max([len(header), *map(len, column)]) for header, column in (
        ("shop", names), ("config", configs), ("error", [row[-1] for row in rows] if failed else [])))
    left = console.width - sum(widths) - 3 * (len(widths) + 2 + failed) - 1  # what the padding leaves
    if not console.is_terminal:
        console.width += max(0, shop_width + config_width + error_width - left)
    else:  # the figures whole; the shop's name, then its config, then the error share what is left
        if failed and left < 40:  # a narrow terminal: the error is on stderr, a line each
            failed, left = False, left + 3
        shop_width = min(shop_width, 30, max(4, left // (4 if failed else 3)))
        config_width = min(config_width, max(6, left - shop_width - (16 if failed else 0)))
        error_width = max(8, left - shop_width - config_width)
    table = Table(title=f"report-all: {counted(len(shops), 'shop')}", title_justify="left", box=box.SIMPLE_HEAD)
    table.add_column("shop", no_wrap=True, overflow="ellipsis", width=shop_width)
    table.add_column("config", no_wrap=True, overflow="ellipsis", width=config_width)
    for header, width in zip(headers, widths):
        table.add_column(header, justify="right", no_wrap=True, width=width)
    if failed:  # its kind and message; the whole line, naming the config, is on stderr
        table.add_column("error", no_wrap=True, overflow="ellipsis", width=error_width)
    for name, config, row in zip(names, configs, rows):
        reason = [Text(row[-1], style="red")] if failed else []
        table.add_row(Text(name), Text(config), *row[:-1], *reason)
    if sums:
        table.add_section()
    for name, row in zip(names[len(shops):], sums):
        table.add_row(name, "", *row[:-1], *([""] if failed else []))
    console.print(table)
