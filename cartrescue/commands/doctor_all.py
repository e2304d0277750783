"""`doctor-all`: every shop's health check in one command, one row a shop, one exit code.

An agency's hourly check was a shell loop of ``doctor --quiet --config X``: an interpreter start
per shop, one shop at a time, each waiting up to ``--timeout`` on a dead relay, so 200 shops with
a few dead relays took many minutes. Each row here is the shop's own ``doctor --json`` result
(:func:`cartrescue.doctor.run_checks`, the one owner of the checks and their exit code), never
judged again. One shop whose config cannot even be loaded costs only its row (its config check
fails, as its doctor's does). With ``--jobs N`` each shop is checked in a process of its own
(:func:`cartrescue.batch.run_shops`, as ``run-all`` and ``report-all`` run theirs) by this same
command for its one config, whose row is taken as it is: the output is the same whatever N.
"""

from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import typer

from cartrescue.commands.common import ConfigsArgument, JobsOption, JsonOption
from cartrescue.commands.doctor import NoSmtpOption, TimeoutOption
from cartrescue.errors import ConfigError

#: What a shop's doctor imports on its way to its checks: imported once before the shops are forked.
DOCTOR_PRELOAD = ("cartrescue.doctor", "cartrescue.config", "cartrescue.ledger", "cartrescue.sources.csv",
                  "aiosmtplib")


@dataclass(slots=True)
class ShopHealth:
    """One shop's row: its doctor's checks and exit code, or the error that kept them from it
    (a bug, a process killed, a stop)."""

    config: Path
    shop: str | None = None  # its ``shop.name``, where its config loaded
    exit_code: int = 0
    checks: list[dict[str, Any]] = field(default_factory=list)  # as its ``doctor --json`` lists them
    error: dict[str, Any] | None = None
    said: bool = True  # its error is on stderr already

    @property
    def status(self) -> str:
        """``fail`` for a non-zero exit; ``warn`` where a check warned; else ``ok``."""
        from cartrescue.doctor import FAIL, OK, WARN

        if self.exit_code:
            return FAIL
        return WARN if any(check.get("status") == WARN for check in self.checks) else OK

    def failed(self) -> list[Any]:
        """The failed checks, as :class:`cartrescue.doctor.Check` (``doctor --quiet`` prints those)."""
        from cartrescue.doctor import FAIL, Check

        return [Check(**check) for check in self.checks if check.get("status") == FAIL]

    @classmethod
    def of_process(cls, run: Any) -> "ShopHealth":
        """The row of a shop checked in a process of its own (``--jobs N``): the row of its
        one-config ``doctor-all --json``, as it is; or, for a doctor that never started, was
        killed or ended without its document, the error that says so."""
        from cartrescue.batch import lost_row_error, own_row

        row = own_row(run)
        if row is not None:
            return cls(run.config, row.get("shop"), int(row["exit_code"]), list(row.get("checks") or []),
                       row.get("error"))
        error, said = lost_row_error(run, "doctor-all", "the doctor")
        return cls(run.config, exit_code=int(error.get("exit_code", run.exit_code)), error=error, said=said)

    def as_json(self) -> dict[str, Any]:
        from cartrescue.text import path_text

        row: dict[str, Any] = {"config": path_text(self.config), "shop": self.shop, "exit_code": self.exit_code,
                               "checks": self.checks}
        if self.error is not None:
            row["error"] = self.error
        return row


