"""The real time, read in one place, and a run's clock.

A run decides at one instant, its ``now`` (``--now``, the config's ``now:``, else the time it
started), but it claims and sends its messages over the minutes or hours that follow (a relay's
rate limit, a million carts): a run that starts at 23:59 sends after midnight. Each claim is
stamped by :meth:`RunClock.now`, the real time it was made, so that "one message a day" (and a
day's budget) counts the message on the shop's day it went out, not on the day its run began.
A pinned clock (a replay, a demo) stays where it was pinned. Tests replace :func:`wall` to move
the real time on without waiting.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone


def wall() -> datetime:
    """The real time now, aware UTC: where a run reads it for its claims and quiet hours (the
    times the ledger stamps its own rows with, a run's start and end, read the clock themselves)."""
    return datetime.now(timezone.utc)


@dataclass(frozen=True, slots=True)
class RunClock:
    """A run's clock: ``start`` (its ``now``), and, when ``live`` (not pinned), the real time
    after it."""

    start: datetime
    live: bool = False

    def now(self) -> datetime:
        """When a claim is made: the real time, never before ``start``; ``start`` when pinned."""
        if not self.live:
            return self.start
        return max(self.start, wall().astimezone(self.start.tzinfo))
