"""The shared pacer: evenly spaced send slots at a rate that adapts to Twilio's 429s.

Slots are handed out ``1/rate`` apart on the monotonic clock. A slot nobody took
is not saved up beyond ``burst`` slots, so an idle pause never turns into a
burst bigger than a fraction of a second's worth.

A run configured above Twilio's default of 20/s starts at 20/s (or an eighth of its
rate, if that is more) and grows by half every round trip, as TCP's slow start does:
once an answer comes back to the first request given its slot after the last growth
(so sent at the grown rate); a read's answer counts too. It grows by half every second
at least, up to its rate.
A fast server is so reached in a few of its round trips instead of seconds, while the
first 429 during slow start still halves the rate, since the server's own bucket hides
an overshoot until it has grown large.

Adaptation (AIMD, with two refinements so it settles near the real limit instead
of saw-toothing around three quarters of it):

* a 429 cuts the rate by ``decrease`` only if the refused request was sent after
  the previous cut and at least ``cooldown`` after it, so one overload costs one
  cut per round trip, not one per refused request;
* the cut never goes below ``0.95 x`` what the server admitted since it started
  pushing back (over at most the last ``window`` seconds), and goes straight down
  to it when the rate is still above it (a ramp may overshoot many times over). Once a server answers
  429 its bucket is empty, so from then on it admits exactly its real limit: the
  measurement is not inflated by the burst it allowed before. Admitted requests are
  counted by when they were sent, up to a round trip ago: a 429 comes back at once
  while a 2xx takes its time, and the 2xx still arriving for the burst must not count.
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
        # Until then a 429 halves the rate: the whole of slow start, and a window after it reached ``rate``.
        self._halving_until = float("inf") if self._slow_start else float("-inf")
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
        # Slow start's round: an answer to a request sent from this moment on ends it (None: no request yet).
        self._round: float | None = None
        self._admitted: deque[float] = deque()
        self._latency = 0.0  # a moving average of the admitted answers' round trip
        self._lock = asyncio.Lock()
        self.cuts = 0
        self.lowest = rate

    def _grow(self, now: float) -> None:
        if self._last_grow is None:
            self._last_grow = self._round = now
            return
        elapsed = now - self._last_grow
        self._last_grow = now
        if self.rate >= self.configured:
            return
        if self._slow_start:
            # Capped: after a long idle wait (a send window) 1.5**elapsed would overflow a float.
            self._slow_grow(1.5 ** min(elapsed, _SLOW_START_CAP), now)
        else:
            self.rate = min(self.configured, self.rate + self._increase * elapsed)

    def _slow_grow(self, factor: float, now: float) -> None:
        self.rate = min(self.configured, self.rate * factor)
        if self.rate >= self.configured:
            self._slow_start = False
            # A bucket of about a second's worth can hide the overshoot of the last growth for a while yet.
            self._halving_until = now + self._window

    def reserve(self) -> float:
        """Take the next slot; return the monotonic time at which it may be used."""
        return self._reserve(self._clock())

    def take_now(self) -> float | None:
        """Take a slot that needs no wait and return its time (now); None when one must be waited for (acquire)."""
        # A fast server's common case, without a coroutine: nobody waits in line and the next slot is due.
        if self._lock.locked():
            return None
        now = self._clock()
        if self._next > now:
            return None
        self._reserve(now)
        return now

    def _reserve(self, now: float) -> float:
        if self.rate < self.configured or self._last_grow is None:
            self._grow(now)
        else:
            # At its rate (nearly every slot of a long run) growing is only keeping the time.
            self._last_grow = now
        interval = 1.0 / self.rate
        slot = max(self._next, now - (self._burst - 1) * interval)
        self._next = slot + interval
        return slot

    async def acquire(self) -> float:
        """Wait for a slot; return the monotonic time the request leaves (for ``rate_limited``)."""
        # One waiter at a time takes its slot, when it is next in line: a slot is spaced at the rate of that
        # moment, so a cut slows every worker still waiting at once, not after a train of slots at the old rate.
        if self._lock.locked():
            async with self._lock:
                delay = self.reserve() - self._clock()
                if delay > 0:
                    await self._sleep(delay)
            return self._clock()
        # Nobody waits: the slot is taken at once (a fast server's case: no wait at all), the line only to sleep.
        slot = self.reserve()
        now = self._clock()
        if slot > now:
            async with self._lock:
                delay = slot - self._clock()
                if delay > 0:
                    await self._sleep(delay)
            now = self._clock()
        return now

    def admitted(self, sent_at: float | None = None) -> None:
        """Record one request the server accepted, sent at ``sent_at`` (None: now), for the estimate of the real
        limit; an answer to a request sent after slow start's round began ends that round."""
        now = self._clock()
        left = now if sent_at is None else sent_at
        self._latency = 0.9 * self._latency + 0.1 * (now - left)
        # Counted by when it was sent: what the server admits per second of sending, whatever the answers' delay.
        self._admitted.append(left)
        while self._admitted and self._admitted[0] < now - self._window - self._latency:
            self._admitted.popleft()
        # Only slow start cares: at its rate (nearly every answer of a long run), not even a call.
        if sent_at is not None and self._slow_start:
            self.answered(sent_at)

    def answered(self, sent_at: float) -> None:
        """An answer other than a 429 to a request sent at ``sent_at``: it ends slow start's round if it left after
        the round began (a read's too: the run's reads and creates share one pace)."""
        if self._slow_start and self._round is not None and sent_at >= self._round:
            # A round trip at the last rate passed without a 429: grow, and let the next round begin with the
            # first slot not handed out yet (those handed out before were spaced at the old rate, untested).
            now = self._clock()
            self._round = max(now, self._next)
            self._slow_grow(1.5, now)

    def measured_rate(self) -> float | None:
        """Requests/s the server admitted since it started pushing back (None until that is known)."""
        if self._episode_start is None:
            return None
        # Requests sent in the last round trip are not all answered yet: the span ends before them.
        until = self._clock() - self._latency
        start = max(until - self._window, self._episode_start)
        span = until - start
        if span < 0.3:
            return None
        return sum(1 for t in self._admitted if start <= t <= until) / span

    def rate_limited(self, sent_at: float) -> bool:
        """React to a 429 for a request sent at ``sent_at``; return True if the rate was cut."""
        now = self._clock()
        self._grow(now)
        # In (or just after) slow start: the server's bucket hid the overshoot, which is now large.
        decrease = 0.5 if now < self._halving_until else self._decrease
        self._slow_start = False
        self._halving_until = float("-inf")
        if self._episode_start is None or now - self._last_429 > self._window:
            self._episode_start = now
        self._last_429 = now
        if sent_at <= self._last_cut or now - self._last_cut < self._cooldown:
            return False
        target = self.rate * decrease
        measured = self.measured_rate()
        if measured is not None and measured > 0:
            # Never below what the server admits, nor above it once it pushes back: a ramp grown per round trip
            # may overshoot a limit many times over before the first 429 comes back, and cutting that by a
            # fraction a round trip would cost a second of 429s (200/s against 20/s: 48 of 243, now 33).
            target = max(min(target, measured), measured * 0.95)
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
        if self._slow_start and self.rate >= rate:
            self._slow_grow(1.0, self._clock())
        self._floor = min(self._floor, rate)
        self._increase = min(self._increase, max(0.2, rate * 0.01))
        self.lowest = min(self.lowest, self.rate)

    def stats(self) -> PacerStats:
        """A snapshot for the summary."""
        return PacerStats(configured=self.configured, current=self.rate, lowest=self.lowest, cuts=self.cuts)
