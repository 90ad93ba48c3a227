"""When each row waiting for its send window may go: one answer for the runner, the report and the arrival check."""

from __future__ import annotations

from datetime import datetime

import polars as pl

from .spec import Spec

__all__ = ["window_openings"]


def window_openings(plan: pl.DataFrame, results: pl.DataFrame, spec: Spec, now: datetime) -> pl.DataFrame:
    """For each pending row waiting for its window: ``row`` and ``opens`` (aware UTC datetime)."""
    window = spec.send.send_window
    empty = pl.DataFrame(schema={"row": pl.Int64, "opens": pl.Datetime("us", "UTC")})
    if window is None or "zones" not in plan.columns:
        return empty
    waiting = results.filter(pl.col("status") == "pending").join(plan.select("row", "zones"), on="row")
    waiting = waiting.filter(pl.col("zones").is_not_null())
    opens = {z: window.next_open(tuple(z.split(",")), now) for z in waiting.get_column("zones").unique().to_list()}
    later = {z for z, when in opens.items() if when is None or when > now}
    rows = [(r, opens[z]) for r, z in waiting.select("row", "zones").iter_rows() if z in later]
    if not rows:
        return empty
    return pl.DataFrame(rows, schema={"row": pl.Int64, "opens": pl.Datetime("us", "UTC")}, orient="row")
