"""`run` and `carts`: plan every cart, and (for `run`) deliver; tables, JSON and progress."""

import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Optional

import typer

from cartrescue.commands.common import (
    INTERRUPTED,
    MESSAGE_FOLDER,
    ConfigOption,
    FirstUseConsole,
    JsonOption,
    NowOption,
    config_warnings,
    err_console,
    error_json,
    error_line,
    explained,
    fail,
    json_out,
    last_net,
    load,
    made_folders,
    no_stdout,
    output_folder,
    out_console,
    parse_now,
    problem_warnings,
    stopped_after_document,
)
from cartrescue.errors import CartrescueError, ConfigError, ExitCode, LockHeld

if TYPE_CHECKING:
    from cartrescue.output import JsonStream


def _plan_command(config_path: Path | None, as_json: bool, now: str | None, *, mode: str, outbox: Path | None,
                  strict: bool, deliver: bool, limit: int | None, quiet: bool, resend_unconfirmed: bool = False,
                  max_deliveries: int | None = None, wide: bool = False, workers: int | None = 1,
                  shard: str | None = None, eml: Path | None = None, live_clock: bool = False,
                  made: list[Path] | None = None) -> None:
    """Plan (and deliver) and print; every outcome ends in exactly one JSON document with ``--json``.

    ``live_clock``: a worker of a run whose clock is not pinned (its ``--now`` is when that run
    started): its claims are stamped by the real clock, as that run's own would be.

    The JSON document is streamed (a million decisions never sit in memory), so a failure after
    it began cannot print a document of its own: it closes the open one with an ``error`` object.

    ``made``: the folders of ``--outbox`` and ``--eml`` that it makes (:func:`made_folders`).
    """

    stream: "JsonStream | None" = None
    counts_so_far: Any = None  # the run's Counts once it began: what an early end reports
    try:
        from cartrescue.config import resolve_now

        # A worker of run --workers leaves the warnings of the config to its parent, which says them once.
        of_workers = shard is not None and as_json and _started_by_a_run()
        config = load(config_path, warn=not (quiet or of_workers), decides=not of_workers)
        at = resolve_now(config, parse_now(now))
        live_clock = live_clock or (now is None and not config.now)  # cartrescue.clock
        sharded = _shard(shard)
        if mode == "outbox":  # a folder that cannot take the files stops the run before it reads a cart
            no_stdout("--outbox", outbox, MESSAGE_FOLDER)
            output_folder("--outbox", config.outbox_folder(outbox), made)
        no_stdout("--eml", eml, MESSAGE_FOLDER)
        eml_folder = output_folder("--eml", config.path(eml), made) if eml is not None else None
        if eml_folder is not None and shard is None:  # this look's call list, not the last one's too
            (eml_folder / "call-list.csv").unlink(missing_ok=True)
        if shard is None and deliver:  # the parent of workers imports no pipeline: it only relays
            from cartrescue.workers import auto_workers

            count = auto_workers(config) if workers is None else workers
            if count > 1:
                if mode != "dry-run":  # before any worker starts (each checks again, on the same clock)
                    from cartrescue.sources.freshness import hold_back_if_stale

                    hold_back_if_stale(config, at)
                _workers_command(config, count, at, as_json=as_json, mode=mode, outbox=outbox, strict=strict,
                                 limit=limit, quiet=quiet, resend_unconfirmed=resend_unconfirmed,
                                 max_deliveries=max_deliveries, wide=wide, eml=eml_folder, live_clock=live_clock)
                return
        # Imported only here: the parent of workers forks its first helper sooner without them.
        from cartrescue.cli import runs_over
        from cartrescue.job import RunRequest, run_job
        from cartrescue.output import DecisionTable, JsonStream, json_stdout, progress
        from cartrescue.sources import shared

        stderr = FirstUseConsole()
        # A worker of run --workers leaves the templates' check to its parent, which runs it once
        # on what every worker rendered (_workers_command): of_workers, above.

        request = RunRequest(mode=mode, now=at, live_clock=live_clock, outbox=outbox, strict=strict,  # type: ignore[arg-type]
                             deliver=deliver, resend_unconfirmed=resend_unconfirmed, limit=max_deliveries,
                             shard=sharded, shared_orders=_shared(sharded, shared.ORDERS),
                             shared_sends=_shared(sharded, shared.SENDS),
                             shared_carts=_shared(sharded, shared.CARTS), eml=eml_folder, runs_over=runs_over(),
                             lint=not of_workers, unlist=not of_workers or sharded.index == 1)
        _die_with_parent()  # a shard of run --workers, or a shop of run-all
        if as_json:
            stream = JsonStream(json_stdout(), {"mode": mode if deliver else "plan",
                                             "now": at.isoformat().replace("+00:00", "Z")})
        table = None if as_json or quiet else DecisionTable(limit, width=out_console().width, wide=wide)

        def on_result(result: Any) -> None:
            if stream is not None:
                stream.add_result(result)
            elif table is not None:
                table.add(result)

        on_problem = problem_warnings(stderr)

        show_progress = not as_json and not quiet and stderr.is_terminal
        from cartrescue.pipeline import Counts

        counts_so_far = Counts()
        to_parent = _progress_to_parent(of_workers)
        with progress(stderr.console if show_progress else None, show_progress,
                      "planning" if not deliver else f"{mode}") as meter:
            meter = to_parent or meter
            summary = run_job(config, request, on_result, on_problem, meter,
                              meter.total if show_progress or to_parent else None, counts_so_far)
    except KeyboardInterrupt:  # Ctrl-C, or SIGTERM (see cli.main): the document still ends
        if stream is None:
            if counts_so_far is not None and deliver and mode != "dry-run":
                _say_stopped(counts_so_far.as_dict())
            raise  # none begun: cli.main prints one
        _end(stream, {"error": INTERRUPTED, **_so_far(counts_so_far), **_warned(config, of_workers)})
        stopped_after_document()
    except typer.Exit:  # run --workers: its own document is complete
        raise
    except Exception as error:  # noqa: BLE001 - every failure still ends the one JSON document
        error = explained(error)  # type: ignore[assignment]
        # A worker of run --workers leaves the error line to its parent, which reports it once.
        worker = shard is not None and as_json and _started_by_a_run()
        if stream is None:
            if isinstance(error, CartrescueError):
                fail(error, as_json, quiet=quiet or (worker and isinstance(error, LockHeld)))
            last_net(error, as_json)
        if stream.begun:
            _end(stream, {"error": error_json(error), **_so_far(counts_so_far), **_warned(config, of_workers)})
        else:  # nothing written yet (a start-up check of run_job): the error document alone, as README says
            json_out({"error": error_json(error)})
        if not (quiet and isinstance(error, LockHeld)) and not worker:
            err_console().print(error_line(error_json(error)["message"]), soft_wrap=True)
        if not isinstance(error, CartrescueError) and os.environ.get("CARTRESCUE_DEBUG"):
            raise
        raise typer.Exit(error_json(error)["exit_code"]) from None
    counts = summary.counts.as_dict()
    _say_warnings(stderr, summary.warnings)
    if stream is not None:
        _end(stream, {"counts": counts, "run_id": summary.run_id, "unconfirmed": summary.unconfirmed,
                      "unconfirmed_channels": summary.unconfirmed_channels, "released": summary.released,
                      "released_not_resent": getattr(summary, "released_not_resent", 0), "killed_left": summary.killed_left,
                      "problems": [str(p) for p in summary.problems],
                      "notes": summary.notes, "pruned": summary.pruned,
                      "shop_switched_from": summary.shop_switched_from,
                      # a worker's parent lists the config's once, as it says them once
                      "warnings": summary.warnings if of_workers else config_warnings(config, summary.warnings, decides=True),
                      **({"used_files": summary.used_files} if request.deliver and not request.lint else {})})
    elif not (quiet and _all_well(counts, summary)):
        _print_table_and_summary(table, summary, counts, request.eml, plan=not request.deliver)
    if summary.counts.failed or summary.counts.problems or (strict and summary.findings):
        raise typer.Exit(int(ExitCode.SOME_FAILED))


