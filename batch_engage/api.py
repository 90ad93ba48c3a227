"""The Python API: everything the CLI does, callable without it (the CLI calls only this module)."""

from __future__ import annotations

import asyncio
import os
import re
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO

import httpx
import polars as pl
import structlog

from . import periods
from ._files import private_file
from .checkpoint import (
    CheckpointView,
    Target,
    check_binding,
    checkpoint_exists,
    empty_journal,
    is_postgres,
    jobs_beside,
    read_checkpoint,
)
from .client import StudioClient, make_http_client
from .collect import CollectOptions, CollectProgress, CollectResult, collect_job
from .credentials import Credentials, credentials_from_env
from .dispatch import Item, make_marker
from .errors import ConfigError, CredentialsError, FlowNotFound, FlowUnwired, PeriodUnsettled, UsageError
from .flowcheck import FlowWiringError
from .flowreview import FlowReview, log_findings, review
from .hygiene import is_database_url, open_history
from .pacing import Pacer
from .prepare import prepare
from .reads import PacedReads
from .report_data import report_data
from .report_html import render_report
from .results import (
    EXIT_ABORTED,
    EXIT_OK,
    EXIT_SOME_FAILED,
    EXIT_TEMPFAIL,
    EXIT_USAGE,
    build_results,
    counts_by_status,
    exit_code_for,
    write_results,
)
from .runner import Progress, RunControl, RunOptions, RunResult, run_job, target_for
from .sandbox import SANDBOX_PASSWORD, SANDBOX_USERNAME, Sandbox, SandboxConfig
from .sandbox import serve as serve_sandbox
from .spec import Spec, check_base_url, load_spec, studio_base_url
from .states import FINAL, POSSIBLY_SENT
from .windows import annotate_windows, send_window, window_openings

__all__ = [
    "DEFAULT_COLLECT_POLL",
    "EXIT_ABORTED",
    "EXIT_OK",
    "EXIT_SOME_FAILED",
    "EXIT_TEMPFAIL",
    "EXIT_USAGE",
    "SANDBOX_PASSWORD",
    "SANDBOX_RUN_LIFETIME",
    "SANDBOX_USERNAME",
    "CollectOptions",
    "CollectProgress",
    "CollectResult",
    "Credentials",
    "FlowReview",
    "Progress",
    "RunControl",
    "RunOptions",
    "RunResult",
    "Sandbox",
    "SandboxConfig",
    "Status",
    "Validation",
    "collect",
    "collect_async",
    "history_stats",
    "import_history",
    "load_job",
    "report",
    "run",
    "run_async",
    "sandbox_config",
    "sandbox_state_path",
    "serve_sandbox",
    "status",
    "validate",
    "write_report_html",
]

log = structlog.get_logger(__name__)


def load_job(
    job: str | Path | Spec,
    overrides: Mapping[str, Any] | None = None,
    *,
    period: str | None = None,
    sandbox: bool = False,
    latest: bool = False,
) -> Spec:
    """A job file path (plus ``section.key`` overrides) or a ``Spec``, for a period, rehearsed on the sandbox or not.

    ``latest`` picks the newest period that has a checkpoint (for ``status`` and ``report``).
    """
    if isinstance(job, Spec):
        if overrides:
            raise UsageError("overrides apply to job files; build the Spec with the values instead")
        spec = job
    else:
        spec = load_spec(job, overrides=overrides)
    if period is not None:
        spec = spec.for_period(period)
    elif latest and spec.job.period_kind is not None:
        spec = _latest_period(spec, sandbox=sandbox)
    return spec.rehearsal() if sandbox else spec


def _latest_period(spec: Spec, *, sandbox: bool) -> Spec:
    kind = spec.job.period_kind
    assert kind is not None and spec.job.period is not None
    current = spec.rehearsal() if sandbox else spec
    if checkpoint_exists(current.output.checkpoint):
        return spec
    if is_postgres(current.output.checkpoint):
        # Every job in the schema is a candidate; a period counts only if it renders to that very key.
        kept = [
            candidate
            for location in jobs_beside(current.output.checkpoint)
            for candidate in re.findall(r"\d{4}-(?:W\d{2}|\d{2}-\d{2}|\d{2})", location.rsplit("#", 1)[-1])
            if periods.is_period(kind, candidate)
            and load_job(spec.for_period(candidate), sandbox=sandbox).output.checkpoint == location
        ]
        return spec.for_period(max(kept)) if kept else spec
    template = spec.output.checkpoint_template or spec.output.checkpoint
    pattern = periods.render(template, {"id": periods.render(spec.job.template, {kind: "*"}), kind: "*"})
    folder = Path(pattern).parent
    suffix = ".sandbox" if sandbox else ""
    found: list[str] = []
    for path in folder.glob(Path(pattern).name + suffix):
        stem = path.name.removesuffix(suffix)
        for candidate in re.findall(r"\d{4}-(?:W\d{2}|\d{2}-\d{2}|\d{2})", stem):
            if periods.is_period(kind, candidate) and Path(spec.for_period(candidate).output.checkpoint).name == stem:
                found.append(candidate)
    return spec.for_period(max(found)) if found else spec


