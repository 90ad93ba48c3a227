"""An error answer's meaning for the run: final, possibly sent, or retried after a backoff."""

from __future__ import annotations

from functools import partial

import structlog

from ..errors import AlreadyActive, Fatal, PossiblySent, RateLimited, Rejected, RetrySafe, StudioError
from ..job import Spec
from ..plan import mask
from ..states import RowState
from ..twilio import Pacer, backoff
from .intake import Intake
from .item import Item
from .outcomes import Outcomes

__all__ = ["Answers"]

log = structlog.get_logger(__name__)

RATE_LIMITED_MIN_SPEND = 1.0
"""Seconds of a row's ``max_backoff`` a 429 spends at least, whatever its Retry-After says."""


class Answers(Outcomes):
    """The answer half of the dispatcher: latency watched, errors sorted into outcomes and retries."""

    spec: Spec
    pacer: Pacer
    uncertain: list[Item]
    last_ambiguous: float
    _queue: Intake
    _warned_concurrency: bool

    def _observe_latency(self, seconds: float) -> None:
        latency = self.stats.observe_latency(seconds)
        if not self._warned_concurrency and self.stats.created >= 20:
            needed = self.spec.send.rate * latency
            if needed > self.spec.send.concurrency:
                self._warned_concurrency = True
                log.warning(
                    "pacing.concurrency_too_low",
                    rate=self.spec.send.rate,
                    latency_ms=round(latency * 1000),
                    concurrency=self.spec.send.concurrency,
                    needed=int(needed) + 1,
                    max_rate=round(self.spec.send.concurrency / latency, 1),
                )

    def _on_error(self, item: Item, exc: StudioError, sent_at: float) -> None:
        if isinstance(exc, Fatal):
            if self.aborted is None:
                self.aborted = exc
                log.error("run.aborted", reason=exc.message, http_status=exc.http_status, code=exc.code)
            self.put_back(item)
        elif isinstance(exc, AlreadyActive):
            self.pacer.admitted(sent_at)
            if self.active is not None:
                self.set_aside(item, exc.conflicting_sid)
            else:
                self.record(item, RowState.ALREADY_ACTIVE, error=exc, sid=exc.conflicting_sid)
        elif isinstance(exc, Rejected):
            self.pacer.admitted(sent_at)
            self.record(item, RowState.FAILED, error=exc)
        elif isinstance(exc, PossiblySent):
            self.last_ambiguous = self.clock.monotonic()
            self.uncertain.append(item)
            self.record(item, RowState.UNCERTAIN, error=exc)
            log.warning("row.uncertain", row=item.row, to=mask(item.to), reason=exc.message)
        else:
            assert isinstance(exc, RetrySafe)
            if isinstance(exc, RateLimited):
                self.stats.rate_limited += 1
                self.recorder.count("rate_limited")
                self.pacer.rate_limited(sent_at)
                # Twilio never processed it: the pace was too fast, not the row wrong. Only max_backoff bounds
                # such retries, so a run paced far above its account's limit loses no row while it finds it.
                item.waits += 1
            delay = self._retry_delay(item, exc)
            if delay is None:
                self.record(item, RowState.FAILED, error=exc)
            else:
                if self._debug:
                    log.debug("row.retry", row=item.row, delay=round(delay, 3), reason=type(exc).__name__)
                self.stats.retries += 1
                self.recorder.count("retries")
                self._queue.retry_later(item, delay)

    def set_aside(self, item: Item, sid: str | None) -> None:
        """``on_active`` wait or end: the contact stays outstanding until its earlier run is over (``active.py``)."""
        assert self.active is not None
        self._queue.hold(item, partial(self.active.blocked, item, sid))

    def _retry_delay(self, item: Item, exc: RetrySafe) -> float | None:
        if item.tries >= self.spec.send.max_attempts:
            return None
        delay = backoff(exc, item.attempts)
        # A 429 does not count against max_attempts, so it spends at least a second of max_backoff: a server
        # that answers 429 with "Retry-After: 0" forever still ends the row instead of holding the run.
        spent = max(delay, RATE_LIMITED_MIN_SPEND) if isinstance(exc, RateLimited) else delay
        if item.backoff + spent > self.spec.send.max_backoff:
            return None
        item.backoff += spent
        return delay
