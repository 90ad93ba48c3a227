"""A query on a DuckDB or SQLite file (``duckdb:///path``, ``sqlite:///path``), opened read-only.

A database opened read-only refuses any statement that writes, so a ``DELETE`` fails
before it changes anything. ``sqlite:///data/x.db`` is ``data/x.db`` relative to the
current folder, ``sqlite:////srv/x.db`` the absolute path, as SQLAlchemy reads them.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import quote, unquote, urlsplit

import polars as pl

from ..errors import ConfigError, InputFileError
from .pg_query import QUERY_NAME, query_error

__all__ = ["read_duckdb", "read_sqlite"]

_WRITE_WORDS = ("read-only", "readonly", "read only")


def _path(uri: str) -> Path:
    parts = urlsplit(uri)
    if parts.netloc:
        raise ConfigError("input.uri", f"{parts.scheme}:// takes a file path, not a host: {parts.scheme}:///path/file")
    path = Path(unquote(parts.path.removeprefix("/")))
    if not path.is_file():
        raise InputFileError(QUERY_NAME, f"{path}: no such database file")
    return path


def _one_line(exc: Exception) -> str:
    return " ".join(str(exc).split())


def _refused(exc: Exception, path: Path) -> InputFileError:
    reason = _one_line(exc)
    return query_error(reason, writes=any(word in reason.lower() for word in _WRITE_WORDS), where=str(path))


def read_duckdb(uri: str, query: str) -> pl.DataFrame:
    """The rows of ``query`` on a DuckDB file opened read-only."""
    path = _path(uri)
    import duckdb  # noqa: PLC0415 - only DuckDB jobs pay for loading it

    try:
        conn = duckdb.connect(str(path), read_only=True)
    except duckdb.Error as exc:
        raise InputFileError(QUERY_NAME, f"{path}: cannot open the DuckDB file ({_one_line(exc)})") from None
    try:
        relation = conn.sql(query)
        if relation is None:
            raise InputFileError(QUERY_NAME, "the query returns no columns (is it a SELECT?)")
        frame: pl.DataFrame = relation.pl()
        return frame
    except duckdb.Error as exc:
        raise _refused(exc, path) from None
    finally:
        conn.close()


def read_sqlite(uri: str, query: str) -> pl.DataFrame:
    """The rows of ``query`` on a SQLite file opened with ``mode=ro``."""
    path = _path(uri)
    import adbc_driver_manager  # noqa: PLC0415
    import adbc_driver_sqlite.dbapi as sqlitedb  # noqa: PLC0415

    try:
        conn = sqlitedb.connect(f"file:{quote(str(path.resolve()))}?mode=ro")
    except adbc_driver_manager.Error as exc:
        raise InputFileError(QUERY_NAME, f"{path}: cannot open the SQLite file ({_one_line(exc)})") from None
    try:
        with conn.cursor() as cur:
            cur.execute(query)
            return pl.DataFrame(pl.from_arrow(cur.fetch_arrow_table()))
    except adbc_driver_manager.Error as exc:
        raise _refused(exc, path) from None
    finally:
        conn.close()
