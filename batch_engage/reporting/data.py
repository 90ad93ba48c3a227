"""The report's figures, gathered from a checkpoint alone (never from the wall clock)."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime
from importlib import metadata

import polars as pl

from ..checkpoint import CheckpointView
from ..clock import parse_iso
from ..collector import StoredOutcome, read_outcomes
from ..job import Spec
from ..plan import mask, window_openings
from ..results import build_results, counts_by_status
from .active import active_groups
from .arrival import arrival_figures
from .compare import experiment_report
from .html import FailureGroup, FieldValues, ReportData, RunSpan, SecondStats

__all__ = ["as_of", "report_data"]

_EXAMPLES = 3
_TOP = 5


def as_of(view: CheckpointView) -> datetime:
    """The checkpoint's last write, from what it holds (so a copied file reports the same)."""
    stamps = [
        *view.runs.get_column("started_at").drop_nulls().to_list(),
        *view.runs.get_column("stopped_at").drop_nulls().to_list(),
        *view.journal.get_column("completed_at").drop_nulls().to_list(),
        *view.journal.get_column("intent_at").drop_nulls().to_list(),
        *([view.meta["created_at"]] if "created_at" in view.meta else []),
    ]
    return max((parse_iso(s) for s in stamps), default=datetime(1970, 1, 1, tzinfo=UTC))


def _version() -> str:
    try:
        return metadata.version("batch-engage")
    except metadata.PackageNotFoundError:  # pragma: no cover - run from a checkout without installing
        return "unknown"


def _field_values(collected: dict[str, StoredOutcome]) -> tuple[FieldValues, ...]:
    """Each collected column's five most common values (nulls left out), columns in first-seen order."""
    counters: dict[str, Counter[str]] = {}
    for outcome in collected.values():
        for name, value in outcome.values.items():
            if name.endswith("_queue_seconds"):
                continue  # shown beside the projection, not as a field
            counter = counters.setdefault(name, Counter())
            if value is not None:
                counter[str(value)] += 1
    return tuple(
        FieldValues(name=name, top=tuple(sorted(c.most_common(_TOP), key=lambda kv: (-kv[1], kv[0]))))
        for name, c in counters.items()
    )


def report_data(spec: Spec, view: CheckpointView, path: str) -> ReportData:
    """Everything the HTML report shows, for ``spec``'s checkpoint as ``view`` read it."""
    assert view.plan is not None
    plan = view.plan
    results = build_results(plan, view.journal, input_digest=view.meta.get("input"), live=view.live)
    moment = as_of(view)
    failed = results.filter(pl.col("status") == "failed")
    groups: dict[tuple[int | None, str], list[str]] = {}
    for code, message, to in failed.select("error_code", "error_message", "to").iter_rows():
        groups.setdefault((code, message or ""), []).append(to)
    failures = tuple(
        FailureGroup(code=code, message=message, count=len(tos), examples=tuple(mask(t) for t in tos[:_EXAMPLES]))
        for (code, message), tos in sorted(groups.items(), key=lambda kv: (-len(kv[1]), str(kv[0])))
    )
    invalid = Counter(plan.filter(pl.col("status") == "invalid").get_column("error_message").to_list())
    openings = window_openings(plan, results, spec, moment)
    by_hour = Counter(
        o.replace(minute=0, second=0, microsecond=0) for o in openings.get_column("opens").to_list() if o is not None
    )
    collected = read_outcomes(spec.output.checkpoint)
    events = view.events
    seconds = (
        tuple(
            SecondStats(second=s, requests=r, ok=ok, rate_limited=rl, retries=rt, lookups=lk, pacer_rate=float(rate))
            for s, r, ok, rl, rt, lk, rate in events.group_by("second")
            .agg(
                pl.col("requests").sum(),
                pl.col("ok").sum(),
                pl.col("rate_limited").sum(),
                pl.col("retries").sum(),
                pl.col("lookups").sum(),
                pl.col("pacer_rate").last(),
            )
            .sort("second")
            .iter_rows()
        )
        if events is not None
        else None
    )
    return ReportData(
        job_name=view.meta.get("job_id", spec.job.id),
        flow_sid=spec.flow.sid,
        api=spec.flow.api,
        counts=counts_by_status(results),
        configured_rate=spec.send.rate,
        runs=tuple(
            RunSpan(started=parse_iso(a), stopped=parse_iso(b) if b else None, exit_code=code)
            for a, b, code in view.runs.select("started_at", "stopped_at", "exit_code").iter_rows()
        ),
        seconds=seconds,
        failures=failures,
        invalid_reasons=tuple(sorted(invalid.items(), key=lambda kv: (-kv[1], kv[0]))),
        window_openings=tuple(sorted(by_hour.items())),
        run_status=dict(Counter(o.run_status for o in collected.values())) if collected is not None else None,
        fields=_field_values(collected) if collected is not None else (),
        checkpoint_path=path,
        as_of=moment,
        version=_version(),
        active=active_groups(results),
        arrival=arrival_figures(view.meta, (o.values for o in (collected or {}).values())),
        experiment=experiment_report(spec, plan, results, collected),
    )
