"""The checkpoint in PostgreSQL: the same journal as :mod:`batch_engage.checkpoint`, shared by every machine.

A location is ``postgresql://host/db?schema=name#<key>``. The spec adds the fragment: the
rendered ``[job] id``, plus ``.sandbox`` for a rehearsal, so a rehearsal never shares
state with the real job. ``schema`` (default ``batch_engage``) holds many jobs; every
table carries a ``job`` column with the key. Tables are created on first use, under a
transaction-scoped advisory lock (two machines starting at once would otherwise race on
``CREATE TABLE IF NOT EXISTS``); ``checkpoint_version`` records their layout so a later
version can upgrade them.

One run per job: a session advisory lock on the key, held on a *dedicated* connection
(never pooled) that also carries every write. If that session ends, the lock and the
writes go together: a run can never write intents it no longer owns.

A machine that dies must not hold the lock for long. Two things see to it:

- TCP keepalives on that connection, on *both* ends: libpq's (``keepalives_idle`` and
  friends) tell the client that the server went away; the server's ``tcp_keepalives_*``,
  set for the session, let the server drop a session whose machine vanished without
  closing its socket (30 s idle, 6 probes 10 s apart: about 90 s). The URL's
  ``keepalives_idle``/``keepalives_interval``/``keepalives_count`` change both.
- A lease with a heartbeat: the holder renews ``leases.heartbeat_at`` (server time) every
  quarter ``lease`` (default 60 s, ``?lease=`` in the URL) on the lock's own connection. A
  run that finds the lock taken and the lease a whole ``lease`` old ends the holder's
  session (``pg_terminate_backend``; the same database role may) and takes the job. This
  also covers what keepalives cannot see, a frozen process or paused VM whose kernel still
  answers probes, and it is what the tests can exercise here: this machine's kernel has no
  packet filter to make a peer vanish, and a killed process's kernel closes its sockets.

The plan is a zstd Parquet blob in ``plans``: ``status`` and ``report`` need nothing on disk.
A ``--restart`` renames the old key to ``<key>@<UTC stamp>.old`` (kept, never deleted).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import re
import secrets
import socket
import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit, urlunsplit

import polars as pl
import psycopg

from ._time import iso_ms
from .checkpoint import (
    _JOURNAL_COLUMNS,
    EVENT_COLUMNS,
    RUN_COLUMNS,
    SCHEMA_VERSION,
    CheckpointView,
    Intent,
    Outcome,
    SecondStats,
    Target,
    check_meta,
    empty_journal,
    with_account,
)
from .errors import CheckpointLocked, CheckpointMismatch, TryLater, UsageError
from .states import OPEN, POSSIBLY_SENT, REACHED, RowState, sql_list

__all__ = [
    "DEFAULT_KEEPALIVES",
    "DEFAULT_LEASE",
    "DEFAULT_SCHEMA",
    "LAYOUT_VERSION",
    "PgCheckpoint",
    "PgLocation",
    "check_binding",
    "exists",
    "is_locked",
    "is_postgres",
    "jobs_beside",
    "parse_location",
    "read_only",
]

DEFAULT_SCHEMA = "batch_engage"
LAYOUT_VERSION = 1
DEFAULT_KEEPALIVES = {"keepalives_idle": 30, "keepalives_interval": 10, "keepalives_count": 6}
DEFAULT_LEASE = 60
_SCHEMES = ("postgresql://", "postgres://")
_IDENTIFIER = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
# A constant advisory key so only one session creates or upgrades the tables at a time.
_DDL_LOCK = 0x6261_7463_6865_6E67

_DDL = """
CREATE SCHEMA IF NOT EXISTS {s};
CREATE TABLE IF NOT EXISTS {s}.checkpoint_version (version INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS {s}.meta (
    job TEXT NOT NULL, key TEXT NOT NULL, value TEXT NOT NULL, PRIMARY KEY (job, key)
);
CREATE TABLE IF NOT EXISTS {s}.journal (
    job TEXT NOT NULL,
    contact TEXT NOT NULL,
    row BIGINT NOT NULL,
    to_addr TEXT NOT NULL,
    from_addr TEXT NOT NULL,
    params_hash TEXT,
    marker TEXT,
    input TEXT,
    state TEXT NOT NULL,
    sid TEXT,
    http_status INTEGER,
    error_code INTEGER,
    error_message TEXT,
    attempts INTEGER NOT NULL DEFAULT 0,
    intent_at TEXT,
    intent_twilio_at TEXT,
    completed_at TEXT,
    PRIMARY KEY (job, contact)
);
-- Partial, so that the outcome's key lookup can only take the primary key.
CREATE INDEX IF NOT EXISTS journal_open ON {s}.journal (job, state) WHERE state IN ('intent', 'uncertain', 'pending');
CREATE TABLE IF NOT EXISTS {s}.runs (
    id BIGSERIAL PRIMARY KEY,
    job TEXT NOT NULL,
    started_at TEXT NOT NULL,
    stopped_at TEXT,
    exit_code INTEGER,
    input TEXT
);
CREATE INDEX IF NOT EXISTS runs_job ON {s}.runs (job);
CREATE TABLE IF NOT EXISTS {s}.events (
    job TEXT NOT NULL,
    run BIGINT NOT NULL,
    second BIGINT NOT NULL,
    requests INTEGER NOT NULL,
    ok INTEGER NOT NULL,
    rate_limited INTEGER NOT NULL,
    retries INTEGER NOT NULL,
    lookups INTEGER NOT NULL,
    pacer_rate DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (job, run, second)
);
CREATE TABLE IF NOT EXISTS {s}.plans (job TEXT PRIMARY KEY, saved_at TEXT NOT NULL, plan BYTEA NOT NULL);
CREATE TABLE IF NOT EXISTS {s}.leases (
    job TEXT PRIMARY KEY, backend_pid INTEGER NOT NULL, holder TEXT NOT NULL, heartbeat_at TIMESTAMPTZ NOT NULL
);
"""
_TABLES = ("meta", "journal", "runs", "events", "plans", "leases")
_COLUMNS = ", ".join(_JOURNAL_COLUMNS)


def _boottime() -> float:
    """Seconds on a clock that keeps counting while the machine is suspended (monotonic where that is missing)."""
    return time.clock_gettime(time.CLOCK_BOOTTIME) if hasattr(time, "CLOCK_BOOTTIME") else time.monotonic()


def is_postgres(location: str | object) -> bool:
    """Whether a checkpoint location names PostgreSQL (by its URL scheme) rather than a file."""
    return isinstance(location, str) and location.startswith(_SCHEMES)


@dataclass(frozen=True)
class PgLocation:
    """A parsed location: libpq URL (no schema, no key), schema, job key, and the keepalive settings."""

    conninfo: str
    schema: str
    key: str
    keepalives: dict[str, int]
    lease: int = DEFAULT_LEASE

    def describe(self) -> str:
        """The location in words, for messages (never the password)."""
        parts = urlsplit(self.conninfo)
        host = parts.hostname or "localhost"
        port = f":{parts.port}" if parts.port else ""
        return f"postgresql://{host}{port}{parts.path} (schema {self.schema}, job {self.key})"

    @property
    def lock_id(self) -> int:
        """The advisory lock's 64-bit key: the same on every machine and every version."""
        digest = hashlib.blake2b(f"batch-engage/{self.schema}/{self.key}".encode(), digest_size=8).digest()
        return int.from_bytes(digest, "big", signed=True)

    def connect(self, *, autocommit: bool = True) -> psycopg.Connection[tuple[Any, ...]]:
        """A new connection with keepalives on both ends; an unreachable server is a one-line ``UsageError``."""
        try:
            conn = psycopg.connect(
                self.conninfo,
                autocommit=autocommit,
                keepalives=1,
                connect_timeout=10,
                application_name="batch-engage",
                keepalives_idle=self.keepalives["keepalives_idle"],
                keepalives_interval=self.keepalives["keepalives_interval"],
                keepalives_count=self.keepalives["keepalives_count"],
            )
        except psycopg.OperationalError as exc:
            reason = " ".join(str(exc).split())
            raise UsageError(
                f"{self.describe()}: cannot connect ({reason}); check the server, and PGPASSWORD or ~/.pgpass"
            ) from None
        # Server-side keepalives: these let the *server* drop a session whose machine vanished.
        with conn.transaction() if not autocommit else contextlib.nullcontext():
            conn.execute(f"SET tcp_keepalives_idle = {self.keepalives['keepalives_idle']}")
            conn.execute(f"SET tcp_keepalives_interval = {self.keepalives['keepalives_interval']}")
            conn.execute(f"SET tcp_keepalives_count = {self.keepalives['keepalives_count']}")
            # psycopg prepares repeated statements; a generic plan made while the journal was empty
            # would not fit it once it has grown. Plan each statement for its own values instead.
            conn.execute("SET plan_cache_mode = force_custom_plan")
        return conn

    def sql(self, text: str) -> str:
        """``text`` with ``{s}`` replaced by the schema (validated as a plain identifier)."""
        return text.replace("{s}", f'"{self.schema}"')


def parse_location(location: str) -> PgLocation:
    """Split ``postgresql://…?schema=name#key`` into what connecting and keying need."""
    parts = urlsplit(location)
    query = dict(parse_qsl(parts.query, keep_blank_values=True))
    schema = query.pop("schema", DEFAULT_SCHEMA)
    if not _IDENTIFIER.match(schema):
        raise UsageError(
            f"output.checkpoint: schema={schema!r} is not a plain lower-case name; use letters, digits and '_'"
        )
    key = unquote(parts.fragment)
    if not key:
        raise UsageError("a PostgreSQL checkpoint needs a job key (the spec adds '#<job id>'); set [job] id")
    keepalives = dict(DEFAULT_KEEPALIVES)
    for name in DEFAULT_KEEPALIVES:
        if name in query:
            value = query.pop(name)
            if not value.isdigit() or int(value) < 1:
                raise UsageError(f"{name}={value!r} in the checkpoint URL: use a whole number of seconds (or probes)")
            keepalives[name] = int(value)
    lease = query.pop("lease", str(DEFAULT_LEASE))
    if not lease.isdigit() or int(lease) < 1:
        raise UsageError(f"lease={lease!r} in the checkpoint URL: use a whole number of seconds")
    conninfo = urlunsplit((parts.scheme, parts.netloc, parts.path, urlencode(query), ""))
    return PgLocation(conninfo=conninfo, schema=schema, key=key, keepalives=keepalives, lease=int(lease))


def _where(location: str | PgLocation) -> PgLocation:
    return location if isinstance(location, PgLocation) else parse_location(location)


def _tables_exist(conn: psycopg.Connection[tuple[Any, ...]], loc: PgLocation) -> bool:
    row = conn.execute("SELECT to_regclass(%s) IS NOT NULL", (f'"{loc.schema}".meta',)).fetchone()
    return bool(row and row[0])


def _read_meta(conn: psycopg.Connection[tuple[Any, ...]], loc: PgLocation) -> dict[str, str]:
    if not _tables_exist(conn, loc):
        return {}
    rows = conn.execute(loc.sql("SELECT key, value FROM {s}.meta WHERE job = %s"), (loc.key,)).fetchall()
    return {str(k): str(v) for k, v in rows}


def _reached_count(conn: psycopg.Connection[tuple[Any, ...]], loc: PgLocation) -> int:
    states = sql_list(REACHED | POSSIBLY_SENT)
    row = conn.execute(
        loc.sql(f"SELECT COUNT(*) FROM {{s}}.journal WHERE job = %s AND state IN {states}"),  # noqa: S608
        (loc.key,),
    ).fetchone()
    return int(row[0]) if row else 0


def exists(location: str | PgLocation, *, plan: bool = False) -> bool:
    """Whether this job has a checkpoint in the database (``plan``: one with its plan saved)."""
    loc = _where(location)
    with loc.connect() as conn:
        if not _read_meta(conn, loc):
            return False
        if not plan:
            return True
        row = conn.execute(loc.sql("SELECT 1 FROM {s}.plans WHERE job = %s"), (loc.key,)).fetchone()
        return row is not None


def jobs_beside(location: str) -> list[str]:
    """``location`` with the key of each job in its schema (rehearsals and set-aside ones included)."""
    loc = _where(location)
    with loc.connect() as conn:
        if not _tables_exist(conn, loc):
            return []
        keys = conn.execute(loc.sql("SELECT DISTINCT job FROM {s}.meta ORDER BY job")).fetchall()
    base = location.rsplit("#", 1)[0]
    return [f"{base}#{key}" for (key,) in keys]


def check_binding(
    location: str | PgLocation,
    fingerprint: Mapping[str, Any],
    target: Target,
    *,
    restart: bool = False,
    yes: bool = False,
) -> None:
    """:func:`batch_engage.checkpoint.check_binding` for a PostgreSQL checkpoint (reads only)."""
    loc = _where(location)
    with loc.connect() as conn:
        _check(conn, loc, fingerprint, target, restart=restart, yes=yes)


def _check(
    conn: psycopg.Connection[tuple[Any, ...]],
    loc: PgLocation,
    fingerprint: Mapping[str, Any],
    target: Target,
    *,
    restart: bool,
    yes: bool,
) -> None:
    meta = _read_meta(conn, loc)
    if not meta:
        return
    if restart:
        if not yes:
            raise CheckpointMismatch(
                f"{loc.describe()}: --restart would forget {_reached_count(conn, loc)} contacts this job reached "
                "(or may have reached) and send to them again; nothing was sent. Add --yes to do it."
            )
        return
    check_meta(loc.describe(), meta, fingerprint, target)


def _try_lock(conn: psycopg.Connection[tuple[Any, ...]], loc: PgLocation) -> bool:
    row = conn.execute("SELECT pg_try_advisory_lock(%s)", (loc.lock_id,)).fetchone()
    return bool(row and row[0])


def _take_over(conn: psycopg.Connection[tuple[Any, ...]], loc: PgLocation) -> str | None:
    """Take the lock from a holder whose heartbeat stopped for a whole lease; else say who holds it.

    Only the backend that both holds the lock and owns the lease row is ended, so a run
    that has just taken the lock (and not yet written its lease) is never touched.
    """
    if not _tables_exist(conn, loc):
        return "a run that is starting"
    row = conn.execute(
        loc.sql(
            "SELECT l.backend_pid, l.holder, EXTRACT(EPOCH FROM now() - l.heartbeat_at)::float8, "
            "EXISTS (SELECT 1 FROM pg_locks k WHERE k.locktype = 'advisory' AND k.granted AND k.pid = l.backend_pid "
            "AND k.classid::bigint = %s AND k.objid::bigint = %s AND k.objsubid = 1) "
            "FROM {s}.leases l WHERE l.job = %s"
        ),
        ((loc.lock_id >> 32) & 0xFFFFFFFF, loc.lock_id & 0xFFFFFFFF, loc.key),
    ).fetchone()
    if row is None:
        return "a run that is starting"
    pid, holder, age, holds = int(row[0]), str(row[1]), float(row[2]), bool(row[3])
    if not holds or age < loc.lease:
        return f"{holder}, heartbeat {age:.0f} s ago"
    # The holder's machine stopped answering (frozen, or gone without closing its socket):
    # end its session, which releases the lock and fails any write it might still attempt.
    try:
        conn.execute("SELECT pg_terminate_backend(%s, 5000)", (pid,))
    except psycopg.errors.InsufficientPrivilege:
        return f"{holder}, silent for {age:.0f} s, under another database role: run every machine as one role"
    for _ in range(50):
        if _try_lock(conn, loc):
            return None
        conn.execute("SELECT pg_sleep(0.1)")
    return f"{holder}, heartbeat {age:.0f} s ago (it could not be ended)"


def is_locked(location: str | PgLocation) -> bool:
    """Whether a run holds this job now: try its lock from another session (and let go at once)."""
    loc = _where(location)
    with loc.connect() as conn:
        if _try_lock(conn, loc):
            conn.execute("SELECT pg_advisory_unlock(%s)", (loc.lock_id,))
            return False
        return True


def _create_tables(conn: psycopg.Connection[tuple[Any, ...]], loc: PgLocation) -> None:
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_DDL_LOCK,))
        if _tables_exist(conn, loc):
            row = conn.execute(loc.sql("SELECT max(version) FROM {s}.checkpoint_version")).fetchone()
            version = int(row[0]) if row and row[0] is not None else 0
            if version > LAYOUT_VERSION:
                raise UsageError(
                    f"{loc.describe()}: the tables were made by a newer batch-engage (layout {version}, "
                    f"this one knows {LAYOUT_VERSION}); upgrade batch-engage on this machine"
                )
            if version == LAYOUT_VERSION:
                return
        for statement in loc.sql(_DDL).split(";"):
            if statement.strip():
                conn.execute(statement)
        conn.execute(loc.sql("DELETE FROM {s}.checkpoint_version"))
        conn.execute(loc.sql("INSERT INTO {s}.checkpoint_version VALUES (%s)"), (LAYOUT_VERSION,))


