"""A PostgreSQL checkpoint's tables: made on first use, versioned, a job's meta read and checked, a job set aside.

``schema`` holds many jobs; every table carries a ``job`` column with the key. Tables are
created under a transaction-scoped advisory lock (two machines starting at once would
otherwise race on ``CREATE TABLE IF NOT EXISTS``); ``checkpoint_version`` records their
layout so a later version can upgrade them. A ``--restart`` renames the old key to
``<key>@<UTC stamp>.old`` (kept, never deleted).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import psycopg

from ...errors import UsageError
from ...postgres import PgLocation
from ...states import POSSIBLY_SENT, REACHED, sql_list
from ..schema import ADDED_JOURNAL_COLUMNS, PG_ADDED, PG_DDL, PG_TABLES, journal_select

__all__ = [
    "LAYOUT_VERSION",
    "Connection",
    "create_tables",
    "journal_columns",
    "journal_sql",
    "move_aside",
    "reached_count",
    "read_meta",
    "tables_exist",
]

LAYOUT_VERSION = 1
# A constant advisory key so only one session creates or upgrades the tables at a time.
_DDL_LOCK = 0x6261_7463_6865_6E67

Connection = psycopg.Connection[tuple[Any, ...]]
"""A session with the checkpoint's database."""


def journal_sql(loc: PgLocation, condition: str = "", present: set[str] | None = None) -> str:
    """The query for a job's journal lines (``condition``: more of the WHERE clause), in row order.

    ``present``: the journal's columns, when it may predate an added one (a read that does not open it).
    """
    columns = journal_select(present)
    return loc.sql(f"SELECT {columns} FROM {{s}}.journal WHERE job = %s {condition} ORDER BY row")  # noqa: S608


def journal_columns(conn: Connection, loc: PgLocation) -> set[str]:
    """The columns the schema's journal has."""
    rows = conn.execute(
        "SELECT column_name FROM information_schema.columns WHERE table_schema = %s AND table_name = 'journal'",
        (loc.schema,),
    ).fetchall()
    return {str(r[0]) for r in rows}


def _add_columns(conn: Connection, loc: PgLocation) -> None:
    """Give a journal made before the added columns those columns (nullable; older versions still read it)."""
    present = journal_columns(conn, loc)
    for name, statement in zip(ADDED_JOURNAL_COLUMNS, PG_ADDED, strict=True):
        if name not in present:
            conn.execute(loc.sql(statement))


_ALL_TABLES = ("checkpoint_version", *PG_TABLES)


def tables_exist(conn: Connection, loc: PgLocation) -> bool:
    """Whether the schema has the checkpoint tables yet; some of them without the others is refused.

    A table dropped (the journal, say) is never made again: the schema would look like a new one, and every job in it
    would send again to everyone it had reached. Seen as the version row alone, it was a traceback on every run.
    """
    rows = conn.execute(
        "SELECT name FROM unnest(%s::text[]) AS name WHERE to_regclass(format('%%I.%%I', %s::text, name)) IS NULL",
        (list(_ALL_TABLES), loc.schema),
    ).fetchall()
    missing = [str(name) for (name,) in rows]
    if len(missing) == len(_ALL_TABLES):
        return False
    if not missing:
        return True
    names = ", ".join(f"{loc.schema}.{name}" for name in missing)
    lost = "whom its jobs sent to" if {"journal", "meta"} & set(missing) else "what its jobs did"
    raise UsageError(
        f"{loc.describe()}: the checkpoint table {names} is missing (dropped?) while the others remain: the record of "
        f"{lost} is incomplete, so nothing is sent. Restore it from a backup of the database; or, to start afresh "
        "knowing that contacts already reached may be reached again, give the checkpoint a new schema (?schema=...)"
    )


def read_meta(conn: Connection, loc: PgLocation) -> dict[str, str]:
    """The job's meta (empty when it has none: a job that never ran)."""
    if not tables_exist(conn, loc):
        return {}
    rows = conn.execute(loc.sql("SELECT key, value FROM {s}.meta WHERE job = %s"), (loc.key,)).fetchall()
    return {str(k): str(v) for k, v in rows}


def reached_count(conn: Connection, loc: PgLocation) -> int:
    """How many of the job's contacts its journal records as reached or possibly reached."""
    states = sql_list(REACHED | POSSIBLY_SENT)
    row = conn.execute(
        loc.sql(f"SELECT COUNT(*) FROM {{s}}.journal WHERE job = %s AND state IN {states}"),  # noqa: S608
        (loc.key,),
    ).fetchone()
    return int(row[0]) if row else 0


def create_tables(conn: Connection, loc: PgLocation) -> None:
    """Make (or upgrade) the schema's tables, one session at a time; refuse a layout newer than this version's."""
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_DDL_LOCK,))
        if tables_exist(conn, loc):
            row = conn.execute(loc.sql("SELECT max(version) FROM {s}.checkpoint_version")).fetchone()
            version = int(row[0]) if row and row[0] is not None else 0
            if version > LAYOUT_VERSION:
                raise UsageError(
                    f"{loc.describe()}: the tables were made by a newer batch-engage (layout {version}, "
                    f"this one knows {LAYOUT_VERSION}); upgrade batch-engage on this machine"
                )
            if version == LAYOUT_VERSION:
                _add_columns(conn, loc)
                return
        for statement in loc.sql(PG_DDL).split(";"):
            if statement.strip():
                conn.execute(statement)
        _add_columns(conn, loc)
        conn.execute(loc.sql("DELETE FROM {s}.checkpoint_version"))
        conn.execute(loc.sql("INSERT INTO {s}.checkpoint_version VALUES (%s)"), (LAYOUT_VERSION,))


def move_aside(conn: Connection, loc: PgLocation) -> str:
    """Rename the job's lines to ``<key>@<UTC stamp>.old`` in every table; return that key."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
    aside = f"{loc.key}@{stamp}.old"
    with conn.transaction():
        for table in PG_TABLES:
            conn.execute(loc.sql(f"UPDATE {{s}}.{table} SET job = %s WHERE job = %s"), (aside, loc.key))  # noqa: S608
    return aside
