"""The results and outcomes tables written to PostgreSQL (``postgresql://host/db#schema.table``), or to a file.

Every write is one transaction: create the schema and table when missing, delete the
job-and-period's rows, load the new ones into a temporary staging table with ADBC's bulk
ingest (binary ``COPY``), ``INSERT … SELECT`` them with their SQL types, commit. Readers
see the old rows until the commit and the new ones after it; a process killed in
between leaves the table as it was (PostgreSQL rolls the transaction back), and rows of
other jobs and periods are never touched. The connection is libpq's, so its password
comes from ``PGPASSWORD``, ``~/.pgpass`` or a service file, never from the job file.

A job id's rows belong to one job: each row keeps its writer (``job_owner``, see ``job.table_owner``), and a
write, like :func:`prove_table` before anything is sent, refuses rows of that id another job wrote.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import polars as pl

from .errors import UsageError
from .job import Spec, table_owner
from .postgres import PgTable, is_postgres_url, masked, parse_table_url
from .results import write_results

__all__ = ["KEY_COLUMNS", "OWNER_COLUMN", "column_types", "prove_table", "prove_tables", "write_output", "write_table"]

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
OWNER_COLUMN = "job_owner"
"""Which job wrote a row (``job.table_owner``): a job id's rows belong to one job. NULL in rows written before it."""


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
    types = types | {OWNER_COLUMN: "text"}
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
            # IF NOT EXISTS: two writers may both have found it missing; the second would fail after sending.
            cur.execute(f"ALTER TABLE {table.qualified} ADD COLUMN IF NOT EXISTS {_ident(name)} {sql_type}")


def _connect(table: PgTable) -> Any:
    import adbc_driver_manager  # noqa: PLC0415 - only jobs writing to PostgreSQL load the driver
    import adbc_driver_postgresql.dbapi as pgdb  # noqa: PLC0415

    try:
        return pgdb.connect(table.conninfo)
    except adbc_driver_manager.Error as exc:
        reason = masked(" ".join(str(exc).split("Failed to connect:", 1)[-1].split()))
        raise UsageError(
            f"{table.describe()}: cannot connect ({reason}); check the server and the database's name, "
            "and PGPASSWORD or ~/.pgpass"
        ) from None


def _replace(cur: Any, table: PgTable, frame: pl.DataFrame, job_id: str, period: str, owner: str | None) -> None:
    # A column with no value at all has no Arrow type a table can take: load it as text, cast by SQL.
    frame = frame.with_columns(pl.col(c).cast(pl.String) for c, d in frame.schema.items() if d == pl.Null)
    types = column_types(frame)
    _create(cur, table, types)
    if owner is not None:
        # Two jobs of one id writing at once would each find no other's rows: one at a time per table and id.
        cur.execute("SELECT pg_advisory_xact_lock(hashtext($1))", (f"batch-engage rows {table.qualified} {job_id}",))
        cur.fetchall()
        _refuse_other_owner(cur, table, job_id, owner)
    # Names below are quoted identifiers checked by parse_table_url; values travel as parameters.
    cur.execute(f"DELETE FROM {table.qualified} WHERE job_id = $1 AND period = $2", (job_id, period))  # noqa: S608
    cur.adbc_ingest(_STAGING, frame.to_arrow(), mode="create", temporary=True)
    names = ", ".join(_ident(c) for c in types)
    values = ", ".join(f"{_ident(c)}::{t}" for c, t in types.items())
    insert = (
        f"INSERT INTO {table.qualified} (job_id, period, {OWNER_COLUMN}, {names}) "
        f"SELECT $1::text, $2::text, $3::text, {values}"
    )
    cur.execute(f"{insert} FROM pg_temp.{_STAGING}", (job_id, period, owner))
    cur.execute(f"DROP TABLE pg_temp.{_STAGING}")


def _reason(exc: Exception) -> str:
    """The server's own words for a failed statement, on one line, any URL in them masked."""
    return masked(" ".join(str(exc).split("ERROR:", 1)[-1].split()))


def _refuse_other_owner(cur: Any, table: PgTable, job_id: str, owner: str, key: str | None = None) -> None:
    """Refuse ``table`` when rows under ``job_id`` were written by a job other than ``owner``."""
    cur.execute(
        f"SELECT {OWNER_COLUMN} FROM {table.qualified} WHERE job_id = $1 AND {OWNER_COLUMN} <> $2 LIMIT 1",  # noqa: S608
        (job_id, owner),
    )
    found = cur.fetchall()
    if not found:
        return
    where = f"{key}: " if key else ""
    # A statement shown to the reader, never run; the id is letters, digits, '.', '-', '_' and a {date}.
    clear = f"UPDATE {table.schema}.{table.table} SET {OWNER_COLUMN} = NULL WHERE job_id = '{job_id}'"  # noqa: S608
    raise UsageError(
        f"{where}{table.describe()} holds rows of job id {job_id!r} that another job wrote ({found[0][0]}): give "
        f"this job a [job] id of its own, or name another table (if that job is this one moved, first {clear})"
    )


