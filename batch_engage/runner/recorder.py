"""Outcomes, history settlements and per-second counters, buffered and committed in groups.

Outcomes are committed every ``FLUSH_SECONDS``: a
crash loses at most that window, and reconciliation recovers those contacts' runs. A flush
that cannot commit is the run's failure (held by :class:`~.failures.Storage`): the run stops
sending, and the next one reconciles the contacts whose outcomes were lost.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Final

from ..checkpoint import CheckpointStore, Outcome, SecondStats, achieved_rate
from ..errors import StorageFailed
from ..history import HistoryStore
from .failures import Storage

__all__ = ["FLUSH_SECONDS", "Recorder"]

FLUSH_SECONDS = 0.05


# The per-second counters, as the run-events table names them, and where each is in a second's list.
_COUNTERS: Final = ("requests", "ok", "rate_limited", "retries", "lookups")
_INDEX: Final = {name: i for i, name in enumerate(_COUNTERS)}


class Recorder:
    """The run's one writer to the checkpoint (after intents) and to the shared history."""

    def __init__(
        self,
        checkpoint: CheckpointStore,
        history: HistoryStore | None,
        *,
        now: Callable[[], float],
        rate: Callable[[], float],
        storage: Storage,
    ) -> None:
        self._cp = checkpoint
        self._storage = storage
        self.broken = False
        self._history = history
        # Whether there is a shared history to settle claims in (else the owner need not be worked out).
        self.settles = history is not None
        self._now = now
        self._rate = rate
        self._outcomes: list[Outcome] = []
        self._settlements: list[tuple[str, str | None]] = []
        # Each second's counters (in _COUNTERS' order) since the last flush, and the second counted last.
        self._seconds: dict[int, list[int]] = {}
        self._second: int | None = None
        self._counters: list[int] = []
        # Every flushed second of this run, (requests, 2xx): what the summary's achieved rate is computed from.
        self._sent: dict[int, list[int]] = {}
        # One flush at a time: each commit runs in a thread of its own, so two at once could land in either order.
        self._flushing = asyncio.Lock()

    def outcome(self, outcome: Outcome) -> None:
        """Buffer one outcome."""
        self._outcomes.append(outcome)

    def settle(self, owner: str, sid: str | None) -> None:
        """Buffer a history claim's answer (a SID, or None to withdraw it)."""
        if self._history is not None:
            self._settlements.append((owner, sid))

    def count(self, what: str, n: int = 1) -> None:
        """Add to this second's counter ``what`` (requests, ok, rate_limited, retries, lookups)."""
        second = int(self._now())
        counters = self._counters if second == self._second else self._enter(second)
        counters[_INDEX[what]] += n

    # Twice for every row sent: its counter's place known, and the second's list kept at hand until the clock leaves it.
    def count_request(self) -> None:
        """``count("requests")``."""
        second = int(self._now())
        counters = self._counters if second == self._second else self._enter(second)
        counters[0] += 1

    def count_ok(self) -> None:
        """``count("ok")``."""
        second = int(self._now())
        counters = self._counters if second == self._second else self._enter(second)
        counters[1] += 1

    def _enter(self, second: int) -> list[int]:
        """The counters of ``second``, now the one counted."""
        counters = self._seconds.get(second)
        if counters is None:
            counters = self._seconds[second] = [0] * len(_COUNTERS)
        self._second, self._counters = second, counters
        return counters

    def achieved_rate(self) -> float:
        """The pace this run held (``checkpoint.achieved_rate``), as the report page computes it (0 if none sent)."""
        seconds = {s: list(c) for s, c in self._sent.items()}
        for s, c in self._seconds.items():
            sent = seconds.setdefault(s, [0, 0])
            sent[0] += c[0]
            sent[1] += c[1]
        return achieved_rate((seconds[s][0], seconds[s][1]) for s in sorted(seconds)) or 0.0

    def _take_seconds(self) -> dict[int, list[int]]:
        """The seconds counted since the last flush, folded into the run's (requests, 2xx); counting starts anew."""
        seconds, self._seconds, self._second = self._seconds, {}, None
        for s, c in seconds.items():
            sent = self._sent.setdefault(s, [0, 0])
            sent[0] += c[0]
            sent[1] += c[1]
        return seconds

    async def flush(self) -> None:
        """Commit what is buffered (off the event loop), after any flush under way; after a failed one, nothing more.

        On return, every outcome buffered before the call is committed (or the recorder is broken): a new intent
        written after it can never be overwritten by an older outcome of the same contact.
        """
        async with self._flushing:
            if self.broken or (not self._outcomes and not self._settlements and not self._seconds):
                return
            batch, self._outcomes = self._outcomes, []
            settled, self._settlements = self._settlements, []
            seconds = self._take_seconds()
            try:
                await self._storage.commit(
                    "recording outcomes", self._write, batch, settled, seconds, self._rate(), after_failure=True
                )
            except StorageFailed:
                # Their intents are committed: the next run reconciles these contacts.
                self.broken = True

    def _write(
        self, batch: list[Outcome], settled: list[tuple[str, str | None]], seconds: dict[int, list[int]], rate: float
    ) -> None:
        if batch:
            self._cp.write_outcomes(batch)
        if self._history is not None:
            for owner, sid in settled:
                self._history.settle(owner, sid)
        self._cp.write_events(
            SecondStats(second=s, pacer_rate=rate, **dict(zip(_COUNTERS, c, strict=True))) for s, c in seconds.items()
        )

    async def run(self, done: asyncio.Event) -> None:
        """Flush every ``FLUSH_SECONDS`` until ``done``; never cancelled, so no write is cut in half."""
        while not done.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(done.wait(), FLUSH_SECONDS)
            await self.flush()
        await self.flush()
