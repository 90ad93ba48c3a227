"""The outcomes store: what ``collect`` learnt of each run, in its own SQLite file beside the checkpoint.

``<checkpoint>.outcomes`` holds one line per contact: the run's SID, its status
(``active``, ``ended`` or ``failed``), when it ended, the fields and delivery statuses
read from it, what was asked (so a changed ``[collect]`` section fetches again) and
whether the line is *final* (nothing about it can change: never fetched again).

It is a separate file, not a table of the checkpoint, so a ``collect`` never waits on
a running ``run``'s writes and a ``run`` never waits on a ``collect``'s. A lock of its
own (``<checkpoint>.outcomes.lock``, ``fcntl.flock`` like the checkpoint's) keeps two
``collect``s of one job from overlapping; the second gets ``CheckpointLocked`` (exit 75).
Lines are committed in small groups, so a killed ``collect`` loses at most one group.
"""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..checkpoint import read_only_uri
from ..disk import private_file, release_lock, try_lock
from ..errors import CheckpointLocked, UsageError

__all__ = ["OutcomeStore", "StoredOutcome", "outcomes_path", "read_outcomes"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS outcomes (
    contact TEXT PRIMARY KEY,
    sid TEXT NOT NULL,
    run_status TEXT NOT NULL,
    ended_at TEXT,
    error_message TEXT,
    vals TEXT NOT NULL,
    asked TEXT NOT NULL,
    final INTEGER NOT NULL,
    fetched_at TEXT NOT NULL
);
"""


@dataclass(frozen=True, kw_only=True)
class StoredOutcome:
    """One contact's run as ``collect`` last saw it; ``values`` maps each field/delivery column to its value."""

    contact: str
    sid: str
    run_status: str
    ended_at: str | None = None
    error_message: str | None = None
    values: dict[str, Any] = field(default_factory=dict)
    asked: str = ""
    final: bool = False
    fetched_at: str = ""


def outcomes_path(checkpoint: str | Path) -> Path:
    """Where a checkpoint's outcomes are kept: ``<checkpoint>.outcomes``."""
    path = Path(checkpoint)
    return path.with_name(path.name + ".outcomes")


class OutcomeStore:
    """The locked outcomes file of one job. Open with :meth:`open`; always :meth:`close` (or use ``with``)."""

    def __init__(self, path: Path, conn: sqlite3.Connection, lock_fd: int) -> None:
        self.path = path
        self._conn = conn
        self._lock_fd = lock_fd

    @classmethod
    def open(cls, checkpoint: str | Path) -> OutcomeStore:
        """Lock, then open or create the outcomes beside ``checkpoint``; ``CheckpointLocked`` if another holds them."""
        path = outcomes_path(checkpoint)
        fd = try_lock(path.with_name(path.name + ".lock"))
        if fd is None:
            raise CheckpointLocked(
                f"{path}: another collect of this job is running; nothing was fetched. Try again when it ends."
            )
        try:
            private_file(path)
            conn = sqlite3.connect(path, isolation_level=None)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.executescript(_SCHEMA)
        except sqlite3.DatabaseError as exc:
            os.close(fd)
            raise UsageError(f"{path}: not a batch-engage outcomes file ({exc}); move it aside") from None
        except BaseException:
            os.close(fd)
            raise
        return cls(path, conn, fd)

    def close(self) -> None:
        """Close the file and release the lock."""
        self._conn.close()
        release_lock(self._lock_fd)

    def __enter__(self) -> OutcomeStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def load(self) -> dict[str, StoredOutcome]:
        """Every stored line, by contact."""
        return _load(self._conn)

    def save(self, outcomes: Iterable[StoredOutcome]) -> None:
        """Record a group of lines in one short transaction (a line replaces the contact's previous one)."""
        rows = [
            (
                o.contact,
                o.sid,
                o.run_status,
                o.ended_at,
                o.error_message,
                json.dumps(o.values, ensure_ascii=False),
                o.asked,
                int(o.final),
                o.fetched_at,
            )
            for o in outcomes
        ]
        if not rows:
            return
        self._conn.execute("BEGIN IMMEDIATE")
        try:
            self._conn.executemany("INSERT OR REPLACE INTO outcomes VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)
        except BaseException:
            self._conn.execute("ROLLBACK")
            raise
        self._conn.execute("COMMIT")


def _load(conn: sqlite3.Connection) -> dict[str, StoredOutcome]:
    rows = conn.execute(
        "SELECT contact, sid, run_status, ended_at, error_message, vals, asked, final, fetched_at FROM outcomes"
    ).fetchall()
    return {
        row[0]: StoredOutcome(
            contact=row[0],
            sid=row[1],
            run_status=row[2],
            ended_at=row[3],
            error_message=row[4],
            values=json.loads(row[5]),
            asked=row[6],
            final=bool(row[7]),
            fetched_at=row[8],
        )
        for row in rows
    }


def read_outcomes(checkpoint: str | Path) -> dict[str, StoredOutcome] | None:
    """The collected outcomes beside ``checkpoint``, read without the lock (None when ``collect`` never ran)."""
    path = outcomes_path(checkpoint)
    if not path.exists():
        return None
    try:
        conn = sqlite3.connect(read_only_uri(path), uri=True)
        try:
            return _load(conn)
        finally:
            conn.close()
    except sqlite3.DatabaseError:
        return None
