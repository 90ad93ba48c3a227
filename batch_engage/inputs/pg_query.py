"""A query on PostgreSQL, read through ADBC's libpq-based driver inside a read-only transaction.

ADBC's PostgreSQL driver is built on libpq, so the connection honours libpq's own
conventions (``PGPASSWORD``, ``~/.pgpass``, a service file, ``PGSSLMODE``, ``PGOPTIONS``...).
The driver opens a transaction before the first statement (autocommit is off);
``SET TRANSACTION READ ONLY`` makes that one read-only, so a ``DELETE … RETURNING`` fails
with SQLSTATE 25006 instead of handing over rows it deleted. ADBC prepares every query,
so no second statement can slip out of the transaction. The transaction is always rolled back.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

import polars as pl

from ..errors import InputFileError
from ..postgres import check_database_uri, server_of
from .columns import QUERY_NAME

__all__ = ["QUERY_NAME", "query_error", "read_postgres"]

_SERVER_IN_MESSAGE = re.compile(r'server (?:at|on socket) "([^"]+)"(?:, port (\d+))?')
_READ_ONLY_VIOLATION = "25006"


def _first_line(text: str) -> str:
    return next((line.strip() for line in text.splitlines() if line.strip()), text.strip())


def _database(uri: str) -> str:
    return urlsplit(uri).path.lstrip("/") or "(default database)"


def _connect_error(uri: str, message: str) -> InputFileError:
    reason = _first_line(message.split("Failed to connect:", 1)[-1])
    found = _SERVER_IN_MESSAGE.search(reason)
    server = f"{found[1]}:{found[2]}" if found and found[2] else (found[1] if found else server_of(uri))
    reason = reason.split(" failed: ", 1)[-1].removeprefix("FATAL:").strip()
    return InputFileError(
        QUERY_NAME,
        f"cannot read from PostgreSQL at {server} (database {_database(uri)}: {reason}); "
        "check input.uri, that the server is up, and PGPASSWORD or ~/.pgpass",
    )


def query_error(reason: str, *, writes: bool, where: str) -> InputFileError:
    """The one line for a query the database refused (``writes``: because it would change data), naming it."""
    if writes:
        return InputFileError(
            QUERY_NAME, f"the query would write ({reason}); input.query must only read (nothing was changed; {where})"
        )
    return InputFileError(QUERY_NAME, f"the server refused the query: {reason} ({where})")


def _refused(uri: str, exc: Exception) -> InputFileError:
    message = str(exc)
    found = re.search(r"ERROR:\s+(.*)", message)
    reason = found[1].strip() if found else _first_line(message)
    where = f"PostgreSQL at {server_of(uri)}, database {_database(uri)}"
    return query_error(reason, writes=getattr(exc, "sqlstate", None) == _READ_ONLY_VIOLATION, where=where)


def read_postgres(uri: str, query: str) -> pl.DataFrame:
    """The rows of ``query`` on ``uri``, read in a read-only transaction that is rolled back afterwards."""
    check_database_uri(uri, key="input.uri")
    # Imported here: only jobs that read a query pay for loading the driver, and for pyarrow (35 MB and a tenth
    # of a second that every CSV validate paid when it came with this module).
    import adbc_driver_manager  # noqa: PLC0415
    import adbc_driver_postgresql.dbapi as pgdb  # noqa: PLC0415

    from .pg_types import pg_frame  # noqa: PLC0415

    try:
        conn = pgdb.connect(uri)
    except adbc_driver_manager.Error as exc:
        raise _connect_error(uri, str(exc)) from None
    try:
        with conn.cursor() as cur:
            cur.execute("SET TRANSACTION READ ONLY")
            cur.execute(query)
            return pg_frame(cur.fetch_arrow_table())
    except adbc_driver_manager.Error as exc:
        raise _refused(uri, exc) from None
    finally:
        try:
            conn.rollback()
        finally:
            conn.close()
