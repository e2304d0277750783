"""The command line: parses arguments, wires the parts, prints, and maps errors to exit codes.

Owns nothing of the domain. Heavy modules (SQLAlchemy, Jinja, Babel) are imported inside the
commands so that ``cartrescue --help`` starts fast (benchmark B6).
"""

from __future__ import annotations

import sys
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, NoReturn, Optional

import typer

from cartrescue.errors import CartrescueError, ConfigError, ExitCode

app = typer.Typer(
    name="cartrescue",
    help=(
        "Win back abandoned shopping carts in batch: read carts from a CSV export or the shop's "
        "database, decide which are abandoned and eligible, prioritize them, render and send (or "
        "dry-run) reminders, and record every decision in a ledger.\n\n"
        "Start with `cartrescue init`, then `cartrescue run` (a dry-run) and `cartrescue run --send` from cron.\n\n"
        "Exit codes: 0 ok, 1 some carts failed, 2 config or usage error, 3 source unreadable, "
        "4 another run holds the lock, 5 (doctor) no successful run for too long."
    ),
    no_args_is_help=True,
    rich_markup_mode="markdown",
    add_completion=False,
    pretty_exceptions_enable=False,
)

ConfigOption = Annotated[
    Optional[Path],
    typer.Option("--config", "-c", help="Config file (default: ./cartrescue.yaml).", show_default=False),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print one JSON document instead of tables (for scripts).")]
NowOption = Annotated[
    Optional[str],
    typer.Option("--now", help="Run as at this instant (ISO 8601, e.g. 2026-11-20T10:00:00Z): replays and tests."),
]


def _parse_now(value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        raise ConfigError(f"--now: expected an ISO 8601 time like 2026-11-20T10:00:00Z, got {value!r}") from None


def _fail(error: CartrescueError, as_json: bool) -> NoReturn:
    if as_json:
        import json

        print(json.dumps({"error": str(error), "exit_code": int(error.exit_code)}))
    err_console().print(f"[bold red]error:[/] {error}", highlight=False, markup=True, soft_wrap=True)
    raise typer.Exit(int(error.exit_code))


def err_console() -> Any:
    from rich.console import Console

    return Console(stderr=True)


def _load(config: Path | None) -> Any:
    from cartrescue.config import load_config

    return load_config(config)


def _plan_command(config_path: Path | None, as_json: bool, now: str | None, *, mode: str, outbox: Path | None,
                  strict: bool, deliver: bool, limit: int | None, quiet: bool, resend_unconfirmed: bool = False) -> None:
    from rich.console import Console

    from cartrescue.job import RunRequest, run_job
    from cartrescue.output import DecisionTable, JsonStream, progress, result_json

    config = _load(config_path)
    console = Console()
    stderr = err_console()
    request = RunRequest(mode=mode, now=_parse_now(now), outbox=outbox, strict=strict, deliver=deliver,  # type: ignore[arg-type]
                         resend_unconfirmed=resend_unconfirmed)
    from cartrescue.job import resolve_now

    at = resolve_now(config, request.now)
    request.now = at
    stream = JsonStream(sys.stdout, {"mode": mode if deliver else "plan", "now": at.isoformat().replace("+00:00", "Z")}) if as_json else None
    table = None if as_json or quiet else DecisionTable(limit)

    def on_result(result: Any) -> None:
        if stream is not None:
            stream.add_json(result_json(result))
        elif table is not None:
            table.add(result)

    def on_problem(problem: Any) -> None:
        stderr.print(f"[yellow]warning:[/] {problem}", highlight=False, soft_wrap=True)

    show_progress = not as_json and stderr.is_terminal
    with progress(stderr, show_progress, "planning" if not deliver else f"{mode}") as advance:
        summary = run_job(config, request, on_result, on_problem, advance)
    counts = summary.counts.as_dict()
    if stream is not None:
        stream.close({"counts": counts, "run_id": summary.run_id, "unconfirmed": summary.unconfirmed,
                      "released": summary.released, "problems": [str(p) for p in summary.problems]})
    else:
        if table is not None:
            console.print(table.table)
            if table.hidden:
                console.print(f"… {table.hidden} more carts (use --all to list every one, or --json)")
        _print_summary(console, summary, counts)
    if summary.counts.failed or summary.counts.problems:
        raise typer.Exit(int(ExitCode.SOME_FAILED))


def _print_summary(console: Any, summary: Any, counts: dict[str, Any]) -> None:
    from rich.panel import Panel

    lines = [
        f"mode [bold]{summary.mode}[/] at {summary.now:%Y-%m-%d %H:%M} UTC — {counts['carts']} carts: "
        f"[green]{counts['send']} send[/], [yellow]{counts['defer']} defer[/], [dim]{counts['skip']} skip[/]"
        + (f", [magenta]{counts['holdout']} held out[/]" if counts.get("holdout") else ""),
    ]
    if summary.mode == "dry-run":
        lines.append("dry-run: nothing was delivered or recorded (use --outbox DIR or --send)")
    else:
        lines.append(f"delivered {counts['sent']}, failed {counts['failed']}")
    if summary.released:
        lines.append(f"[yellow]{summary.released} earlier claims without outcome were released and tried again "
                     "(--resend-unconfirmed)[/]")
    elif summary.unconfirmed:
        lines.append(f"[yellow]{summary.unconfirmed} earlier claims have no outcome (a run was killed); not resent "
                     "(see `cartrescue doctor`; --resend-unconfirmed sends them again)[/]")
    if counts["problems"]:
        lines.append(f"[yellow]{counts['problems']} source rows could not be read (see warnings)[/]")
    reasons = ", ".join(f"{name} {n}" for name, n in counts["reasons"].items())
    lines.append(f"reasons: {reasons}")
    console.print(Panel("\n".join(lines), title="cartrescue", expand=False))


@app.command()
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
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Only the summary (for cron).")] = False,
    resend_unconfirmed: Annotated[bool, typer.Option(
        "--resend-unconfirmed",
        help="Also resend the claims a killed run left without outcome. They may have been delivered already: "
             "a customer can get a step twice. See docs/sending.md.")] = False,
) -> None:
    """The cron job: read carts, decide, prioritize, render, and deliver or dry-run.

    Without `--send` or `--outbox` this is a **dry-run**: it shows what it would do and records
    nothing. With `--outbox DIR` every message is written as an .eml file and recorded in the
    ledger; with `--send` it goes out over SMTP. A second run at the same moment delivers nothing.

    Example (cron, every 10 minutes):

        */10 * * * * cd /srv/shop && cartrescue run --send --quiet
    """
    if send and outbox:
        _fail(ConfigError("--send and --outbox exclude each other"), as_json)
    mode = "send" if send else "outbox" if outbox else "dry-run"
    if resend_unconfirmed and mode == "dry-run":
        _fail(ConfigError("--resend-unconfirmed needs --send (or --outbox)"), as_json)
    try:
        _plan_command(config, as_json, now, mode=mode, outbox=outbox, strict=strict, deliver=True,
                      limit=None if show_all else 50, quiet=quiet, resend_unconfirmed=resend_unconfirmed)
    except CartrescueError as error:
        _fail(error, as_json)


@app.command()
def carts(
    config: ConfigOption = None,
    as_json: JsonOption = False,
    now: NowOption = None,
    strict: Annotated[bool, typer.Option("--strict", help="Fail on the first bad source row.")] = False,
    show_all: Annotated[bool, typer.Option("--all", help="List every cart, not only the first 50.")] = False,
) -> None:
    """List candidate carts with score, tier, due step and the reason for every skip or defer.

    Reads the ledger but never renders, delivers or records anything.

    Example:

        cartrescue carts --json | jq '.decisions[] | select(.action=="skip") | .reason'
    """
    try:
        _plan_command(config, as_json, now, mode="dry-run", outbox=None, strict=strict, deliver=False,
                      limit=None if show_all else 50, quiet=False)
    except CartrescueError as error:
        _fail(error, as_json)


@app.command()
def preview(
    cart_id: Annotated[str, typer.Argument(help="The cart's id as the source has it.")],
    config: ConfigOption = None,
    as_json: JsonOption = False,
    now: NowOption = None,
    step: Annotated[Optional[int], typer.Option("--step", min=1, help="Render this step (default: the due one, else 1).")] = None,
    locale: Annotated[Optional[str], typer.Option("--locale", help="Render in this locale instead of the customer's.")] = None,
    html: Annotated[Optional[Path], typer.Option("--html", help="Also write the HTML part to this file.")] = None,
    variant: Annotated[Optional[str], typer.Option(
        "--variant", help="Render this A/B variant of the step (default: the one the address is assigned).")] = None,
    screenshot: Annotated[Optional[Path], typer.Option(
        "--screenshot", help="Also render the HTML part in headless Chromium to this PNG file.")] = None,
    window_size: Annotated[str, typer.Option(
        "--window-size", help="Screenshot size in pixels, WIDTHxHEIGHT.")] = "800x1200",
) -> None:
    """Render one cart's message (subject, text, and optionally HTML) without sending it.

    Nothing is claimed, sent or allocated: a per-recipient incentive code shows as a placeholder.
    `--screenshot` needs Debian's `chromium` package (`apt-get install -y chromium`).

    Examples:

        cartrescue preview 1042 --step 3 --html /tmp/step3.html

        cartrescue preview 1042 --step 3 --locale sv --variant b --screenshot /tmp/step3-sv-b.png
    """
    import json as jsonlib

    try:
        from cartrescue.job import resolve_now
        from cartrescue.preview import preview as make_preview

        size = None
        if screenshot is not None:
            from cartrescue.screenshot import parse_size

            size = parse_size(window_size)
        cfg = _load(config)
        shown = make_preview(cfg, cart_id, resolve_now(cfg, _parse_now(now)), step=step, locale=locale, variant=variant)
        message = shown.message
        if screenshot is not None and size is not None:
            from cartrescue.screenshot import screenshot as take_screenshot

            take_screenshot(message.html, screenshot, size=size)
    except CartrescueError as error:
        _fail(error, as_json)
    decision, number, variant = shown.decision, shown.step, shown.variant
    if html is not None:
        html.write_text(message.html, encoding="utf-8")
    if as_json:
        print(jsonlib.dumps({"cart_id": cart_id, "step": number, "variant": variant, "decision": decision.action.value,
                             "reason": decision.reason.value, "subject": message.subject, "text": message.text,
                             "html": message.html, "to": message.to.email,
                             "screenshot": str(screenshot) if screenshot is not None else None}, ensure_ascii=False))
        return
    from rich.console import Console
    from rich.rule import Rule

    console = Console()
    note = "" if decision.reason.value == "due" else f" (a run now would {decision.action.value}: {decision.reason.value})"
    arm = f" · variant {variant}" if variant else ""
    console.print(Rule(f"cart {cart_id} · step {number}{arm} · {decision.tier}{note}"))
    console.print(f"[bold]To:[/] {message.to.email}\n[bold]Subject:[/] {message.subject}\n", highlight=False)
    console.print(message.text, markup=False, highlight=False)
    if html is not None:
        console.print(Rule(f"HTML written to {html}"))
    if screenshot is not None:
        console.print(Rule(f"screenshot written to {screenshot} ({window_size})"))


@app.command()
def init(
    directory: Annotated[Path, typer.Argument(help="Where to write cartrescue.yaml and templates/.")] = Path("."),
    force: Annotated[bool, typer.Option("--force", help="Overwrite existing files.")] = False,
) -> None:
    """Write a starting config (cartrescue.yaml) and the default templates into DIRECTORY.

    Example:

        cartrescue init /srv/shop && $EDITOR /srv/shop/cartrescue.yaml
    """
    import shutil

    from cartrescue.render import shipped_templates

    directory.mkdir(parents=True, exist_ok=True)
    config_file = directory / "cartrescue.yaml"
    templates = directory / "templates"
    if (config_file.exists() or templates.exists()) and not force:
        _fail(ConfigError(f"{config_file} or {templates} exists already (use --force to overwrite)"), False)
    config_file.write_text(example_config(), encoding="utf-8")
    shutil.copytree(shipped_templates(), templates, dirs_exist_ok=True,
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "__init__.py"))
    err_console().print(f"wrote {config_file} and {templates}/ — edit the shop: and source: sections, then run `cartrescue run`")


