"""One orders index for all the workers of a run: built once by the parent, read by each worker.

Owns the hand-over between ``run --workers N`` and its shard processes for a CSV source's
orders file. Without it every worker indexed the whole orders file (~0.7 s of CPU per 80,000
orders, each time), because an order is matched to a cart by cart id and customer id as well as
by address, so no worker can tell its own orders from the others' before reading them all.

The parent starts the workers first, then builds the index in a thread while they read their
carts (their first pass needs no orders), into a private folder it deletes when the run ends.
The file appears under its final name only when it is complete (written as ``.part``, then
renamed); a build that fails leaves a ``.failed`` marker instead, and each worker then indexes
the orders file itself, meeting the error (a missing file, a bad header) exactly as a run
without workers does. A worker waits for one or the other: the parent is alive while its
workers are (a worker dies with it), so the wait ends. The rows' problems travel inside the
file (:meth:`OrderIndex.add_problem`): shard 1 reports them, as it reports every shared row.

It must not read carts nor decide anything; the index itself is :mod:`.order_index`.
"""

from __future__ import annotations

import shutil
import tempfile
import threading
import time
from pathlib import Path

from cartrescue.config import Config

#: The environment variable that tells a worker where its parent builds the index.
ENV = "CARTRESCUE_SHARED_ORDERS"
#: A worker that has waited this long indexes the orders itself (a parent that stopped, SIGSTOP).
WAIT_LIMIT = 600.0


def failed_marker(path: Path) -> Path:
    return path.with_name(path.name + ".failed")


class SharedOrders:
    """The parent's side: a private folder, the index's path in it, and the thread that builds it."""

    def __init__(self, config: Config) -> None:
        self.config = config
        # mkdtemp, not TemporaryDirectory: a forked worker must not inherit a finalizer that deletes it
        self._dir = Path(tempfile.mkdtemp(prefix="cartrescue-shared-orders-"))
        self.path = self._dir / "orders.db"
        self._thread: threading.Thread | None = None

    @staticmethod
    def wanted(config: Config) -> bool:
        """Only a CSV source with an orders file has an index to share."""
        return config.source.type in ("csv", "shopify_csv") and config.source.orders is not None

    @classmethod
    def for_run(cls, config: Config) -> "SharedOrders | None":
        """The shared index of a run of ``config``'s workers; None when there is nothing to share,
        or no private folder can be made (each worker then indexes its orders, as it can)."""
        if not cls.wanted(config):
            return None
        try:
            return cls(config)
        except OSError:
            return None

    @property
    def env(self) -> dict[str, str]:
        """What each worker's environment needs (see :data:`ENV`)."""
        return {ENV: str(self.path)}

    def start(self) -> None:
        """Build the index in a thread (after the workers have started: they are forked only
        while this process has one thread)."""
        self._thread = threading.Thread(target=self._build, name="shared-orders", daemon=True)
        self._thread.start()

    def _build(self) -> None:
        from cartrescue.sources import open_source
        from cartrescue.sources.csv import CsvSource

        try:
            with open_source(self.config) as source:
                if not isinstance(source, CsvSource):
                    raise TypeError(f"no orders index to share for a {type(source).__name__}")
                source.publish_orders(self.path)
        except Exception:  # noqa: BLE001 - each worker indexes the orders itself and meets the error
            try:
                failed_marker(self.path).touch()
            except OSError:
                pass  # the run is over and the folder gone

    def close(self) -> None:
        """Delete the folder (every worker has ended: none still reads the file). A build still
        going (the workers ended early: a held lock, Ctrl-C) is not waited for long: its thread
        dies with the process, and its errors meanwhile are its own."""
        if self._thread is not None:
            self._thread.join(timeout=1)
        shutil.rmtree(self._dir, ignore_errors=True)


def wait_for(path: Path, limit: float = WAIT_LIMIT) -> bool:
    """Wait until the parent's index at ``path`` is complete: True, or False when the parent
    could not build it (or took longer than ``limit``) and this worker must index the orders."""
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
