"""The one clock a run reads and waits on: wall time, monotonic time and sleep, injectable as a whole."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Protocol, runtime_checkable

__all__ = [
    "SYSTEM_CLOCK",
    "CallableClock",
    "Clock",
    "SystemClock",
    "clock_from",
    "iso_ms",
    "iso_ms_stamper",
    "pacing_clock",
    "parse_iso",
    "wall_now",
    "wall_seconds",
]


@runtime_checkable
class Clock(Protocol):
    """What everything that reads the time or waits is handed."""

    def now(self) -> datetime:
        """Wall time, aware UTC."""
        ...

    def monotonic(self) -> float:
        """Seconds on a clock that never jumps (for spacing and delays)."""
        ...

    async def sleep(self, seconds: float) -> None:
        """Wait ``seconds``."""
        ...


def wall_now() -> datetime:
    """This machine's wall clock, aware UTC."""
    return datetime.now(UTC)


class SystemClock:
    """The real clock: ``datetime.now``, ``time.monotonic`` and ``asyncio.sleep``."""

    def now(self) -> datetime:
        """Wall time, aware UTC."""
        return datetime.now(UTC)

    # The function itself, not a method calling it: a run reads it several times for every row it sends.
    monotonic = staticmethod(time.monotonic)

    async def sleep(self, seconds: float) -> None:
        """``asyncio.sleep(seconds)``."""
        await asyncio.sleep(seconds)


SYSTEM_CLOCK = SystemClock()
"""The clock of a run nobody gave another one."""


class CallableClock:
    """A clock made of callables (the older way of injecting time); each defaults to the real one.

    A wall callable never serves as the monotonic clock: it may be frozen or step, and spacing must not follow it.
    """

    def __init__(
        self,
        wall: Callable[[], datetime] = wall_now,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._wall = wall
        self._sleep = sleep
        self._monotonic = monotonic

    def now(self) -> datetime:
        """The wall callable's time."""
        return self._wall()

    def monotonic(self) -> float:
        """The monotonic callable's time."""
        return self._monotonic()

    async def sleep(self, seconds: float) -> None:
        """The sleep callable."""
        await self._sleep(seconds)


def clock_from(wall: Callable[[], datetime], sleep: Callable[[float], Awaitable[None]]) -> Clock:
    """One :class:`Clock` from a wall callable and a sleep: ``wall`` itself when it is a whole clock."""
    whole: object = wall  # a FakeClock is both a wall callable and a Clock
    if isinstance(whole, Clock):
        return whole
    if wall is wall_now and sleep is asyncio.sleep:
        return SYSTEM_CLOCK
    return CallableClock(wall, sleep)


def pacing_clock(wall: Callable[[], datetime], sleep: Callable[[float], Awaitable[None]]) -> Clock:
    """The clock the pacer and 429 retries keep: the injected one only when it is a whole :class:`Clock`.

    Callables injected the older way (a wall and a sleep) time windows, backoff of reads and the reconcile
    delay; Twilio's limit is real time, so slots and retries after a 429 stay on the real clock then.
    """
    whole: object = wall
    return whole if isinstance(whole, Clock) else SYSTEM_CLOCK


def iso_ms(moment: datetime) -> str:
    """``2026-11-25T17:10:02.123Z``."""
    if moment.tzinfo is not UTC:
        moment = moment.astimezone(UTC)
    # An aware UTC moment always ends in "+00:00" (written for every outcome a run records).
    return moment.isoformat(timespec="milliseconds")[:-6] + "Z"


def iso_ms_stamper(clock: Clock) -> Callable[[], str]:
    """``iso_ms(clock.now())`` as one call; on the system's clock, each second's text is formatted once.

    A run stamps every outcome it records: the datetime and its ``isoformat`` were a tenth of a row's own work.
    """
    if clock.now != SYSTEM_CLOCK.now:
        return lambda: iso_ms(clock.now())
    second, text = -1, ""
    # A fast run records several outcomes a millisecond: the last one's text serves them all.
    last_ms, last = -1, ""

    def stamp() -> str:
        nonlocal second, text, last_ms, last
        # Whole milliseconds, cut as isoformat(timespec="milliseconds") cuts a datetime's microseconds.
        now_ms = time.time_ns() // 1_000_000
        if now_ms == last_ms:
            return last
        whole, ms = divmod(now_ms, 1000)
        if whole != second:
            second, text = whole, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole))
        last_ms, last = now_ms, f"{text}.{ms:03d}Z"
        return last

    return stamp


def wall_seconds(clock: Clock) -> Callable[[], float]:
    """Seconds since the epoch on ``clock``'s wall: ``time.time`` itself for the system's clock (or one that reads
    its ``now``, as a run's stoppable clock does)."""
    if clock.now == SYSTEM_CLOCK.now:
        return time.time
    return lambda: clock.now().timestamp()


def parse_iso(text: str) -> datetime:
    """The inverse of :func:`iso_ms` (any ISO 8601 with an offset or ``Z``), as aware UTC."""
    parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).astimezone(UTC)