def _credentials(credentials: Credentials | None) -> Credentials:
    return credentials if credentials is not None else credentials_from_env()


async def run_async(
    job: str | Path | Spec,
    *,
    frame: pl.DataFrame | pl.LazyFrame | None = None,
    credentials: Credentials | None = None,
    overrides: Mapping[str, Any] | None = None,
    options: RunOptions | None = None,
    control: RunControl | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
    on_progress: Callable[[Progress], None] | None = None,
    stdin: BinaryIO | None = None,
) -> RunResult:
    """:func:`run` for callers that already run an event loop."""
    options = options or RunOptions()
    spec = load_job(job, overrides)
    creds = _credentials(credentials)
    if spec.job.period_kind is not None:
        await _settle_previous_period(spec, creds, options, transport)
    return await run_job(
        spec,
        credentials=creds,
        frame=frame,
        options=options,
        control=control,
        transport=transport,
        on_progress=on_progress,
        stdin=stdin,
    )


def run(
    job: str | Path | Spec,
    *,
    frame: pl.DataFrame | pl.LazyFrame | None = None,
    credentials: Credentials | None = None,
    overrides: Mapping[str, Any] | None = None,
    options: RunOptions | None = None,
    control: RunControl | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
    on_progress: Callable[[Progress], None] | None = None,
) -> RunResult:
    """Run a job to the end and return its results table, counts and exit code.

    ``frame`` (a polars DataFrame or LazyFrame) is used instead of ``[input]``.
    Credentials default to :func:`credentials_from_env`. Raises a
    ``BatchEngageError`` for anything that stops the job before it starts.
    """
    return asyncio.run(
        run_async(
            job,
            frame=frame,
            credentials=credentials,
            overrides=overrides,
            options=options,
            control=control,
            transport=transport,
            on_progress=on_progress,
        )
    )


async def _settle_previous_period(
    spec: Spec, credentials: Credentials, options: RunOptions, transport: httpx.AsyncBaseTransport | None
) -> None:
    """Before a new period starts: settle the last period's possibly-sent contacts; warn about its unsent ones."""
    assert spec.job.period_kind is not None and spec.job.period is not None
    previous = spec.for_period(periods.previous_period(spec.job.period_kind, spec.job.period))
    if options.sandbox:
        previous = previous.rehearsal()
    if not checkpoint_exists(previous.output.checkpoint, plan=True):
        return
    view = read_checkpoint(previous.output.checkpoint)
    possibly = view.journal.filter(pl.col("state").is_in([s.value for s in POSSIBLY_SENT])).height
    if possibly:
        log.info("period.settle", period=previous.job.period, rows=possibly)
        result = await run_job(
            previous,
            credentials=credentials,
            options=RunOptions(limit=0, sandbox=options.sandbox, clock=options.clock, sleep=options.sleep),
            transport=transport,
            settle_only=True,
        )
        if result.counts.get("uncertain", 0):
            raise PeriodUnsettled(
                f"{previous.output.checkpoint}: {result.counts['uncertain']} contacts of period "
                f"{previous.job.period} may have been sent and could not be settled yet; nothing new was sent. "
                "Run the same command again later."
            )
        view = read_checkpoint(previous.output.checkpoint)
    assert view.plan is not None
    left = counts_by_status(build_results(view.plan, view.journal)).get("pending", 0)
    if left:
        log.warning(
            "period.unsent",
            period=previous.job.period,
            rows=left,
            message=f"{left} contacts of period {previous.job.period} were never sent; they stay pending there "
            f"(run with --period {previous.job.period} to send them)",
        )


