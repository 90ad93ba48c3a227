"""MySQL/MariaDB column types connectorx cannot read as they are, found from the result's metadata.

connectorx reads every DECIMAL as DECIMAL(38,10) (``12.50`` arrives as ``12.5000000000``; an eleventh
decimal is cut, 29 digits panic) and panics, stopping the process with a Rust backtrace, on a typeless
``NULL`` column, on GEOMETRY, on a zero date (``'0000-00-00'``) and on a TIME past ``23:59:59``. So the
result's columns are asked for first, with the query wrapped to return no rows (``LIMIT 0``: the server
plans it, sends its column definitions and reads nothing): a column connectorx cannot read is refused by
name before anything is read, each DECIMAL gets its declared scale back, and a panic on a value is
traced to the columns of that type.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import polars as pl

from ..errors import InputFileError
from .columns import QUERY_NAME, duplicated, unreadable

__all__ = ["DECIMAL_TOO_LONG", "Column", "check_columns", "panic_error", "result_columns", "with_scales"]

# MySQL's field type codes (include/mysql_com.h, ``enum_field_types``).
_DECIMALS = frozenset({0, 246})
_NULL, _GEOMETRY = 6, 255
_DUPLICATE_NAME = 1060  # ER_DUP_FIELDNAME: the wrapped query's result names a column twice
_CONNECTORX_SCALE = 10
_CONNECTORX_DIGITS = 28  # rust_decimal's: at scale 10, 18 digits before the point
_WHOLE_DIGITS = _CONNECTORX_DIGITS - _CONNECTORX_SCALE
DECIMAL_TOO_LONG = "decimal scale is not equal to expected scale"  # connectorx's error past those 18 digits
# The Rust type connectorx wanted, as its panic names it, and the field types it reads that way.
_PANIC_TYPES = {
    "NaiveDateTime": ("a date and time (a zero date?)", frozenset({7, 12})),
    "NaiveDate": ("a date (a zero date?)", frozenset({10, 14})),
    "NaiveTime": ("a time of day (a time past 23:59:59?)", frozenset({11})),
    "Decimal": (f"a decimal (over {_WHOLE_DIGITS} digits before the point?)", _DECIMALS),
}


@dataclass(frozen=True)
class Column:
    """One column of the result: its name, MySQL field type code, declared scale and display length."""

    name: str
    type_code: int
    scale: int
    length: int


# A statement's closing ";", and a line comment after it: no subquery takes them.
_LAST_SEMICOLON = re.compile(r";\s*(?:(?:--|#)[^\n]*)?\s*$")


def result_columns(conn: Any, query: str) -> list[Column] | None:
    """The columns ``query`` returns, asked with the query wrapped to return none; None when it cannot be wrapped.

    Two columns of one name are refused here (``InputFileError``): the server names the column.
    """
    import pymysql  # noqa: PLC0415 - only MySQL jobs pay for it

    body = _LAST_SEMICOLON.sub("", query.strip())
    try:
        with conn.cursor() as cur:
            # The job's own SQL, as connectorx runs it next, in this read-only session; on lines of its own, so that
            # a line comment at its end (-- note, # note) does not swallow the wrapping's ")".
            cur.execute(f"SELECT * FROM (\n{body}\n) AS batch_engage_columns LIMIT 0")  # noqa: S608
            return [Column(d[0], d[1], d[5] or 0, d[3] or 0) for d in cur.description or ()]
    except pymysql.MySQLError as exc:
        named = re.search(r"'(.*)'", str(exc.args[1])) if len(exc.args) > 1 else None
        if exc.args and exc.args[0] == _DUPLICATE_NAME and named:
            raise duplicated([named[1], named[1]]) or exc from None
        # Not every statement wraps (a syntax error, a form no subquery takes): connectorx runs it as it is.
        return None


def check_columns(columns: list[Column]) -> None:
    """Refuse, by name, a column connectorx would panic on or whose decimals it would cut."""
    for column in columns:
        if column.type_code == _NULL:
            raise unreadable(
                column.name,
                "a NULL with no type, which connectorx cannot read",
                f"give it one in the query (`cast(null as char) as {column.name}`) or leave it out",
            )
        if column.type_code == _GEOMETRY:
            raise unreadable(
                column.name, "a GEOMETRY column, which connectorx cannot read", "ST_AsText() it in the query"
            )
        # The display length counts a sign and a decimal point; a DECIMAL(M,D) shows at most M digits.
        digits = column.length - 1 - (1 if column.scale else 0)
        if column.type_code in _DECIMALS and column.scale > _CONNECTORX_SCALE:
            cut = f"a DECIMAL with {column.scale} decimals, more than the {_CONNECTORX_SCALE} connectorx keeps"
            raise unreadable(column.name, f"{cut}: its values would arrive cut short", "cast it to CHAR in the query")
        if column.type_code in _DECIMALS and digits - column.scale > _WHOLE_DIGITS:
            whole = digits - column.scale
            many = f"a DECIMAL of up to {whole} digits before the point, more than the {_WHOLE_DIGITS} connectorx reads"
            raise unreadable(column.name, many, "cast it to CHAR in the query")


def with_scales(frame: pl.DataFrame, columns: list[Column]) -> pl.DataFrame:
    """Each DECIMAL back at its declared scale, so its text is the server's (``12.50``)."""
    scales = {c.name: c.scale for c in columns if c.type_code in _DECIMALS}
    return frame.with_columns(
        pl.col(name).cast(pl.Decimal(38, scale))
        for name, scale in scales.items()
        if isinstance(frame.schema.get(name), pl.Decimal)
    )


def panic_error(message: str, columns: list[Column] | None) -> InputFileError:
    """The one line for connectorx's panic on a value, naming the columns of the type it could not convert."""
    reason = " ".join(message.split())
    value = re.search(r"\(\"('[^\"]*')\"\)", reason)
    shown = f"holds {value[1]}, " if value else "holds a value "
    for rust, (kind, codes) in _PANIC_TYPES.items():
        if (
            f"::{rust}>" not in reason
            and f"::{rust}`" not in reason
            and not (rust == "Decimal" and DECIMAL_TOO_LONG in reason)
        ):
            continue
        candidates = [c.name for c in columns or () if c.type_code in codes]
        what = f"{shown}which connectorx cannot read as {kind}"
        if len(candidates) == 1:
            return unreadable(candidates[0], what, "cast it to CHAR in the query")
        if candidates:
            named = ", ".join(repr(c) for c in candidates)
            return InputFileError(QUERY_NAME, f"one of the columns {named} {what}; cast it to CHAR in the query")
    return InputFileError(
        QUERY_NAME, f"the query's result cannot be read by connectorx ({reason}); cast its unusual columns to CHAR"
    )
