"""`codes list|export|generate|import`: per-recipient incentive codes."""

import sys
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from cartrescue.commands.common import (
    ConfigOption,
    ExportJsonOption,
    JsonOption,
    NowOption,
    closed_pipe,
    err_console,
    error_line,
    fail,
    json_out,
    load,
    out_console,
    output_file,
    parse_now,
    reading_ledger,
    stdout_or_file,
    sub_typer,
    write_whole,
)
from cartrescue.errors import CartrescueError, ConfigError

app = sub_typer("Incentive codes: list unused and expired ones, generate and export codes for the shop.")
PoolOption = Annotated[Optional[str], typer.Option("--pool", metavar="NAME", help="Only this code pool (its `codes.pool` name).")]


def _codes(config: Path | None, now: str | None, pool: str | None = None, *,
           create: bool = True, dated: bool = True) -> tuple[Any, Any, datetime]:
    """The config, its code pools on its ledger, and the command's now. ``pool`` (a ``--pool``)
    is checked first: an unknown one is a usage error before the ledger is opened or created.
    ``create=False``: a command that only reads (``codes list``) leaves the ledger as it is
    (:meth:`cartrescue.config.Config.open_ledger`). ``dated``: the command's figures go by its
    now (``list``'s active and expired, ``export``'s exported_at), so a clock the config pins
    (``now:``) is said, as ``run`` says it: a list of a shop left with the demo's clock counted
    every code as of that moment."""
    from cartrescue.compose.incentives import Codes, pool_named, pools
    from cartrescue.job import resolve_now

    cfg = load(config, decides=dated)
    at = resolve_now(cfg, parse_now(now))
    if pool is not None:
        pool_named(pools(cfg), pool)
    return cfg, Codes(cfg, cfg.open_ledger() if create else reading_ledger(cfg)), at


@app.command("list")
def codes_list(
    config: ConfigOption = None,
    as_json: JsonOption = False,
    now: NowOption = None,
    pool: PoolOption = None,
    status: Annotated[Optional[list[str]], typer.Option(
        "--status", help="List the codes with this status (repeatable): unused, active, expired, undelivered, "
                         "withdrawn, all.")] = None,
    wide: Annotated[bool, typer.Option("--wide", help="Every column in full, whatever the terminal's width.")] = False,
) -> None:
    """Count the codes of every pool by status and list those with `--status`.

    unused: never handed out; active: its message was delivered, or may have been (unconfirmed,
    or claimed by a run that died), and it has not expired; expired: handed out and past its
    expiry (safe to disable in the shop); a code a retry replaced with a fresh one (it had less
    than a day left) is active until its expiry, then expired; undelivered: allocated to a
    message that failed (not over the webhook, which may have delivered an earlier attempt: active);
    withdrawn: unused and taken out of its pool file, so never handed out (`codes import`). Codes are only handed out when their message is delivered (never in a dry-run).
    Codes are never cut; on a narrow terminal the list leaves out step and allocation time
    (`--wide` shows them) and times are in UTC to the minute.

    Example:

        cartrescue codes list --status unused --status expired --json
    """

    from cartrescue.compose.incentives import STATUSES

    wanted = [s for s in (status or []) for s in (STATUSES if s == "all" else (s,))]
    unknown = sorted(set(wanted) - set(STATUSES))
    if unknown:
        fail(ConfigError(f"--status {unknown[0]}: expected one of {', '.join(STATUSES)}, all"), as_json)
    try:
        cfg, codes, at = _codes(config, now, pool, create=False)
        summary = {name: counts for name, counts in codes.summary(at).items() if pool in (None, name)}
        rows = list(codes.rows(at, pool=pool, statuses=wanted)) if wanted else []
    except CartrescueError as error:
        fail(error, as_json)
    if as_json:
        json_out({"now": at.isoformat().replace("+00:00", "Z"), "pools": summary, "codes": rows}, config=cfg,
                 decides=True)
        return
    from rich.text import Text

    from cartrescue.output import Column, FitTable, table_mode
    from cartrescue.text import printable

    if not summary:  # an empty table read as a listing that failed, or as pools without codes
        err_console().print(error_line(_no_pool_note(cfg), "note", "yellow"), soft_wrap=True)
        return
    console = out_console()
    # A count is never cut (rich squeezed 12345 unused codes to "1234…" at 60 columns): the
    # pool's name narrows, and a table still too wide is printed wider, its lines folded.
    pools = FitTable([Column("pool"), *(Column(name, "right") for name in STATUSES)], [("pool", 8), ("pool", 4)])
    for name, counts in summary.items():
        pools.add_row(Text(printable(name)), *(str(counts[s]) for s in STATUSES))
    table = pools.render(console.width)
    table.title = "code pools"
    console.print(table, crop=False)
    if wanted:
        mode = table_mode(console.width, wide)
        # A code is never cut: it is what a person copies into the shop. Times to the minute.
        names: tuple[str, ...] = ("pool", "code", "status", "email", "step", "allocated_at", "expires_at")
        if mode == "compact":
            names = ("pool", "code", "status", "email", "expires_at")
        listing = FitTable([Column(name, "right" if name == "step" else "left", whole=name == "code") for name in names],
                           [("email", 16), ("pool", 8), ("email", 8), ("pool", 4)], wide=mode == "wide")
        for row in rows:
            listing.add_row(*(_code_cell(name, row[name], mode) for name in names))
        console.print(listing.render(console.width), crop=False)
        console.print(f"{len(rows)} codes")