def example_config() -> str:
    """The annotated example config (config.example.yaml), from a checkout or the installed copy."""
    here = Path(__file__).resolve().parent
    for candidate in (here.parent / "config.example.yaml", Path(sys.prefix) / "share" / "cartrescue" / "config.example.yaml"):
        if candidate.is_file():
            return candidate.read_text(encoding="utf-8")
    raise ConfigError("config.example.yaml is missing from this installation")


# -- templates check (issue 5) ------------------------------------------------------------------

templates_app = typer.Typer(
    help="Check message templates (for CI): `cartrescue templates check --junit report.xml`.",
    no_args_is_help=True, rich_markup_mode="markdown", add_completion=False, pretty_exceptions_enable=False,
)
app.add_typer(templates_app, name="templates")


def _load_or_default(config: Path | None) -> tuple[Any, bool]:
    """The config; without ``--config`` and without ./cartrescue.yaml, the defaults (shipped templates)."""
    from cartrescue.config import DEFAULT_CONFIG, Config

    if config is None and not Path(DEFAULT_CONFIG).exists():
        return Config(source={"type": "csv", "carts": "carts.csv"}, base_dir=Path.cwd()), True
    return _load(config), False


@templates_app.command("check")
def templates_check(
    config: ConfigOption = None,
    as_json: JsonOption = False,
    junit: Annotated[Optional[Path], typer.Option("--junit", help="Also write a JUnit XML report to PATH (for CI).")] = None,
    template: Annotated[Optional[list[str]], typer.Option("--template", "-t", help="Check only this template (repeatable).")] = None,
    locale: Annotated[Optional[list[str]], typer.Option("--locale", "-l", help="Check only this locale (repeatable).")] = None,
    templates: Annotated[Optional[Path], typer.Option(
        "--templates", help="Check this templates folder instead of the config's `templates:`.")] = None,
    carts: Annotated[Optional[Path], typer.Option(
        "--carts", help="Fixture carts from this CSV (docs/csv-format.md) instead of the bundled examples.")] = None,
    failures_only: Annotated[bool, typer.Option("--failures-only", help="List only failing combinations.")] = False,
    quick: Annotated[bool, typer.Option("--quick", help="Only the built-in edge-case carts, not the examples.")] = False,
) -> None:
    """Render every template × locale × variant × step against fixture carts; exit 1 on any failure.

    The fixtures are the bundled example carts plus edge cases (one item, 30 items, no image,
    very long names, Cyrillic text, zero-decimal currencies, markup in names). A check fails on
    undefined variables, Jinja syntax errors, HTML that does not parse, a missing text part, a
    missing unsubscribe link and subjects over 78 characters. Nothing is sent or recorded.

    Examples:

        cartrescue templates check --junit build/templates.xml

        cartrescue templates check --templates ./templates --template reminder-3 --locale sv --json
    """
    import json as jsonlib
    import time

    try:
        from cartrescue.template_check import TemplateChecker, example_carts, junit_xml, print_report

        cfg, defaulted = _load_or_default(config)
        if templates is not None:
            if not templates.is_dir():
                raise ConfigError(f"--templates {templates}: not a folder")
            cfg = cfg.model_copy(update={"templates": templates.resolve()})
        from cartrescue.template_check import edge_carts

        fixtures = edge_carts() if quick else None
        if carts is not None:
            if not carts.is_file():
                raise ConfigError(f"--carts {carts}: no such file")
            fixtures = edge_carts() + example_carts(carts, limit_per_shape=3)
        started = time.perf_counter()
        report = TemplateChecker(cfg, carts=fixtures).run(template or None, locale or None)
        seconds = time.perf_counter() - started
        if defaulted:
            report.notes.insert(0, "no cartrescue.yaml here: checked with the default config (use --config)")
        if junit is not None:
            junit.parent.mkdir(parents=True, exist_ok=True)
            junit.write_text(junit_xml(report, seconds), encoding="utf-8")
    except CartrescueError as error:
        _fail(error, as_json)
    if as_json:
        print(jsonlib.dumps(report.as_dict(), ensure_ascii=False, indent=1))
    else:
        from rich.console import Console

        print_report(report, Console(), show_passing=not failures_only)
        if junit is not None:
            err_console().print(f"JUnit XML written to {junit}", highlight=False)
    if not report.ok:
        raise typer.Exit(int(ExitCode.SOME_FAILED))


