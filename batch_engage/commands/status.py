"""``status`` and ``report``: what a job's checkpoint alone says, read while a run may hold it; nothing is sent."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import polars as pl

from ..checkpoint import CheckpointView, read_checkpoint
from ..disk import write_text_atomically
from ..errors import UsageError
from ..experiment import split
from ..job import Spec, check_tables, table_owner, window_openings
from ..plan import annotate_windows
from ..postgres import masked
from ..reporting import ReportData, render_report, report_data
from ..results import NOT_SENT_YET, build_results, counts_by_status, stored_segments, with_segments
from ..tables import write_output

__all__ = ["Status", "job_status", "rewrite_results", "write_report_html"]


@dataclass(frozen=True)
class Status:
    """Counts by status, and the rows waiting for their send window (with the first opening)."""

    counts: dict[str, int]
    waiting_for_window: int = 0
    next_opening: datetime | None = None
    period: str | None = None
    checkpoint: str = ""  # which checkpoint the counts come from (a URL masked)
    variants: dict[str, dict[str, int]] = field(default_factory=dict)
    """With an ``[experiment]``: per variant (the holdout last), its contacts by status; empty without one."""


def _with_plan(spec: Spec, view: CheckpointView) -> pl.DataFrame:
    if view.plan is None:
        raise UsageError(f"{spec.output.checkpoint}: the checkpoint has no plan yet; run the job once")
    return view.plan


def _from_checkpoint(spec: Spec) -> tuple[pl.DataFrame, pl.DataFrame, CheckpointView]:
    """The plan, the results table and the view, from the checkpoint alone (``in_flight`` while a run holds it)."""
    view = read_checkpoint(spec.output.checkpoint, columns=True)
    plan = _with_plan(spec, view)
    results = build_results(
        plan, view.journal, input_digest=view.meta.get("input"), live=view.live, pending_reason=NOT_SENT_YET
    )
    return plan, results, view


def job_status(spec: Spec, now: datetime | None) -> Status:
    """Counts by status and the rows waiting for their window, for ``spec``'s checkpoint."""
    plan, results, _ = _from_checkpoint(spec)
    openings = window_openings(plan, results, spec, now or datetime.now(UTC))
    first = openings.get_column("opens").drop_nulls().min() if openings.height else None
    return Status(
        counts=counts_by_status(results),
        waiting_for_window=openings.height,
        next_opening=first if isinstance(first, datetime) else None,
        period=spec.job.period,
        checkpoint=masked(spec.output.checkpoint),
        variants=variant_split(results),
    )


def variant_split(results: pl.DataFrame) -> dict[str, dict[str, int]]:
    """Contacts per variant by status, the variants in name order and the holdout last (empty: no experiment)."""
    if "variant" not in results.columns:
        return {}
    names = split(results.get_column("variant").to_list())
    lines = results.filter(pl.col("variant").is_not_null()).group_by("variant", "status").len()
    out: dict[str, dict[str, int]] = {name: {} for name in names}
    for variant, status, n in lines.sort("status").iter_rows():
        out[variant][status] = int(n)
    return out


def rewrite_results(
    spec: Spec, output: str | Path | None, html: str | Path | None
) -> tuple[str | None, dict[str, int]]:
    """Write ``spec``'s results table again, or with ``html`` alone only the campaign page; where the table
    went (None when only the page was asked for), and the counts."""
    key = "--output" if output else "output.results"
    if output is not None:
        out, history = spec.output, spec.history.path
        check_tables(
            [(key, str(output))], checkpoint=out.checkpoint, history=history, source=spec.input, named=spec.job.named
        )
    if output is None and html is not None:
        # A page alone needs no rewrite of a table that may be a hundred megabytes, and nobody asked for it:
        # nor the journal's every detail (a brief read), nor the table built twice.
        return None, dict(_page(spec, html, read_checkpoint(spec.output.checkpoint, brief=True, columns=True)).counts)
    plan, results, view = _from_checkpoint(spec)
    results = annotate_windows(plan, with_segments(results, stored_segments(view.meta)), spec, datetime.now(UTC))
    target = write_output(
        results,
        output or spec.output.results,
        job_id=spec.job.template,
        period=spec.job.period,
        key=key,
        csv_guard=spec.output.csv_guard,
        owner=table_owner(spec),
    )
    if html is not None:
        _page(spec, html, view)
    return target, counts_by_status(results)


def _page(spec: Spec, path: str | Path, view: CheckpointView) -> ReportData:
    """Write the page for ``view`` at ``path``; what it shows."""
    _with_plan(spec, view)
    data = report_data(spec, view, spec.output.checkpoint)
    write_text_atomically(path, render_report(data))
    return data


def write_report_html(spec: Spec, path: str | Path, *, view: CheckpointView | None = None) -> Path:
    """Write the campaign report page for ``spec``'s checkpoint: one self-contained file, owner-only, atomically."""
    _page(spec, path, view or read_checkpoint(spec.output.checkpoint, brief=True))
    return Path(path)