def doctor_all(
    configs: ConfigsArgument,
    as_json: JsonOption = False,
    quiet: Annotated[bool, typer.Option(
        "--quiet", "-q", help="For cron: print nothing when every shop is healthy, else one line per failed check, "
                              "naming its config, as `doctor --quiet` prints it.")] = False,
    no_smtp: NoSmtpOption = False,
    timeout: TimeoutOption = None,
    jobs: JobsOption = None,
) -> None:
    """Every shop's `doctor`, one row a shop: its config, its shop's name, ok / warn / fail, its
    exit code, and its failed checks with the first one's detail; then how many shops are
    healthy and how many failing. Each row is exactly what `doctor --json --config CONFIG` says
    (`--json`: its `checks`). A shop whose config cannot be loaded costs only its row.

    With --jobs N (default: the cores, at most 8) N shops are checked at once, each in a process
    of its own, as run-all runs them: a few dead relays, each held up to --timeout (30s), no
    longer hold up the shops after them. The rows stay in the order of the configs given, and
    the output is the same whatever N (--jobs 1 checks them one after another in this process).

    Exit code: the most serious of the shops' doctor codes, ranked as `run-all` ranks them: 128 + n
    a shop's doctor killed by signal n, 70 a bug, 130 interrupted (Ctrl-C or SIGTERM), 2 config
    or ledger, 3 source, 5 stale (reminders stopped, or an export not written), 1 SMTP (or the
    webhook, the SMS provider), 0 every shop is healthy (a warning too). A --timeout that is no duration is one error before any shop is checked (exit 2).

    Example (cron, hourly: mails the owner only the failed checks, each naming its shop's config):

        0 * * * * cartrescue doctor-all --quiet /srv/shops/*/cartrescue.yaml
    """
    from cartrescue.batch import config_files, shop_jobs
    from cartrescue.commands.common import fail, json_out, parse_timeout, say_shops_interrupted
    from cartrescue.workers import worst_exit_code

    try:  # a typo here is the command's (exit 2, once), not a row of every shop
        parse_timeout(timeout)
    except ConfigError as error:
        fail(error, as_json)
    files = config_files(configs)
    bar = not (as_json or quiet) and len(files) > 1
    if shop_jobs(jobs) == 1 or len(files) == 1:
        shops, interrupted = _check_here(files, bar, smtp=not no_smtp, timeout=timeout)
    else:
        options = [*(["--no-smtp"] if no_smtp else []), *(["--timeout", timeout] if timeout else [])]
        shops, interrupted = _check_in_processes(files, shop_jobs(jobs), bar, options)
    code = worst_exit_code([shop.exit_code for shop in shops] + ([130] if interrupted else []))
    if as_json:
        document: dict[str, Any] = {"shops": [shop.as_json() for shop in shops], "exit_code": code}
        if interrupted:  # as every interrupted command's document says it (and run-all's, report-all's)
            document["error"] = {"code": "interrupted", "exit_code": 130, "message": "interrupted"}
        json_out(document)
    elif quiet:
        from cartrescue.commands.doctor import print_failures

        for shop in shops:
            print_failures(shop.failed(), shop.config)
    else:
        _print_table(shops)
    if interrupted:
        say_shops_interrupted([(shop.config, shop.error) for shop in shops], "doctor-all", "checked")
    if code:
        raise typer.Exit(code)


def _check_here(files: list[Path], bar: bool, *, smtp: bool, timeout: str | None) -> tuple[list[ShopHealth], bool]:
    """Every shop's doctor in this process, one after another (``--jobs 1``, or one shop), and
    whether a stop (Ctrl-C, SIGTERM) ended them: the shop it stopped and those after it keep
    their rows, so the one document still has a row a shop."""
    from cartrescue.commands.common import parse_timeout
    from cartrescue.commands.shops_progress import each_here
    from cartrescue.doctor import TIMEOUT

    limit = TIMEOUT if (parsed := parse_timeout(timeout)) is None else parsed
    return each_here(files, bar, lambda config: _check_shop(config, smtp, limit),
                     lambda config, error: ShopHealth(config, exit_code=130, error=error),
                     command="doctor-all", halted="its checks were stopped")


