"""The shared contact history in PostgreSQL: the SQLite store's interface, for jobs on many machines.

``history.path = "postgresql://host/db"`` selects it; the tables live in the schema
``batch_engage`` unless the URL's ``schema`` query parameter names another
(``postgresql://host/db?schema=crm_history``; the parameter is taken out before libpq
sees the URL). The password comes from libpq (``PGPASSWORD``, ``~/.pgpass``), never
from the job file.

Why an advisory lock: under READ COMMITTED two transactions can both count zero
earlier contacts for one number and both insert a claim. Each claim first takes
``pg_advisory_xact_lock(hashtext(to_addr))``, so claims for one contact queue behind
each other (and claims for different contacts do not), and the lock ends with the
transaction. A few connections (at most :data:`MAX_CONNECTIONS`) serve the runner's
worker threads; each call borrows one for one transaction.
"""

from __future__ import annotations

import contextlib
import queue
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

import polars as pl
import psycopg
from psycopg import sql

from ..errors import ConfigError
from ..job import Cap
from ..postgres import DEFAULT_SCHEMA, server_of, split_schema
from .model import OPT_OUT_SCHEMA, Reached, job_of
from .model import owner as make_owner

__all__ = ["DEFAULT_SCHEMA", "MAX_CONNECTIONS", "SCHEMA_VERSION", "PgHistory", "split_schema"]

MAX_CONNECTIONS = 4
SCHEMA_VERSION = 1
_KEY = "history.path"
# Any constant serializes the first-use DDL of every process (CREATE ... IF NOT EXISTS races in PostgreSQL).
_DDL_LOCK = 0x62617463

_RECORD_LOCK = 0x72656364
# Seen already: the same run (to and SID), or for a contact without a SID the same Flow and time.
_RECORD = """
INSERT INTO {} (to_addr, flow_sid, sid, at)
SELECT %(to)s::text, %(flow)s::text, %(sid)s::text, %(at)s::double precision
WHERE NOT EXISTS (
    SELECT 1 FROM {} WHERE to_addr = %(to)s::text AND (
        sid = %(sid)s::text
        OR (%(sid)s::text IS NULL AND sid IS NULL AND flow_sid = %(flow)s::text AND at = %(at)s::double precision)
    )
)
"""

_TABLES = """
CREATE TABLE IF NOT EXISTS {schema}.version (version integer NOT NULL);
CREATE TABLE IF NOT EXISTS {schema}.contacts (
    id bigserial PRIMARY KEY,
    to_addr text NOT NULL,
    flow_sid text NOT NULL,
    sid text,
    at double precision NOT NULL,
    owner text UNIQUE
);
CREATE INDEX IF NOT EXISTS contacts_to ON {schema}.contacts (to_addr, at);
"""
# Added later than the tables above: created on its own, so a schema made by an older version gains it.
_OPT_OUTS = """
CREATE TABLE IF NOT EXISTS {schema}.opt_outs (
    to_addr text NOT NULL,
    sender text NOT NULL,
    at double precision NOT NULL,
    PRIMARY KEY (to_addr, sender)
)
"""


