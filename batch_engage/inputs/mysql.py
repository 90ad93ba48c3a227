"""A query on MySQL or MariaDB (``mysql://user@host:3306/db``), read with connectorx in a read-only session.

connectorx is Arrow-native and read 1,000,000 rows in about half a second here, faster
than the PostgreSQL reader (``benchmarks/database_input.py``). It has no notion of the
``mysql`` client's password conventions and retries a refused login for 30 seconds, so
the login is first checked with PyMySQL (one quick connection: a wrong password, an
unknown database or a closed port is one line at once), and the URL connectorx gets is
built here with the password percent-encoded: it never leaves this module. Without
``SET SESSION TRANSACTION READ ONLY`` first, connectorx would run and commit a
``DELETE``; with it the server refuses (error 1792, SQLSTATE 25006).
"""

from __future__ import annotations

import re
from urllib.parse import quote, unquote, urlsplit

import polars as pl

from ..credentials import MySqlLogin, mysql_login
from ..errors import ConfigError, InputFileError
from .columns import duplicated, is_panic
from .mysql_types import DECIMAL_TOO_LONG, Column, check_columns, panic_error, result_columns, with_scales
from .pg_query import QUERY_NAME, query_error

__all__ = ["read_mysql"]

DEFAULT_PORT = 3306
CONNECT_TIMEOUT = 10
_READ_ONLY = "SET SESSION TRANSACTION READ ONLY"
_READ_ONLY_ERRORS = ("1792", "25006")


def _where(uri: str) -> tuple[str, int, str, str | None]:
    """Host, port, database and user of a ``mysql://`` URL; a password in it is refused."""
    parts = urlsplit(uri)
    if parts.password is not None or "password=" in parts.query:
        raise ConfigError(
            "input.uri",
            "holds a password: remove it and set MYSQL_PWD or put it in ~/.my.cnf's [client] "
            "(the job file is not a secret)",
        )
    database = unquote(parts.path.lstrip("/"))
    if not database or "/" in database:
        raise ConfigError("input.uri", "must name the database: mysql://user@host:3306/database")
    try:
        port = parts.port or DEFAULT_PORT
    except ValueError:
        raise ConfigError("input.uri", "has a port that is not a number") from None
    user = unquote(parts.username) if parts.username else None
    return parts.hostname or "localhost", port, database, user


def _columns(host: str, port: int, database: str, login: MySqlLogin, query: str) -> list[Column] | None:
    """The result's columns (None when the query cannot be asked for them), on one quick connection.

    That connection also checks the login: connectorx would retry a refused one for 30 seconds, logging each try.
    """
    import pymysql  # noqa: PLC0415 - only MySQL jobs pay for it

    try:
        conn = pymysql.connect(
            host=host,
            port=port,
            user=login.user,
            password=login.password or "",
            database=database,
            connect_timeout=CONNECT_TIMEOUT,
            init_command=_READ_ONLY,
        )
    except pymysql.MySQLError as exc:
        reason = str(exc.args[1]) if len(exc.args) > 1 else str(exc)
        raise InputFileError(
            QUERY_NAME,
            f"cannot read from MySQL at {host}:{port} (database {database}: {' '.join(reason.split())}); "
            "check input.uri, that the server is up, and MYSQL_PWD or ~/.my.cnf",
        ) from None
    try:
        return result_columns(conn, query)
    finally:
        conn.close()


def _refused(message: str, where: str) -> InputFileError:
    reason = " ".join(message.split())
    if "ERROR " in reason:
        reason = reason.split("ERROR ", 1)[1].rstrip(" }")
    return query_error(reason, writes=any(code in reason for code in _READ_ONLY_ERRORS), where=where)


def read_mysql(uri: str, query: str) -> pl.DataFrame:
    """The rows of ``query`` on a MySQL/MariaDB server, in a read-only session."""
    host, port, database, user = _where(uri)
    login = mysql_login(user)
    columns = _columns(host, port, database, login, query)
    if columns is not None:
        check_columns(columns)
    import connectorx  # noqa: PLC0415 - only MySQL jobs pay for loading it

    secret = f":{quote(login.password, safe='')}" if login.password else ""
    url = f"mysql://{quote(login.user, safe='')}{secret}@{host}:{port}/{quote(database, safe='')}"
    try:
        frame = connectorx.read_sql(url, query, return_type="polars", pre_execution_query=_READ_ONLY)
    except pl.exceptions.DuplicateError as exc:
        # Only when the query could not be asked for its columns (which finds them first): polars names one.
        named = re.search(r'\["((?:[^"\\]|\\.)*)"', str(exc))
        raise duplicated([named[1]] * 2 if named else ["?", "?"]) or exc from None
    except (RuntimeError, ValueError) as exc:
        if DECIMAL_TOO_LONG in str(exc):
            raise panic_error(str(exc), columns) from None
        where = f"MySQL at {host}:{port}, database {database}"
        raise _refused(str(exc).replace(url, "mysql://…"), where) from None
    except BaseException as exc:
        if not is_panic(exc):
            raise
        raise panic_error(str(exc), columns) from None
    return with_scales(pl.DataFrame(frame), columns or [])
