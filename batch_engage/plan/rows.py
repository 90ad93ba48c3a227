"""Turning input rows into planned requests: map, normalize, encode, dedupe.

The plan is a polars frame with one line per input row, in input order:
``row, to, from, parameters, status, error_message`` where status is
``pending``, ``invalid`` or ``duplicate``. Planning is pure: no network, no checkpoint.

``Parameters`` is built as text by polars expressions, one JSON fragment per key, so
a null is left out without a Python pass over the rows; only rows with a
``parameters_column`` object go through Python, to merge that object under the mapped keys.
"""

from __future__ import annotations

import contextvars
import json
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import date, time
from typing import Any

import polars as pl

from ..errors import ConfigError
from ..inputs import require_columns
from ..job import MappingSpec, Spec, static_parameter_pairs
from . import phone
from .finite import finite, no_json_number

__all__ = ["MAX_ADDRESS_BYTES", "build_parameters", "plan", "planned", "text_columns"]

MAX_ADDRESS_BYTES = 300  # Twilio error 81023: To and From together
_SHOWN_CHARS = 60  # how much of a bad JSON value an error message repeats
# What JSON escapes in a string: text without any is its own JSON (literal needles: faster than a class).
_NEEDS_ESCAPE = ['"', "\\", *map(chr, range(0x20))]


def text_columns(mapping: MappingSpec) -> list[str]:
    """Columns that must be read as text whatever they look like (addresses, JSON)."""
    return [c for c in (mapping.to, mapping.from_column, mapping.parameters_column) if c]


def _dumps(value: Any) -> str:
    # Compact and UTF-8 like polars' own encoding, so a row's bytes do not depend on which path built it.
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False, default=_iso)


def _iso(value: Any) -> str:
    # TOML has dates and times; JSON does not, so they travel as ISO 8601 text.
    if isinstance(value, date | time):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON")


@dataclass(frozen=True)
class _Json:
    """JSON text as expressions to concatenate, and whether it is there on every row (else null where absent).

    ``skip_nulls``: the pieces of an object hold members that may be absent, skipped when
    joined; a value's pieces are joined as they are, so a null value makes the whole null.
    """

    pieces: tuple[pl.Expr | str, ...]
    always: bool
    skip_nulls: bool = False

    def joined(self) -> pl.Expr:
        """The pieces as one expression; neighbouring literal text is one piece (each piece costs a pass)."""
        merged: list[pl.Expr | str] = []
        for piece in self.pieces:
            if isinstance(piece, str) and merged and isinstance(merged[-1], str):
                merged[-1] += piece
            else:
                merged.append(piece)
        exprs = [pl.lit(piece, pl.String) if isinstance(piece, str) else piece for piece in merged]
        return exprs[0] if len(exprs) == 1 else pl.concat_str(exprs, ignore_nulls=self.skip_nulls)


def _holds_bytes(dtype: Any) -> bool:
    """Whether values of ``dtype`` hold raw bytes or Python objects somewhere (JSON has no way to carry them)."""
    if dtype in (pl.Binary, pl.Object):
        return True
    if isinstance(dtype, pl.List | pl.Array):
        return _holds_bytes(dtype.inner)
    if isinstance(dtype, pl.Struct):
        return any(_holds_bytes(f.dtype) for f in dtype.fields)
    return False


def _plain_columns(frame: pl.DataFrame, columns: list[str]) -> set[str]:
    """The float columns with only finite values and the text columns with nothing to escape, in one pass.

    Their JSON is their text (quoted, for text); each check is a scan of the column, and one ``select``
    lets polars run them side by side.
    """
    checks = []
    for column in dict.fromkeys(columns):
        dtype = frame.schema[column]
        if dtype.is_float():
            checks.append(pl.col(column).is_finite().all().alias(column))
        elif dtype == pl.String:
            checks.append(pl.col(column).str.contains_any(_NEEDS_ESCAPE).any().not_().alias(column))
    if not checks:
        return set()
    found = frame.select(checks).row(0, named=True)
    return {column for column, plain in found.items() if plain}