def _no_pool_note(cfg: Any) -> str:
    """What ``codes list`` says of a config without a code pool: which file, and the key that sets one."""
    from cartrescue.config import DEFAULT_CONFIG

    return (f"{cfg.config_file or DEFAULT_CONFIG}: no code pool is configured: a step's incentive sets one "
            "(sequences.NAME.steps[N].incentive.codes: {pool: NAME, file: FILE} or {pool: NAME, pattern: PATTERN})")


def _code_cell(name: str, value: Any, mode: str) -> Any:
    """A cell of `codes list`: data as Text through printable; times to the minute unless --wide."""
    from rich.text import Text

    from cartrescue.text import printable

    if value is None:
        return ""
    text = str(value)
    if name.endswith("_at") and mode != "wide":
        text = text[:16].replace("T", " ")  # 2026-11-20T10:00:00Z -> 2026-11-20 10:00 (UTC)
    return Text(printable(text))


@app.command("export")
def codes_export(
    config: ConfigOption = None,
    as_json: ExportJsonOption = False,
    now: NowOption = None,
    pool: PoolOption = None,
    output: Annotated[Optional[Path], typer.Option("--output", "-o", metavar="FILE", help="Write the CSV here (default, or -: stdout).")] = None,
    include_exported: Annotated[bool, typer.Option("--all", help="Also codes exported before.")] = False,
) -> None:
    """Export generated codes (CSV: code, pool, kind, value, status, usage_limit, allocated_at,
    expires_at) for import into the shop, and mark them exported.

    Only codes generated from a `pattern` are exported (pool-file codes came from the shop).
    Import them before they go out: `codes generate` makes them ahead of time. With no code to
    export, an --output file that holds an earlier export is left as it was (not emptied).

    Example:

        cartrescue codes export --output new-codes.csv && shop-import new-codes.csv
    """

    output = stdout_or_file(output)
    try:
        from cartrescue.compose.incentives import export_csv

        if output is None and getattr(sys.stdout, "discarded", False):  # a cron line's >&-
            raise ConfigError("stdout is closed, and the codes would go there: give --output FILE (nothing was "
                              "marked exported)")
        cfg, codes, at = _codes(config, now, pool)
        earlier = output is not None and output.is_file() and output.stat().st_size > 0  # an earlier export
        rows = codes.exportable(at, pool=pool, include_exported=include_exported)
        text = export_csv(rows)
        kept = earlier and not rows  # run again before the shop imported the last one: not emptied
        if output is not None and not kept:
            # Written, then marked: a file that cannot be written marks no code exported, and
            # leaves no file or folder it made (output_file), nothing being made before.
            with output_file("--output", output):
                output.write_text(text, encoding="utf-8")
            codes.mark_exported(rows, at)
    except CartrescueError as error:
        fail(error, as_json)
    document = {"exported": len(rows), "output": str(output) if output else None, "codes": rows,
                "unchanged": kept}
    if output is None:  # written first, then marked: a reader gone mid-way (`| head`) leaves them unmarked
        if as_json:
            json_out(document, config=cfg, decides=True)
        else:
            try:
                write_whole(text)
            except BrokenPipeError as exc:
                closed_pipe(exc, False)
        try:
            codes.mark_exported(rows, at)
        except CartrescueError as error:
            fail(error, False)  # the --json document is out already: the error goes to stderr alone
    elif as_json:
        json_out(document, config=cfg, decides=True)
    if not as_json:
        err_console().print(f"no code to export: {output} left as it was" if kept else
                            f"exported {len(rows)} codes" + (f" to {output}" if output else ""), highlight=False,
                            soft_wrap=True)


