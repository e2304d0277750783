"""What a run shares with its workers: built once by the run, read by each worker.

Owns the hand-over between ``run --workers N`` and its shard processes for the files every
worker would otherwise read whole for itself: a CSV source's carts file (a cart's shard is decided
by its address, so a worker reading the export itself parses every shard's rows to find its own),
its orders file (an order concerns a cart by cart id and customer id as well as by address, so no
worker can tell its own orders from the others' before reading them all: ~0.7 s of CPU per
80,000 orders, each time) and the newsletter export of ``source.newsletters.file`` (every row is
read to find today's sends).

The run forks two helper processes before anything else (:func:`cartrescue.processes.fork_helper`):
they work on the core that would otherwise wait while the run imports what its workers need and
forks them, and go on while the workers start. One splits the carts file into one spool per shard
(:meth:`CsvSource.publish_shards <cartrescue.sources.csv.CsvSource.publish_shards>`; a large file
in pieces, each by a helper it forks, :mod:`.pieces`) and an
activity spool beside each, which each worker follows while it is written
(:func:`cartrescue.sources.spool.follow`); the other, at a
lower priority (the workers need its indexes only after their first pass), builds the indexes.
Where a run cannot fork, it starts its workers first and builds the indexes in a thread, and each
worker reads the carts file itself. Everything goes into a private folder the run deletes when it
ends. An index appears under its final name only when it is complete (written as ``.part``, then
renamed), a spool ends with an end mark; a build that fails leaves a ``.failed`` marker instead,
and each worker then reads the file itself, meeting the error (a missing file, a bad header)
exactly as a run without workers does. A worker waits for one or the other: the run is alive
while its workers are (a worker dies with it), and a helper that dies before it finished leaves
its markers through the run (a thread watches it), so the wait ends. The rows' problems travel
inside the index (:func:`keep_problem`) or shard 1's spool and are reported by shard 1, as it
reports every shared row. The environment variables :data:`ORDERS`, :data:`SENDS` and
:data:`CARTS` tell a worker where each is built.

It must not parse carts nor decide anything; the indexes themselves are :mod:`.order_index` and
:mod:`.sends_csv`, the spools :mod:`.spool`.
"""

from __future__ import annotations

import os
import shutil
import signal
import sqlite3
import threading
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from cartrescue import processes
from cartrescue.config import Config
from cartrescue.scratch import PRAGMAS, private_folder, sweep_stale

if TYPE_CHECKING:  # the model only where a worker reads an index: the run imports this before its first fork
    from cartrescue.model import RowProblem
    from cartrescue.sources.csv import CsvSource

#: The environment variables that tell a worker where its run builds each index.
ORDERS = "CARTRESCUE_SHARED_ORDERS"
SENDS = "CARTRESCUE_SHARED_SENDS"
#: ... and where its run splits the carts file into one spool per shard (:func:`carts_spool`).
CARTS = "CARTRESCUE_SHARED_CARTS"
#: The niceness of the helper that builds the indexes (the run's own start and the carts split
#: are what the workers wait for first). B2 on 2 cores, three runs each: 4.85-4.93 s with 5,
#: 4.95-5.15 s with 0, 4.91-4.98 s with 10.
INDEXER_NICE = 5
#: A worker that has waited this long reads the file itself (a run that stopped: SIGSTOP).
WAIT_LIMIT = 600.0
#: Every shared index keeps the problems its rows had (:func:`keep_problem`) in this table.
_PROBLEMS_TABLE = "CREATE TABLE problems(location TEXT NOT NULL, reason TEXT NOT NULL);"


def failed_marker(path: Path) -> Path:
    return path.with_name(path.name + ".failed")


def _mark_failed(path: Path) -> None:
    """Leave ``path``'s ``.failed`` marker: each worker then reads the file itself."""
    try:
        failed_marker(path).touch()
    except OSError:
        pass  # the run is over and the folder gone


def carts_spool(base: Path, index: int) -> Path:
    """Shard ``index``'s spool of the carts file split at ``base`` (:data:`CARTS`)."""
    return base.with_name(f"{base.name}.{index}")


