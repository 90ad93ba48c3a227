"""Twilio's clock, estimated from the ``Date`` header of its answers.

Reconciliation asks Twilio for runs created in a window, and Twilio stamps runs
with its own clock, so the window must be on that clock too: ours may be minutes
off. Every answer carries a ``Date`` header (RFC 7231, one-second granularity);
each is one sample of the offset. The median of the last few samples ignores a
stray proxy or a cached answer, which a mean would not.
"""

from __future__ import annotations

import email.utils
import functools
import math
import statistics
from collections import deque
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

__all__ = ["DEFAULT_SAMPLES", "TwilioClock", "parse_http_date"]

DEFAULT_SAMPLES = 25
# A Date header says "12:00:05" for any moment in [12:00:05, 12:00:06): its middle is the best guess.
_HALF_SECOND = 0.5


def parse_http_date(value: str | None) -> datetime | None:
    """An HTTP ``Date`` header as aware UTC, or None when it is missing or unreadable."""
    if not value:
        return None
    try:
        parsed = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


# A Date header changes once a second while every answer carries one: parse each value once.
_parse_cached = functools.lru_cache(maxsize=16)(parse_http_date)


class TwilioClock:
    """An estimate of Twilio's clock from the Date header of its answers."""

    def __init__(
        self, *, wall: Callable[[], datetime] = lambda: datetime.now(UTC), samples: int = DEFAULT_SAMPLES
    ) -> None:
        if samples < 1:
            raise ValueError(f"samples must be at least 1, not {samples}")
        self._wall = wall
        self._samples: deque[float] = deque(maxlen=samples)

    def observe(self, date_header: str | None) -> None:
        """Take one answer's ``Date`` header, read as the answer arrived; None or garbage is ignored."""
        theirs = _parse_cached(date_header) if date_header else None
        if theirs is None:
            return
        sample = (theirs - self._wall()).total_seconds() + _HALF_SECOND
        if math.isfinite(sample):
            self._samples.append(sample)

    @property
    def offset(self) -> float | None:
        """Seconds, Twilio's clock minus ours: the median of the last samples; None before any."""
        if not self._samples:
            return None
        return statistics.median(self._samples)

    def now(self) -> datetime:
        """Twilio's estimated now (ours while nothing was observed), aware UTC."""
        return self.to_twilio(self._wall())

    def to_twilio(self, ours: datetime) -> datetime:
        """A moment of our clock, as Twilio's clock shows it."""
        offset = self.offset
        moment = ours if ours.tzinfo is not None else ours.replace(tzinfo=UTC)
        if offset is None:
            return moment.astimezone(UTC)
        return (moment + timedelta(seconds=offset)).astimezone(UTC)