def _say_warnings(stderr: Any, warnings: list[str]) -> None:
    """The run's warnings (:attr:`cartrescue.job.RunSummary.warnings`: a call list it could not
    clean, a dry-run's findings of ``templates check`` in the templates it rendered), a
    ``warning:`` line each on stderr (with ``--json`` and ``--quiet`` too, as a bad row's)."""
    for line in warnings:
        stderr.print(error_line(line, "warning", "yellow"), soft_wrap=True)


def _stopped_workers(workers: Any, on_decisions: Any, mode: str, at: Any) -> Any:
    """What the workers of a stopped ``run --workers`` reported, as one ``MergedRun``.

    A stop while the run was following them left it in ``workers.stopped``. One that came
    before (while the run prepared them, or in the instant between) has them stopped and read
    to their end here: the decisions they made are the document's too. With none started, the
    counts are all zero: the document's trailer still has the shape of a run's."""
    from cartrescue.workers import merge

    if workers is None:
        return merge([], mode, at)
    if workers.stopped is None:
        workers.stop(on_decisions)
    return workers.stopped


def _end(stream: Any, trailer: dict[str, Any]) -> None:
    """End the ``--json`` document. A Ctrl-C or SIGTERM that came meanwhile waited until it was
    whole (JsonStream.close) and is let go: the run had ended, the document says how, and the
    exit code stays the one it gives (never a second document)."""
    try:
        stream.close(trailer)
    except KeyboardInterrupt:
        pass
    except BrokenPipeError as exc:  # not to click, which exits 1 without a word: say why (exit 1)
        raise explained(exc) from None


