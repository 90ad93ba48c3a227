"""The one rule for numbers JSON has none for (NaN, the infinities, ``1e400``): the row holding one is refused.

It holds wherever a row's Parameters get a number: inside a ``parameters_column`` object, in a float
column mapped to a key, and in an exact number's text (PostgreSQL's ``numeric`` ``'NaN'`` arrives as
``nan``). Leaving the key out would send the Flow a message without its amount; sending the text would
send a word where a number was meant.
"""

from __future__ import annotations

import math

import polars as pl

from ..job import MappingSpec

__all__ = ["finite", "no_json_number"]

_WHY = "is no JSON number (NaN and infinities have none)"
# How an exact number's text spells them: PostgreSQL's numeric as ADBC hands it, and the SQL spellings.
_NOT_FINITE = ["nan", "inf", "-inf", "+inf", "infinity", "-infinity", "+infinity"]


def finite(text: str) -> float:
    """``text`` as a float, for ``json.loads``; a ValueError for NaN and the infinities, which Python would take."""
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{text} {_WHY}")
    return value


def no_json_number(frame: pl.DataFrame, mapping: MappingSpec, numbers: frozenset[str]) -> pl.Expr:
    """Why a row's mapped number cannot be sent, as an expression: its column and value, null for a sendable row.

    ``numbers``: the text columns that held exact numbers (their spelled NaN counts too).
    """
    found: list[pl.Expr] = []
    for column in dict.fromkeys(column for _, column in mapping.parameters):
        col, dtype = pl.col(column), frame.schema[column]
        if dtype.is_float():
            bad = col.is_finite().not_()
        elif dtype == pl.String and column in numbers:
            bad = col.str.to_lowercase().is_in(_NOT_FINITE)
        else:
            continue
        found.append(pl.when(bad).then(pl.format(f"{{}}: {{}} {_WHY}", pl.lit(column), col.cast(pl.String))))
    return pl.coalesce(found) if found else pl.lit(None, pl.String)
