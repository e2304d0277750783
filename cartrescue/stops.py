"""How Ctrl-C, SIGTERM and SIGHUP reach a run, so that a stop never breaks what must be whole.

cli.main installs :class:`Stops` for all three: a stopped run ends like an interrupted one (open
``--json`` documents closed, ledger transactions rolled back, exit 130), SIGTERM (a service
manager, ``timeout``, a container stop, ``run-all --timeout``) and SIGHUP (the terminal hung up:
a dropped SSH session of a person running ``run --send`` by hand) as Ctrl-C. A KeyboardInterrupt
raised wherever the interpreter happens to be could break a write in its middle or vanish inside
an event loop's callback. Two tools keep it out of such places: :func:`held` defers a stop over
a short block that must complete (a block of the ``--json`` document, the outcomes of delivered
messages), and :func:`stops_in_loop` lets a channel's event loop take it between callbacks and
wind down.
"""

from __future__ import annotations

import signal
from contextlib import contextmanager

#: typing.TYPE_CHECKING, without importing typing: the console script installs these handlers
#: before anything else is imported (cartrescue.entry), and typing took milliseconds of that.
TYPE_CHECKING = False
if TYPE_CHECKING:
    import asyncio
    from collections.abc import Callable, Iterator

#: The signals that stop a run. SIGHUP (a terminal that hung up) met Python's default action
#: before: the run died at once, claims without outcome, the lock left for the next run to
#: break, no document and no "stopped:" line.
SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class Stops:
    """The handler of SIGINT, SIGTERM and SIGHUP: raise KeyboardInterrupt, or, inside :func:`held`,
    remember the stop and raise it once the block is done.

    Python runs signal handlers in the main thread, whichever thread the kernel gave the signal
    to; a thread's signal mask (``pthread_sigmask``) therefore cannot defer them while a
    run has other threads (the ledger's heartbeat): this flag can.
    """

    def __init__(self) -> None:
        self.holding = 0
        self.pending = False
        self.over = False  # the command's outcome is printed: see held(settles=True)

    def __call__(self, signum: int, frame: object) -> None:
        if self.over:
            return
        if self.holding:
            self.pending = True
            return
        raise KeyboardInterrupt

    @contextmanager
    def hold(self) -> Iterator[None]:
        """The block runs to its end; a stop that came meanwhile is raised after it."""
        self.holding += 1
        try:
            yield
        finally:
            self.holding -= 1
        if not self.holding and self.pending and not self.over:  # not after an exception: that one goes on
            self.pending = False
            raise KeyboardInterrupt


def install() -> Stops:
    """SIGTERM, and SIGINT and SIGHUP unless they were ignored when the process started
    (``nohup``, a job started in the background by a script), get a :class:`Stops`, one for all.

    The console script installs one before its imports and cli.main again: SIGINT's is
    replaced too. Left to the first, it was never told that the outcome was printed, and a
    Ctrl-C after the ``--json`` document raised in the exit path (a second document, exit 130)."""
    stops = Stops()
    signal.signal(signal.SIGTERM, stops)
    handler = signal.getsignal(signal.SIGINT)
    if handler is signal.default_int_handler or isinstance(handler, Stops):
        signal.signal(signal.SIGINT, stops)
    handler = signal.getsignal(signal.SIGHUP)
    if handler is signal.SIG_DFL or isinstance(handler, Stops):
        signal.signal(signal.SIGHUP, stops)
    return stops


@contextmanager
def held(settles: bool = False) -> Iterator[None]:
    """A stop (Ctrl-C, SIGTERM) that comes during the block is raised after it, not inside it.

    ``settles``: the block prints the command's outcome (its one ``--json`` document), and a
    stop during it or after it is let go, whatever the process still does. The command has done
    its work and says how it ended; raised inside the write (a slow reader, a full pipe), the
    stop cut the document where the pipe was full and cli.main printed a second one after it;
    raised after it, the process exited 130 under a document that did not say so.

    Only under the handler :func:`install` set (the command line); anywhere else (an embedding
    program, a test runner) the block runs as it is.
    """
    stops = signal.getsignal(signal.SIGTERM)
    if not isinstance(stops, Stops):
        yield
        return
    with stops.hold():
        yield
        if settles:
            stops.over = True
            _ignore_stops()


def _ignore_stops() -> None:
    """Once the outcome is printed, SIGINT, SIGTERM and SIGHUP are ignored by the kernel too.

    The handler alone let them go only while Python's handlers were in place. But the
    interpreter's last step at exit puts every handler it set back to the default. A
    SIGTERM then (a service manager, ``timeout``, a second Ctrl-C from a person) killed the
    process: exit 143 or 130 under a document that said 0. An ignored signal stays ignored
    through that step. Only the main thread can change a handler; elsewhere ``stops.over``
    alone lets them go."""
    import threading

    if threading.current_thread() is not threading.main_thread():
        return
    for signum in SIGNALS:
        if isinstance(signal.getsignal(signum), Stops):
            signal.signal(signum, signal.SIG_IGN)


#: A second signal this soon after the first is the same stop, not "stop at once". A worker of
#: ``run --workers`` whose parent is killed gets its parent-death SIGTERM once for each thread
#: of the parent as they end (Linux reparents it to the next one), a few milliseconds apart:
#: taken for a second Ctrl-C, it cut the grace of the messages in flight, left claimed without
#: their outcome. No person presses Ctrl-C twice within a quarter of a second.
SAME_STOP = 0.25


@contextmanager
def stops_in_loop(loop: "asyncio.AbstractEventLoop", task: "asyncio.Task[None]",
                  stop: Callable[[], float], cut: Callable[[], None] = lambda: None) -> Iterator[list[int]]:
    """While ``loop`` runs ``task``: the first Ctrl-C, SIGTERM or SIGHUP calls ``stop`` and cancels the
    task once the grace it returns has passed (at once for 0), a second one cancels it at once;
    the list names the signals that came. ``cut`` is called just before the task is cancelled,
    while what it waits on is still as it was (which requests had left).

    Outside the loop, cli.main's handlers raise KeyboardInterrupt wherever the interpreter is.
    Inside it, that may be a transport callback: uvloop reports an exception from
    ``data_received`` as a fatal error of that connection and goes on (MagicStack/uvloop#295),
    so the run ignored the stop and lost the reply of a message it had sent, which stayed
    claimed. Here the loop takes the signal between callbacks; the caller raises
    KeyboardInterrupt itself once the task has ended. Only the main thread can set handlers; in
    any other thread this does nothing.
    """
    import threading

    stopped: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield stopped
        return

    timers: list[asyncio.TimerHandle] = []
    first: list[float] = []

    def on_signal(signum: int) -> None:
        now = loop.time()
        if first and now - first[0] < SAME_STOP:  # the same stop, said again (see SAME_STOP)
            return
        first[:1] = [now]
        stopped.append(signum)
        grace = stop() if len(stopped) == 1 else 0.0
        if grace > 0:
            timers.append(loop.call_later(grace, cancel))
        else:
            cancel()

    def cancel() -> None:
        if not task.done():
            cut()
            task.cancel()

    previous = {signum: handler for signum in SIGNALS
                if (handler := signal.getsignal(signum)) not in (signal.SIG_IGN, None)}  # nohup's stays ignored
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