@dataclass(frozen=True)
class Validation:
    """What a dry run found: counts, reasons, samples and the time the job would take."""

    total: int
    valid: int
    invalid: int
    duplicate: int
    already_done: int
    invalid_reasons: dict[str, int]
    samples: list[dict[str, Any]]
    estimated_seconds: float
    results: pl.DataFrame
    suppressed: dict[str, int] = field(default_factory=dict)
    capped: int = 0
    openings: dict[str, int] = field(default_factory=dict)
    flow: FlowReview | None = None

    @property
    def exit_code(self) -> int:
        """0 when every row is sendable, 1 when some are not (the same mapping as ``run``)."""
        return exit_code_for({"invalid": self.invalid})

    def as_dict(self) -> dict[str, Any]:
        """Plain data for JSON."""
        return {
            "rows": self.total,
            "valid": self.valid,
            "invalid": self.invalid,
            "duplicate": self.duplicate,
            "already_done": self.already_done,
            "invalid_reasons": self.invalid_reasons,
            "suppressed": self.suppressed,
            "capped": self.capped,
            "window_openings": self.openings,
            "samples": self.samples,
            "estimated_seconds": round(self.estimated_seconds, 1),
        }


_QUOTED_TAIL = re.compile(r": (?=['\"])")


def _reason_kind(message: str) -> str:
    """A reason without the value it quotes last, so rows group by kind of problem."""
    match = _QUOTED_TAIL.search(message)
    return message[: match.start()] if match else message


def _offline_target(spec: Spec, credentials: Credentials | None, sandbox: bool) -> Target:
    if credentials is None and not sandbox:
        try:
            credentials = credentials_from_env()
        except CredentialsError:
            credentials = None  # without credentials the identity is unknown; the base URL still counts
    return target_for(spec, credentials, sandbox=sandbox)


def validate(
    job: str | Path | Spec,
    *,
    frame: pl.DataFrame | pl.LazyFrame | None = None,
    overrides: Mapping[str, Any] | None = None,
    output: str | Path | None = None,
    stdin: BinaryIO | None = None,
    now: datetime | None = None,
    sandbox: bool = False,
    restart: bool = False,
    yes: bool = False,
    credentials: Credentials | None = None,
    flow: bool = False,
    transport: httpx.AsyncBaseTransport | None = None,
) -> Validation:
    """Plan the job: what would be sent, what would not, and why; no network unless ``flow``.

    Refuses exactly what ``run`` would refuse before sending (another job's or another
    Twilio's checkpoint, ``--restart`` without ``--yes``), with the same message. With
    ``flow``, also holds the job against the Flow's published revision (credentials and
    network needed): an unwired REST trigger raises ``FlowUnwired``, missing variables with
    ``flow.strict_variables`` raise ``ConfigError``.
    """
    spec = load_job(job, overrides, sandbox=sandbox)
    prepared = prepare(spec, frame=frame, stdin=stdin)
    plan = prepared.plan
    check_binding(
        spec.output.checkpoint,
        prepared.fingerprint,
        _offline_target(spec, credentials, sandbox),
        restart=restart,
        yes=yes,
    )
    flow_review = None
    if flow:
        published = asyncio.run(_published(spec, _credentials(credentials), transport))
        try:
            flow_review = review(spec, plan, published)
        except FlowWiringError as exc:
            raise FlowUnwired(str(exc)) from None
        log_findings(flow_review)
        if flow_review.check.missing and spec.flow.strict_variables:
            names = ", ".join(f"flow.data.{v.path}" for v in flow_review.check.missing)
            raise ConfigError("flow.strict_variables", f"the Flow prints {names}, which the job does not supply")
    pending = plan.filter(pl.col("status") == "pending")
    done_rows = 0
    marker_token = "<token of the new checkpoint>"  # noqa: S105 - a placeholder, not a secret
    if checkpoint_exists(spec.output.checkpoint) and not restart:
        view = read_checkpoint(spec.output.checkpoint)
        finals = view.journal.filter(pl.col("state").is_in([s.value for s in FINAL]))
        done_rows = pending.filter(pl.col("contact").is_in(finals.get_column("contact").implode())).height
        marker_token = view.meta.get("token", marker_token)
    statuses: dict[str, int] = dict(plan.group_by("status").len().iter_rows())
    invalid = plan.filter(pl.col("status") == "invalid")
    reasons = Counter(_reason_kind(m) for m in invalid.get_column("error_message").to_list())
    suppressed = Counter(
        m.removeprefix("on suppression list ")
        for m in plan.filter(pl.col("status") == "suppressed").get_column("error_message").to_list()
    )
    samples = []
    for row, contact, to, from_, params in (
        pending.head(3).select("row", "contact", "to", "from", "parameters").iter_rows()
    ):
        body = Item(
            row=row, contact=contact, to=to, from_=from_, parameters=params, marker=make_marker(marker_token, contact)
        )
        sent = body.body(spec.send.marker_key)
        samples.append({"row": row, "To": to, "From": from_, **({"Parameters": sent} if sent is not None else {})})
    moment = now or datetime.now(UTC)
    results = annotate_windows(plan, build_results(plan, empty_journal()), spec, moment)
    openings = window_openings(plan, results, spec, moment)
    by_hour = Counter(
        "never" if o is None else o.strftime("%Y-%m-%d %H:00Z") for o in openings.get_column("opens").to_list()
    )
    opening_counts = (
        {"now": pending.height - openings.height, **dict(sorted(by_hour.items()))} if send_window(spec) else {}
    )
    if output is not None:
        write_results(results, output)
    return Validation(
        total=plan.height,
        valid=pending.height,
        invalid=statuses.get("invalid", 0),
        duplicate=statuses.get("duplicate", 0),
        already_done=done_rows,
        invalid_reasons=dict(reasons.most_common()),
        samples=samples,
        estimated_seconds=max(0, pending.height - done_rows) / spec.send.rate,
        results=results,
        suppressed=dict(suppressed),
        capped=statuses.get("capped", 0),
        openings=opening_counts,
        flow=flow_review,
    )


