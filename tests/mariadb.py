"""MariaDB/MySQL for tests: the server named by ``BATCH_ENGAGE_TEST_MYSQL``, and one fresh database per test.

Like ``pg.py``: with no server answering, a test skips (saying why); with ``CI`` set it fails
instead. Each test gets a database of its own, named after its worker, dropped afterwards.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import pymysql

from conftest import absent, unique_name

DEFAULT_URL = "mysql://root@127.0.0.1:3306/test"


@dataclass(frozen=True)
class Database:
    """A database of its own on the test server: its URL (no password) and an autocommit connection."""

    url: str
    name: str
    conn: Any

    def execute(self, statement: str, args: Any = None) -> list[tuple[Any, ...]]:
        """Run SQL in this database; the rows it returns."""
        with self.conn.cursor() as cur:
            cur.execute(statement, args)
            return list(cur.fetchall())


def server_url() -> str:
    """The test server's URL (its password, if any, comes from MYSQL_PWD as for the product)."""
    return os.environ.get("BATCH_ENGAGE_TEST_MYSQL", DEFAULT_URL)


@contextmanager
def fresh_database() -> Iterator[Database]:
    """Create a uniquely named database, hand it over, drop it afterwards."""
    url = server_url()
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 3306
    try:
        conn = pymysql.connect(
            host=host,
            port=port,
            user=parts.username or "root",
            password=os.environ.get("MYSQL_PWD", ""),
            autocommit=True,
            connect_timeout=5,
        )
    except pymysql.MySQLError as exc:
        absent(f"no MariaDB/MySQL at {host}:{port} ({exc}); set BATCH_ENGAGE_TEST_MYSQL")
    name = unique_name()
    with conn.cursor() as cur:
        cur.execute(f"CREATE DATABASE `{name}`")
    conn.select_db(name)
    try:
        yield Database(url=f"mysql://{parts.username or 'root'}@{host}:{port}/{name}", name=name, conn=conn)
    finally:
        with conn.cursor() as cur:
            cur.execute(f"DROP DATABASE `{name}`")
        conn.close()