# -- incentive codes (issue 5) ------------------------------------------------------------------

codes_app = typer.Typer(
    help="Incentive codes: list unused and expired ones, generate and export codes for the shop.",
    no_args_is_help=True, rich_markup_mode="markdown", add_completion=False, pretty_exceptions_enable=False,
)
app.add_typer(codes_app, name="codes")
PoolOption = Annotated[Optional[str], typer.Option("--pool", help="Only this code pool (its `codes.pool` name).")]


def _codes(config: Path | None, now: str | None) -> tuple[Any, Any, datetime]:
    from cartrescue.incentives import Codes
    from cartrescue.job import resolve_now
    from cartrescue.ledger import Ledger

    cfg = _load(config)
    return cfg, Codes(cfg, Ledger(cfg.ledger_url)), resolve_now(cfg, _parse_now(now))


@codes_app.command("list")
def codes_list(
    config: ConfigOption = None,
    as_json: JsonOption = False,
    now: NowOption = None,
    pool: PoolOption = None,
    status: Annotated[Optional[list[str]], typer.Option(
        "--status", help="List the codes with this status (repeatable): unused, active, expired, undelivered, all.")] = None,
) -> None:
    """Count the codes of every pool by status and list those with `--status`.

    unused: never handed out; active: delivered and not expired; expired: handed out and past
    its expiry (safe to disable in the shop); undelivered: allocated to a message that was not
    sent. Codes are only handed out when their message is delivered (never in a dry-run).

    Example:

        cartrescue codes list --status unused --status expired --json
    """
    import json as jsonlib

    from cartrescue.incentives import STATUSES

    wanted = [s for s in (status or []) for s in (STATUSES if s == "all" else (s,))]
    unknown = sorted(set(wanted) - set(STATUSES))
    if unknown:
        _fail(ConfigError(f"--status {unknown[0]}: expected one of {', '.join(STATUSES)}, all"), as_json)
    try:
        cfg, codes, at = _codes(config, now)
        if pool is not None:
            codes.pool(pool)
        summary = {name: counts for name, counts in codes.summary(at).items() if pool in (None, name)}
        rows = list(codes.rows(at, pool=pool, statuses=wanted)) if wanted else []
    except CartrescueError as error:
        _fail(error, as_json)
    if as_json:
        print(jsonlib.dumps({"now": at.isoformat().replace("+00:00", "Z"), "pools": summary, "codes": rows},
                            ensure_ascii=False))
        return
    from rich.console import Console
    from rich.table import Table

    console = Console()
    table = Table(header_style="bold", title="code pools")
    table.add_column("pool")
    for name in STATUSES:
        table.add_column(name, justify="right")
    for name, counts in summary.items():
        table.add_row(name, *(str(counts[s]) for s in STATUSES))
    console.print(table)
    if wanted:
        listing = Table(header_style="bold")
        for column in ("pool", "code", "status", "email", "step", "allocated_at", "expires_at"):
            listing.add_column(column)
        for row in rows:
            listing.add_row(*(str(row[c]) if row[c] is not None else "" for c in
                              ("pool", "code", "status", "email", "step", "allocated_at", "expires_at")))
        console.print(listing)
        console.print(f"{len(rows)} codes")