async def _published(
    spec: Spec, credentials: Credentials, transport: httpx.AsyncBaseTransport | None
) -> dict[str, Any]:
    """The Flow's last published revision (with its definition), fetched as the run's preflight does."""
    base_url = studio_base_url(spec.flow, region=credentials.region, edge=credentials.edge)
    check_base_url(base_url)
    http = make_http_client(
        username=credentials.username,
        password=credentials.password,
        concurrency=2,
        connect_timeout=spec.send.connect_timeout,
        read_timeout=spec.send.read_timeout,
        transport=transport,
    )
    async with http:
        client = StudioClient(http, base_url=base_url, flow_sid=spec.flow.sid, api=spec.flow.api)
        reads = PacedReads(Pacer(spec.send.rate), sleep=asyncio.sleep, attempts=6, max_backoff=60.0)
        await reads.call("flow", client.fetch_flow)
        published = await reads.call("published revision", client.fetch_published)
    if published is None:
        raise FlowNotFound(f"the Flow {spec.flow.sid} has no published revision: publish it in the Studio console")
    return published


def _from_checkpoint(spec: Spec) -> tuple[pl.DataFrame, pl.DataFrame, CheckpointView]:
    """The plan, the results table and the view, from the checkpoint alone (``in_flight`` while a run holds it)."""
    view = read_checkpoint(spec.output.checkpoint)
    if view.plan is None:
        raise UsageError(f"{spec.output.checkpoint}: the checkpoint has no plan yet; run the job once")
    results = build_results(view.plan, view.journal, input_digest=view.meta.get("input"), live=view.live)
    return view.plan, results, view


@dataclass(frozen=True)
class Status:
    """Counts by status, and the rows waiting for their send window (with the first opening)."""

    counts: dict[str, int]
    waiting_for_window: int = 0
    next_opening: datetime | None = None
    period: str | None = None


def status(
    job: str | Path | Spec,
    *,
    overrides: Mapping[str, Any] | None = None,
    now: datetime | None = None,
    period: str | None = None,
    sandbox: bool = False,
) -> Status:
    """Counts by status from the checkpoint alone; sends nothing, works while a run is going on."""
    spec = load_job(job, overrides, period=period, sandbox=sandbox, latest=True)
    plan, results, _ = _from_checkpoint(spec)
    openings = window_openings(plan, results, spec, now or datetime.now(UTC))
    first = openings.get_column("opens").drop_nulls().min() if openings.height else None
    return Status(
        counts=counts_by_status(results),
        waiting_for_window=openings.height,
        next_opening=first if isinstance(first, datetime) else None,
        period=spec.job.period,
    )


def report(
    job: str | Path | Spec,
    *,
    overrides: Mapping[str, Any] | None = None,
    output: str | Path | None = None,
    period: str | None = None,
    sandbox: bool = False,
    html: str | Path | None = None,
) -> tuple[Path, dict[str, int]]:
    """Write the results table again from the checkpoint alone (with ``html``, also the campaign page); no sends."""
    spec = load_job(job, overrides, period=period, sandbox=sandbox, latest=True)
    plan, results, view = _from_checkpoint(spec)
    results = annotate_windows(plan, results, spec, datetime.now(UTC))
    target = write_results(results, output or spec.output.results)
    if html is not None:
        write_report_html(spec, html, view=view)
    return target, counts_by_status(results)


def write_report_html(spec: Spec, path: str | Path, *, view: CheckpointView | None = None) -> Path:
    """Write the campaign report page for ``spec``'s checkpoint: one self-contained file, owner-only, atomically."""
    view = view or read_checkpoint(spec.output.checkpoint)
    if view.plan is None:
        raise UsageError(f"{spec.output.checkpoint}: the checkpoint has no plan yet; run the job once")
    page = render_report(report_data(spec, view, spec.output.checkpoint))
    target = Path(path)
    tmp = target.with_name(target.name + ".tmp")
    private_file(tmp)
    tmp.write_text(page, encoding="utf-8")
    os.replace(tmp, target)
    return target


