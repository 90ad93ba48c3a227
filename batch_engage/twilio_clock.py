"""An estimate of Twilio's clock from the Date header of its answers (placeholder until the client branch lands)."""

from __future__ import annotations

import email.utils
import statistics
from collections import deque
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

__all__ = ["TwilioClock"]


class TwilioClock:
    """An estimate of Twilio's clock from the Date header of its answers."""

    def __init__(self, *, wall: Callable[[], datetime] = lambda: datetime.now(UTC), samples: int = 25) -> None:
        self._wall = wall
        self._samples: deque[float] = deque(maxlen=samples)

    def observe(self, date_header: str | None) -> None:
        """One answer's Date header, read when the answer arrived."""
        if not date_header:
            return
        try:
            theirs = email.utils.parsedate_to_datetime(date_header)
        except (TypeError, ValueError):
            return
        if theirs.tzinfo is None:
            theirs = theirs.replace(tzinfo=UTC)
        self._samples.append((theirs - self._wall()).total_seconds() + 0.5)

    @property
    def offset(self) -> float | None:
        """Seconds, Twilio minus ours (median of the last answers); None before any."""
        return statistics.median(self._samples) if self._samples else None

    def now(self) -> datetime:
        """Twilio's estimated now."""
        return self.to_twilio(self._wall())

    def to_twilio(self, ours: datetime) -> datetime:
        """A moment of ours on Twilio's clock."""
        return ours + timedelta(seconds=self.offset or 0.0)
