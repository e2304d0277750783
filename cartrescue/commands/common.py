"""What every command shares: the common options, config loading, and the one way to fail.

Owns turning a :class:`~cartrescue.errors.CartrescueError` into one line on stderr (or one JSON
document with ``--json``) and the exit code cron acts on. Heavy modules are imported inside
functions so that ``cartrescue --help`` starts fast (benchmark B6).
"""

import errno
import sys
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import IO, Annotated, Any, NoReturn, Optional, cast

import typer
from typer.core import TyperArgument, TyperGroup

from cartrescue.entry import INTERRUPTED as INTERRUPTED  # the console script's too: a stop before this is imported
from cartrescue.entry import command_of
from cartrescue.errors import CartrescueError, ConfigError, ExitCode, LockHeld, OutputError
from cartrescue.text import printable

ConfigOption = Annotated[
    Optional[Path],
    typer.Option("--config", "-c", metavar="FILE", help="Config file (default: ./cartrescue.yaml).", show_default=False),
]
#: The shops of ``run-all``, ``report-all`` and ``doctor-all`` (:func:`cartrescue.batch.config_files` reads them).
ConfigsArgument = Annotated[list[Path], typer.Argument(
    show_default=False, metavar="CONFIG...", readable=False,  # a file no one can read costs that shop only
    help="The shops' config files (a folder stands for its cartrescue.yaml), e.g. shops/*/cartrescue.yaml.")]
JsonOption = Annotated[bool, typer.Option("--json", help="Print one JSON document instead of tables (for scripts).")]
#: ``--json`` of a command that writes a CSV export: it prints no table, and its file is still written.
ExportJsonOption = Annotated[bool, typer.Option("--json", help=(
    "Print one JSON document (for scripts): the rows, in place of the CSV on stdout; with --output the CSV is "
    "still written, and the document says where."))]
#: ``run-all``, ``report-all`` and ``doctor-all``: how many shops at once, each in a process of its own (:mod:`cartrescue.batch`).
JobsOption = Annotated[Optional[int], typer.Option(
    "--jobs", "-j", min=1, max=64, metavar="N", show_default=False,
    help="How many shops at once, each in a process of its own (default: the cores, at most 8).")]
NowOption = Annotated[
    Optional[str],
    typer.Option("--now", metavar="TIME", help="Run as at this instant (ISO 8601, e.g. 2026-11-20T10:00:00Z): replays and tests."),
]


def parse_now(value: str | None) -> datetime | None:
    if value is None:
        return None
    from cartrescue.config import within_reach

    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise ConfigError(f"--now: expected an ISO 8601 time like 2026-11-20T10:00:00Z, got {value!r}") from None
    return within_reach(moment, "--now")


def parse_timeout(text: str | None) -> float | None:
    """Seconds of a ``--timeout`` (``run-all``'s, ``doctor``'s): a duration above zero (``8m``,
    ``30s``: the config's syntax, :func:`cartrescue.config.parse_duration`); None for none given."""
    if text is None:
        return None
    from cartrescue.config import parse_duration

    try:
        seconds = parse_duration(text).total_seconds()
    except ValueError as exc:
        raise ConfigError(f"--timeout: {exc}") from None
    if seconds <= 0:
        raise ConfigError(f"--timeout: expected a duration above zero, got {text!r}")
    return seconds


