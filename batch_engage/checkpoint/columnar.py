"""A SQLite checkpoint's tables read column by column (ADBC into Arrow), not row by row into Python.

Reading a million journal lines as Python tuples and building a frame from them takes seconds;
the ADBC SQLite driver hands polars Arrow columns instead. Its connection is its own, read-only: it
sees what a run committed (WAL), and never takes the run's lock. The driver carries a SQLite of its
own, and two SQLites in one process release each other's file locks when either closes the file
(SQLite's "how to corrupt" 2.2.1): it is used only by a process with no connection of Python's
``sqlite3`` open on that file meanwhile (``report``, ``status``), never by a run.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import polars as pl

__all__ = ["read_frame", "read_only_uri"]

# The driver types each column from the first batch it reads; a column null all through that batch would be
# typed INT64 and a later text in it refused. One batch for the whole result types each column by all its values.
_ONE_BATCH = {"adbc.sqlite.query.batch_rows": str(2**30)}


BUSY_MS = 1000


def read_only_uri(path: Path) -> str:
    """The ``file:`` URI that opens ``path`` read-only; escaped, so a folder named ``a?b#c`` is that folder."""
    return path.resolve().as_uri() + "?mode=ro"


def _statement_rows(path: Path, sql: str) -> pl.DataFrame:
    """The rows of ``sql`` as the driver types them, through its own statements: its DB-API module would load
    pyarrow (a tenth of a second) only to hand polars the Arrow stream that polars takes by itself."""
    import adbc_driver_manager as adbc  # noqa: PLC0415 - loaded by the first read, not by every import
    import adbc_driver_sqlite  # noqa: PLC0415

    with (
        adbc_driver_sqlite.connect(read_only_uri(path)) as database,
        adbc.AdbcConnection(database) as conn,
        adbc.AdbcStatement(conn) as statement,
    ):
        # The driver does not wait on a lock by itself: a reader opening beside another one (or beside a
        # run's checkpoint of its write-ahead log) would be refused at once instead of a moment later.
        statement.set_sql_query(f"PRAGMA busy_timeout = {BUSY_MS}")
        statement.execute_update()
        statement.set_options(**_ONE_BATCH)
        statement.set_sql_query(sql)
        stream, _ = statement.execute_query()
        return pl.DataFrame(stream)


def read_frame(path: Path, sql: str, schema: Mapping[str, Any]) -> pl.DataFrame:
    """The rows of ``sql`` over the checkpoint file at ``path`` as a frame of ``schema`` (columns in its order).

    A database error is raised as :class:`sqlite3.OperationalError` (what the run's storage rules know).
    """
    import adbc_driver_manager  # noqa: PLC0415 - as above

    try:
        frame = _statement_rows(path, sql)
    except adbc_driver_manager.Error as exc:
        raise sqlite3.OperationalError(f"{path}: {' '.join(str(exc).split())}") from None
    if frame.height == 0:
        return pl.DataFrame(schema=dict(schema))
    return frame.select(pl.col(name).cast(dtype) for name, dtype in schema.items())
