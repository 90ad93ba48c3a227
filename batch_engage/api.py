"""The Python API: everything the CLI does, callable without it (the CLI calls only this module)."""

from __future__ import annotations

import asyncio
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
from .checkpoint import Target, check_binding, checkpoint_exists, empty_journal, read_checkpoint
from .credentials import Credentials, credentials_from_env
from .errors import CredentialsError, PeriodUnsettled, UsageError
from .hygiene import History
from .prepare import prepare
from .results import build_results, counts_by_status, exit_code_for, write_results
from .runner import Progress, RunControl, RunOptions, RunResult, run_job, target_for
from .spec import Spec, load_spec
from .states import FINAL, POSSIBLY_SENT
from .windows import annotate_windows, send_window, window_openings

__all__ = [
    "Status",
    "Validation",
    "history_stats",
    "import_history",
    "load_job",
    "report",
    "run",
    "run_async",
    "status",
    "validate",
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
) -> Validation:
    """Plan the job without any network: what would be sent, what would not, and why.

    Refuses exactly what ``run`` would refuse before sending (another job's or another
    Twilio's checkpoint, ``--restart`` without ``--yes``), with the same message.
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
    pending = plan.filter(pl.col("status") == "pending")
    done_rows = 0
    if checkpoint_exists(spec.output.checkpoint) and not restart:
        finals = read_checkpoint(spec.output.checkpoint).journal.filter(pl.col("state").is_in([s.value for s in FINAL]))
        done_rows = pending.filter(pl.col("contact").is_in(finals.get_column("contact").implode())).height
    statuses: dict[str, int] = dict(plan.group_by("status").len().iter_rows())
    invalid = plan.filter(pl.col("status") == "invalid")
    reasons = Counter(_reason_kind(m) for m in invalid.get_column("error_message").to_list())
    suppressed = Counter(
        m.removeprefix("on suppression list ")
        for m in plan.filter(pl.col("status") == "suppressed").get_column("error_message").to_list()
    )
    samples = [
        {"row": r, "To": t, "From": f, **({"Parameters": p} if p is not None else {})}
        for r, t, f, p in pending.head(3).select("row", "to", "from", "parameters").iter_rows()
    ]
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
    )


def _from_checkpoint(spec: Spec) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The plan and the results table, from the checkpoint alone (``in_flight`` while a run holds it)."""
    view = read_checkpoint(spec.output.checkpoint)
    if view.plan is None:
        raise UsageError(f"{spec.output.checkpoint}: the checkpoint has no plan yet; run the job once")
    return view.plan, build_results(view.plan, view.journal, input_digest=view.meta.get("input"), live=view.live)


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
    plan, results = _from_checkpoint(spec)
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
) -> tuple[Path, dict[str, int]]:
    """Write the results table again from the checkpoint alone; sends nothing."""
    spec = load_job(job, overrides, period=period, sandbox=sandbox, latest=True)
    plan, results = _from_checkpoint(spec)
    results = annotate_windows(plan, results, spec, datetime.now(UTC))
    target = write_results(results, output or spec.output.results)
    return target, counts_by_status(results)


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
    with History(history) as store:
        return store.record(rows)


def history_stats(history: str | Path) -> pl.DataFrame:
    """Contacts reached per flow per day, from the history file."""
    if not Path(history).exists():
        raise UsageError(f"{history}: no contact history yet")
    with History(history) as store:
        return store.stats()
