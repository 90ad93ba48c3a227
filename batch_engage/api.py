"""The Python API: everything the CLI does, callable without it."""

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

from .checkpoint import FINAL_STATES, empty_journal, read_only
from .credentials import Credentials, credentials_from_env
from .errors import UsageError
from .hygiene import is_database_url, open_history
from .results import build_results, counts_by_status, write_results
from .runner import Progress, RunControl, RunOptions, RunResult, prepare, run_job
from .spec import Spec, load_spec
from .windows import annotate_windows, send_window, window_openings

__all__ = [
    "Status",
    "Validation",
    "history_stats",
    "import_history",
    "load_job",
    "report",
    "run",
    "status",
    "validate",
]


def load_job(job: str | Path | Spec, overrides: Mapping[str, Any] | None = None) -> Spec:
    """A job file path (plus ``section.key`` overrides) or an existing ``Spec``, as a ``Spec``."""
    if isinstance(job, Spec):
        if overrides:
            raise UsageError("overrides apply to job files; build the Spec with the values instead")
        return job
    return load_spec(job, overrides=overrides)


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
    spec = load_job(job, overrides)
    creds = credentials if credentials is not None else credentials_from_env()
    return asyncio.run(
        run_job(
            spec,
            credentials=creds,
            frame=frame,
            options=options or RunOptions(),
            control=control,
            transport=transport,
            on_progress=on_progress,
        )
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
        """0 when every row is sendable, 1 when some are not."""
        return 1 if self.invalid else 0

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


def validate(
    job: str | Path | Spec,
    *,
    frame: pl.DataFrame | pl.LazyFrame | None = None,
    overrides: Mapping[str, Any] | None = None,
    output: str | Path | None = None,
    stdin: BinaryIO | None = None,
    now: datetime | None = None,
) -> Validation:
    """Plan the job without any network: what would be sent, what would not, and why."""
    spec = load_job(job, overrides)
    plan, _ = prepare(spec, frame=frame, stdin=stdin)
    done_rows = 0
    if Path(spec.output.checkpoint).exists():
        _, journal = read_only(spec.output.checkpoint)
        done_rows = journal.filter(pl.col("state").is_in(FINAL_STATES)).height
    statuses: dict[str, int] = dict(plan.group_by("status").len().iter_rows())
    invalid = plan.filter(pl.col("status") == "invalid")
    reasons = Counter(_reason_kind(m) for m in invalid.get_column("error_message").to_list())
    pending = plan.filter(pl.col("status") == "pending")
    suppressed = Counter(
        m.removeprefix("on suppression list ")
        for m in plan.filter(pl.col("status") == "suppressed").get_column("error_message").to_list()
    )
    samples = [
        {"row": r, "To": t, "From": f, **({"Parameters": p} if p is not None else {})}
        for r, t, f, p in pending.head(3).select("row", "to", "from", "parameters").iter_rows()
    ]
    remaining = max(0, pending.height - done_rows)
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
        estimated_seconds=remaining / spec.send.rate,
        results=results,
        suppressed=dict(suppressed),
        capped=statuses.get("capped", 0),
        openings=opening_counts,
    )


def _from_checkpoint(spec: Spec) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The plan and the results table, from the checkpoint alone."""
    plan, journal = read_only(spec.output.checkpoint)
    if plan is None:
        raise UsageError(f"{spec.output.checkpoint}: the checkpoint has no plan yet; run the job once")
    return plan, build_results(plan, journal)


@dataclass(frozen=True)
class Status:
    """Counts by status, and the rows waiting for their send window (with the first opening)."""

    counts: dict[str, int]
    waiting_for_window: int = 0
    next_opening: datetime | None = None


def status(
    job: str | Path | Spec, *, overrides: Mapping[str, Any] | None = None, now: datetime | None = None
) -> Status:
    """Counts by status from the checkpoint alone; sends nothing, works while a run is going on."""
    spec = load_job(job, overrides)
    plan, results = _from_checkpoint(spec)
    openings = window_openings(plan, results, spec, now or datetime.now(UTC))
    first = openings.get_column("opens").drop_nulls().min() if openings.height else None
    return Status(
        counts=counts_by_status(results),
        waiting_for_window=openings.height,
        next_opening=first if isinstance(first, datetime) else None,
    )


def report(
    job: str | Path | Spec,
    *,
    overrides: Mapping[str, Any] | None = None,
    output: str | Path | None = None,
) -> tuple[Path, dict[str, int]]:
    """Write the results table again from the checkpoint alone; sends nothing."""
    spec = load_job(job, overrides)
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
    with open_history(history) as store:
        return store.record(rows)


def history_stats(history: str | Path) -> pl.DataFrame:
    """Contacts reached per flow per day, from the history file."""
    if not is_database_url(history) and not Path(history).exists():
        raise UsageError(f"{history}: no contact history yet")
    with open_history(history) as store:
        return store.stats()