@codes_app.command("export")
def codes_export(
    config: ConfigOption = None,
    as_json: JsonOption = False,
    now: NowOption = None,
    pool: PoolOption = None,
    output: Annotated[Optional[Path], typer.Option("--output", "-o", help="Write the CSV here (default: stdout).")] = None,
    include_exported: Annotated[bool, typer.Option("--all", help="Also codes exported before.")] = False,
) -> None:
    """Export generated codes (CSV: code, pool, kind, value, status, usage_limit, allocated_at,
    expires_at) for import into the shop, and mark them exported.

    Only codes generated from a `pattern` are exported (pool-file codes came from the shop).
    Import them before they go out: `codes generate` makes them ahead of time.

    Example:

        cartrescue codes export --output new-codes.csv && shop-import new-codes.csv
    """
    import json as jsonlib

    try:
        from cartrescue.incentives import export_csv

        cfg, codes, at = _codes(config, now)
        if pool is not None:
            codes.pool(pool)
        rows = codes.export(at, pool=pool, include_exported=include_exported)
    except CartrescueError as error:
        _fail(error, as_json)
    text = export_csv(rows)
    if output is not None:
        output.write_text(text, encoding="utf-8")
    if as_json:
        print(jsonlib.dumps({"exported": len(rows), "output": str(output) if output else None, "codes": rows},
                            ensure_ascii=False))
    elif output is None:
        sys.stdout.write(text)
    if not as_json:
        err_console().print(f"exported {len(rows)} codes" + (f" to {output}" if output else ""), highlight=False)


