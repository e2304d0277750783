"""The command line: wires the commands of :mod:`cartrescue.commands` into one typer app.

Owns nothing of the domain and no command's logic: each command lives in its own module under
``cartrescue/commands/``. Heavy modules (SQLAlchemy, Jinja, Babel) are imported inside the
commands so that ``cartrescue --help`` starts fast (benchmark B6).
"""

import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Annotated, Any, NoReturn, Optional

import typer
import typer.main

from cartrescue.commands import (
    codes,
    doctor,
    doctor_all,
    forget,
    init,
    preview,
    report,
    report_all,
    run,
    run_all,
    send_test,
    suppress,
    survey,
    templates,
)
from cartrescue.commands.common import JsonUsageGroup, err_console

if TYPE_CHECKING:
    from cartrescue.ledger import RunsOver

_SETTINGS: dict[str, Any] = dict(
    name="cartrescue",
    help=(
        "Win back abandoned shopping carts in batch: read carts from a CSV export or the shop's "
        "database, decide which are abandoned and eligible, prioritize them, render and send (or "
        "dry-run) reminders, and record every decision in a ledger.\n\n"
        "Start with `cartrescue init`, then `cartrescue run` (a dry-run) and `cartrescue run --send` from cron "
        "(`cartrescue run-all` for many shops, `cartrescue report-all` for what they won back, `cartrescue doctor-all` for their health).\n\n"
        "Exit codes: 0 ok, 1 some carts failed (or the output could not be written), 2 config or usage "
        "error, 3 source unreadable (or an export too old to send on), 4 another run holds the lock, "
        "5 (doctor) reminders stopped (no successful run, or an export not written, for too long), "
        "6 this run lost its lock and stopped, "
        "70 a bug in cartrescue, 130 stopped by Ctrl-C, SIGTERM or SIGHUP, 128 + n a worker killed by signal n. "
        "What cron should do on each: the README."
    ),
    no_args_is_help=True,
    rich_markup_mode="markdown",
    add_completion=False,
    pretty_exceptions_enable=False,
    cls=JsonUsageGroup,
)
app = typer.Typer(**_SETTINGS)


def _version(value: bool) -> None:
    if value:
        from cartrescue import __version__

        print(f"cartrescue {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    version: Annotated[Optional[bool], typer.Option(
        "--version", callback=_version, is_eager=True, help="Print the version and exit.")] = None,
) -> None:
    """Win back abandoned shopping carts in batch."""


app.command()(run.run)
app.command("run-all")(run_all.run_all)
app.command()(run.carts)
app.command()(preview.preview)
app.command()(init.init)
app.add_typer(templates.app, name="templates")
app.add_typer(codes.app, name="codes")
app.command()(suppress.unsubscribe)
app.add_typer(suppress.app, name="suppress")
app.command()(doctor.doctor)
app.command("doctor-all")(doctor_all.doctor_all)
app.add_typer(survey.app, name="survey")
app.command()(report.report)
app.command("report-all")(report_all.report_all)
app.command("send-test")(send_test.send_test)
app.command()(forget.forget)


#: The one piece of state a process keeps across its commands (:func:`runs_over`).
_RUNS_OVER: list["RunsOver"] = []


def runs_over() -> "RunsOver":
    """The runs this process has ended (:class:`cartrescue.ledger.RunsOver`), for the ledger of
    each of its runs: kept here, at the entry point, as it outlives a command (a test's or a
    Python caller's second run in one process takes over the lock row the first could not
    remove). Made by the first run: the ledger's module is not imported for ``--help``."""
    if not _RUNS_OVER:
        from cartrescue.ledger import RunsOver

        _RUNS_OVER.append(RunsOver())
    return _RUNS_OVER[0]


def _app_for(args: Sequence[str]) -> typer.Typer:
    """The app a command line runs: where its first word names a command (or a group), an app of
    the same settings and callback with that one alone. typer builds every command of the app it
    runs, from their signatures, on every start: the twenty others were built for nothing, in a
    run and again in each of its workers. Anything else (no word, an option first, a name no
    command has) runs the whole app, with its help, its errors and its suggestions."""
    name = args[0] if args else ""
    commands = [info for info in app.registered_commands if info.callback is not None
                and (info.name or typer.main.get_command_name(info.callback.__name__)) == name]
    groups = [info for info in app.registered_groups if info.name == name]
    if not commands and not groups:
        return app
    alone = typer.Typer(**_SETTINGS)
    alone.registered_callback = app.registered_callback
    alone.registered_commands = commands
    alone.registered_groups = groups
    return alone


