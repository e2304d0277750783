"""Rate limits for sending: a token bucket per second and a rolling window per hour.

Owns pacing only: how long a sender must wait before its next message, and whether the hourly
quota has room. It must not send, retry or decide outcomes (the SMTP channel does). Both limits
work on a monotonic clock; the clock and the sleep are injectable so tests need not wait.

- :class:`TokenBucket` paces a steady rate with a small burst (at most ``rate / 20`` tokens, at
  least one): over any window of T seconds at most ``burst + rate * T`` messages go out, so a
  configured 50/s is held within a few percent over a couple of seconds. Callers *reserve* a
  token and sleep until it is due, so concurrent senders need no lock on one event loop.
- :class:`RollingWindow` enforces "at most N in any hour", which is what relays' hourly quotas
  mean (a token bucket would let up to 2N through in an hour that starts with a full bucket).
  It is seeded with the sends of earlier runs, so a cron job every ten minutes shares one quota.
  It never waits: when the hour is full the caller leaves the message for a later run.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterable

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

    def reserve(self) -> float:
        """Take one token; return how many seconds to wait before using it (0 when in hand).

        Tokens may go negative: each reservation queues behind the earlier ones.
        """
        now = self.clock()
        self.tokens = min(self.capacity, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        self.tokens -= 1.0
        return 0.0 if self.tokens >= 0 else -self.tokens / self.rate


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

    def free_in(self) -> float:
        """Seconds until the window has room again (0 when it has room now)."""
        now = self.clock()
        self._prune(now)
        if len(self.events) < self.limit:
            return 0.0
        return self.events[len(self.events) - self.limit] + self.period - now


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

    @property
    def limited(self) -> bool:
        return self.bucket is not None or self.window is not None

    async def acquire(self) -> bool:
        """Wait for the per-second pace; ``False`` (at once) when the hourly quota is used up."""
        if self.window is not None and not self.window.try_take():
            return False
        if self.bucket is not None:
            delay = self.bucket.reserve()
            if delay > 0:
                await self.sleep(delay)
        return True