@codes_app.command("generate")
def codes_generate(
    count: Annotated[int, typer.Argument(min=1, max=1_000_000, help="How many codes to make.")],
    pool: Annotated[str, typer.Option("--pool", help="The pattern pool to fill (its `codes.pool` name).")],
    config: ConfigOption = None,
    as_json: JsonOption = False,
) -> None:
    """Make COUNT unused codes of a pattern pool ahead of time, to export and import into the shop.

    Runs hand these out first and generate new ones only when none is left.

    Example:

        cartrescue codes generate 500 --pool comeback10 && cartrescue codes export -o codes.csv
    """
    import json as jsonlib

    try:
        _cfg, codes, _at = _codes(config, None)
        made = codes.generate(pool, count)
    except CartrescueError as error:
        _fail(error, as_json)
    if as_json:
        print(jsonlib.dumps({"pool": pool, "generated": len(made), "codes": made}))
    else:
        err_console().print(f"generated {len(made)} codes in pool {pool} (export them with `cartrescue codes export`)",
                            highlight=False)


@codes_app.command("import")
def codes_import(
    config: ConfigOption = None,
    as_json: JsonOption = False,
    pool: PoolOption = None,
) -> None:
    """Read the pool files into the ledger now (runs also do it before their first allocation).

    A code already in the ledger is skipped, so importing twice adds nothing.

    Example:

        cartrescue codes import && cartrescue codes list
    """
    import json as jsonlib

    result: dict[str, dict[str, int]] = {}
    try:
        _cfg, codes, _at = _codes(config, None)
        names = [pool] if pool is not None else [name for name, p in codes.pools.items() if p.file is not None]
        for name in names:
            read, added = codes.import_file(name)
            result[name] = {"read": read, "added": added}
    except CartrescueError as error:
        _fail(error, as_json)
    if as_json:
        print(jsonlib.dumps({"pools": result}))
    else:
        for name, counts in result.items():
            err_console().print(f"{name}: read {counts['read']}, added {counts['added']}", highlight=False)
        if not result:
            err_console().print("no pool files configured (incentive codes: {pool, file})", highlight=False)


