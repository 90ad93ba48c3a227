"""The run, start to end: plan, lock the checkpoint, preflight, settle what earlier runs left open, send, report.

::

    prepare (no network) -> Checkpoint.open (job + target bound, locked) -> preflight (Flow published?)
      -> reconcile possibly-sent contacts of earlier runs -> dispatch new contacts
      -> reconcile this run's possibly-sent contacts, send the ones never created -> results table

Nothing here prints or exits; the caller gets a :class:`RunResult`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, BinaryIO

import httpx
import polars as pl
import structlog

from ._time import iso_ms, parse_iso
from .checkpoint import CheckpointStore, Outcome, Target, open_checkpoint, read_checkpoint
from .client import StudioClient, make_http_client
from .credentials import Credentials
from .dispatch import Dispatcher, Item, Progress, RunControl
from .errors import ConfigError, FlowNotFound, FlowUnwired, StudioError
from .flowcheck import FlowWiringError
from .flowreview import log_findings, review
from .hygiene import HistoryStore, open_history
from .pacing import Pacer
from .prepare import Prepared, fingerprint, params_hash, prepare
from .reads import PacedReads
from .reconcile import Lookup, Reconciler
from .recorder import Recorder
from .results import build_results, counts_by_status, exit_code_for, write_results
from .spec import Spec, check_base_url, studio_base_url, studio_region_warning
from .states import FINAL, POSSIBLY_SENT, RowState
from .twilio_clock import TwilioClock
from .windows import SendWindow, annotate_windows, send_window

__all__ = ["Progress", "RunControl", "RunOptions", "RunResult", "RunSummary", "exit_code_for", "run_job", "target_for"]

log = structlog.get_logger(__name__)

CLOCK_WARNING_SECONDS = 5.0
READ_ATTEMPTS = 12
RECENT_SIDS = timedelta(minutes=10)


@dataclass(frozen=True, kw_only=True)
class RunOptions:
    """Choices for one invocation, as opposed to the job itself."""

    limit: int | None = None
    max_duration: float | None = None
    restart: bool = False
    yes: bool = False
    wait: bool = False
    sandbox: bool = False
    clock: Callable[[], datetime] = field(default=lambda: datetime.now(UTC), compare=False)
    sleep: Callable[[float], Awaitable[None]] = field(default=asyncio.sleep, compare=False)


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
    lookups: int = 0
    reached_earlier: int = 0
    parameters_changed: int = 0
    clock_offset: float | None = None

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
            "reconciliation_lookups": self.lookups,
            "reached_by_earlier_runs": self.reached_earlier,
            "reached_earlier_parameters_changed": self.parameters_changed,
            "clock_offset_seconds": None if self.clock_offset is None else round(self.clock_offset, 3),
        }


@dataclass(frozen=True)
class RunResult:
    """The results table, its counts, and the exit code the CLI would give."""

    results: pl.DataFrame
    counts: dict[str, int]
    exit_code: int
    summary: RunSummary


def target_for(spec: Spec, credentials: Credentials | None, *, sandbox: bool) -> Target:
    """The Twilio this job's runs go to: base URL (with region and edge), the credential's SID, sandbox or not."""
    if sandbox:
        return Target(base_url="sandbox", identity=None, sandbox=True)
    region = credentials.region if credentials else None
    edge = credentials.edge if credentials else None
    return Target(
        base_url=studio_base_url(spec.flow, region=region, edge=edge),
        identity=credentials.username if credentials else None,
    )


def _earlier(plan: pl.DataFrame, checkpoint: CheckpointStore, digest: str) -> tuple[int, int]:
    """Rows whose contact a run for an earlier input reached, and how many of them now carry other Parameters."""
    finals = checkpoint.reached_for_other_input(digest)
    if finals.height == 0:
        return 0, 0
    rows = plan.filter(pl.col("status") == "pending").join(
        finals.select("contact", pl.col("params_hash").alias("was")), on="contact", how="inner"
    )
    changed = sum(params_hash(p) != was for p, was in rows.select("parameters", "was").iter_rows())
    return rows.height, changed


def _to_send(plan: pl.DataFrame, open_lines: pl.DataFrame, settled: pl.Series) -> Iterator[Item]:
    """Contacts of the plan with no final or possibly-sent line (a generator: a million rows build as they go)."""
    todo = plan.filter((pl.col("status") == "pending") & ~pl.col("contact").is_in(settled.implode()))
    todo = todo.join(open_lines.select("contact", "state", "attempts"), on="contact", how="left", maintain_order="left")
    todo = todo.filter(pl.col("state").is_null() | (pl.col("state") == RowState.PENDING.value))
    zones = (
        todo.get_column("zones")
        if "zones" in todo.columns
        else pl.repeat(None, todo.height, dtype=pl.String, eager=True)
    )
    columns = todo.select("row", "contact", "to", "from", "parameters", pl.col("attempts").fill_null(0))
    for (row, contact, to, from_, params, attempts), zone in zip(columns.iter_rows(), zones.to_list(), strict=True):
        yield Item(row=row, contact=contact, to=to, from_=from_, parameters=params, attempts=attempts, zones=zone)


class _Run:
    """One invocation's pieces, wired once; lives only inside :func:`run_job`."""

    def __init__(
        self,
        spec: Spec,
        plan: pl.DataFrame,
        cp: CheckpointStore,
        client: StudioClient,
        options: RunOptions,
        dispatcher: Dispatcher,
    ) -> None:
        self.spec = spec
        self.plan = plan
        self.cp = cp
        self.client = client
        self.options = options
        self.d = dispatcher
        self.reads = PacedReads(
            dispatcher.pacer,
            sleep=options.sleep,
            # A read changes nothing at Twilio: it is worth more tries than a create.
            attempts=max(READ_ATTEMPTS, 2 * spec.send.max_attempts),
            max_backoff=spec.send.max_backoff,
            on_request=lambda: dispatcher.recorder.count("lookups"),
        )
        self.reconciler = Reconciler(client, self.reads, marker_key=spec.send.marker_key, taken_sids=self._taken)

    async def _taken(self, since: datetime) -> set[str]:
        ours = since - timedelta(seconds=self.client.clock.offset or 0.0)
        return await asyncio.to_thread(self.cp.sids_since, iso_ms(ours))

    def lookup(self, item: Item) -> Lookup:
        """What reconciliation needs of a possibly-sent item (its intent on Twilio's clock)."""
        if item.intent_twilio is not None:
            since = item.intent_twilio
        else:
            since = self.client.clock.to_twilio(parse_iso(item.intent_at) if item.intent_at else self.options.clock())
        return Lookup(contact=item.contact, to=item.to, marker=item.marker, since=since)

    async def settle(self, items: list[Item]) -> list[Item]:
        """Reconcile possibly-sent items; record the found and the undecided; return those never created."""
        wait = self.d.last_ambiguous + self.spec.send.reconcile_delay - time.monotonic()
        if wait > 0:
            await self.options.sleep(wait)
        settlement = await self.reconciler.settle([self.lookup(i) for i in items])
        self.d.stats.lookups += settlement.lookups
        retry: list[Item] = []
        for item in items:
            if item.contact in settlement.found:
                self.d.stats.reconciled += 1
                self.d.record(item, RowState.SENT, sid=settlement.found[item.contact])
            elif item.contact in settlement.undecided:
                self.d.recorder.outcome(
                    Outcome(
                        contact=item.contact,
                        state=RowState.UNCERTAIN,
                        error_message=f"possibly sent; {settlement.undecided[item.contact]}",
                        attempts=item.attempts,
                    )
                )
            else:
                retry.append(item)
        return retry

    async def settle_earlier(self, lines: pl.DataFrame) -> None:
        """Contacts an earlier run may have sent: settle them before anything new is sent."""
        items = [
            Item(
                row=row,
                contact=contact,
                to=to,
                from_=from_,
                parameters=None,
                marker=marker,
                attempts=attempts or 0,
                intent_at=intent_at,
                intent_twilio=parse_iso(theirs) if theirs else None,
            )
            for row, contact, to, from_, marker, attempts, intent_at, theirs in lines.select(
                "row", "contact", "to_addr", "from_addr", "marker", "attempts", "intent_at", "intent_twilio_at"
            ).iter_rows()
        ]
        newest = max((i.intent_at or "") for i in items)
        age = (self.options.clock() - parse_iso(newest)).total_seconds() if newest else 0.0
        self.d.last_ambiguous = time.monotonic() - age
        log.info("reconcile.start", rows=len(items))
        for item in await self.settle(items):
            self.d.recorder.outcome(Outcome(contact=item.contact, state=RowState.PENDING, attempts=item.attempts))
        await self.d.recorder.flush()

    async def settle_this_run(self) -> None:
        """This run's possibly-sent contacts: reconcile, then send again the ones never created."""
        d = self.d
        while d.uncertain and d.aborted is None and not d.control.stopping:
            items, d.uncertain = d.uncertain, []
            retry = await self.settle(items)
            for item in retry:
                if item.attempts >= self.spec.send.max_attempts:
                    d.recorder.outcome(
                        Outcome(
                            contact=item.contact,
                            state=RowState.UNCERTAIN,
                            error_message=f"possibly sent, not found in Studio after {item.attempts} attempts",
                            attempts=item.attempts,
                        )
                    )
            sendable = [i for i in retry if i.attempts < self.spec.send.max_attempts]
            if sendable:
                await d.dispatch(iter(sendable), None)

    def check_flow(self, published: dict[str, Any]) -> None:
        """Hold the job against the published Flow: abort an unwired trigger, warn (or refuse) missing variables."""
        if not isinstance(published.get("definition"), dict):
            log.warning("flow.unchecked", message="the published revision has no readable definition: not checked")
            return
        try:
            found = review(self.spec, self.plan, published)
        except FlowWiringError as exc:
            self.d.aborted = FlowUnwired(str(exc))
            return
        log_findings(found)
        if found.check.missing and self.spec.flow.strict_variables:
            names = ", ".join(f"flow.data.{v.path} ({', '.join(v.widgets)})" for v in found.check.missing)
            raise ConfigError(
                "flow.strict_variables",
                f"the Flow prints {names}, which the job does not supply; map it or give it a default in the Flow. "
                "Nothing was sent.",
            )

    async def preflight(self) -> None:
        """Prove the credentials and that the Flow has a published revision before any row is sent."""
        try:
            flow = await self.reads.call("flow", self.client.fetch_flow)
            account = flow.get("account_sid")
            if isinstance(account, str) and account and not self.options.sandbox:
                await asyncio.to_thread(self.cp.learn_account, account)
            published = await self.reads.call("published revision", self.client.fetch_published)
        except FlowNotFound as exc:
            self.d.aborted = exc
        except StudioError as exc:
            if exc.http_status in (401, 403) or exc.code == 20003:
                self.d.aborted = exc
            else:
                raise
        else:
            if published is None:
                self.d.aborted = FlowNotFound(
                    f"the Flow {self.spec.flow.sid} has no published revision: publish it in the Studio console"
                )
            else:
                if flow.get("revision") != published.get("revision"):
                    log.warning(
                        "flow.draft",
                        message=f"the Flow has a newer unpublished draft (revision {flow.get('revision')}); "
                        f"runs will use revision {published.get('revision')}, the last published",
                    )
                self.check_flow(published)
        if self.d.aborted is not None:
            log.error("run.aborted", reason=self.d.aborted.message, http_status=self.d.aborted.http_status)
        offset = self.client.clock.offset
        log.info("clock.offset", twilio_minus_ours=None if offset is None else round(offset, 3))
        if offset is not None and abs(offset) > CLOCK_WARNING_SECONDS:
            log.warning(
                "clock.skew",
                seconds=round(offset, 1),
                message="this machine's clock and Twilio's differ; batch-engage uses Twilio's, but check NTP",
            )


