"""How long ago the shop's export job last wrote each CSV file a run reads.

A run that reads an export keeps succeeding when the shop's export job has stopped writing it,
and the file cannot say so. An orders export left behind is the costly case: the orders placed
since are unknown, so their customers would be reminded of carts they bought. So a delivering
run holds back (exit 3, nothing claimed) once an export is older than
``source.export_stale_after``, a dry-run says so in a note, and ``doctor`` fails its source check
(exit 5). A database source is read live and has no age.

The age is the file's modification time against the run's clock, never past the real one: a
clock pinned in the past (``now:``, ``--now``: demos, tests, a re-run of last week) finds every
file fresh; one pinned ahead (a replay of the days to come, ``report --until`` next week) counts
the file's real age, since the export job cannot have written it in the future.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING

from cartrescue.errors import SourceError

if TYPE_CHECKING:
    from cartrescue.config import Config

KEY = "source.export_stale_after"


@dataclass(frozen=True, slots=True)
class Export:
    """One CSV file a run reads, how long ago it was written, and what its age costs."""

    kind: str  # carts, orders, newsletters
    path: Path
    age: timedelta
    consequence: str

    def stale(self, limit: timedelta | None) -> bool:
        return limit is not None and self.age > limit

    def written(self, limit: timedelta) -> str:
        """``orders.csv was last written 2d 0h ago (source.export_stale_after 24h 0m)``"""
        return f"{self.path.name} was last written {ago(self.age)} ago ({KEY} {ago(limit)})"

    def describe(self, limit: timedelta) -> str:
        """:meth:`written`, then what a run would get wrong on it."""
        return f"{self.written(limit)}: is the export job running? {self.consequence}"


def ago(delta: timedelta) -> str:
    """A duration as a person reads it in a one-line message: ``45s``, ``12m``, ``5h 3m``, ``2d 4h``."""
    seconds = int(delta.total_seconds())
    if seconds < 120:
        return f"{seconds}s"
    if seconds < 7200:
        return f"{seconds // 60}m"
    if seconds < 172800:
        return f"{seconds // 3600}h {seconds % 3600 // 60}m"
    return f"{seconds // 86400}d {seconds % 86400 // 3600}h"


def exports(config: "Config", now: datetime) -> Iterator[Export]:
    """Every CSV export of ``config`` that can be looked at (one that cannot be is the reader's to
    report), with its age at ``now`` or the real time, whichever is earlier (never below zero)."""
    files: list[tuple[str, str, Path]] = []
    source = config.source
    if source.is_csv and source.carts is not None:
        files.append(("carts", "Runs read the old carts: no new cart is reminded, and reminders follow carts that "
                      "may have changed or been bought since", config.path(source.carts)))
        if source.orders:
            files.append(("orders", "Orders placed since are unknown: their customers would be reminded of carts they "
                          "bought", config.path(source.orders)))
    if source.newsletters.file:
        files.append(("newsletters", "Newsletters sent since are unknown: a reminder may land on a newsletter's day",
                      config.path(source.newsletters.file)))
    now = min(now, datetime.now(timezone.utc))
    for kind, consequence, path in files:
        try:
            written = datetime.fromtimestamp(path.stat().st_mtime, timezone.utc)
        except OSError:
            continue
        yield Export(kind, path, max(now - written, timedelta(0)), consequence)


def stale_exports(config: "Config", now: datetime, found: list[Export] | None = None) -> list[str]:
    """What is stale at ``now`` under ``source.export_stale_after``, one sentence a file
    (``found``: the :func:`exports` the caller has already looked at)."""
    limit = config.source.export_stale_after
    if limit is None:
        return []
    return [export.describe(limit) for export in (exports(config, now) if found is None else found)
            if export.stale(limit)]


def stale_orders_note(config: "Config", now: datetime) -> str | None:
    """For ``report``: an orders export left behind lacks the orders placed since, so the report
    shows less won back than there is (and ``report.auto_promote`` judges on fewer orders)."""
    limit = config.source.export_stale_after
    for export in exports(config, now):
        if export.kind == "orders" and limit is not None and export.stale(limit):
            return (f"{export.written(limit)}: the orders placed since are not in this report, which shows less "
                    "won back than there is")
    return None


def hold_back_if_stale(config: "Config", now: datetime) -> None:
    """Raise :class:`SourceError` before a delivering run claims anything, when an export is stale."""
    stale = stale_exports(config, now)
    if stale:
        from cartrescue.config import DEFAULT_CONFIG

        raise SourceError("; ".join(stale) + ". Nothing was delivered: runs hold back until the export job writes it "
                          f"again (or raise {KEY} in {config.config_file or DEFAULT_CONFIG}; null switches the check off)")
