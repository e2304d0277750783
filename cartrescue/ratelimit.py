"""Rate limits for sending: a token bucket per second and a rolling window per hour.

Owns pacing only: how long a sender must wait before its next message, and whether the hourly
quota has room. It must not send, retry or decide outcomes (the SMTP channel does). Both limits
work on a monotonic clock; the clock and the sleep are injectable so tests need not wait.

- :class:`TokenBucket` paces a steady rate with a small burst (at most ``rate / 20`` tokens, at
  least one): over any window of T seconds at most ``burst + rate * T`` messages go out, so a
  configured 50/s is held within a few percent over a couple of seconds. A token is taken only
  when it is in hand, after any sleep: a sender that wakes late (the event loop stalled under
  load) finds at most ``burst`` tokens, so late wakers never go out together as a burst, which
  tokens reserved before the sleep would do. Senders on one loop queue on a FIFO lock, so one
  sleeps for the next token at a time and the pace stays fair.
- :class:`RollingWindow` enforces "at most N in any hour", which is what relays' hourly quotas
  mean (a token bucket would let up to 2N through in an hour that starts with a full bucket).
  It is seeded with the sends of earlier runs, so a cron job every ten minutes shares one quota.
  It never waits: when the hour is full the caller leaves the message for a later run.
- :class:`HourRoom` is what the hour has left when a delivering run starts (and between its
  chunks): the executor defers the sends past it before their claim (``hourly_quota``); the
  window's refusal stays the backstop for a race with another run.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass

Clock = Callable[[], float]


class TokenBucket:
    """``rate`` tokens per second, at most ``burst`` in hand (default ``max(1, rate / 20)``)."""

    def __init__(self, rate: float, burst: float | None = None, clock: Clock = time.monotonic) -> None:
        if rate <= 0:
            raise ValueError("rate must be positive")
        self.rate = float(rate)
        self.capacity = float(burst) if burst is not None else max(1.0, self.rate / 20)
        self.clock = clock
        self.tokens = self.capacity
        self.stamp = clock()

    def take(self) -> float:
        """Take one token if it is in hand and return 0; else take none and return the wait for it.

        Nothing is taken ahead of time: the caller sleeps and asks again, so what a stall
        accumulates is capped at ``capacity``.
        """
        now = self.clock()
        self.tokens = min(self.capacity, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens >= 1.0 - 1e-9:  # a sleep of exactly the wait may land a hair short in floats
            self.tokens = max(0.0, self.tokens - 1.0)
            return 0.0
        return (1.0 - self.tokens) / self.rate


class RollingWindow:
    """At most ``limit`` events in any ``period`` seconds; ``history`` = ages (s) of earlier events."""

    def __init__(self, limit: int, period: float = 3600.0, clock: Clock = time.monotonic,
                 history: Iterable[float] = ()) -> None:
        if limit <= 0:
            raise ValueError("limit must be positive")
        self.limit = limit
        self.period = float(period)
        self.clock = clock
        now = clock()
        self.events: deque[float] = deque(sorted(now - age for age in history if 0 <= age < period))

    def _prune(self, now: float) -> None:
        events = self.events
        while events and events[0] <= now - self.period:
            events.popleft()

    def try_take(self) -> bool:
        """Record one event now if the window has room; ``False`` when it is full."""
        now = self.clock()
        self._prune(now)
        if len(self.events) >= self.limit:
            return False
        self.events.append(now)
        return True

    def room(self) -> tuple[int, float]:
        """How many events the window takes now, and in how many seconds, once those are taken,
        it has room again: when the event that makes it full leaves it (its oldest when it has
        room now; a whole period when it holds none: the first of those taken now is then the
        oldest)."""
        now = self.clock()
        self._prune(now)
        events = self.events
        if not events:
            return self.limit, self.period
        return max(0, self.limit - len(events)), events[max(0, len(events) - self.limit)] + self.period - now

    def free_in(self) -> float:
        """Seconds until the window has room again (0 when it has room now): :meth:`room`'s wait
        when it has none."""
        room, wait = self.room()
        return 0.0 if room else wait


def quota_named(key: str, share: int | None, whole: int | None) -> str:
    """An hourly quota as a message names it: ``smtp.rate_per_hour (3000; this shard's share
    1500)``. ``share``: the run's part of the hour; ``whole``: the config's figure where that is
    a shard's share (``run --workers``), named first: a summary of 89,053 × ``smtp.rate_per_hour
    (1500)`` under a configured 3000 read as a wrong config, and an odd quota gave two lines, one
    per shard."""
    said = f"{whole}; this shard's share {share}" if whole is not None and whole != share else f"{share}"
    return f"{key}.rate_per_hour ({said})"


def quota_reached(key: str, share: int | None, whole: int | None) -> str:
    """The reply of a claimed message the hourly quota refused in flight (another run took the
    room first, or retries spent it): the next run sends it."""
    return f"not attempted: {quota_named(key, share, whole)} reached; left for the next run"


@dataclass(frozen=True, slots=True)
class HourRoom:
    """What a channel's hourly quota has left (:meth:`RateLimiter.hour_room`): ``room`` sends,
    and ``free_in`` seconds until the hour, once they are sent, has room again; ``quota``: the
    quota as named (:func:`quota_named`), for the detail of the sends deferred past it."""

    room: int
    free_in: float
    quota: str


class RateLimiter:
    """Both limits together, for one event loop. ``None`` switches a limit off."""

    def __init__(
        self,
        per_second: float | None = None,
        per_hour: int | None = None,
        *,
        history: Iterable[float] = (),
        clock: Clock = time.monotonic,
        sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
    ) -> None:
        self.bucket = TokenBucket(per_second, clock=clock) if per_second else None
        self.window = RollingWindow(per_hour, clock=clock, history=history) if per_hour else None
        self.sleep = sleep
        self._turn: asyncio.Lock | None = None  # made on first use, inside the caller's loop

    def hour_room(self, quota: str) -> HourRoom | None:
        """The room the hourly quota (named ``quota``) has left now; None without one."""
        if self.window is None:
            return None
        room, free_in = self.window.room()
        return HourRoom(room, free_in, quota)

    @property
    def limited(self) -> bool:
        return self.bucket is not None or self.window is not None

    async def acquire(self) -> bool:
        """Wait for the per-second pace; ``False`` (at once) when the hourly quota is used up."""
        if self.window is not None and not self.window.try_take():
            return False
        bucket = self.bucket
        if bucket is None:
            return True
        if self._turn is None:
            self._turn = asyncio.Lock()
        if not self._turn.locked() and bucket.take() == 0:
            return True  # in hand, and nobody queued ahead
        async with self._turn:  # FIFO: one waiter sleeps for the next token at a time
            while (delay := bucket.take()) > 0:
                await self.sleep(delay)
        return True