def _so_far(counts: Any) -> dict[str, Any]:
    """The ``counts`` of a run that ended early, as far as it got (the ledger holds every message it
    recorded, those still in flight too: ``report`` and ``cr_run`` count those), and its ``run_id``
    once it has one: ``run-all`` names the run of a shop it stopped for ``--timeout``."""
    if counts is None:
        return {}
    return {"counts": counts.as_dict(), **({"run_id": counts.run_id} if counts.run_id is not None else {})}


def _warned(config: Any, of_workers: bool) -> dict[str, Any]:
    """The config's ``warnings`` for a document that ends early (a stop, an error): a script reads
    them however the run ended; a worker's parent lists them once, as in a whole document."""
    return {} if of_workers else {"warnings": config_warnings(config, decides=True)}


def _say_stopped(counts: dict[str, Any]) -> None:
    """Without ``--json``, a delivering run stopped by Ctrl-C or SIGTERM says what it had delivered
    and what it left in flight (:func:`cartrescue.output.stopped_line`)."""
    from cartrescue.output import stopped_line

    err_console().print(stopped_line(counts), highlight=False, soft_wrap=True)


def _all_well(counts: dict[str, Any], summary: Any) -> bool:
    """Nothing a person must look at in this run: ``--quiet`` then prints nothing (cron mails any
    output). Claims an earlier, killed run left without outcome stay so for good (at most once):
    the run that finds that run dead and closes it says so, once (``killed_left``); after it
    `doctor` shows them, and repeating them every ten minutes would only teach the owner to ignore mail.
    The run's own messages that went ``unconfirmed`` (the relay hung up after the final dot, or
    said nothing within ``smtp.data_timeout``) are said by that run, once, for the same reason: no
    failure (exit 0), but only the relay's log tells whether ``--resend-unconfirmed`` is due."""
    return not (counts["failed"] or counts["problems"] or (summary.killed_left and not released_any(summary))
                or counts["deliveries"].get("unconfirmed")
                or getattr(summary, "shop_switched_from", None) or getattr(summary, "warnings", None))


