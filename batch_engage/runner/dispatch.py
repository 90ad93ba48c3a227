"""The dispatch loop: a queue of contacts, intents in groups, workers at the pacer's rate, answers into outcomes.

Each group of about a second's worth of contacts has its intents committed before any of
its requests leaves (``intake``). A worker takes a pacer slot, checks the send window and the caps once
more, sends, and turns the answer into an outcome with the table in ``twilio/classify.py``:
possibly-sent contacts wait for reconciliation, never-processed ones are retried after a
backoff, the rest are final. Nothing here prints or exits.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import structlog

from ..checkpoint import CheckpointStore
from ..clock import Clock, iso_ms_stamper
from ..control import Progress, RunControl, Stats
from ..errors import AlreadyActive, HoldLost, Stopped, StudioError
from ..history import HistoryStore
from ..job import SendWindow, Spec, history_identity
from ..plan import caps
from ..states import RowState
from ..twilio import Breaker, Created, PacedReads, Pacer, StudioClient, is_handback
from .active import ActiveRuns, stop_for_lost_hold
from .answers import Answers
from .failures import Storage
from .intake import Intake
from .item import Item, make_marker
from .offloop import off_loop
from .recorder import Recorder

__all__ = ["DRAIN_GRACE", "Dispatcher", "Item", "Progress", "RunControl", "make_marker"]

DRAIN_GRACE = 5.0
log = structlog.get_logger(__name__)


def _debug_enabled() -> bool:
    """Whether debug events are kept now (a filtering logger drops them as a no-op, but not their arguments)."""
    check = getattr(log.bind(), "is_enabled_for", None)
    return bool(check(logging.DEBUG)) if check is not None else True


@dataclass(eq=False, kw_only=True)
class Dispatcher(Answers):
    """Sends contacts at the pacer's rate and records what each answer means.

    ``total`` and ``done`` count the plan's sendable contacts and those already final; ``sids``
    holds the runs this job's contacts already have (a v1 answer naming one is a hand-back); ``listed_twice``
    the addresses more than one of them has (v1: whose run an answer names is read from its marker, not guessed).
    """

    spec: Spec
    cp: CheckpointStore
    client: StudioClient
    control: RunControl
    recorder: Recorder
    storage: Storage
    pacer: Pacer
    history: HistoryStore | None
    window: SendWindow | None
    clock: Clock
    on_progress: Callable[[Progress], None] | None
    total: int
    done: int
    sids: set[str]
    listed_twice: frozenset[str] = frozenset()
    # Reached and failed by earlier runs of this job: a resumed bar counts the whole job, not one invocation.
    sent_before: int = 0
    failed_before: int = 0
    stats: Stats = field(default_factory=Stats, init=False)
    counts: Counter[str] = field(default_factory=Counter, init=False)
    aborted: StudioError | None = field(default=None, init=False)
    # The first message's segments per row, as the preflight counted them (None: no preflight).
    segments: dict[int, int] | None = field(default=None, init=False)
    capacity: dict[str, Any] | None = field(default=None, init=False)
    uncertain: list[Item] = field(default_factory=list, init=False)
    held: list[Item] = field(default_factory=list, init=False)
    # Why rows whose requests Twilio never took were left pending for a later run (None: none was).
    later: str | None = field(default=None, init=False)
    last_ambiguous: float = field(default=0.0, init=False)
    active: ActiveRuns | None = field(default=None, init=False)
    # The run's paced reads (set by ``phases``): a run Studio names for a contact is read through them.
    reads: PacedReads | None = field(default=None, init=False)
    # The marker each run read so far carries (None: none), by SID.
    markers: dict[str, object] = field(default_factory=dict, init=False)

    def __post_init__(self) -> None:
        self.caps = caps(self.spec)
        self._identity = history_identity(self.spec)
        self._queue = Intake(
            self.cp,
            pacer=self.pacer,
            clock=self.clock,
            twilio=self.client.clock,
            stopping=self.stopping,
            storage=self.storage,
            outcomes_written=self.recorder.flush,
        )
        self._breaker = Breaker(self.spec.send.breaker_window, self.spec.send.breaker_ratio)
        self._warned_concurrency = False
        self._debug = _debug_enabled()
        self._v1 = self.spec.flow.api == "engagements"
        self._stamp = iso_ms_stamper(self.clock)
        self._marker_key = self.spec.send.marker_key
        self._clients: dict[str, StudioClient] = {}

    def client_for(self, flow: str | None) -> StudioClient:
        """The Studio client of ``flow`` (an experiment's variant's), sharing the run's connection; None: the job's."""
        if flow is None or flow == self.client.flow_sid:
            return self.client
        if flow not in self._clients:
            self._clients[flow] = self.client.for_flow(flow)
        return self._clients[flow]

    @property
    def dispatched(self) -> int:
        """New contacts taken from the sources so far (what ``limit`` counts)."""
        return self._queue.taken

    def stopping(self) -> bool:
        """Whether the run is stopping (asked to, aborted, or its storage failed)."""
        return self.control.stopping or self.aborted is not None or self.storage.failure is not None

    # -- one request -------------------------------------------------------------------

    async def _worker(self) -> None:
        # One coroutine a worker, none a row: a row's way is awaited from here, and what is not awaited is plain calls.
        queue = self._queue
        while True:
            # Nearly always one is ready: taken without a coroutine.
            item = queue.take() or await queue.next_item()
            if item is None:
                await queue.notify()
                return
            queue.in_flight += 1
            try:
                # Nearly always a slot is due: taken without a coroutine too.
                sent_at = self.pacer.take_now()
                if sent_at is None:
                    sent_at = await self._slot()
                if not self._may_leave(item) or (self.history is not None and not await self._claimed(item)):
                    continue
                wall = self._leaving(item, sent_at)
                try:
                    created = await self.client_for(item.flow).create(item.to, item.from_, item.body(self._marker_key))
                except (HoldLost, StudioError) as exc:
                    await self._refused(item, exc, sent_at)
                    continue
                self._answered(sent_at)
                if wall is None:
                    self.record(item, RowState.SENT, created=created)
                else:
                    await self._answered_v1(item, created, wall)
            finally:
                queue.in_flight -= 1
                # In flight counts as outstanding: only a worker whose row was the last may find nothing left.
                if (queue.in_flight == 0 and queue.outstanding() == 0) or self.stopping():
                    await queue.notify()

    async def _slot(self) -> float:
        """The pacer's next slot, waited for; -1.0 when a stop came first (``_may_leave`` then puts the row back)."""
        try:
            return await self.pacer.acquire()
        except Stopped:
            return -1.0

    async def _claimed(self, item: Item) -> bool:
        """Claim the contact in the shared history; False (recorded) when a cap holds it or the history failed."""
        assert self.history is not None
        flow = item.flow or self.spec.flow.sid
        try:
            blocker = await off_loop(self.history.claim, item.to, flow, self.owner(item), *self.caps)
        except Exception as exc:
            # A history that cannot answer stops the run, named.
            self.storage.failed("claiming the contact in the history", exc)
            self.put_back(item)
            return False
        if blocker is not None:
            self.record(item, RowState.CAPPED, message=blocker[0].describe(blocker[1]))
            return False
        return True

    def _leaving(self, item: Item, sent_at: float) -> datetime | None:
        """Count the request about to leave; v1: the moment it leaves, on the wall clock (None for v2)."""
        item.attempts += 1
        self.storage.sending_began = True
        stats = self.stats
        stats.requests += 1
        self.recorder.count_request()
        stats.first_send = stats.first_send or sent_at
        # Only v1 can hand a run back, and only the moment the request left tells one.
        return self.clock.now() if self._v1 else None

    def _answered(self, sent_at: float) -> None:
        """A 2xx with a run SID came back for a request sent at ``sent_at``: latency, pace and counters."""
        answered = self.clock.monotonic()
        stats = self.stats
        stats.last_answer = answered
        self._observe_latency(answered - sent_at)
        self.pacer.admitted(sent_at)
        stats.created += 1
        self.recorder.count_ok()

    async def _refused(self, item: Item, exc: HoldLost | StudioError, sent_at: float) -> None:
        """The request made no run of its own (or none is known): the error's meaning for the row."""
        if isinstance(exc, HoldLost):  # asked again as it was written (the transport's fence): it never left
            item.attempts -= 1
            self._hold_lost(item)
            return
        self.stats.last_answer = self.clock.monotonic()
        # A 409 may name the run this row's own earlier request made: then that is its answer.
        if not (isinstance(exc, AlreadyActive) and await self._own_run_named(item, exc.conflicting_sid, sent_at)):
            self._on_error(item, exc, sent_at)

    async def _answered_v1(self, item: Item, created: Created, wall: datetime) -> None:
        """v1's 2xx: this row's run, or another's handed back (set aside with ``on_active``), or undecided."""
        handback = await self._handback(item, created, wall)
        if handback is None:
            return
        if handback and self.active is not None:
            self.set_aside(item, created.sid)
            return
        self.record(item, RowState.ALREADY_ACTIVE if handback else RowState.SENT, created=created)

    async def _handback(self, item: Item, created: Created, wall: datetime) -> bool | None:
        """v1 (``wall``: when the request left): whether its answer handed back another's run; None when whose it is
        could not be read (recorded possibly sent)."""
        # Another contact's run is certain; the clock's verdict, by marker (a Date ahead of date_created fooled it).
        clock = not self._may_be_own(item)
        known = created.sid in self.sids or not is_handback(created, self.client.clock.to_twilio(wall), self.sids)
        if clock and known:
            return created.sid in self.sids
        # A run this row's own earlier request, or another row for the person, may have made: its marker says.
        mine = await self._carries_marker(item, created.sid) if self._marker_key and item.marker else None
        if mine is None and not clock:
            self._undecided(item, created.sid)
        # No marker, or its Context unread: the clock's verdict stands (True), or the row is possibly sent (None).
        return (True if clock else None) if mine is None else not mine

    def _may_leave(self, item: Item) -> bool:
        """Whether ``item`` may leave now its slot has come; if not, it is put back (held, or the run stopped)."""
        if self.stopping():
            self.put_back(item)
            return False
        if not self.cp.holds():
            self._hold_lost(item)
            return False
        if self.window is not None and item.zones and not self.window.is_open(item.zones.split(","), self.clock.now()):
            # Checked again here: a row that waited in the queue must not leave late.
            self.put_back(item)
            self.held.append(item)
            return False
        return True

    def _hold_lost(self, item: Item) -> None:
        """Frozen past its lease, this run may have been taken over: nothing more may leave from here."""
        self.put_back(item)
        stop_for_lost_hold(self.control)

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
            await self._queue.close()
        # Contacts queued (intent written) but never sent this time go back to pending.
        for item in self._queue.unsent():
            self.put_back(item)
