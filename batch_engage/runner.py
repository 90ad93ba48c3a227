"""The run: plan, lock the checkpoint, reconcile, dispatch at the pacer's rate, record, report.

A row's life (see README "How a row is sent")::

    pending --intent committed--> in flight --2xx------------------> sent
                                      |------409 20409 / v1 hand-back-> already_active
                                      |------other 4xx----------------> failed
                                      |------429 / connect error------> back to the queue
                                      '------5xx / timeout / drop-----> uncertain
    uncertain --found in Studio's list--> sent;  --not found--> pending;  --list failed--> uncertain

Nothing here prints or exits; the caller gets a :class:`RunResult`.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import itertools
import json
import time
from collections import Counter, deque
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, BinaryIO

import httpx
import polars as pl
import structlog
import tenacity

from . import phone
from .checkpoint import Checkpoint, Outcome, now_iso
from .client import Created, StudioClient, make_http_client
from .credentials import Credentials
from .errors import (
    AlreadyActive,
    CheckpointMismatch,
    Fatal,
    FlowNotFound,
    PossiblySent,
    RateLimited,
    Rejected,
    RetrySafe,
    StudioError,
)
from .history import owner as history_owner
from .hygiene import HistoryStore, apply_history, apply_suppression, is_database_url, load_suppression, open_history
from .pacing import Pacer
from .planning import plan as plan_rows
from .planning import text_columns
from .results import build_results, counts_by_status, write_results
from .source import Table, frame_digest, read_table
from .source_db import read_query
from .spec import Cap, Spec, check_base_url, parse_cap, studio_base_url
from .windows import SendWindow, annotate_windows, assign_zones, send_window

__all__ = [
    "Progress",
    "RunControl",
    "RunOptions",
    "RunResult",
    "RunSummary",
    "exit_code_for",
    "fingerprint",
    "prepare",
    "run_job",
]

log = structlog.get_logger(__name__)

CLOCK_SKEW_MARGIN = timedelta(minutes=3)
HANDBACK_MARGIN = timedelta(seconds=2)
OUTCOME_FLUSH_SECONDS = 0.05
OUTCOME_FLUSH_ROWS = 100
DRAIN_GRACE = 5.0


@dataclass(frozen=True, kw_only=True)
class RunOptions:
    """Choices for one invocation, as opposed to the job itself."""

    limit: int | None = None
    max_duration: float | None = None
    restart: bool = False
    wait: bool = False
    clock: Callable[[], datetime] = field(default=lambda: datetime.now(UTC), compare=False)
    sleep: Callable[[float], Awaitable[None]] = field(default=asyncio.sleep, compare=False)


@dataclass(frozen=True)
class Progress:
    """A snapshot for progress displays."""

    done: int
    total: int
    sent: int
    failed: int
    retried: int
    rate: float


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
        }


@dataclass(frozen=True)
class RunResult:
    """The results table, its counts, and the exit code the CLI would give."""

    results: pl.DataFrame
    counts: dict[str, int]
    exit_code: int
    summary: RunSummary


class RunControl:
    """Lets the caller stop a run: the first request drains in-flight answers, the second stops at once."""

    def __init__(self) -> None:
        self.stopping = False
        self.hard = False
        self._hard_event: asyncio.Event | None = None
        self._stop_event: asyncio.Event | None = None

    def request_stop(self) -> None:
        """Ask the run to stop; a second call stops it at once (in-flight rows stay uncertain)."""
        if self.stopping:
            self.hard = True
            if self._hard_event is not None:
                self._hard_event.set()
        log.warning("run.stopping", at_once=self.hard)
        self.stopping = True
        if self._stop_event is not None:
            self._stop_event.set()

    async def wait_stop(self, seconds: float, sleep: Callable[[float], Awaitable[None]]) -> None:
        """Sleep ``seconds`` (with ``sleep``), or less if a stop is requested meanwhile."""
        self._stop_event = self._stop_event or asyncio.Event()
        if self.stopping:
            return
        napping = asyncio.ensure_future(sleep(seconds))
        stop = asyncio.ensure_future(self._stop_event.wait())
        await asyncio.wait({napping, stop}, return_when=asyncio.FIRST_COMPLETED)
        for task in (napping, stop):
            task.cancel()
        await asyncio.gather(napping, stop, return_exceptions=True)

    def _bind(self) -> asyncio.Event:
        self._hard_event = asyncio.Event()
        if self.hard:
            self._hard_event.set()
        return self._hard_event


def exit_code_for(counts: dict[str, int], *, aborted: bool = False, stopped_early: bool = False) -> int:
    """0 all done well, 1 some rows failed/invalid/uncertain, 3 aborted, 75 stopped early."""
    if aborted:
        return 3
    if stopped_early:
        return 75
    if counts.get("failed", 0) or counts.get("invalid", 0) or counts.get("uncertain", 0):
        return 1
    return 0


def fingerprint(spec: Spec, digest: str) -> dict[str, Any]:
    """What binds a checkpoint to its job: input content, Flow, API, mapping, planning settings."""
    m = spec.mapping
    return {
        "input": digest,
        "flow_sid": spec.flow.sid,
        "api": spec.flow.api,
        "mapping": json.loads(
            json.dumps(
                {
                    "to": m.to,
                    "from": m.from_,
                    "from_column": m.from_column,
                    "parameters": sorted(m.parameters),
                    "static_parameters": m.static_parameters,
                    "parameters_column": m.parameters_column,
                    "default_region": m.default_region,
                },
                sort_keys=True,
                default=str,
            )
        ),
        "planning": {"dedupe": spec.send.dedupe, "max_parameters_bytes": spec.send.max_parameters_bytes},
    }


def row_key(row: int, to: str, from_: str, parameters: str | None) -> str:
    """Row number plus a hash of its mapped values, so a row is never confused with another."""
    digest = hashlib.blake2b(f"{to}\0{from_}\0{parameters or ''}".encode(), digest_size=8).hexdigest()
    return f"{row}:{digest}"


def prepare(
    spec: Spec,
    *,
    frame: pl.DataFrame | pl.LazyFrame | None = None,
    stdin: BinaryIO | None = None,
) -> tuple[pl.DataFrame, dict[str, Any]]:
    """Read and plan the input: the plan frame and the checkpoint fingerprint. No network."""
    if frame is not None:
        data = frame.collect() if isinstance(frame, pl.LazyFrame) else frame
        columns = [c for c in text_columns(spec.mapping) if c in data.columns]
        data = data.with_columns(pl.col(c).cast(pl.String) for c in columns)
        table = Table(frame=data, digest=frame_digest(data), name="(frame)")
    elif spec.input.query is not None:
        table = read_query(spec.input, text_columns=text_columns(spec.mapping))
    else:
        table = read_table(spec.input, text_columns=text_columns(spec.mapping), stdin=stdin)
    planned = plan_rows(table.frame, spec, source_name=table.name)
    if spec.send.window is not None:
        planned = assign_zones(planned, table.frame, spec)
    if spec.suppress.files:
        lists = load_suppression(spec.suppress.files, spec.suppress.column, spec.mapping.default_region)
        planned = apply_suppression(planned, lists)
    caps = _caps(spec)
    if spec.history.path and any(caps) and (is_database_url(spec.history.path) or Path(spec.history.path).exists()):
        with open_history(spec.history.path) as history:
            planned = apply_history(planned, history, spec.flow.sid, *caps, job=str(Path(spec.output.checkpoint)))
    return planned, fingerprint(spec, table.digest)


def _caps(spec: Spec) -> tuple[Cap | None, Cap | None]:
    h = spec.history
    return (
        parse_cap(h.cap, key="history.cap") if h.cap else None,
        parse_cap(h.flow_cap, key="history.flow_cap") if h.flow_cap else None,
    )


@dataclass
class _Item:
    row: int
    key: str
    to: str
    from_: str
    parameters: str | None
    attempts: int = 0
    backoff: float = 0.0
    last_error: StudioError | None = None
    intent_at: str | None = None
    zones: str | None = None


@dataclass
class _Stats:
    requests: int = 0
    rate_limited: int = 0
    retries: int = 0
    created: int = 0
    reconciled: int = 0
    first_send: float | None = None
    last_answer: float | None = None
    latency_ewma: float | None = None
    errors: Counter[tuple[int | None, str]] = field(default_factory=Counter)


class _Run:
    """One run's moving parts; lives only inside :func:`run_job`."""

    def __init__(
        self,
        spec: Spec,
        checkpoint: Checkpoint,
        client: StudioClient,
        control: RunControl,
        on_progress: Callable[[Progress], None] | None,
        total: int,
        done: int,
        known_sids: set[str],
        history: HistoryStore | None = None,
    ) -> None:
        self.spec = spec
        self.cp = checkpoint
        self.client = client
        self.control = control
        self.on_progress = on_progress
        self.pacer = Pacer(spec.send.rate)
        self.stats = _Stats()
        self.total = total
        self.done = done
        self.counts: Counter[str] = Counter()
        self.known_sids = known_sids
        self.history = history
        self.caps = _caps(spec)
        self.settlements: list[tuple[str, str | None]] = []
        self.window = send_window(spec)
        self.clock: Callable[[], datetime] = lambda: datetime.now(UTC)
        self.held: list[_Item] = []
        self.dispatched = 0
        self.ready: deque[_Item] = deque()
        self.retry_ready: deque[_Item] = deque()
        self.scheduled: dict[int, tuple[_Item, asyncio.TimerHandle]] = {}
        self.in_flight = 0
        self.source: Iterator[_Item] = iter(())
        self.source_done = True
        self.limit_left: int | None = None
        self.uncertain: list[_Item] = []
        self.last_ambiguous = 0.0
        self.outcomes: list[Outcome] = []
        self.aborted: StudioError | None = None
        self.wake = asyncio.Condition()
        self.refill_lock = asyncio.Lock()
        self.recent: deque[bool] = deque(maxlen=spec.send.breaker_window)
        self.recent_failed = 0  # sum(self.recent), kept up to date instead of summed for every row
        self.warned_concurrency = False
        self.backoff_wait = tenacity.wait_random_exponential(multiplier=0.5, max=30)

    # -- bookkeeping -------------------------------------------------------------------

    def stopping(self) -> bool:
        return self.control.stopping or self.aborted is not None

    def record(
        self,
        item: _Item,
        state: str,
        *,
        created: Created | None = None,
        error: StudioError | None = None,
        sid: str | None = None,
        message: str | None = None,
    ) -> None:
        if state == "already_active":
            message = "the contact already had an active run on this Flow"
        elif error is not None:
            message = error.message
        outcome = Outcome(
            row=item.row,
            state=state,
            sid=sid or (created.sid if created else None),
            http_status=created.http_status if created else (error.http_status if error else None),
            error_code=error.code if error else None,
            error_message=message,
            attempts=item.attempts,
            completed_at=now_iso() if state not in ("pending", "intent") else None,
        )
        self.outcomes.append(outcome)
        if self.history is not None and state in ("sent", "already_active", "failed", "pending"):
            self.settlements.append((self.owner(item), outcome.sid if state in ("sent", "already_active") else None))
        if state in ("sent", "already_active", "failed", "capped"):
            self.done += 1
            self.counts[state] += 1
            if len(self.recent) == self.recent.maxlen:
                self.recent_failed -= self.recent[0]
            self.recent.append(state == "failed")
            self.recent_failed += state == "failed"
            if outcome.sid:
                self.known_sids.add(outcome.sid)
            if state == "failed" and error is not None:
                self.stats.errors[(error.code or error.http_status, error.message)] += 1
                log.warning(
                    "row.failed",
                    row=item.row,
                    to=phone.mask(item.to),
                    http_status=error.http_status,
                    code=error.code,
                    message=error.message,
                    attempts=item.attempts,
                )
            else:
                log.debug(
                    "row.outcome",
                    row=item.row,
                    to=phone.mask(item.to),
                    status=state,
                    sid=outcome.sid,
                    attempts=item.attempts,
                )
            self._check_breaker()
        if self.on_progress is not None:
            self.on_progress(self.progress())

    def progress(self) -> Progress:
        elapsed = (self.stats.last_answer or 0) - (self.stats.first_send or 0)
        rate = self.stats.created / elapsed if elapsed > 0 else 0.0
        return Progress(
            done=self.done,
            total=self.total,
            sent=self.counts["sent"] + self.counts["already_active"],
            failed=self.counts["failed"],
            retried=self.stats.retries,
            rate=rate,
        )

    def _check_breaker(self) -> None:
        window = self.spec.send.breaker_window
        tripped = len(self.recent) >= window and self.recent_failed > self.spec.send.breaker_ratio * window
        if tripped and not self.aborted:
            top = self.stats.errors.most_common(1)
            cause = f" (most often: {top[0][0][1]})" if top else ""
            self.aborted = Fatal(
                f"more than {self.spec.send.breaker_ratio:.0%} of the last {window} rows failed{cause}; "
                "stopped so the rest of the list is not failed one by one"
            )

    def owner(self, item: _Item) -> str:
        return history_owner(str(Path(self.spec.output.checkpoint)), str(item.row))

    async def flush(self) -> None:
        if not self.outcomes and not self.settlements:
            return
        batch, self.outcomes = self.outcomes, []
        settled, self.settlements = self.settlements, []
        await asyncio.to_thread(self._write, batch, settled)

    def _write(self, batch: list[Outcome], settled: list[tuple[str, str | None]]) -> None:
        self.cp.write_outcomes(batch)
        if self.history is not None:
            for owner, sid in settled:
                self.history.settle(owner, sid)

    async def flusher(self, done: asyncio.Event) -> None:
        # Never cancelled: a write cancelled half-way would drop its batch of outcomes.
        while not done.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(done.wait(), OUTCOME_FLUSH_SECONDS)
            await self.flush()

    async def notify(self) -> None:
        async with self.wake:
            self.wake.notify_all()

    # -- the queue ---------------------------------------------------------------------

    def outstanding(self) -> int:
        return len(self.ready) + len(self.retry_ready) + len(self.scheduled) + self.in_flight

    async def refill(self) -> None:
        async with self.refill_lock:
            if self.ready or self.source_done or self.stopping():
                return
            size = max(1, min(int(self.pacer.rate) or 1, 1000))
            if self.limit_left is not None:
                size = min(size, self.limit_left)
            batch: list[_Item] = []
            for item in self.source:
                self.dispatched += 1
                batch.append(item)
                if len(batch) >= size:
                    break
            else:
                self.source_done = True
            if self.limit_left is not None:
                self.limit_left -= len(batch)
                if self.limit_left <= 0:
                    self.source_done = True
            if batch:
                at = await asyncio.to_thread(self.cp.write_intents, [(i.row, i.key) for i in batch])
                for item in batch:
                    item.intent_at = at
                self.ready.extend(batch)
        await self.notify()

    async def next_item(self) -> _Item | None:
        while True:
            if self.stopping():
                return None
            if self.retry_ready:
                return self.retry_ready.popleft()
            if not self.ready and not self.source_done:
                await self.refill()
            if self.ready:
                item = self.ready.popleft()
                # Write the next group's intents while this one is still being sent: once, when the
                # queue is down to half a group (the group is at most 1,000 rows, so comparing with
                # half the *rate* would start a refill task for every row above 2,000/s).
                half_group = max(1, min(int(self.pacer.rate), 1000) // 2)
                if len(self.ready) < half_group and not self.source_done and not self.refill_lock.locked():
                    asyncio.get_running_loop().create_task(self.refill())
                return item
            if self.source_done and self.outstanding() == 0:
                return None
            async with self.wake:
                await self.wake.wait()

    def schedule_retry(self, item: _Item, delay: float) -> None:
        self.stats.retries += 1

        def release() -> None:
            self.scheduled.pop(item.row, None)
            self.retry_ready.append(item)
            asyncio.get_running_loop().create_task(self.notify())

        self.scheduled[item.row] = (item, asyncio.get_running_loop().call_later(delay, release))

    # -- one request -------------------------------------------------------------------

    async def worker(self) -> None:
        while True:
            item = await self.next_item()
            if item is None:
                await self.notify()
                return
            self.in_flight += 1
            try:
                await self.send(item)
            finally:
                self.in_flight -= 1
                if self.outstanding() == 0 or self.stopping():
                    await self.notify()

    async def send(self, item: _Item) -> None:
        sent_at = await self.pacer.acquire()
        if self.stopping():
            self.put_back(item)
            return
        if self.window is not None and item.zones and not self.window.is_open(item.zones.split(","), self.clock()):
            # Checked again here: a row that waited in the queue must not leave late.
            self.put_back(item)
            self.held.append(item)
            return
        if self.history is not None:
            blocker = await asyncio.to_thread(
                self.history.claim, item.to, self.spec.flow.sid, self.owner(item), *self.caps
            )
            if blocker is not None:
                self.record(item, "capped", message=blocker[0].describe(blocker[1]))
                return
        item.attempts += 1
        self.stats.requests += 1
        if self.stats.first_send is None:
            self.stats.first_send = sent_at
        wall = datetime.now(UTC)
        try:
            created = await self.client.create(item.to, item.from_, item.parameters)
        except StudioError as exc:
            self.stats.last_answer = time.monotonic()
            self.on_error(item, exc, sent_at)
            return
        answered = time.monotonic()
        self.stats.last_answer = answered
        self.observe_latency(answered - sent_at)
        self.pacer.admitted()
        self.stats.created += 1
        if self.is_handback(created, wall):
            self.record(item, "already_active", created=created)
        else:
            self.record(item, "sent", created=created)

    def is_handback(self, created: Created, sent_wall: datetime) -> bool:
        """v1 answers 200 with the contact's existing active run instead of a new one."""
        if self.spec.flow.api != "engagements":
            return False
        if created.sid in self.known_sids:
            return True
        return created.date_created is not None and created.date_created < sent_wall - HANDBACK_MARGIN

    def put_back(self, item: _Item) -> None:
        # Never sent in this attempt: the row goes back to pending, its intent (and claim) withdrawn.
        self.outcomes.append(Outcome(row=item.row, state="pending", attempts=item.attempts))
        if self.history is not None:
            self.settlements.append((self.owner(item), None))

    def observe_latency(self, seconds: float) -> None:
        ewma = self.stats.latency_ewma
        self.stats.latency_ewma = seconds if ewma is None else 0.9 * ewma + 0.1 * seconds
        if not self.warned_concurrency and self.stats.created >= 20:
            needed = self.spec.send.rate * self.stats.latency_ewma
            if needed > self.spec.send.concurrency:
                self.warned_concurrency = True
                log.warning(
                    "pacing.concurrency_too_low",
                    rate=self.spec.send.rate,
                    latency_ms=round(self.stats.latency_ewma * 1000),
                    concurrency=self.spec.send.concurrency,
                    needed=int(needed) + 1,
                    max_rate=round(self.spec.send.concurrency / self.stats.latency_ewma, 1),
                )

    def on_error(self, item: _Item, exc: StudioError, sent_at: float) -> None:
        item.last_error = exc
        if isinstance(exc, Fatal):
            if self.aborted is None:
                self.aborted = exc
                log.error("run.aborted", reason=exc.message, http_status=exc.http_status, code=exc.code)
            self.put_back(item)
            return
        if isinstance(exc, AlreadyActive):
            self.pacer.admitted()
            self.record(item, "already_active", error=exc, sid=exc.conflicting_sid)
            return
        if isinstance(exc, Rejected):
            self.pacer.admitted()
            self.record(item, "failed", error=exc)
            return
        if isinstance(exc, PossiblySent):
            self.last_ambiguous = time.monotonic()
            self.uncertain.append(item)
            self.outcomes.append(
                Outcome(
                    row=item.row,
                    state="uncertain",
                    http_status=exc.http_status,
                    error_code=exc.code,
                    error_message=exc.message,
                    attempts=item.attempts,
                )
            )
            log.warning("row.uncertain", row=item.row, to=phone.mask(item.to), reason=exc.message)
            return
        assert isinstance(exc, RetrySafe)
        if isinstance(exc, RateLimited):
            self.stats.rate_limited += 1
            self.pacer.rate_limited(sent_at)
        delay = self.retry_delay(item, exc)
        if delay is None:
            self.record(item, "failed", error=exc)
        else:
            log.debug("row.retry", row=item.row, delay=round(delay, 3), reason=type(exc).__name__)
            self.schedule_retry(item, delay)

    def retry_delay(self, item: _Item, exc: RetrySafe) -> float | None:
        """How long to wait before sending again, or None when the row has run out."""
        if item.attempts >= self.spec.send.max_attempts:
            return None
        if isinstance(exc, RateLimited) and exc.retry_after is not None:
            delay = exc.retry_after
        else:
            state = tenacity.RetryCallState(retry_object=tenacity.AsyncRetrying(), fn=None, args=(), kwargs={})
            state.attempt_number = item.attempts
            delay = self.backoff_wait(state)
        if item.backoff + delay > self.spec.send.max_backoff:
            return None
        item.backoff += delay
        return delay

    # -- reconciliation ----------------------------------------------------------------

    async def reconcile(self, items: list[_Item], *, since_iso: str) -> list[_Item]:
        """Look for possibly-sent rows in Studio's list; return the ones never created."""
        if not items:
            return []
        wait = self.last_ambiguous + self.spec.send.reconcile_delay - time.monotonic()
        if wait > 0:
            await asyncio.sleep(wait)
        since = datetime.fromisoformat(since_iso.replace("Z", "+00:00")) - CLOCK_SKEW_MARGIN
        known = await asyncio.to_thread(self.cp.known_sids, _iso_ms(since))
        by_address: dict[str, list[str]] = {}
        try:
            records = [r async for r in self.client.list_runs(since=since)]
        except StudioError as exc:
            log.warning("reconcile.failed", rows=len(items), reason=exc.message)
            for item in items:
                self.record_uncertain_final(item, f"possibly sent; reconciliation failed: {exc.message}")
            return []
        for record in reversed(records):  # oldest first, so rows take runs in order
            if record.address and record.sid not in known:
                by_address.setdefault(record.address, []).append(record.sid)
        not_found: list[_Item] = []
        for item in sorted(items, key=lambda i: i.row):
            sids = by_address.get(item.to)
            if sids:
                sid = sids.pop(0)
                self.stats.reconciled += 1
                self.record(item, "sent", created=Created(sid=sid, http_status=200, date_created=None), sid=sid)
            else:
                not_found.append(item)
        log.info("reconcile.done", rows=len(items), found=len(items) - len(not_found), not_found=len(not_found))
        return not_found

    def record_uncertain_final(self, item: _Item, message: str) -> None:
        self.outcomes.append(Outcome(row=item.row, state="uncertain", error_message=message, attempts=item.attempts))

    # -- the whole dispatch ------------------------------------------------------------

    async def dispatch(self, items: Iterator[_Item], limit: int | None) -> None:
        self.source = items
        self.source_done = False
        self.limit_left = limit
        if limit is not None and limit <= 0:
            self.source_done = True
        workers = [asyncio.create_task(self.worker()) for _ in range(self.spec.send.concurrency)]
        hard = self.control._bind()
        hard_wait = asyncio.create_task(hard.wait())
        drain: asyncio.Task[Any] | None = None
        try:
            pending: set[asyncio.Task[Any]] = set(workers)
            while pending:
                waiters = pending | {hard_wait}
                if self.stopping() and drain is None:
                    drain = asyncio.create_task(asyncio.sleep(self.spec.send.read_timeout + DRAIN_GRACE))
                    await self.notify()
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
        # Rows that were queued (intent written) but never sent this time go back to pending.
        for item, handle in self.scheduled.values():
            handle.cancel()
            self.ready.append(item)
        self.scheduled.clear()
        for item in [*self.ready, *self.retry_ready]:
            self.put_back(item)
        self.ready.clear()
        self.retry_ready.clear()


def _iso_ms(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _pending_items(plan: pl.DataFrame, journal: pl.DataFrame, settled: pl.Series | None = None) -> Iterator[_Item]:
    # A generator: a million-row job builds its items (and row keys) as it sends them.
    # ``settled`` (final rows' numbers) lets ``journal`` hold only the open lines.
    todo = plan.filter(pl.col("status") == "pending")
    if settled is not None:
        todo = todo.filter(~pl.col("row").is_in(settled.implode()))
    todo = todo.join(journal.select("row", "state", "attempts"), on="row", how="left", maintain_order="left")
    todo = todo.filter(pl.col("state").is_null() | (pl.col("state") == "pending"))
    zones = (
        todo.get_column("zones")
        if "zones" in todo.columns
        else pl.repeat(None, todo.height, dtype=pl.String, eager=True)
    )
    for (row, to, from_, params, attempts), zone in zip(
        todo.select("row", "to", "from", "parameters", pl.col("attempts").fill_null(0)).iter_rows(),
        zones.to_list(),
        strict=True,
    ):
        yield _Item(
            row=row,
            key=row_key(row, to, from_, params),
            to=to,
            from_=from_,
            parameters=params,
            attempts=attempts,
            zones=zone,
        )


async def _send_all(run: _Run, source: Iterator[_Item], options: RunOptions) -> bool:
    """Send every item whose window is open, waiting for windows with ``--wait``.

    Returns True when rows are left waiting for their window (the run stopped early).
    """
    window = run.window
    if window is None:
        await run.dispatch(source, options.limit)
        return False
    items = list(source)
    while True:
        now = options.clock()
        is_open = {z: window.is_open(z.split(","), now) for z in {i.zones for i in items if i.zones}}
        ready = [i for i in items if not i.zones or is_open[i.zones]]
        held = [i for i in items if i.zones and not is_open[i.zones]]
        left = None if options.limit is None else options.limit - run.dispatched
        await run.dispatch(iter(ready), left)
        held += run.held
        run.held = []
        limit_reached = options.limit is not None and run.dispatched >= options.limit
        if not held or run.stopping() or limit_reached:
            return bool(held) and not run.stopping() and not limit_reached
        if not options.wait:
            log.info("window.waiting", rows=len(held), next_open=_iso_ms(_next_opening(window, held, now)))
            return True
        opens = _next_opening(window, held, options.clock())
        log.info("window.sleep", rows=len(held), until=_iso_ms(opens))
        await run.control.wait_stop(max(0.0, (opens - options.clock()).total_seconds()), options.sleep)
        items = held


def _next_opening(window: SendWindow | None, items: list[_Item], now: datetime) -> datetime:
    assert window is not None
    opens = [window.next_open(tuple(z.split(",")), now) for z in {i.zones for i in items if i.zones}]
    return min((o for o in opens if o is not None), default=now + timedelta(days=1))


async def run_job(
    spec: Spec,
    *,
    credentials: Credentials,
    frame: pl.DataFrame | pl.LazyFrame | None = None,
    options: RunOptions = RunOptions(),
    control: RunControl | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
    on_progress: Callable[[Progress], None] | None = None,
    stdin: BinaryIO | None = None,
    prepared: tuple[pl.DataFrame, dict[str, Any]] | None = None,
) -> RunResult:
    """Run one job to the end (or until stopped) and return its results."""
    control = control or RunControl()
    started = time.monotonic()
    base_url = studio_base_url(spec.flow, region=credentials.region, edge=credentials.edge)
    check_base_url(base_url)
    plan, fp = prepared if prepared is not None else prepare(spec, frame=frame, stdin=stdin)
    with Checkpoint.open(spec.output.checkpoint, fp, restart=options.restart) as cp:
        # Saved every run: suppression lists and caps may have changed the plan since the last one.
        await asyncio.to_thread(cp.save_plan, plan)
        # Only the open lines in full: a resumed million-row job would spend seconds turning
        # its finished lines into Python tuples before its first request.
        journal = cp.open_lines()
        settled = cp.settled_rows()
        http = make_http_client(
            username=credentials.username,
            password=credentials.password,
            concurrency=spec.send.concurrency,
            connect_timeout=spec.send.connect_timeout,
            read_timeout=spec.send.read_timeout,
            transport=transport,
        )
        async with http:
            client = StudioClient(http, base_url=base_url, flow_sid=spec.flow.sid, api=spec.flow.api)
            done = settled.len()
            total = int(plan.filter(pl.col("status") == "pending").height)
            history = open_history(spec.history.path) if spec.history.path else None
            run = _Run(
                spec,
                cp,
                client,
                control,
                on_progress,
                total,
                done,
                # Only v1 hands back runs, and one older than HANDBACK_MARGIN (plus clock skew) is
                # already told apart by its date_created: older SIDs need not be held.
                cp.sids_completed_since(_iso_ms(datetime.now(UTC) - CLOCK_SKEW_MARGIN - HANDBACK_MARGIN))
                if spec.flow.api == "engagements"
                else set(),
                history,
            )
            stopped_early = False
            flushing_done = asyncio.Event()
            flusher = asyncio.create_task(run.flusher(flushing_done))
            timer: asyncio.TimerHandle | None = None
            if options.max_duration is not None:
                timer = asyncio.get_running_loop().call_later(options.max_duration, control.request_stop)
            try:
                possibly = journal.filter(pl.col("state").is_in(["intent", "uncertain"]))
                pending_left = _pending_items(plan, journal, settled)
                run.clock = options.clock
                has_work = possibly.height > 0 or total - done > 0
                if has_work and spec.send.preflight and not control.stopping:
                    await _preflight(client, spec, run)
                again: list[_Item] = []
                if run.aborted is None and possibly.height and not control.stopping:
                    again = await _reconcile_previous(run, plan, possibly)
                waiting = False
                if run.aborted is None and not control.stopping:
                    waiting = await _send_all(run, itertools.chain(again, pending_left), options)
                # Possibly-sent rows of this run: reconcile, then send the ones never created.
                while run.uncertain and run.aborted is None and not control.stopping:
                    items, run.uncertain = run.uncertain, []
                    since = min(i.intent_at or now_iso() for i in items)
                    retry = await run.reconcile(items, since_iso=since)
                    sendable = [i for i in retry if i.attempts < spec.send.max_attempts]
                    for item in retry:
                        if item.attempts >= spec.send.max_attempts:
                            run.record_uncertain_final(
                                item, f"possibly sent, not found in Studio after {item.attempts} attempts"
                            )
                    if sendable:
                        await run.dispatch(iter(sendable), None)
                stopped_early = control.stopping or waiting
            except StudioError as exc:
                # Preflight could not reach Studio: nothing was sent; try again later.
                log.error("run.unreachable", reason=exc.message)
                stopped_early = True
            finally:
                if timer is not None:
                    timer.cancel()
                flushing_done.set()
                await flusher
                await run.flush()
                if history is not None:
                    history.close()
        journal = cp.journal()
    results = annotate_windows(plan, build_results(plan, journal), spec, options.clock())
    counts = counts_by_status(results)
    await asyncio.to_thread(write_results, results, spec.output.results)
    duration = time.monotonic() - started
    stats = run.stats
    active = (stats.last_answer or 0) - (stats.first_send or 0)
    summary = RunSummary(
        counts=counts,
        duration=duration,
        requests=stats.requests,
        rate_limited=stats.rate_limited,
        retries=stats.retries,
        achieved_rate=stats.created / active if active > 0 else 0.0,
        configured_rate=spec.send.rate,
        settled_rate=run.pacer.rate,
        top_errors=[
            {"code": code, "message": message, "rows": n} for (code, message), n in stats.errors.most_common(5)
        ],
        results_path=spec.output.results,
        checkpoint_path=spec.output.checkpoint,
        aborted=run.aborted.message if run.aborted else None,
        stopped_early=stopped_early and run.aborted is None,
        reconciled=stats.reconciled,
    )
    code = exit_code_for(counts, aborted=run.aborted is not None, stopped_early=summary.stopped_early)
    log.info("run.summary", exit_code=code, **summary.as_dict())
    return RunResult(results=results, counts=counts, exit_code=code, summary=summary)


async def _preflight(client: StudioClient, spec: Spec, run: _Run) -> None:
    """One GET of the Flow proves the credentials and the Flow before any row is sent."""
    for attempt in range(3):
        try:
            flow = await client.fetch_flow()
        except Fatal as exc:
            run.aborted = exc
            log.error("run.aborted", reason=exc.message, http_status=exc.http_status, code=exc.code)
            return
        except (RetrySafe, PossiblySent, Rejected):
            if attempt == 2:
                raise
            await asyncio.sleep(0.5 * 2**attempt)
            continue
        if spec.flow.api == "executions" and flow.get("status") == "draft":
            run.aborted = FlowNotFound(
                f"the Flow {spec.flow.sid} is a draft: publish it in the Studio console before running it"
            )
            log.error("run.aborted", reason=run.aborted.message)
        return


async def _reconcile_previous(run: _Run, plan: pl.DataFrame, possibly: pl.DataFrame) -> list[_Item]:
    """Rows a previous run may have sent: settle them before anything new is sent."""
    zones = pl.col("zones") if "zones" in plan.columns else pl.lit(None, dtype=pl.String).alias("zones")
    rows = possibly.join(plan.select("row", "to", "from", "parameters", zones), on="row", how="left")
    items = [
        _Item(row=r, key=k, to=to, from_=fr, parameters=p, attempts=a or 0, intent_at=at, zones=z)
        for r, k, to, fr, p, a, at, z in rows.select(
            "row", "key", "to", "from", "parameters", "attempts", "intent_at", "zones"
        ).iter_rows()
    ]
    # A checkpoint keyed to other values than these rows is a bug, never a reason to resend.
    mismatched = [i for i in items if i.key != row_key(i.row, i.to, i.from_, i.parameters)]
    if mismatched:
        raise CheckpointMismatch(
            f"{run.cp.path}: row {mismatched[0].row} in the checkpoint does not match the input's row; "
            "nothing was sent. Use --restart to start over."
        )
    newest = max((i.intent_at or "") for i in items)
    age = datetime.now(UTC) - datetime.fromisoformat(newest.replace("Z", "+00:00")) if newest else timedelta(0)
    run.last_ambiguous = time.monotonic() - age.total_seconds()
    since = min(i.intent_at or now_iso() for i in items)
    log.info("reconcile.start", rows=len(items), since=since)
    retry = await run.reconcile(items, since_iso=since)
    run.outcomes.extend(Outcome(row=i.row, state="pending", attempts=i.attempts) for i in retry)
    await run.flush()
    return retry
