"""``collect``: what happened in each run — its status, the answers its contact gave, whether its messages arrived.

::

    checkpoint (read-only: plan + journal) -> rows with a run SID (sent, already_active), in input order
      -> minus the lines the outcomes store holds as final (ended, fields read, deliveries settled)
      -> GET the Flow once (credentials, Flow, Account SID) -> per run, paced and retried:
         GET run (status, date_updated) [-> GET Context (fields, marker) [-> GET Message per widget]]
      -> outcomes store (groups) -> outcomes table (atomic, owner-only)

An ``already_active`` run may be another sender's: its fields count only when its
Context carries the contact's marker (``flow.data.<marker_key>``); otherwise they are
null with the note "another sender's run". A run that has ended, with its fields and
final delivery statuses read, is never fetched again (``refresh`` fetches everything).
A 404 on a run is ``failed`` for that row alone; 401/403, or a 404 on the Flow, abort
(exit 3). Nothing here prints or exits; the caller gets a :class:`CollectResult`.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import polars as pl
import structlog

from ._time import iso_ms
from .checkpoint import is_postgres, read_checkpoint
from .client import MessagesClient, StudioClient, make_http_client, parse_datetime
from .credentials import Credentials
from .dispatch import RunControl
from .errors import Fatal, Rejected, StudioError, UsageError
from .outcomes import OutcomeStore, StoredOutcome
from .pacing import Pacer
from .reads import PacedReads
from .results import EXIT_ABORTED, EXIT_OK, EXIT_SOME_FAILED, EXIT_TEMPFAIL, build_results, write_results
from .spec import OUTCOME_BASE_COLUMNS, Spec, api_base_url, check_base_url, studio_base_url
from .twilio_clock import TwilioClock

__all__ = [
    "ANOTHER_SENDER",
    "CollectOptions",
    "CollectProgress",
    "CollectResult",
    "collect_exit_code",
    "collect_job",
    "context_value",
]

log = structlog.get_logger(__name__)

ANOTHER_SENDER = "another sender's run"
NOT_COLLECTED = "not collected yet"
DEFAULT_POLL_INTERVAL = 60.0
READ_ATTEMPTS = 12
# A group is committed after this many rows or this long, whichever comes first: a kill loses at most one.
GROUP_ROWS = 50
GROUP_SECONDS = 0.5
# Message statuses Twilio never changes again; any other (queued, sent, …) is fetched again next time.
FINAL_DELIVERY = frozenset({"delivered", "undelivered", "failed", "received", "read", "canceled"})
RUN_STATUSES = ("active", "ended", "failed")


@dataclass(frozen=True, kw_only=True)
class CollectOptions:
    """Choices for one ``collect``: fetch everything again, poll until every run ended, for how long at most."""

    refresh: bool = False
    wait: bool = False
    max_duration: float | None = None
    poll_interval: float = DEFAULT_POLL_INTERVAL
    sandbox: bool = False
    output: str | None = None
    clock: Callable[[], datetime] = field(default=lambda: datetime.now(UTC), compare=False)
    sleep: Callable[[float], Awaitable[None]] = field(default=asyncio.sleep, compare=False)


@dataclass(frozen=True)
class CollectProgress:
    """A snapshot for progress displays: runs fetched of this pass's total, by what they showed."""

    done: int
    total: int
    active: int
    ended: int
    failed: int


@dataclass(frozen=True)
class CollectResult:
    """The outcomes table (polars), counts by ``run_status``, the top values of each column, and the exit code."""

    outcomes: pl.DataFrame
    counts: dict[str, int]
    exit_code: int
    top_values: dict[str, list[tuple[str, int]]]
    requests: int
    retries: int
    outcomes_path: str | None
    aborted: str | None = None
    stopped_early: bool = False

    @property
    def still_active(self) -> int:
        """How many runs were still active when last fetched."""
        return self.counts.get("active", 0)

    def as_dict(self) -> dict[str, Any]:
        """Plain data for JSON."""
        return {
            "counts": self.counts,
            "still_active": self.still_active,
            "top_values": {k: [[v, n] for v, n in values] for k, values in self.top_values.items()},
            "requests": self.requests,
            "retries": self.retries,
            "outcomes": self.outcomes_path,
            "aborted": self.aborted,
            "stopped_early": self.stopped_early,
            "exit_code": self.exit_code,
        }


