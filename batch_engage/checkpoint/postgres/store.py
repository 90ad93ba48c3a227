"""The checkpoint in PostgreSQL: the same journal as the SQLite file, shared by every machine.

A location is ``postgresql://host/db?schema=name#<key>`` (:mod:`batch_engage.postgres`);
the tables, made on first use, hold many jobs (:mod:`.tables`). One run per
job: an advisory lock on a dedicated connection that also carries every write, and a lease
whose heartbeat lets another machine take over a dead holder (:mod:`.lease`).
The plan is a zstd Parquet blob in ``plans``: ``status`` and ``report`` need nothing on disk
(:mod:`.read`).
"""

from __future__ import annotations

import contextlib
import io
import threading
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from typing import Any

import polars as pl

from ...clock import iso_ms
from ...postgres import DEFAULT_KEEPALIVES, DEFAULT_LEASE, DEFAULT_SCHEMA, PgLocation, parse_location, where
from ..model import (
    Intent,
    Outcome,
    SecondStats,
    StoreBase,
    with_account,
)
from .lease import Heartbeat, is_locked, let_go, lock_job, write_lease
from .read import exists, jobs_beside, read_only
from .session import PgSession
from .tables import LAYOUT_VERSION, Connection, create_tables, move_aside, reached_count, read_meta

__all__ = [
    "DEFAULT_KEEPALIVES",
    "DEFAULT_LEASE",
    "DEFAULT_SCHEMA",
    "LAYOUT_VERSION",
    "PgBinding",
    "PgCheckpoint",
    "PgLocation",
    "exists",
    "is_locked",
    "jobs_beside",
    "lock_job_checkpoint",
    "parse_location",
    "read_only",
    "reading_binding",
]


def _arrays(rows: list[tuple[Any, ...]]) -> tuple[list[Any], ...]:
    """Rows as one list per column: the arrays ``unnest`` turns back into rows in one statement."""
    return tuple(list(column) for column in zip(*rows, strict=True))


