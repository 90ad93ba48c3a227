"""A job held against the Flow it triggers: which variables the Flow prints that the job leaves empty, and what it says.

Built from the Flow's last published revision (what runs use) and the plan; shared by
the run's preflight and ``validate --flow``. The checks themselves are in ``check``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import polars as pl
import structlog

from ..job import Spec, static_parameter_pairs
from .check import FlowCheck, FlowVariable, compare, first_message, flow_variables, rest_trigger
from .liquid_render import render

__all__ = ["FlowReview", "VariableLine", "log_findings", "review"]

log = structlog.get_logger(__name__)

_SAMPLES = 3
_KEY_SAMPLE_ROWS = 10_000


@dataclass(frozen=True)
class VariableLine:
    """One line of the variables table: a path, required or not, where its value comes from, how often it is empty."""

    path: str
    required: bool
    source: str | None  # "column first_name", "static", "parameters_column", or None: MISSING
    widgets: tuple[str, ...]
    empty_rows: int


@dataclass(frozen=True)
class FlowReview:
    """What the Flow reads and where the REST trigger leads, against what the job supplies."""

    name: str | None
    revision: int | None
    trigger_target: str
    check: FlowCheck
    variables: tuple[VariableLine, ...]
    message_widget: str | None
    samples: tuple[str, ...]


def _supplied(spec: Spec, plan: pl.DataFrame) -> dict[str, str]:
    """Every Parameters key the job supplies, and from where."""
    keys = {key: f"column {column}" for key, column in spec.mapping.parameters}
    keys.update({key: "static" for key, _ in static_parameter_pairs(spec.mapping.static_parameters)})
    if spec.mapping.parameters_column:
        seen: set[str] = set()
        for text in plan.get_column("parameters").drop_nulls().head(_KEY_SAMPLE_ROWS).to_list():
            value = json.loads(text)
            seen.update(_dotted(value) if isinstance(value, dict) else ())
        keys.update({key: "parameters_column" for key in seen if key not in keys})
    return keys


def _dotted(value: dict[str, Any], prefix: str = "") -> list[str]:
    keys: list[str] = []
    for key, item in value.items():
        keys.append(prefix + key)
        if isinstance(item, dict):
            keys.extend(_dotted(item, f"{prefix}{key}."))
    return keys


def _empty_rows(plan: pl.DataFrame, variables: list[FlowVariable]) -> dict[str, int]:
    """Rows to be sent whose Parameters leave a required path out or blank (mapped nulls are left out)."""
    pending = plan.filter(pl.col("status") == "pending")
    checks = [
        pl.col("parameters")
        .str.json_path_match(f"$.{v.path}")
        .fill_null("")
        .str.strip_chars()
        .eq("")
        .sum()
        .alias(v.path)
        for v in variables
        if v.required and all(part.isidentifier() for part in v.path.split("."))
    ]
    if not checks or pending.height == 0:
        return {}
    return {k: int(n) for k, n in pending.select(checks).row(0, named=True).items()}


def review(spec: Spec, plan: pl.DataFrame, published: dict[str, Any]) -> FlowReview:
    """Hold the job against the published revision; raises ``check.FlowWiringError`` for an unwired Flow."""
    definition = published.get("definition")
    definition = definition if isinstance(definition, dict) else {}
    target = rest_trigger(definition) or ""
    variables = flow_variables(definition)
    supplied = _supplied(spec, plan)
    check = compare(variables, supplied, marker_key=spec.send.marker_key or None)
    empty = _empty_rows(plan, variables)
    missing = {v.path for v in check.missing}
    lines = tuple(
        VariableLine(
            path=v.path,
            required=v.required,
            source=None if v.path in missing else _source(v.path, supplied),
            widgets=v.widgets,
            empty_rows=empty.get(v.path, 0) if v.path not in missing else 0,
        )
        for v in variables
    )
    message = first_message(definition)
    samples: tuple[str, ...] = ()
    if message is not None:
        rows = plan.filter(pl.col("status") == "pending").head(_SAMPLES).get_column("parameters").to_list()
        samples = tuple(render(message[1], json.loads(p) if p else {}) for p in rows)
    revision = published.get("revision")
    name = published.get("friendly_name")
    return FlowReview(
        name=name if isinstance(name, str) else None,
        revision=revision if isinstance(revision, int) else None,
        trigger_target=target,
        check=check,
        variables=lines,
        message_widget=message[0] if message else None,
        samples=samples,
    )


def _source(path: str, supplied: dict[str, str]) -> str | None:
    for key, source in supplied.items():
        if path == key or path.startswith(key + ".") or key.startswith(path + "."):
            return source
    return None


def log_findings(found: FlowReview) -> None:
    """A warning per variable the Flow prints and the job leaves empty (with its widgets); the unused keys at info."""
    for variable in found.check.missing:
        log.warning(
            "flow.variable_missing",
            path=variable.path,
            widgets=list(variable.widgets),
            message=f"the Flow prints flow.data.{variable.path} in {', '.join(variable.widgets)}, "
            "but the job supplies no such key: every contact would see it empty",
        )
    if found.check.unused:
        log.info("flow.unused_keys", keys=list(found.check.unused))
