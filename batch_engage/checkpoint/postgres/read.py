"""Reading a PostgreSQL checkpoint without its lock (``status``, ``report``, ``collect``): safe while a run goes on."""

from __future__ import annotations

import io
from datetime import datetime

import polars as pl

from ...errors import UsageError
from ...postgres import PgLocation, where
from ..model import CheckpointView, check_readable, journal_frame
from ..schema import EVENT_COLUMNS, RUN_COLUMNS
from .lease import is_locked
from .tables import Connection, journal_columns, journal_sql, read_meta, tables_exist

__all__ = ["exists", "jobs_beside", "meta_of", "read_only"]


def exists(location: str | PgLocation, *, plan: bool = False) -> bool:
    """Whether this job has a checkpoint in the database (``plan``: one with its plan saved)."""
    loc = where(location)
    with loc.connect() as conn:
        if not read_meta(conn, loc):
            return False
        if not plan:
            return True
        row = conn.execute(loc.sql("SELECT 1 FROM {s}.plans WHERE job = %s"), (loc.key,)).fetchone()
        return row is not None


def meta_of(location: str | PgLocation) -> dict[str, str]:
    """This job's meta alone (its token, binding); empty when it has none."""
    loc = where(location)
    with loc.connect() as conn:
        return read_meta(conn, loc)


def jobs_beside(location: str) -> list[str]:
    """``location`` with the key of each job in its schema (rehearsals and set-aside ones included)."""
    loc = where(location)
    with loc.connect() as conn:
        if not tables_exist(conn, loc):
            return []
        keys = conn.execute(loc.sql("SELECT DISTINCT job FROM {s}.meta ORDER BY job")).fetchall()
    base = location.rsplit("#", 1)[0]
    return [f"{base}#{key}" for (key,) in keys]


def read_only(location: str | PgLocation) -> CheckpointView:
    """Everything this job's checkpoint holds, read in one snapshot without its lock: safe while a run goes on."""
    loc = where(location)
    with loc.connect(autocommit=False) as conn:
        conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
        meta = read_meta(conn, loc)
        if not meta:
            raise UsageError(f"{loc.describe()}: no checkpoint yet: the job has not run")
        check_readable(loc.describe(), meta)
        plan, journal, runs, events = _read_tables(conn, loc)
        conn.rollback()
    stamps = [
        meta.get("created_at"),
        journal.get_column("completed_at").max(),
        journal.get_column("intent_at").max(),
        runs.get_column("stopped_at").max(),
        runs.get_column("started_at").max(),
    ]
    newest = max(str(s) for s in stamps if s)
    return CheckpointView(
        plan=plan,
        journal=journal,
        meta=meta,
        runs=runs,
        events=events,
        live=is_locked(loc),
        modified=datetime.fromisoformat(newest.replace("Z", "+00:00")),
    )


def _read_tables(
    conn: Connection, loc: PgLocation
) -> tuple[pl.DataFrame | None, pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    """The job's plan (None if never saved), journal, runs and events."""
    key = (loc.key,)
    present = journal_columns(conn, loc)
    journal = journal_frame(conn.execute(journal_sql(loc, present=present), key).fetchall())
    runs = conn.execute(
        loc.sql(f"SELECT {', '.join(RUN_COLUMNS)} FROM {{s}}.runs WHERE job = %s ORDER BY id"),  # noqa: S608
        key,
    ).fetchall()
    events = conn.execute(
        loc.sql(f"SELECT {', '.join(EVENT_COLUMNS)} FROM {{s}}.events WHERE job = %s ORDER BY run, second"),  # noqa: S608
        key,
    ).fetchall()
    blob = conn.execute(loc.sql("SELECT plan FROM {s}.plans WHERE job = %s"), key).fetchone()
    return (
        pl.read_parquet(io.BytesIO(blob[0])) if blob else None,
        journal,
        pl.DataFrame(runs, schema=RUN_COLUMNS, orient="row"),
        pl.DataFrame(events, schema=EVENT_COLUMNS, orient="row"),
    )