def released_any(summary: Any) -> bool:
    """Whether ``--resend-unconfirmed`` released earlier claims (some may not be sent again)."""
    return bool(summary.released or getattr(summary, "released_not_resent", 0))


def _released_lines(summary: Any) -> list[str]:
    """What ``--resend-unconfirmed`` did with the claims it released: those tried again, and those
    not resent since a later step of their cart had gone out (the planner never goes back to them)."""
    from cartrescue.text import counted

    lines = []
    for number, what in ((summary.released, "released and tried again"),
                         (getattr(summary, "released_not_resent", 0),
                          "released but not resent: a later step of its cart had already gone out")):
        if number:
            lines.append(f"[yellow]{counted(number, 'earlier claim')} without outcome "
                         f"{'was' if number == 1 else 'were'} {what} (--resend-unconfirmed)[/]")
    return lines


def _shard(text: str | None) -> Any:
    if text is None:
        return None
    from cartrescue.shards import Shard

    try:
        return Shard.parse(text)
    except ValueError as exc:
        raise ConfigError(f"--shard: {exc}") from None


def _die_with_parent() -> None:
    """A worker of ``run --workers`` (or a shop's run of ``run-all``) gets SIGTERM when its parent
    dies (Linux), so that a killed parent leaves no orphan delivering on its own; it then ends
    like a stopped run."""
    import signal

    from cartrescue.processes import die_with, started_by

    parent = started_by()
    if parent is not None:
        die_with(parent, signal.SIGTERM)


def _progress_to_parent(of_workers: bool) -> Any:
    """A worker whose parent shows a progress bar reports its reading to it
    (:class:`cartrescue.workers.ProgressToParent`); ``None`` otherwise."""
    import sys

    from cartrescue.workers import PROGRESS_ENV, ProgressToParent

    return ProgressToParent(sys.stderr) if of_workers and os.environ.get(PROGRESS_ENV) == "1" else None


def _started_by_a_run() -> bool:
    """Is this process a worker of ``run --workers`` (or a shop of ``run-all``)?"""
    from cartrescue.processes import started_by

    return started_by() is not None


def _shared(shard: Any, variable: str) -> Path | None:
    """A worker of ``run --workers``: where its run builds the index its workers share that the
    environment ``variable`` names (:mod:`cartrescue.sources.shared`); None for any other run."""
    path = os.environ.get(variable)
    return Path(path) if path and shard is not None and _started_by_a_run() else None


