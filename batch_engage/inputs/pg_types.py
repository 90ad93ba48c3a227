"""PostgreSQL's result as ADBC hands it over (Arrow, each field naming its SQL type), made a polars frame.

Some SQL types arrive in a shape that would send the wrong thing or stop with a traceback, so they are
refused by column name first: ``money`` comes as whole cents in a plain int64 (``12.50`` would go out as
``1250``), and ``'infinity'`` dates and timestamps as the extreme 32/64-bit values, on which polars
panics. Whatever else polars cannot import (``interval``) is named the same way.
"""

from __future__ import annotations

from datetime import UTC, date, datetime

import polars as pl
import pyarrow as pa
import pyarrow.compute as pc

from ..errors import InputFileError
from .columns import QUERY_NAME, TEXT_FIX, duplicated, is_panic, quiet_panics, unreadable

__all__ = ["pg_frame"]

_TYPE_KEY = b"POSTGRESQL:type"
# Python's own range of dates: rows, reports and JSON all go through it somewhere.
_FIRST_DAY, _LAST_DAY = date(1, 1, 1), date(9999, 12, 31)
_EPOCH = date(1970, 1, 1)
_PER_SECOND = {"s": 1, "ms": 1_000, "us": 1_000_000, "ns": 1_000_000_000}


def _sql_type(field: pa.Field) -> str:
    metadata = field.metadata or {}
    return metadata.get(_TYPE_KEY, b"").decode(errors="replace") or str(field.type)


def _bounds(dtype: pa.DataType) -> tuple[int, int] | None:
    """The stored integers of ``dtype`` that fall within Python's dates, or None for a type that is no date."""
    if pa.types.is_date32(dtype):
        return (_FIRST_DAY - _EPOCH).days, (_LAST_DAY - _EPOCH).days
    if pa.types.is_timestamp(dtype):
        per_second = _PER_SECOND[dtype.unit]
        first = int(datetime(1, 1, 2, tzinfo=UTC).timestamp())  # a day's margin for any time zone
        last = int(datetime(9999, 12, 30, tzinfo=UTC).timestamp())
        return first * per_second, last * per_second
    return None


def _check_dates(field: pa.Field, column: pa.ChunkedArray) -> None:
    bounds = _bounds(field.type)
    if bounds is None or column.null_count == len(column):
        return
    storage = column.cast(pa.int32() if pa.types.is_date32(field.type) else pa.int64())
    found = pc.min_max(storage).as_py()
    if found["min"] < bounds[0] or found["max"] > bounds[1]:
        raise unreadable(
            field.name,
            f"a PostgreSQL {_sql_type(field)} column holding 'infinity' or a date outside the years 1 to 9999, "
            "which cannot be read",
            "cast it to text in the query, or leave such dates out (`where day <> 'infinity'`)",
        )


def _check(field: pa.Field, column: pa.ChunkedArray) -> None:
    """Refuse, by name, a column whose values would arrive as something else or stop the conversion."""
    if _sql_type(field) == "money":
        raise unreadable(
            field.name,
            "a PostgreSQL money column, which arrives as whole cents (12.50 would be sent as 1250)",
            "cast it to numeric or text in the query",
        )
    _check_dates(field, column)


def pg_frame(table: pa.Table) -> pl.DataFrame:
    """``table`` as a polars frame; a column that cannot be read as it is stops it, named (``InputFileError``)."""
    twice = duplicated(table.column_names)
    if twice is not None:
        raise twice
    for field, column in zip(table.schema, table.columns, strict=True):
        _check(field, column)
    try:
        with quiet_panics():
            return pl.DataFrame(pl.from_arrow(table))
    except BaseException as exc:
        if not (isinstance(exc, pl.exceptions.PolarsError) or is_panic(exc)):
            raise
        raise _culprit(table) from None


def _culprit(table: pa.Table) -> InputFileError:
    """The line naming the column polars could not import: each is tried alone until one fails."""
    for field in table.schema:
        try:
            with quiet_panics():
                pl.from_arrow(table.select([field.name]))
        except BaseException as exc:
            if not (isinstance(exc, pl.exceptions.PolarsError) or is_panic(exc)):
                raise
            return unreadable(field.name, f"a PostgreSQL {_sql_type(field)} column, which polars cannot read", TEXT_FIX)
    return InputFileError(QUERY_NAME, f"the query's result cannot be read; {TEXT_FIX.replace('it', 'its columns')}")
