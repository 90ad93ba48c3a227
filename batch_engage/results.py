"""The results table: the plan left-joined with the journal, one line per input row."""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path

import polars as pl

from .checkpoint import private_file

__all__ = ["RESULT_COLUMNS", "STATUSES", "build_results", "counts_by_status", "write_results"]

RESULT_COLUMNS = [
    "row",
    "to",
    "from",
    "status",
    "sid",
    "http_status",
    "error_code",
    "error_message",
    "attempts",
    "completed_at",
]
STATUSES = (
    "sent",
    "already_active",
    "failed",
    "invalid",
    "duplicate",
    "suppressed",
    "capped",
    "uncertain",
    "pending",
)


def build_results(plan: pl.DataFrame, journal: pl.DataFrame) -> pl.DataFrame:
    """Project plan + journal into the results table, in input order."""
    joined = plan.join(journal.drop("key"), on="row", how="left", maintain_order="left")
    state = pl.col("state")
    status = (
        pl.when(pl.col("status") != "pending")
        .then(pl.col("status"))
        .when(state.is_in(["sent", "already_active", "failed", "capped", "uncertain"]))
        .then(state)
        .when(state == "intent")
        .then(pl.lit("uncertain"))
        .otherwise(pl.lit("pending"))
    )
    in_journal = pl.col("status") == "pending"
    return joined.select(
        pl.col("row"),
        pl.col("to"),
        pl.col("from"),
        status.alias("status"),
        pl.when(in_journal).then(pl.col("sid")).alias("sid"),
        pl.when(in_journal).then(pl.col("http_status")).alias("http_status"),
        pl.when(in_journal).then(pl.col("error_code")).alias("error_code"),
        pl.when(in_journal & pl.col("state").is_not_null() & (state != "pending"))
        .then(pl.col("error_message_right"))
        .otherwise(pl.col("error_message"))
        .alias("error_message"),
        pl.col("attempts").fill_null(0).alias("attempts"),
        pl.when(in_journal).then(pl.col("completed_at")).alias("completed_at"),
    )


def counts_by_status(results: pl.DataFrame) -> dict[str, int]:
    """Rows per status, every status present (zero where none)."""
    found = Counter(dict(results.group_by("status").len().iter_rows()))
    return {status: int(found.get(status, 0)) for status in STATUSES}


def write_results(results: pl.DataFrame, path: str | Path) -> Path:
    """Write atomically, readable by the owner only; CSV or Parquet by extension."""
    target = Path(path)
    tmp = target.with_name(target.name + ".tmp")
    private_file(tmp)
    if target.suffix == ".parquet":
        results.write_parquet(tmp)
    else:
        results.write_csv(tmp)
    os.replace(tmp, target)
    return target