class PgCheckpoint(PgSession, StoreBase):
    """One job's journal in PostgreSQL. Open with :meth:`open`; always :meth:`close` (or use ``with``)."""

    leased = True

    def __init__(self, loc: PgLocation, conn: Connection, meta: dict[str, str]) -> None:
        self.location = loc
        self.path = loc.describe()
        self._conn = conn
        self._db_lock = threading.Lock()
        self.token: str = meta["token"]
        self.meta = meta
        self.run_id: int | None = None
        # Durable unless a write says otherwise (only outcomes do: see _statement).
        conn.execute("SET synchronous_commit = off")
        self._heart = Heartbeat(conn, self._db_lock, loc)

    def holds(self) -> bool:
        """Whether this run may still send: its last heartbeat is under half a lease old."""
        return self._heart.fresh()

    def close(self) -> None:
        """Stop the heartbeat and close the connection: the server lets go of the lock with it."""
        self._heart.stop()
        with self._db_lock:
            self._conn.close()

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

    def remember(self, key: str, value: str) -> None:
        """Keep a note beside the binding (the preflight's projection, say); never one of the binding's own keys."""
        self.meta[key] = value
        with self._transaction() as cur:
            cur.execute(
                self._sql(
                    "INSERT INTO {s}.meta (job, key, value) VALUES (%s, %s, %s) "
                    "ON CONFLICT (job, key) DO UPDATE SET value = excluded.value"
                ),
                (self.location.key, key, value),
            )

    # -- the plan and the runs ----------------------------------------------------------

    def save_plan(self, plan: pl.DataFrame, key: str = "") -> None:
        """Keep the plan in the database (a zstd Parquet blob), replacing the last one; ``key`` is not kept: a
        run opens a PostgreSQL checkpoint only after planning, so never takes a plan from it."""
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
        columns = _arrays([(i.contact, i.row, i.to, i.from_, i.params_hash, i.marker, i.variant) for i in group])
        self._statement(
            self._sql(
                "INSERT INTO {s}.journal AS j (job, contact, row, to_addr, from_addr, params_hash, marker, "
                "input, state, intent_at, intent_twilio_at, variant) "
                "SELECT %s, c, r, t, f, h, m, %s, 'intent', %s, %s, v "
                "FROM unnest(%s::text[], %s::bigint[], %s::text[], %s::text[], %s::text[], %s::text[], %s::text[]) "
                "AS u(c, r, t, f, h, m, v) "
                "ON CONFLICT (job, contact) DO UPDATE SET state = 'intent', row = excluded.row, "
                "to_addr = excluded.to_addr, from_addr = excluded.from_addr, "
                "params_hash = excluded.params_hash, marker = excluded.marker, input = excluded.input, "
                "variant = excluded.variant, "
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
        columns = _arrays(
            [
                (o.contact, o.state.value, o.sid, o.http_status, o.error_code, o.error_message, o.attempts,
                 o.completed_at, o.ended_sid)
                for o in group
            ]
        )  # fmt: skip
        returned = self._statement(
            self._sql(
                "INSERT INTO {s}.journal AS j (job, contact, row, to_addr, from_addr, state, sid, http_status, "
                "error_code, error_message, attempts, completed_at, ended_sid) "
                "SELECT %s, c, -1, '', '', st, sid, hs, ec, em, at, ca, es "
                "FROM unnest(%s::text[], %s::text[], %s::text[], %s::int[], %s::int[], %s::text[], %s::int[], "
                "%s::text[], %s::text[]) AS o(c, st, sid, hs, ec, em, at, ca, es) "
                "ON CONFLICT (job, contact) DO UPDATE SET state = excluded.state, sid = excluded.sid, "
                "http_status = excluded.http_status, error_code = excluded.error_code, "
                "error_message = excluded.error_message, attempts = excluded.attempts, "
                "completed_at = excluded.completed_at, ended_sid = COALESCE(excluded.ended_sid, j.ended_sid), "
                "intent_at = CASE WHEN excluded.state IN ('pending', 'waiting_active') THEN NULL "
                "ELSE j.intent_at END, "
                "intent_twilio_at = CASE WHEN excluded.state IN ('pending', 'waiting_active') THEN NULL "
                "ELSE j.intent_twilio_at END "
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


class PgBinding:
    """A job's checkpoint in PostgreSQL, locked on its own connection, before its meta is bound."""

    def __init__(self, conn: Connection, loc: PgLocation) -> None:
        self._conn = conn
        self.location = loc
        self.where = loc.describe()

    def exists(self) -> bool:
        """Whether the job has a checkpoint in the schema."""
        return bool(read_meta(self._conn, self.location))

    def stored_meta(self) -> dict[str, str]:
        """The job's meta."""
        return read_meta(self._conn, self.location)

    def reached_count(self) -> int:
        """Contacts the job's journal records as reached or possibly reached."""
        return reached_count(self._conn, self.location)

    def move_aside(self) -> None:
        """Rename the job's lines to ``<key>@<UTC stamp>.old`` in every table."""
        move_aside(self._conn, self.location)

    def store_meta(self, meta: dict[str, str], *, new: bool) -> None:
        """Store every key of a new checkpoint's meta, or an existing one's latest target, in one transaction."""
        loc = self.location
        with self._conn.transaction():
            if new:
                with self._conn.cursor() as cur:
                    cur.executemany(
                        loc.sql("INSERT INTO {s}.meta VALUES (%s, %s, %s)"), [(loc.key, k, v) for k, v in meta.items()]
                    )
            else:
                self._conn.execute(
                    loc.sql("UPDATE {s}.meta SET value = %s WHERE job = %s AND key = 'target'"),
                    (meta["target"], loc.key),
                )

    def opened(self, meta: dict[str, str]) -> PgCheckpoint:
        """The open checkpoint, once its meta is stored."""
        return PgCheckpoint(self.location, self._conn, meta)

    def abandon(self) -> None:
        """Let go of the job's lock (the binding was refused, or failed) and close the connection."""
        let_go(self._conn, self.location)


def lock_job_checkpoint(location: str | PgLocation) -> PgBinding:
    """Lock the job (exit 75 at once if another run holds it), make the tables, take the lease: ready to bind."""
    loc = where(location)
    conn = loc.connect()
    try:
        lock_job(conn, loc)
        create_tables(conn, loc)
        write_lease(conn, loc)
    except BaseException:
        conn.close()
        raise
    return PgBinding(conn, loc)


@contextlib.contextmanager
def reading_binding(location: str | PgLocation) -> Iterator[PgBinding]:
    """A binding to ask questions of without the lock (``validate``): it reads only."""
    loc = where(location)
    with loc.connect() as conn:
        yield PgBinding(conn, loc)