def explained(error: BaseException) -> BaseException:
    """``error`` as a person should read it, where it is not a bug in cartrescue.

    A database error that no command caught is the ledger's (the shop's are SourceErrors where
    they happen): a read-only replica after a failover, a role without the grant, a full disk.
    It is the ledger's error (exit 2, or 4 when the ledger is busy), in one line, not a bug with
    the SQL. A write that found no room (a full disk, a quota) is an :class:`OutputError`
    (exit 1): the command's output, or a working file in the temporary folder.
    """
    import sys

    exc = sys.modules.get("sqlalchemy.exc")  # not loaded: no database was touched
    if exc is not None and isinstance(error, exc.DBAPIError):
        from cartrescue.ledger import ledger_error

        return ledger_error(error, "the ledger", redo=command_of(sys.argv[1:]) not in ("run", "run-all"))
    sqlite3 = sys.modules.get("sqlite3")
    if sqlite3 is not None and isinstance(error, sqlite3.Error) and \
            getattr(error, "sqlite_errorname", "") == "SQLITE_FULL":
        # Not the ledger's (its errors come wrapped, above): a working file of the run, the orders
        # index or report's scratch database, in the temporary folder.
        import tempfile

        return OutputError(f"cannot write a working file in {tempfile.gettempdir()}: {error} (set TMPDIR to a "
                           f"folder with room){_DELIVERED_SO_FAR if delivers() else ''}")
    if isinstance(error, FileNotFoundError) and error.filename is None and \
            str(error.strerror).startswith("No usable temporary directory"):
        # tempfile tried TMPDIR, /tmp, /var/tmp and the working folder and could write a file in
        # none: a full disk (a folder with no room is skipped, so all of them had none).
        return OutputError(f"cannot write a working file: no temporary folder can take one ({error.strerror}; "
                           f"set TMPDIR to a folder with room){_DELIVERED_SO_FAR if delivers() else ''}")
    if isinstance(error, BrokenPipeError):
        # Its reader went away (``| head``). Left to click, the process ended with exit 1 and no
        # word, a delivering run too: cron and the owner never learnt why it stopped.
        return OutputError("cannot write its output: the reader of the pipe closed it (Broken pipe)"
                           f"{_DELIVERED_SO_FAR if delivers() else ''}")
    if isinstance(error, OSError) and error.errno in _NO_ROOM:
        # The files a command writes itself (.eml files, the call list, report --html) report
        # their own errors: what reaches here is its output, where cron or a script sent it, or
        # a working file of the run (the split export, the orders index) in the temporary folder.
        where = str(error.filename) if error.filename else "its output (or a working file in the temporary folder)"
        return OutputError(f"cannot write {where}: {error.strerror}{_DELIVERED_SO_FAR if delivers() else ''}")
    return error


#: What :func:`explained` adds for a command that delivers: its output failed, its deliveries did not.
_DELIVERED_SO_FAR = "; what was delivered is in the ledger"


def delivers(argv: list[str] | None = None) -> bool:
    """Is this command line one that delivers messages (``send-test``; ``run`` or ``run-all`` with
    ``--send`` or ``--outbox``)? Its errors about its output then say where its deliveries are; a
    dry-run's, a list's or a report's said so too, and sent the owner looking for deliveries there
    were none of."""
    args = sys.argv[1:] if argv is None else argv
    command = command_of(args)
    return command == "send-test" or command in ("run", "run-all") and any(
        arg in ("--send", "--outbox") or arg.startswith("--outbox=") for arg in args)


_NO_ROOM = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}  # a full disk, a quota, a file too large: writes only


def output_folder(option: str, folder: Path, made: list[Path] | None = None) -> Path:
    """The folder a user named for a command's files (``--outbox DIR``), made if missing.

    One that cannot be made or written (a file of that name, no permission, ``/proc``) is a usage
    error naming the option, exit 2, found before anything is read, claimed or sent: not a bug.
    ``made`` (:func:`made_folders`) gets the topmost folder this made, for the command to remove
    again should it fail before writing there.
    """
    import os

    top = next((path for path in reversed((folder, *folder.parents)) if not path.exists()), None)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise ConfigError(f"{option} {folder}: is a file, not a folder") from None
    except OSError as exc:
        raise ConfigError(f"{option} {folder}: cannot make the folder: {exc.strerror or exc}") from None
    if top is not None and made is not None:
        made.append(top)
    if not os.access(folder, os.W_OK | os.X_OK):
        raise ConfigError(f"{option} {folder}: cannot write there: permission denied")
    return folder