class PgHistory:
    """The shared contact history in a PostgreSQL schema (safe for many processes and machines at once)."""

    def __init__(self, url: str, *, clock: Any = time.time) -> None:
        self._url, self.schema = split_schema(url, key=_KEY)
        self.server = server_of(self._url)
        self._clock = clock
        self._idle: queue.LifoQueue[psycopg.Connection[Any]] = queue.LifoQueue()
        self._all: list[psycopg.Connection[Any]] = []
        self._opened = threading.BoundedSemaphore(MAX_CONNECTIONS)
        self._guard = threading.Lock()
        try:
            with self._connection() as conn:
                self._create_tables(conn)
        except psycopg.Error as exc:
            self.close()
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ConfigError(
                _KEY, f"cannot use schema {self.schema} on {self.server}: {reason} (see the README for the grants)"
            ) from None
        except BaseException:
            self.close()
            raise

    def _connect(self) -> psycopg.Connection[Any]:
        try:
            return psycopg.connect(self._url, autocommit=True)
        except psycopg.OperationalError as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            reason = first.rsplit(" failed: ", 1)[-1].removeprefix("FATAL:").strip()
            raise ConfigError(_KEY, f"cannot reach PostgreSQL at {self.server} ({reason})") from None

    @contextmanager
    def _connection(self) -> Iterator[psycopg.Connection[Any]]:
        conn: psycopg.Connection[Any] | None = None
        while conn is None:
            try:
                conn = self._idle.get_nowait()
            except queue.Empty:
                if self._opened.acquire(blocking=False):
                    try:
                        conn = self._connect()
                    except BaseException:
                        self._opened.release()
                        raise
                    with self._guard:
                        self._all.append(conn)
                else:
                    # A short wait, not a blocking get: a dropped connection frees a slot, not a queue entry.
                    with contextlib.suppress(queue.Empty):
                        conn = self._idle.get(timeout=0.05)
        try:
            yield conn
        finally:
            if conn.broken:
                # A connection the server dropped is not handed out again: the next call opens a new one.
                with self._guard:
                    self._all.remove(conn)
                self._opened.release()
            else:
                self._idle.put(conn)

    def _create_tables(self, conn: psycopg.Connection[Any]) -> None:
        schema = sql.Identifier(self.schema)
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (_DDL_LOCK,))
            # Looked up first: CREATE ... IF NOT EXISTS needs the CREATE privilege even when nothing is
            # created, and a job's user may have been granted the tables only.
            found = conn.execute("SELECT to_regclass(%s)", (f"{schema.as_string(conn)}.version",)).fetchone()
            if found is None or found[0] is None:
                conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(schema))
                for statement in _TABLES.split(";"):
                    if statement.strip():
                        conn.execute(sql.SQL(statement).format(schema=schema))
            row = conn.execute(sql.SQL("SELECT max(version) FROM {}.version").format(schema)).fetchone()
            version = row[0] if row else None
            if version is None:
                conn.execute(sql.SQL("INSERT INTO {}.version VALUES (%s)").format(schema), (SCHEMA_VERSION,))
            elif version > SCHEMA_VERSION:
                raise ConfigError(
                    _KEY,
                    f"schema {self.schema} on {self.server} was made by a newer batch-engage (version {version}); "
                    "upgrade batch-engage",
                )
            found = conn.execute("SELECT to_regclass(%s)", (f"{schema.as_string(conn)}.opt_outs",)).fetchone()
            if found is None or found[0] is None:
                conn.execute(sql.SQL(_OPT_OUTS).format(schema=schema))

    def _table(self) -> sql.Composed:
        return sql.SQL("{}.contacts").format(sql.Identifier(self.schema))

    def close(self) -> None:
        """Close every connection."""
        with self._guard:
            for conn in self._all:
                conn.close()
            self._all.clear()

    def __enter__(self) -> PgHistory:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _blocking(
        self,
        conn: psycopg.Connection[Any],
        to: str,
        flow_sid: str,
        cap: Cap | None,
        flow_cap: Cap | None,
        job: str | None,
    ) -> tuple[Reached, Cap] | None:
        # A job's own claims never cap it: within a job, dedupe decides.
        prefix = make_owner(job, "") if job else None
        now = self._clock()
        query = sql.SQL(
            "SELECT at, sid, flow_sid FROM {} WHERE to_addr = %(to)s AND at >= %(since)s "
            "AND (%(prefix)s::text IS NULL OR owner IS NULL OR left(owner, length(%(prefix)s)) <> %(prefix)s) "
            "AND (%(flow)s::text IS NULL OR flow_sid = %(flow)s) ORDER BY at DESC LIMIT %(count)s"
        ).format(self._table())
        for limit, same_flow in ((cap, False), (flow_cap, True)):
            if limit is None:
                continue
            params = {
                "to": to,
                "since": now - limit.seconds,
                "prefix": prefix,
                "flow": flow_sid if same_flow else None,
                "count": limit.count,
            }
            rows = conn.execute(query, params).fetchall()
            if len(rows) >= limit.count:
                at, sid, flow_of = rows[0]
                return Reached(at=at, sid=sid, flow_sid=flow_of), limit
        return None

    def check(
        self, to: str, flow_sid: str, cap: Cap | None, flow_cap: Cap | None, *, job: str | None = None
    ) -> tuple[Reached, Cap] | None:
        """The contact that blocks ``to`` under the caps, if any (read only); ``job``'s own contacts don't count."""
        with self._connection() as conn:
            return self._blocking(conn, to, flow_sid, cap, flow_cap, job)

    def claim(
        self, to: str, flow_sid: str, owner: str, cap: Cap | None, flow_cap: Cap | None, *, refresh: bool = True
    ) -> tuple[Reached, Cap] | None:
        """Atomically check the caps and record an intent to contact ``to``; return the blocker if capped.

        ``owner`` is :func:`batch_engage.history.owner`'s ``<job>#<item>``; its job's contacts don't cap it.
        Without ``refresh``, an owner's claim already there keeps its time.
        """
        with self._connection() as conn, conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (to,))
            blocker = self._blocking(conn, to, flow_sid, cap, flow_cap, job_of(owner))
            if blocker is None:
                conn.execute(
                    sql.SQL(
                        "INSERT INTO {} (to_addr, flow_sid, sid, at, owner) VALUES (%s, %s, NULL, %s, %s) "
                        "ON CONFLICT (owner) DO UPDATE SET at = CASE WHEN %s THEN excluded.at ELSE {}.at END"
                    ).format(self._table(), self._table()),
                    (to, flow_sid, self._clock(), owner, refresh),
                )
            return blocker

    def settle(self, owner: str, sid: str | None) -> None:
        """The claim's answer: a SID makes it a contact; None withdraws it (nothing was sent)."""
        with self._connection() as conn:
            if sid is None:
                conn.execute(sql.SQL("DELETE FROM {} WHERE owner = %s AND sid IS NULL").format(self._table()), (owner,))
            else:
                conn.execute(sql.SQL("UPDATE {} SET sid = %s WHERE owner = %s").format(self._table()), (sid, owner))

    def recent_addresses(self, seconds: float) -> set[str]:
        """Every address contacted (or claimed) within the last ``seconds``."""
        with self._connection() as conn:
            rows = conn.execute(
                sql.SQL("SELECT DISTINCT to_addr FROM {} WHERE at >= %s").format(self._table()),
                (self._clock() - seconds,),
            ).fetchall()
        return {r[0] for r in rows}

    def record(self, rows: Iterable[tuple[str, str, str | None, float]]) -> int:
        """Add past contacts ``(to, flow_sid, sid, at)`` not already there; return how many were added.

        A contact is known by its run's SID (without one, by its Flow and time), so importing one
        results table twice counts nobody twice.
        """
        batch = [dict(zip(("to", "flow", "sid", "at"), row, strict=True)) for row in rows]
        with self._connection() as conn, conn.transaction(), conn.cursor() as cur:
            # Two imports at once would each see the other's rows missing: they queue instead.
            cur.execute("SELECT pg_advisory_xact_lock(%s)", (_RECORD_LOCK,))
            cur.executemany(sql.SQL(_RECORD).format(self._table(), self._table()), batch)
            return max(cur.rowcount, 0)

    def _opt_outs(self) -> sql.Composed:
        return sql.SQL("{}.opt_outs").format(sql.Identifier(self.schema))

    def add_opt_outs(self, rows: Iterable[tuple[str, str, float]]) -> int:
        """Record contacts who opted out ``(to, sender, at)`` (the latest date kept); return how many."""
        batch = list(rows)
        with self._connection() as conn, conn.transaction():
            for row in batch:
                conn.execute(
                    sql.SQL(
                        "INSERT INTO {} (to_addr, sender, at) VALUES (%s, %s, %s) "
                        "ON CONFLICT (to_addr, sender) DO UPDATE SET at = GREATEST({}.at, excluded.at)"
                    ).format(self._opt_outs(), self._opt_outs()),
                    row,
                )
        return len(batch)

    def opt_outs(self) -> pl.DataFrame:
        """Every recorded opt-out: ``to``, ``sender``, ``at`` (seconds since the epoch), oldest first."""
        with self._connection() as conn:
            rows = conn.execute(
                sql.SQL("SELECT to_addr, sender, at FROM {} ORDER BY at, to_addr").format(self._opt_outs())
            ).fetchall()
        return pl.DataFrame(rows, schema=OPT_OUT_SCHEMA, orient="row")

    def forget(self, to: str) -> int:
        """Remove every opt-out of ``to``; return how many were removed."""
        with self._connection() as conn:
            cur = conn.execute(sql.SQL("DELETE FROM {} WHERE to_addr = %s").format(self._opt_outs()), (to,))
            return cur.rowcount

    def stats(self) -> pl.DataFrame:
        """Contacts reached per flow per day (UTC)."""
        with self._connection() as conn:
            rows = conn.execute(
                sql.SQL(
                    "SELECT flow_sid, to_char(to_timestamp(at) AT TIME ZONE 'UTC', 'YYYY-MM-DD') AS day, "
                    "COUNT(DISTINCT to_addr) FROM {} WHERE sid IS NOT NULL GROUP BY flow_sid, day "
                    "ORDER BY day, flow_sid"
                ).format(self._table())
            ).fetchall()
        return pl.DataFrame(rows, schema={"flow_sid": pl.String, "day": pl.String, "contacts": pl.Int64}, orient="row")
