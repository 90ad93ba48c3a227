"""The shared contact history: who was contacted (or claimed) when, by which job, under which caps.

Two stores share one interface (:class:`HistoryStore`): a SQLite file (the default, any
number of processes on one machine) and PostgreSQL (``history.path =
"postgresql://..."``, any number of machines; see ``postgres.py``).
:func:`open_history` picks one by the path's scheme.

A row is *claimed* (inside one transaction that also checks the caps) just before its
request leaves, so of two jobs racing for the same contact the first to record wins and
the other sees the contact as ``capped``. A claim becomes a contact with the run's SID
when the answer comes, and is withdrawn if nothing was sent. A claim whose answer was
lost stays: the contact may have been reached. A claim's owner is ``<job>#<item>``
(:func:`owner`); a job's own claims never cap it (:func:`job_of`).
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import polars as pl

from ..credentials import resolve_env_reference
from ..disk import private_file
from ..job import Cap
from .model import OPT_OUT_SCHEMA, HistoryStore, Reached, is_database_url, job_of, owner

__all__ = ["History", "HistoryStore", "Reached", "is_database_url", "job_of", "open_history", "owner"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS contacts (
    id INTEGER PRIMARY KEY,
    to_addr TEXT NOT NULL,
    flow_sid TEXT NOT NULL,
    sid TEXT,
    at REAL NOT NULL,
    owner TEXT
);
CREATE INDEX IF NOT EXISTS contacts_to ON contacts(to_addr, at);
CREATE UNIQUE INDEX IF NOT EXISTS contacts_owner ON contacts(owner) WHERE owner IS NOT NULL;
CREATE TABLE IF NOT EXISTS opt_outs (
    to_addr TEXT NOT NULL,
    sender TEXT NOT NULL,
    at REAL NOT NULL,
    PRIMARY KEY (to_addr, sender)
);
"""

# Seen already: the same run (to and SID), or for a contact without a SID the same Flow and time.
_RECORD = """
INSERT INTO contacts (to_addr, flow_sid, sid, at) SELECT :to, :flow, :sid, :at
WHERE NOT EXISTS (
    SELECT 1 FROM contacts WHERE to_addr = :to
    AND (sid = :sid OR (:sid IS NULL AND sid IS NULL AND flow_sid = :flow AND at = :at))
)
"""