def _check_shop(config: Path, smtp: bool, limit: float) -> ShopHealth:
    """One shop's doctor, or its error (a bug: exit 70) said on stderr as one line naming its config."""
    from cartrescue.batch import shop_stderr
    from cartrescue.commands.common import shop_failed
    from cartrescue.doctor import run_checks

    shop = ShopHealth(config)
    try:
        with shop_stderr(config):  # what its checks say on stderr names it, as run-all's lines do
            report = run_checks(config, smtp=smtp, limit=limit)
        shop.shop, shop.exit_code = report.shop, report.exit_code
        shop.checks = [check.as_dict() for check in report.checks]
    except Exception as exc:  # noqa: BLE001 - a bug in one shop's checks costs its row, as a bad config does
        shop.error = shop_failed(config, exc)
        shop.exit_code = int(shop.error["exit_code"])
    return shop


def _check_in_processes(files: list[Path], jobs: int, bar: bool, options: list[str]) -> tuple[list[ShopHealth], bool]:
    """Every shop's doctor in a process of its own, ``jobs`` at once: each is this command for its
    one config, ``--json --jobs 1`` (and ``options``), whose row is taken as it is. The rows, in
    the order given, and whether a stop (Ctrl-C, SIGTERM) ended the batch."""
    from cartrescue.commands.shops_progress import each_in_process

    return each_in_process("doctor-all", options, files, jobs=jobs, bar=bar, preload=DOCTOR_PRELOAD,
                           row=ShopHealth.of_process)


def _reason(shop: ShopHealth) -> str:
    """What the table says of a shop that is not healthy: its failed checks' names and the first
    one's detail (without its config: the row names it), or its error."""
    from cartrescue.commands.doctor import unnamed
    from cartrescue.text import path_text, printable

    prefix = f"{path_text(shop.config)}: "
    if shop.error is not None:
        return printable(f"{shop.error.get('code', '')}: {shop.error.get('message', '')}".replace(prefix, "", 1))
    failed = shop.failed()
    if not failed:
        return ""
    names = ", ".join(check.name for check in failed)
    return printable(f"{names}: {unnamed(' '.join(failed[0].detail.split()), prefix)}")


def _print_table(shops: list[ShopHealth]) -> None:
    """One line a shop (an agency's 200 stay readable), then how many are healthy and failing.

    On a terminal the config, the shop's name and the reason give way (cut with "…"); elsewhere
    (cron's mail, a file) the line is as wide as it needs, as report-all's."""
    from rich import box
    from rich.table import Table
    from rich.text import Text

    from cartrescue.commands.common import out_console
    from cartrescue.commands.doctor import STATUS_STYLE
    from cartrescue.text import counted, path_text, printable

    rows = [(path_text(shop.config), printable(shop.shop or ""), shop.status, str(shop.exit_code), _reason(shop))
            for shop in shops]
    headers = ("config", "shop", "status", "exit", "failed")
    widths = [max([len(header), *(len(row[n]) for row in rows)]) for n, header in enumerate(headers)]
    console = out_console()
    if not console.is_terminal:
        console.width = max(console.width, sum(widths) + 3 * len(widths) + 2)
    else:  # status and exit whole; the config, the shop's name and the reason share what is left
        left = max(30, console.width - widths[2] - widths[3] - 3 * len(widths) - 2)
        widths[1] = min(widths[1], max(4, left // 5))
        widths[0] = min(widths[0], max(8, (left - widths[1]) // 2))
        widths[4] = max(8, left - widths[0] - widths[1])
    table = Table(title=f"doctor-all: {counted(len(shops), 'shop')}", title_justify="left", box=box.SIMPLE_HEAD)
    for header, width in zip(headers, widths):
        table.add_column(header, no_wrap=True, overflow="ellipsis", width=width,
                         justify="right" if header == "exit" else "left")
    for config, name, status, code, reason in rows:
        table.add_row(Text(config), Text(name), Text(status, style=STATUS_STYLE[status]), code,
                      Text(reason, style="red"))
    console.print(table)
    healthy = sum(1 for shop in shops if shop.exit_code == 0)
    warned = sum(1 for shop in shops if shop.status == "warn")
    also = f" ({warned} with warnings)" if warned else ""
    console.print(Text(f"{healthy} healthy{also}, {len(shops) - healthy} failing"), soft_wrap=True)