def import_history(results: str | Path, *, history: str | Path, flow_sid: str) -> int:
    """Seed the contact history from a results table's ``sent`` and ``already_active`` rows."""
    path = str(results)
    try:
        table = pl.read_parquet(path) if path.endswith(".parquet") else pl.read_csv(path, infer_schema_length=0)
    except (OSError, pl.exceptions.PolarsError) as exc:
        raise UsageError(f"{path}: cannot be read as a results table ({exc})") from None
    missing = {"to", "status", "sid", "completed_at"} - set(table.columns)
    if missing:
        raise UsageError(f"{path}: not a results table (no column {', '.join(sorted(missing))})")
    reached = table.filter(pl.col("status").is_in(["sent", "already_active"]))
    rows = [
        (to, flow_sid, sid, datetime.fromisoformat(at.replace("Z", "+00:00")).timestamp())
        for to, sid, at in reached.select("to", "sid", pl.col("completed_at").cast(pl.String)).iter_rows()
        if to and at
    ]
    with open_history(history) as store:
        return store.record(rows)


def history_stats(history: str | Path) -> pl.DataFrame:
    """Contacts reached per flow per day, from the history file."""
    if not is_database_url(history) and not Path(history).exists():
        raise UsageError(f"{history}: no contact history yet")
    with open_history(history) as store:
        return store.stats()


# --- collect: what happened in each run.

DEFAULT_COLLECT_POLL = 60.0
"""Seconds between passes of ``collect --wait`` against Twilio."""

SANDBOX_RUN_LIFETIME = 5.0
"""Seconds a ``--sandbox`` run lives before it ends with answers: short, so a demo shows them coming back."""


def sandbox_state_path(spec: Spec) -> str:
    """Where ``--sandbox`` keeps its runs between commands: ``<rehearsal checkpoint>.runs.jsonl``.

    ``spec`` is the rehearsal, as ``load_job(..., sandbox=True)`` returns it; ``run --sandbox``
    and ``collect --sandbox`` both call this, so the second finds the first's runs.
    """
    return spec.output.checkpoint + ".runs.jsonl"


def sandbox_config(spec: Spec) -> SandboxConfig:
    """The sandbox ``--sandbox`` serves: runs kept in :func:`sandbox_state_path`, ending after a few seconds."""
    # A PostgreSQL checkpoint keeps nothing on disk, and collect (the reader of these runs) refuses it.
    state = None if is_postgres(spec.output.checkpoint) else sandbox_state_path(spec)
    return SandboxConfig(state_path=state, run_lifetime=SANDBOX_RUN_LIFETIME)


async def collect_async(
    job: str | Path | Spec,
    *,
    credentials: Credentials | None = None,
    overrides: Mapping[str, Any] | None = None,
    options: CollectOptions | None = None,
    period: str | None = None,
    control: RunControl | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
    on_progress: Callable[[CollectProgress], None] | None = None,
) -> CollectResult:
    """:func:`collect` for callers that already run an event loop."""
    options = options or CollectOptions()
    spec = load_job(job, overrides, period=period, sandbox=options.sandbox, latest=True)
    return await collect_job(
        spec,
        credentials=_credentials(credentials),
        options=options,
        control=control,
        transport=transport,
        on_progress=on_progress,
    )


def collect(
    job: str | Path | Spec,
    *,
    credentials: Credentials | None = None,
    overrides: Mapping[str, Any] | None = None,
    options: CollectOptions | None = None,
    period: str | None = None,
    control: RunControl | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
    on_progress: Callable[[CollectProgress], None] | None = None,
) -> CollectResult:
    """Fetch what happened in each run of a job that has run: status, ``[collect.fields]``, message delivery.

    Reads the job's checkpoint (never locks it: a ``run`` may be going on), fetches only
    what can still change, and writes ``output.outcomes``. ``options`` picks
    ``refresh``, ``wait`` (poll until every run ended), ``max_duration`` and ``sandbox``
    (the rehearsal's checkpoint). The result holds the outcomes as a polars DataFrame,
    counts by ``run_status`` and the exit code the CLI would give.
    """
    return asyncio.run(
        collect_async(
            job,
            credentials=credentials,
            overrides=overrides,
            options=options,
            period=period,
            control=control,
            transport=transport,
            on_progress=on_progress,
        )
    )
