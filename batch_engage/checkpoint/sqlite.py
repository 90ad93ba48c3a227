"""The checkpoint in a SQLite file: a journal keyed by contact, bound to one job and one Twilio, locked to one process.

One line per contact (the normalized ``To``, or To and From: the key dedupe uses), so a
re-exported list whose rows moved never maps an old outcome or SID to another person.
Intents are committed (with fsync) before their requests leave; outcomes are committed
in groups. The lock is an ``flock`` on ``<checkpoint>.lock``; the plan is kept beside the
journal as ``<checkpoint>.plan.parquet`` so ``report`` and ``status`` need nothing else.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
from collections.abc import Iterable, Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import polars as pl

from ..disk import move_with_sidecars, private_file, release_lock, try_lock
from ..errors import CheckpointLocked
from ..states import BLOCKED, OPEN, REACHED, RowState, sql_list
from .model import (
    Intent,
    Outcome,
    SecondStats,
    StoreBase,
    contacts_from_text,
    journal_frame,
    reached_frame,
    states_from_parts,
    with_account,
)
from .plan_file import save_plan
from .runlog import INTENTS_KEY, RunLog, lost_lines, read_runlog, refuse_lost_journal
from .schema import ADDED_JOURNAL_COLUMNS, SQLITE_ADDED, SQLITE_DDL, journal_select
from .sqlite_lines import journal_in_one_step, write_intent_lines, write_outcome_lines, writes_in_one_step
from .sqlite_read import (
    hold,
    is_locked,
    journal_columns,
    let_go,
    lock_path,
    meta_of_file,
    plan_path,
    reached_count,
    read_meta,
    read_only,
)
from .upgrade import V1_LINE_COLUMNS, take_v1_lines

__all__ = ["Checkpoint", "FileBinding", "is_locked", "lock_file", "meta_of_file", "plan_path", "read_only"]

_SELECT = f"SELECT {journal_select()} FROM journal"  # noqa: S608 - constant column names
# Read in one transaction, so one snapshot: the contacts from their key's index alone (a third of the table's
# bytes), the lines not sent (few) through the state's index, both sides of 'sent' so that a state this
# release does not know is read too, and the lines of another input than the last run's (few) with their digest.
_CONTACTS = "SELECT group_concat(contact, char(10)) FROM journal"
_UNSENT = (
    f"SELECT contact, state FROM journal WHERE state < '{RowState.SENT.value}' UNION ALL "  # noqa: S608 - constants
    f"SELECT contact, state FROM journal WHERE state > '{RowState.SENT.value}'"
)
_OTHER_INPUTS = (
    "SELECT group_concat(contact || char(9) || coalesce(input, ''), char(10)) FROM journal WHERE input IS NOT ?"
)

# One try at a lock another connection holds; the run waits out longer ones itself (``output.lock_wait``),
# logging each wait and watching for a stop between tries.
BUSY_SECONDS = 1.0


def _add_columns(conn: sqlite3.Connection) -> None:
    """Give a journal made before the added columns those columns (nullable: nothing else changes)."""
    present = journal_columns(conn)
    for name, statement in zip(ADDED_JOURNAL_COLUMNS, SQLITE_ADDED, strict=True):
        if name not in present:
            conn.execute(statement)


class Checkpoint(StoreBase):
    """One job's journal. Open with :meth:`open`; always :meth:`close` (or use ``with``)."""

    def __init__(self, path: Path, conn: sqlite3.Connection, lock_fd: int, meta: dict[str, str]) -> None:
        self.path = path
        self._conn = conn
        self._lock_fd = lock_fd
        self._db_lock = threading.Lock()
        self.token: str = meta["token"]
        self.meta = meta
        self.run_id: int | None = None
        self._written = int(meta.get(INTENTS_KEY, "0") or 0)
        self.lost = lost_lines(read_runlog(path), self.token, self._written)
        self._runlog = RunLog(path)
        self._one_step = writes_in_one_step(conn)

    @property
    def plan_path(self) -> Path:
        """Where the plan is kept beside the journal."""
        return plan_path(self.path)

    lock_path = staticmethod(lock_path)

    def holds(self) -> bool:
        """Whether this run may still send (a file lock held by a live process cannot be taken over)."""
        return True

    def learn_account(self, account_sid: str) -> None:
        """The account the Flow belongs to (read by the preflight): refuse another, remember it otherwise."""
        learned = with_account(self.meta, account_sid, where=str(self.path))
        if learned is not None:
            self.meta["target"] = learned
            with self._transaction() as conn:
                conn.execute("UPDATE meta SET value = ? WHERE key = 'target'", (learned,))

    def remember(self, key: str, value: str) -> None:
        """Keep a note beside the binding (the preflight's projection, say); never one of the binding's own keys."""
        self.meta[key] = value
        with self._transaction() as conn:
            conn.execute(
                "INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                (key, value),
            )

    def close(self) -> None:
        """Close the database and release the lock."""
        with self._db_lock:
            self._conn.close()
        let_go(self.path)
        self._runlog.close()
        release_lock(self._lock_fd)

    def acknowledge_lost(self) -> None:
        """The lost lines are marked possibly sent: count what the run log counts again, so it is said once."""
        if self.lost is None:
            return
        with self._transaction() as conn:
            self._written = max(self._written, self.lost.expected)
            _set_written(conn, self._written)
        self.lost = None

    @contextlib.contextmanager
    def _transaction(self, *, durable: bool = True) -> Iterator[sqlite3.Connection]:
        """One write transaction; ``durable=False`` commits without waiting for the disk (outcomes, counters).

        As PostgreSQL's outcomes (``synchronous_commit = off``): a killed process loses none of them (the WAL is
        written), a power cut only the last ones, whose intents reconciliation settles. The next durable commit, an
        intent's, syncs them with it. The sync was most of a flush's CPU (0.1 ms of 0.13, measured), 40 times a second.
        """
        with self._db_lock:
            # Set before every transaction, never put back after one: a COMMIT that failed leaves its transaction
            # open, where the level cannot change, and an intent must never inherit an outcome's.
            self._conn.execute("PRAGMA synchronous=FULL" if durable else "PRAGMA synchronous=NORMAL")
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._conn
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")

    # -- the plan and the runs ----------------------------------------------------------

    def save_plan(self, plan: pl.DataFrame, key: str = "") -> None:
        """Keep the plan beside the journal with the ``key`` it was made from (written atomically, owner-only; not
        again when it is the same)."""
        save_plan(self.plan_path, plan, self.meta, self.remember, key)

    def start_run(self, started_at: str, input_digest: str) -> int:
        """Record that a run starts (for the report); remember its id."""
        with self._transaction() as conn:
            cursor = conn.execute("INSERT INTO runs (started_at, input) VALUES (?, ?)", (started_at, input_digest))
            conn.execute(
                "INSERT INTO meta VALUES ('input', ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                (input_digest,),
            )
        self.run_id = int(cursor.lastrowid or 0)
        self.meta["input"] = input_digest
        return self.run_id

    def finish_run(self, stopped_at: str, exit_code: int) -> None:
        """Record how this run ended."""
        with self._transaction() as conn:
            conn.execute(
                "UPDATE runs SET stopped_at = ?, exit_code = ? WHERE id = ?", (stopped_at, exit_code, self.run_id)
            )

    def write_events(self, seconds: Iterable[SecondStats]) -> None:
        """Add (or add to) this run's per-second counters."""
        rows = [
            (self.run_id, s.second, s.requests, s.ok, s.rate_limited, s.retries, s.lookups, s.pacer_rate)
            for s in seconds
        ]
        if not rows or self.run_id is None:
            return
        with self._transaction(durable=False) as conn:
            conn.executemany(
                "INSERT INTO events VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT(run, second) DO UPDATE SET "
                "requests = requests + excluded.requests, ok = ok + excluded.ok, "
                "rate_limited = rate_limited + excluded.rate_limited, retries = retries + excluded.retries, "
                "lookups = lookups + excluded.lookups, pacer_rate = excluded.pacer_rate",
                rows,
            )

    # -- the journal ------------------------------------------------------------------

    def write_intents(self, intents: Iterable[Intent], *, at: str, twilio_at: str | None) -> None:
        """Record that these contacts are about to be sent (committed with fsync before any leaves)."""
        lines = list(intents)
        with self._transaction() as conn:
            _set_written(conn, self._written + len(lines))
            write_intent_lines(
                conn, lines, input_digest=self.meta.get("input"), at=at, twilio_at=twilio_at, one_step=self._one_step
            )
        self._written += len(lines)
        # After the commit: the run log may count less than the journal (a crash between), never more.
        self._runlog.record(token=self.token, run=self.run_id, intents=self._written, at=at, twilio_at=twilio_at)

    def write_outcomes(self, outcomes: Iterable[Outcome]) -> None:
        """Record a group of outcomes in one transaction (a ``pending`` outcome withdraws the intent)."""
        with self._transaction(durable=False) as conn:
            write_outcome_lines(conn, outcomes, one_step=self._one_step)

    # Read through this connection, never the columnar reader's: that driver carries a SQLite of its own, and
    # two SQLites in one process drop each other's file locks (SQLite's "how to corrupt" 2.2.1).
    def journal(self) -> pl.DataFrame:
        """Every journal line as a frame (contacts never sent are absent)."""
        with self._db_lock:
            if self._one_step:
                return journal_in_one_step(self._conn)
            return journal_frame(self._conn.execute(f"{_SELECT} ORDER BY row").fetchall())

    def result_lines(self) -> pl.DataFrame:
        """The journal's lines for the run's results table: :data:`RESULT_LINE_COLUMNS` at least, in any order."""
        with self._db_lock:
            if self._one_step:
                # Half the bytes of a whole read, and no sort: the results join these to the plan by contact.
                return journal_in_one_step(self._conn, for_results=True)
        return self.journal()

    def open_lines(self) -> pl.DataFrame:
        """The lines a run still has to act on (``intent``, ``uncertain``, ``pending``), in full."""
        with self._db_lock:
            rows = self._conn.execute(f"{_SELECT} WHERE state IN {sql_list(OPEN)} ORDER BY row").fetchall()
        return journal_frame(rows)

    def states(self) -> pl.DataFrame:
        """Every line's contact, state and the input it was written for, read in one snapshot."""
        with self._db_lock:
            usual = self.meta.get("input")
            self._conn.execute("BEGIN")
            try:
                (contacts,) = self._conn.execute(_CONTACTS).fetchone()
                unsent = self._conn.execute(_UNSENT).fetchall()
                (others,) = self._conn.execute(_OTHER_INPUTS, (usual,)).fetchone()
            finally:
                self._conn.execute("COMMIT")
        return states_from_parts(contacts, unsent, others, usual)

    def contacts_in(self, states: frozenset[RowState]) -> pl.Series:
        """Contacts whose line is in one of ``states``, without reading the lines themselves (one ``group_concat``)."""
        with self._db_lock:
            (text,) = self._conn.execute(
                f"SELECT group_concat(contact, char(10)) FROM journal WHERE state IN {sql_list(states)}"  # noqa: S608
            ).fetchone()
        return contacts_from_text(text)

    def reached_for_other_input(self, input_digest: str) -> pl.DataFrame:
        """Contacts reached by runs for another input (an earlier export): contact, params_hash."""
        with self._db_lock:
            rows = self._conn.execute(
                f"SELECT contact, params_hash FROM journal WHERE state IN {sql_list(REACHED)} "  # noqa: S608
                "AND input IS NOT ? ",
                (input_digest,),
            ).fetchall()
        return reached_frame(rows)

    def sids_since(self, since_iso: str) -> set[str]:
        """SIDs of the runs contacts' requests made, whose intent or answer is at or after ``since_iso``.

        A line waiting for, or stopped by, an active run names that run, not one its request made: left out.
        """
        with self._db_lock:
            rows = self._conn.execute(
                "SELECT sid FROM journal WHERE sid IS NOT NULL AND (completed_at >= ? OR intent_at >= ?) "  # noqa: S608 - constants
                f"AND state NOT IN {sql_list(BLOCKED)}",
                (since_iso, since_iso),
            ).fetchall()
        return {r[0] for r in rows}