async def _send_all(run: _Run, source: Iterator[Item], options: RunOptions, window: SendWindow | None) -> bool:
    """Send every item whose window is open, waiting for windows with ``--wait``; True when rows are left waiting."""
    d = run.d
    if window is None:
        await d.dispatch(source, options.limit)
        return False
    items = list(source)
    while True:
        now = options.clock()
        is_open = {z: window.is_open(z.split(","), now) for z in {i.zones for i in items if i.zones}}
        ready = [i for i in items if not i.zones or is_open[i.zones]]
        held = [i for i in items if i.zones and not is_open[i.zones]]
        left = None if options.limit is None else options.limit - d.dispatched
        await d.dispatch(iter(ready), left)
        held += d.held
        d.held = []
        limit_reached = options.limit is not None and d.dispatched >= options.limit
        if not held or d.stopping() or limit_reached:
            return bool(held) and not d.stopping() and not limit_reached
        opens = _next_opening(window, held, options.clock())
        if not options.wait:
            log.info("window.waiting", rows=len(held), next_open=iso_ms(opens))
            return True
        log.info("window.sleep", rows=len(held), until=iso_ms(opens))
        await d.control.wait_stop(max(0.0, (opens - options.clock()).total_seconds()), options.sleep)
        items = held


def _next_opening(window: SendWindow, items: list[Item], now: datetime) -> datetime:
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
    settle_only: bool = False,
) -> RunResult:
    """Run one job to the end (or until stopped) and return its results.

    ``settle_only`` reads no input: it reconciles what the checkpoint left possibly sent
    (from the plan stored in it) and sends nothing; a new period does this to the last one.
    """
    control = control or RunControl()
    started = time.monotonic()
    base_url = studio_base_url(spec.flow, region=credentials.region, edge=credentials.edge)
    check_base_url(base_url)
    region_warning = None if spec.flow.base_url else studio_region_warning(spec.flow.region or credentials.region)
    if region_warning:
        log.warning("region.studio", message=region_warning)
    if settle_only:
        view = read_checkpoint(spec.output.checkpoint)
        assert view.plan is not None
        prepared = Prepared(plan=view.plan, fingerprint=fingerprint(spec), input_digest=view.meta.get("input", ""))
    else:
        prepared = prepare(spec, frame=frame, stdin=stdin)
    target = target_for(spec, credentials, sandbox=options.sandbox)
    with open_checkpoint(
        spec.output.checkpoint,
        prepared.fingerprint,
        target,
        restart=options.restart,
        yes=options.yes,
        extra_meta={"job_id": spec.job.id, **({"period": spec.job.period} if spec.job.period else {})},
    ) as cp:
        cp.start_run(iso_ms(options.clock()), prepared.input_digest)
        await asyncio.to_thread(cp.save_plan, prepared.plan)
        history = open_history(spec.history.path) if spec.history.path and not options.sandbox else None
        try:
            outcome = await _run_with_checkpoint(
                spec, prepared, cp, credentials, base_url, options, control, transport, on_progress, history
            )
        finally:
            if history is not None:
                history.close()
        d, stopped_early, reached_earlier, changed = outcome
        journal = cp.journal()
        results = annotate_windows(
            prepared.plan,
            build_results(prepared.plan, journal, input_digest=prepared.input_digest),
            spec,
            options.clock(),
        )
        counts = counts_by_status(results)
        code = exit_code_for(counts, aborted=d.aborted is not None, stopped_early=stopped_early and d.aborted is None)
        cp.finish_run(iso_ms(options.clock()), code)
    await asyncio.to_thread(write_results, results, spec.output.results)
    stats = d.stats
    active = (stats.last_answer or 0) - (stats.first_send or 0)
    summary = RunSummary(
        counts=counts,
        duration=time.monotonic() - started,
        requests=stats.requests,
        rate_limited=stats.rate_limited,
        retries=stats.retries,
        achieved_rate=stats.created / active if active > 0 else 0.0,
        configured_rate=spec.send.rate,
        settled_rate=d.pacer.rate,
        top_errors=[{"code": c, "message": m, "rows": n} for (c, m), n in stats.errors.most_common(5)],
        results_path=spec.output.results,
        checkpoint_path=spec.output.checkpoint,
        aborted=d.aborted.message if d.aborted else None,
        stopped_early=stopped_early and d.aborted is None,
        reconciled=stats.reconciled,
        lookups=stats.lookups,
        reached_earlier=reached_earlier,
        parameters_changed=changed,
        clock_offset=d.client.clock.offset,
    )
    log.info("run.summary", exit_code=code, **summary.as_dict())
    return RunResult(results=results, counts=counts, exit_code=code, summary=summary)


