"""The checkpoint's tables, described once: SQLite's and PostgreSQL's DDL and the frames' column types.

The journal, runs and events tables have the same columns in both databases; PostgreSQL
adds a ``job`` column (many jobs share one schema) and keys every table by it.
"""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

__all__ = [
    "ADDED_JOURNAL_COLUMNS",
    "EVENT_COLUMNS",
    "JOURNAL_COLUMNS",
    "PG_ADDED",
    "PG_DDL",
    "PG_TABLES",
    "RUN_COLUMNS",
    "SCHEMA_VERSION",
    "SQLITE_ADDED",
    "SQLITE_DDL",
    "journal_select",
]

SCHEMA_VERSION = "2"


@dataclass(frozen=True)
class _Column:
    name: str
    pg_type: str
    constraint: str = ""


_SQLITE_TYPES = {"TEXT": "TEXT", "BIGINT": "INTEGER", "INTEGER": "INTEGER", "DOUBLE PRECISION": "REAL"}
_POLARS_TYPES = {"TEXT": pl.String, "BIGINT": pl.Int64, "INTEGER": pl.Int64, "DOUBLE PRECISION": pl.Float64}

_JOURNAL = (
    _Column("contact", "TEXT", "NOT NULL"),
    _Column("row", "BIGINT", "NOT NULL"),
    _Column("to_addr", "TEXT", "NOT NULL"),
    _Column("from_addr", "TEXT", "NOT NULL"),
    _Column("params_hash", "TEXT"),
    _Column("marker", "TEXT"),
    _Column("input", "TEXT"),
    _Column("state", "TEXT", "NOT NULL"),
    _Column("sid", "TEXT"),
    _Column("http_status", "INTEGER"),
    _Column("error_code", "INTEGER"),
    _Column("error_message", "TEXT"),
    _Column("attempts", "INTEGER", "NOT NULL DEFAULT 0"),
    _Column("intent_at", "TEXT"),
    _Column("intent_twilio_at", "TEXT"),
    _Column("completed_at", "TEXT"),
)
# Added after format 2 shipped, always by ALTER TABLE (new checkpoints too, so old and new are alike):
# nullable, so a checkpoint of an older release gains them on open, keeps its format, and that release still reads it.
_JOURNAL_ADDED = (
    _Column("ended_sid", "TEXT"),  # the run ``on_active = "end"`` ended before this contact's new one
    _Column("variant", "TEXT"),  # the experiment variant the contact was sent (or held out in)
)
# ``id`` is the key of its own (a serial in PostgreSQL), so it is not in this list.
_RUNS = (
    _Column("started_at", "TEXT", "NOT NULL"),
    _Column("stopped_at", "TEXT"),
    _Column("exit_code", "INTEGER"),
    _Column("input", "TEXT"),
)
_EVENTS = (
    _Column("run", "BIGINT", "NOT NULL"),
    _Column("second", "BIGINT", "NOT NULL"),
    _Column("requests", "INTEGER", "NOT NULL"),
    _Column("ok", "INTEGER", "NOT NULL"),
    _Column("rate_limited", "INTEGER", "NOT NULL"),
    _Column("retries", "INTEGER", "NOT NULL"),
    _Column("lookups", "INTEGER", "NOT NULL"),
    _Column("pacer_rate", "DOUBLE PRECISION", "NOT NULL"),
)

ADDED_JOURNAL_COLUMNS = tuple(c.name for c in _JOURNAL_ADDED)
"""Journal columns added to format 2 in place (``ADD COLUMN``): an older checkpoint lacks them until opened."""

JOURNAL_COLUMNS = {c.name: _POLARS_TYPES[c.pg_type] for c in (*_JOURNAL, *_JOURNAL_ADDED)}
"""The journal's columns and their frame types, in table order."""
# The input digest stays in the database: nothing that reads runs shows it.
RUN_COLUMNS = {"id": pl.Int64} | {c.name: _POLARS_TYPES[c.pg_type] for c in _RUNS if c.name != "input"}
"""The columns a read of the runs table returns, and their frame types."""
EVENT_COLUMNS = {c.name: _POLARS_TYPES[c.pg_type] for c in _EVENTS}
"""The per-second events' columns and their frame types, in table order."""


