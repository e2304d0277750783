"""How Ctrl-C and SIGTERM reach a run, so that a stop never breaks what must be whole.

cli.main turns SIGTERM into KeyboardInterrupt, as Ctrl-C is, so that a stopped run ends like an
interrupted one (open ``--json`` documents closed, ledger transactions rolled back, exit 130).
Raised wherever the interpreter happens to be, it could break a write in its middle or vanish
inside an event loop's callback. Two tools keep it out of such places: :func:`held` defers the
signals over a short block that must complete (a block of the ``--json`` document, the outcomes
of delivered messages), and :func:`stops_in_loop` lets a channel's event loop take them between
callbacks and wind down.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import asyncio


@contextmanager
def held() -> Iterator[None]:
    """Ctrl-C and SIGTERM wait for the block to end; one that came is handled (raised) after it."""
    import signal

    if not hasattr(signal, "pthread_sigmask"):  # Windows: as io would write it
        yield
        return
    mask = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)


@contextmanager
def stops_in_loop(loop: "asyncio.AbstractEventLoop", task: "asyncio.Task[None]",
                  stop: Callable[[], float]) -> Iterator[list[int]]:
    """While ``loop`` runs ``task``: the first Ctrl-C or SIGTERM calls ``stop`` and cancels the
    task once the grace it returns has passed (at once for 0), a second one cancels it at once;
    the list names the signals that came.

    Outside the loop, cli.main's handlers raise KeyboardInterrupt wherever the interpreter is.
    Inside it, that may be a transport callback: uvloop reports an exception from
    ``data_received`` as a fatal error of that connection and goes on (MagicStack/uvloop#295),
    so the run ignored the stop and lost the reply of a message it had sent, which stayed
    claimed. Here the loop takes the signal between callbacks; the caller raises
    KeyboardInterrupt itself once the task has ended. Only the main thread can set handlers; in
    any other thread this does nothing.
    """
    import signal
    import threading

    stopped: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield stopped
        return

    timers: list[asyncio.TimerHandle] = []

    def on_signal(signum: int) -> None:
        stopped.append(signum)
        grace = stop() if len(stopped) == 1 else 0.0
        if grace > 0:
            timers.append(loop.call_later(grace, task.cancel))
        else:
            task.cancel()

    previous = {signum: signal.getsignal(signum) for signum in (signal.SIGINT, signal.SIGTERM)}
    for signum in previous:
        loop.add_signal_handler(signum, on_signal, signum)
    try:
        yield stopped
    finally:
        for timer in timers:
            timer.cancel()
        for signum, handler in previous.items():
            loop.remove_signal_handler(signum)  # it sets the default handler: put back the one before
            signal.signal(signum, handler)
