"""The shared pacer: evenly spaced send slots at a rate that adapts to Twilio's 429s.

Slots are handed out ``1/rate`` apart on the monotonic clock. A slot nobody took
is not saved up beyond ``burst`` slots, so an idle pause never turns into a
burst bigger than a fraction of a second's worth.

A run configured above Twilio's default of 20/s starts at 20/s (or an eighth of its
rate, if that is more) and grows by half every
second up to its rate (slow start); the first 429 during slow start halves the rate,
since the server's own bucket hides an overshoot until it has grown large.

Adaptation (AIMD, with two refinements so it settles near the real limit instead
of saw-toothing around three quarters of it):

* a 429 cuts the rate by ``decrease`` only if the refused request was sent after
  the previous cut and at least ``cooldown`` after it, so one overload costs one
  cut per round trip, not one per refused request;
* the cut never goes below ``0.95 x`` what the server admitted since it started
  pushing back (over at most the last ``window`` seconds). Once a server answers
  429 its bucket is empty, so from then on it admits exactly its real limit: the
  measurement is not inflated by the burst it allowed before.
* the rate then grows back by ``increase`` requests/s every second, never above
  the configured ``rate``.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from ..clock import SYSTEM_CLOCK, CallableClock, Clock

__all__ = ["Pacer", "PacerStats"]

_SLOW_START_CAP = 60.0


@dataclass(frozen=True)
class PacerStats:
    """What the pacer did: the rate it ended at, the lowest it went, and how often it was cut."""

    configured: float
    current: float
    lowest: float
    cuts: int


class Pacer:
    """A token bucket shared by every worker of one run."""

    def __init__(
        self,
        rate: float,
        *,
        burst: float = 1.0,
        decrease: float = 0.85,
        increase: float | None = None,
        window: float = 3.0,
        cooldown: float = 0.1,
        floor: float = 0.5,
        start: float | None = None,
        clock: Clock | Callable[[], float] = SYSTEM_CLOCK,
    ) -> None:
        if not isinstance(clock, Clock):
            clock = CallableClock(monotonic=clock)
        self.clock: Clock = clock
        self.configured = rate
        self.rate = min(rate, start if start is not None else max(20.0, rate / 8))
        self._slow_start = self.rate < rate
        self._burst = max(1.0, burst)
        self._decrease = decrease
        self._increase = increase if increase is not None else max(0.2, rate * 0.01)
        self._window = window
        self._cooldown = cooldown
        self._episode_start: float | None = None
        self._last_429 = float("-inf")
        self._floor = min(floor, rate)
        self._clock = clock.monotonic
        self._sleep = clock.sleep
        self._next = clock.monotonic()
        self._last_cut = float("-inf")
        # Growth (and slow start) is timed from the first request, not from set-up.
        self._last_grow: float | None = None
        self._admitted: deque[float] = deque()
        self._lock = asyncio.Lock()
        self.cuts = 0
        self.lowest = rate

    def _grow(self, now: float) -> None:
        if self._last_grow is None:
            self._last_grow = now
            return
        elapsed = now - self._last_grow
        self._last_grow = now
        if self.rate >= self.configured:
            return
        if self._slow_start:
            # Capped: after a long idle wait (a send window) 1.5**elapsed would overflow a float.
            self.rate = min(self.configured, self.rate * 1.5 ** min(elapsed, _SLOW_START_CAP))
            self._slow_start = self.rate < self.configured
        else:
            self.rate = min(self.configured, self.rate + self._increase * elapsed)

    def reserve(self) -> float:
        """Take the next slot; return the monotonic time at which it may be used."""
        now = self._clock()
        self._grow(now)
        interval = 1.0 / self.rate
        slot = max(self._next, now - (self._burst - 1) * interval)
        self._next = slot + interval
        return slot

    async def acquire(self) -> float:
        """Wait for a slot; return the monotonic time the request leaves (for ``rate_limited``)."""
        async with self._lock:
            slot = self.reserve()
        delay = slot - self._clock()
        if delay > 0:
            await self._sleep(delay)
        return self._clock()

    def admitted(self) -> None:
        """Record one request the server accepted (used to estimate the real limit)."""
        now = self._clock()
        self._admitted.append(now)
        while self._admitted and self._admitted[0] < now - self._window:
            self._admitted.popleft()

    def measured_rate(self) -> float | None:
        """Requests/s the server admitted since it started pushing back (None until that is known)."""
        if self._episode_start is None:
            return None
        now = self._clock()
        start = max(now - self._window, self._episode_start)
        span = now - start
        if span < 0.3:
            return None
        return sum(1 for t in self._admitted if t >= start) / span

    def rate_limited(self, sent_at: float) -> bool:
        """React to a 429 for a request sent at ``sent_at``; return True if the rate was cut."""
        now = self._clock()
        self._grow(now)
        # Still in slow start: the server's bucket hid the overshoot, which is now large.
        decrease = 0.5 if self._slow_start else self._decrease
        self._slow_start = False
        if self._episode_start is None or now - self._last_429 > self._window:
            self._episode_start = now
        self._last_429 = now
        if sent_at <= self._last_cut or now - self._last_cut < self._cooldown:
            return False
        target = self.rate * decrease
        measured = self.measured_rate()
        if measured is not None and measured > 0:
            # Never cut below what the server demonstrably admits; the window follows it down.
            target = max(target, measured * 0.95)
        self.rate = max(self._floor, min(self.rate, target))
        self.lowest = min(self.lowest, self.rate)
        self._last_cut = now
        self.cuts += 1
        # Slots already handed out at the old rate are pushed back to the new spacing.
        self._next = max(self._next, now + 1.0 / self.rate)
        return True

    def cap(self, rate: float) -> None:
        """Never go faster than ``rate`` from now on (a slow sender's pace, learnt in the preflight)."""
        if rate >= self.configured:
            return
        self.configured = rate
        self.rate = min(self.rate, rate)
        self._slow_start = self.rate < rate
        self._floor = min(self._floor, rate)
        self._increase = min(self._increase, max(0.2, rate * 0.01))
        self.lowest = min(self.lowest, self.rate)

    def stats(self) -> PacerStats:
        """A snapshot for the summary."""
        return PacerStats(configured=self.configured, current=self.rate, lowest=self.lowest, cuts=self.cuts)