# -- opt-outs and health (issue 3) --------------------------------------------------------------


def _json_out(payload: Any) -> None:
    import json

    print(json.dumps(payload, ensure_ascii=False, default=str))


@app.command()
def unsubscribe(
    target: Annotated[str, typer.Argument(
        help="A token, the unsubscribe URL from a message, a mailto subject ('unsubscribe TOKEN'), or an address.",
        show_default=False)],
    config: ConfigOption = None,
    as_json: JsonOption = False,
) -> None:
    """Stop every reminder to one address: every cart, every step, from now on.

    Give the token (or the whole link, or the subject of an unsubscribe mail) and the address in
    it is suppressed after its signature is checked; a forged or altered token is refused (exit
    2). An address given as it is needs no token.

    Example:

        cartrescue unsubscribe 'https://shop.example.com/unsubscribe?token=Ym9iQGV4YW1wbGUuY29t.x1'
        cartrescue unsubscribe bob@example.com --json
    """
    from cartrescue.ledger import Ledger
    from cartrescue.suppressions import BadToken
    from cartrescue.suppressions import unsubscribe as do_unsubscribe

    try:
        cfg = _load(config)
        ledger = Ledger(cfg.ledger_url)
        try:
            done = do_unsubscribe(ledger, target, cfg.shop.unsubscribe_secret, source="cli")
        except BadToken as exc:
            raise ConfigError(f"refused: {exc} (nothing was changed)") from None
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
        finally:
            ledger.close()
    except CartrescueError as error:
        _fail(error, as_json)
    if as_json:
        _json_out({"email": done.email, "added": done.added})
        return
    state = "unsubscribed" if done.added else "already unsubscribed"
    err_console().print(f"{done.email}: {state} (no cart of this address gets another reminder)", highlight=False)