def collect_exit_code(counts: Mapping[str, int], *, aborted: bool = False, stopped_early: bool = False) -> int:
    """The one mapping for ``collect``: 3 aborted; 75 some run active or not collected; 1 some failed; else 0."""
    if aborted:
        return EXIT_ABORTED
    if stopped_early or counts.get("active", 0) or counts.get("not_collected", 0):
        return EXIT_TEMPFAIL
    if counts.get("failed", 0):
        return EXIT_SOME_FAILED
    return EXIT_OK


_MISSING = object()


def context_value(context: Mapping[str, Any], path: str) -> object:
    """The value at a dotted path of a run's Context (a list step may be an index); ``None`` when absent."""
    current: object = context
    for part in path.split("."):
        if isinstance(current, Mapping):
            current = current.get(part, _MISSING)
        elif isinstance(current, list) and part.isdigit() and int(part) < len(current):
            current = current[int(part)]
        else:
            return None
        if current is _MISSING:
            return None
    return current


def _error_code(value: object) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    return int(value) if isinstance(value, str) and value.strip().isdigit() else None


def _as_text(value: object) -> str | None:
    """A field's value as the outcomes table keeps it: text as is, anything else as JSON text."""
    if value is None or isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False)


@dataclass(frozen=True)
class _Target:
    """A row with a run to look at."""

    row: int
    to: str
    sid: str
    contact: str
    status: str
    marker: str | None


def _targets(spec: Spec, sandbox: bool) -> list[_Target]:
    if is_postgres(spec.output.checkpoint):
        # The outcomes store is a file beside the checkpoint; it has no PostgreSQL backend yet.
        raise UsageError(f"job {spec.job.id}: collect does not work with a postgresql:// checkpoint yet")
    view = read_checkpoint(spec.output.checkpoint)
    if view.plan is None:
        raise UsageError(f"{spec.output.checkpoint}: the checkpoint has no plan yet; run the job once")
    target = json.loads(view.meta.get("target", "{}"))
    if bool(target.get("sandbox")) != sandbox:
        made, asked = ("the sandbox", "Twilio") if target.get("sandbox") else ("Twilio", "the sandbox")
        raise UsageError(
            f"{spec.output.checkpoint}: its runs were made on {made}, so they cannot be fetched from {asked}; "
            f"{'add' if target.get('sandbox') else 'drop'} --sandbox"
        )
    results = build_results(view.plan, view.journal, input_digest=view.meta.get("input"), live=view.live)
    results = results.with_columns(view.plan.get_column("contact"))
    markers = view.journal.select("contact", "marker")
    rows = (
        results.filter(pl.col("status").is_in(["sent", "already_active"]) & pl.col("sid").is_not_null())
        .join(markers, on="contact", how="left", maintain_order="left")
        .select("row", "to", "sid", "contact", "status", "marker")
    )
    return [_Target(*r) for r in rows.iter_rows()]


def _asked(spec: Spec) -> str:
    """What a line was fetched for: a changed ``[collect]`` (or marker key) makes old lines worth fetching again."""
    c = spec.collect
    return json.dumps(
        {"fields": [list(f) for f in c.fields], "messages": list(c.message_status), "marker": spec.send.marker_key},
        sort_keys=True,
    )


def _value_columns(spec: Spec) -> list[tuple[str, pl.DataType]]:
    columns: list[tuple[str, pl.DataType]] = [(name, pl.String()) for name, _ in spec.collect.fields]
    for widget in spec.collect.message_status:
        columns += [(f"{widget}_delivery", pl.String()), (f"{widget}_delivery_error_code", pl.Int64())]
    return columns


