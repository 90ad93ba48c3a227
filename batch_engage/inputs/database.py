"""Contacts from a PostgreSQL query (``input.uri`` + ``input.query``), read with polars through ADBC.

ADBC's PostgreSQL driver is built on libpq, so the connection honours libpq's own
conventions (``PGPASSWORD``, ``~/.pgpass``, ``PGSSLMODE``, ``PGOPTIONS``...) and the job
file never needs to hold a password; one that does is refused. On a 1,000,000-row
table it read about twice as fast as ``pl.read_database`` over a psycopg connection
(``benchmarks/query_input.py``). The result becomes the same :class:`Table` a file
does, so planning cannot tell the two apart.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

import polars as pl

from ..credentials import resolve_env_reference
from ..errors import ConfigError, InputFileError
from ..job import InputSpec
from ..postgres import check_database_uri, server_of
from .files import Table, frame_digest

__all__ = ["QUERY_NAME", "read_query"]

QUERY_NAME = "input.query"
_SERVER_IN_MESSAGE = re.compile(r'server (?:at|on socket) "([^"]+)"(?:, port (\d+))?')


def _first_line(text: str) -> str:
    return next((line.strip() for line in text.splitlines() if line.strip()), text.strip())


def _connect_error(uri: str, message: str) -> InputFileError:
    reason = _first_line(message.split("Failed to connect:", 1)[-1])
    found = _SERVER_IN_MESSAGE.search(reason)
    server = f"{found[1]}:{found[2]}" if found and found[2] else (found[1] if found else server_of(uri))
    reason = reason.split(" failed: ", 1)[-1].removeprefix("FATAL:").strip()
    return InputFileError(
        QUERY_NAME, f"cannot read from PostgreSQL at {server} ({reason}); check input.uri and that the server is up"
    )


def _query_error(message: str) -> InputFileError:
    found = re.search(r"ERROR:\s+(.*)", message)
    reason = found[1].strip() if found else _first_line(message)
    return InputFileError(QUERY_NAME, f"the server refused the query: {reason}")


def read_query(spec: InputSpec, *, text_columns: Iterable[str] = ()) -> Table:
    """Run ``spec.query`` on ``spec.uri``; row numbers follow the query's row order, ``text_columns`` become strings."""
    if spec.uri is None or spec.query is None:
        raise ConfigError("input.query", "give input.uri and input.query together")
    uri = resolve_env_reference(spec.uri, "input.uri")
    check_database_uri(uri, key="input.uri")
    # Imported here: only jobs that read a query pay for loading the driver.
    import adbc_driver_manager  # noqa: PLC0415

    try:
        frame = pl.read_database_uri(spec.query, uri, engine="adbc")
    except adbc_driver_manager.OperationalError as exc:
        if "Failed to connect" in str(exc):
            raise _connect_error(uri, str(exc)) from None
        raise _query_error(str(exc)) from None
    except adbc_driver_manager.Error as exc:
        raise _query_error(str(exc)) from None
    if frame.width == 0:
        raise InputFileError(QUERY_NAME, "the query returns no columns (is it a SELECT?)")
    if frame.height == 0:
        raise InputFileError(QUERY_NAME, "the query returned no rows")
    # ADBC hands numeric and json as Arrow extension types that polars can neither cast nor encode
    # as JSON; their storage is the server's exact text ("12.50"), which is what a file would hold.
    opaque = [c for c, dtype in frame.schema.items() if isinstance(dtype, pl.Extension)]
    if opaque:
        frame = frame.with_columns(pl.col(c).ext.storage() for c in opaque)
    frame = frame.with_columns(pl.col(c).cast(pl.String) for c in set(text_columns) if c in frame.columns)
    return Table(frame=frame, digest=frame_digest(frame), name=QUERY_NAME)
