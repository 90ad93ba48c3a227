"""The report's figures, gathered from a checkpoint alone (never from the wall clock)."""

from __future__ import annotations

import json
import re
from collections import Counter
from datetime import UTC, datetime
from importlib import metadata

import polars as pl

from ..checkpoint import CheckpointView
from ..clock import parse_iso
from ..collector import StoredOutcome, read_outcomes
from ..job import Spec, window_openings
from ..plan import mask
from ..postgres import masked
from ..results import build_results, counts_by_status
from ..states import REACHED
from .active import active_groups
from .arrival import arrival_figures
from .compare import experiment_report
from .html import FailureGroup, FieldValues, ReportData, RunSpan, SecondStats

__all__ = ["MAX_REASONS", "as_of", "mask_numbers", "report_data"]

_EXAMPLES = 3
_TOP = 5
# The page stays small whatever the input: at most this many reasons, the rest counted in one line.
MAX_REASONS = 20
_FIELD_CHARS = 120
# A reason ends with the value as written (`...: '+4917...'`); the value is an example, not part of the reason.
_QUOTED_TAIL = re.compile(r"""^(?P<reason>.*?):\s*(?P<value>'[^']*'|"[^"]*")$""")
# Digits enough to be a phone number, wherever they stand in a message (Twilio's name the number).
_NUMBER = re.compile(r"\+?\d[\d ().-]{5,}\d")


def mask_numbers(text: str) -> str:
    """``text`` with every run of digits long enough to be a phone number masked (``+1415***0100``)."""
    return _NUMBER.sub(lambda m: mask(re.sub(r"[^\d+]", "", m[0])), text)


def _bounded(groups: dict[str, tuple[int, list[str]]]) -> list[tuple[str, int, tuple[str, ...]]]:
    """``(reason, rows, masked examples)``, most rows first, at most :data:`MAX_REASONS` (then one for the rest)."""
    ranked = sorted(groups.items(), key=lambda kv: (-kv[1][0], kv[0]))
    shown = [(reason, n, tuple(mask(v) for v in values[:_EXAMPLES])) for reason, (n, values) in ranked[:MAX_REASONS]]
    rest = ranked[MAX_REASONS:]
    if rest:
        shown.append((f"{len(rest):,} other reasons", sum(n for _, (n, _) in rest), ()))
    return shown


def _invalid_groups(messages: list[str | None]) -> dict[str, tuple[int, list[str]]]:
    """Invalid rows by reason, the value as written taken out of it (kept as an example), numbers masked."""
    groups: dict[str, tuple[int, list[str]]] = {}
    for message in messages:
        found = _QUOTED_TAIL.match(message or "")
        reason, value = (found["reason"], found["value"][1:-1]) if found else (message or "no reason given", "")
        n, examples = groups.get(mask_numbers(reason), (0, []))
        if value and len(examples) < _EXAMPLES:
            examples.append(value)
        groups[mask_numbers(reason)] = (n + 1, examples)
    return groups


def as_of(view: CheckpointView) -> datetime:
    """The checkpoint's last write, from what it holds (so a copied file reports the same)."""
    # Each column is written in one ISO 8601 form (UTC, milliseconds, ``Z``), so its text maximum is its
    # latest moment: only those few are parsed, not two million stamps.
    latest = [
        frame.get_column(name).drop_nulls().max()
        for frame, name in (
            (view.runs, "started_at"),
            (view.runs, "stopped_at"),
            (view.journal, "completed_at"),
            (view.journal, "intent_at"),
        )
    ]
    stamps = [str(s) for s in latest if s is not None] + (
        [view.meta["created_at"]] if "created_at" in view.meta else []
    )
    if view.latest_line is not None:  # a brief read: the sent lines came without their stamps
        stamps.append(view.latest_line)
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
                counter[mask_numbers(str(value))[:_FIELD_CHARS]] += 1
    runs = len(collected)
    return tuple(
        FieldValues(
            name=name,
            top=tuple(sorted(c.most_common(_TOP), key=lambda kv: (-kv[1], kv[0]))),
            no_reply=runs - sum(c.values()),
        )
        for name, c in counters.items()
    )


def _rehearsal(spec: Spec, view: CheckpointView) -> bool:
    """Whether the checkpoint's runs were made on the sandbox (its target says so, or its name)."""
    try:
        target = json.loads(view.meta.get("target", "{}"))
    except ValueError:
        target = {}
    return bool(target.get("sandbox")) or spec.output.checkpoint.endswith(".sandbox")