def _move_aside(conn: psycopg.Connection[tuple[Any, ...]], loc: PgLocation) -> str:
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
    aside = f"{loc.key}@{stamp}.old"
    with conn.transaction():
        for table in _TABLES:
            conn.execute(loc.sql(f"UPDATE {{s}}.{table} SET job = %s WHERE job = %s"), (aside, loc.key))  # noqa: S608
    return aside


class PgCheckpoint:
    """One job's journal in PostgreSQL. Open with :meth:`open`; always :meth:`close` (or use ``with``)."""

    def __init__(self, loc: PgLocation, conn: psycopg.Connection[tuple[Any, ...]], meta: dict[str, str]) -> None:
        self.location = loc
        self.path = loc.describe()
        self._conn = conn
        self._db_lock = threading.Lock()
        self.token: str = meta["token"]
        self.meta = meta
        self.run_id: int | None = None
        # Durable unless a write says otherwise (only outcomes do: see _statement).
        conn.execute("SET synchronous_commit = off")
        self._stop = threading.Event()
        self._last_beat = _boottime()
        self._heart = threading.Thread(target=self._beat, name="checkpoint-heartbeat", daemon=True)
        self._heart.start()

    def _beat(self) -> None:
        """Renew the lease every quarter lease, on the lock's own connection (so a beat proves the lock)."""
        sql = self._sql("UPDATE {s}.leases SET heartbeat_at = now() WHERE job = %s AND backend_pid = pg_backend_pid()")
        while not self._stop.wait(self.location.lease / 4):
            try:
                with self._db_lock:
                    self._conn.execute(sql, (self.location.key,))
            except psycopg.Error:
                return  # the session is gone: the next write fails and stops the run
            self._last_beat = _boottime()

    def holds(self) -> bool:
        """Whether this run may still send: its last heartbeat is under half a lease old.

        A machine frozen (a paused VM, SIGSTOP) for longer may have been taken over by another;
        when it wakes, its queued requests must not leave before a beat proves the lock again.
        """
        return _boottime() - self._last_beat < self.location.lease / 2

    @classmethod
    def open(
        cls,
        location: str | PgLocation,
        fingerprint: Mapping[str, Any],
        target: Target,
        *,
        restart: bool = False,
        yes: bool = False,
        extra_meta: Mapping[str, str] | None = None,
    ) -> PgCheckpoint:
        """Lock the job (exit 75 at once if another run holds it), then open or create its checkpoint."""
        loc = _where(location)
        conn = loc.connect()
        try:
            if not _try_lock(conn, loc):
                holder = _take_over(conn, loc)
                if holder is not None:
                    raise CheckpointLocked(
                        f"{loc.describe()}: another batch-engage process is running this job ({holder}); "
                        "nothing was sent"
                    )
            _create_tables(conn, loc)
            conn.execute(
                loc.sql(
                    "INSERT INTO {s}.leases VALUES (%s, pg_backend_pid(), %s, now()) ON CONFLICT (job) DO UPDATE "
                    "SET backend_pid = excluded.backend_pid, holder = excluded.holder, heartbeat_at = now()"
                ),
                (loc.key, f"{socket.gethostname()} pid {os.getpid()}"),
            )
            _check(conn, loc, fingerprint, target, restart=restart, yes=yes)
            if restart:
                _move_aside(conn, loc)
            with conn.transaction():
                meta = _read_meta(conn, loc)
                if "fingerprint" not in meta:
                    meta = {
                        "version": SCHEMA_VERSION,
                        "fingerprint": json.dumps(dict(fingerprint), sort_keys=True),
                        "target": json.dumps(asdict(target), sort_keys=True),
                        "token": secrets.token_hex(8),
                        "created_at": iso_ms(datetime.now(UTC)),
                        **(extra_meta or {}),
                    }
                    with conn.cursor() as cur:
                        cur.executemany(
                            loc.sql("INSERT INTO {s}.meta VALUES (%s, %s, %s)"),
                            [(loc.key, k, v) for k, v in meta.items()],
                        )
                else:
                    stored = Target(**json.loads(meta["target"]))
                    # The latest credential is kept, and an account learned once is never forgotten.
                    pinned = Target(
                        base_url=stored.base_url,
                        identity=target.identity or stored.identity,
                        sandbox=stored.sandbox,
                        account=stored.account or target.account,
                    )
                    meta["target"] = json.dumps(asdict(pinned), sort_keys=True)
                    conn.execute(
                        loc.sql("UPDATE {s}.meta SET value = %s WHERE job = %s AND key = 'target'"),
                        (meta["target"], loc.key),
                    )
            return cls(loc, conn, meta)
        except BaseException:
            conn.close()
            raise

    def close(self) -> None:
        """Stop the heartbeat and close the connection: the server lets go of the lock with it."""
        self._stop.set()
        self._heart.join()
        with self._db_lock:
            self._conn.close()

    @property
    def target(self) -> Target:
        """The Twilio this checkpoint's runs were made against."""
        return Target(**json.loads(self.meta["target"]))

    def learn_account(self, account_sid: str) -> None:
        """The account the Flow belongs to (read by the preflight): refuse another, remember it otherwise."""
        learned = with_account(self.meta, account_sid, where=self.path)
        if learned is not None:
            self.meta["target"] = learned
            with self._transaction() as cur:
                cur.execute(
                    self._sql("UPDATE {s}.meta SET value = %s WHERE job = %s AND key = 'target'"),
                    (learned, self.location.key),
                )

    def __enter__(self) -> PgCheckpoint:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextlib.contextmanager
    def _db(self) -> Iterator[None]:
        """Hold the connection; a lost session is a one-line ``TryLater`` (exit 75): its lock is gone too."""
        with self._db_lock:
            try:
                yield
            except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
                reason = " ".join(str(exc).split()) or type(exc).__name__
                raise TryLater(
                    f"{self.path}: lost the connection to the checkpoint's database ({reason}); this run stops "
                    "and holds the job no more. Run the same command again: it settles what was in flight."
                ) from None

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[psycopg.Cursor[tuple[Any, ...]]]:
        with self._db(), self._conn.transaction(), self._conn.cursor() as cur:
            cur.execute("SET LOCAL synchronous_commit = on")
            yield cur

    def _statement(self, sql: str, params: tuple[Any, ...], *, durable: bool = True) -> list[tuple[Any, ...]]:
        """One statement in its own transaction.

        ``durable=False`` returns before the server has flushed its WAL to disk
        (``synchronous_commit = off``): only a *server* crash in the next fraction of a
        second can lose the write. That is for outcomes, which a crash may lose anyway
        (they are grouped) and reconciliation recovers; intents are always durable.
        """
        with self._db(), self._conn.cursor(binary=True) as cur:
            if durable:
                with self._conn.transaction():
                    cur.execute("SET LOCAL synchronous_commit = on")
                    cur.execute(sql, params)
            else:
                cur.execute(sql, params)  # the session's default: synchronous_commit = off
            return cur.fetchall() if cur.description else []

    def _sql(self, text: str) -> str:
        return self.location.sql(text)

    # -- the plan and the runs ----------------------------------------------------------

    def save_plan(self, plan: pl.DataFrame) -> None:
        """Keep the plan in the database (a zstd Parquet blob), replacing the last one."""
        buffer = io.BytesIO()
        plan.write_parquet(buffer, compression="zstd")
        with self._transaction() as cur:
            cur.execute(
                self._sql(
                    "INSERT INTO {s}.plans VALUES (%s, %s, %s) ON CONFLICT (job) DO UPDATE SET "
                    "saved_at = excluded.saved_at, plan = excluded.plan"
                ),
                (self.location.key, iso_ms(datetime.now(UTC)), buffer.getvalue()),
            )

    def start_run(self, started_at: str, input_digest: str) -> int:
        """Record that a run starts (for the report); remember its id."""
        with self._transaction() as cur:
            cur.execute(
                self._sql("INSERT INTO {s}.runs (job, started_at, input) VALUES (%s, %s, %s) RETURNING id"),
                (self.location.key, started_at, input_digest),
            )
            row = cur.fetchone()
            cur.execute(
                self._sql(
                    "INSERT INTO {s}.meta VALUES (%s, 'input', %s) "
                    "ON CONFLICT (job, key) DO UPDATE SET value = excluded.value"
                ),
                (self.location.key, input_digest),
            )
        self.run_id = int(row[0]) if row else 0
        self.meta["input"] = input_digest
        return self.run_id

    def finish_run(self, stopped_at: str, exit_code: int) -> None:
        """Record how this run ended."""
        with self._transaction() as cur:
            cur.execute(
                self._sql("UPDATE {s}.runs SET stopped_at = %s, exit_code = %s WHERE id = %s"),
                (stopped_at, exit_code, self.run_id),
            )

    def write_events(self, seconds: Iterable[SecondStats]) -> None:
        """Add (or add to) this run's per-second counters."""
        rows = [
            (self.location.key, self.run_id, s.second, s.requests, s.ok, s.rate_limited, s.retries, s.lookups,
             s.pacer_rate)
            for s in seconds
        ]  # fmt: skip
        if not rows or self.run_id is None:
            return
        with self._transaction() as cur:
            cur.executemany(
                self._sql(
                    "INSERT INTO {s}.events AS e VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s) "
                    "ON CONFLICT (job, run, second) DO UPDATE SET "
                    "requests = e.requests + excluded.requests, ok = e.ok + excluded.ok, "
                    "rate_limited = e.rate_limited + excluded.rate_limited, retries = e.retries + excluded.retries, "
                    "lookups = e.lookups + excluded.lookups, pacer_rate = excluded.pacer_rate"
                ),
                rows,
            )

    # -- the journal ------------------------------------------------------------------

    def write_intents(self, intents: Iterable[Intent], *, at: str, twilio_at: str | None) -> None:
        """Record that these contacts are about to be sent (committed, in one statement, before any leaves).

        One statement per group (arrays through ``unnest``): a statement per row costs
        the server a parse, plan and execute each, five times SQLite's cost per row.
        """
        # Later lines win, as they would written one by one; one statement cannot touch a row twice.
        group = list({i.contact: i for i in intents}.values())
        if not group:
            return
        columns = (
            [i.contact for i in group],
            [i.row for i in group],
            [i.to for i in group],
            [i.from_ for i in group],
            [i.params_hash for i in group],
            [i.marker for i in group],
        )
        self._statement(
            self._sql(
                "INSERT INTO {s}.journal AS j (job, contact, row, to_addr, from_addr, params_hash, marker, "
                "input, state, intent_at, intent_twilio_at) "
                "SELECT %s, c, r, t, f, h, m, %s, 'intent', %s, %s "
                "FROM unnest(%s::text[], %s::bigint[], %s::text[], %s::text[], %s::text[], %s::text[]) "
                "AS u(c, r, t, f, h, m) "
                "ON CONFLICT (job, contact) DO UPDATE SET state = 'intent', row = excluded.row, "
                "to_addr = excluded.to_addr, from_addr = excluded.from_addr, "
                "params_hash = excluded.params_hash, marker = excluded.marker, input = excluded.input, "
                "intent_at = COALESCE(j.intent_at, excluded.intent_at), "
                "intent_twilio_at = COALESCE(j.intent_twilio_at, excluded.intent_twilio_at)"
            ),
            (self.location.key, self.meta.get("input"), at, twilio_at, *columns),
        )

    def write_outcomes(self, outcomes: Iterable[Outcome]) -> None:
        """Record a group of outcomes in one transaction and one statement (a ``pending`` one withdraws the intent).

        An upsert, not ``UPDATE … FROM``: its key lookups go straight to the primary key,
        where a join would be planned from statistics that lag behind a growing journal.
        A contact with no line (never the case: intents come first) gets none, as in SQLite.
        """
        group = list({o.contact: o for o in outcomes}.values())
        if not group:
            return
        columns = (
            [o.contact for o in group],
            [o.state.value for o in group],
            [o.sid for o in group],
            [o.http_status for o in group],
            [o.error_code for o in group],
            [o.error_message for o in group],
            [o.attempts for o in group],
            [o.completed_at for o in group],
        )
        returned = self._statement(
            self._sql(
                "INSERT INTO {s}.journal AS j (job, contact, row, to_addr, from_addr, state, sid, http_status, "
                "error_code, error_message, attempts, completed_at) "
                "SELECT %s, c, -1, '', '', st, sid, hs, ec, em, at, ca "
                "FROM unnest(%s::text[], %s::text[], %s::text[], %s::int[], %s::int[], %s::text[], %s::int[], "
                "%s::text[]) AS o(c, st, sid, hs, ec, em, at, ca) "
                "ON CONFLICT (job, contact) DO UPDATE SET state = excluded.state, sid = excluded.sid, "
                "http_status = excluded.http_status, error_code = excluded.error_code, "
                "error_message = excluded.error_message, attempts = excluded.attempts, "
                "completed_at = excluded.completed_at, "
                "intent_at = CASE WHEN excluded.state = 'pending' THEN NULL ELSE j.intent_at END, "
                "intent_twilio_at = CASE WHEN excluded.state = 'pending' THEN NULL ELSE j.intent_twilio_at END "
                "RETURNING CASE WHEN j.row = -1 THEN j.contact END"
            ),
            (self.location.key, *columns),
            durable=False,
        )
        strays = [r[0] for r in returned if r[0] is not None]
        if strays:
            self._statement(
                self._sql("DELETE FROM {s}.journal WHERE job = %s AND contact = ANY(%s::text[])"),
                (self.location.key, strays),
            )

    def _select(self, where: str = "", params: tuple[Any, ...] = ()) -> pl.DataFrame:
        sql = self._sql(f"SELECT {_COLUMNS} FROM {{s}}.journal WHERE job = %s {where} ORDER BY row")  # noqa: S608
        with self._db():
            rows = self._conn.execute(sql, (self.location.key, *params)).fetchall()
        return _frame(rows)

    def journal(self) -> pl.DataFrame:
        """Every journal line as a frame (contacts never sent are absent)."""
        return self._select()

    def open_lines(self) -> pl.DataFrame:
        """The lines a run still has to act on (``intent``, ``uncertain``, ``pending``), in full."""
        return self._select(f"AND state IN {sql_list(OPEN)}")

    def contacts_in(self, states: frozenset[RowState]) -> pl.Series:
        """Contacts whose line is in one of ``states``, as one text value polars splits (fast for millions)."""
        sql = self._sql(
            "SELECT string_agg(contact, chr(10)) FROM {s}.journal WHERE job = %s AND state = ANY(%s::text[])"
        )
        with self._db():
            row = self._conn.execute(sql, (self.location.key, sorted(s.value for s in states))).fetchone()
        text = row[0] if row else None
        if not text:
            return pl.Series("contact", [], dtype=pl.String)
        return pl.Series("contact", [text]).str.split("\n").explode()

    def reached_for_other_input(self, input_digest: str) -> pl.DataFrame:
        """Contacts reached by runs for another input (an earlier export): contact, params_hash."""
        sql = self._sql(
            f"SELECT contact, params_hash FROM {{s}}.journal WHERE job = %s AND state IN {sql_list(REACHED)} "  # noqa: S608
            "AND input IS DISTINCT FROM %s"
        )
        with self._db():
            rows = self._conn.execute(sql, (self.location.key, input_digest)).fetchall()
        return pl.DataFrame(rows, schema={"contact": pl.String, "params_hash": pl.String}, orient="row")

    def sids_since(self, since_iso: str) -> set[str]:
        """SIDs already attributed to contacts whose intent or answer is at or after ``since_iso``."""
        with self._db():
            rows = self._conn.execute(
                self._sql(
                    "SELECT sid FROM {s}.journal WHERE job = %s AND sid IS NOT NULL "
                    "AND (completed_at >= %s OR intent_at >= %s)"
                ),
                (self.location.key, since_iso, since_iso),
            ).fetchall()
        return {str(r[0]) for r in rows}