async def _run_with_checkpoint(
    spec: Spec,
    prepared: Prepared,
    cp: CheckpointStore,
    credentials: Credentials,
    base_url: str,
    options: RunOptions,
    control: RunControl,
    transport: httpx.AsyncBaseTransport | None,
    on_progress: Callable[[Progress], None] | None,
    history: HistoryStore | None,
) -> tuple[Dispatcher, bool, int, int]:
    plan = prepared.plan
    reached_earlier, changed = _earlier(plan, cp, prepared.input_digest)
    if reached_earlier:
        log.info("input.reached_earlier", rows=reached_earlier, parameters_changed=changed)
    http = make_http_client(
        username=credentials.username,
        password=credentials.password,
        concurrency=spec.send.concurrency,
        connect_timeout=spec.send.connect_timeout,
        read_timeout=spec.send.read_timeout,
        transport=transport,
    )
    async with http:
        client = StudioClient(
            http, base_url=base_url, flow_sid=spec.flow.sid, api=spec.flow.api, clock=TwilioClock(wall=options.clock)
        )
        pacer = Pacer(spec.send.rate)
        recorder = Recorder(cp, history, now=lambda: options.clock().timestamp(), rate=lambda: pacer.rate)
        possibly = cp.open_lines().filter(pl.col("state").is_in([s.value for s in POSSIBLY_SENT]))
        finals = cp.contacts_in(FINAL)
        sendable = plan.filter(pl.col("status") == "pending")
        total = sendable.height
        done = sendable.filter(pl.col("contact").is_in(finals.implode())).height
        d = Dispatcher(
            spec,
            checkpoint=cp,
            client=client,
            control=control,
            recorder=recorder,
            pacer=pacer,
            history=history,
            window=send_window(spec),
            wall=options.clock,
            on_progress=on_progress,
            total=total,
            done=done,
            sids=cp.sids_since(iso_ms(options.clock() - RECENT_SIDS)) if spec.flow.api == "engagements" else set(),
        )
        run = _Run(spec, plan, cp, client, options, d)
        done_flushing = asyncio.Event()
        flusher = asyncio.create_task(recorder.run(done_flushing))
        timer = (
            asyncio.get_running_loop().call_later(options.max_duration, control.request_stop)
            if options.max_duration is not None
            else None
        )
        stopped_early = False
        try:
            has_work = possibly.height > 0 or total > done
            if has_work and spec.send.preflight and not control.stopping:
                await run.preflight()
            if d.aborted is None and possibly.height and not control.stopping:
                await run.settle_earlier(possibly)
            waiting = False
            if d.aborted is None and not control.stopping:
                settled = cp.contacts_in(FINAL | POSSIBLY_SENT)
                waiting = await _send_all(run, _to_send(plan, cp.open_lines(), settled), options, d.window)
            await run.settle_this_run()
            stopped_early = control.stopping or waiting
        except StudioError as exc:
            # Preflight could not reach Studio: nothing was sent; try again later.
            log.error("run.unreachable", reason=exc.message)
            stopped_early = True
        finally:
            if timer is not None:
                timer.cancel()
            done_flushing.set()
            await flusher
    return d, stopped_early, reached_earlier, changed
