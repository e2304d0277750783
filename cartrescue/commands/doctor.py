"""`doctor`: are config, ledger, source and relay in place, and are reminders still going out?"""

from typing import Annotated, Any, Optional

import typer

from cartrescue.commands.common import ConfigOption, JsonOption, fail, json_out, out_console, parse_timeout
from cartrescue.errors import ConfigError

#: ``doctor`` and ``doctor-all``: the relay left alone.
NoSmtpOption = Annotated[bool, typer.Option("--no-smtp", help="Do not connect to the SMTP relay.")]
#: ``doctor`` and ``doctor-all`` (passed on to each shop's): how long a server may keep a check waiting.
TimeoutOption = Annotated[Optional[str], typer.Option(
    "--timeout", metavar="DURATION", show_default=False,
    help="Wait at most this long for each server (relay, webhook, SMS provider, shop database, ledger: "
         "connecting, each statement or request), or its own timeout where shorter; a check past it "
         "fails naming the server and, when this option was the shorter, doctor --timeout. Default: 30s.")]


def doctor(
    config: ConfigOption = None,
    as_json: JsonOption = False,
    no_smtp: NoSmtpOption = False,
    quiet: Annotated[bool, typer.Option(
        "--quiet", "-q", help="For cron: print nothing when every check passes, else one line per failed check "
                              "(the exit code is the same).")] = False,
    wide: Annotated[bool, typer.Option("--wide", help="A bordered table whatever the terminal's width.")] = False,
    timeout: TimeoutOption = None,
) -> None:
    """Check the config, the ledger, the source, the SMTP relay (connect, TLS, AUTH, the sender;
    nothing is sent) and that reminders are still going out.

    Exits with the code of the first failed check: 2 config or ledger, 3 source (5 for a CSV
    export not written within `source.export_stale_after`), 1 SMTP, and 5 when no `run --send`
    (or `--outbox`) succeeded within `doctor.stale_after` (default 2h), or a channel the config
    uses (email, call-list, sms, webhook) was tried and delivered nothing for that long; a 1 gives way to a later
    check's code (a relay that is down and the reminders stopped because of it: 5). Run
    it from cron too, with `--quiet`: it prints nothing while all is well, and cron mails the
    owner the failed checks when reminders have silently stopped. No server holds it longer
    than `--timeout` (30s) a statement or request: a loop over many shops' configs goes on.

    Example (cron, hourly):

        0 * * * * cd /srv/shop && cartrescue doctor --quiet
    """
    from cartrescue.doctor import FAIL, TIMEOUT, run_checks

    try:
        limit = parse_timeout(timeout)
    except ConfigError as error:
        fail(error, as_json)
    report = run_checks(config, smtp=not no_smtp, limit=TIMEOUT if limit is None else limit)
    if as_json:
        json_out({"ok": report.ok, "exit_code": report.exit_code, "checks": [c.as_dict() for c in report.checks]})
    elif quiet:
        print_failures([check for check in report.checks if check.status == FAIL], config)
    else:
        _print_checks(report.checks, wide)
    if report.exit_code:
        raise typer.Exit(report.exit_code)


#: How a check's status is shown (doctor's table, and doctor-all's shops).
STATUS_STYLE = {"ok": "green", "warn": "yellow", "fail": "bold red", "skip": "dim"}


def print_failures(failed: list[Any], config: Any = None) -> None:
    """``--quiet``: one line per failed check, nothing else (cron mails what a job prints). With
    ``--config`` the line names it: an agency's loop over its shops' configs tells them apart
    (``doctor-all --quiet`` prints each shop's so)."""
    from rich.text import Text

    from cartrescue.text import printable

    console = out_console()
    shop = f"{config}: " if config is not None else ""
    for check in failed:
        detail = unnamed(check.detail, shop)
        console.print(Text(printable(f"cartrescue doctor: {shop}{check.name} failed: {detail}")), soft_wrap=True)


def unnamed(detail: str, shop: str) -> str:
    """``detail`` without the config's name (``shop``: ``a.yaml: ``) where it starts the detail or
    a part of it (``magento2 source: a.yaml: source.url …``): the quiet line names it already, and
    an agency's loop printed it twice for each broken shop. Named with a line (``a.yaml:2: not
    valid YAML``), the line stays: ``line 2: not valid YAML``."""
    import re

    if not shop:
        return detail
    named = rf"(?:^|(?<=: )|(?<=; )){re.escape(shop.removesuffix(': '))}(?::(\d+))?: "
    return re.sub(named, lambda found: f"line {found[1]}: " if found[1] else "", detail)


def _print_checks(checks: list[Any], wide: bool) -> None:
    """A bordered table on a wide terminal (or ``--wide``); on a narrow one a borderless list
    whose details wrap under themselves, so no column is squeezed into a sliver."""
    from rich.table import Table
    from rich.text import Text

    from cartrescue.output import table_mode
    from cartrescue.text import printable

    console = out_console()
    if table_mode(console.width, wide) == "compact":
        table = Table.grid(padding=(0, 2))
        table.add_column(no_wrap=True)
        table.add_column(no_wrap=True)
        table.add_column(overflow="fold")
    else:
        table = Table(header_style="bold", show_lines=False)
        table.add_column("check", no_wrap=True)
        table.add_column("status", no_wrap=True)
        table.add_column("detail", overflow="fold")
    for check in checks:
        table.add_row(check.name, Text(check.status, style=STATUS_STYLE[check.status]), Text(printable(check.detail)))
    console.print(table)