@contextmanager
def made_folders() -> Iterator[list[Path]]:
    """The folders a command makes for its files (``output_folder(..., made)``), removed again
    when it fails (a non-zero exit, an exception, Ctrl-C) with nothing written in them.

    The folder is made before the ledger is opened, so that one that cannot take the files stops
    the run before it claims anything; a run then stopped by its ledger (exit 2) left an empty
    ``--outbox`` folder behind, which read as a run that had delivered nothing. A run that works
    keeps its folder, empty or not; a folder the command did not make is never touched. Nor is
    one when the run found the lock held (exit 4): another run works there, and two cron runs at
    once both make the folder; the one that lost the lock removed it while the other was about to
    write its messages there, and they failed."""
    made: list[Path] = []
    try:
        yield made
    except typer.Exit as stop:
        if stop.exit_code and stop.exit_code != int(ExitCode.LOCKED):
            _remove_empty(made)
        raise
    except BaseException:
        _remove_empty(made)
        raise


def _remove_empty(folders: list[Path]) -> None:
    """Each of ``folders`` with the empty folders below it, deepest first; a file keeps its
    folders (``rmdir`` refuses a folder that is not empty: what another process wrote stays)."""
    import os

    for top in folders:
        for inside, _subfolders, _files in os.walk(top, topdown=False):
            try:
                os.rmdir(inside)
            except OSError:
                pass


def names_stdout(path: Path | None) -> bool:
    """``-``, which the usual CLI convention reads as stdout (never a file named ``-``)."""
    return path is not None and str(path) == "-"


def stdout_or_file(path: Path | None) -> Path | None:
    """``-o -`` means stdout, as the usual CLI convention has it: ``None`` (the option left out),
    never a file named ``-`` in the working folder."""
    return None if names_stdout(path) else path


#: Why ``--outbox -`` and ``--eml -`` are refused (:func:`no_stdout`): they made a folder named ``-``.
MESSAGE_FOLDER = "the messages go into a folder, a file each: name a folder (e.g. out)"


def no_stdout(option: str, path: Path | None, why: str) -> None:
    """Refuse ``option -`` where stdout cannot take what the option writes (``why``): exit 2
    before anything is read, where a file named ``-`` (or a folder) was made in the working folder."""
    if names_stdout(path):
        raise ConfigError(f"{option} -: {why}")


@contextmanager
def output_file(option: str, path: Path) -> Iterator[Path]:
    """Write the file a user named (``--html FILE``, ``--junit FILE``): its folder is made, and
    what cannot be written there is a usage error naming the option (exit 2), not a bug. A full
    disk or a quota stays an :class:`OutputError` (exit 1, as for stdout), naming the option and
    the file too: a write's error has no file name, and the line said "its output (or a working
    file in the temporary folder)". Keep the body to the write itself: any ``OSError`` inside is
    taken for the file's.

    A write that fails takes back what it made, as :func:`made_folders` does for ``--outbox``: the
    file when it was not there before (empty or cut short, it read as a file written whole) and
    the folders made for it, when empty."""
    top = next((folder for folder in reversed(path.parents) if not folder.exists()), None)
    new = not path.exists()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        yield path
    except BaseException as exc:
        if new and path.is_file():
            path.unlink(missing_ok=True)
        _remove_empty([*([path] if new and path.is_dir() else []), *([top] if top is not None else [])])
        if not isinstance(exc, OSError):
            raise
        kind = OutputError if exc.errno in _NO_ROOM else ConfigError
        raise kind(f"{option} {path}: cannot write: {exc.strerror or exc}") from None


def _drop_output() -> None:
    """Point stdout at /dev/null if it cannot be written: text still buffered for it would fail
    again as the process exits ("Exception ignored ... No space left on device", exit 120). A
    stdout that takes writes (the error was a working file's) is left as it is."""
    import os
    import sys

    try:
        sys.stdout.flush()
        return
    except OSError:
        pass
    try:
        descriptor = sys.stdout.fileno()
    except (AttributeError, OSError, ValueError):
        return  # not a file (a test runner's capture)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, descriptor)
    os.close(devnull)


def last_net(error: Exception, as_json: bool) -> NoReturn:
    """What a command did not catch: :func:`explained`, else a bug, in one line (and one JSON
    document) and exit 70; the traceback with CARTRESCUE_DEBUG=1."""
    import os

    known = explained(error)
    if isinstance(known, CartrescueError):
        fail(known, as_json)
    if os.environ.get("CARTRESCUE_DEBUG"):
        raise error
    if as_json:
        json_out({"error": error_json(error)})
    err_console().print(error_line(internal_message(error)), soft_wrap=True)
    raise typer.Exit(int(ExitCode.INTERNAL))


