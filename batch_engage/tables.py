"""The results and outcomes tables written to PostgreSQL (``postgresql://host/db#schema.table``), or to a file.

Every write is one transaction: create the schema and table when missing, delete the
job-and-period's rows, load the new ones into a temporary staging table with ADBC's bulk
ingest (binary ``COPY``), ``INSERT … SELECT`` them with their SQL types, commit. Readers
see the old rows until the commit and the new ones after it; a process killed in
between leaves the table as it was (PostgreSQL rolls the transaction back), and rows of
other jobs and periods are never touched. The connection is libpq's, so its password
comes from ``PGPASSWORD``, ``~/.pgpass`` or a service file, never from the job file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import polars as pl

from .errors import UsageError
from .postgres import PgTable, is_postgres_url, parse_table_url
from .results import write_results

__all__ = ["KEY_COLUMNS", "column_types", "write_output", "write_table"]

KEY_COLUMNS = ("job_id", "period", "row")
"""The primary key: ``[job] id`` as written (with its ``{date}``), the period ('' without one), the input row."""

# Columns whose SQL type is not the one their frame type maps to: timestamps kept as ISO text, small counts.
_TYPED = {
    "completed_at": "timestamptz",
    "ended_at": "timestamptz",
    "http_status": "integer",
    "error_code": "integer",
    "attempts": "integer",
    "row": "bigint",
}
_OTHER_TYPES: dict[type[pl.DataType], str] = {pl.Boolean: "boolean", pl.Datetime: "timestamptz", pl.Date: "date"}
_STAGING = "batch_engage_staging"


def _sql_type(name: str, dtype: pl.DataType) -> str:
    if name in _TYPED:
        return _TYPED[name]
    if name.endswith("_error_code"):
        return "integer"
    if dtype.is_integer():
        return "bigint"
    if dtype.is_float():
        return "double precision"
    return _OTHER_TYPES.get(dtype.base_type(), "text")


def column_types(frame: pl.DataFrame) -> dict[str, str]:
    """Each column of ``frame`` and the SQL type its table column has."""
    return {name: _sql_type(name, dtype) for name, dtype in frame.schema.items()}


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _create(cur: Any, table: PgTable, types: dict[str, str]) -> None:
    """Create the schema and table when missing; add the columns a later version (or ``[collect]``) appended."""
    columns = ", ".join(f"{_ident(c)} {t}" for c, t in types.items() if c != "row")
    # Two writers creating one table at once collide on PostgreSQL's catalog despite IF NOT EXISTS (a unique
    # violation, and one job's rows lost): while it is missing, the second waits here for the first's commit,
    # then finds it made. A table that is there takes no lock: its writers never wait on each other.
    cur.execute("SELECT to_regclass($1) IS NULL", (table.qualified,))
    if cur.fetchall()[0][0]:
        cur.execute("SELECT pg_advisory_xact_lock(hashtext($1))", (f"batch-engage schema {table.schema}",))
        cur.fetchall()
    cur.execute(f"CREATE SCHEMA IF NOT EXISTS {_ident(table.schema)}")
    cur.execute(
        f"CREATE TABLE IF NOT EXISTS {table.qualified} (job_id text NOT NULL, period text NOT NULL, "
        f'"row" bigint NOT NULL, {columns}, PRIMARY KEY (job_id, period, "row"))'
    )
    cur.execute(
        "SELECT column_name FROM information_schema.columns WHERE table_schema = $1 AND table_name = $2",
        (table.schema, table.table),
    )
    present = {name for (name,) in cur.fetchall()}
    # Only when one is missing: ALTER TABLE locks out readers until the commit.
    for name, sql_type in types.items():
        if name not in present:
            cur.execute(f"ALTER TABLE {table.qualified} ADD COLUMN {_ident(name)} {sql_type}")


def _connect(table: PgTable) -> Any:
    import adbc_driver_manager  # noqa: PLC0415 - only jobs writing to PostgreSQL load the driver
    import adbc_driver_postgresql.dbapi as pgdb  # noqa: PLC0415

    try:
        return pgdb.connect(table.conninfo)
    except adbc_driver_manager.Error as exc:
        reason = " ".join(str(exc).split("Failed to connect:", 1)[-1].split())
        raise UsageError(
            f"{table.describe()}: cannot connect ({reason}); check the server, and PGPASSWORD or ~/.pgpass"
        ) from None


def _replace(cur: Any, table: PgTable, frame: pl.DataFrame, job_id: str, period: str) -> None:
    # A column with no value at all has no Arrow type a table can take: load it as text, cast by SQL.
    frame = frame.with_columns(pl.col(c).cast(pl.String) for c, d in frame.schema.items() if d == pl.Null)
    types = column_types(frame)
    _create(cur, table, types)
    # Names below are quoted identifiers checked by parse_table_url; values travel as parameters.
    cur.execute(f"DELETE FROM {table.qualified} WHERE job_id = $1 AND period = $2", (job_id, period))  # noqa: S608
    cur.adbc_ingest(_STAGING, frame.to_arrow(), mode="create", temporary=True)
    names = ", ".join(_ident(c) for c in types)
    values = ", ".join(f"{_ident(c)}::{t}" for c, t in types.items())
    insert = f"INSERT INTO {table.qualified} (job_id, period, {names}) SELECT $1::text, $2::text, {values}"
    cur.execute(f"{insert} FROM pg_temp.{_STAGING}", (job_id, period))
    cur.execute(f"DROP TABLE pg_temp.{_STAGING}")


def write_table(frame: pl.DataFrame, target: PgTable, *, job_id: str, period: str | None) -> str:
    """Replace ``job_id``/``period``'s rows of ``target`` with ``frame``'s, in one transaction; the table's name."""
    import adbc_driver_manager  # noqa: PLC0415

    conn = _connect(target)
    try:
        with conn.cursor() as cur:
            _replace(cur, target, frame, job_id, period or "")
        conn.commit()
    except adbc_driver_manager.Error as exc:
        conn.rollback()
        reason = " ".join(str(exc).split("ERROR:", 1)[-1].split())
        raise UsageError(f"{target.describe()}: cannot write the table ({reason}); nothing was changed") from None
    finally:
        conn.close()
    return target.describe()


def write_output(
    frame: pl.DataFrame, target: str | Path, *, job_id: str, period: str | None, key: str, csv_guard: bool = True
) -> str:
    """Write ``frame`` to a PostgreSQL table (``postgresql://…#schema.table``) or to a CSV/Parquet file.

    Only a CSV guards its formula-like cells (``csv_guard``); a table keeps the raw text.
    """
    if isinstance(target, str) and is_postgres_url(target):
        return write_table(frame, parse_table_url(target, key=key), job_id=job_id, period=period)
    return str(write_results(frame, target, csv_guard=csv_guard))