suppress_app = typer.Typer(
    help="Suppressions: addresses that never get a reminder (unsubscribed, bounced, imported).",
    no_args_is_help=True, rich_markup_mode="markdown", add_completion=False, pretty_exceptions_enable=False,
)
app.add_typer(suppress_app, name="suppress")


@suppress_app.command("import")
def suppress_import(
    file: Annotated[Path, typer.Argument(help="A CSV export with an e-mail column, or one address a line.",
                                         show_default=False)],
    config: ConfigOption = None,
    as_json: JsonOption = False,
    reason: Annotated[str, typer.Option("--reason", help="Recorded with each suppression.")] = "imported",
) -> None:
    """Suppress every address of FILE (another tool's unsubscribes, a bounce list, a do-not-mail list).

    A CSV (`,`, `;` or tab) is read by its e-mail column (`email`, `Email Address`, ...); any
    other file as one address a line (`#` starts a comment). Invalid entries are listed and the
    exit code is 1; the valid ones are imported anyway. Importing twice changes nothing.

    Example:

        cartrescue suppress import mailchimp-unsubscribed.csv --reason "mailchimp export"
    """
    from cartrescue.ledger import Ledger
    from cartrescue.suppressions import import_file

    try:
        cfg = _load(config)
        ledger = Ledger(cfg.ledger_url)
        try:
            result = import_file(ledger, file, reason=reason)
        finally:
            ledger.close()
    except CartrescueError as error:
        _fail(error, as_json)
    if as_json:
        _json_out({"file": str(file), "added": result.added, "already": result.already,
                   "invalid": [{"where": where, "value": value} for where, value in result.invalid]})
    else:
        stderr = err_console()
        for where, value in result.invalid[:20]:
            stderr.print(f"[yellow]warning:[/] {where}: not an e-mail address: {value!r}", highlight=False)
        if len(result.invalid) > 20:
            stderr.print(f"[yellow]warning:[/] … and {len(result.invalid) - 20} more invalid entries")
        stderr.print(f"{file}: {result.added} suppressed, {result.already} were already, "
                     f"{len(result.invalid)} invalid", highlight=False)
    if result.invalid:
        raise typer.Exit(int(ExitCode.SOME_FAILED))