def error_json(error: BaseException) -> dict[str, Any]:
    """The ``error`` object of every ``--json`` document that reports a failure (README, `--json`)."""
    error = explained(error)
    if isinstance(error, CartrescueError):
        code, message = error.exit_code, str(error)
    else:
        code, message = ExitCode.INTERNAL, internal_message(error)
    kind = ERROR_KINDS.get(int(code), "failed")
    return {"code": kind, "exit_code": int(code), "message": printable(message, keep_newlines=True)}


ERROR_KINDS = {1: "failed", 2: "config", 3: "source", 4: "locked", 5: "stale", 6: "lock_lost", 70: "internal"}


def fail(error: CartrescueError, as_json: bool, *, quiet: bool = False) -> NoReturn:
    """Report ``error`` as one line on stderr (and, with ``--json``, as one JSON document) and exit.

    Under ``--quiet`` a held lock is not reported at all: another run doing the work is the
    normal case of an overlapping cron line, and cron mails whatever a job prints.
    """
    if as_json:
        try:
            json_out({"error": error_json(error)})
        except (OSError, OutputError):
            pass  # stdout itself cannot be written (an OutputError): the line on stderr says why
    if isinstance(error, OutputError):
        _drop_output()
    if not (quiet and isinstance(error, LockHeld)):
        err_console().print(error_line(str(error)), soft_wrap=True)
    raise typer.Exit(int(error.exit_code))


def closed_pipe(error: BrokenPipeError, as_json: bool) -> NoReturn:
    """The reader of stdout went away (``cartrescue run | head -1``) while a command printed its
    table: the line on stderr and exit 1, as under ``--json`` (:func:`json_out`). Left to click,
    the process ended with exit 1 and no word, a delivering run too."""
    known = explained(error)
    assert isinstance(known, OutputError)
    fail(known, as_json)


#: A command prints at most this many problem lines (each worker of ``run --workers`` as many).
PROBLEMS_PRINTED = 20


def problem_warnings(stderr: Any) -> Callable[[Any], None]:
    """The sink of a source's unreadable rows: a ``warning:`` line on ``stderr`` for each (its
    file and line first), up to :data:`PROBLEMS_PRINTED`. An export re-saved with 300 bad rows
    must not make every cron mail 300 lines long; the caller counts them all."""
    printed = 0

    def warn(problem: Any) -> None:
        nonlocal printed
        printed += 1
        if printed <= PROBLEMS_PRINTED:
            stderr.print(error_line(str(problem), "warning", "yellow"), soft_wrap=True)
        elif printed == PROBLEMS_PRINTED + 1:
            stderr.print(error_line(f"more than {PROBLEMS_PRINTED} problems: the others are not printed (the "
                                    "summary counts them all; --json lists the first 1,000)", "warning",
                                    "yellow"), soft_wrap=True)

    return warn


def internal_message(error: BaseException) -> str:
    """One line for a bug: what broke, and how to get the traceback for a report."""
    return (f"internal error: {type(error).__name__}: {error} (a bug in cartrescue; run again with "
            "CARTRESCUE_DEBUG=1 for the traceback and report it)")


def error_line(message: str, label: str = "error", style: str = "bold red") -> Any:
    """``error: message`` as rich Text: the message is never read as markup."""
    from rich.text import Text

    line = Text(f"{label}:", style=style)
    line.append(" " + printable(message, keep_newlines=True))
    return line


def say_shops_interrupted(errors: Iterable[tuple[Path, Optional[dict[str, Any]]]], command: str, doing: str) -> None:
    """A stop of ``report-all`` or ``doctor-all`` (``command``) on stderr: its line, and one for the
    shops it left unstarted (``errors``: each shop's config and its row's error; their rows say it
    too). ``doing``: what was done to the shops it stopped ("reported")."""
    from cartrescue.batch import not_started, unstarted_error

    stderr = err_console()
    stderr.print(error_line(f"interrupted: the shops being {doing} were stopped, the rest not started"), soft_wrap=True)
    said = unstarted_error(command)["message"]
    left = [config for config, error in errors if error is not None and str(error.get("message")).endswith(said)]
    if left:
        stderr.print(error_line(not_started(left, command)), soft_wrap=True)


