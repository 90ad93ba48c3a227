"""Contacts from a query (``input.uri`` + ``input.query``): the catalog's reader for the scheme, then one shape.

Whatever database answers, the result becomes the same :class:`Table` a file does, so
planning cannot tell them apart: mapped columns as text, Arrow extension types as their
exact text, and a digest of the rows for continuation.
"""

from __future__ import annotations

import json
from collections.abc import Iterable

import polars as pl

from ..credentials import resolve_env_reference
from ..errors import ConfigError, InputFileError
from ..job import InputSpec
from .catalog import query_reader
from .columns import decimals_as_text, is_panic, quiet_panics
from .files import Table, as_text, frame_digest, integer_columns
from .pg_query import QUERY_NAME

__all__ = ["QUERY_NAME", "read_query"]


def read_query(spec: InputSpec, *, text_columns: Iterable[str] = ()) -> Table:
    """Run ``spec.query`` on ``spec.uri``; row numbers follow the query's row order, ``text_columns`` become strings."""
    if spec.uri is None or spec.query is None:
        raise ConfigError("input.query", "give input.uri and input.query together")
    uri = resolve_env_reference(spec.uri, "input.uri")
    frame = _rows(uri, spec.query)
    if frame.width == 0:
        raise InputFileError(QUERY_NAME, "the query returns no columns (is it a SELECT?)")
    if frame.height == 0:
        raise InputFileError(QUERY_NAME, "the query returned no rows")
    # ADBC hands numeric and json as Arrow extension types that polars can neither cast nor encode
    # as JSON; their storage is the server's exact text ("12.50"), which is what a file would hold.
    opaque = [c for c, dtype in frame.schema.items() if isinstance(dtype, pl.Extension)]
    numeric = {c for c in opaque if _is_numeric(frame.schema[c])}
    if opaque:
        frame = frame.with_columns(pl.col(c).ext.storage() for c in opaque)
    # A decimal as its exact text too (MariaDB's 12.50, not 12.5000000000); any exact number, like an
    # integer, may have lost a phone number's leading zero, so it is held to the integer columns' rule.
    frame, decimals = decimals_as_text(frame)
    numbers = integer_columns(frame, text_columns) | numeric | decimals
    frame = as_text(frame, text_columns, QUERY_NAME)
    return Table(frame=frame, digest=frame_digest(frame), name=QUERY_NAME, numbers=numbers)


def _rows(uri: str, query: str) -> pl.DataFrame:
    """The reader's frame; a Rust panic no reader foresaw is one line naming the query, not a traceback."""
    try:
        with quiet_panics():
            return query_reader(uri)(uri, query)
    except BaseException as exc:
        if not is_panic(exc):
            raise
        reason = " ".join(str(exc).split()) or "a panic"
        raise InputFileError(
            QUERY_NAME, f"the query's result cannot be read ({reason}); cast its unusual columns to text in the query"
        ) from None


def _is_numeric(dtype: pl.DataType) -> bool:
    """Whether an extension column is PostgreSQL's ``numeric`` (ADBC names the SQL type in its metadata)."""
    try:
        metadata = json.loads(dtype.ext_metadata() or "{}")  # type: ignore[attr-defined]
    except ValueError:
        return False
    return isinstance(metadata, dict) and metadata.get("type_name") == "numeric"
