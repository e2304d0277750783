"""`templates check`: every template x locale x variant x step against fixture carts (CI)."""

from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from cartrescue.commands.common import (
    ConfigOption,
    JsonOption,
    closed_pipe,
    err_console,
    fail,
    json_out,
    load,
    names_stdout,
    no_stdout,
    out_console,
    output_file,
    problem_warnings,
    sub_typer,
    write_whole,
)
from cartrescue.errors import CartrescueError, ConfigError, ExitCode

app = sub_typer("Check message templates (for CI): `cartrescue templates check --junit report.xml`.")


def _load_or_default(config: Path | None) -> tuple[Any, bool]:
    """The config; without ``--config`` and without ./cartrescue.yaml, the defaults (shipped templates)."""
    from cartrescue.config import DEFAULT_CONFIG, Config

    if config is None and not Path(DEFAULT_CONFIG).exists():
        return Config(source={"type": "csv", "carts": "carts.csv"}, base_dir=Path.cwd()), True
    return load(config), False


@app.command("check")
def templates_check(
    config: ConfigOption = None,
    as_json: JsonOption = False,
    junit: Annotated[Optional[Path], typer.Option("--junit", metavar="FILE", help=(
        "Also write a JUnit XML report to FILE (for CI); -: to stdout, the table then on stderr."))] = None,
    template: Annotated[Optional[list[str]], typer.Option("--template", "-t", metavar="NAME", help="Check only this template (repeatable).")] = None,
    locale: Annotated[Optional[list[str]], typer.Option("--locale", "-l", metavar="LOCALE", help="Check only this locale (repeatable).")] = None,
    templates: Annotated[Optional[Path], typer.Option(
        "--templates", metavar="DIR", help="Check this templates folder instead of the config's `templates:`.")] = None,
    carts: Annotated[Optional[Path], typer.Option(
        "--carts", metavar="FILE", help="Fixture carts from this CSV (docs/csv-format.md) instead of the bundled examples.")] = None,
    failures_only: Annotated[bool, typer.Option("--failures-only", help="List only failing combinations.")] = False,
    quick: Annotated[bool, typer.Option("--quick", help="Only the built-in edge-case carts, not the examples.")] = False,
) -> None:
    """Render every template × locale × variant × step against fixture carts; exit 1 on any failure.

    The fixtures are the bundled example carts plus edge cases (one item, 30 items, no image,
    very long names, Cyrillic text, zero-decimal currencies, markup in names), rendered with every
    tier and, without a survey page, with survey None, as runs render them. A check fails on
    undefined variables, Jinja syntax errors, any other render error (a run's limits included),
    HTML that does not parse, a missing or empty part, a missing unsubscribe link, an empty subject
    or one over 78 characters, a printed None or unrendered markup, survey links without a valid
    token, links without the UTM tags (links.utm), a step's offer that no part shows (its
    code printed nowhere), and text messages too long, without an opt-out
    keyword or the shop's name (docs/templates.md lists each kind). Files no run reads are
    noted. Nothing is sent or recorded. A problem names its file and line, and for a typo the
    close names that exist (`'cart.totl' is undefined: cart has no 'totl' (did you mean
    cart.total?)`).

    `--junit -` writes the JUnit XML to stdout, and the table (or a problem's line) to stderr; it
    cannot go with `--json`, which is stdout's too.

    Exit codes: 0 all pass, 1 some failed (or rows of --carts FILE could not be read), 2 usage or
    config error (an unknown --template or --locale, --junit - with --json), 3 the --carts FILE
    cannot be read as an export.

    Examples:

        cartrescue templates check --junit build/templates.xml

        cartrescue templates check --templates ./templates --template reminder-3 --locale sv --json
    """
    import time

    to_stdout = names_stdout(junit)
    try:
        if as_json:
            no_stdout("--junit", junit, "--json writes to stdout too: give --junit a file (--junit templates.xml)")
        from cartrescue.template_check import TemplateChecker, example_carts, junit_xml, print_report

        cfg, defaulted = _load_or_default(config)
        loaded = cfg  # its keys nothing reads, for the document (--templates gives the checked one other templates)
        if templates is not None:
            if not templates.is_dir():
                raise ConfigError(f"--templates {templates}: not a folder")
            cfg = cfg.model_copy(update={"templates": templates.resolve()})
        from cartrescue.template_check import edge_carts

        fixtures = edge_carts() if quick else None
        bad_rows: list[str] = []
        if carts is not None:
            if not carts.is_file():
                raise ConfigError(f"--carts {carts}: no such file")
            warn = problem_warnings(err_console())

            def on_problem(problem: Any) -> None:
                bad_rows.append(str(problem))
                warn(problem)

            fixtures = edge_carts() + example_carts(carts, limit_per_shape=3, on_problem=on_problem, config=loaded)
        started = time.perf_counter()
        report = TemplateChecker(cfg, carts=fixtures).run(template or None, locale or None)
        report.problems = bad_rows
        seconds = time.perf_counter() - started
        if defaulted:
            report.notes.insert(0, "no cartrescue.yaml here: checked with the default config (use --config)")
        if junit is not None and not to_stdout:
            with output_file("--junit", junit):
                junit.write_text(junit_xml(report, seconds), encoding="utf-8")
    except CartrescueError as error:
        if junit is not None and not (to_stdout and as_json):  # refused: nothing written
            _junit_error(junit, str(error), to_stdout)
        fail(error, as_json)
    if as_json:
        json_out(report.as_dict(), indent=1, config=loaded)
    elif to_stdout:
        print_report(report, err_console(markup=True), show_passing=not failures_only)  # data escaped there
        _write_stdout(junit_xml(report, seconds))
    else:

        print_report(report, out_console(markup=True), show_passing=not failures_only)  # data escaped there
        if junit is not None:
            err_console().print(f"JUnit XML written to {junit}", highlight=False)
    if not report.ok:
        raise typer.Exit(int(ExitCode.SOME_FAILED))


def _junit_error(path: Path, message: str, to_stdout: bool = False) -> None:
    """The ``--junit`` file of a check that could not run: one case in error (CI reads it, and a
    stale report an earlier build left there is not taken for this build's). A file it cannot
    write leaves the error as it is: the exit code still fails the build. ``to_stdout``
    (``--junit -``): the report goes to stdout, the error's line to stderr."""
    from cartrescue.template_check import junit_error_xml

    if to_stdout:
        _write_stdout(junit_error_xml(message))
        return
    try:
        with output_file("--junit", path):
            path.write_text(junit_error_xml(message), encoding="utf-8")
    except (CartrescueError, OSError):
        pass


def _write_stdout(xml: str) -> None:
    """``--junit -``'s report on stdout; a reader that left (``| head``) is the pipe's error, as for any output."""
    try:
        write_whole(xml)
    except BrokenPipeError as exc:
        closed_pipe(exc, False)