def shop_failed(config: Path, exc: BaseException) -> dict[str, Any]:
    """The row error of one shop of ``report-all`` or ``doctor-all`` worked on in this process that
    raised ``exc`` (a bug's: "internal", exit 70, saying how to get its traceback): one line naming
    its config, said on stderr now. One shop's failure costs its row, as a bad config does."""
    from cartrescue.batch import named

    error = error_json(exc)
    error["message"] = named(config, " ".join(error["message"].split()))
    err_console().print(error_line(error["message"]), soft_wrap=True)
    return error


def say_lost_shops(errors: Iterable[tuple[Optional[dict[str, Any]], bool]]) -> None:
    """The errors of shops worked on in processes of their own (``report-all``, ``doctor-all``
    ``--jobs N``) that nothing said yet (``errors``: each row's error and whether it was said: a
    process killed, or ended without its document), a line each on stderr."""
    stderr = err_console()
    for error, said in errors:
        if error is not None and not said:
            stderr.print(error_line(error["message"]), soft_wrap=True)


def err_console(*, markup: bool = False) -> Any:
    """stderr, with markup and emoji codes off: a message that quotes data cannot turn into markup
    (nor ``:fire:`` of a product name into 🔥). A write to it
    that fails is dropped (:class:`_Diagnostics`). ``markup=True`` only for a printer that escapes
    every value it takes from data (``templates check --junit -``'s table)."""
    import sys

    from rich.console import Console

    return Console(file=_Diagnostics(sys.stderr), markup=markup, highlight=False, emoji=False)  # type: ignore[arg-type]  # duck-typed: write, flush, the rest passed on


class FirstUseConsole:
    """:func:`err_console`, made when it is first used: a run with nothing to say on stderr
    (``--json``, no bad row, no warning: most cron runs) never imports ``rich.console``, ~78
    million instructions that every run paid before it forked its workers. Whatever is asked of
    it is asked of the console; :attr:`console` is the console itself, for what takes it whole
    (rich's ``Progress`` enters it in a ``with``, which this stand-in cannot serve)."""

    def __init__(self) -> None:
        self._console: Any = None

    @property
    def console(self) -> Any:
        if self._console is None:
            self._console = err_console()
        return self._console

    def __getattr__(self, name: str) -> Any:  # only what this class lacks: the console's own
        return getattr(self.console, name)


class _Diagnostics:
    """stderr for warnings, progress and error lines, where a write that fails (a full disk
    under a cron job's ``>> log 2>&1``) is dropped instead of raised into the run: a bad row's
    warning stopped the whole run, and no customer got a reminder. What is dropped is also in
    the run's counts, its ``--json`` document and its exit code."""

    def __init__(self, stream: Any) -> None:
        self._stream = stream

    def write(self, text: str) -> int:
        try:
            return int(self._stream.write(text))
        except OSError:
            return len(text)

    def flush(self) -> None:
        try:
            self._stream.flush()
        except OSError:
            pass

    def __getattr__(self, name: str) -> Any:  # isatty, fileno, encoding: rich asks the stream
        if name == "rich_proxied_file":
            # Under a bar that takes stderr's lines (rich's FileProxy: ``report-all``), a console
            # made meanwhile asked for the stream behind it and wrote there, across the bar's line.
            raise AttributeError(name)
        return getattr(self._stream, name)


