"""The dispatch loop: a queue of contacts, intents in groups, workers at the pacer's rate, answers into outcomes.

Each group of about a second's worth of contacts has its intents committed before any of
its requests leaves (``_intake``). A worker takes a pacer slot, checks the send window and the caps once
more, sends, and turns the answer into an outcome with the table in ``client.py``:
possibly-sent contacts wait for reconciliation, never-processed ones are retried after a
backoff, the rest are final. Nothing here prints or exits.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import structlog

from ..checkpoint import CheckpointStore, Outcome
from ..clock import Clock, iso_ms
from ..control import Progress, RunControl, Stats
from ..errors import AlreadyActive, Fatal, PossiblySent, RateLimited, Rejected, RetrySafe, StudioError
from ..history import HistoryStore
from ..history import owner as history_owner
from ..job import SendWindow, Spec
from ..plan import caps, mask
from ..states import FINAL, RowState
from ..twilio import Breaker, Created, Pacer, StudioClient, backoff, is_handback
from .intake import Intake
from .item import Item, make_marker
from .recorder import Recorder

__all__ = ["DRAIN_GRACE", "Dispatcher", "Item", "Progress", "RunControl", "make_marker"]

DRAIN_GRACE = 5.0
log = structlog.get_logger(__name__)


@dataclass(eq=False, kw_only=True)
class Dispatcher:
    """Sends contacts at the pacer's rate and records what each answer means.

    ``total`` and ``done`` count the plan's sendable contacts and those already final; ``sids``
    holds the runs this job's contacts already have (a v1 answer naming one is a hand-back).
    """

    spec: Spec
    cp: CheckpointStore
    client: StudioClient
    control: RunControl
    recorder: Recorder
    pacer: Pacer
    history: HistoryStore | None
    window: SendWindow | None
    clock: Clock
    on_progress: Callable[[Progress], None] | None
    total: int
    done: int
    # Reached and failed by earlier runs of this job: a resumed bar counts the whole job, not one invocation.
    sent_before: int = 0
    failed_before: int = 0
    sids: set[str]
    stats: Stats = field(default_factory=Stats, init=False)
    counts: Counter[str] = field(default_factory=Counter, init=False)
    aborted: StudioError | None = field(default=None, init=False)
    uncertain: list[Item] = field(default_factory=list, init=False)
    held: list[Item] = field(default_factory=list, init=False)
    last_ambiguous: float = field(default=0.0, init=False)

    def __post_init__(self) -> None:
        self.caps = caps(self.spec)
        self._queue = Intake(
            self.cp, pacer=self.pacer, clock=self.clock, twilio=self.client.clock, stopping=self.stopping
        )
        self._breaker = Breaker(self.spec.send.breaker_window, self.spec.send.breaker_ratio)
        self._warned_concurrency = False

    @property
    def dispatched(self) -> int:
        """New contacts taken from the sources so far (what ``limit`` counts)."""
        return self._queue.taken

    # -- outcomes ----------------------------------------------------------------------

    def stopping(self) -> bool:
        """Whether the run is stopping (asked to, or aborted)."""
        return self.control.stopping or self.aborted is not None

    def owner(self, item: Item) -> str:
        """The history claim's owner: this job and this contact."""
        return history_owner(self.spec.job.id, item.contact)

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
        outcome = Outcome(
            contact=item.contact,
            state=state,
            sid=sid or (created.sid if created else None),
            http_status=created.http_status if created else (error.http_status if error else None),
            error_code=error.code if error else None,
            error_message=message,
            attempts=item.attempts,
            completed_at=iso_ms(self.clock.now()) if state in FINAL else None,
        )
        self.recorder.outcome(outcome)
        if state in (RowState.SENT, RowState.ALREADY_ACTIVE, RowState.FAILED, RowState.PENDING):
            reached = state in (RowState.SENT, RowState.ALREADY_ACTIVE)
            self.recorder.settle(self.owner(item), outcome.sid if reached else None)
        if state in FINAL:
            self._final(item, state, outcome, error)
        if self.on_progress is not None:
            self.on_progress(self.progress())

    def _final(self, item: Item, state: RowState, outcome: Outcome, error: StudioError | None) -> None:
        self.done += 1
        self.counts[state] += 1
        failed = state == RowState.FAILED
        if outcome.sid:
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
        else:
            log.debug("row.outcome", row=item.row, to=mask(item.to), status=str(state), sid=outcome.sid)
        if self._breaker.add(failed) and not self.aborted:
            self._trip()

    def put_back(self, item: Item) -> None:
        """Never sent in this attempt: back to pending, its intent (and claim) withdrawn."""
        self.recorder.outcome(Outcome(contact=item.contact, state=RowState.PENDING, attempts=item.attempts))
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

    # -- one request -------------------------------------------------------------------

    async def _worker(self) -> None:
        while True:
            item = await self._queue.next_item()
            if item is None:
                await self._queue.notify()
                return
            self._queue.in_flight += 1
            try:
                await self._send(item)
            finally:
                self._queue.in_flight -= 1
                if self._queue.outstanding() == 0 or self.stopping():
                    await self._queue.notify()

    async def _send(self, item: Item) -> None:
        sent_at = await self.pacer.acquire()
        if self.stopping():
            self.put_back(item)
            return
        if not self.cp.holds():
            # Frozen past its lease, this run may have been taken over: nothing more may leave from here.
            self.put_back(item)
            if not self.control.stopping:
                log.error(
                    "checkpoint.lease_lost", message="this run's hold on the job is stale; stopping, sending nothing"
                )
                self.control.request_stop()
            return
        if self.window is not None and item.zones and not self.window.is_open(item.zones.split(","), self.clock.now()):
            # Checked again here: a row that waited in the queue must not leave late.
            self.put_back(item)
            self.held.append(item)
            return
        if self.history is not None:
            blocker = await asyncio.to_thread(
                self.history.claim, item.to, self.spec.flow.sid, self.owner(item), *self.caps
            )
            if blocker is not None:
                self.record(item, RowState.CAPPED, message=blocker[0].describe(blocker[1]))
                return
        item.attempts += 1
        self.stats.requests += 1
        self.recorder.count("requests")
        self.stats.first_send = self.stats.first_send or sent_at
        wall = self.clock.now()
        try:
            created = await self.client.create(item.to, item.from_, item.body(self.spec.send.marker_key))
        except StudioError as exc:
            self.stats.last_answer = self.clock.monotonic()
            self._on_error(item, exc, sent_at)
            return
        answered = self.clock.monotonic()
        self.stats.last_answer = answered
        self._observe_latency(answered - sent_at)
        self.pacer.admitted()
        self.stats.created += 1
        self.recorder.count("ok")
        handback = self.spec.flow.api == "engagements" and is_handback(
            created, self.client.clock.to_twilio(wall), self.sids
        )
        self.record(item, RowState.ALREADY_ACTIVE if handback else RowState.SENT, created=created)

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
            self.pacer.admitted()
            self.record(item, RowState.ALREADY_ACTIVE, error=exc, sid=exc.conflicting_sid)
        elif isinstance(exc, Rejected):
            self.pacer.admitted()
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
            delay = self._retry_delay(item, exc)
            if delay is None:
                self.record(item, RowState.FAILED, error=exc)
            else:
                log.debug("row.retry", row=item.row, delay=round(delay, 3), reason=type(exc).__name__)
                self.stats.retries += 1
                self.recorder.count("retries")
                self._queue.retry_later(item, delay)

    def _retry_delay(self, item: Item, exc: RetrySafe) -> float | None:
        if item.attempts >= self.spec.send.max_attempts:
            return None
        delay = backoff(exc, item.attempts)
        if item.backoff + delay > self.spec.send.max_backoff:
            return None
        item.backoff += delay
        return delay

    # -- the whole dispatch ------------------------------------------------------------

    async def dispatch(self, items: Iterator[Item], limit: int | None) -> None:
        """Send ``items`` (at most ``limit`` new ones) until done, stopped or aborted."""
        self._queue.load(items, limit)
        workers = [asyncio.create_task(self._worker()) for _ in range(self.spec.send.concurrency)]
        hard_wait = asyncio.create_task(self.control.bind().wait())
        drain: asyncio.Task[Any] | None = None
        try:
            pending: set[asyncio.Task[Any]] = set(workers)
            while pending:
                waiters = pending | {hard_wait}
                if self.stopping() and drain is None:
                    # Real time, not the run's clock: it bounds the wait for real in-flight HTTP answers.
                    drain = asyncio.create_task(asyncio.sleep(self.spec.send.read_timeout + DRAIN_GRACE))
                    await self._queue.notify()
                if drain is not None:
                    waiters.add(drain)
                done, _ = await asyncio.wait(waiters, timeout=0.2, return_when=asyncio.FIRST_COMPLETED)
                pending = {w for w in workers if not w.done()}
                if hard_wait in done or (drain is not None and drain in done):
                    break
            for w in workers:
                if w.done() and not w.cancelled() and w.exception() is not None:
                    raise w.exception()  # type: ignore[misc]
        finally:
            for w in [*workers, hard_wait] + ([drain] if drain else []):
                w.cancel()
            await asyncio.gather(*workers, hard_wait, *([drain] if drain else []), return_exceptions=True)
        # Contacts queued (intent written) but never sent this time go back to pending.
        for item in self._queue.unsent():
            self.put_back(item)