class _Collector:
    """One collect invocation's fetching: the pacer, the retried reads, and the groups waiting to be committed."""

    def __init__(
        self,
        spec: Spec,
        store: OutcomeStore,
        studio: StudioClient,
        messages: MessagesClient,
        options: CollectOptions,
        control: RunControl,
        on_progress: Callable[[CollectProgress], None] | None,
    ) -> None:
        self.spec = spec
        self.store = store
        self.studio = studio
        self.messages = messages
        self.options = options
        self.control = control
        self.on_progress = on_progress
        rate = spec.collect.rate or spec.send.rate
        self.concurrency = spec.collect.concurrency or spec.send.concurrency
        self.reads = PacedReads(
            Pacer(rate), sleep=options.sleep, attempts=READ_ATTEMPTS, max_backoff=spec.send.max_backoff
        )
        self.calls = 0
        self.asked = _asked(spec)
        self.needs_context = bool(spec.collect.fields or spec.collect.message_status)
        self.account_sid: str | None = None
        self.aborted: str | None = None
        self.lines: dict[str, StoredOutcome] = store.load()
        self._group: list[StoredOutcome] = []
        self._flushed = time.monotonic()

    async def read(self, what: str, fn: Callable[[], Awaitable[dict[str, Any]]]) -> dict[str, Any]:
        self.calls += 1
        return await self.reads.call(what, fn)

    def due(self, targets: list[_Target], *, refresh: bool) -> list[_Target]:
        """The targets to fetch: all with ``refresh``, else those without a final line for this SID and this ask."""
        if refresh:
            return list(targets)
        due = []
        for t in targets:
            line = self.lines.get(t.contact)
            if line is None or line.sid != t.sid or not line.final or line.asked != self.asked:
                due.append(t)
        return due

    async def preflight(self) -> None:
        """GET the Flow: proves credentials and Flow (else ``Fatal``), and names the Account SID for Messages."""
        flow = await self.read("flow", self.studio.fetch_flow)
        account = flow.get("account_sid")
        self.account_sid = account if isinstance(account, str) else None

    async def run_pass(self, targets: list[_Target]) -> None:
        """Fetch these targets with ``concurrency`` workers until done, stopped or aborted; commit every line."""
        queue: asyncio.Queue[_Target] = asyncio.Queue()
        for t in targets:
            queue.put_nowait(t)
        seen: Counter[str] = Counter()
        total = len(targets)

        async def worker() -> None:
            while not self.control.stopping and self.aborted is None:
                try:
                    target = queue.get_nowait()
                except asyncio.QueueEmpty:
                    return
                try:
                    line = await self.fetch(target)
                except Fatal as exc:
                    self.aborted = exc.message
                    log.error("collect.aborted", reason=exc.message)
                    return
                seen[line.run_status] += 1
                self.keep(line)
                if self.on_progress is not None:
                    self.on_progress(
                        CollectProgress(sum(seen.values()), total, seen["active"], seen["ended"], seen["failed"])
                    )

        hard = self.control.bind()
        workers: asyncio.Future[Any] = asyncio.gather(*(worker() for _ in range(min(self.concurrency, max(1, total)))))
        stopper: asyncio.Future[Any] = asyncio.ensure_future(hard.wait())
        try:
            # A second stop request (hard) does not wait for the fetches in flight: they are fetched next time.
            await asyncio.wait([workers, stopper], return_when=asyncio.FIRST_COMPLETED)
        finally:
            workers.cancel()
            stopper.cancel()
            await asyncio.gather(workers, stopper, return_exceptions=True)
            self.flush()

    def keep(self, line: StoredOutcome) -> None:
        """Remember a fetched line; commit the group once it is big or old enough."""
        self.lines[line.contact] = line
        self._group.append(line)
        if len(self._group) >= GROUP_ROWS or time.monotonic() - self._flushed >= GROUP_SECONDS:
            self.flush()

    def flush(self) -> None:
        """Commit the lines fetched since the last commit."""
        self.store.save(self._group)
        self._group = []
        self._flushed = time.monotonic()

    def _line(self, target: _Target, status: str, **kw: Any) -> StoredOutcome:
        return StoredOutcome(
            contact=target.contact,
            sid=target.sid,
            run_status=status,
            asked=self.asked,
            fetched_at=iso_ms(self.options.clock()),
            **kw,
        )

    async def fetch(self, target: _Target) -> StoredOutcome:
        """Everything asked of one run; ``Fatal`` propagates, any other failure is this row's alone."""
        try:
            run = await self.read("run", partial(self.studio.fetch_run, target.sid))
        except Fatal:
            raise
        except Rejected as exc:
            gone = exc.http_status == 404
            message = (
                "Twilio no longer knows this run (404)" if gone else f"Twilio refused the run's GET: {exc.message}"
            )
            log.warning("collect.failed", row=target.row, sid=target.sid, reason=message)
            return self._line(target, "failed", error_message=message, final=True)
        except StudioError as exc:
            message = f"could not fetch the run: {exc.message}; collect again to retry"
            log.warning("collect.failed", row=target.row, sid=target.sid, reason=message)
            return self._line(target, "failed", error_message=message, final=False)
        ended = run.get("status") == "ended"
        ended_at = parse_datetime(run.get("date_updated")) if ended else None
        values: dict[str, Any] = {name: None for name, _ in _value_columns(self.spec)}
        note: str | None = None
        settled = True
        if self.needs_context:
            note, settled = await self._read_context(target, values)
        line = self._line(
            target,
            "ended" if ended else "active",
            ended_at=ended_at.strftime("%Y-%m-%dT%H:%M:%SZ") if ended_at else None,
            error_message=note,
            values=values,
            final=ended and settled,
        )
        log.debug("collect.row", row=target.row, sid=target.sid, run_status=line.run_status)
        return line

    async def _read_context(self, target: _Target, values: dict[str, Any]) -> tuple[str | None, bool]:
        """Fill ``values`` from the run's Context (and Messages); return a note and whether nothing is left to learn."""
        try:
            context = await self.read("context", partial(self.studio.fetch_context, target.sid))
        except Fatal:
            raise
        except Rejected as exc:
            return f"the run's Context could not be read: {exc.message}", True
        except StudioError as exc:
            return f"could not fetch the run's Context: {exc.message}; collect again to retry", False
        if target.status == "already_active" and not self._proven(context, target.marker):
            return ANOTHER_SENDER, True
        if target.status == "sent" and self._disproven(context, target.marker):
            # A v1 hand-back of another sender's run made a moment before ours reads as new: its marker tells.
            return ANOTHER_SENDER, True
        for name, path in self.spec.collect.fields:
            values[name] = _as_text(context_value(context, path))
        settled = True
        notes: list[str] = []
        for widget in self.spec.collect.message_status:
            sid = context_value(context, f"widgets.{widget}.outbound.Sid")
            if not isinstance(sid, str) or not sid:
                continue
            if self.account_sid is None:
                notes.append(f"{widget}: the Flow named no account_sid, so its message cannot be fetched")
                continue
            try:
                message = await self.read("message", partial(self.messages.fetch_message, self.account_sid, sid))
            except Fatal:
                raise
            except Rejected as exc:
                notes.append(f"{widget}: message {sid} could not be read: {exc.message}")
                continue
            except StudioError as exc:
                notes.append(f"{widget}: could not fetch message {sid}: {exc.message}; collect again to retry")
                settled = False
                continue
            status = message.get("status")
            code = message.get("error_code")
            values[f"{widget}_delivery"] = status if isinstance(status, str) else None
            values[f"{widget}_delivery_error_code"] = _error_code(code)
            settled = settled and status in FINAL_DELIVERY
        return ("; ".join(notes) or None), settled

    def _disproven(self, context: Mapping[str, Any], marker: str | None) -> bool:
        """Whether a run recorded as this contact's carries another marker, or none (only when ours is known)."""
        key = self.spec.send.marker_key
        data = context_value(context, "flow.data")
        return bool(key) and marker is not None and isinstance(data, Mapping) and data.get(key) != marker

    def _proven(self, context: Mapping[str, Any], marker: str | None) -> bool:
        """Whether an already-active run carries this contact's marker, so it is this job's."""
        key = self.spec.send.marker_key
        if not key or marker is None:
            return False
        data = context_value(context, "flow.data")
        return isinstance(data, Mapping) and data.get(key) == marker


