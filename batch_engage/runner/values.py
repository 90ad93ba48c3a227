"""The run's value objects: the invocation's options, the summary, and the result handed back."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import polars as pl

from ..clock import Clock, clock_from, pacing_clock, wall_now

__all__ = ["RunOptions", "RunResult", "RunSummary"]


@dataclass(frozen=True, kw_only=True)
class RunOptions:
    """Choices for one invocation, as opposed to the job itself.

    ``clock`` and ``sleep`` inject time; ``clock`` may also be a whole :class:`~batch_engage.clock.Clock`
    (such as :class:`batch_engage.testing.FakeClock`), which then also times the sleeps.
    """

    limit: int | None = None
    max_duration: float | None = None
    restart: bool = False
    yes: bool = False
    wait: bool = False
    sandbox: bool = False
    clock: Callable[[], datetime] = field(default=wall_now, compare=False)
    sleep: Callable[[float], Awaitable[None]] = field(default=asyncio.sleep, compare=False)

    def timing(self) -> Clock:
        """The one clock everything in the run reads and waits on."""
        return clock_from(self.clock, self.sleep)

    def pacing(self) -> Clock:
        """The clock of the pacer's slots and of retries after a 429 (see :func:`~batch_engage.clock.pacing_clock`)."""
        return pacing_clock(self.clock, self.sleep)


@dataclass(frozen=True)
class RunSummary:
    """What happened, for people and pipelines."""

    counts: dict[str, int]
    duration: float
    requests: int
    rate_limited: int
    retries: int
    achieved_rate: float
    configured_rate: float
    settled_rate: float
    top_errors: list[dict[str, Any]]
    results_path: str | None
    checkpoint_path: str | None
    aborted: str | None = None
    stopped_early: bool = False
    reconciled: int = 0
    lookups: int = 0
    reached_earlier: int = 0
    parameters_changed: int = 0
    left_out: int = 0
    """Contacts this job reached that no row of this list names: their runs are in the checkpoint, not the table."""
    clock_offset: float | None = None
    stopped_because: str | None = None
    checkpoint_repaired: str | None = None
    capacity: dict[str, Any] | None = None  # the preflight's projection (None: no preflight ran)

    def as_dict(self) -> dict[str, Any]:
        """The summary as plain JSON-ready data."""
        return {
            "counts": self.counts,
            "duration_seconds": round(self.duration, 3),
            "requests": self.requests,
            "rate_limited": self.rate_limited,
            "retries": self.retries,
            "achieved_rate": round(self.achieved_rate, 3),
            "configured_rate": self.configured_rate,
            "settled_rate": round(self.settled_rate, 3),
            "top_errors": self.top_errors,
            "results": self.results_path,
            "checkpoint": self.checkpoint_path,
            "aborted": self.aborted,
            "stopped_early": self.stopped_early,
            "reconciled": self.reconciled,
            "reconciliation_lookups": self.lookups,
            "reached_by_earlier_runs": self.reached_earlier,
            "reached_earlier_parameters_changed": self.parameters_changed,
            "reached_not_in_list": self.left_out,
            "clock_offset_seconds": None if self.clock_offset is None else round(self.clock_offset, 3),
            "stopped_because": self.stopped_because,
            "checkpoint_repaired": self.checkpoint_repaired,
            **({"capacity": self.capacity} if self.capacity is not None else {}),
        }


@dataclass(frozen=True)
class RunResult:
    """The results table, its counts, and the exit code the CLI would give."""

    results: pl.DataFrame
    counts: dict[str, int]
    exit_code: int
    summary: RunSummary