def out_console(*, markup: bool = False) -> Any:
    """stdout, with markup off (styles come from rich ``Text`` objects, never from strings) and
    emoji codes off (``:fire:`` in a subject a check quotes is printed as written, never as 🔥).

    ``markup=True`` only for a printer that escapes every value it takes from data. A reader
    that closed the pipe (``| head -1``) raises BrokenPipeError, which the app reports as it does
    under ``--json`` (:func:`closed_pipe`); rich's own answer was exit 1 without a word. Each
    print is written whole (:class:`_WholeWrites`), so a reader that leaves mid-way raises too.
    """
    from rich.console import Console

    class Stdout(Console):
        """Where stdout is not a terminal (cron's mail, a pipe, a file), a table's lines end at
        their content (:class:`_Trimmed`). Only tables: a message's text (``preview``) keeps its
        own spaces (a ``-- `` signature line). A terminal shows what rich lays out, as it did."""

        def on_broken_pipe(self) -> None:
            raise BrokenPipeError(errno.EPIPE, "Broken pipe")

        def print(self, *objects: Any, **options: Any) -> None:  # type: ignore[override]
            if not self.is_terminal:
                from rich.table import Table

                objects = tuple(_Trimmed(each) if isinstance(each, Table) else each for each in objects)
            super().print(*objects, **options)

    return Stdout(markup=markup, highlight=False, emoji=False, file=cast(IO[str], _WholeWrites(sys.stdout)))


class _WholeWrites:
    """stdout for :func:`out_console`: every write whole, or a BrokenPipeError (:func:`write_whole`).

    A table is one large write; into a pipe whose reader left after its first 64 KiB
    (``suppress list | head -c 100``) ``sys.stdout`` took part of it, dropped the rest without an
    error, and a command whose table was its last word exited 0 without a word. The rest of
    what rich asks of a file (``isatty``, ``fileno``, ``encoding``) is stdout's."""

    def __init__(self, stream: Any) -> None:
        self.stream = stream

    def write(self, text: str) -> int:
        write_whole(text)
        return len(text)

    def flush(self) -> None:
        self.stream.flush()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.stream, name)


class _Trimmed:
    """A table whose lines end at their content: rich pads every cell, and the title, to its
    column's or the table's width, and a ``doctor-all`` line was 592 characters of cron mail,
    mostly trailing spaces. Rendered whole, never cut to the console's width (a table printed
    wider, with ``crop=False``, keeps its width)."""

    def __init__(self, table: Any) -> None:
        self.table = table

    def __rich_console__(self, console: Any, options: Any) -> Iterator[Any]:
        from rich.segment import Segment

        for line in Segment.split_lines(console.render(self.table, options)):
            while line and not line[-1].control and not line[-1].text.rstrip(" "):
                line.pop()
            if line and not line[-1].control:
                last = line[-1]
                line[-1] = Segment(last.text.rstrip(" "), last.style)
            yield from line
            yield Segment.line()


def load(config: Path | None, *, warn: bool = True, decides: bool = False) -> Any:
    """The config of ``--config``; with ``warn``, a ``warning:`` line on stderr for each key it sets
    that nothing reads (:meth:`cartrescue.config.Config.ignored_keys`): a shop believed it took
    effect. Off for ``--quiet`` and for a worker of ``run --workers`` (its parent says it once).

    ``decides``: a command that decides for the carts by the config's clock (``run``, ``carts``,
    ``preview``, ``send-test``), or whose figures go by it (``report``'s period, ``codes list``'s
    and ``codes export``'s expiries), also says when the file pins it (``now:``,
    :meth:`~cartrescue.config.Config.pinned_clock`), under ``--quiet`` too: a cron job left with
    the demo's pinned clock decided every run as of that moment, sent nothing new, and said nothing."""
    from cartrescue.config import load_config

    loaded = load_config(config)
    lines = [*(loaded.ignored_keys() if warn else ()), *(loaded.pinned_clock() if decides else ())]
    if lines:
        stderr = FirstUseConsole()
        for line in lines:
            stderr.print(error_line(line, "warning", "yellow"), soft_wrap=True)
    return loaded


def config_warnings(config: Any, warnings: Iterable[str] = (), *, decides: bool = False) -> list[str]:
    """A ``--json`` document's ``warnings``: the keys of ``config`` nothing reads, the lines
    :func:`load` says on stderr (there under ``--quiet`` too), with ``decides`` a clock the config
    pins, then the command's own ``warnings``. A script reads the document, not stderr; a cron job
    under ``--quiet`` has no stderr to read."""
    return [*config.ignored_keys(), *(config.pinned_clock() if decides else ()), *warnings]