def journal_select(present: set[str] | None = None) -> str:
    """The journal's column list for a SELECT; an added column the table lacks (``present``) reads as NULL."""
    return ", ".join(
        name if present is None or name in present or name not in ADDED_JOURNAL_COLUMNS else f"NULL AS {name}"
        for name in JOURNAL_COLUMNS
    )


def _sqlite_table(name: str, columns: tuple[_Column, ...], key: tuple[str, ...]) -> str:
    lines = ["id INTEGER PRIMARY KEY"] if key == ("id",) else []
    for c in columns:
        definition = "PRIMARY KEY" if key == (c.name,) else c.constraint
        lines.append(f"{c.name} {_SQLITE_TYPES[c.pg_type]} {definition}".rstrip())
    if len(key) > 1:
        lines.append(f"PRIMARY KEY ({', '.join(key)})")
    return f"CREATE TABLE IF NOT EXISTS {name} (\n    " + ",\n    ".join(lines) + "\n);\n"


def _pg_table(name: str, columns: tuple[_Column, ...], key: tuple[str, ...]) -> str:
    serial = key == ("id",)
    lines = ["id BIGSERIAL PRIMARY KEY", "job TEXT NOT NULL"] if serial else ["job TEXT NOT NULL"]
    lines += [f"{c.name} {c.pg_type} {c.constraint}".rstrip() for c in columns]
    if not serial:
        lines.append(f"PRIMARY KEY ({', '.join(('job', *key))})")
    return f"CREATE TABLE IF NOT EXISTS {{s}}.{name} (\n    " + ",\n    ".join(lines) + "\n);\n"


SQLITE_DDL = (
    "\nCREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);\n"
    + _sqlite_table("journal", _JOURNAL, ("contact",))
    + "CREATE INDEX IF NOT EXISTS journal_state ON journal(state);\n"
    + _sqlite_table("runs", _RUNS, ("id",))
    + _sqlite_table("events", _EVENTS, ("run", "second"))
)
"""The SQLite checkpoint's tables (run on every open: each statement is ``IF NOT EXISTS``)."""

PG_DDL = (
    "\nCREATE SCHEMA IF NOT EXISTS {s};\n"
    "CREATE TABLE IF NOT EXISTS {s}.checkpoint_version (version INTEGER NOT NULL);\n"
    "CREATE TABLE IF NOT EXISTS {s}.meta (\n"
    "    job TEXT NOT NULL, key TEXT NOT NULL, value TEXT NOT NULL, PRIMARY KEY (job, key)\n"
    ");\n"
    + _pg_table("journal", _JOURNAL, ("contact",))
    + "-- Partial, so that the outcome's key lookup can only take the primary key.\n"
    "CREATE INDEX IF NOT EXISTS journal_open ON {s}.journal (job, state) "
    "WHERE state IN ('intent', 'uncertain', 'pending');\n"
    + _pg_table("runs", _RUNS, ("id",))
    + "CREATE INDEX IF NOT EXISTS runs_job ON {s}.runs (job);\n"
    + _pg_table("events", _EVENTS, ("run", "second"))
    + "CREATE TABLE IF NOT EXISTS {s}.plans (job TEXT PRIMARY KEY, saved_at TEXT NOT NULL, plan BYTEA NOT NULL);\n"
    "CREATE TABLE IF NOT EXISTS {s}.leases (\n"
    "    job TEXT PRIMARY KEY, backend_pid INTEGER NOT NULL, holder TEXT NOT NULL, heartbeat_at TIMESTAMPTZ NOT NULL\n"
    ");\n"
)
"""The PostgreSQL checkpoint's tables, ``{s}`` standing for the schema (statements split on ``;``)."""

PG_ADDED = tuple(f"ALTER TABLE {{s}}.journal ADD COLUMN IF NOT EXISTS {c.name} {c.pg_type}" for c in _JOURNAL_ADDED)
"""The statements that add :data:`ADDED_JOURNAL_COLUMNS` to an older PostgreSQL journal (run only when missing)."""

SQLITE_ADDED = tuple(f"ALTER TABLE journal ADD COLUMN {c.name} {_SQLITE_TYPES[c.pg_type]}" for c in _JOURNAL_ADDED)
"""The same for an older SQLite journal."""

PG_TABLES = ("meta", "journal", "runs", "events", "plans", "leases")
"""The PostgreSQL tables that hold a job's lines (each has a ``job`` column)."""
