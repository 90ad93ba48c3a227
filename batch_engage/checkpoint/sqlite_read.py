"""A SQLite checkpoint read without its lock (``report``, ``status``, the binding's questions), and its journal
read as columns: what :mod:`.sqlite` opens and writes, this module only reads."""

from __future__ import annotations

import sqlite3
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

import polars as pl

from ..disk import holds_lock
from ..errors import UsageError
from ..states import POSSIBLY_SENT, REACHED, RowState, sql_list
from .columnar import read_frame, read_only_uri
from .model import CheckpointView, check_readable, journal_frame
from .runlog import refuse_lost_journal
from .schema import ADDED_JOURNAL_COLUMNS, EVENT_COLUMNS, JOURNAL_COLUMNS, RUN_COLUMNS, journal_select

__all__ = [
    "connect_ro",
    "hold",
    "is_locked",
    "journal_columns",
    "let_go",
    "lock_path",
    "meta_of_file",
    "plan_path",
    "reached_count",
    "read_journal",
    "read_meta",
    "read_only",
]

# What the report page reads of a ``sent`` line (most of a big journal): its contact and what the page groups
# by. Not its SID, addresses, HTTP status, attempts, nor its stamps: SQLite gives the latest of those at once.
_BRIEF_SENT = ("contact", "variant", "error_message", "ended_sid")
_LATEST_LINE = "SELECT MAX(MAX(COALESCE(intent_at, '')), MAX(COALESCE(completed_at, ''))) AS latest FROM journal"

_RUNS = f"SELECT {', '.join(RUN_COLUMNS)} FROM runs ORDER BY id"  # noqa: S608 - constants
_EVENTS = f"SELECT {', '.join(EVENT_COLUMNS)} FROM events ORDER BY run, second"  # noqa: S608

# The checkpoint files this process has a connection open on (a run, in this thread or another).
_HELD: set[Path] = set()
_HELD_LOCK = threading.Lock()


def hold(path: Path) -> None:
    """This process has opened a connection on the checkpoint file at ``path`` (its reads stay Python's SQLite)."""
    with _HELD_LOCK:
        _HELD.add(path.resolve())


def let_go(path: Path) -> None:
    """That connection is closed."""
    with _HELD_LOCK:
        _HELD.discard(path.resolve())


def _held_here(path: Path) -> bool:
    with _HELD_LOCK:
        return path.resolve() in _HELD


def connect_ro(path: Path) -> sqlite3.Connection:
    """A read-only connection to the checkpoint file (it never writes, never takes the run's lock)."""
    return sqlite3.connect(read_only_uri(path), uri=True)


def journal_columns(conn: sqlite3.Connection) -> set[str]:
    """The journal's columns as the file has them (an older one lacks the added ones)."""
    return {str(row[1]) for row in conn.execute("PRAGMA table_info(journal)").fetchall()}


def read_meta(path: Path) -> dict[str, str]:
    """The meta a checkpoint file holds (``UsageError`` when it is not a checkpoint)."""
    try:
        conn = connect_ro(path)
        try:
            return dict(conn.execute("SELECT key, value FROM meta").fetchall())
        finally:
            conn.close()
    except sqlite3.DatabaseError as exc:
        # A damaged file whose run log counts intents is a lost journal: `recover`, never --restart, is the advice.
        refuse_lost_journal(path, None)
        raise UsageError(f"{path}: not a batch-engage checkpoint ({exc}); use --restart --yes") from None


def meta_of_file(path: Path) -> dict[str, str]:
    """A checkpoint file's meta alone (its token, binding); empty when there is no such file."""
    return read_meta(path) if path.exists() else {}


def reached_count(path: Path) -> int:
    """Contacts the file records as reached or possibly reached (0 without a journal)."""
    conn = connect_ro(path)
    try:
        try:
            states = sql_list(REACHED | POSSIBLY_SENT)
            (n,) = conn.execute(f"SELECT COUNT(*) FROM journal WHERE state IN {states}").fetchone()  # noqa: S608
        except sqlite3.OperationalError:
            return 0
        return int(n)
    finally:
        conn.close()


def read_journal(path: Path, where: str = "", present: set[str] | None = None) -> pl.DataFrame:
    """Journal lines (``where``: a constant SQL condition) as a frame, in row order, read as columns."""
    sql = f"SELECT {journal_select(present)} FROM journal{f' WHERE {where}' if where else ''}"  # noqa: S608
    # Sorted here, not by SQLite: polars sorts a million rows in a fraction of the time.
    return read_frame(path, sql, JOURNAL_COLUMNS).sort("row", maintain_order=True)


def _brief_journal(path: Path, present: set[str]) -> pl.DataFrame:
    """The journal with its ``sent`` lines (most of a big one) read without what the report page never shows."""
    others = read_journal(path, f"state IN {sql_list(frozenset(RowState) - {RowState.SENT})}", present)
    columns = [c if c in present or c not in ADDED_JOURNAL_COLUMNS else f"NULL AS {c}" for c in _BRIEF_SENT]
    # NOT INDEXED: through the state index SQLite would look each sent line up by its rowid, slower than
    # reading the table through when most lines are sent (a big journal's are).
    sql = f"SELECT {', '.join(columns)} FROM journal NOT INDEXED WHERE state = '{RowState.SENT.value}'"  # noqa: S608 - constants
    sent = read_frame(path, sql, {c: JOURNAL_COLUMNS[c] for c in _BRIEF_SENT})
    return pl.concat([others, sent.with_columns(state=pl.lit(RowState.SENT.value))], how="diagonal_relaxed").select(
        pl.col(name).cast(dtype) for name, dtype in JOURNAL_COLUMNS.items()
    )


