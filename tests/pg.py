"""PostgreSQL for tests: the server named by ``BATCH_ENGAGE_TEST_PG``, and one fresh schema per test.

With no server answering, a test skips (saying why); with ``CI`` set it fails instead,
so CI cannot pass by skipping. Parallel workers share the server but never a schema: every table,
role and checkpoint lock a test makes is keyed by its schema's name, which names the worker too.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql

from conftest import absent, unique_name

DEFAULT_URL = "postgresql://postgres@127.0.0.1:5432/test"


@dataclass(frozen=True)
class Schema:
    """A schema of its own on the test server: its name, the server's URL, and an autocommit connection."""

    url: str
    name: str
    conn: psycopg.Connection[Any]

    @property
    def search_url(self) -> str:
        """The server's URL with this schema first on the search path, so queries name bare tables."""
        return f"{self.url}{'&' if '?' in self.url else '?'}options=-csearch_path%3D{self.name}"

    @property
    def history_url(self) -> str:
        """``history.path`` for a store in this schema."""
        return f"{self.url}{'&' if '?' in self.url else '?'}schema={self.name}"

    def execute(self, statement: str) -> None:
        """Run SQL with ``{schema}`` standing for this schema's quoted name."""
        self.conn.execute(sql.SQL(statement).format(schema=sql.Identifier(self.name)))  # type: ignore[arg-type]


def server_url() -> str:
    """The test server's URL."""
    return os.environ.get("BATCH_ENGAGE_TEST_PG", DEFAULT_URL)


@contextmanager
def fresh_schema() -> Iterator[Schema]:
    """Create a uniquely named schema, hand it over, drop it (and all in it) afterwards."""
    url = server_url()
    try:
        conn = psycopg.connect(url, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as exc:
        absent(f"no PostgreSQL at {url} ({str(exc).strip().splitlines()[0]}); set BATCH_ENGAGE_TEST_PG")
    name = unique_name()
    with conn:
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(name)))
        try:
            yield Schema(url=url, name=name, conn=conn)
        finally:
            conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(name)))
