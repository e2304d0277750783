"""`run-all`: the cron job of many shops (one config each), as one command (cartrescue.batch)."""

from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from cartrescue.commands.common import (
    MESSAGE_FOLDER,
    ConfigsArgument,
    JobsOption,
    JsonOption,
    NowOption,
    err_console,
    error_line,
    fail,
    json_out,
    no_stdout,
    out_console,
    parse_now,
    parse_timeout,
)
from cartrescue.errors import ConfigError, ExitCode

#: Exit codes that need no person under ``--quiet``: all went well, or another run holds the lock.
_SILENT = (int(ExitCode.OK), int(ExitCode.LOCKED))


def run_all(
    configs: ConfigsArgument,
    as_json: JsonOption = False,
    now: NowOption = None,
    send: Annotated[bool, typer.Option("--send", help="Really deliver: e-mail over SMTP, and SMS and webhook messages where tiers use them "
                                                 "(default: dry-run).")] = False,
    outbox: Annotated[Optional[Path], typer.Option(
        "--outbox", metavar="DIR", help="Write every message as an .eml file into DIR instead (relative: each shop's own DIR, "
                         "beside its config; absolute: a folder of DIR per shop, named after its config's folder).")] = None,
    strict: Annotated[bool, typer.Option(
        "--strict", help="Each shop stops before delivering anything if any of its source rows is bad (a dry-run: "
                         "exits 1 on a finding of `templates check` in the templates it used, as `run --strict`).")] = False,
    quiet: Annotated[bool, typer.Option(
        "--quiet", "-q", help="For cron: print nothing when every shop went well (or found its lock held); "
                              "otherwise what the shops said and the table of those that need a look.")] = False,
    resend_unconfirmed: Annotated[bool, typer.Option(
        "--resend-unconfirmed", help="As run --resend-unconfirmed, in every shop (see docs/sending.md).")] = False,
    max_deliveries: Annotated[Optional[int], typer.Option(
        "--limit", min=0, metavar="N", help="Deliver at most N messages per shop in this run.")] = None,
    jobs: JobsOption = None,
    timeout: Annotated[Optional[str], typer.Option(
        "--timeout", metavar="DURATION", show_default=False,
        help="Stop a shop's run that takes longer (e.g. 8m), as Ctrl-C stops a run: what it delivered is "
             "recorded, the rest waits for the next round. Default: no limit.")] = None,
) -> None:
    """The cron job of many shops: `run` for every config, a few at a time, reported as one.

    Each shop runs in a process of its own, forked from this one once it has imported what a
    run needs, so a shop costs its own work and not a fresh interpreter's start (~0.8 s of CPU).
    A shop's failure, bad config or held lock never stops another shop; stderr names its config
    and key. A round that starts while the last still runs (cron) is safe: a shop still running
    in the other round holds its ledger's lock and is skipped here, never run twice at once.

    Exit code: the most serious of the shops', in this order: 128 + n a shop killed by signal n,
    70 a bug, 130 interrupted, 2 config or ledger, 3 source, 6 a lost lock, 130 a shop stopped by
    --timeout, 1 failed carts, 4 a held lock (silent under --quiet), 0 all well
    (`cartrescue --help`; README, "Many shops").

    Example (cron, every 10 minutes, for every shop of an agency):

        */10 * * * * cartrescue run-all --send --quiet /srv/shops/*/cartrescue.yaml
    """
    if send and outbox:
        fail(ConfigError("--send and --outbox exclude each other"), as_json)
    if resend_unconfirmed and not (send or outbox):
        fail(ConfigError("--resend-unconfirmed needs --send (or --outbox)"), as_json)
    try:
        no_stdout("--outbox", outbox, MESSAGE_FOLDER)
        at = parse_now(now)
        limit = parse_timeout(timeout)
    except ConfigError as error:
        fail(error, as_json)
    from cartrescue.batch import config_files, run_shops, shop_command, shop_jobs, shop_outboxes

    mode = "send" if send else "outbox" if outbox else "dry-run"
    files = config_files(configs)
    outboxes = shop_outboxes(files, outbox)
    stderr = err_console()
    lines: list[Any] = []  # what the shops said, held back under --quiet until it is known to matter

    def warn(line: str) -> None:
        from rich.text import Text

        if quiet:
            lines.append(Text(line))
        else:
            stderr.print(Text(line), soft_wrap=True)  # the shop's run made it printable already

    def arguments(config: Path) -> list[str]:
        return shop_command(config, mode=mode, now=at, strict=strict, quiet=quiet,
                            resend_unconfirmed=resend_unconfirmed, limit=max_deliveries, outbox=outboxes[config])

    from cartrescue.commands.shops_progress import shops_progress

    with shops_progress(stderr, not (as_json or quiet) and stderr.is_terminal, len(files)) as (say, done, tick):
        batch = run_shops(arguments, files, jobs=shop_jobs(jobs), warn=say or warn,
                          on_done=done, timeout=limit, on_tick=tick)
    code = batch.exit_code
    if as_json:
        json_out(batch.document(mode, at))
    if batch.interrupted:
        stderr.print(error_line("interrupted: the shops running were stopped, the rest not started"), soft_wrap=True)
    attention = [line for shop in batch.shops for line in shop.attention()]
    if quiet and code in _SILENT and not attention:
        for line in lines:  # what a shop's run --quiet says itself when all went well: a clock its config pins
            stderr.print(line, soft_wrap=True)
        raise typer.Exit(code)
    for line in lines:
        stderr.print(line, soft_wrap=True)
    if not as_json:
        _print_table(batch, mode, quiet)
        from rich.text import Text

        from cartrescue.text import printable

        if not quiet:  # the rest of what each run's summary says (a newsletter plugin's tables missing)
            attention += [line for shop in batch.shops for line in shop.other_notes()]
        for line in attention:  # the shops' runs wrote only their documents: what each would have said
            stderr.print(Text(printable(line)), soft_wrap=True)
    for shop in batch.shops:  # what no shop could say itself: killed, stopped by --timeout
        own = shop.error()
        if own is not None and not shop.said_error and shop.started:
            from cartrescue.batch import named

            stderr.print(error_line(named(shop.config, own["message"])), soft_wrap=True)
    left = [shop for shop in batch.shops if not shop.started]
    if left:
        from cartrescue.batch import not_started

        stderr.print(error_line(not_started([shop.config for shop in left], "run-all")), soft_wrap=True)
    if code:
        raise typer.Exit(code)