def _latest_line(path: Path) -> str | None:
    """The journal's latest intent or completion stamp (each is written in one ISO form: the text maximum)."""
    latest = read_frame(path, _LATEST_LINE, {"latest": pl.String}).get_column("latest")
    return str(latest[0]) if latest.len() and latest[0] else None


def _read_plan(plan_file: Path, *, brief: bool) -> pl.DataFrame | None:
    """The plan kept beside the checkpoint (None: never saved); ``brief``: without the Parameters (the bulk)."""
    if not plan_file.exists():
        return None
    if not brief:
        return pl.read_parquet(plan_file)
    return pl.read_parquet(plan_file, columns=[c for c in pl.read_parquet_schema(plan_file) if c != "parameters"])


def plan_path(path: str | Path) -> Path:
    """Where a checkpoint keeps its plan."""
    path = Path(path)
    return path.with_name(path.name + ".plan.parquet")


def lock_path(path: Path) -> Path:
    """The lock file beside the checkpoint (never moved, so a lock outlives ``--restart``)."""
    return path.with_name(path.name + ".lock")


def is_locked(path: str | Path) -> bool:
    """Whether a run holds this checkpoint now (its lock is taken)."""
    return holds_lock(lock_path(Path(path)))


def _runs_and_events(path: Path, *, brief: bool) -> tuple[pl.DataFrame, pl.DataFrame, str | None]:
    """The runs, and their per-second events (fourteen hours of a run are 50,000 lines: columns here too); for a
    ``brief`` read, the journal's latest stamp too."""
    latest = _latest_line(path) if brief else None
    return read_frame(path, _RUNS, RUN_COLUMNS), read_frame(path, _EVENTS, EVENT_COLUMNS), latest


# Journal, runs, events, and a brief read's latest stamp of the journal.
Tables = tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame, str | None]


def _by_rows(conn: sqlite3.Connection, present: set[str]) -> Tables:
    """Journal, runs and events through Python's SQLite, row by row (a checkpoint this process holds open)."""
    journal = journal_frame(conn.execute(f"SELECT {journal_select(present)} FROM journal ORDER BY row").fetchall())  # noqa: S608
    runs = pl.DataFrame(conn.execute(_RUNS).fetchall(), schema=RUN_COLUMNS, orient="row")
    events = pl.DataFrame(conn.execute(_EVENTS).fetchall(), schema=EVENT_COLUMNS, orient="row")
    return journal, runs, events, None


def _tables(path: Path, *, brief: bool, columns: bool, beside: ThreadPoolExecutor) -> tuple[dict[str, str], Tables]:
    """The meta, and journal, runs and events: as columns (runs, events and a brief read's latest stamp in the
    ``beside`` thread) when the caller asked for ``columns`` and this process has no connection of its own open
    on the file, else (or when the columnar reader is refused) by rows.
    """
    conn = connect_ro(path)
    try:
        meta = dict(conn.execute("SELECT key, value FROM meta").fetchall())
        check_readable(path, meta)
        present = journal_columns(conn)
        if not columns or _held_here(path):
            return meta, _by_rows(conn, present)
    finally:
        conn.close()
    try:
        runs_and_events = beside.submit(_runs_and_events, path, brief=brief)
        journal = _brief_journal(path, present) if brief else read_journal(path, present=present)
        return meta, (journal, *runs_and_events.result())
    except sqlite3.OperationalError:
        # The driver's SQLite found the file busy (another SQLite of this process holds it): Python's reads it.
        conn = connect_ro(path)
        try:
            return meta, _by_rows(conn, present)
        finally:
            conn.close()


def read_only(path: str | Path, *, brief: bool = False, columns: bool = False) -> CheckpointView:
    """Everything a checkpoint holds, without its lock: safe while a run is going on.

    ``brief``: for the report page, the journal's ``sent`` lines may come without their SID, addresses, HTTP
    status, attempts and stamps (left empty; ``latest_line`` says the latest stamp), and the plan without the
    rows' Parameters. ``columns``: read through the columnar reader, which carries a SQLite of its own; only a
    command that opens nothing else on the file meanwhile (``status``, ``report``) asks for it, never a run: two
    SQLites in one process drop each other's file locks, and a run may open its checkpoint in another thread
    while it still reads.
    """
    path = Path(path)
    if not path.exists():
        raise UsageError(f"{path}: no checkpoint yet: the job has not run")
    # The journal is read here while a second thread reads the plan, the runs and the events: SQLite and
    # polars let go of the interpreter, so on two cores the smaller reads cost no time.
    with ThreadPoolExecutor(1, thread_name_prefix="batch-engage-read") as beside:
        plan = beside.submit(_read_plan, plan_path(path), brief=brief)
        try:
            meta, (journal, runs, events, latest) = _tables(path, brief=brief, columns=columns, beside=beside)
        except sqlite3.DatabaseError as exc:
            raise UsageError(f"{path}: not a batch-engage checkpoint ({exc})") from None
        newest = max(p.stat().st_mtime for p in (path, path.with_name(path.name + "-wal")) if p.exists())
        return CheckpointView(
            plan=plan.result(),
            journal=journal,
            meta=meta,
            runs=runs,
            events=events,
            live=is_locked(path),
            modified=datetime.fromtimestamp(newest, UTC),
            latest_line=latest,
        )