def _failures(failed: pl.DataFrame) -> tuple[FailureGroup, ...]:
    """Failed rows by Twilio's code and message (numbers masked), at most :data:`MAX_REASONS` groups, then the rest."""
    groups: dict[tuple[int | None, str], tuple[int, list[str]]] = {}
    for code, message, to in failed.select("error_code", "error_message", "to").iter_rows():
        n, examples = groups.get((code, mask_numbers(message or "")), (0, []))
        if to and len(examples) < _EXAMPLES:
            examples.append(to)
        groups[(code, mask_numbers(message or ""))] = (n + 1, examples)
    ranked = sorted(groups.items(), key=lambda kv: (-kv[1][0], str(kv[0])))
    shown = [
        FailureGroup(code=code, message=message, count=n, examples=tuple(mask(t) for t in tos))
        for (code, message), (n, tos) in ranked[:MAX_REASONS]
    ]
    rest = ranked[MAX_REASONS:]
    if rest:
        others = f"{len(rest):,} other errors"
        shown.append(FailureGroup(code=None, message=others, count=sum(n for _, (n, _) in rest), examples=()))
    return tuple(shown)


def _seconds(events: pl.DataFrame | None) -> tuple[SecondStats, ...] | None:
    """The run events summed per second over every run (None: a checkpoint older than run events)."""
    if events is None:
        return None
    per_second = events.group_by("second").agg(
        pl.col("requests").sum(),
        pl.col("ok").sum(),
        pl.col("rate_limited").sum(),
        pl.col("retries").sum(),
        pl.col("lookups").sum(),
        pl.col("pacer_rate").last().cast(pl.Float64),
    )
    # Columns in the tuple's field order, so each row is one at once.
    columns = per_second.sort("second").select(SecondStats._fields)
    return tuple(map(SecondStats._make, columns.iter_rows()))


_ANY_RUN = ""


def _this_plans(
    collected: dict[str, StoredOutcome] | None, plan: pl.DataFrame, results: pl.DataFrame
) -> dict[str, StoredOutcome] | None:
    """Only the outcomes of the plan's contacts, each for the run its results line names: a contact the list
    dropped, or a run since replaced, is not this campaign's (as the outcomes table has it)."""
    if collected is None:
        return None
    runs = plan.select("row", "contact").join(results.select("row", "sid", "status"), on="row", how="left")
    reached = {state.value for state in REACHED}
    # A brief read (the page alone) has no SID for a plain sent line: its contact's outcome is taken as its run's.
    sids = {
        contact: sid or _ANY_RUN
        for contact, sid, status in runs.select("contact", "sid", "status").iter_rows()
        if contact and (sid or status in reached)
    }
    return {c: line for c, line in collected.items() if sids.get(c) in (line.sid, _ANY_RUN)}


def report_data(spec: Spec, view: CheckpointView, path: str) -> ReportData:
    """Everything the HTML report shows, for ``spec``'s checkpoint as ``view`` read it."""
    assert view.plan is not None
    plan = view.plan
    results = build_results(plan, view.journal, input_digest=view.meta.get("input"), live=view.live)
    moment = as_of(view)
    failures = _failures(results.filter(pl.col("status") == "failed"))
    invalid = _bounded(
        _invalid_groups(plan.filter(pl.col("status") == "invalid").get_column("error_message").to_list())
    )
    openings = window_openings(plan, results, spec, moment)
    by_hour = Counter(
        o.replace(minute=0, second=0, microsecond=0) for o in openings.get_column("opens").to_list() if o is not None
    )
    collected = _this_plans(read_outcomes(spec.output.checkpoint), plan, results)
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
        seconds=_seconds(view.events),
        failures=failures,
        invalid_reasons=tuple((reason, n) for reason, n, _ in invalid),
        invalid_examples=tuple((reason, examples) for reason, _, examples in invalid if examples),
        window_openings=tuple(sorted(by_hour.items())),
        run_status=dict(Counter(o.run_status for o in collected.values())) if collected is not None else None,
        fields=_field_values(collected) if collected is not None else (),
        checkpoint_path=masked(path),
        rehearsal=_rehearsal(spec, view),
        as_of=moment,
        version=_version(),
        active=active_groups(results),
        arrival=arrival_figures(view.meta, (o.values for o in (collected or {}).values())),
        experiment=experiment_report(spec, plan, results, collected),
    )
