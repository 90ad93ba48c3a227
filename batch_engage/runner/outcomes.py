"""What each answer leaves behind: a contact's outcome buffered, counted, logged, and the breaker fed."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

import structlog

from ..checkpoint import Outcome
from ..clock import Clock
from ..control import Progress, Stats
from ..errors import Fatal, StudioError
from ..history import owner as history_owner
from ..job import Spec
from ..plan import mask
from ..states import FINAL, RowState
from ..twilio import Breaker, Created
from .active import ActiveRuns
from .item import Item
from .recorder import Recorder

__all__ = ["Outcomes"]

log = structlog.get_logger(__name__)

# States whose outcome answers the contact's history claim (a SID for the reached, None to withdraw it).
_SETTLES = frozenset(
    {RowState.SENT, RowState.ALREADY_ACTIVE, RowState.FAILED, RowState.PENDING, RowState.WAITING_ACTIVE}
)


class Outcomes:
    """The outcome half of the dispatcher: what it knows of every contact that got an answer (or none)."""

    spec: Spec
    recorder: Recorder
    clock: Clock
    on_progress: Callable[[Progress], None] | None
    total: int
    done: int
    sent_before: int
    failed_before: int
    sids: set[str]
    stats: Stats
    counts: Counter[str]
    aborted: StudioError | None
    active: ActiveRuns | None
    _breaker: Breaker
    _identity: str  # the job as the shared history knows it (job.history_identity), worked out once
    _debug: bool  # whether debug events are kept: a row's debug line is not even built otherwise
    _v1: bool  # only v1 hands a run back, told by the SIDs this job's contacts already have (``sids``)
    _stamp: Callable[[], str]  # iso_ms of the clock's now (clock.iso_ms_stamper)

    def owner(self, item: Item) -> str:
        """The history claim's owner: this job (its id as written and its state's place) and this contact."""
        return history_owner(self._identity, item.contact)

    def record(
        self,
        item: Item,
        state: RowState,
        *,
        created: Created | None = None,
        error: StudioError | None = None,
        sid: str | None = None,
        message: str | None = None,
    ) -> None:
        """Buffer a contact's outcome, and count, log and check the breaker for final ones."""
        if state == RowState.ALREADY_ACTIVE:
            message = "the contact already had an active run on this Flow"
        elif error is not None:
            message = error.message
        elif state == RowState.SENT and message is None:
            message = item.note
        final = state in FINAL
        # Positional, in Outcome's order (contact, state, sid, http_status, error_code, error_message, attempts,
        # completed_at, ended_sid): once for every row, where keywords cost a name lookup each.
        outcome = Outcome(
            item.contact,
            state,
            sid or (created.sid if created else None),
            created.http_status if created else (error.http_status if error else None),
            error.code if error else None,
            message,
            # A line a later run takes up again carries only the tries that count (``max_attempts``): 429s do not.
            item.attempts if final or state == RowState.WAITING_ACTIVE else item.tries,
            self._stamp() if final else None,
            item.ended_sid,
        )
        if self.active is not None and state != RowState.WAITING_ACTIVE:
            self.active.settled(item.contact)
        self.recorder.outcome(outcome)
        if self.recorder.settles and state in _SETTLES:
            reached = state in (RowState.SENT, RowState.ALREADY_ACTIVE)
            self.recorder.settle(self.owner(item), outcome.sid if reached else None)
        if final:
            self._final(item, state, outcome, error)
        if self.on_progress is not None:
            self.on_progress(self.progress())

    def _final(self, item: Item, state: RowState, outcome: Outcome, error: StudioError | None) -> None:
        self.done += 1
        self.counts[state] += 1
        failed = state == RowState.FAILED
        if outcome.sid and self._v1:
            self.sids.add(outcome.sid)
        if failed and error is not None:
            self.stats.errors[(error.code or error.http_status, error.message)] += 1
            log.warning(
                "row.failed",
                row=item.row,
                to=mask(item.to),
                http_status=error.http_status,
                code=error.code,
                message=error.message,
                attempts=item.attempts,
            )
        elif self._debug:
            log.debug("row.outcome", row=item.row, to=mask(item.to), status=str(state), sid=outcome.sid)
        if self._breaker.add(failed) and not self.aborted:
            self._trip()

    def put_back(self, item: Item, *, taken_only: bool = False) -> None:
        """Never sent in this attempt: back to pending (or waiting_active), its intent (and claim) withdrawn.

        ``taken_only``: its line counts only the tries that may have reached Twilio, so that a row left for a later
        run because nothing connected does not start that run with its ``max_attempts`` spent.
        """
        if self.active is not None and self.active.still_waiting(item):
            return
        tries = item.tries - item.unconnected if taken_only else item.tries
        self.recorder.outcome(Outcome(contact=item.contact, state=RowState.PENDING, attempts=tries))
        if self.recorder.settles:
            self.recorder.settle(self.owner(item), None)

    def progress(self) -> Progress:
        """A snapshot for progress displays."""
        elapsed = (self.stats.last_answer or 0) - (self.stats.first_send or 0)
        return Progress(
            done=self.done,
            total=self.total,
            sent=self.sent_before + self.counts[RowState.SENT] + self.counts[RowState.ALREADY_ACTIVE],
            failed=self.failed_before + self.counts[RowState.FAILED],
            retried=self.stats.retries,
            rate=self.stats.created / elapsed if elapsed > 0 else 0.0,
        )

    def _trip(self) -> None:
        top = self.stats.errors.most_common(1)
        cause = f" (most often: {top[0][0][1]})" if top else ""
        self.aborted = Fatal(
            f"more than {self._breaker.ratio:.0%} of the last {self._breaker.window} rows failed{cause}; "
            "stopped so the rest of the list is not failed one by one"
        )
