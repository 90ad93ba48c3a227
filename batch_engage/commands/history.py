"""The shared history's commands: seeding it from a results table, its daily counts, and its opt-outs."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import polars as pl

from ..errors import UsageError
from ..history import is_database_url, open_history, opt_outs_path
from ..job import Spec
from ..results import unguarded, write_results
from .resolve import load_job

__all__ = ["forget_opt_out", "history_opt_outs", "history_stats", "import_history", "opt_outs_store"]


def import_history(results: str | Path, *, history: str | Path, flow_sid: str) -> int:
    """Seed the contact history from a results table's ``sent`` and ``already_active`` rows; how many were new.

    A run already in the history (its SID) is not counted again, so importing a table twice changes nothing.
    """
    path = str(results)
    try:
        table = pl.read_parquet(path) if path.endswith(".parquet") else pl.read_csv(path, infer_schema_length=0)
    except (OSError, pl.exceptions.PolarsError) as exc:
        raise UsageError(f"{path}: cannot be read as a results table ({exc})") from None
    missing = {"to", "status", "sid", "completed_at"} - set(table.columns)
    if missing:
        raise UsageError(f"{path}: not a results table (no column {', '.join(sorted(missing))})")
    # Rows numbered as a spreadsheet shows them (the header is row 1 of a CSV).
    numbered = table.with_row_index("_line", offset=1 if path.endswith(".parquet") else 2)
    reached = numbered.filter(pl.col("status").is_in(["sent", "already_active"]))
    rows = [
        (unguarded(to), flow_sid, sid, _moment(path, line, at))
        for line, to, sid, at in reached.select(
            "_line", "to", "sid", pl.col("completed_at").cast(pl.String)
        ).iter_rows()
        if to and at
    ]
    with open_history(history) as store:
        return store.record(rows)


def _moment(path: str, line: int, at: str) -> float:
    """A row's ``completed_at`` in seconds since the epoch; a time a spreadsheet rewrote is refused, naming its row."""
    try:
        return datetime.fromisoformat(at.replace("Z", "+00:00")).timestamp()
    except ValueError:
        # The cell is the file's text: repr() escapes control characters, and it is cut short.
        shown = repr(at[:40]) + ("…" if len(at) > 40 else "")
        raise UsageError(
            f"{path}, row {line}: completed_at {shown} is not an ISO 8601 time like 2026-12-08T03:54:00Z "
            "(a spreadsheet may have rewritten it); nothing was recorded"
        ) from None


def history_stats(history: str | Path) -> pl.DataFrame:
    """Contacts reached per flow per day, from the history file."""
    if not is_database_url(history) and not Path(history).exists():
        raise UsageError(f"{history}: no contact history yet")
    with open_history(history) as store:
        return store.stats()


def history_opt_outs(history: str | Path, *, output: str | Path | None = None) -> pl.DataFrame:
    """Every contact recorded as opted out (21610): ``to``, ``sender``, ``opted_out_at`` (ISO 8601, UTC).

    With ``output``, also written there (CSV or Parquet by its suffix, owner-only, atomically).
    """
    table = pl.DataFrame(schema={"to": pl.String, "sender": pl.String, "at": pl.Float64})
    if is_database_url(history) or Path(history).exists():
        with open_history(history) as store:
            table = store.opt_outs()
    found = table.select(
        "to",
        "sender",
        pl.from_epoch(pl.col("at"), time_unit="s")
        .dt.replace_time_zone("UTC")
        .dt.strftime("%Y-%m-%dT%H:%M:%SZ")
        .alias("opted_out_at"),
    )
    if output is not None:
        write_results(found, output)
    return found


def forget_opt_out(history: str | Path, number: str) -> int:
    """Remove a contact's opt-outs (they sent START, say); how many entries were removed."""
    if not is_database_url(history) and not Path(history).exists():
        return 0
    with open_history(history) as store:
        return store.forget(number.strip())


def opt_outs_store(job: str | Path | Spec | None, history: str | Path | None) -> str:
    """The opt-out store of ``history``, else of the job (its [history] path, else beside its checkpoint)."""
    if history:
        return str(history)
    path = opt_outs_path(load_job(job)) if job is not None else None
    if path is None:
        raise UsageError("history: give --history PATH, or --job JOB (its [history] path, or a file checkpoint)")
    return path