def recording_ledger(cfg: Any) -> Any:
    """``cfg.open_ledger()`` for a command that records what a person asked (``forget``,
    ``unsubscribe``, ``suppress``), saying on stderr when ``ledger.url`` named a SQLite file that
    was not there: the shop's runs read the ledger their config names, and an erasure or an
    opt-out recorded in a new file at a mistyped path reached no run, while the command said it
    was done. A shop that records opt-outs before its first run reads the line once."""
    new = cfg.missing_ledger_file()
    ledger = cfg.open_ledger()
    if new is not None:
        err_console().print(error_line(
            f"{cfg.where('ledger.url')}: no ledger was at {new}: a new, empty one was made there and this was "
            "recorded in it; only runs whose ledger.url names this file will see it (a mistyped path? a config "
            "other than the runs' one?)", "warning", "yellow"), soft_wrap=True)
    return ledger


def reading_ledger(cfg: Any) -> Any:
    """``cfg.open_ledger(create=False)`` for a command that only lists (``survey``, ``codes list``,
    ``suppress list``), saying on stderr when ``ledger.url`` names no ledger yet: a mistyped path
    listed "0 answers" or nothing at all, which read as the shop's real state (``report`` and
    ``doctor`` say the same in their own notes and checks)."""
    ledger = cfg.open_ledger(create=False)
    if ledger.absent is not None:
        err_console().print(error_line(
            f"{cfg.where('ledger.url')}: {ledger.absent}: no run has recorded anything there yet (a typo in the "
            "path?): read as an empty ledger, left unchanged", "note", "yellow"), soft_wrap=True)
    return ledger


def stopped_after_document() -> NoReturn:
    """Ctrl-C or SIGTERM, once the command has ended its ``--json`` document (with
    :data:`INTERRUPTED`): as cli.main ends any other interrupted command, without a second one."""
    err_console().print("interrupted", markup=False)
    raise typer.Exit(130) from None  # not "from" the interrupt: cli.main then prints nothing more


def json_value(value: Any) -> str:
    """What a ``--json`` document writes for a value JSON has no type for: a time in ISO 8601,
    UTC as ``Z``, as the run's document writes its times (``str`` gave ``2026-12-04 21:14:42+00:00``,
    which a script's ISO parser may refuse); anything else as its text (a Decimal exactly)."""
    if isinstance(value, datetime):
        return value.isoformat().replace("+00:00", "Z")
    return str(value)


def write_whole(text: str) -> None:
    """Write ``text`` to stdout, all of it or a BrokenPipeError.

    For output whose delivery changes the ledger (``codes export`` marks what it wrote): one
    large ``sys.stdout.write`` into a pipe whose reader left after the first 64 KiB came back
    without an error, the kernel having taken part of it, and every code was marked exported.
    Written by the descriptor, each short write is seen and the rest retried, so a reader gone
    mid-way raises. A stdout without a descriptor (a test's capture) takes the text whole.
    """
    import io
    import os

    stream = sys.stdout
    stream.flush()
    try:
        descriptor = stream.fileno()
    except (AttributeError, io.UnsupportedOperation, ValueError):
        stream.write(text)
        stream.flush()
        return
    encoding = getattr(stream, "encoding", None) or "utf-8"
    data = memoryview(text.encode(encoding, errors="backslashreplace"))
    while data:
        data = data[os.write(descriptor, data):]


def json_out(payload: Any, indent: int | None = None, *, config: Any = None, decides: bool = False) -> None:
    """Print the command's one ``--json`` document, whole, as its last word: a stop (Ctrl-C,
    SIGTERM) while or after it is written is let go (:func:`cartrescue.stops.held`).
    ``config``: the shop's, loaded by :func:`load`; its :func:`config_warnings` lead the
    document's ``warnings`` (a new key where it has none); ``decides`` as for :func:`load`."""
    import json

    from cartrescue import stops
    from cartrescue.output import json_stdout

    if config is not None:
        payload = {**payload, "warnings": config_warnings(config, payload.get("warnings", ()), decides=decides)}
    text = json.dumps(payload, ensure_ascii=False, default=json_value, indent=indent)
    out = json_stdout()
    try:
        with stops.held(settles=True):
            out.write(text + "\n")
            out.flush()
    except BrokenPipeError as exc:  # not to click, which exits 1 without a word: say why
        raise explained(exc) from None