class History:
    """The shared contact history in a SQLite file (safe for many processes at once), readable by its owner only."""

    def __init__(self, path: str | Path, *, clock: Any = time.time) -> None:
        self.path = Path(path)
        # It holds phone numbers: created 0600, like the checkpoint (SQLite gives its WAL the same mode).
        private_file(self.path)
        self._clock = clock
        self._lock = threading.Lock()
        self._conn = sqlite3.connect(self.path, timeout=30, check_same_thread=False, isolation_level=None)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA busy_timeout=30000")
        self._conn.executescript(_SCHEMA)

    def close(self) -> None:
        """Close the database."""
        with self._lock:
            self._conn.close()

    def __enter__(self) -> History:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _blocking(
        self, to: str, flow_sid: str, cap: Cap | None, flow_cap: Cap | None, job: str | None
    ) -> tuple[Reached, Cap] | None:
        # A job's own claims never cap it: within a job, dedupe decides.
        prefix = owner(job, "") if job else "\0"
        now = self._clock()
        for limit, same_flow in ((cap, False), (flow_cap, True)):
            if limit is None:
                continue
            rows = self._conn.execute(
                "SELECT at, sid, flow_sid FROM contacts WHERE to_addr = ? AND at >= ? "
                "AND (owner IS NULL OR substr(owner, 1, ?) <> ?) AND (? IS NULL OR flow_sid = ?) "
                "ORDER BY at DESC",
                (to, now - limit.seconds, len(prefix), prefix, *((flow_sid,) * 2 if same_flow else (None, None))),
            ).fetchall()
            if len(rows) >= limit.count:
                at, sid, flow = rows[0]
                return Reached(at=at, sid=sid, flow_sid=flow), limit
        return None

    def check(
        self, to: str, flow_sid: str, cap: Cap | None, flow_cap: Cap | None, *, job: str | None = None
    ) -> tuple[Reached, Cap] | None:
        """The contact that blocks ``to`` under the caps, if any (read only); ``job``'s own contacts don't count."""
        with self._lock:
            return self._blocking(to, flow_sid, cap, flow_cap, job)

    def claim(
        self, to: str, flow_sid: str, owner: str, cap: Cap | None, flow_cap: Cap | None, *, refresh: bool = True
    ) -> tuple[Reached, Cap] | None:
        """Atomically check the caps and record an intent to contact ``to``; return the blocker if capped.

        ``owner`` is :func:`owner`'s ``<job>#<item>``: the claim's identity, and its job's contacts don't cap it.
        Without ``refresh``, an owner's claim already there keeps its time.
        """
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                blocker = self._blocking(to, flow_sid, cap, flow_cap, job_of(owner))
                if blocker is None:
                    self._conn.execute(
                        "INSERT INTO contacts (to_addr, flow_sid, sid, at, owner) VALUES (?, ?, NULL, ?, ?) "
                        "ON CONFLICT(owner) WHERE owner IS NOT NULL "
                        "DO UPDATE SET at = CASE WHEN ? THEN excluded.at ELSE contacts.at END",
                        (to, flow_sid, self._clock(), owner, refresh),
                    )
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")
            return blocker

    def settle(self, owner: str, sid: str | None) -> None:
        """The claim's answer: a SID makes it a contact; None withdraws it (nothing was sent)."""
        with self._lock:
            if sid is None:
                self._conn.execute("DELETE FROM contacts WHERE owner = ? AND sid IS NULL", (owner,))
            else:
                self._conn.execute("UPDATE contacts SET sid = ? WHERE owner = ?", (sid, owner))

    def recent_addresses(self, seconds: float) -> set[str]:
        """Every address contacted (or claimed) within the last ``seconds``."""
        with self._lock:
            rows = self._conn.execute(
                "SELECT DISTINCT to_addr FROM contacts WHERE at >= ?", (self._clock() - seconds,)
            ).fetchall()
        return {r[0] for r in rows}

    def record(self, rows: Iterable[tuple[str, str, str | None, float]]) -> int:
        """Add past contacts ``(to, flow_sid, sid, at)`` not already there; return how many were added.

        A contact is known by its run's SID (without one, by its Flow and time), so importing one
        results table twice counts nobody twice.
        """
        batch = [dict(zip(("to", "flow", "sid", "at"), row, strict=True)) for row in rows]
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            before = self._conn.total_changes
            self._conn.executemany(_RECORD, batch)
            added = self._conn.total_changes - before
            self._conn.execute("COMMIT")
        return added

    def add_opt_outs(self, rows: Iterable[tuple[str, str, float]]) -> int:
        """Record contacts who opted out ``(to, sender, at)`` (the latest date kept); return how many."""
        batch = list(rows)
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            self._conn.executemany(
                "INSERT INTO opt_outs (to_addr, sender, at) VALUES (?, ?, ?) "
                "ON CONFLICT(to_addr, sender) DO UPDATE SET at = max(at, excluded.at)",
                batch,
            )
            self._conn.execute("COMMIT")
        return len(batch)

    def opt_outs(self) -> pl.DataFrame:
        """Every recorded opt-out: ``to``, ``sender``, ``at`` (seconds since the epoch), oldest first."""
        with self._lock:
            rows = self._conn.execute("SELECT to_addr, sender, at FROM opt_outs ORDER BY at, to_addr").fetchall()
        return pl.DataFrame(rows, schema=OPT_OUT_SCHEMA, orient="row")

    def forget(self, to: str) -> int:
        """Remove every opt-out of ``to``; return how many were removed."""
        with self._lock:
            return self._conn.execute("DELETE FROM opt_outs WHERE to_addr = ?", (to,)).rowcount

    def stats(self) -> pl.DataFrame:
        """Contacts reached per flow per day."""
        with self._lock:
            rows = self._conn.execute(
                "SELECT flow_sid, date(at, 'unixepoch') AS day, COUNT(DISTINCT to_addr) FROM contacts "
                "WHERE sid IS NOT NULL GROUP BY flow_sid, day ORDER BY day, flow_sid"
            ).fetchall()
        return pl.DataFrame(rows, schema={"flow_sid": pl.String, "day": pl.String, "contacts": pl.Int64}, orient="row")


def open_history(path: str | Path, *, clock: Any = time.time) -> HistoryStore:
    """The history at ``path``: PostgreSQL for ``postgresql://...`` (or ``env:NAME`` naming one), else a SQLite file."""
    if is_database_url(path):
        from .postgres import PgHistory  # noqa: PLC0415 - psycopg is loaded only by jobs that use it

        return PgHistory(resolve_env_reference(str(path), "history.path"), clock=clock)
    return History(path, clock=clock)
