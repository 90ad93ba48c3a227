"""Campaign hygiene across runs: suppression lists, and a shared contact history with frequency caps.

The history is one SQLite file that any number of jobs and processes share. A row is
*claimed* in it (inside one ``BEGIN IMMEDIATE`` transaction that also checks the caps)
just before its request leaves, so of two jobs racing for the same contact the first
to record wins and the other sees the contact as ``capped``. A claim becomes a
contact with the run's SID when the answer comes, and is withdrawn if nothing was
sent. A claim whose answer was lost stays: the contact may have been reached.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import polars as pl

from . import phone
from .source import read_table, require_columns
from .spec import Cap, InputSpec, parse_cap

__all__ = ["Cap", "History", "Reached", "apply_history", "apply_suppression", "load_suppression", "parse_cap"]

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
"""


def load_suppression(files: Iterable[str], column: str | None, default_region: str | None) -> dict[str, set[str]]:
    """Each suppression list's normalized addresses, by the list's file name."""
    lists: dict[str, set[str]] = {}
    for path in files:
        table = read_table(InputSpec(path=path), text_columns=[column] if column else [])
        frame = table.frame
        name = column or frame.columns[0]
        require_columns(path, frame, [("suppress.column", name)])
        normalized = phone.normalize(frame[name].cast(pl.String), default_region)
        good = normalized.filter(pl.col("reason").is_null())["address"]
        lists[Path(path).name] = set(good.to_list())
    return lists


def apply_suppression(plan: pl.DataFrame, lists: Mapping[str, set[str]]) -> pl.DataFrame:
    """Mark pending rows whose To is on a list ``suppressed``, naming the list."""
    for name, numbers in lists.items():
        hit = (pl.col("status") == "pending") & pl.col("to").is_in(list(numbers))
        plan = plan.with_columns(
            status=pl.when(hit).then(pl.lit("suppressed")).otherwise(pl.col("status")),
            error_message=pl.when(hit).then(pl.lit(f"on suppression list {name}")).otherwise(pl.col("error_message")),
        )
    return plan


@dataclass(frozen=True)
class Reached:
    """The earlier contact that a cap counts against."""

    at: float
    sid: str | None
    flow_sid: str

    def describe(self, cap: Cap) -> str:
        """The reason a row is capped, for ``error_message``."""
        when = datetime.fromtimestamp(self.at, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
        return f"contacted at {when} ({self.sid or 'run in progress'}) within the cap {cap.text}"


class History:
    """The shared contact history (SQLite, safe for many processes at once)."""

    def __init__(self, path: str | Path, *, clock: Any = time.time) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
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
        prefix = f"{job}#" if job else "\0"
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
        self, to: str, flow_sid: str, owner: str, cap: Cap | None, flow_cap: Cap | None
    ) -> tuple[Reached, Cap] | None:
        """Atomically check the caps and record an intent to contact ``to``; return the blocker if capped.

        ``owner`` is ``<job>#<row>``: the claim's identity, and its job's contacts don't cap it.
        """
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                blocker = self._blocking(to, flow_sid, cap, flow_cap, owner.rpartition("#")[0])
                if blocker is None:
                    self._conn.execute(
                        "INSERT INTO contacts (to_addr, flow_sid, sid, at, owner) VALUES (?, ?, NULL, ?, ?) "
                        "ON CONFLICT(owner) WHERE owner IS NOT NULL DO UPDATE SET at = excluded.at",
                        (to, flow_sid, self._clock(), owner),
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
        """Add past contacts ``(to, flow_sid, sid, at)``; return how many."""
        batch = list(rows)
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            self._conn.executemany("INSERT INTO contacts (to_addr, flow_sid, sid, at) VALUES (?, ?, ?, ?)", batch)
            self._conn.execute("COMMIT")
        return len(batch)

    def stats(self) -> pl.DataFrame:
        """Contacts reached per flow per day."""
        with self._lock:
            rows = self._conn.execute(
                "SELECT flow_sid, date(at, 'unixepoch') AS day, COUNT(DISTINCT to_addr) FROM contacts "
                "WHERE sid IS NOT NULL GROUP BY flow_sid, day ORDER BY day, flow_sid"
            ).fetchall()
        return pl.DataFrame(rows, schema={"flow_sid": pl.String, "day": pl.String, "contacts": pl.Int64}, orient="row")


def apply_history(
    plan: pl.DataFrame, history: History, flow_sid: str, cap: Cap | None, flow_cap: Cap | None, *, job: str
) -> pl.DataFrame:
    """Mark pending rows whose contact was reached within a cap ``capped``, with the earlier contact."""
    if cap is None and flow_cap is None:
        return plan
    longest = max(c.seconds for c in (cap, flow_cap) if c is not None)
    recent = history.recent_addresses(longest)
    # Only contacts the history holds need the exact (per-contact) check.
    pending = plan.filter((pl.col("status") == "pending") & pl.col("to").is_in(list(recent))).select("row", "to")
    messages: dict[int, str] = {}
    for row, to in pending.iter_rows():
        blocker = history.check(to, flow_sid, cap, flow_cap, job=job)
        if blocker is not None:
            messages[row] = blocker[0].describe(blocker[1])
    if not messages:
        return plan
    capped = pl.DataFrame(
        {"row": list(messages), "cap_message": list(messages.values())},
        schema={"row": pl.Int64, "cap_message": pl.String},
    )
    joined = plan.join(capped, on="row", how="left", maintain_order="left")
    hit = pl.col("cap_message").is_not_null()
    return joined.with_columns(
        status=pl.when(hit).then(pl.lit("capped")).otherwise(pl.col("status")),
        error_message=pl.when(hit).then(pl.col("cap_message")).otherwise(pl.col("error_message")),
    ).drop("cap_message")