class JsonUsageGroup(TyperGroup):
    """The app's command group: a usage error (an unknown option, a missing argument, a value
    out of range) under ``--json`` is one JSON document too, ``error.code`` ``config``, exit 2.
    typer prints such errors as a panel on stderr and nothing on stdout, and a script reading
    the document found none. The panel still goes to stderr.

    It also keeps ``--help`` from showing a type beside a flag, and names arguments as click
    does (see :func:`_help_names`).
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        _help_names(self, deep=False)

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        command = super().get_command(ctx, cmd_name)
        if command is not None:
            _help_names(command)  # only the commands a line uses (or a help lists)
        return command

    def make_context(self, info_name: str | None, args: list[str], parent: Any = None, **extra: Any) -> Any:
        as_json = "--json" in args  # the whole command line: this group is the first to see it
        with _usage_document(as_json):
            ctx = super().make_context(info_name, list(args), parent, **extra)
        ctx.meta["cartrescue.json"] = as_json  # shared by every context below this one
        return ctx

    def invoke(self, ctx: Any) -> Any:
        as_json = bool(ctx.meta.get("cartrescue.json"))
        with _usage_document(as_json):
            try:
                return super().invoke(ctx)
            except BrokenPipeError as exc:
                closed_pipe(exc, as_json)


class _UsualArgument(TyperArgument):
    """An argument on the usage line as click writes it: ``COUNT``, ``[CART_ID]``, ``CONFIG...``.

    typer 0.29 writes a required one in braces (``{count}``), which reads as a placeholder
    left unfilled in the help."""

    def get_usage_pieces(self, ctx: Any) -> list[str]:
        name = self.metavar or (self.name or "").upper()
        if self.nargs != 1 and not name.endswith("..."):
            name += "..."
        return [name if self.required else f"[{name}]"]


def _help_names(command: Any, *, deep: bool = True) -> None:
    """Name the parameters of ``command`` (``deep``: and of its subcommands) in ``--help`` as
    the usual CLI conventions have it.

    A flag gets an empty metavar: typer 0.29's help panels print a type beside every option,
    flags included (``--send <bool>``, ``--help <bool>``), which reads as if the flag took a
    value; its plain-text help already leaves it out. A flag's metavar, when set, is what the
    panel prints instead. The ``--help`` option is made on first use and then kept by its
    command; only its names are read from the context, here the defaults.

    An argument is named in capitals (``COUNT``, as its docstring names it; also in "Missing
    argument 'COUNT'") and written on the usage line as click does (:class:`_UsualArgument`).
    """
    from types import SimpleNamespace

    params = list(command.params)
    names = SimpleNamespace(help_option_names=list((command.context_settings or {}).get("help_option_names",
                                                                                       ["--help"])))
    help_option = command.get_help_option(names)
    if help_option is not None:
        params.append(help_option)
    for param in params:
        if getattr(param, "is_flag", False) and param.metavar is None:
            param.metavar = ""
        elif isinstance(param, TyperArgument) and not isinstance(param, _UsualArgument):
            if param.metavar is None and param.name:
                param.metavar = param.name.upper() + ("..." if param.nargs != 1 else "")
            param.__class__ = _UsualArgument
    if deep:
        for sub in getattr(command, "commands", {}).values():
            _help_names(sub)


@contextmanager
def _usage_document(as_json: bool) -> Iterator[None]:
    try:
        yield
    except Exception as error:
        # click's UsageError (typer vendors click, under a private module): known by its exit code 2
        if as_json and getattr(error, "exit_code", None) == 2 and hasattr(error, "format_message"):
            json_out({"error": {"code": "config", "exit_code": 2, "message": error.format_message()}})
        raise


def sub_typer(help_text: str) -> typer.Typer:
    """A command group (``templates``, ``codes``, ``suppress``) configured like the main app."""
    return typer.Typer(help=help_text, no_args_is_help=True, rich_markup_mode="markdown", add_completion=False,
                       pretty_exceptions_enable=False)
