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
import dataclasses
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import polars as pl
import structlog

from ..checkpoint import is_locked, is_postgres
from ..control import RunControl
from ..credentials import Credentials
from ..errors import Fatal, StudioError
from ..exits import collect_exit_code
from ..history import open_opt_outs
from ..job import Spec, check_tables, rehearsal_target, table_owner
from ..tables import write_output
from ..twilio import (
    RETENTION,
    MessagesClient,
    StudioClient,
    TwilioClock,
    api_base_url,
    check_base_url,
    make_http_client,
    studio_base_url,
)
from .fetch import ANOTHER_SENDER, Collector, CollectProgress
from .outcomes import OutcomeStore
from .table import Target, context_value, counts, outcomes_table, targets, top_values

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

DEFAULT_POLL_INTERVAL = 60.0


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
    run_sending: bool = False  # a run of the job held its checkpoint when collect ended: more runs may come
    opted_out: int = 0
    queue_seconds_max: float | None = None
    queue_seconds_median: float | None = None

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
            "run_sending": self.run_sending,
            "opted_out": self.opted_out,
            "queue_seconds_max": self.queue_seconds_max,
            "queue_seconds_median": self.queue_seconds_median,
            "exit_code": self.exit_code,
        }


def messages_base_url(spec: Spec, credentials: Credentials) -> str:
    """The Messages API host: ``[flow] base_url`` when set (the sandbox serves both), else Twilio's by region/edge."""
    if spec.flow.base_url:
        return spec.flow.base_url.rstrip("/")
    return api_base_url(spec.flow.region or credentials.region, spec.flow.edge or credentials.edge)


def _write_outcomes(spec: Spec, table: pl.DataFrame, path: str | Path, key: str) -> None:
    """The outcomes written to ``path`` (a file, or a table whose rows of this job id must be this job's)."""
    job_id, period, guard, owner = spec.job.template, spec.job.period, spec.output.csv_guard, table_owner(spec)
    write_output(table, path, job_id=job_id, period=period, key=key, csv_guard=guard, owner=owner)


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
    if options.output is not None:
        options = dataclasses.replace(options, output=str(rehearsal_target(spec, options.output)))
        out, history = spec.output, spec.history.path
        check_tables(
            [("--output", options.output)],
            checkpoint=out.checkpoint,
            history=history,
            source=spec.input,
            named=spec.job.named,
        )
    base_url = studio_base_url(spec.flow, region=credentials.region, edge=credentials.edge)
    check_base_url(base_url)
    rows = targets(spec, options.sandbox)
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
            c = Collector(spec, store, studio, messages, control, on_progress, clock=options.clock, sleep=options.sleep)
            with _stop_after(options.max_duration, control):
                unreachable = await _passes(c, rows, options, control)
            _warn_retention(c, rows, clock)
            stopped_early = unreachable or (control.stopping and bool(c.due(rows, refresh=False)))
            table = outcomes_table(spec, rows, c.lines)
    _record_opt_outs(spec, c.opted_out)
    path = options.output or spec.output.outcomes
    if path is not None:
        key = "--output" if options.output else "output.outcomes"
        await asyncio.to_thread(_write_outcomes, spec, table, path, key)
    sending = not is_postgres(spec.output.checkpoint) and is_locked(spec.output.checkpoint)
    if sending:
        log.warning("collect.run_still_sending", checkpoint=spec.output.checkpoint)
    result = _result(spec, c, table, path, stopped_early or sending)
    result = dataclasses.replace(result, run_sending=sending)
    log.info("collect.summary", **result.as_dict())
    return result


def _record_opt_outs(spec: Spec, opted_out: list[tuple[str, str, float]]) -> None:
    """Keep the contacts whose messages failed with 21610, so later jobs from that sender leave them out."""
    if not opted_out:
        return
    store = open_opt_outs(spec, create=True)
    if store is None:
        log.warning(
            "collect.opt_outs_unkept",
            contacts=len(opted_out),
            message="contacts opted out (21610), but the job has no [history] path to keep them in",
        )
        return
    with store:
        store.add_opt_outs(opted_out)
    log.info("collect.opt_outs", contacts=len({to for to, _, _ in opted_out}))


RETENTION_WARNING = timedelta(days=25)


def _warn_retention(c: Collector, rows: list[Target], clock: TwilioClock) -> None:
    """Warn when runs not fully collected yet are near Studio's 30-day retention, naming the days left."""
    now = clock.now()
    unfinished = [
        t.started
        for t in rows
        if t.started is not None and not (t.contact in c.lines and c.lines[t.contact].final)
        if now - t.started >= RETENTION_WARNING
    ]
    if not unfinished:
        return
    left = max(0.0, (min(unfinished) + RETENTION - now).total_seconds() / 86400)
    log.warning(
        "collect.retention",
        runs=len(unfinished),
        days_left=round(left, 1),
        message=f"{len(unfinished)} runs not collected in full are older than 25 days: Twilio deletes runs "
        f"30 days after they start, so the oldest has {left:.1f} days left; collect them soon",
    )


@contextmanager
def _stop_after(max_duration: float | None, control: RunControl) -> Iterator[None]:
    """Request a graceful stop once ``max_duration`` seconds have passed (never, without one)."""
    if max_duration is None:
        yield
        return
    timer = asyncio.get_running_loop().call_later(max_duration, control.request_stop)
    try:
        yield
    finally:
        timer.cancel()


async def _passes(c: Collector, rows: list[Target], options: CollectOptions, control: RunControl) -> bool:
    """Fetch what is due, and with ``wait`` poll again while runs are active; True when Studio was unreachable."""
    try:
        due = c.due(rows, refresh=options.refresh)
        if due:
            await c.preflight()
        while due:
            log.info("collect.pass", runs=len(due), of=len(rows))
            await c.run_pass(due)
            if c.aborted is not None or control.stopping or not options.wait:
                break
            if not any(c.lines[t.contact].run_status == "active" for t in rows if t.contact in c.lines):
                break
            await control.wait_stop(options.poll_interval, options.sleep)
            due = [] if control.stopping else c.due(rows, refresh=False)
    except Fatal as exc:
        c.aborted = exc.message
        log.error("collect.aborted", reason=exc.message)
    except StudioError as exc:
        # The Flow's GET failed after every retry: nothing is wrong with the job; try again later.
        log.error("collect.unreachable", reason=exc.message)
        return True
    return False


def _result(spec: Spec, c: Collector, table: pl.DataFrame, path: str | None, stopped_early: bool) -> CollectResult:
    """The result of one collect: counts, the exit code they map to, the top values, the requests made."""
    found = counts(table)
    waits = sorted(c.queue_seconds)
    return CollectResult(
        opted_out=len({to for to, _, _ in c.opted_out}),
        queue_seconds_max=waits[-1] if waits else None,
        queue_seconds_median=waits[len(waits) // 2] if waits else None,
        outcomes=table,
        counts=found,
        exit_code=collect_exit_code(found, aborted=c.aborted is not None, stopped_early=stopped_early),
        top_values=top_values(spec, table),
        requests=c.reads.requests,
        retries=c.reads.requests - c.calls,
        outcomes_path=(path if "://" in path else str(Path(path))) if path is not None else None,
        aborted=c.aborted,
        stopped_early=stopped_early,
    )