# What the name names, if anything: its kind, its columns and primary key (comma-separated), the login's rights.
_RELATION = """
SELECT c.relkind::text,
  (SELECT string_agg(a.attname::text, ',') FROM pg_attribute a WHERE a.attrelid = c.oid AND a.attnum > 0
     AND NOT a.attisdropped),
  (SELECT string_agg(a.attname::text, ',' ORDER BY a.attname) FROM pg_index i JOIN pg_attribute a
     ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey) WHERE i.indrelid = c.oid AND i.indisprimary),
  has_schema_privilege(n.oid, 'USAGE'), has_table_privilege(c.oid, 'SELECT'),
  has_table_privilege(c.oid, 'INSERT'), has_table_privilege(c.oid, 'DELETE')
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = $1 AND c.relname = $2
"""
# Whether anything can be written there at all, the staging table made, and the table created when missing.
_SERVER = """
SELECT pg_is_in_recovery() OR current_setting('transaction_read_only') = 'on',
  has_database_privilege(current_database(), 'TEMPORARY'),
  CASE WHEN EXISTS (SELECT FROM pg_namespace WHERE nspname = $1) THEN has_schema_privilege($1, 'CREATE')
       ELSE has_database_privilege(current_database(), 'CREATE') END
"""
_KINDS = {"v": "a view", "m": "a materialized view", "f": "a foreign table", "S": "a sequence", "i": "an index"}


def _probe_existing(cur: Any, table: PgTable, found: tuple[Any, ...], temporary: bool) -> str | None:
    """What would stop a write to the relation ``found`` describes (None: nothing)."""
    kind, _, key_columns, usage, *rights = found
    if kind not in ("r", "p"):
        return f"is {_KINDS.get(kind, 'not a table')}, not a results table: name a table of batch-engage's own"
    if key_columns != "job_id,period,row":
        return (
            "is a table without batch-engage's key (job_id, period, row), not a results table: name another "
            "(batch-engage creates its own)"
        )
    needs = [right for right, held in zip(("SELECT", "INSERT", "DELETE"), rights, strict=True) if not held]
    needs += [] if usage else [f"USAGE on schema {table.schema}"]
    needs += [] if temporary else ["TEMPORARY on the database"]
    return f"cannot be written by this login, which lacks {', '.join(needs)}: grant it" if needs else None


def _probe(cur: Any, table: PgTable, job_id: str, owner: str, key: str) -> str | None:
    """What would stop a write of ``job_id``'s rows to ``table`` (None: nothing); the owner refused here too."""
    cur.execute(_SERVER, (table.schema,))
    read_only, temporary, can_create = cur.fetchall()[0]
    if read_only:
        return "is on a server that only reads (a standby?): name the primary"
    cur.execute(_RELATION, (table.schema, table.table))
    found = cur.fetchall()
    if not found:
        if not can_create:
            return f"does not exist, and this login may not create it: grant CREATE on schema {table.schema}"
        return None if temporary else "cannot be written by this login, which lacks TEMPORARY on the database"
    problem = _probe_existing(cur, table, found[0], temporary)
    if problem is None and OWNER_COLUMN in (found[0][1] or "").split(","):
        _refuse_other_owner(cur, table, job_id, owner, key)
    return problem


def prove_table(url: str, *, key: str, job_id: str, owner: str) -> None:
    """Before anything is sent: ``url``'s table can take ``job_id``'s rows as ``owner``'s, else one-line exit 2.

    It answers (the database exists), and the table is missing and may be created, or is a results table this
    login may write whose rows of ``job_id`` are ``owner``'s (or nobody's yet).
    """
    import adbc_driver_manager  # noqa: PLC0415

    table = parse_table_url(url, key=key)
    try:
        conn = _connect(table)
    except UsageError as exc:
        raise UsageError(f"{key}: {exc}") from None
    try:
        with conn.cursor() as cur:
            problem = _probe(cur, table, job_id, owner, key)
    except adbc_driver_manager.Error as exc:
        problem = f"cannot be checked ({_reason(exc)})"
    finally:
        conn.rollback()
        conn.close()
    if problem:
        raise UsageError(f"{key}: {table.describe()} {problem}")


def prove_tables(spec: Spec, keys: tuple[str, ...] = ("output.results",)) -> None:
    """:func:`prove_table` for each of ``keys`` (``output.results``, ``output.outcomes``) that names a table."""
    urls = {"output.results": spec.output.results, "output.outcomes": spec.output.outcomes}
    for key in keys:
        url = urls[key]
        if url is not None and is_postgres_url(url):
            prove_table(url, key=key, job_id=spec.job.template, owner=table_owner(spec))


def write_table(
    frame: pl.DataFrame, target: PgTable, *, job_id: str, period: str | None, owner: str | None = None
) -> str:
    """Replace ``job_id``/``period``'s rows of ``target`` with ``frame``'s, in one transaction; the table's name.

    With ``owner`` (``job.table_owner``), rows of ``job_id`` another job wrote are refused, and these are marked
    as ``owner``'s.
    """
    import adbc_driver_manager  # noqa: PLC0415

    conn = _connect(target)
    try:
        with conn.cursor() as cur:
            _replace(cur, target, frame, job_id, period or "", owner)
        conn.commit()
    except adbc_driver_manager.Error as exc:
        conn.rollback()
        raise UsageError(f"{target.describe()}: cannot write the table ({_reason(exc)}); nothing was changed") from None
    except UsageError:
        conn.rollback()
        raise
    finally:
        conn.close()
    return target.describe()


def write_output(
    frame: pl.DataFrame,
    target: str | Path,
    *,
    job_id: str,
    period: str | None,
    key: str,
    csv_guard: bool = True,
    owner: str | None = None,
) -> str:
    """Write ``frame`` to a PostgreSQL table (``postgresql://…#schema.table``) or to a CSV/Parquet file.

    Only a CSV guards its formula-like cells (``csv_guard``); a table keeps the raw text, and its rows ``owner``'s.
    """
    if isinstance(target, str) and is_postgres_url(target):
        return write_table(frame, parse_table_url(target, key=key), job_id=job_id, period=period, owner=owner)
    return str(write_results(frame, target, csv_guard=csv_guard))