def _frame(rows: list[tuple[Any, ...]]) -> pl.DataFrame:
    return pl.DataFrame(rows, schema=_JOURNAL_COLUMNS, orient="row") if rows else empty_journal()


def read_only(location: str | PgLocation) -> CheckpointView:
    """Everything this job's checkpoint holds, read in one snapshot without its lock: safe while a run goes on."""
    loc = _where(location)
    with loc.connect(autocommit=False) as conn:
        conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
        meta = _read_meta(conn, loc)
        if not meta:
            raise UsageError(f"{loc.describe()}: no checkpoint yet: the job has not run")
        if meta.get("version") != SCHEMA_VERSION:
            raise UsageError(
                f"{loc.describe()}: written by another version of batch-engage (checkpoint format "
                f"{meta.get('version', '?')}); read it with that version"
            )
        key = (loc.key,)
        journal = _frame(
            conn.execute(
                loc.sql(f"SELECT {_COLUMNS} FROM {{s}}.journal WHERE job = %s ORDER BY row"),  # noqa: S608
                key,
            ).fetchall()
        )
        runs = pl.DataFrame(
            conn.execute(
                loc.sql("SELECT id, started_at, stopped_at, exit_code FROM {s}.runs WHERE job = %s ORDER BY id"), key
            ).fetchall(),
            schema=RUN_COLUMNS,
            orient="row",
        )
        events = pl.DataFrame(
            conn.execute(
                loc.sql(
                    "SELECT run, second, requests, ok, rate_limited, retries, lookups, pacer_rate "
                    "FROM {s}.events WHERE job = %s ORDER BY run, second"
                ),
                key,
            ).fetchall(),
            schema=EVENT_COLUMNS,
            orient="row",
        )
        blob = conn.execute(loc.sql("SELECT plan FROM {s}.plans WHERE job = %s"), key).fetchone()
        conn.rollback()
    stamps = [
        meta.get("created_at"),
        journal.get_column("completed_at").max(),
        journal.get_column("intent_at").max(),
        runs.get_column("stopped_at").max(),
        runs.get_column("started_at").max(),
    ]
    newest = max(str(s) for s in stamps if s)
    return CheckpointView(
        plan=pl.read_parquet(io.BytesIO(blob[0])) if blob else None,
        journal=journal,
        meta=meta,
        runs=runs,
        events=events,
        live=is_locked(loc),
        modified=datetime.fromisoformat(newest.replace("Z", "+00:00")),
    )