def main() -> None:
    """Console-script entry point.

    One run allocates millions of short-lived objects (rows, carts, decisions, rendered parts)
    that reference counting frees at once, and next to no reference cycles; CPython's default
    young-generation collection every 700 allocations then costs ~7 % of a run for nothing. The
    process is ours alone, so the entry point freezes what exists (modules, config) out of the
    collector and collects rarely.

    At exit it freezes again, as the last exit function: the interpreter's own final collections
    then leave alone what the run allocated, which reference counting frees anyway. They
    traversed every object still alive: ~80 ms at the end of a 100,000-cart run (its indexes),
    ~9 ms of `--help`. Exit functions, ``__del__`` methods and closing files and connections all
    still happen (``tests/test_exit.py``); ``os._exit`` would skip them.
    """
    import atexit
    import gc

    from cartrescue import stops

    try:  # a stop while the process gets ready (the console script's handlers are in) is a stop before the command
        _discard_closed_output()
        _printable_output()
        _quiet_library_logs()
        gc.freeze()
        gc.set_threshold(50_000, *gc.get_threshold()[1:])
        atexit.register(gc.freeze)  # registered first: runs last
        # SIGTERM (a service manager, `timeout`, a container stop) ends a run like Ctrl-C: open JSON
        # documents are closed and the ledger's transactions roll back; claims already committed stay.
        stops.install()
        _app_for(sys.argv[1:])()
    except KeyboardInterrupt:
        _interrupted()
    except SystemExit as done:
        if _interrupt_in_typer(done):
            _interrupted()
        if done.code == 130:
            _exit_interrupted()
        raise
    except Exception as error:  # noqa: BLE001 - the last net: one line (and document), never a traceback
        from cartrescue.commands.common import last_net

        try:
            last_net(error, "--json" in sys.argv[1:])
        except typer.Exit as done:
            sys.exit(done.exit_code)


def _quiet_library_logs() -> None:
    """SQLAlchemy logs what it cannot clean up (``Error closing cursor`` on a connection the
    shop's server dropped), with a traceback; psycopg too (``error ignored terminating
    <psycopg.Pipeline [BAD]>`` when a PostgreSQL ledger's connection is cut during a group of
    outcomes). Without a handler Python prints such records on stderr, and cron mails them beside
    the one line that says what happened: the error that matters is raised, reported and given
    its exit code; the log is dropped."""
    import logging

    for library in ("sqlalchemy", "psycopg"):
        logging.getLogger(library).addHandler(logging.NullHandler())


def _printable_output() -> None:
    """stdout writes what it cannot encode as ``\\udce9``, as stderr does. A path from a folder
    unpacked from a Windows zip (``caf\\xe9/``: bytes that are not UTF-8) ended a command that
    printed it with exit 70 (a UTF-8 locale's stdout is strict), or put the raw byte into its
    ``--json`` document (C.UTF-8's is ``surrogateescape``), which no longer parsed as UTF-8."""
    reconfigure = getattr(sys.stdout, "reconfigure", None)
    if reconfigure is not None and getattr(sys.stdout, "errors", None) in ("strict", "surrogateescape"):
        reconfigure(errors="backslashreplace")


def _discard_closed_output() -> None:
    """A cron line with ``>&-`` starts the process with stdout closed (``sys.stdout`` is None):
    every print failed, and ``run --send`` ended before it sent anything. The closed stream is
    opened on the null device instead, said once on stderr, and the command does its work."""
    import os

    for number, name in ((1, "stdout"), (2, "stderr")):
        if getattr(sys, name) is not None:
            continue
        descriptor = os.open(os.devnull, os.O_WRONLY)
        if descriptor != number:  # the lowest free descriptor is the closed one; if not, put it there
            os.dup2(descriptor, number)
            os.close(descriptor)
        stream = open(number, "w", encoding="utf-8", errors="backslashreplace", closefd=False)
        stream.discarded = True  # type: ignore[attr-defined] # a command whose output is its product refuses it
        setattr(sys, name, stream)
        if sys.stderr is not None and name == "stdout":
            print("cartrescue: stdout is closed: the command's output is discarded", file=sys.stderr)


def _interrupted() -> NoReturn:
    """Ctrl-C or SIGTERM reached the entry point: no ``--json`` document was begun (``run`` ends
    the one it began itself, see ``commands.common.stopped_after_document``), so one is printed."""
    from cartrescue.commands.common import json_out
    from cartrescue.entry import stopped_document

    if "--json" in sys.argv[1:]:
        json_out(stopped_document(sys.argv[1:]))
    err_console().print("interrupted", markup=False)
    _exit_interrupted()


def _exit_interrupted() -> NoReturn:
    """Exit 130 now, the output flushed. Not ``sys.exit``: CPython marks a KeyboardInterrupt that
    left an ``exec`` of a string (dataclasses build their methods so, at import) as unhandled,
    however it was handled after, and the interpreter then kills itself with SIGINT as it exits:
    the parent of ``run --workers`` or ``run-all``, and any script, saw a process killed by a
    signal (-2) instead of an interrupted one (130). What is left to do at exit here is closing
    files and connections, which the system does."""
    import os

    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe: nothing more can reach it
            pass
    os._exit(130)


def _interrupt_in_typer(done: SystemExit) -> bool:
    """Is this typer's own end of an interrupted command? typer (0.29) catches a KeyboardInterrupt
    raised inside a command and exits 130 without a word (``raise Exit(130) from`` it)."""
    exit_ = done.__context__
    return done.code == 130 and exit_ is not None and isinstance(exit_.__cause__, KeyboardInterrupt)


if __name__ == "__main__":
    main()