class FileBinding:
    """A checkpoint file locked by this process, before its meta is bound: the binding's questions, answered."""

    def __init__(self, path: Path, lock_fd: int | None = None, upgraded: list[tuple[Any, ...]] | None = None) -> None:
        self.path = path
        self.where = str(path)
        self._lock_fd = lock_fd
        self._upgraded = upgraded
        self._conn: sqlite3.Connection | None = None

    def exists(self) -> bool:
        """Whether a checkpoint file is there."""
        return self.path.exists()

    def stored_meta(self) -> dict[str, str]:
        """The meta the file holds."""
        return read_meta(self.path)

    def reached_count(self) -> int:
        """Contacts the file records as reached or possibly reached."""
        return reached_count(self.path)

    def move_aside(self) -> None:
        """Rename the file and its sidecars to ``<name>.<UTC stamp>.old``."""
        _move_aside(self.path)

    def store_meta(self, meta: dict[str, str], *, new: bool) -> None:
        """Create or open the database, then store the meta (and the lines a format-1 checkpoint had) at once."""
        private_file(self.path)
        conn = self._conn = sqlite3.connect(
            self.path, timeout=BUSY_SECONDS, check_same_thread=False, isolation_level=None
        )
        hold(self.path)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        conn.executescript(SQLITE_DDL)
        _add_columns(conn)
        with conn:
            conn.execute("BEGIN")
            if not new:
                conn.execute("UPDATE meta SET value = ? WHERE key = 'target'", (meta["target"],))
                return
            conn.executemany("INSERT INTO meta VALUES (?, ?)", list(meta.items()))
            if self._upgraded:
                marks = ", ".join("?" * len(self._upgraded[0]))
                conn.executemany(f"INSERT INTO journal ({V1_LINE_COLUMNS}) VALUES ({marks})", self._upgraded)  # noqa: S608

    def opened(self, meta: dict[str, str]) -> Checkpoint:
        """The open checkpoint, once its meta is stored."""
        assert self._conn is not None and self._lock_fd is not None
        return Checkpoint(self.path, self._conn, self._lock_fd, meta)

    def abandon(self) -> None:
        """Close what was opened and let go of the lock."""
        if self._conn is not None:
            self._conn.close()
            let_go(self.path)
        if self._lock_fd is not None:
            os.close(self._lock_fd)