def _table(spec: Spec, targets: list[_Target], lines: Mapping[str, StoredOutcome]) -> pl.DataFrame:
    """The outcomes table: one line per target, in input order."""
    value_columns = _value_columns(spec)
    schema: dict[str, pl.DataType] = {
        "row": pl.Int64(),
        "to": pl.String(),
        "sid": pl.String(),
        "run_status": pl.String(),
        "ended_at": pl.String(),
        "error_message": pl.String(),
        **dict(value_columns),
    }
    assert tuple(schema)[: len(OUTCOME_BASE_COLUMNS)] == OUTCOME_BASE_COLUMNS
    records = []
    for t in targets:
        line = lines.get(t.contact)
        if line is None or line.sid != t.sid:
            records.append((t.row, t.to, t.sid, None, None, NOT_COLLECTED, *(None for _ in value_columns)))
            continue
        records.append(
            (
                t.row,
                t.to,
                t.sid,
                line.run_status,
                line.ended_at,
                line.error_message,
                *(line.values.get(name) for name, _ in value_columns),
            )
        )
    return pl.DataFrame(records, schema=schema, orient="row")


def _counts(table: pl.DataFrame) -> dict[str, int]:
    found = Counter(s or "not_collected" for s in table.get_column("run_status").to_list())
    counts = {status: int(found.get(status, 0)) for status in RUN_STATUSES}
    if found.get("not_collected"):
        counts["not_collected"] = found["not_collected"]
    return counts


