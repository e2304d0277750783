"""Indexes a run shares with its workers: built once by the run, read by each worker.

Owns the hand-over between ``run --workers N`` and its shard processes for the two files every
worker would otherwise read whole and index for itself: a CSV source's orders file (an order
concerns a cart by cart id and customer id as well as by address, so no worker can tell its own
orders from the others' before reading them all: ~0.7 s of CPU per 80,000 orders, each time) and
the newsletter export of ``source.newsletters.file`` (every row is read to find today's sends).

The run builds the indexes in a helper process it forks before anything else
(:func:`cartrescue.processes.fork_helper`): the helper works on a core that would otherwise wait
while the run imports what its workers need and forks them, and goes on while they read their
carts (their first pass needs neither). Where a run cannot fork, it starts its workers first and
builds the indexes in a thread. They go into a private folder the run deletes when it ends. A
file appears under its final name only when it is complete (written as ``.part``, then renamed);
a build that fails leaves a ``.failed`` marker instead, and each worker then reads the file
itself, meeting the error (a missing file, a bad header) exactly as a run without workers does.
A worker waits for one or the other: the run is alive while its workers are (a worker dies with
it), and a helper that dies before it finished leaves its markers through the run (a thread
watches it), so the wait ends. The rows' problems travel inside the index (:func:`keep_problem`) and are
reported by the worker that opens it (:func:`open_index`): shard 1, as it reports every shared
row. The environment variables :data:`ORDERS` and :data:`SENDS` tell a
worker where each index is built.

It must not read carts nor decide anything; the indexes themselves are
:mod:`.order_index` and :mod:`.sends_csv`.
"""

from __future__ import annotations

import os
import shutil
import signal
import sqlite3
import tempfile
import threading
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

from cartrescue import processes
from cartrescue.config import Config
from cartrescue.model import RowProblem
from cartrescue.scratch import PRAGMAS

#: The environment variables that tell a worker where its run builds each index.
ORDERS = "CARTRESCUE_SHARED_ORDERS"
SENDS = "CARTRESCUE_SHARED_SENDS"
#: A worker that has waited this long reads the file itself (a run that stopped: SIGSTOP).
WAIT_LIMIT = 600.0
#: Every shared index keeps the problems its rows had (:func:`keep_problem`) in this table.
_PROBLEMS_TABLE = "CREATE TABLE problems(location TEXT NOT NULL, reason TEXT NOT NULL);"


def failed_marker(path: Path) -> Path:
    return path.with_name(path.name + ".failed")


def shares_orders(config: Config) -> bool:
    """A CSV source with an orders file has an orders index to share."""
    return config.source.type in ("csv", "shopify_csv") and config.source.orders is not None


