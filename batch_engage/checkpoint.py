"""The checkpoint: a SQLite journal of intents and outcomes, bound to one job, locked to one process.

A row's journal state is one of:

* ``intent``   - about to be sent, or in flight: after a crash it is *possibly sent*;
* ``uncertain``- an answer said it may have been processed (5xx, lost answer);
* ``pending``  - reconciled as never created: safe to send;
* ``sent``, ``already_active``, ``failed``, ``capped`` - final.

Rows not in the journal were never sent. Intents are committed (with fsync) before
their requests leave; outcomes are committed in groups. The plan (every input row,
mapped and validated) is kept beside the journal as ``<checkpoint>.plan.parquet`` so
``report`` and ``status`` need nothing else.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import sqlite3
import threading
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import polars as pl

from .errors import CheckpointLocked, CheckpointMismatch, UsageError

__all__ = [
    "FINAL_STATES",
    "Checkpoint",
    "Outcome",
    "describe_mismatch",
    "empty_journal",
    "private_file",
    "read_only",
]

SCHEMA_VERSION = "1"
FINAL_STATES = ("sent", "already_active", "failed", "capped")
_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS journal (
    row INTEGER PRIMARY KEY,
    key TEXT NOT NULL,
    state TEXT NOT NULL,
    sid TEXT,
    http_status INTEGER,
    error_code INTEGER,
    error_message TEXT,
    attempts INTEGER NOT NULL DEFAULT 0,
    intent_at TEXT,
    completed_at TEXT
);
CREATE INDEX IF NOT EXISTS journal_state ON journal(state);
"""


@dataclass(frozen=True)
class Outcome:
    """One row's answer, as the journal records it."""

    row: int
    state: str
    sid: str | None = None
    http_status: int | None = None
    error_code: int | None = None
    error_message: str | None = None
    attempts: int = 0
    completed_at: str | None = None


