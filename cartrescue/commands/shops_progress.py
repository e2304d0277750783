"""The bar of ``run-all``, ``report-all`` and ``doctor-all`` on a terminal: the shops done, the one
running longest and its seconds. With ``--jobs N`` it must not start a thread nor touch the
standard streams: the shops' processes are forked from the command while it is drawn
(:mod:`cartrescue.processes`); with ``--jobs 1`` (:func:`one_by_one`) nothing is forked."""

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

Row = TypeVar("Row")


@contextmanager
def shops_progress(console: Any, enabled: bool, total: int) -> Iterator[tuple[Any, Any, Any]]:
    """On a terminal, a bar of the shops done, the shop running longest and its seconds, and
    where to print a line above it: (say, done, tick).

    Refreshed by hand, never by a thread of its own, and the standard streams left as they are:
    each shop's run is forked from this process, which is safe only while it has one thread and
    its own streams (cartrescue.processes.start_method). ``tick`` redraws it while the shops run:
    drawn only as a shop ended, it stood still, its clock too, while one waited on a slow relay.
    """
    if not enabled:
        yield None, None, None
        return
    import time

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
    from rich.table import Column
    from rich.text import Text

    from cartrescue.text import path_text, printable

    with Progress(TextColumn("shops"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  TextColumn("{task.fields[longest]}", markup=False,
                             table_column=Column(no_wrap=True, overflow="ellipsis")),
                  console=console, auto_refresh=False, transient=True, redirect_stdout=False,
                  redirect_stderr=False) as bar:
        task = bar.add_task("shops", total=total, longest="")
        drawn = [0.0]

        def say(line: str) -> None:
            bar.console.print(Text(line), soft_wrap=True)
            bar.refresh()

        def done(_shop: Any) -> None:
            bar.advance(task)
            bar.refresh()

        def tick(running: Any) -> None:
            now = time.monotonic()
            if now - drawn[0] < 0.5:
                return
            drawn[0] = now
            shop, seconds = max(running, key=lambda item: item[1], default=(None, 0.0))
            bar.update(task, longest="" if shop is None else f"{printable(path_text(shop.config))} {seconds:.0f} s")
            bar.refresh()

        bar.refresh()
        yield say, done, tick


@contextmanager
def one_by_one(enabled: bool, total: int) -> Iterator[Callable[[Path], Path]]:
    """On a terminal, a bar of the shops done and the one being worked on in this process
    (``--jobs 1``): a shop's report reads its ledger and its orders, its doctor waits on its
    servers, seconds each. ``next_shop(config)`` moves it on.

    Nothing is forked here (unlike run-all's bar, and ``--jobs N``'s), so the bar refreshes itself, and stderr goes through it
    (the lines the shops say, a bad order row or a shop's error, print above it)."""
    from cartrescue.commands.common import err_console

    console = err_console()
    if not (enabled and console.is_terminal):
        yield lambda config: config
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
    from rich.table import Column

    from cartrescue.text import path_text, printable

    console.soft_wrap = True  # a line said above the bar stays one line, as elsewhere on stderr
    with Progress(TextColumn("shops"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  TextColumn("{task.fields[config]}", markup=False, table_column=Column(
                      no_wrap=True, overflow="ellipsis", max_width=max(10, console.width - 64))),
                  console=console, transient=True, redirect_stdout=False) as bar:
        task = bar.add_task("shops", total=total, config="")
        started = [False]

        def next_shop(config: Path) -> Path:
            bar.update(task, advance=1 if started[0] else 0, config=printable(path_text(config)))
            started[0] = True
            return config

        yield next_shop


def each_here(files: list[Path], bar: bool, work: Callable[[Path], Row], stopped: Callable[[Path, dict[str, Any]], Row],
              *, command: str, halted: str) -> tuple[list[Row], bool]:
    """``work`` for every shop in this process, one after another (``report-all`` and ``doctor-all``
    with ``--jobs 1``, or one shop), the bar on a terminal; and whether a stop (Ctrl-C, SIGTERM)
    ended them. The shop it stopped (its error says ``halted``: "its report was stopped") and
    those after it (unstarted) keep a row each, ``stopped(config, error)``: the one document
    still has a row a shop, as with ``--jobs N``, where a stop that escaped left no document."""
    from cartrescue.batch import named, unstarted_error

    rows: list[Row] = []
    with one_by_one(bar, len(files)) as next_shop:
        try:
            for config in files:
                rows.append(work(next_shop(config)))
        except KeyboardInterrupt:
            stop: dict[str, Any] = {"code": "interrupted", "exit_code": 130, "message": f"interrupted: {halted}"}
            for number, config in enumerate(files[len(rows):]):
                error = stop if number == 0 else unstarted_error(command)
                rows.append(stopped(config, dict(error, message=named(config, str(error["message"])))))
            return rows, True
    return rows, False


def each_in_process(command: str, options: list[str], files: list[Path], *, jobs: int, bar: bool,
                    preload: tuple[str, ...], row: Callable[[Any], Row]) -> tuple[list[Row], bool]:
    """Every shop in a process of its own, ``jobs`` at once (``report-all`` and ``doctor-all``
    ``--jobs N``): each is ``command --json --jobs 1 OPTIONS CONFIG`` for its one config, whose
    row ``row(run)`` takes as it is (:func:`run_shops_shown`). The rows, in the order given, and
    whether a stop (Ctrl-C, SIGTERM) ended the batch; the error of a row nothing said yet (its
    process killed, or ended without its document: the row's ``said`` is False) is said here."""
    from cartrescue.commands.common import say_lost_shops

    def arguments(config: Path) -> list[str]:
        return [command, "--json", "--jobs", "1", *options, str(config)]

    batch = run_shops_shown(arguments, files, jobs=jobs, bar=bar, preload=preload)
    rows = [row(run) for run in batch.shops]
    say_lost_shops((getattr(each, "error"), getattr(each, "said")) for each in rows)
    return rows, batch.interrupted


def run_shops_shown(arguments: Callable[[Path], list[str]], files: list[Path], *, jobs: int, bar: bool,
                    preload: tuple[str, ...]) -> Any:
    """:func:`cartrescue.batch.run_shops` for ``report-all`` and ``doctor-all --jobs N``: each shop's
    one-config command in a process of its own, ``jobs`` at once, the bar on a terminal (``bar``)
    and each line a shop says on stderr above it, naming its config. The :class:`~cartrescue.batch.Batch`."""
    from rich.text import Text

    from cartrescue.batch import run_shops
    from cartrescue.commands.common import err_console

    stderr = err_console()

    def warn(line: str) -> None:
        stderr.print(Text(line), soft_wrap=True)  # the shop's command made it printable already

    with shops_progress(stderr, bar and stderr.is_terminal, len(files)) as (say, done, tick):
        return run_shops(arguments, files, jobs=jobs, warn=say or warn, on_done=done, on_tick=tick, preload=preload)