class SharedIndexes:
    """The run's side: a private folder, a file per index in it, and the helper process (or the
    thread) that builds them."""

    def __init__(self, config: Config, now: datetime) -> None:
        self.config = config
        self.now = now
        # mkdtemp, not TemporaryDirectory: a forked worker must not inherit a finalizer that deletes it
        self._dir = Path(tempfile.mkdtemp(prefix="cartrescue-shared-"))
        # Orders first: both are needed by a worker's first chunk, the orders index is the larger.
        self._builds: dict[str, tuple[Path, Callable[[Path], None]]] = {}
        if shares_orders(config):
            self._builds[ORDERS] = (self._dir / "orders.db", self._orders)
        if config.source.newsletters.file is not None:
            self._builds[SENDS] = (self._dir / "sends.db", self._sends)
        self._thread: threading.Thread | None = None
        self._helper: int | None = None  # the builder's pid, until it is reaped
        self._reaping = threading.Lock()  # a pid is signalled only while it is surely still ours

    @classmethod
    def for_run(cls, config: Config, now: datetime) -> SharedIndexes | None:
        """The indexes a run of ``config``'s workers at ``now`` shares; None when there is nothing
        to share, or no private folder can be made (each worker then reads the files itself)."""
        if not shares_orders(config) and config.source.newsletters.file is None:
            return None
        try:
            return cls(config, now)
        except OSError:
            return None

    @property
    def env(self) -> dict[str, str]:
        """What each worker's environment needs (see :data:`ORDERS`, :data:`SENDS`)."""
        return {name: str(path) for name, (path, _build) in self._builds.items()}

    def path(self, name: str) -> Path:
        return self._builds[name][0]

    def start_early(self) -> None:
        """Fork the helper that builds the indexes, before the run imports what its workers need
        and forks them (:func:`cartrescue.processes.fork_helper`: only while this process has one
        thread); where it cannot, :meth:`start` builds them in a thread."""
        self._helper = processes.fork_helper(self._build)

    def start(self) -> None:
        """Once the workers have started (they are forked only while this process has one thread):
        watch the helper, or build the indexes in a thread where there is none."""
        target = self._watch if self._helper is not None else self._build
        self._thread = threading.Thread(target=target, name="shared-indexes", daemon=True)
        self._thread.start()

    def _watch(self) -> None:
        """When the helper has ended: reap it (no defunct process for the rest of the run), and a
        ``.failed`` marker for each index it left unfinished (it was killed: the out-of-memory
        killer), so that no worker waits for it."""
        helper = self._helper
        assert helper is not None
        try:
            os.waitid(os.P_PID, helper, os.WEXITED | os.WNOWAIT)  # ended; reaped under the lock
        except ChildProcessError:
            pass
        self._reap()
        for path, _build in self._builds.values():
            if not path.exists():
                try:
                    failed_marker(path).touch()
                except OSError:
                    pass  # the run is over and the folder gone

    def _build(self) -> None:
        """Each index written as ``<name>.part`` and renamed once complete (a worker never opens
        half an index), or its ``.failed`` marker."""
        for path, build in self._builds.values():
            part = path.with_name(path.name + ".part")
            try:
                build(part)
                part.replace(path)
            except Exception:  # noqa: BLE001 - each worker reads the file itself and meets the error
                try:
                    failed_marker(path).touch()
                except OSError:
                    pass  # the run is over and the folder gone

    def _orders(self, path: Path) -> None:
        from cartrescue.sources import open_source
        from cartrescue.sources.csv import CsvSource

        with open_source(self.config) as source:
            if not isinstance(source, CsvSource):
                raise TypeError(f"no orders index to share for a {type(source).__name__}")
            source.publish_orders(path)

    def _sends(self, path: Path) -> None:
        from cartrescue.newsletters import today
        from cartrescue.sources.sends_csv import open_export

        export = open_export(self.config)
        try:
            export.publish(path, today(self.config, self.now))
        finally:
            export.close()

    def close(self) -> None:
        """Delete the folder (every worker has ended: none still reads it). A build still going
        (the workers ended early: a held lock, Ctrl-C) is not waited for: its helper is killed,
        or its thread dies with the process (its errors meanwhile are its own)."""
        with self._reaping:
            if self._helper is not None:  # not reaped, so still this run's child: a zombie at worst
                try:
                    os.kill(self._helper, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        if self._thread is not None:
            self._thread.join(timeout=1)
        self._reap()  # where no thread watched it
        shutil.rmtree(self._dir, ignore_errors=True)

    def _reap(self) -> None:
        with self._reaping:
            if self._helper is not None:
                try:
                    os.waitpid(self._helper, 0)
                except ChildProcessError:
                    pass
                self._helper = None


def wait_for(path: Path, limit: float = WAIT_LIMIT) -> bool:
    """Wait until the run's index at ``path`` is complete: True, or False when the run could
    not build it (or took longer than ``limit``) and this worker must read the file itself."""
    failed = failed_marker(path)
    nap = 0.002
    deadline = time.monotonic() + limit
    while True:
        if path.exists():
            return True
        if failed.exists() or time.monotonic() > deadline:
            return False
        time.sleep(nap)
        nap = min(nap * 2, 0.05)


def create_index(path: Path, schema: str) -> sqlite3.Connection:
    """A new shared index at ``path``: ``schema`` and the table of its rows' problems, written by
    the run's thread, with a scratch file's settings (nothing to keep if the run dies)."""
    db = sqlite3.connect(path, check_same_thread=False)
    db.executescript(PRAGMAS + schema + _PROBLEMS_TABLE)
    return db


def open_index(path: Path | None, report: Callable[[RowProblem], None],
               fits: Callable[[sqlite3.Connection], bool]) -> sqlite3.Connection | None:
    """The run's finished index at ``path``, read-only, once it is complete, its rows' problems
    handed to ``report``; None: no index to wait for, or the run could not build it, or the file
    is not one ``fits`` accepts (no index of ours, another window): the worker then reads the
    file itself. ``immutable``: nothing writes the file any more, so SQLite takes no locks."""
    if path is None or not wait_for(path):
        return None
    try:
        db = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro&immutable=1", uri=True)
    except sqlite3.Error:
        return None
    try:
        if not fits(db):
            db.close()
            return None
        problems = db.execute("SELECT location, reason FROM problems ORDER BY rowid").fetchall()
    except sqlite3.Error:
        db.close()
        return None
    try:
        for location, reason in problems:
            report(RowProblem(location, reason))
    except BaseException:  # --strict: a reported problem stops the run
        db.close()
        raise
    return db


def keep_problem(db: sqlite3.Connection, problem: RowProblem) -> None:
    """Keep a problem met while building a shared index, for the worker that reports shared rows."""
    db.execute("INSERT INTO problems VALUES (?, ?)", (problem.location, problem.reason))