def private_file(path: Path) -> None:
    """Create ``path`` (if missing) readable and writable by its owner only."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_CREAT | os.O_WRONLY, 0o600)
    os.close(fd)
    os.chmod(path, 0o600)


def describe_mismatch(stored: Mapping[str, Any], current: Mapping[str, Any]) -> str:
    """Say in words which parts of the fingerprint changed."""
    names = {
        "input": "the input file's content",
        "flow_sid": "the Flow SID",
        "api": "the API",
        "mapping": "the column mapping",
        "planning": "the planning settings (dedupe, max_parameters_bytes)",
    }
    changed = [names.get(k, k) for k in names if stored.get(k) != current.get(k)]
    return ", ".join(changed) or "the job"


def now_iso() -> str:
    """The current UTC time as the results table writes it."""
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class Checkpoint:
    """One job's journal. Open with :meth:`open`; always :meth:`close` (or use ``with``)."""

    def __init__(self, path: Path, conn: sqlite3.Connection, lock_fd: int) -> None:
        self.path = path
        self._conn = conn
        self._lock_fd = lock_fd
        self._db_lock = threading.Lock()

    @property
    def plan_path(self) -> Path:
        """Where the plan is kept beside the journal."""
        return self.path.with_name(self.path.name + ".plan.parquet")

    @staticmethod
    def lock_path(path: Path) -> Path:
        """The lock file beside the checkpoint (never moved, so a lock outlives ``--restart``)."""
        return path.with_name(path.name + ".lock")

    @classmethod
    def open(
        cls,
        path: str | Path,
        fingerprint: Mapping[str, Any],
        *,
        restart: bool = False,
        create: bool = True,
    ) -> Checkpoint:
        """Lock, then open or create the checkpoint for ``fingerprint``.

        Raises ``CheckpointLocked`` if another process holds it, and
        ``CheckpointMismatch`` if it was made for another job (unless ``restart``,
        which moves the old one aside).
        """
        path = Path(path)
        lock_path = cls.lock_path(path)
        private_file(lock_path)
        fd = os.open(lock_path, os.O_RDWR)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise CheckpointLocked(
                f"{path}: another batch-engage process is running this job; nothing was sent"
            ) from None
        try:
            if path.exists():
                stored = cls._read_fingerprint(path)
                if stored is not None and stored != dict(fingerprint) and not restart:
                    raise CheckpointMismatch(
                        f"{path}: this checkpoint was made for another job: "
                        f"{describe_mismatch(stored, fingerprint)} changed. Nothing was sent. "
                        "Use --restart to start over (the old checkpoint is kept aside)."
                    )
                if restart:
                    cls._move_aside(path)
            elif not create:
                raise UsageError(f"{path}: no checkpoint yet (the job has not run)")
            private_file(path)
            conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")
            conn.executescript(_SCHEMA)
            with conn:
                conn.execute("BEGIN")
                existing = dict(conn.execute("SELECT key, value FROM meta").fetchall())
                if "fingerprint" not in existing:
                    conn.executemany(
                        "INSERT INTO meta VALUES (?, ?)",
                        [
                            ("version", SCHEMA_VERSION),
                            ("fingerprint", json.dumps(dict(fingerprint), sort_keys=True)),
                            ("created_at", now_iso()),
                        ],
                    )
            return cls(path, conn, fd)
        except BaseException:
            os.close(fd)
            raise

    @staticmethod
    def _read_fingerprint(path: Path) -> dict[str, Any] | None:
        try:
            conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
            try:
                row = conn.execute("SELECT value FROM meta WHERE key = 'fingerprint'").fetchone()
            finally:
                conn.close()
        except sqlite3.DatabaseError as exc:
            raise UsageError(f"{path}: not a batch-engage checkpoint ({exc}); use --restart") from None
        if row is None:
            return None
        value = json.loads(row[0])
        return value if isinstance(value, dict) else None

    @staticmethod
    def _move_aside(path: Path) -> Path:
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        target = path.with_name(f"{path.name}.{stamp}.old")
        n = 1
        while target.exists():
            n += 1
            target = path.with_name(f"{path.name}.{stamp}-{n}.old")
        os.replace(path, target)
        for suffix in ("-wal", "-shm", ".plan.parquet"):
            extra = path.with_name(path.name + suffix)
            if extra.exists():
                os.replace(extra, target.with_name(target.name + suffix))
        return target

    def close(self) -> None:
        """Close the database and release the lock."""
        with self._db_lock:
            self._conn.close()
        with contextlib.suppress(OSError):
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
        os.close(self._lock_fd)

    def __enter__(self) -> Checkpoint:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with self._db_lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._conn
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")

    # -- the plan ---------------------------------------------------------------------

    def save_plan(self, plan: pl.DataFrame) -> None:
        """Keep the plan beside the journal (written once, atomically, owner-only)."""
        tmp = self.plan_path.with_name(self.plan_path.name + ".tmp")
        private_file(tmp)
        plan.write_parquet(tmp, compression="zstd")
        os.replace(tmp, self.plan_path)

    # -- writing ----------------------------------------------------------------------

    def write_intents(self, rows: Iterable[tuple[int, str]]) -> str:
        """Record that these ``(row, key)`` are about to be sent; return the intent time."""
        at = now_iso()
        with self._transaction() as conn:
            conn.executemany(
                "INSERT INTO journal (row, key, state, intent_at) VALUES (?, ?, 'intent', ?) "
                "ON CONFLICT(row) DO UPDATE SET state = 'intent', key = excluded.key, "
                "intent_at = COALESCE(journal.intent_at, excluded.intent_at)",
                [(row, key, at) for row, key in rows],
            )
        return at

    def write_outcomes(self, outcomes: Iterable[Outcome]) -> None:
        """Record a group of outcomes in one transaction."""
        with self._transaction() as conn:
            conn.executemany(
                "UPDATE journal SET state = ?, sid = ?, http_status = ?, error_code = ?, "
                "error_message = ?, attempts = ?, completed_at = ?, "
                "intent_at = CASE WHEN ? = 'pending' THEN NULL ELSE intent_at END WHERE row = ?",
                [
                    (
                        o.state,
                        o.sid,
                        o.http_status,
                        o.error_code,
                        o.error_message,
                        o.attempts,
                        o.completed_at,
                        o.state,
                        o.row,
                    )
                    for o in outcomes
                ],
            )

    # -- reading ----------------------------------------------------------------------

    def journal(self) -> pl.DataFrame:
        """Every journal line as a frame (rows never sent are absent)."""
        with self._db_lock:
            return _read_journal(self._conn)

    def open_lines(self) -> pl.DataFrame:
        """The lines a run still has to act on (``intent``, ``uncertain``, ``pending``), in full."""
        with self._db_lock:
            data = self._conn.execute(_OPEN_SELECT).fetchall()
        return pl.DataFrame(data, schema=_JOURNAL_SCHEMA, orient="row") if data else empty_journal()

    def settled_rows(self) -> pl.Series:
        """Row numbers whose line is final, without reading the lines themselves.

        One ``group_concat`` string split by polars: ~0.2 s for a million rows, where
        fetching them as Python tuples takes ~2 s.
        """
        with self._db_lock:
            (text,) = self._conn.execute(
                "SELECT group_concat(row) FROM journal WHERE state NOT IN ('intent', 'uncertain', 'pending')"
            ).fetchone()
        if not text:
            return pl.Series("row", [], dtype=pl.Int64)
        return pl.Series("row", [text]).str.split(",").explode().cast(pl.Int64)

    def sids_completed_since(self, since_iso: str) -> set[str]:
        """SIDs of rows answered at or after ``since_iso`` (the only ones a hand-back check needs)."""
        with self._db_lock:
            rows = self._conn.execute(
                "SELECT sid FROM journal WHERE sid IS NOT NULL AND completed_at >= ?", (since_iso,)
            ).fetchall()
        return {r[0] for r in rows}

    def known_sids(self, since_iso: str) -> set[str]:
        """SIDs already attributed to rows whose intent is at or after ``since_iso``."""
        with self._db_lock:
            rows = self._conn.execute(
                "SELECT sid FROM journal WHERE sid IS NOT NULL AND (intent_at IS NULL OR intent_at >= ?)",
                (since_iso,),
            ).fetchall()
        return {r[0] for r in rows}


