"""An error answer's meaning for the run: final, possibly sent, or retried after a backoff."""

from __future__ import annotations

from functools import partial

import structlog

from ..errors import AlreadyActive, Fatal, PossiblySent, RateLimited, Rejected, RetrySafe, Stopped, StudioError
from ..job import Spec
from ..plan import mask
from ..states import RowState
from ..twilio import PacedReads, Pacer, StudioClient, backoff
from .intake import Intake
from .item import Item
from .outcomes import Outcomes
from .reconcile import marker_of

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
    later: str | None
    listed_twice: frozenset[str]
    reads: PacedReads | None
    markers: dict[str, object]
    _queue: Intake
    _warned_concurrency: bool
    _marker_key: str
    _v1: bool

    def client_for(self, flow: str | None) -> StudioClient:  # pragma: no cover - the dispatcher's
        raise NotImplementedError

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
            self.last_ambiguous = item.left = self.clock.monotonic()
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
            else:
                item.unconnected += 1
            delay = self._retry_delay(item, exc)
            if delay is None:
                self._leave_for_later(item, exc)
            else:
                if self._debug:
                    log.debug("row.retry", row=item.row, delay=round(delay, 3), reason=type(exc).__name__)
                self.stats.retries += 1
                self.recorder.count("retries")
                self._queue.retry_later(item, delay)

    def _leave_for_later(self, item: Item, exc: RetrySafe) -> None:
        """Never processed, and its retries spent: pending for a later run, never ``failed`` (which no run retries);
        the run then ends 75 saying why."""
        log.warning("row.not_sent_now", row=item.row, to=mask(item.to), reason=exc.message)
        self.later = self.later or f"Twilio took no request for some rows within their retries ({exc.message})"
        self.put_back(item, taken_only=True)

    # -- a run Studio names for the contact: whose it is -----------------------------------

    def _may_be_own(self, item: Item) -> bool:
        """Whether a run Studio names for ``item`` may be its own: an earlier request of it may have made one (a
        lost answer that reconciliation did not find), or (v1) another row for the same person may have."""
        if not self._marker_key or item.marker is None:
            return False
        return item.tries > 1 or (self._v1 and item.to in self.listed_twice)

    async def _carries_marker(self, item: Item, sid: str) -> bool | None:
        """Whether run ``sid`` carries ``item``'s marker (read paced and retried); None when it cannot be read."""
        # A run's Parameters never change: read once, whichever row (or later try) meets it again.
        if sid not in self.markers:
            fetch = partial(self.client_for(item.flow).fetch_context, sid)
            try:
                context = await (self.reads.call("context", fetch) if self.reads is not None else fetch())
            except StudioError as exc:
                log.warning("row.run_unread", row=item.row, to=mask(item.to), sid=sid, reason=exc.message)
                return None
            except Stopped:
                # The run stops while the read waits for its slot: undecided, and the worker goes on to hand the
                # rest of its queue back as never sent.
                return None
            self.markers[sid] = marker_of(context, self._marker_key)
        return self.markers[sid] == item.marker

    def _undecided(self, item: Item, sid: str) -> None:
        """Whose run ``sid`` is could not be read: possibly sent, for reconciliation to decide by its marker."""
        self.last_ambiguous = item.left = self.clock.monotonic()
        self.uncertain.append(item)
        self.record(item, RowState.UNCERTAIN, message=f"possibly sent: whose run {sid} is could not be read")

    async def _own_run_named(self, item: Item, sid: str | None, sent_at: float) -> bool:
        """A 409 named ``sid``: True when it is the run an earlier request of this row made (recorded sent) or
        cannot be told (recorded possibly sent); False: another's, for the usual answer."""
        if sid is None or not self._may_be_own(item):
            return False
        mine = await self._carries_marker(item, sid)
        if mine is False:
            return False
        self.pacer.admitted(sent_at)
        if mine is None:
            self._undecided(item, sid)
        else:
            self.record(item, RowState.SENT, sid=sid)
        return True

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