def _top_values(spec: Spec, table: pl.DataFrame, n: int = 5) -> dict[str, list[tuple[str, int]]]:
    top: dict[str, list[tuple[str, int]]] = {}
    for name, _ in _value_columns(spec):
        if name.endswith("_delivery_error_code"):
            continue
        values = Counter(str(v) for v in table.get_column(name).to_list() if v is not None)
        top[name] = values.most_common(n)
    return top


def messages_base_url(spec: Spec, credentials: Credentials) -> str:
    """The Messages API host: ``[flow] base_url`` when set (the sandbox serves both), else Twilio's by region/edge."""
    if spec.flow.base_url:
        return spec.flow.base_url.rstrip("/")
    return api_base_url(spec.flow.region or credentials.region, spec.flow.edge or credentials.edge)


async def collect_job(
    spec: Spec,
    *,
    credentials: Credentials,
    options: CollectOptions = CollectOptions(),
    control: RunControl | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
    on_progress: Callable[[CollectProgress], None] | None = None,
) -> CollectResult:
    """Fetch what happened in each run of a job that has run; store it; write the outcomes table.

    Raises ``UsageError`` when the job has no checkpoint (or one made for another target)
    and ``CheckpointLocked`` when another collect of the job is running.
    """
    control = control or RunControl()
    base_url = studio_base_url(spec.flow, region=credentials.region, edge=credentials.edge)
    check_base_url(base_url)
    targets = _targets(spec, options.sandbox)
    with OutcomeStore.open(spec.output.checkpoint) as store:
        http = make_http_client(
            username=credentials.username,
            password=credentials.password,
            concurrency=spec.collect.concurrency or spec.send.concurrency,
            connect_timeout=spec.send.connect_timeout,
            read_timeout=spec.send.read_timeout,
            transport=transport,
        )
        async with http:
            clock = TwilioClock(wall=options.clock)
            studio = StudioClient(http, base_url=base_url, flow_sid=spec.flow.sid, api=spec.flow.api, clock=clock)
            messages = MessagesClient(http, base_url=messages_base_url(spec, credentials), clock=clock)
            c = _Collector(spec, store, studio, messages, options, control, on_progress)
            timer = (
                asyncio.get_running_loop().call_later(options.max_duration, control.request_stop)
                if options.max_duration is not None
                else None
            )
            unreachable = False
            try:
                due = c.due(targets, refresh=options.refresh)
                if due:
                    await c.preflight()
                while due:
                    log.info("collect.pass", runs=len(due), of=len(targets))
                    await c.run_pass(due)
                    if c.aborted is not None or control.stopping or not options.wait:
                        break
                    if not any(c.lines[t.contact].run_status == "active" for t in targets if t.contact in c.lines):
                        break
                    await control.wait_stop(options.poll_interval, options.sleep)
                    due = [] if control.stopping else c.due(targets, refresh=False)
            except Fatal as exc:
                c.aborted = exc.message
                log.error("collect.aborted", reason=exc.message)
            except StudioError as exc:
                # The Flow's GET failed after every retry: nothing is wrong with the job; try again later.
                log.error("collect.unreachable", reason=exc.message)
                unreachable = True
            finally:
                if timer is not None:
                    timer.cancel()
            stopped_early = unreachable or (control.stopping and bool(c.due(targets, refresh=False)))
            table = _table(spec, targets, c.lines)
    counts = _counts(table)
    path = options.output or spec.output.outcomes
    if path is not None:
        await asyncio.to_thread(write_results, table, path)
    code = collect_exit_code(counts, aborted=c.aborted is not None, stopped_early=stopped_early)
    result = CollectResult(
        outcomes=table,
        counts=counts,
        exit_code=code,
        top_values=_top_values(spec, table),
        requests=c.reads.requests,
        retries=c.reads.requests - c.calls,
        outcomes_path=str(Path(path)) if path is not None else None,
        aborted=c.aborted,
        stopped_early=stopped_early,
    )
    log.info("collect.summary", **result.as_dict())
    return result