def _workers_command(config: Any, count: int, at: Any, *, as_json: bool, mode: str, outbox: Path | None,
                     strict: bool, limit: int | None, quiet: bool, resend_unconfirmed: bool,
                     max_deliveries: int | None, wide: bool = False, eml: Path | None = None,
                     live_clock: bool = False) -> None:
    """``run --workers N``: N shard processes, one document or table, one exit code."""
    from cartrescue.sources.shared import SharedIndexes
    from cartrescue.workers import start_workers

    # As given, not resolved: a worker runs in this process's folder, and its notes and warnings
    # (config.where) name the config as a run without workers does.
    config_file = Path(config.config_file or "cartrescue.yaml")
    outbox_dir = config.outbox_folder(outbox) if mode == "outbox" else eml  # a dry-run's: run --eml
    shared = SharedIndexes.for_run(config, at, count)
    if shared is not None:
        shared.start_early()  # a helper builds them while this process prepares its workers
    try:
        # What prints the run's output (rich) is imported while the helpers work on the other core.
        from cartrescue.output import DecisionTable, JsonStream, json_stdout, progress

        stderr = FirstUseConsole()
        header = {"mode": mode, "now": at.isoformat().replace("+00:00", "Z")}
        stream = JsonStream(json_stdout(), header) if as_json else None
        table = None if as_json or quiet else DecisionTable(limit, width=out_console().width, wide=wide)
    except BaseException:
        if shared is not None:
            shared.close()  # as if never started: the caller reports what went wrong
        raise

    def on_decisions(lines: bytes, count: int) -> None:
        if stream is not None:
            stream.add_lines(lines)
        elif table is not None and not table.full:
            import json

            for line in lines.split(b"\n"):
                table.add_row(json.loads(line.strip().rstrip(b",")))
        elif table is not None:
            table.hidden += count

    def warn(line: str) -> None:
        from rich.text import Text

        stderr.print(Text(line), soft_wrap=True)  # the worker made it printable already

    def warned(trailer: dict[str, Any]) -> dict[str, Any]:
        """The merged trailer with the config's warnings before the templates' (its workers list none)."""
        return {**trailer, "warnings": config_warnings(config, trailer.get("warnings") or [], decides=True)}

    show_progress = not as_json and not quiet and stderr.is_terminal
    workers = None
    try:
        # The workers start before the progress bar's and the shared indexes' threads do: see start_workers.
        workers = start_workers(count, config=config_file, now=at, mode=mode, outbox=outbox_dir, strict=strict,
                                quiet=quiet, resend_unconfirmed=resend_unconfirmed, limit=max_deliveries, warn=warn,
                                env=shared.env if shared is not None else None, live_clock=live_clock,
                                progress=show_progress)
        if shared is not None:
            shared.start()  # the helper watched, or the indexes built in a thread
        with progress(stderr.console if show_progress else None, show_progress, f"{mode} ({count} workers)") as advance:
            merged = workers.follow(on_decisions, advance, advance.total)
    except KeyboardInterrupt:
        stopped = _stopped_workers(workers, on_decisions, mode, at)
        if stream is None:
            if mode != "dry-run":
                _say_stopped(stopped.counts)
            raise
        _end(stream, {**warned(stopped.trailer()), "error": INTERRUPTED})
        stopped_after_document()
    except Exception as error:  # noqa: BLE001 - starting a worker failed (no interpreter, no fork): one document
        if stream is not None and stream.begun:
            _end(stream, {**warned(_stopped_workers(None, on_decisions, mode, at).trailer()), "error": error_json(error)})
        elif stream is not None:
            json_out({"error": error_json(error)})
        stderr.print(error_line(error_json(error)["message"]), soft_wrap=True)
        if os.environ.get("CARTRESCUE_DEBUG"):
            raise
        raise typer.Exit(error_json(error)["exit_code"]) from None
    finally:
        if shared is not None:
            shared.close()  # the workers have ended
    if mode == "dry-run" and merged.error is None:  # the templates every worker rendered, checked once
        used = {tuple(files) for report in merged.shards for files in (report.trailer or {}).get("used_files") or []}
        if used:
            from cartrescue.template_check import lint_cached

            findings = lint_cached(config, sorted(used))[1]
            _say_warnings(stderr, findings)  # the shards' own warnings were relayed from their stderr
            merged.warnings += findings
            merged.findings = len(findings)
            if strict and findings and not merged.exit_code:
                merged.exit_code = int(ExitCode.SOME_FAILED)
    said = merged.error is not None and not (quiet and merged.exit_code == int(ExitCode.LOCKED))
    if stream is not None and _before_any_output(stream, merged.error):
        json_out({"error": merged.error})
        if said:
            stderr.print(error_line(merged.error["message"]), soft_wrap=True)  # type: ignore[index]
    elif stream is not None:
        _end(stream, warned(merged.trailer()))
        if said:
            stderr.print(error_line(merged.error["message"]), soft_wrap=True)  # type: ignore[index]
    elif merged.error is not None and not merged.counts["carts"]:  # no shard got as far as a cart
        if said:
            stderr.print(error_line(merged.error["message"]), soft_wrap=True)
    else:
        if not (quiet and _all_well(merged.counts, merged)):
            _print_table_and_summary(table, merged, merged.counts, eml)
        if said:
            stderr.print(error_line(merged.error["message"]), soft_wrap=True)  # type: ignore[index]
    if merged.exit_code:
        raise typer.Exit(merged.exit_code)


