"""Turning input rows into planned requests: map, normalize, encode, dedupe.

The plan is a polars frame with one line per input row, in input order:
``row, to, from, parameters, status, error_message`` where status is
``pending``, ``invalid`` or ``duplicate``. Planning is pure: no network, no checkpoint.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import polars as pl

from . import phone
from .errors import ConfigError
from .source import require_columns
from .spec import MappingSpec, Spec, static_parameter_pairs

__all__ = ["PLAN_SCHEMA", "build_parameters", "plan", "text_columns"]

PLAN_SCHEMA = {
    "row": pl.Int64,
    "to": pl.String,
    "from": pl.String,
    "parameters": pl.String,
    "status": pl.String,
    "error_message": pl.String,
}
MAX_ADDRESS_BYTES = 300  # Twilio error 81023: To and From together


def text_columns(mapping: MappingSpec) -> list[str]:
    """Columns that must be read as text whatever they look like (addresses, JSON)."""
    cols = [mapping.to]
    if mapping.from_column:
        cols.append(mapping.from_column)
    if mapping.parameters_column:
        cols.append(mapping.parameters_column)
    return cols


def _tree(pairs: list[tuple[str, pl.Expr]]) -> dict[str, Any]:
    tree: dict[str, Any] = {}
    for dotted, expr in pairs:
        node = tree
        *parents, leaf = dotted.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = expr
    return tree


def _struct(tree: Mapping[str, Any]) -> pl.Expr:
    fields = [(_struct(v) if isinstance(v, dict) else v).alias(k) for k, v in tree.items()]
    return pl.struct(fields)


def build_parameters(mapping: MappingSpec) -> pl.Expr | None:
    """The vectorized ``Parameters`` JSON expression, or None when nothing is mapped."""
    pairs = [(key, pl.col(column)) for key, column in mapping.parameters]
    pairs += [(key, pl.lit(value)) for key, value in static_parameter_pairs(mapping.static_parameters)]
    if not pairs:
        return None
    return _struct(_tree(pairs)).struct.json_encode()


def _drop_nulls(value: Any) -> Any:
    if isinstance(value, dict):
        cleaned = {k: _drop_nulls(v) for k, v in value.items() if v is not None}
        return {k: v for k, v in cleaned.items() if v != {}}
    return value


def _dumps(value: Any) -> str:
    # Matches polars' own encoding, so a row's bytes do not depend on which path built it.
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def _merge_under(base: dict[str, Any], mapped: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in mapped.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge_under(merged[key], value)
        else:
            merged[key] = value
    return merged


def plan(frame: pl.DataFrame, spec: Spec, *, source_name: str = "input") -> pl.DataFrame:
    """Validate and map every row; see the module docstring for the result's shape."""
    mapping = spec.mapping
    needed = [("mapping.to", mapping.to)]
    if mapping.from_column:
        needed.append(("mapping.from_column", mapping.from_column))
    if mapping.parameters_column:
        needed.append(("mapping.parameters_column", mapping.parameters_column))
    needed += [(f"mapping.parameters.{k}", c) for k, c in mapping.parameters]
    require_columns(source_name, frame, needed)

    to = phone.normalize(frame[mapping.to], mapping.default_region, what="To")
    if mapping.from_column:
        from_ = phone.normalize(frame[mapping.from_column], mapping.default_region, what="From")
    else:
        assert mapping.from_ is not None
        literal = phone.normalize(pl.Series([mapping.from_]), mapping.default_region, what="From")
        if literal["reason"][0] is not None:
            raise ConfigError("mapping.from", str(literal["reason"][0]))
        from_ = pl.DataFrame(
            {"address": pl.repeat(literal["address"][0], frame.height, eager=True, dtype=pl.String)}
        ).with_columns(reason=pl.lit(None, dtype=pl.String))

    params_expr = build_parameters(mapping)
    params = (
        frame.select(params_expr.alias("p"))["p"]
        if params_expr is not None
        else pl.repeat("{}", frame.height, eager=True, dtype=pl.String)
    )
    param_reasons: list[str | None] | None = None
    mapped_columns = [c for _, c in mapping.parameters]
    fix_rows = pl.Series([False] * frame.height)
    if mapped_columns:
        fix_rows = frame.select(pl.any_horizontal(pl.col(mapped_columns).is_null()))[:, 0]
    if mapping.parameters_column:
        fix_rows = fix_rows | frame[mapping.parameters_column].is_not_null()
    if fix_rows.any():
        # Only rows with nulls or a JSON column take the slow path; the rest stay vectorized.
        values = params.to_list()
        extra = frame[mapping.parameters_column].to_list() if mapping.parameters_column else None
        param_reasons = [None] * frame.height
        for i in fix_rows.arg_true().to_list():
            mapped = _drop_nulls(json.loads(values[i]))
            if extra is not None and extra[i] is not None:
                try:
                    base = json.loads(extra[i])
                except ValueError as exc:
                    param_reasons[i] = f"{mapping.parameters_column}: not valid JSON ({exc.msg})"
                    continue
                if not isinstance(base, dict):
                    param_reasons[i] = f"{mapping.parameters_column}: JSON is not an object"
                    continue
                mapped = _merge_under(base, mapped)
            values[i] = _dumps(mapped)
        params = pl.Series(values, dtype=pl.String)

    out = pl.DataFrame(
        {
            "row": pl.int_range(1, frame.height + 1, eager=True, dtype=pl.Int64),
            "to": to["address"],
            "from": from_["address"],
            "parameters": params,
            "to_reason": to["reason"],
            "from_reason": from_["reason"],
            "param_reason": pl.Series(param_reasons or [None] * frame.height, dtype=pl.String),
        }
    )
    limit = spec.send.max_parameters_bytes
    out = out.with_columns(
        reason=pl.coalesce(
            "to_reason",
            "from_reason",
            pl.when((pl.col("to").str.len_bytes() + pl.col("from").str.len_bytes()) > MAX_ADDRESS_BYTES).then(
                pl.lit(f"To and From together exceed {MAX_ADDRESS_BYTES} bytes (Twilio error 81023)")
            ),
            "param_reason",
            pl.when(pl.col("parameters").str.len_bytes() > limit).then(
                pl.format(
                    "Parameters is {} bytes, over the limit of {} (send.max_parameters_bytes)",
                    pl.col("parameters").str.len_bytes(),
                    pl.lit(limit),
                )
            ),
        )
    )
    # Dedupe keys on valid rows only: an invalid row cannot shadow a good one.
    keys = {"to": ["to"], "to_from": ["to", "from"], "none": []}[spec.send.dedupe]
    if keys:
        first = (
            pl.when(pl.col("reason").is_null())
            .then(pl.col("row"))
            .min()
            .over(pl.when(pl.col("reason").is_null()).then(pl.concat_str(keys, separator="\x00")))
        )
        out = out.with_columns(first=first)
    else:
        out = out.with_columns(first=pl.col("row"))
    what = "contact" if spec.send.dedupe == "to" else "contact and sender"
    return out.select(
        "row",
        "to",
        "from",
        pl.when(pl.col("reason").is_null() & (pl.col("parameters") == "{}"))
        .then(pl.lit(None, dtype=pl.String))
        .otherwise(pl.col("parameters"))
        .alias("parameters"),
        pl.when(pl.col("reason").is_not_null())
        .then(pl.lit("invalid"))
        .when(pl.col("first") != pl.col("row"))
        .then(pl.lit("duplicate"))
        .otherwise(pl.lit("pending"))
        .alias("status"),
        pl.when(pl.col("reason").is_not_null())
        .then(pl.col("reason"))
        .when(pl.col("first") != pl.col("row"))
        .then(pl.format("same {} as row {}", pl.lit(what), pl.col("first")))
        .alias("error_message"),
    )