_JOURNAL_SCHEMA = {
    "row": pl.Int64,
    "key": pl.String,
    "state": pl.String,
    "sid": pl.String,
    "http_status": pl.Int64,
    "error_code": pl.Int64,
    "error_message": pl.String,
    "attempts": pl.Int64,
    "intent_at": pl.String,
    "completed_at": pl.String,
}


# Every state but FINAL_STATES: what a run still has to act on.
_OPEN_SELECT = (
    "SELECT row, key, state, sid, http_status, error_code, error_message, attempts, intent_at, completed_at "
    "FROM journal WHERE state IN ('intent', 'uncertain', 'pending') ORDER BY row"
)

_JOURNAL_SELECT = (
    "SELECT row, key, state, sid, http_status, error_code, error_message, attempts, intent_at, completed_at "
    "FROM journal ORDER BY row"
)


def empty_journal() -> pl.DataFrame:
    """A journal with no lines (a job that has never sent)."""
    return pl.DataFrame(schema=_JOURNAL_SCHEMA)


def _read_journal(conn: sqlite3.Connection) -> pl.DataFrame:
    cursor = conn.execute(_JOURNAL_SELECT)
    data = cursor.fetchall()
    return pl.DataFrame(data, schema=_JOURNAL_SCHEMA, orient="row") if data else empty_journal()


def read_only(path: str | Path) -> tuple[pl.DataFrame | None, pl.DataFrame]:
    """The plan and journal of a checkpoint, without its lock: safe while a run is going on."""
    path = Path(path)
    if not path.exists():
        raise UsageError(f"{path}: no checkpoint yet: the job has not run")
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            journal = _read_journal(conn)
        finally:
            conn.close()
    except sqlite3.DatabaseError as exc:
        raise UsageError(f"{path}: not a batch-engage checkpoint ({exc})") from None
    plan_path = path.with_name(path.name + ".plan.parquet")
    return (pl.read_parquet(plan_path) if plan_path.exists() else None), journal