def activity_spool(spool: Path) -> Path:
    """The activity spool beside a shard's spool (``CsvSource.publish_shards``): what the
    worker's first pass follows, so that it never decodes the rows the carts pass reads."""
    return spool.with_name(spool.name + ".activity")


def piece_spool(spool: Path, number: int) -> Path:
    """The part of ``spool`` (a shard's, or its activity spool) that the helper of piece
    ``number`` of a split by several helpers writes (:mod:`.pieces`), which the first appends."""
    return spool.with_name(f"{spool.name}.piece{number}")


def piece_ids(spool: Path, number: int) -> Path:
    """Where that helper leaves the cart ids of its piece (:meth:`.apart.ApartIds.save`)."""
    return spool.with_name(f"{spool.name}.piece{number}-ids")


def piece_stopped(spool: Path, number: int) -> Path:
    """What that helper leaves where its reading stopped at the next piece's cut."""
    return spool.with_name(f"{spool.name}.piece{number}-stopped")


def shares_orders(config: Config) -> bool:
    """A CSV source with an orders file has an orders index to share."""
    return config.source.is_csv and config.source.orders is not None


def splits_carts(config: Config) -> bool:
    """A CSV source's carts file is split once for the workers (a database source is queried by each)."""
    return config.source.is_csv


class SharedIndexes:
    """The run's side: a private folder, a file per index in it (and the carts file's split), and
    the helper processes (or the thread) that build them."""

    def __init__(self, config: Config, now: datetime, workers: int = 1) -> None:
        self.config = config
        self.now = now
        self.workers = workers
        sweep_stale()
        self._dir = private_folder("shared")
        # Orders first: both are needed by a worker's first chunk, the orders index is the larger.
        self._builds: dict[str, tuple[Path, Callable[[Path], None]]] = {}
        if shares_orders(config):
            self._builds[ORDERS] = (self._dir / "orders.db", self._orders)
        if config.source.newsletters.file is not None:
            self._builds[SENDS] = (self._dir / "sends.db", self._sends)
        self._carts = self._dir / "carts.spool" if workers > 1 and splits_carts(config) else None
        self._split = False  # a helper splits the carts file (only a helper: see start_early)
        self._threads: list[threading.Thread] = []
        self._indexer = False  # a helper builds the indexes (else a thread does: start)
        self._helpers: dict[int, list[Path]] = {}  # pid -> what it leaves failed if it dies; until reaped
        self._reaping = threading.Lock()  # a pid is signalled only while it is surely still ours

    @classmethod
    def for_run(cls, config: Config, now: datetime, workers: int = 1) -> SharedIndexes | None:
        """What a run of ``config``'s ``workers`` at ``now`` shares; None when there is nothing
        to share, or no private folder can be made (each worker then reads the files itself)."""
        if not shares_orders(config) and config.source.newsletters.file is None \
                and not (workers > 1 and splits_carts(config)):
            return None
        try:
            return cls(config, now, workers)
        except OSError:
            return None

    @property
    def env(self) -> dict[str, str]:
        """What each worker's environment needs (see :data:`ORDERS`, :data:`SENDS`, :data:`CARTS`)."""
        env = {name: str(path) for name, (path, _build) in self._builds.items()}
        if self._split and self._carts is not None:
            env[CARTS] = str(self._carts)
        return env

    def path(self, name: str) -> Path:
        return self._builds[name][0]

    def start_early(self) -> None:
        """Fork the helpers, before the run imports what its workers need and forks them
        (:func:`cartrescue.processes.fork_helper`: only while this process has one thread): one
        splits the carts file, one builds the indexes (niced: the run's start and the split come
        first, its indexes are needed only after the workers' first pass). Where they cannot be
        forked, :meth:`start` builds the indexes in a thread, and each worker reads the carts
        file itself (a thread of the run would split it no faster than the workers read it)."""
        if self._carts is not None:
            pid = processes.fork_helper(self._split_carts, name="carts")
            if pid is not None:
                self._helpers[pid] = [self._carts]
                self._split = True
        if self._builds and (self._split or self._carts is None):
            pid = processes.fork_helper(self._build, nice=INDEXER_NICE, name="index")
            if pid is not None:
                self._helpers[pid] = [path for path, _build in self._builds.values()]
                self._indexer = True

    def start(self) -> None:
        """Once the workers have started (they are forked only while this process has one thread):
        watch the helpers, and build the indexes in a thread where no helper does."""
        targets: list[tuple[Callable[..., None], tuple[object, ...]]] = [
            (self._watch, (pid, paths)) for pid, paths in self._helpers.items()]
        if self._builds and not self._indexer:
            targets.append((self._build, ()))
        for target, args in targets:
            thread = threading.Thread(target=target, args=args, name="shared-indexes", daemon=True)
            thread.start()
            self._threads.append(thread)

    def _watch(self, pid: int, paths: list[Path]) -> None:
        """When helper ``pid`` has ended: reap it (no defunct process for the rest of the run), and
        if it was killed (the out-of-memory killer), a ``.failed`` marker for what it left
        unfinished, so that no worker waits for it. A helper that ends by itself has written
        each of its files or its marker."""
        try:
            ended = os.waitid(os.P_PID, pid, os.WEXITED | os.WNOWAIT)  # reaped under the lock
        except ChildProcessError:
            ended = None
        self._reap(pid)
        if ended is not None and ended.si_code == os.CLD_EXITED and ended.si_status == 0:
            return
        for path in paths:
            if not path.exists():
                _mark_failed(path)

    def _reap(self, pid: int) -> None:
        with self._reaping:
            if self._helpers.pop(pid, None) is not None:
                try:
                    os.waitpid(pid, 0)
                except ChildProcessError:
                    pass

    def _split_carts(self) -> None:
        """Split the carts file into the workers' spools (:meth:`CsvSource.publish_shards`), or
        leave the ``.failed`` marker: each worker then reads the file itself and meets its error."""
        carts = self._carts
        assert carts is not None
        try:
            self._with_csv(lambda source: source.publish_shards(
                [carts_spool(carts, index) for index in range(1, self.workers + 1)]))
        except Exception:  # noqa: BLE001 - each worker reads the file itself and meets the error
            _mark_failed(carts)

    def _build(self) -> None:
        """Each index written as ``<name>.part`` and renamed once complete (a worker never opens
        half an index), or its ``.failed`` marker."""
        for path, build in self._builds.values():
            part = path.with_name(path.name + ".part")
            try:
                build(part)
                part.replace(path)
            except Exception:  # noqa: BLE001 - each worker reads the file itself and meets the error
                _mark_failed(path)

    def _orders(self, path: Path) -> None:
        self._with_csv(lambda source: source.publish_orders(path))

    def _with_csv(self, publish: Callable[[CsvSource], object]) -> None:
        """``publish`` on the run's CSV source (the only kind whose files are shared)."""
        from cartrescue.sources import open_source
        from cartrescue.sources.csv import CsvSource

        with open_source(self.config) as source:
            if not isinstance(source, CsvSource):
                raise TypeError(f"no file to share for a {type(source).__name__}")
            publish(source)

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
            for pid in self._helpers:  # not reaped, so still this run's child: a zombie at worst
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        for thread in self._threads:
            thread.join(timeout=1)
        for pid in list(self._helpers):
            self._reap(pid)  # where no thread watched it
        shutil.rmtree(self._dir, ignore_errors=True)


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
        # The page cache of a private scratch index (PRAGMAS): SQLite's default 2 MB made every
        # chunk's lookups read pages again, ~20 % more CPU for them at 100,000 carts.
        db.execute("PRAGMA cache_size=-8000")
        if not fits(db):
            db.close()
            return None
        problems = db.execute("SELECT location, reason FROM problems ORDER BY rowid").fetchall()
    except sqlite3.Error:
        db.close()
        return None
    from cartrescue.model import RowProblem

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
