"""`run` and `carts`: plan every cart, and (for `run`) deliver; tables, JSON and progress."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated, Any, NoReturn, Optional

import typer

from cartrescue.commands.common import (
    ConfigOption,
    JsonOption,
    NowOption,
    err_console,
    error_json,
    error_line,
    fail,
    internal_message,
    json_out,
    load,
    out_console,
    parse_now,
)
from cartrescue.errors import CartrescueError, ConfigError, ExitCode, LockHeld


def _plan_command(config_path: Path | None, as_json: bool, now: str | None, *, mode: str, outbox: Path | None,
                  strict: bool, deliver: bool, limit: int | None, quiet: bool, resend_unconfirmed: bool = False,
                  max_deliveries: int | None = None, wide: bool = False) -> None:
    """Plan (and deliver) and print; every outcome ends in exactly one JSON document with ``--json``.

    The JSON document is streamed (a million decisions never sit in memory), so a failure after
    it began cannot print a document of its own: it closes the open one with an ``error`` object.
    """

    from cartrescue.output import DecisionTable, JsonStream, progress, result_json

    stream: JsonStream | None = None
    stderr = err_console()
    try:
        from cartrescue.job import RunRequest, resolve_now, run_job

        config = load(config_path)
        request = RunRequest(mode=mode, now=parse_now(now), outbox=outbox, strict=strict,  # type: ignore[arg-type]
                             deliver=deliver, resend_unconfirmed=resend_unconfirmed, limit=max_deliveries)
        at = resolve_now(config, request.now)
        request.now = at
        if as_json:
            stream = JsonStream(sys.stdout, {"mode": mode if deliver else "plan",
                                             "now": at.isoformat().replace("+00:00", "Z")})
        table = None if as_json or quiet else DecisionTable(limit, width=out_console().width, wide=wide)

        def on_result(result: Any) -> None:
            if stream is not None:
                stream.add_json(result_json(result))
            elif table is not None:
                table.add(result)

        def on_problem(problem: Any) -> None:
            stderr.print(error_line(str(problem), "warning", "yellow"), soft_wrap=True)

        show_progress = not as_json and not quiet and stderr.is_terminal
        with progress(stderr, show_progress, "planning" if not deliver else f"{mode}") as meter:
            summary = run_job(config, request, on_result, on_problem, meter, meter.total if show_progress else None)
    except KeyboardInterrupt:  # Ctrl-C, or SIGTERM (see cli.main): the document still ends
        if stream is not None:
            stream.close({"error": {"code": "interrupted", "exit_code": 130, "message": "interrupted"}})
        raise
    except Exception as error:  # noqa: BLE001 - every failure still ends the one JSON document
        if stream is None:
            if isinstance(error, CartrescueError):
                fail(error, as_json, quiet=quiet)
            _internal(error, as_json)
        stream.close({"error": error_json(error)})
        if not (quiet and isinstance(error, LockHeld)):
            stderr.print(error_line(error_json(error)["message"]), soft_wrap=True)
        if not isinstance(error, CartrescueError) and os.environ.get("CARTRESCUE_DEBUG"):
            raise
        raise typer.Exit(error_json(error)["exit_code"]) from None
    counts = summary.counts.as_dict()
    if stream is not None:
        stream.close({"counts": counts, "run_id": summary.run_id, "unconfirmed": summary.unconfirmed,
                      "released": summary.released, "problems": [str(p) for p in summary.problems],
                      "notes": summary.notes, "pruned": summary.pruned})
    elif not (quiet and _all_well(summary)):
        console = out_console()
        if table is not None:
            console.print(table.table)
            if table.hidden:
                console.print(f"… {table.hidden} more carts (use --all to list every one, or --json)")
            if table.mode == "compact":
                console.print("(a narrow terminal: --wide shows every column)")
        _print_summary(console, summary, counts)
    if summary.counts.failed or summary.counts.problems:
        raise typer.Exit(int(ExitCode.SOME_FAILED))


def _all_well(summary: Any) -> bool:
    """Nothing a person must look at in this run: ``--quiet`` then prints nothing (cron mails any
    output). Claims an earlier, killed run left without outcome stay so for good (at most once):
    `doctor` shows them; repeating them every ten minutes would only teach the owner to ignore mail."""
    return not (summary.counts.failed or summary.counts.problems)


def _internal(error: Exception, as_json: bool) -> NoReturn:
    """A bug: one line (and one JSON document), exit 70; the traceback with CARTRESCUE_DEBUG=1."""
    if os.environ.get("CARTRESCUE_DEBUG"):
        raise error
    if as_json:
        json_out({"error": error_json(error)})
    err_console().print(error_line(internal_message(error)), soft_wrap=True)
    raise typer.Exit(int(ExitCode.INTERNAL))


def _print_summary(console: Any, summary: Any, counts: dict[str, Any]) -> None:
    from rich.panel import Panel
    from rich.text import Text

    lines = [
        f"mode [bold]{summary.mode}[/] at {summary.now:%Y-%m-%d %H:%M} UTC — {counts['carts']} carts: "
        f"[green]{counts['send']} send[/], [yellow]{counts['defer']} defer[/], [dim]{counts['skip']} skip[/]"
        + (f", [magenta]{counts['holdout']} held out[/]" if counts.get("holdout") else ""),
    ]
    if summary.mode == "dry-run":
        lines.append("dry-run: nothing was delivered or recorded (use --outbox DIR or --send)")
    else:
        lines.append(f"delivered {counts['sent']}, failed {counts['failed']}"
                     + (f", unconfirmed {counts['deliveries']['unconfirmed']} (no reply after the message; not resent)"
                        if counts["deliveries"].get("unconfirmed") else ""))
    if summary.released:
        lines.append(f"[yellow]{summary.released} earlier claims without outcome were released and tried again "
                     "(--resend-unconfirmed)[/]")
    elif summary.unconfirmed:
        lines.append(f"[yellow]{summary.unconfirmed} earlier claims have no outcome (a run was killed, or the relay "
                     "did not answer after the message); not resent "
                     "(see `cartrescue doctor`; --resend-unconfirmed sends them again)[/]")
    if counts["problems"]:
        lines.append(f"[yellow]{counts['problems']} source rows could not be read (see warnings)[/]")
    if summary.notes:
        from rich.markup import escape

        from cartrescue.text import printable

        lines.extend(f"[yellow]note:[/] {escape(printable(note))}" for note in summary.notes)
    if any(summary.pruned.values()):
        lines.append(f"pruned {summary.pruned.get('decisions', 0)} decisions and {summary.pruned.get('runs', 0)} run "
                     "records past ledger.retention")
    reasons = ", ".join(f"{name} {n}" for name, n in counts["reasons"].items())
    lines.append(f"reasons: {reasons}")
    # Only counts and fixed words: the markup below is ours, none of it comes from data.
    console.print(Panel(Text.from_markup("\n".join(lines)), title="cartrescue", expand=False))


def run(
    config: ConfigOption = None,
    as_json: JsonOption = False,
    now: NowOption = None,
    send: Annotated[bool, typer.Option("--send", help="Really deliver over SMTP (default: dry-run).")] = False,
    outbox: Annotated[
        Optional[Path], typer.Option("--outbox", help="Write every message as an .eml file into DIR (counts as delivery).")
    ] = None,
    strict: Annotated[bool, typer.Option("--strict", help="Stop before delivering anything if any source row is bad.")] = False,
    show_all: Annotated[bool, typer.Option("--all", help="List every cart, not only the first 50.")] = False,
    quiet: Annotated[bool, typer.Option(
        "--quiet", "-q", help="For cron: print nothing when all went well; otherwise the warnings and the summary. "
                              "A run that finds the lock held exits 4 silently.")] = False,
    wide: Annotated[bool, typer.Option("--wide", help="Every column of the table, whatever the terminal's width.")] = False,
    resend_unconfirmed: Annotated[bool, typer.Option(
        "--resend-unconfirmed",
        help="Also resend the claims a killed run left without outcome. They may have been delivered already: "
             "a customer can get a step twice. See docs/sending.md.")] = False,
    max_deliveries: Annotated[Optional[int], typer.Option(
        "--limit", min=0, help="Deliver at most N messages in this run (a careful first live run); the rest are "
                               "deferred with reason run_limit and go out in later runs.")] = None,
) -> None:
    """The cron job: read carts, decide, prioritize, render, and deliver or dry-run.

    Without `--send` or `--outbox` this is a **dry-run**: it shows what it would do and records
    nothing. With `--outbox DIR` every message is written as an .eml file and recorded in the
    ledger; with `--send` it goes out over SMTP. A second run at the same moment delivers nothing.

    Example (cron, every 10 minutes):

        */10 * * * * cd /srv/shop && cartrescue run --send --quiet
    """
    if send and outbox:
        fail(ConfigError("--send and --outbox exclude each other"), as_json)
    mode = "send" if send else "outbox" if outbox else "dry-run"
    if resend_unconfirmed and mode == "dry-run":
        fail(ConfigError("--resend-unconfirmed needs --send (or --outbox)"), as_json)
    _plan_command(config, as_json, now, mode=mode, outbox=outbox, strict=strict, deliver=True,
                  limit=None if show_all else 50, quiet=quiet, resend_unconfirmed=resend_unconfirmed,
                  max_deliveries=max_deliveries, wide=wide)


def carts(
    config: ConfigOption = None,
    as_json: JsonOption = False,
    now: NowOption = None,
    strict: Annotated[bool, typer.Option("--strict", help="Fail on the first bad source row.")] = False,
    show_all: Annotated[bool, typer.Option("--all", help="List every cart, not only the first 50.")] = False,
    wide: Annotated[bool, typer.Option("--wide", help="Every column of the table, whatever the terminal's width.")] = False,
) -> None:
    """List candidate carts with score, tier, due step and the reason for every skip or defer.

    Reads the ledger but never renders, delivers or records anything.

    Example:

        cartrescue carts --json | jq '.decisions[] | select(.action=="skip") | .reason'
    """
    _plan_command(config, as_json, now, mode="dry-run", outbox=None, strict=strict, deliver=False,
                  limit=None if show_all else 50, quiet=False, wide=wide)


