"""Which rows ``collect`` looks at (the checkpoint's run SIDs) and the outcomes table it makes of what it fetched."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import polars as pl

from ..checkpoint import is_postgres, read_checkpoint
from ..clock import parse_iso
from ..errors import UsageError
from ..job import OUTCOME_BASE_COLUMNS, Spec
from ..results import build_results
from .outcomes import StoredOutcome

__all__ = [
    "NOT_COLLECTED",
    "RUN_STATUSES",
    "Target",
    "as_text",
    "asked",
    "context_value",
    "counts",
    "outcomes_table",
    "targets",
    "top_values",
    "value_columns",
]

NOT_COLLECTED = "not collected yet"
RUN_STATUSES = ("active", "ended", "failed")

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


def as_text(value: object) -> str | None:
    """A field's value as the outcomes table keeps it: text as is, anything else as JSON text."""
    if value is None or isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False)


@dataclass(frozen=True)
class Target:
    """A row with a run to look at."""

    row: int
    to: str
    sid: str
    contact: str
    status: str
    marker: str | None
    started: datetime | None = None  # when its run started, about (the intent on Twilio's clock, else the answer)
    variant: str | None = None  # the experiment's variant (its Flow holds the run); None without one


def targets(spec: Spec, sandbox: bool) -> list[Target]:
    """The rows with a run (sent or already_active) in input order; ``UsageError`` for a checkpoint it cannot use."""
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
    markers = view.journal.select("contact", "marker", pl.coalesce("intent_twilio_at", "completed_at").alias("started"))
    rows = (
        results.filter(pl.col("status").is_in(["sent", "already_active"]) & pl.col("sid").is_not_null())
        .join(markers, on="contact", how="left", maintain_order="left")
        .select("row", "to", "sid", "contact", "status", "marker", "started", "variant")
    )
    return [
        Target(row, to, sid, contact, status, marker, parse_iso(started) if started else None, variant)
        for row, to, sid, contact, status, marker, started, variant in rows.iter_rows()
    ]


def asked(spec: Spec) -> str:
    """What a line was fetched for: a changed ``[collect]`` (or marker key) makes old lines worth fetching again."""
    c = spec.collect
    return json.dumps(
        {"fields": [list(f) for f in c.fields], "messages": list(c.message_status), "marker": spec.send.marker_key},
        sort_keys=True,
    )


def value_columns(spec: Spec) -> list[tuple[str, pl.DataType]]:
    """The asked-for columns and their types: each field, each message widget's delivery and error code, then
    each widget's time in Twilio's queue (``date_created`` to ``date_sent``, seconds)."""
    columns: list[tuple[str, pl.DataType]] = [(name, pl.String()) for name, _ in spec.collect.fields]
    for widget in spec.collect.message_status:
        columns += [(f"{widget}_delivery", pl.String()), (f"{widget}_delivery_error_code", pl.Int64())]
    # Appended after the others, so earlier readers of the table find their columns where they were.
    columns += [(f"{widget}_queue_seconds", pl.Float64()) for widget in spec.collect.message_status]
    return columns


def outcomes_table(spec: Spec, rows: list[Target], lines: Mapping[str, StoredOutcome]) -> pl.DataFrame:
    """The outcomes table: one line per target, in input order."""
    columns = value_columns(spec)
    schema: dict[str, pl.DataType] = {
        "row": pl.Int64(),
        "to": pl.String(),
        "sid": pl.String(),
        "run_status": pl.String(),
        "ended_at": pl.String(),
        "error_message": pl.String(),
        **dict(columns),
        # Appended after every other column (so columns are only ever added at the end).
        "variant": pl.String(),
    }
    assert tuple(schema)[: len(OUTCOME_BASE_COLUMNS)] == OUTCOME_BASE_COLUMNS
    records = []
    for t in rows:
        line = lines.get(t.contact)
        if line is None or line.sid != t.sid:
            records.append((t.row, t.to, t.sid, None, None, NOT_COLLECTED, *(None for _ in columns), t.variant))
            continue
        records.append(
            (
                t.row,
                t.to,
                t.sid,
                line.run_status,
                line.ended_at,
                line.error_message,
                *(line.values.get(name) for name, _ in columns),
                t.variant,
            )
        )
    return pl.DataFrame(records, schema=schema, orient="row")


def counts(table: pl.DataFrame) -> dict[str, int]:
    """Lines by ``run_status`` (every status, zeros included), and ``expired``/``not_collected`` when there are any."""
    found = Counter(s or "not_collected" for s in table.get_column("run_status").to_list())
    counts = {status: int(found.get(status, 0)) for status in RUN_STATUSES}
    for extra in ("expired", "not_collected"):
        if found.get(extra):
            counts[extra] = found[extra]
    return counts


def top_values(spec: Spec, table: pl.DataFrame, n: int = 5) -> dict[str, list[tuple[str, int]]]:
    """The ``n`` most common values of each asked-for column (error codes and queue times left out)."""
    top: dict[str, list[tuple[str, int]]] = {}
    for name, _ in value_columns(spec):
        if name.endswith(("_delivery_error_code", "_queue_seconds")):
            continue
        values = Counter(str(v) for v in table.get_column(name).to_list() if v is not None)
        top[name] = [(_shown(value), count) for value, count in values.most_common(n)]
    return top


# Anyone can text the number: a 200,000-character reply was one summary line and one log line, whole.
SHOWN_CHARACTERS = 80


def _shown(value: str) -> str:
    """A value as a summary line or a log shows it: whole up to ``SHOWN_CHARACTERS``, cut and counted beyond."""
    if len(value) <= SHOWN_CHARACTERS:
        return value
    return f"{value[:SHOWN_CHARACTERS]}… ({len(value):,} characters)"