def _before_any_output(stream: "JsonStream", error: dict[str, Any] | None) -> bool:
    """``run --workers``'s workers failed before any wrote a decision: its document is the
    ``error`` alone, as a run without workers prints it (README). A stop keeps the run's whole
    document, as README's exit code 130 promises (its counts, its decisions: none)."""
    return error is not None and not stream.begun and error.get("exit_code") != 130


def _print_table_and_summary(table: Any, summary: Any, counts: dict[str, Any], eml: Path | None, *,
                             plan: bool = False) -> None:
    """The table of the first decisions (unless --quiet) and the summary panel, on stdout
    (``plan``: of `carts`, which renders nothing)."""
    console = out_console()
    if table is not None:
        console.print(table.table, crop=False)
        if table.hidden:
            console.print(f"… {table.hidden} more carts (use --all to list every one, or --json)")
        if table.mode == "compact":
            console.print("(a narrow terminal: --wide shows every column)")
    _print_summary(console, summary, counts, eml, plan=plan)


def _sends(mode: str, counts: dict[str, Any]) -> str:
    """The summary's sends, as ``--json`` counts them. A dry-run's send whose message could not
    be rendered would not go out (``failed``, ``render_error``): "157 send" would promise 49 more
    than a live run delivers. A delivering run counts it among its failed (its next line)."""
    unrendered = counts["deliveries"].get("render_error", 0) if mode == "dry-run" else 0
    if not unrendered:
        return f"[green]{counts['send']} send[/]"
    return (f"[green]{counts['send'] - unrendered} send[/], [red]{unrendered} could not be rendered[/] "
            "(see the warnings)")


