"""Pure decisions about answers: how long to wait before trying again, whether a v1 answer is a hand-back,
and whether so many rows failed that the run should stop.

Nothing here does I/O or reads a clock: the caller passes the facts.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Collection
from datetime import datetime, timedelta

import tenacity

from ..errors import RateLimited, StudioError
from .classify import Created

__all__ = [
    "AT_RETENTION",
    "HANDBACK_MARGIN",
    "PAST_RETENTION",
    "RETENTION",
    "RETENTION_MARGIN",
    "Breaker",
    "backoff",
    "is_handback",
    "past_retention",
]

RETENTION = timedelta(days=30)
"""Studio keeps a run (and its Context) 30 days after it starts, on Twilio's clock; then every read answers 404."""
PAST_RETENTION = "past Twilio's 30-day retention"
"""The reason a possibly-sent contact older than that stays uncertain: nothing can prove it either way."""
RETENTION_MARGIN = timedelta(days=1)
"""How near the retention a run not found may have been deleted while it was looked for: Twilio does not say at
what hour a 30-day-old run goes, and a list of a month of runs can take minutes of paging and 429s."""
AT_RETENTION = f"{PAST_RETENTION}, or within a day of it: not found, and its run may have gone while it was looked for"
"""The reason a possibly-sent contact not found that near the retention stays uncertain, never sent again."""


def past_retention(started: datetime, twilio_now: datetime) -> bool:
    """Whether a run that started (or may have) at ``started`` is beyond Studio's retention at ``twilio_now``."""
    return twilio_now - started >= RETENTION


# Twilio's date_created has whole seconds and our estimate of its clock is good to about a
# second, so a run created up to this long before our request was sent still counts as new.
HANDBACK_MARGIN = timedelta(seconds=2.5)

_WAIT = tenacity.wait_random_exponential(multiplier=0.5, max=30)


def backoff(exc: StudioError, attempt: int) -> float:
    """Seconds to wait before attempt ``attempt + 1``: the server's Retry-After, else a jittered exponential."""
    if isinstance(exc, RateLimited) and exc.retry_after is not None:
        return exc.retry_after
    state = tenacity.RetryCallState(retry_object=tenacity.AsyncRetrying(), fn=None, args=(), kwargs={})
    state.attempt_number = max(1, attempt)
    return float(_WAIT(state))


def is_handback(created: Created, sent_at_twilio: datetime, other_contacts_sids: Collection[str]) -> bool:
    """Studio v1 answers 200 with the contact's *existing* active run instead of a new one: tell which this is.

    A hand-back when the SID already belongs to another of this job's contacts, or when the
    run was created (Twilio's clock) clearly before this request left (Twilio's clock too).
    """
    if created.sid in other_contacts_sids:
        return True
    return created.date_created is not None and created.date_created < sent_at_twilio - HANDBACK_MARGIN


class Breaker:
    """The failure breaker: trips when more than ``ratio`` of the last ``window`` final rows failed."""

    def __init__(self, window: int, ratio: float) -> None:
        self.window = window
        self.ratio = ratio
        self._rows = 0
        # The numbers of the failed rows among the last ``window``: a row that did not fail (nearly all) costs a count.
        self._failures: deque[int] = deque()

    def add(self, failed: bool) -> bool:
        """Count one final row; True when the breaker is (now) tripped."""
        self._rows += 1
        failures = self._failures
        if failed:
            failures.append(self._rows)
        if not failures:
            return False
        while failures[0] <= self._rows - self.window:
            failures.popleft()
            if not failures:
                return False
        return self._rows >= self.window and len(failures) > self.ratio * self.window