def lock_file(
    path: str | Path, fingerprint: Mapping[str, Any], *, restart: bool, recovering: str | None = None
) -> FileBinding:
    """Lock a checkpoint file for this process (``CheckpointLocked`` if another holds it), ready to be bound.

    A format-1 checkpoint is taken over here: moved aside, its lines kept for the new one. A journal missing
    or damaged while its run log counts intents is refused (but for ``recover``, rebuilding it under
    ``recovering``, the run log's token).
    """
    path = Path(path)
    fd = try_lock(Checkpoint.lock_path(path))
    if fd is None:
        raise CheckpointLocked(f"{path}: another batch-engage process is running this job; nothing was sent")
    try:
        if not restart:
            refuse_lost_journal(path, recovering)
        upgraded = None if restart or not path.exists() else take_v1_lines(path, fingerprint)
    except BaseException:
        os.close(fd)
        raise
    return FileBinding(path, fd, upgraded)


def _set_written(conn: sqlite3.Connection, written: int) -> None:
    conn.execute(
        "INSERT INTO meta VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value", (INTENTS_KEY, written)
    )


def _move_aside(path: Path) -> Path:
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    target = path.with_name(f"{path.name}.{stamp}.old")
    n = 1
    while target.exists():
        n += 1
        target = path.with_name(f"{path.name}.{stamp}-{n}.old")
    move_with_sidecars(path, target, ("-wal", "-shm", ".plan.parquet", ".runlog"))
    return target
