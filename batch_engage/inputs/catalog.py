"""The catalog of inputs: every file format and database scheme, the library that reads it, where its secrets are.

This table is the one list: the readers look schemes and extensions up here, and the
README's table of inputs mirrors it (``tests/product/test_docs.py`` holds them together).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

import polars as pl

from ..errors import ConfigError
from .embedded import read_duckdb, read_sqlite
from .mysql import read_mysql
from .pg_query import read_postgres

__all__ = ["FILE_EXTENSIONS", "FILE_FORMATS", "QUERY_SOURCES", "SOURCES", "Source", "query_reader"]

QueryReader = Callable[[str, str], pl.DataFrame]
_FILE_CREDENTIALS = (
    "none; a URL: `https://` one plain GET (a presigned URL's signature is its grant), `s3://` `gs://` `abfs://` "
    "pyarrow's, with those SDKs' own credentials (AWS_* and ~/.aws for s3://)"
)


@dataclass(frozen=True)
class Source:
    """One kind of input: how a job names it, what reads it, and where its credentials come from."""

    kind: str
    names: tuple[str, ...]  # URL schemes (``input.uri``) or file extensions (``input.path``)
    library: str
    credentials: str
    read: QueryReader | None = None  # a query reader; None for files (``files.read_table`` reads them)


FILE_FORMATS = (
    Source("CSV file", (".csv",), "polars (encoding, separator, short rows checked)", _FILE_CREDENTIALS),
    Source("Parquet file", (".parquet", ".pq"), "polars", _FILE_CREDENTIALS),
    Source("NDJSON file", (".ndjson", ".jsonl"), "polars", _FILE_CREDENTIALS),
)
QUERY_SOURCES = (
    Source(
        "PostgreSQL query",
        ("postgresql://", "postgres://"),
        "ADBC PostgreSQL driver (libpq), read-only transaction",
        "libpq's: PGPASSWORD, ~/.pgpass, a service file",
        read_postgres,
    ),
    Source(
        "MySQL / MariaDB query",
        ("mysql://",),
        "connectorx, read-only session (PyMySQL checks the login first)",
        "MYSQL_PWD, else password in ~/.my.cnf [client]",
        read_mysql,
    ),
    Source("DuckDB file query", ("duckdb://",), "duckdb, opened read-only", "none: file permissions", read_duckdb),
    Source(
        "SQLite file query", ("sqlite://",), "ADBC SQLite driver, opened mode=ro", "none: file permissions", read_sqlite
    ),
)
SOURCES = FILE_FORMATS + QUERY_SOURCES
FILE_EXTENSIONS = {name: source.kind.split()[0].lower() for source in FILE_FORMATS for name in source.names}


def query_reader(uri: str) -> QueryReader:
    """The reader of ``input.uri``'s scheme; a ConfigError listing the known ones otherwise."""
    scheme = urlsplit(uri).scheme.lower()
    for source in QUERY_SOURCES:
        if f"{scheme}://" in source.names and source.read is not None:
            return source.read
    known = ", ".join(name for source in QUERY_SOURCES for name in source.names)
    # The scheme only, never the URL: env:NAME may name a variable that holds a password, or the wrong variable.
    shown = f"{scheme!r}" if scheme else "a value with no scheme"
    raise ConfigError("input.uri", f"{shown} is not a known database (use {known} or env:NAME)")