@app.command("generate")
def codes_generate(
    count: Annotated[int, typer.Argument(min=1, max=1_000_000, help="How many codes to make.")],
    pool: Annotated[str, typer.Option("--pool", metavar="NAME", help="The pattern pool to fill (its `codes.pool` name).")],
    config: ConfigOption = None,
    as_json: JsonOption = False,
) -> None:
    """Make COUNT unused codes of a pattern pool ahead of time, to export and import into the shop.

    Runs hand these out first and generate new ones only when none is left.

    Example:

        cartrescue codes generate 500 --pool comeback10 && cartrescue codes export -o codes.csv
    """

    from cartrescue.output import progress
    from cartrescue.sources.base import ProgressTotal

    stderr = err_console()
    show_progress = not as_json and stderr.is_terminal
    try:
        cfg, codes, _at = _codes(config, None, pool, dated=False)
        with progress(stderr if show_progress else None, show_progress, f"generating ({pool})", "codes") as meter:
            meter.total(ProgressTotal(count, "codes"))
            made = codes.generate(pool, count, on_progress=meter)
    except CartrescueError as error:
        fail(error, as_json)
    if as_json:
        json_out({"pool": pool, "generated": len(made), "codes": made}, config=cfg)
    else:
        stderr.print(f"generated {len(made)} codes in pool {pool} (export them with `cartrescue codes export`)",
                            highlight=False)


@app.command("import")
def codes_import(
    config: ConfigOption = None,
    as_json: JsonOption = False,
    pool: PoolOption = None,
) -> None:
    """Read the pool files into the ledger now (runs also do it before their first allocation).

    A code already in the ledger is skipped, so importing twice adds nothing. An unused code that
    is no longer in its file is withdrawn (never handed out; `codes list` shows it), and restored
    when the file lists it again; a code already handed out stays as it is.

    Example:

        cartrescue codes import && cartrescue codes list
    """

    result: dict[str, dict[str, int]] = {}
    try:
        cfg, codes, _at = _codes(config, None, pool, dated=False)
        names = [pool] if pool is not None else [name for name, p in codes.pools.items() if p.file is not None]
        for name in names:
            imported = codes.import_file(name)
            result[name] = {"read": imported.read, "added": imported.added, "withdrawn": imported.withdrawn,
                            "restored": imported.restored}
    except CartrescueError as error:
        fail(error, as_json)
    if as_json:
        json_out({"pools": result}, config=cfg)
    else:
        for name, counts in result.items():
            err_console().print(f"{name}: read {counts['read']}, added {counts['added']}, withdrawn "
                                f"{counts['withdrawn']}, restored {counts['restored']}", highlight=False)
        if not result:
            err_console().print("no pool files configured (incentive codes: {pool, file})", highlight=False)


