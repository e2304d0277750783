"""`doctor`: are config, ledger, source and relay in place, and are reminders still going out?"""

from __future__ import annotations

from typing import Annotated

import typer

from cartrescue.commands.common import ConfigOption, JsonOption, json_out, out_console


def doctor(
    config: ConfigOption = None,
    as_json: JsonOption = False,
    no_smtp: Annotated[bool, typer.Option("--no-smtp", help="Do not connect to the SMTP relay.")] = False,
) -> None:
    """Check the config, the ledger, the source, the SMTP relay (connect, TLS, AUTH; nothing is
    sent) and that reminders are still going out.

    Exits with the code of the first failed check: 2 config or ledger, 3 source, 1 SMTP, and 5
    when no `run --send` (or `--outbox`) succeeded within `doctor.stale_after` (default 2h). Run
    it from cron too, so that cron mails the owner when reminders have silently stopped.

    Example (cron, hourly):

        0 * * * * cd /srv/shop && cartrescue doctor --json > /dev/null || echo "cartrescue needs attention"
    """
    from cartrescue.doctor import run_checks

    report = run_checks(config, smtp=not no_smtp)
    if as_json:
        json_out({"ok": report.ok, "exit_code": report.exit_code, "checks": [c.as_dict() for c in report.checks]})
    else:
        from rich.table import Table
        from rich.text import Text

        from cartrescue.text import printable

        style = {"ok": "green", "warn": "yellow", "fail": "bold red", "skip": "dim"}
        table = Table(header_style="bold", show_lines=False)
        table.add_column("check")
        table.add_column("status")
        table.add_column("detail", overflow="fold")
        for check in report.checks:
            table.add_row(check.name, Text(check.status, style=style[check.status]), Text(printable(check.detail)))
        out_console().print(table)
    if report.exit_code:
        raise typer.Exit(report.exit_code)


