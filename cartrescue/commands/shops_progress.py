"""The bar of ``run-all`` and ``report-all --jobs N`` on a terminal: the shops done, the one running
longest and its seconds. It must not start a thread nor touch the standard streams: the shops'
processes are forked from the command while it is drawn (:mod:`cartrescue.processes`)."""

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


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