def _print_summary(console: Any, summary: Any, counts: dict[str, Any], eml: Path | None, *,
                   plan: bool = False) -> None:
    """The panel under the table. `carts` (``plan``) names its mode as its ``--json`` does and
    points to the commands that render: the options a dry-run's panel names are not its own."""
    from rich.panel import Panel
    from rich.text import Text

    lines = [
        f"mode [bold]{'plan' if plan else summary.mode}[/] at {summary.now:%Y-%m-%d %H:%M} UTC — {counts['carts']} carts: "
        f"{_sends(summary.mode, counts)}, [yellow]{counts['defer']} defer[/], [dim]{counts['skip']} skip[/]"
        + (f", [magenta]{counts['holdout']} held out[/]" if counts.get("holdout") else ""),
    ]
    shards = getattr(summary, "shards", None)
    if shards:
        lines.append(f"{len(shards)} workers (shards " + ", ".join(
            f"{report.shard}: exit {report.exit_code}" for report in shards) + ")")
    if plan:
        lines.append("plan: nothing was rendered, delivered or recorded (`cartrescue run` renders the messages as a "
                     "dry-run; `cartrescue preview CART_ID` shows one)")
    elif summary.mode == "dry-run" and eml is not None:
        lines.append(f"dry-run: nothing was delivered or recorded; the messages it would send are in {eml} "
                     "(--send or --outbox DIR delivers)")
    elif summary.mode == "dry-run":
        lines.append("dry-run: nothing was delivered or recorded (--eml DIR writes the messages to read; --send or "
                     "--outbox DIR delivers)")
    else:
        lines.append(f"delivered {counts['sent']}, failed {counts['failed']}"
                     + (f", unconfirmed {counts['deliveries']['unconfirmed']} (no reply after the message; not resent)"
                        if counts["deliveries"].get("unconfirmed") else ""))
        # A failure a note explains in full (the call list's header: job.call_list_notes) is said once.
        tally = counts.get("failures") or {}
        failures = sorted(((why, n) for why, n in tally.items()
                           if not (why and any(why in note for note in summary.notes))), key=lambda item: -item[1])
        if failures:
            from rich.markup import escape

            from cartrescue.text import printable

            lines.extend(f"[red]failed:[/] {n} × {escape(printable(why))}" for why, n in failures[:3])
            # The tally keeps a few kinds (Counts.failures): the rest is what the failed count leaves.
            other = counts["failed"] - sum(tally.values()) + sum(n for _why, n in failures[3:])
            if other > 0:
                lines.append(f"[red]failed:[/] {other} for other reasons (see --json)")
    if released_any(summary):
        lines.extend(_released_lines(summary))
    elif summary.unconfirmed:
        from cartrescue.channels import silent_parties
        from cartrescue.text import counted

        one = summary.unconfirmed == 1
        lines.append(f"[yellow]{counted(summary.unconfirmed, 'earlier claim')} {'has' if one else 'have'} no outcome "
                     f"(a run was killed{silent_parties(summary.unconfirmed_channels)}); not resent "
                     f"(see `cartrescue doctor`; --resend-unconfirmed sends {'it' if one else 'them'} again)[/]")
        if summary.killed_left:
            lines.append(f"[yellow]{summary.killed_left} of them {'was' if summary.killed_left == 1 else 'were'} left by a run killed (or stopped with messages in "
                         "flight: Ctrl-C, SIGTERM, a ledger error) since the last run, found "
                         "now: those customers may not have got their message (said once)[/]")
    if counts["problems"]:
        from cartrescue.text import counted

        lines.append(f"[yellow]{counted(counts['problems'], 'problem')} (a source row that could not be read, a message "
                     "that could not be rendered): see the warnings[/]")
    warnings = getattr(summary, "warnings", None) or []
    findings = getattr(summary, "findings", 0)
    if len(warnings) > findings:  # a call list the run could not clean
        from cartrescue.text import counted

        lines.append(f"[yellow]{counted(len(warnings) - findings, 'warning')} (the call list): see the warnings[/]")
    if findings:
        from cartrescue.text import counted

        lines.append(f"[yellow]{counted(findings, 'finding')} of `templates check` in the templates this run used: "
                     "see the warnings (--strict: exit 1)[/]")
    if summary.notes:
        from rich.markup import escape

        from cartrescue.text import printable

        lines.extend(f"[yellow]note:[/] {escape(printable(note))}" for note in summary.notes)
    pruned = getattr(summary, "pruned", None) or {}
    if any(pruned.values()):
        lines.append(f"pruned {pruned.get('decisions', 0)} decisions and {pruned.get('runs', 0)} run "
                     "records past ledger.retention")
    reasons = ", ".join(f"{name} {n}" for name, n in counts["reasons"].items())
    lines.append(f"reasons: {reasons}")
    # Only counts and fixed words: the markup below is ours, none of it comes from data.
    console.print(Panel(Text.from_markup("\n".join(lines)), title="cartrescue", expand=False))


