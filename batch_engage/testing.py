"""Helpers for testing code that runs jobs: a clock whose sleeps pass at once."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

__all__ = ["FakeClock"]


class FakeClock:
    """Virtual time: ``sleep`` moves it forward at once, so backoff, windows and reconcile delays take no real time.

    Pass it as ``RunOptions(clock=fake)``. It starts at ``start`` (default: the real now); ``fake()`` is its
    wall time, and ``slept`` adds up every wait asked of it. Give the sandbox the same clock
    (``SandboxConfig(wall=fake)``): v1's hand-back check compares our send time with Twilio's
    ``date_created``, and a virtual clock that jumps ahead of a real Twilio's makes a new run look handed back.
    """

    def __init__(self, start: datetime | None = None) -> None:
        self.start = start or datetime.now(UTC)
        self.elapsed = 0.0
        self.slept = 0.0

    def __call__(self) -> datetime:
        """Wall time (so the clock also fits where a ``Callable[[], datetime]`` is asked for)."""
        return self.now()

    def now(self) -> datetime:
        """Wall time: the start plus the virtual seconds that have passed."""
        return self.start + timedelta(seconds=self.elapsed)

    def monotonic(self) -> float:
        """Virtual seconds since the start."""
        return self.elapsed

    def advance(self, seconds: float) -> None:
        """Move time forward without anyone waiting (say, a slow answer)."""
        self.elapsed += seconds

    def set(self, moment: datetime) -> None:
        """Jump the wall time to ``moment`` (never backwards)."""
        self.elapsed = max(self.elapsed, (moment - self.start).total_seconds())

    async def sleep(self, seconds: float) -> None:
        """Wake at once, ``seconds`` of virtual time later; sleeps that overlap end together, not one after another."""
        wake = self.elapsed + max(0.0, seconds)
        self.slept += max(0.0, seconds)
        await asyncio.sleep(0)
        self.elapsed = max(self.elapsed, wake)