def _json_value(frame: pl.DataFrame, column: str, key: str, plain: set[str]) -> _Json:
    """Each value of ``column`` as JSON text, null where the value is null (or NaN: :mod:`.finite` refuses its row).

    A list column becomes a JSON array (what Studio hands the Flow as ``flow.data.<key>``); a
    binary one is refused by name: bytes have no JSON form. ``plain``: see :func:`_plain_columns`.
    """
    col = pl.col(column)
    series = frame.get_column(column)
    if _holds_bytes(series.dtype):
        raise ConfigError(
            f"mapping.parameters.{key}",
            f"column {column!r} holds binary data ({series.dtype}), which Parameters (JSON) cannot carry; "
            "cast it to text in the input",
        )
    always = series.null_count() == 0
    if series.dtype.is_integer() or series.dtype == pl.Boolean:
        return _Json((col.cast(pl.String),), always)
    if series.dtype.is_float():
        always = always and column in plain
        # Polars writes floats as json_encode does (shortest round trip), so a plain cast is the JSON.
        return _Json((col.cast(pl.String) if always else pl.when(col.is_finite()).then(col.cast(pl.String)),), always)
    if series.dtype == pl.String and column in plain:
        return _Json(('"', col, '"'), always)
    encoded = pl.struct(col.alias("v")).struct.json_encode().str.slice(len('{"v":')).str.strip_suffix("}")
    return _Json((encoded if always else pl.when(col.is_not_null()).then(encoded),), always)


def _tree(pairs: list[tuple[str, _Json]]) -> dict[str, Any]:
    tree: dict[str, Any] = {}
    for dotted, value in pairs:
        node = tree
        *parents, leaf = dotted.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return tree


def _object(tree: Mapping[str, Any]) -> _Json:
    """An object's JSON; absent (null) on rows where every member is, so an object of nulls is left out too."""
    members = [(_dumps(key) + ":", _object(v) if isinstance(v, dict) else v) for key, v in tree.items()]
    if members[0][1].always:
        # One flat concatenation, nulls skipped: each later member carries its leading comma,
        # and the first is on every row, so a member left out never leaves a stray comma.
        pieces: list[pl.Expr | str] = ["{"]
        for i, (key, value) in enumerate(members):
            prefix = ("," if i else "") + key
            pieces += [prefix, *value.pieces] if value.always else [pl.concat_str([pl.lit(prefix), value.joined()])]
        pieces.append("}")
        return _Json(tuple(pieces), always=True, skip_nulls=True)
    fragments = [pl.concat_str([pl.lit(key), value.joined()]) for key, value in members]
    inner = pl.concat_str(fragments, separator=",", ignore_nulls=True)
    whole = pl.concat_str([pl.lit("{"), inner, pl.lit("}")])
    if any(value.always for _, value in members):
        return _Json((whole,), True)
    return _Json((pl.when(inner != "").then(whole),), False)


def build_parameters(mapping: MappingSpec, frame: pl.DataFrame) -> pl.Expr | None:
    """The vectorized ``Parameters`` JSON expression for ``frame`` (nulls left out), or None when nothing is mapped."""
    plain = _plain_columns(
        frame, [column for _, column in mapping.parameters if not _holds_bytes(frame.schema[column])]
    )
    pairs = [(key, _json_value(frame, column, key, plain)) for key, column in mapping.parameters]
    for key, value in static_parameter_pairs(mapping.static_parameters):
        try:
            pairs.append((key, _Json((_dumps(value),), True)))
        except (TypeError, ValueError):
            raise ConfigError(f"mapping.static_parameters.{key}", f"cannot be sent as JSON: {value!r}") from None
    if not pairs:
        return None
    return _object(_tree(pairs)).joined().fill_null("{}")


def _drop_nulls(value: Any) -> Any:
    if isinstance(value, dict):
        cleaned = {k: _drop_nulls(v) for k, v in value.items() if v is not None}
        return {k: v for k, v in cleaned.items() if v != {}}
    return value