def run(
    config: ConfigOption = None,
    as_json: JsonOption = False,
    now: NowOption = None,
    send: Annotated[bool, typer.Option("--send", help="Really deliver: e-mail over SMTP, and SMS and webhook messages where tiers use them "
                                                 "(default: dry-run).")] = False,
    outbox: Annotated[
        Optional[Path], typer.Option("--outbox", metavar="DIR", help=(
            "Write every message as an .eml file into DIR (counts as delivery; a relative DIR is beside the config "
            "file, as the config's own paths are)."))
    ] = None,
    eml: Annotated[
        Optional[Path], typer.Option("--eml", metavar="DIR", help=(
            "Dry-run only: also write each message it would send as a file into DIR (.eml; .sms.txt and .json for "
            "SMS and webhook), to read before a live run; a relative DIR is beside the config file. Nothing is "
            "recorded: unlike --outbox, no step counts as sent."))
    ] = None,
    strict: Annotated[bool, typer.Option("--strict", help=(
        "Stop before delivering anything if any source row is bad (exit 3, naming its file and line); a dry-run "
        "also exits 1 on a finding of `templates check` in the templates it used."))] = False,
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
        "--limit", min=0, metavar="N", help="Deliver at most N messages in this run (a careful first live run); the rest are "
                               "deferred with reason run_limit and go out in later runs.")] = None,
    workers: Annotated[Optional[int], typer.Option(
        "--workers", min=1, max=64, metavar="N", show_default=False,
        help="Split the carts by address across N worker processes on one ledger (default: the cores, at most 8, "
             "and one per 5,000 rows of a CSV export). 1: one process.")] = None,
    shard: Annotated[Optional[str], typer.Option(
        "--shard", metavar="K/N",
        help="Run only shard K of N (one per host or container on a shared PostgreSQL ledger); see "
             "docs/workers.md.")] = None,
    live_clock: Annotated[bool, typer.Option(
        "--live-clock", hidden=True,
        help="A worker of run --workers whose clock is not pinned: --now is when the run started, and claims "
             "are stamped by the real clock.")] = False,
) -> None:
    """The cron job: read carts, decide, prioritize, render, and deliver or dry-run.

    Without `--send` or `--outbox` this is a **dry-run**: it shows what it would do and records
    nothing (`--eml DIR` also writes the messages it would send, to read), and runs the checks of
    `templates check` once on each template it rendered: a `warning:` line per finding, exit
    code unchanged unless `--strict`. With `--outbox DIR`
    every message is written as an .eml file and recorded in the ledger, as sent; with `--send` it
    goes out over SMTP. A second run at the same moment delivers nothing.

    Exit codes: 0 ok, 1 some carts failed (an unreadable source row,
    reported with its file and line and its cart skipped; a failed delivery; a template error),
    2 config or ledger error, 3 the source could not be read (or `--strict` met a bad row, or a
    sending run held back on a stale export), 4 another run holds the lock, 6 this run lost its
    lock, 130 stopped by Ctrl-C or SIGTERM (README, "Exit codes", has them all).

    Example (cron, every 10 minutes):

        */10 * * * * cd /srv/shop && cartrescue run --send --quiet

    Several hosts on one PostgreSQL ledger, each running one shard of four:

        cartrescue run --send --quiet --shard 2/4
    """
    if send and outbox:
        fail(ConfigError("--send and --outbox exclude each other"), as_json)
    if eml is not None and (send or outbox):
        fail(ConfigError("--eml writes a dry-run's messages: not with --send or --outbox"), as_json)
    mode = "send" if send else "outbox" if outbox else "dry-run"
    if resend_unconfirmed and mode == "dry-run":
        fail(ConfigError("--resend-unconfirmed needs --send (or --outbox)"), as_json)
    if shard is not None and workers not in (None, 1):
        fail(ConfigError("--workers and --shard exclude each other (--shard runs one worker's part)"), as_json)
    with made_folders() as made:  # a run that fails before writing there leaves no empty folder behind
        _plan_command(config, as_json, now, mode=mode, outbox=outbox, strict=strict, deliver=True,
                      limit=None if show_all else 50, quiet=quiet, resend_unconfirmed=resend_unconfirmed,
                      max_deliveries=max_deliveries, wide=wide, workers=workers, shard=shard, eml=eml,
                      live_clock=live_clock, made=made)


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

    Exit codes: 0 listed, 1 a source row could not be read (listed with its file and line;
    --strict stops at it instead, exit 3), 2 usage or config error (or the ledger cannot be
    read), 3 the source cannot be read.

    Example:

        cartrescue carts --json | jq '.decisions[] | select(.action=="skip") | .reason'
    """
    _plan_command(config, as_json, now, mode="dry-run", outbox=None, strict=strict, deliver=False,
                  limit=None if show_all else 50, quiet=False, wide=wide)


