"""What a caller holds of a running job: the stop button, progress snapshots, and the counters of the summary."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime

import structlog

from .clock import Clock, SystemClock
from .errors import Stopped

__all__ = ["Progress", "RunControl", "Stats", "StoppableClock"]

log = structlog.get_logger(__name__)

# asyncio's own sleep, as imported: a stand-in put in its place (a test's) is awaited as given, never bypassed.
_REAL_SLEEP = asyncio.sleep


@dataclass(frozen=True)
class Progress:
    """A snapshot for progress displays."""

    done: int
    total: int
    sent: int
    failed: int
    retried: int
    rate: float


class RunControl:
    """Lets the caller stop a run: the first request drains in-flight answers, the second stops at once."""

    def __init__(self) -> None:
        self.stopping = False
        self.hard = False
        self._hard_event: asyncio.Event | None = None
        self._stop_event: asyncio.Event | None = None
        self._napping: set[asyncio.Future[None]] = set()

    def request_stop(self) -> None:
        """Ask the run to stop; a second call stops it at once (in-flight rows stay uncertain)."""
        if self.stopping:
            self.hard = True
            if self._hard_event is not None:
                self._hard_event.set()
        log.warning("run.stopping", at_once=self.hard)
        self.stopping = True
        if self._stop_event is not None:
            self._stop_event.set()
        for waiter in list(self._napping):
            _wake(waiter)

    async def wait_stop(self, seconds: float, sleep: Callable[[float], Awaitable[None]]) -> None:
        """Sleep ``seconds`` (with ``sleep``), or less if a stop is requested meanwhile."""
        self._stop_event = self._stop_event or asyncio.Event()
        if self.stopping:
            return
        if sleep is _REAL_SLEEP:
            await self._nap(seconds)
            return
        napping = asyncio.ensure_future(sleep(seconds))
        stop = asyncio.ensure_future(self._stop_event.wait())
        await asyncio.wait({napping, stop}, return_when=asyncio.FIRST_COMPLETED)
        for task in (napping, stop):
            task.cancel()
        await asyncio.gather(napping, stop, return_exceptions=True)

    async def _nap(self, seconds: float) -> None:
        """The real clock's sleep, ended early by a stop: one timer and one future (a pacer slot waits here)."""
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[None] = loop.create_future()
        timer = loop.call_later(seconds, _wake, waiter)
        self._napping.add(waiter)
        try:
            await waiter
        finally:
            timer.cancel()
            self._napping.discard(waiter)

    def bind(self) -> asyncio.Event:
        """The event set by a hard stop (made inside the running loop)."""
        self._hard_event = asyncio.Event()
        if self.hard:
            self._hard_event.set()
        return self._hard_event


def _wake(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


class StoppableClock:
    """``inner`` whose every sleep ends at a stop, raising :class:`~batch_engage.errors.Stopped`.

    The run's waits (pacer slots, backoff, windows, the reconcile delay) all sleep on it, so a
    stop ends each within the loop's next turn, however long it was meant to be.
    """

    # The inner clock's own, not methods calling them: the pacer reads the time several times for every row.
    now: Callable[[], datetime]
    monotonic: Callable[[], float]

    def __init__(self, inner: Clock, control: RunControl) -> None:
        self.inner = inner
        self._control = control
        self.now = inner.now
        self.monotonic = inner.monotonic

    async def sleep(self, seconds: float) -> None:
        """Sleep on the inner clock; raise ``Stopped`` if a stop came first (or comes meanwhile)."""
        if not self._control.stopping:
            # The real clock's sleep is asyncio.sleep itself, which wait_stop can wait on without tasks.
            real = isinstance(self.inner, SystemClock)
            await self._control.wait_stop(seconds, asyncio.sleep if real else self.inner.sleep)
        if self._control.stopping:
            raise Stopped("a stop was asked for")


@dataclass
class Stats:
    """Counters for the summary."""

    requests: int = 0
    created: int = 0
    # The achieved rate: creates over the time from the first request to the last answer (run's monotonic clock).
    first_send: float | None = None
    last_answer: float | None = None
    latency_ewma: float | None = None
    # What it took.
    rate_limited: int = 0
    retries: int = 0
    reconciled: int = 0
    lookups: int = 0
    errors: Counter[tuple[int | None, str]] = field(default_factory=Counter)

    def observe_latency(self, seconds: float) -> float:
        """Fold one answer's latency into the moving average; return the average."""
        ewma = self.latency_ewma
        self.latency_ewma = seconds if ewma is None else 0.9 * ewma + 0.1 * seconds
        return self.latency_ewma