def _print_table(batch: Any, mode: str, quiet: bool) -> None:
    """One row a shop, and the totals. Under ``--quiet`` (cron mails it) only the shops that need a
    look: for an agency's 200 shops, the one whose export went missing was a row among 200."""
    from rich.table import Table
    from rich.text import Text

    from cartrescue.text import counted, path_text

    listed = [shop for shop in batch.shops if not quiet or shop.exit_code not in _SILENT or shop.attention()]
    left = len(batch.shops) - len(listed)
    title = f"run-all ({mode}): {counted(len(batch.shops), 'shop')}"
    if left:
        title += f", {left} not listed: they went well (or found their lock held)"
    console = out_console()
    table = Table(title=title, title_justify="left")
    if console.is_terminal:
        table.add_column("config", overflow="fold", ratio=1)
    else:  # cron's mail: one line a shop, its config whole (folded, 200 shops took 800 lines)
        console.width = max(console.width, max((len(path_text(shop.config)) for shop in listed), default=0) + 90)
        table.add_column("config", no_wrap=True)
    for name in ("exit", "carts", "send", "sent", "failed", "problems", "seconds"):
        table.add_column(name, justify="right", no_wrap=True)
    table.add_column("error", no_wrap=True)  # its kind; the message is on stderr
    for shop in listed:
        counts, error = shop.counts(), shop.error()
        table.add_row(Text(path_text(shop.config)), str(shop.exit_code), *(str(counts.get(key, 0)) for key in (
            "carts", "send", "sent", "failed", "problems")), f"{shop.seconds:.1f}",
            Text(error["code"] if error else "", style="red"))
    totals = batch.counts()
    table.add_section()
    table.add_row("all", str(batch.exit_code), *(str(totals.get(key, 0)) for key in (
        "carts", "send", "sent", "failed", "problems")), "", "")
    console.print(table)