@suppress_app.command("list")
def suppress_list(
    config: ConfigOption = None,
    as_json: JsonOption = False,
    email: Annotated[Optional[str], typer.Option("--email", help="Only say whether this address is suppressed.")] = None,
    limit: Annotated[Optional[int], typer.Option("--limit", min=1, help="At most this many, newest first.")] = None,
) -> None:
    """List suppressions, newest first: address hash, reason, source, date.

    The ledger keeps a hash of each suppressed address, not the address; use `--email` to ask
    about one address (exit 1 when it is not suppressed).

    Example:

        cartrescue suppress list --email bob@example.com
    """
    from cartrescue.ledger import Ledger
    from cartrescue.suppressions import check, listing

    try:
        cfg = _load(config)
        ledger = Ledger(cfg.ledger_url)
        try:
            if email is not None:
                found = check(ledger, email)
                rows = [] if found is None else [found]
            else:
                rows = listing(ledger, limit)
        finally:
            ledger.close()
    except CartrescueError as error:
        _fail(error, as_json)
    keys = ("email_hash", "reason", "source", "created_at")
    if as_json:
        _json_out({"suppressions": [{key: row[key] for key in keys} for row in rows]})
    else:
        from rich.console import Console
        from rich.table import Table

        table = Table(header_style="bold")
        for column in ("address hash", "reason", "source", "since (UTC)"):
            table.add_column(column, overflow="fold")
        for row in rows:
            table.add_row(row["email_hash"][:16] + "…", row["reason"], row["source"], f"{row['created_at']:%Y-%m-%d %H:%M}")
        Console().print(table)
        if email is not None:
            err_console().print(f"{email}: {'suppressed' if rows else 'not suppressed'}", highlight=False)
    if email is not None and not rows:
        raise typer.Exit(int(ExitCode.SOME_FAILED))


@suppress_app.command("remove")
def suppress_remove(
    email: Annotated[str, typer.Argument(help="The address to mail again.", show_default=False)],
    config: ConfigOption = None,
    as_json: JsonOption = False,
) -> None:
    """Lift the suppression of an address (a mistaken import, a customer who asked to come back).

    Exit 1 when the address was not suppressed.

    Example:

        cartrescue suppress remove bob@example.com
    """
    from cartrescue.ledger import Ledger
    from cartrescue.suppressions import remove

    try:
        cfg = _load(config)
        ledger = Ledger(cfg.ledger_url)
        try:
            removed = remove(ledger, email)
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
        finally:
            ledger.close()
    except CartrescueError as error:
        _fail(error, as_json)
    if as_json:
        _json_out({"email": email, "removed": removed})
    else:
        err_console().print(f"{email}: {'suppression removed' if removed else 'was not suppressed'}", highlight=False)
    if not removed:
        raise typer.Exit(int(ExitCode.SOME_FAILED))


@app.command()
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
        _json_out({"ok": report.ok, "exit_code": report.exit_code, "checks": [c.as_dict() for c in report.checks]})
    else:
        from rich.console import Console
        from rich.table import Table

        style = {"ok": "green", "warn": "yellow", "fail": "bold red", "skip": "dim"}
        table = Table(header_style="bold", show_lines=False)
        table.add_column("check")
        table.add_column("status")
        table.add_column("detail", overflow="fold")
        for check in report.checks:
            table.add_row(check.name, f"[{style[check.status]}]{check.status}[/]", check.detail)
        Console().print(table)
    if report.exit_code:
        raise typer.Exit(report.exit_code)


def main() -> None:
    """Console-script entry point.

    One run allocates millions of short-lived objects (rows, carts, decisions, rendered parts)
    that reference counting frees at once, and next to no reference cycles; CPython's default
    young-generation collection every 700 allocations then costs ~7 % of a run for nothing. The
    process is ours alone, so the entry point freezes what exists (modules, config) out of the
    collector and collects rarely.
    """
    import gc

    gc.freeze()
    gc.set_threshold(50_000, *gc.get_threshold()[1:])
    try:
        app()
    except KeyboardInterrupt:
        err_console().print("interrupted")
        sys.exit(130)


if __name__ == "__main__":
    main()
