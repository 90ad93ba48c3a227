"""The run log: a second, independent, append-only record beside a file checkpoint of how many intents it
committed, so a checkpoint that lost committed lines (a WAL cut short, a file deleted or damaged) is noticed.

Each intent group appends one line, fsynced, after its commit: the checkpoint's token (the marker
prefix), the run, and the checkpoint's running count of intents written (also kept in the journal's
``meta`` as ``intents_written``, in the same transaction as the intents). On open the journal must
hold at least what the run log says; if it holds less, every contact not known final may have been
reached, and the run reconciles them by marker before it sends anything new. A PostgreSQL
checkpoint has none: it relies on PostgreSQL's own durability.
"""

from __future__ import annotations

import json
import os
import sqlite3
from dataclasses import dataclass
from pathlib import Path

from ..errors import CheckpointMismatch
from .columnar import read_only_uri

__all__ = [
    "INTENTS_KEY",
    "LostLines",
    "RunLog",
    "RunLogState",
    "lost_lines",
    "read_runlog",
    "refuse_lost_journal",
    "refuse_without_journal",
    "runlog_path",
    "set_aside_damaged",
]

INTENTS_KEY = "intents_written"


def runlog_path(checkpoint: str | Path) -> Path:
    """Where a file checkpoint's run log lives: ``<checkpoint>.runlog``."""
    path = Path(checkpoint)
    return path.with_name(path.name + ".runlog")


@dataclass(frozen=True)
class RunLogState:
    """What the run log says of its latest token: intents written, and when its first intent was (both clocks)."""

    token: str
    intents: int
    runs: int
    first_at: str
    first_twilio_at: str | None


@dataclass(frozen=True)
class LostLines:
    """A checkpoint that holds fewer intents than its run log: what it says, what it holds, and since when."""

    expected: int
    found: int
    token: str
    since: str
    since_twilio: str | None

    def describe(self) -> str:
        """In words, for logs and the summary."""
        return (
            f"the checkpoint had lost lines (its run log counts {self.expected} intents, the journal "
            f"{self.found}): every contact not known final was treated as possibly sent and reconciled by marker"
        )


def read_runlog(checkpoint: str | Path) -> RunLogState | None:
    """The latest token's state in the run log (None: no run log, or nothing in it); a torn last line is skipped."""
    path = runlog_path(checkpoint)
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return None
    entries = []
    for line in text.splitlines():
        try:
            entry = json.loads(line)
        except json.JSONDecodeError:
            continue  # a line cut short by a crash: the one before it still stands
        if isinstance(entry, dict) and isinstance(entry.get("token"), str) and isinstance(entry.get("intents"), int):
            entries.append(entry)
    if not entries:
        return None
    token = entries[-1]["token"]
    mine = [e for e in entries if e["token"] == token]
    return RunLogState(
        token=token,
        intents=max(e["intents"] for e in mine),
        runs=len({e.get("run") for e in mine}),
        first_at=min(str(e.get("at", "")) for e in mine),
        first_twilio_at=min((str(e["twilio_at"]) for e in mine if e.get("twilio_at")), default=None),
    )


def lost_lines(state: RunLogState | None, token: str, written: int) -> LostLines | None:
    """Whether a journal of ``token`` holding ``written`` intents lost some the run log counts."""
    if state is None or state.token != token or written >= state.intents:
        return None
    return LostLines(state.intents, written, token, state.first_at, state.first_twilio_at)


def refuse_without_journal(checkpoint: str | Path, state: RunLogState, why: str) -> CheckpointMismatch:
    """The refusal of a run whose journal is gone or damaged while its run log says contacts may have been reached."""
    return CheckpointMismatch(
        f"{checkpoint}: {why}, but its run log ({runlog_path(checkpoint).name}) counts {state.intents} intents: "
        "contacts may have been reached; nothing was sent. Run `batch-engage recover JOB` to rebuild the journal "
        "from Twilio by marker, then run the job again."
    )


def refuse_lost_journal(path: Path, recovering: str | None) -> None:
    """Refuse a journal that is missing or damaged while its run log says contacts may have been reached.

    ``recovering``: the token ``recover`` rebuilds the journal under (then nothing is refused).
    """
    state = read_runlog(path)
    if state is None or state.intents == 0 or recovering == state.token:
        return
    if not path.exists():
        raise refuse_without_journal(path, state, "the checkpoint file is missing")
    try:
        conn = sqlite3.connect(read_only_uri(path), uri=True)
        try:
            token = dict(conn.execute("SELECT key, value FROM meta").fetchall()).get("token")
        finally:
            conn.close()
    except sqlite3.DatabaseError:
        raise refuse_without_journal(path, state, "the checkpoint file is damaged") from None
    if token != state.token:
        raise refuse_without_journal(path, state, "the checkpoint lost its journal (its WAL is missing or damaged)")


class RunLog:
    """The run log, opened for appending (owner-only, never through a link someone placed there)."""

    def __init__(self, checkpoint: str | Path) -> None:
        path = runlog_path(checkpoint)
        flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
        self._fd = os.open(path, flags, 0o600)

    def record(self, *, token: str, run: int | None, intents: int, at: str, twilio_at: str | None) -> None:
        """Append one group's line and fsync it (called after the group's intents committed)."""
        line = json.dumps({"token": token, "run": run, "intents": intents, "at": at, "twilio_at": twilio_at})
        os.write(self._fd, (line + "\n").encode())
        os.fsync(self._fd)

    def close(self) -> None:
        """Close the file."""
        os.close(self._fd)


def set_aside_damaged(path: Path, stamp: str) -> list[Path]:
    """Move a damaged checkpoint's files (main, WAL, shared memory: those that exist) aside, never deleting them.

    The run log and the plan stay: the journal is rebuilt beside them under the run log's token.
    """
    moved = []
    for suffix in ("", "-wal", "-shm"):
        source = path.with_name(path.name + suffix)
        if source.exists():
            target = path.with_name(f"{path.name}.{stamp}.damaged{suffix}")
            os.replace(source, target)
            moved.append(target)
    return moved
