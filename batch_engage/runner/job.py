"""The run, start to end: plan, lock the checkpoint, preflight, settle what earlier runs left open, send, report.

::

    prepare (no network) -> Checkpoint.open (job + target bound, locked) -> preflight (Flow published?)
      -> reconcile possibly-sent contacts of earlier runs -> dispatch new contacts
      -> reconcile this run's possibly-sent contacts, send the ones never created -> results table

The pieces live beside it: ``preflight``, ``settle``, ``schedule`` (send windows), ``dispatch``.
Nothing here prints or exits; the caller gets a :class:`RunResult`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Callable
from functools import partial
from typing import BinaryIO

import httpx
import polars as pl
import structlog

from ..checkpoint import (
    CheckpointStore,
    later_period_bound_to,
    other_list_refused,
    period_behind,
    reached_not_in,
    read_checkpoint,
    stored_plan,
)
from ..clock import iso_ms
from ..control import Progress, RunControl, StoppableClock
from ..errors import OutputFailed, StorageFailed, UsageError
from ..history import open_history
from ..job import Spec, table_owner
from ..plan import Prepared, annotate_windows, mask, prepare
from ..postgres import masked
from ..results import SEGMENTS_META, build_results, counts_by_status, with_segments
from ..states import REACHED
from ..tables import write_output
from ..twilio import load_transport
from .ending import Ending, ending
from .failures import Storage
from .known import Known
from .launch import Launch
from .lifecycle import close, journal_lines, opened
from .opening import EarlyOpening, checkpoint_opening, opens_early, plan_while_opening
from .phases import ARRIVAL_META, Invocation
from .sending import Sent, run_with_checkpoint
from .values import RunOptions, RunResult, RunSummary
from .variants import count_holdout, kept_variants

__all__ = ["run_job"]

log = structlog.get_logger(__name__)

DEFAULT_OPTIONS = RunOptions()


def _prepared(
    job: Launch,
    frame: pl.DataFrame | pl.LazyFrame | None,
    stdin: BinaryIO | None,
    resumed: bool,
    *,
    stored: bool,
    restart: bool,
) -> Prepared:
    """The plan: from the input, or (``stored``) the one the checkpoint keeps. A ``resumed`` run (its checkpoint
    opened early) takes the kept plan when it was made from what this one would be made from."""
    if not stored:
        kept_plan = partial(stored_plan, job.spec.output.checkpoint) if resumed else None
        kept = kept_variants(job.spec, restart=restart)
        return prepare(job.spec, frame=frame, stdin=stdin, kept=kept, stored=kept_plan)
    view = read_checkpoint(job.spec.output.checkpoint)
    assert view.plan is not None
    return Prepared(plan=view.plan, fingerprint=dict(job.fingerprint), input_digest=view.meta.get("input", ""))


def _summary(spec: Spec, sent: Sent, counts: dict[str, int], duration: float, end: Ending) -> RunSummary:
    d, stats = sent.d, sent.d.stats
    return RunSummary(
        counts=counts,
        duration=duration,
        requests=stats.requests,
        rate_limited=stats.rate_limited,
        retries=stats.retries,
        achieved_rate=d.recorder.achieved_rate(),
        configured_rate=spec.send.rate,
        settled_rate=d.pacer.rate,
        top_errors=[{"code": c, "message": m, "rows": n} for (c, m), n in stats.errors.most_common(5)],
        results_path=spec.output.results,
        checkpoint_path=masked(spec.output.checkpoint),
        aborted=d.aborted.message if d.aborted else None,
        stopped_early=sent.stopped_early and d.aborted is None,
        stopped_because=end.reason,
        checkpoint_repaired=sent.repaired,
        reconciled=stats.reconciled,
        lookups=stats.lookups,
        reached_earlier=sent.reached_earlier,
        parameters_changed=sent.changed,
        left_out=sent.left_out,
        clock_offset=d.client.clock.offset,
        capacity=d.capacity,
    )


async def run_job(
    launched: Launch,
    *,
    frame: pl.DataFrame | pl.LazyFrame | None = None,
    options: RunOptions = DEFAULT_OPTIONS,
    control: RunControl | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
    on_progress: Callable[[Progress], None] | None = None,
    stdin: BinaryIO | None = None,
    settle_only: bool = False,
    recover: str | None = None,
    on_start: Callable[[str], None] | None = None,
) -> RunResult:
    """Run one job, resolved by :func:`launch`, to the end (or until stopped) and return its results.

    ``settle_only`` reads no input: it reconciles what the checkpoint left possibly sent
    (from the plan stored in it) and sends nothing; a new period does this to the last one.
    ``on_start`` is handed one line before a real (not sandbox) send: how many contacts go to
    which Flow, in which account, at which rate.
    ``recover`` is a run log's token: a missing journal is made again under it (see ``recover``).
    """
    control = control or RunControl()
    clock = StoppableClock(options.timing(), control)
    started = clock.monotonic()
    prepared, opening = plan_while_opening(
        partial(_prepared, launched, frame, stdin, stored=settle_only, restart=options.restart),
        checkpoint_opening(launched, options, recover),
        early=opens_early(launched.spec.output.checkpoint, options, planned=not settle_only, recover=recover),
        # Not beside a database input's own driver imports, which planning makes meanwhile: two threads importing
        # at once can trip Python's import locks.
        then=load_transport if transport is None and launched.spec.input.query is None else None,
    )
    # Lock waits bounded by the job's ``lock_wait``; every wait ended by a stop.
    storage = Storage(
        lock_wait=launched.spec.output.lock_wait,
        wait=lambda seconds: control.wait_stop(seconds, asyncio.sleep),
        stopping=lambda: control.stopping,
    )
    job = Invocation(
        launched.spec,
        prepared,
        launched.credentials,
        launched.base_url,
        options,
        clock,
        control,
        storage,
        transport,
        on_progress,
        launched.tokens,
        on_start,
    )
    try:
        return await _run_locked(job, started, opening, settle_only=settle_only)
    except StorageFailed as exc:
        if exc.transient or storage.sending_began:
            raise
        raise UsageError(f"{exc}; nothing was sent") from None


async def _run_locked(
    job: Invocation, started: float, opening: EarlyOpening | Callable[[], CheckpointStore], *, settle_only: bool
) -> RunResult:
    """The run with its checkpoint open (``opening``: opened early, or to open now): send, then settle the
    ending and write the results."""
    spec, prepared, options, clock, storage = job.spec, job.prepared, job.options, job.clock, job.storage
    if isinstance(opening, EarlyOpening):
        cp, lines = await opening.result(job.control)
    else:
        cp, lines = await opened(opening, job.control), None
    try:
        known, lines = (None, lines) if settle_only else await _known(job, cp, lines)
        await storage.commit("starting the run", cp.start_run, iso_ms(clock.now()), prepared.input_digest)
        if not prepared.kept:
            await storage.commit("saving the plan", cp.save_plan, prepared.plan, prepared.key)
        history = open_history(spec.history.path) if spec.history.path and not options.sandbox else None
        try:
            sent = await run_with_checkpoint(job, cp, history, known)
            if history is not None and not settle_only:
                await asyncio.to_thread(count_holdout, history, spec, prepared.plan)
        finally:
            if history is not None:
                history.close()
        if sent.d.capacity is not None and sent.d.segments is not None:
            # Kept (after sending, so as not to delay it) for the report: what was projected, and each row's count.
            with contextlib.suppress(StorageFailed):
                await storage.commit("keeping the projection", cp.remember, ARRIVAL_META, json.dumps(sent.d.capacity))
                segments = json.dumps(sent.d.segments, separators=(",", ":"))
                await storage.commit("keeping the segments", cp.remember, SEGMENTS_META, segments)
        lines = await journal_lines(cp, storage)
        journal = build_results(prepared.plan, lines, input_digest=prepared.input_digest)
        counts = counts_by_status(journal)
        # Only the summary needs it, counted on the journal as the run leaves it: a contact this run settled (in
        # flight when the last one was killed) that the list no longer holds is said too.
        sent.left_out = 0 if settle_only else _left_out(prepared.plan, lines, counts)
        end = _ending(sent, counts, storage)
        if counts.get("pending"):
            # Only pending rows say why they wait: without one, the table is the same.
            journal = build_results(
                prepared.plan, lines, input_digest=prepared.input_digest, pending_reason=end.pending_reason
            )
        journal = with_segments(journal, sent.d.segments)
        results = annotate_windows(prepared.plan, journal, spec, clock.now())
        with contextlib.suppress(StorageFailed):
            await storage.commit("recording the run's end", cp.finish_run, iso_ms(clock.now()), end.exit_code)
    finally:
        await close(cp, job.control, storage)
    await _write_results(spec, results)
    summary = _summary(spec, sent, counts, clock.monotonic() - started, end)
    log.info("run.summary", exit_code=end.exit_code, **summary.as_dict())
    return RunResult(results=results, counts=counts, exit_code=end.exit_code, summary=summary)


async def _known(job: Invocation, cp: CheckpointStore, lines: pl.DataFrame | None) -> tuple[Known, pl.DataFrame]:
    """What the journal says of the plan, and the journal's states it was read from (``lines``, if read as the
    checkpoint opened); a file that shares no contact with those the job reached is refused here, before the run
    is even recorded (a query's or a frame's rows change by design)."""
    if lines is None:
        lines = await job.storage.commit("reading the journal", cp.states)
    known = Known.read(cp, job.prepared.plan, lines)
    spec, source = job.spec, job.prepared.source_file
    reached = 0 if spec.input.other_lists or source is None else known.unrelated(job.prepared.plan, lines)
    if source is not None and reached:
        raise other_list_refused(source, masked(spec.output.checkpoint), job.prepared.plan, reached)
    if spec.send.dedupe == "none" and not job.options.yes:
        await _refuse_moved_rows(job, cp, known)
    if lines.height == 0 and spec.job.period_kind is not None and not job.options.yes:
        period_of = partial(spec.period_of_checkpoint, sandbox=job.options.sandbox)
        where, digest, period = spec.output.checkpoint, job.prepared.input_digest, spec.job.period or ""
        later = await asyncio.to_thread(later_period_bound_to, where, digest, period, period_of)
        if later is not None:
            raise period_behind(period, later)
    return known, lines


async def _refuse_moved_rows(job: Invocation, cp: CheckpointStore, known: Known) -> None:
    """With ``dedupe = "none"`` a row is its number's n-th row: a row inserted above, deleted or moved in a
    re-exported list shifts every later one onto another's run (one sent twice, one never). A row reached before
    whose place now holds other Parameters cannot be told from a corrected one: refused, nothing sent."""
    digest = job.prepared.input_digest
    if not known.reached_for_another_input(digest):
        return
    finals = await job.storage.commit("reading the journal", cp.reached_for_other_input, digest)
    _, moved = Known.changed_since(job.prepared.plan, finals)
    if moved:
        raise UsageError(
            f'with send.dedupe = "none" a row is its number\'s n-th row, and {len(moved)} rows reached before now hold '
            f"other Parameters in their place ({mask(moved[0])}'s, say): a row inserted, deleted or moved above them, "
            "or corrected? Which run is whose cannot be told, so nothing was sent. Put the list's rows back in their "
            "order, or add --yes to take each row by its place (a row whose place was reached is not sent again)"
        )


def _left_out(plan: pl.DataFrame, lines: pl.DataFrame, counts: dict[str, int]) -> int:
    """Contacts the journal ``lines`` has reached that no row of ``plan`` names; no join when the results'
    ``counts`` hold every one of them (nearly every run)."""
    reached = int(lines.get_column("state").is_in(sorted(s.value for s in REACHED)).sum())
    return 0 if reached == sum(counts.get(s.value, 0) for s in REACHED) else reached_not_in(plan, lines)


def _ending(sent: Sent, counts: dict[str, int], storage: Storage) -> Ending:
    return ending(
        counts,
        aborted=sent.d.aborted,
        failure=storage.failure,
        sending_began=storage.sending_began,
        stopped_early=sent.stopped_early,
        stop_reason=sent.stop_reason,
    )


async def _write_results(spec: Spec, results: pl.DataFrame) -> None:
    """The results table written; a failure now (a full disk) loses nothing sent, and says how to get it back."""
    try:
        job_id, period, output, guard = spec.job.template, spec.job.period, spec.output.results, spec.output.csv_guard
        key, owner = "output.results", table_owner(spec)
        await asyncio.to_thread(
            write_output, results, output, job_id=job_id, period=period, key=key, csv_guard=guard, owner=owner
        )
    except (OSError, UsageError) as exc:
        # A full disk, a read-only folder, a database table that refused the rows: all after sending.
        reason = (exc.strerror or type(exc).__name__) if isinstance(exc, OSError) else str(exc)
        raise OutputFailed(
            f"{masked(spec.output.results)}: the results could not be written ({reason}). Nothing sent is lost: "
            f"the journal is in {masked(spec.output.checkpoint)}; once that is put right, "
            "`batch-engage report JOB` writes the table again"
        ) from None