def _merge_under(base: dict[str, Any], mapped: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in mapped.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge_under(merged[key], value)
        else:
            merged[key] = value
    return merged


def _shown(value: str) -> str:
    return repr(value if len(value) <= _SHOWN_CHARS else value[:_SHOWN_CHARS] + "…")


def _merge_column(params: pl.Series, extra: pl.Series, column: str) -> tuple[pl.Series, pl.Series]:
    """Merge each row's JSON object under its mapped keys; the new Parameters and a reason per row."""
    values = params.to_list()
    reasons: list[str | None] = [None] * len(values)
    texts = extra.str.strip_chars()
    rows = (texts.is_not_null() & (texts != "")).arg_true().to_list()
    objects = texts.gather(rows).to_list()
    for i, text in zip(rows, objects, strict=True):
        try:
            # NaN, Infinity and 1e400 are no JSON number, though Python's reader takes them: such a row is refused.
            base = json.loads(text, parse_constant=finite, parse_float=finite)
        except ValueError:
            reasons[i] = f"{column}: not valid JSON: {_shown(text)}"
            continue
        if not isinstance(base, dict):
            reasons[i] = f"{column}: not a JSON object: {_shown(text)}"
            continue
        values[i] = _dumps(_drop_nulls(_merge_under(base, json.loads(values[i]))))
    return pl.Series(values, dtype=pl.String), pl.Series(reasons, dtype=pl.String)


def _from_addresses(
    frame: pl.DataFrame, mapping: MappingSpec, region: str | None, ints: bool
) -> tuple[pl.Expr, pl.Expr]:
    """Each row's From and why it cannot be sent, as expressions (one literal for ``mapping.from``)."""
    if mapping.from_column:
        found = phone.normalize(frame[mapping.from_column], region, what="From", numbers=ints)
        return pl.lit(found["address"]), pl.lit(found["reason"])
    assert mapping.from_ is not None
    literal = phone.normalize(pl.Series([mapping.from_]), region, what="From")
    reason = literal["reason"][0]
    if reason is not None:
        raise ConfigError("mapping.from", str(reason).removeprefix("From: "))
    return pl.lit(literal["address"][0], pl.String), pl.lit(None, pl.String)


def plan(frame: pl.DataFrame, spec: Spec, *, source_name: str = "input") -> pl.DataFrame:
    """Validate and map every row; see the module docstring for the result's shape."""
    return planned(frame, spec, source_name=source_name).collect()


def planned(
    frame: pl.DataFrame, spec: Spec, *, source_name: str = "input", numbers: frozenset[str] = frozenset()
) -> pl.LazyFrame:
    """:func:`plan` as a query not yet run, for a caller that adds columns before the one ``collect``.

    The addresses are judged (and the Parameters merged with a ``parameters_column``) first; the rest,
    Parameters, reasons, deduplication and statuses, is one polars query, so its steps run side by side.
    """
    mapping = spec.mapping
    region = _check_mapping(frame, mapping, source_name)
    # The Parameters are built beside the addresses: judging the To column is mostly one core's work, and
    # the JSON needs nothing from it. The addresses' errors still come first, as when one followed the other.
    with ThreadPoolExecutor(1, thread_name_prefix="batch-engage-plan") as beside:
        built = beside.submit(contextvars.copy_context().run, _parameter_columns, frame, mapping, numbers)
        try:
            to = phone.normalize(frame[mapping.to], region, what="To", numbers=mapping.to in numbers)
            from_, from_reason = _from_addresses(frame, mapping, region, mapping.from_column in numbers)
        except BaseException:
            built.cancel()
            raise
        params = built.result()
    out = frame.lazy().select(
        pl.lit(to["address"]).alias("to"),
        from_.alias("from"),
        pl.lit(params.get_column("parameters")),
        pl.lit(to["reason"]).alias("to_reason"),
        from_reason.alias("from_reason"),
        pl.lit(params.get_column("param_reason")),
    )
    out = out.with_row_index("row", offset=1).with_columns(
        pl.col("row").cast(pl.Int64), reason=_reason(spec.send.max_parameters_bytes)
    )
    rows = out.collect()
    return _statuses(rows.lazy().with_columns(first=_first_rows(rows, spec.send.dedupe)), spec.send.dedupe)


def _check_mapping(frame: pl.DataFrame, mapping: MappingSpec, source_name: str) -> str | None:
    """Every mapped column is in the input (else ``ConfigError`` naming its key); return the default region."""
    needed = [("mapping.to", mapping.to)]
    if mapping.from_column:
        needed.append(("mapping.from_column", mapping.from_column))
    if mapping.parameters_column:
        needed.append(("mapping.parameters_column", mapping.parameters_column))
    needed += [(f"mapping.parameters.{k}", c) for k, c in mapping.parameters]
    require_columns(source_name, frame, needed)
    try:
        return phone.region_code(mapping.default_region)
    except ValueError as exc:
        raise ConfigError("mapping.default_region", str(exc)) from None


def _parameter_columns(frame: pl.DataFrame, mapping: MappingSpec, numbers: frozenset[str]) -> pl.DataFrame:
    """``parameters`` and ``param_reason`` for every row, computed (see :func:`_parameters`)."""
    params, param_reason = _parameters(frame, mapping)
    param_reason = pl.coalesce(no_json_number(frame, mapping, numbers), param_reason)
    built = frame.lazy().with_columns(parameters=params, param_reason=param_reason)
    return built.select("parameters", "param_reason").collect()


def _parameters(frame: pl.DataFrame, mapping: MappingSpec) -> tuple[pl.Expr, pl.Expr]:
    """Each row's ``Parameters`` JSON (``{}`` when nothing is mapped) and why a row's cannot be sent, as expressions."""
    params_expr = build_parameters(mapping, frame)
    if params_expr is None:
        params_expr = pl.lit("{}", pl.String)
    if not mapping.parameters_column:
        return params_expr, pl.lit(None, pl.String)
    params = frame.select(params_expr.alias("parameters")).to_series()
    if params.len() != frame.height:
        # Only static parameters: the expression is a literal, one value for every row.
        params = pl.repeat(params[0], frame.height, eager=True, dtype=pl.String)
    merged, reasons = _merge_column(params, frame[mapping.parameters_column], mapping.parameters_column)
    return pl.lit(merged), pl.lit(reasons)


def _reason(limit: int) -> pl.Expr:
    """The first reason a row is invalid: its To, its From, their length together, its Parameters, their size."""
    return pl.coalesce(
        "to_reason",
        "from_reason",
        pl.when((pl.col("to").str.len_bytes() + pl.col("from").str.len_bytes()) > MAX_ADDRESS_BYTES).then(
            pl.lit(f"To and From together are over {MAX_ADDRESS_BYTES} bytes (Twilio error 81023)")
        ),
        "param_reason",
        pl.when(pl.col("parameters").str.len_bytes() > limit).then(
            pl.lit(f"Parameters is over {limit} bytes (send.max_parameters_bytes)")
        ),
    )


def _statuses(out: pl.LazyFrame, dedupe: str) -> pl.LazyFrame:
    """The plan's columns: each row ``invalid`` (with its reason), ``duplicate`` (naming the first) or ``pending``."""
    what = "contact" if dedupe == "to" else "contact and sender"
    repeat = pl.col("first").is_not_null() & (pl.col("first") != pl.col("row"))
    return out.select(
        "row",
        "to",
        "from",
        # No key at all: the request carries no Parameters field rather than an empty object.
        pl.when(pl.col("parameters") != "{}").then(pl.col("parameters")).alias("parameters"),
        pl.when(pl.col("reason").is_not_null())
        .then(pl.lit("invalid"))
        .when(repeat)
        .then(pl.lit("duplicate"))
        .otherwise(pl.lit("pending"))
        .alias("status"),
        pl.when(pl.col("reason").is_not_null())
        .then(pl.col("reason"))
        .when(repeat)
        .then(pl.format("same {} as row {}", pl.lit(what), pl.col("first")))
        .alias("error_message"),
    )


def _first_rows(out: pl.DataFrame, dedupe: str) -> pl.Expr:
    """For each valid row, the first valid row with the same key (itself when it is the first).

    Rows are grouped by a 64-bit hash of their key, a third of the cost of grouping the text. Two keys
    may share a hash (about one pair in 10^7 lists of a million contacts): then a row would name a
    first row with another key, so every repeat is checked against the key of the row it names, and
    grouping by the key itself decides whenever one differs.
    """
    if dedupe == "none":
        return pl.lit(None, pl.Int64)
    keys = ["to"] if dedupe == "to" else ["to", "from"]
    key = pl.col("to") if dedupe == "to" else pl.struct(keys)
    first = _grouped_min(out, key.hash())
    if _collided(out, first, keys):
        first = _grouped_min(out, key)
    return pl.lit(first)


def _grouped_min(out: pl.DataFrame, key: pl.Expr) -> pl.Series:
    """Each valid row's smallest row number among the valid rows with the same ``key``."""
    # Invalid rows take no part: an unusable row cannot shadow a good one.
    valid = pl.col("reason").is_null()
    grouped = pl.when(valid).then(pl.col("row").min().over(pl.when(valid).then(key)))
    return out.lazy().select(grouped.alias("first")).collect().to_series()


def _collided(out: pl.DataFrame, first: pl.Series, keys: list[str]) -> bool:
    """Whether some row names as its first a row with another key (a shared hash, not a repeat)."""
    repeats = (first.is_not_null() & (first != out.get_column("row"))).arg_true()
    if not len(repeats):
        return False
    named = first.gather(repeats) - 1  # row r is at index r - 1
    return any(bool((out[c].gather(repeats) != out[c].gather(named)).any()) for c in keys)
