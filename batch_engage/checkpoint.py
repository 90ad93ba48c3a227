"""The checkpoint: a SQLite journal keyed by *contact*, bound to one job and one Twilio, locked to one process.

One line per contact (the normalized ``To``, or To and From: the key dedupe uses), so a
re-exported list whose rows moved never maps an old outcome or SID to another person.
A line's state is one of :class:`~batch_engage.states.RowState`. Intents are committed
(with fsync) before their requests leave; outcomes are committed in groups.

``meta`` binds the checkpoint to its job (Flow, API, mapping, planning settings: the
*fingerprint*) and to its *target* (Studio base URL, the credential's identity, sandbox
or not), and holds the *token*: a random value made with the checkpoint (a ``--restart``
makes a new one) that, with a hash of the contact, is the marker each request carries
in its Parameters, so reconciliation can prove a run is this job's.

``runs`` and ``events`` record each invocation and what it did per second (for the
report). The plan (every input row, mapped and validated) is kept beside the journal
as ``<checkpoint>.plan.parquet`` so ``report`` and ``status`` need nothing else.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import secrets
import sqlite3
import threading
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import polars as pl

from ._files import private_file
from ._time import iso_ms
from .errors import CheckpointLocked, CheckpointMismatch, UsageError
from .states import OPEN, POSSIBLY_SENT, REACHED, RowState, sql_list
from .upgrade import V1_LINE_COLUMNS, take_v1_lines

__all__ = [
    "SCHEMA_VERSION",
    "Checkpoint",
    "CheckpointStore",
    "CheckpointView",
    "Intent",
    "Outcome",
    "SecondStats",
    "Target",
    "check_binding",
    "check_meta",
    "checkpoint_exists",
    "empty_journal",
    "is_postgres",
    "jobs_beside",
    "open_checkpoint",
    "read_checkpoint",
    "read_only",
]

SCHEMA_VERSION = "2"
_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS journal (
    contact TEXT PRIMARY KEY,
    row INTEGER NOT NULL,
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
    completed_at TEXT
);
CREATE INDEX IF NOT EXISTS journal_state ON journal(state);
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY,
    started_at TEXT NOT NULL,
    stopped_at TEXT,
    exit_code INTEGER,
    input TEXT
);
CREATE TABLE IF NOT EXISTS events (
    run INTEGER NOT NULL,
    second INTEGER NOT NULL,
    requests INTEGER NOT NULL,
    ok INTEGER NOT NULL,
    rate_limited INTEGER NOT NULL,
    retries INTEGER NOT NULL,
    lookups INTEGER NOT NULL,
    pacer_rate REAL NOT NULL,
    PRIMARY KEY (run, second)
);
"""

_JOURNAL_COLUMNS = {
    "contact": pl.String,
    "row": pl.Int64,
    "to_addr": pl.String,
    "from_addr": pl.String,
    "params_hash": pl.String,
    "marker": pl.String,
    "input": pl.String,
    "state": pl.String,
    "sid": pl.String,
    "http_status": pl.Int64,
    "error_code": pl.Int64,
    "error_message": pl.String,
    "attempts": pl.Int64,
    "intent_at": pl.String,
    "intent_twilio_at": pl.String,
    "completed_at": pl.String,
}
RUN_COLUMNS = {"id": pl.Int64, "started_at": pl.String, "stopped_at": pl.String, "exit_code": pl.Int64}
EVENT_COLUMNS = {
    "run": pl.Int64,
    "second": pl.Int64,
    "requests": pl.Int64,
    "ok": pl.Int64,
    "rate_limited": pl.Int64,
    "retries": pl.Int64,
    "lookups": pl.Int64,
    "pacer_rate": pl.Float64,
}
_SELECT = f"SELECT {', '.join(_JOURNAL_COLUMNS)} FROM journal"  # noqa: S608 - constant column names


@dataclass(frozen=True, kw_only=True)
class Target:
    """The Twilio a checkpoint's runs were made against: where, as whom, and whether it was the sandbox."""

    base_url: str
    identity: str | None
    sandbox: bool = False
    account: str | None = None

    def __post_init__(self) -> None:
        """An Account SID identity names its account; an API key's account is learned from the Flow."""
        if self.account is None and self.identity and self.identity.startswith("AC"):
            object.__setattr__(self, "account", self.identity)

    def describe(self) -> str:
        """The target in words, for error messages (an identity is a SID, never a secret)."""
        if self.sandbox:
            return "the sandbox"
        who = f" as {self.identity}" if self.identity else ""
        account = f" (account {self.account})" if self.account and self.account != self.identity else ""
        return f"{self.base_url}{who}{account}"

    def differs(self, other: Target) -> bool:
        """True when runs made against ``self`` cannot be found through ``other``.

        Accounts are compared, not credentials: a rotated API key, or a key instead of the
        Account SID, reaches the same runs. An account not known yet (an API key before the
        preflight has read the Flow's ``account_sid``) matches any.
        """
        if self.sandbox != other.sandbox or (not self.sandbox and self.base_url != other.base_url):
            return True
        return self.account is not None and other.account is not None and self.account != other.account


@dataclass(frozen=True)
class Intent:
    """A contact about to be sent: who, from which row, and the marker its Parameters carry."""

    contact: str
    row: int
    to: str
    from_: str
    params_hash: str
    marker: str | None


@dataclass(frozen=True)
class Outcome:
    """One contact's answer, as the journal records it."""

    contact: str
    state: RowState
    sid: str | None = None
    http_status: int | None = None
    error_code: int | None = None
    error_message: str | None = None
    attempts: int = 0
    completed_at: str | None = None


@dataclass(frozen=True, kw_only=True)
class SecondStats:
    """What one run did in one second: the run-events table's line."""

    second: int
    requests: int = 0
    ok: int = 0
    rate_limited: int = 0
    retries: int = 0
    lookups: int = 0
    pacer_rate: float = 0.0


_FINGERPRINT_NAMES = {
    "flow_sid": "the Flow SID",
    "api": "the API",
    "mapping": "the column mapping",
    "planning": "the planning settings (dedupe, max_parameters_bytes, marker_key)",
}


def describe_mismatch(stored: Mapping[str, Any], current: Mapping[str, Any]) -> str:
    """Say in words which parts of the fingerprint changed."""
    changed = [name for key, name in _FINGERPRINT_NAMES.items() if stored.get(key) != current.get(key)]
    return ", ".join(changed) or "the job"


def with_account(meta: Mapping[str, str], account_sid: str, *, where: str) -> str | None:
    """The target JSON with the account the Flow belongs to, when it was not known yet (None: nothing to store).

    Raises ``CheckpointMismatch`` when the checkpoint's runs were made in another account.
    """
    was = Target(**json.loads(meta["target"]))
    if was.account is not None and was.account != account_sid:
        raise CheckpointMismatch(
            f"{where}: this checkpoint's runs were made in account {was.account}, and these credentials "
            f"reach account {account_sid}; nothing was sent. Use another --checkpoint for that account, "
            "or --restart --yes to forget this one."
        )
    return None if was.account is not None else json.dumps(asdict(replace(was, account=account_sid)), sort_keys=True)


def _read_meta(path: Path) -> dict[str, str]:
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            return dict(conn.execute("SELECT key, value FROM meta").fetchall())
        finally:
            conn.close()
    except sqlite3.DatabaseError as exc:
        raise UsageError(f"{path}: not a batch-engage checkpoint ({exc}); use --restart --yes") from None


def _reached_count(path: Path) -> int:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        try:
            states = sql_list(REACHED | POSSIBLY_SENT)
            (n,) = conn.execute(f"SELECT COUNT(*) FROM journal WHERE state IN {states}").fetchone()  # noqa: S608
        except sqlite3.OperationalError:
            return 0
        return int(n)
    finally:
        conn.close()


def check_binding(
    path: str | Path,
    fingerprint: Mapping[str, Any],
    target: Target,
    *,
    restart: bool = False,
    yes: bool = False,
) -> None:
    """Refuse (``CheckpointMismatch``) what a run must refuse: another job, another Twilio, a restart without --yes.

    Reads only; ``validate`` calls it to give the same answer as ``run``, offline.
    A ``postgresql://`` location is checked in the database.
    """
    if _is_postgres(path):
        from . import checkpoint_pg  # noqa: PLC0415 - it imports this module; SQLite users never load psycopg

        checkpoint_pg.check_binding(str(path), fingerprint, target, restart=restart, yes=yes)
        return
    path = Path(path)
    if not path.exists():
        return
    if restart:
        n = _reached_count(path)
        if not yes:
            raise CheckpointMismatch(
                f"{path}: --restart would forget {n} contacts this job reached (or may have reached) and send "
                "to them again; nothing was sent. Add --yes to do it."
            )
        return
    check_meta(str(path), _read_meta(path), fingerprint, target)


def check_meta(path: str, meta: Mapping[str, str], fingerprint: Mapping[str, Any], target: Target) -> None:
    """Refuse a stored checkpoint's ``meta`` made by another format, job or Twilio (both backends share this)."""
    version = meta.get("version")
    if version != SCHEMA_VERSION:
        raise CheckpointMismatch(
            f"{path}: written by another version of batch-engage (checkpoint format {version or '?'}, "
            f"this one reads {SCHEMA_VERSION}); nothing was sent. Finish it with that version, "
            "or use --restart --yes to start over."
        )
    stored = json.loads(meta.get("fingerprint", "{}"))
    if stored != dict(fingerprint):
        raise CheckpointMismatch(
            f"{path}: this checkpoint was made for another job: {describe_mismatch(stored, fingerprint)} changed. "
            "Nothing was sent. Use another --checkpoint, or --restart --yes to start over (the old one is kept aside)."
        )
    was = Target(**json.loads(meta["target"])) if "target" in meta else None
    if was is not None and was.differs(target):
        raise CheckpointMismatch(
            f"{path}: this checkpoint was made against {was.describe()}, not {target.describe()}; "
            "nothing was sent. Its runs cannot be looked up there: use another --checkpoint for this target, "
            "or --restart --yes to forget it."
        )


class Checkpoint:
    """One job's journal. Open with :meth:`open`; always :meth:`close` (or use ``with``)."""

    def __init__(self, path: Path, conn: sqlite3.Connection, lock_fd: int, meta: dict[str, str]) -> None:
        self.path = path
        self._conn = conn
        self._lock_fd = lock_fd
        self._db_lock = threading.Lock()
        self.token: str = meta["token"]
        self.meta = meta
        self.run_id: int | None = None

    @property
    def plan_path(self) -> Path:
        """Where the plan is kept beside the journal."""
        return plan_path(self.path)

    @staticmethod
    def lock_path(path: Path) -> Path:
        """The lock file beside the checkpoint (never moved, so a lock outlives ``--restart``)."""
        return path.with_name(path.name + ".lock")

    @classmethod
    def open(
        cls,
        path: str | Path,
        fingerprint: Mapping[str, Any],
        target: Target,
        *,
        restart: bool = False,
        yes: bool = False,
        extra_meta: Mapping[str, str] | None = None,
    ) -> Checkpoint:
        """Lock, then open or create the checkpoint for this job and target.

        Raises ``CheckpointLocked`` if another process holds it, and ``CheckpointMismatch``
        if it was made for another job or target, or ``restart`` lacks ``yes`` (a restart
        moves the old one aside, never deletes it).
        """
        path = Path(path)
        fd = _lock(path)
        try:
            upgraded = None if restart or not path.exists() else take_v1_lines(path, fingerprint)
            check_binding(path, fingerprint, target, restart=restart, yes=yes)
            if restart and path.exists():
                _move_aside(path)
            private_file(path)
            conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")
            conn.executescript(_SCHEMA)
            with conn:
                conn.execute("BEGIN")
                meta = dict(conn.execute("SELECT key, value FROM meta").fetchall())
                if "fingerprint" not in meta:
                    meta = {
                        "version": SCHEMA_VERSION,
                        "fingerprint": json.dumps(dict(fingerprint), sort_keys=True),
                        "target": json.dumps(asdict(target), sort_keys=True),
                        "token": secrets.token_hex(8),
                        "created_at": iso_ms(datetime.now(UTC)),
                        **(extra_meta or {}),
                    }
                    conn.executemany("INSERT INTO meta VALUES (?, ?)", list(meta.items()))
                    if upgraded:
                        columns = V1_LINE_COLUMNS
                        marks = ", ".join("?" * len(upgraded[0]))
                        conn.executemany(f"INSERT INTO journal ({columns}) VALUES ({marks})", upgraded)  # noqa: S608
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
                    conn.execute("UPDATE meta SET value = ? WHERE key = 'target'", (meta["target"],))
            return cls(path, conn, fd, meta)
        except BaseException:
            os.close(fd)
            raise

    @property
    def target(self) -> Target:
        """The Twilio this checkpoint's runs were made against."""
        return Target(**json.loads(self.meta["target"]))

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

    # -- the plan and the runs ----------------------------------------------------------

    def save_plan(self, plan: pl.DataFrame) -> None:
        """Keep the plan beside the journal (written atomically, owner-only)."""
        tmp = self.plan_path.with_name(self.plan_path.name + ".tmp")
        private_file(tmp)
        plan.write_parquet(tmp, compression="zstd")
        os.replace(tmp, self.plan_path)

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
        with self._transaction() as conn:
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
        input_digest = self.meta.get("input")
        with self._transaction() as conn:
            conn.executemany(
                "INSERT INTO journal (contact, row, to_addr, from_addr, params_hash, marker, input, state, "
                "intent_at, intent_twilio_at) VALUES (?, ?, ?, ?, ?, ?, ?, 'intent', ?, ?) "
                "ON CONFLICT(contact) DO UPDATE SET state = 'intent', row = excluded.row, "
                "to_addr = excluded.to_addr, from_addr = excluded.from_addr, params_hash = excluded.params_hash, "
                "marker = excluded.marker, input = excluded.input, "
                "intent_at = COALESCE(journal.intent_at, excluded.intent_at), "
                "intent_twilio_at = COALESCE(journal.intent_twilio_at, excluded.intent_twilio_at)",
                [
                    (i.contact, i.row, i.to, i.from_, i.params_hash, i.marker, input_digest, at, twilio_at)
                    for i in intents
                ],
            )

    def write_outcomes(self, outcomes: Iterable[Outcome]) -> None:
        """Record a group of outcomes in one transaction (a ``pending`` outcome withdraws the intent)."""
        with self._transaction() as conn:
            conn.executemany(
                "UPDATE journal SET state = ?, sid = ?, http_status = ?, error_code = ?, "
                "error_message = ?, attempts = ?, completed_at = ?, "
                "intent_at = CASE WHEN ? = 'pending' THEN NULL ELSE intent_at END, "
                "intent_twilio_at = CASE WHEN ? = 'pending' THEN NULL ELSE intent_twilio_at END "
                "WHERE contact = ?",
                [
                    (
                        o.state.value,
                        o.sid,
                        o.http_status,
                        o.error_code,
                        o.error_message,
                        o.attempts,
                        o.completed_at,
                        o.state.value,
                        o.state.value,
                        o.contact,
                    )
                    for o in outcomes
                ],
            )

    def journal(self) -> pl.DataFrame:
        """Every journal line as a frame (contacts never sent are absent)."""
        with self._db_lock:
            return _frame(self._conn.execute(f"{_SELECT} ORDER BY row").fetchall())

    def open_lines(self) -> pl.DataFrame:
        """The lines a run still has to act on (``intent``, ``uncertain``, ``pending``), in full."""
        with self._db_lock:
            rows = self._conn.execute(f"{_SELECT} WHERE state IN {sql_list(OPEN)} ORDER BY row").fetchall()
        return _frame(rows)

    def contacts_in(self, states: frozenset[RowState]) -> pl.Series:
        """Contacts whose line is in one of ``states``, without reading the lines themselves.

        One ``group_concat`` string split by polars: ~0.2 s for a million contacts, where
        fetching them as Python tuples takes seconds (a resumed job's first request waits on it).
        """
        with self._db_lock:
            (text,) = self._conn.execute(
                f"SELECT group_concat(contact, char(10)) FROM journal WHERE state IN {sql_list(states)}"  # noqa: S608
            ).fetchone()
        if not text:
            return pl.Series("contact", [], dtype=pl.String)
        return pl.Series("contact", [text]).str.split("\n").explode()

    def reached_for_other_input(self, input_digest: str) -> pl.DataFrame:
        """Contacts reached by runs for another input (an earlier export): contact, params_hash."""
        with self._db_lock:
            rows = self._conn.execute(
                f"SELECT contact, params_hash FROM journal WHERE state IN {sql_list(REACHED)} "  # noqa: S608
                "AND input IS NOT ? ",
                (input_digest,),
            ).fetchall()
        return pl.DataFrame(rows, schema={"contact": pl.String, "params_hash": pl.String}, orient="row")

    def sids_since(self, since_iso: str) -> set[str]:
        """SIDs already attributed to contacts whose intent or answer is at or after ``since_iso``."""
        with self._db_lock:
            rows = self._conn.execute(
                "SELECT sid FROM journal WHERE sid IS NOT NULL AND (completed_at >= ? OR intent_at >= ?)",
                (since_iso, since_iso),
            ).fetchall()
        return {r[0] for r in rows}


def plan_path(path: str | Path) -> Path:
    """Where a checkpoint keeps its plan."""
    path = Path(path)
    return path.with_name(path.name + ".plan.parquet")


def _lock(path: Path) -> int:
    lock_path = Checkpoint.lock_path(path)
    private_file(lock_path)
    fd = os.open(lock_path, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise CheckpointLocked(f"{path}: another batch-engage process is running this job; nothing was sent") from None
    return fd


def is_locked(path: str | Path) -> bool:
    """Whether a run holds this checkpoint now (its lock is taken)."""
    lock_path = Checkpoint.lock_path(Path(path))
    if not lock_path.exists():
        return False
    fd = os.open(lock_path, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return False
    finally:
        os.close(fd)


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


def _frame(rows: list[tuple[Any, ...]]) -> pl.DataFrame:
    return pl.DataFrame(rows, schema=_JOURNAL_COLUMNS, orient="row") if rows else empty_journal()


def empty_journal() -> pl.DataFrame:
    """A journal with no lines (a job that has never sent)."""
    return pl.DataFrame(schema=_JOURNAL_COLUMNS)


@dataclass(frozen=True)
class CheckpointView:
    """A checkpoint read without its lock: plan, journal, meta, runs, events, and whether a run holds it now."""

    plan: pl.DataFrame | None
    journal: pl.DataFrame
    meta: dict[str, str]
    runs: pl.DataFrame
    events: pl.DataFrame | None
    live: bool
    modified: datetime


def read_only(path: str | Path) -> CheckpointView:
    """Everything a checkpoint holds, without its lock: safe while a run is going on."""
    path = Path(path)
    if not path.exists():
        raise UsageError(f"{path}: no checkpoint yet: the job has not run")
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            meta = dict(conn.execute("SELECT key, value FROM meta").fetchall())
            if meta.get("version") != SCHEMA_VERSION:
                raise UsageError(
                    f"{path}: written by another version of batch-engage (checkpoint format "
                    f"{meta.get('version', '?')}); read it with that version"
                )
            journal = _frame(conn.execute(f"{_SELECT} ORDER BY row").fetchall())
            runs = pl.DataFrame(
                conn.execute("SELECT id, started_at, stopped_at, exit_code FROM runs ORDER BY id").fetchall(),
                schema=RUN_COLUMNS,
                orient="row",
            )
            events = pl.DataFrame(
                conn.execute("SELECT * FROM events ORDER BY run, second").fetchall(),
                schema=EVENT_COLUMNS,
                orient="row",
            )
        finally:
            conn.close()
    except sqlite3.DatabaseError as exc:
        raise UsageError(f"{path}: not a batch-engage checkpoint ({exc})") from None
    plan_file = plan_path(path)
    newest = max(p.stat().st_mtime for p in (path, path.with_name(path.name + "-wal")) if p.exists())
    return CheckpointView(
        plan=pl.read_parquet(plan_file) if plan_file.exists() else None,
        journal=journal,
        meta=meta,
        runs=runs,
        events=events,
        live=is_locked(path),
        modified=datetime.fromtimestamp(newest, UTC),
    )


# -- one interface, two backends: a file path is SQLite, a postgresql:// URL is PostgreSQL ------------


def is_postgres(location: str | Path) -> bool:
    """Whether a checkpoint location is a ``postgresql://`` URL (else it is a file path)."""
    return isinstance(location, str) and location.startswith(("postgresql://", "postgres://"))


_is_postgres = is_postgres


def jobs_beside(location: str) -> list[str]:
    """For a PostgreSQL location: the location of every job whose checkpoint is in the same schema."""
    from . import checkpoint_pg  # noqa: PLC0415 - as above

    return checkpoint_pg.jobs_beside(location)


class CheckpointStore(Protocol):
    """What a run uses of its checkpoint, whichever backend holds it (:class:`Checkpoint` or ``PgCheckpoint``)."""

    token: str
    meta: dict[str, str]
    run_id: int | None

    def close(self) -> None:
        """Close it and release the lock."""

    def holds(self) -> bool:
        """Whether this run may still send: it still holds the job (a lease-based backend may lose it)."""
        ...

    def __enter__(self) -> CheckpointStore: ...

    def __exit__(self, *exc: object) -> None: ...

    def save_plan(self, plan: pl.DataFrame) -> None:
        """Keep the plan with the journal."""

    def start_run(self, started_at: str, input_digest: str) -> int:
        """Record that a run starts."""
        ...

    def finish_run(self, stopped_at: str, exit_code: int) -> None:
        """Record how this run ended."""

    def write_events(self, seconds: Iterable[SecondStats]) -> None:
        """Add this run's per-second counters."""

    def write_intents(self, intents: Iterable[Intent], *, at: str, twilio_at: str | None) -> None:
        """Commit intents before their requests leave."""

    def write_outcomes(self, outcomes: Iterable[Outcome]) -> None:
        """Commit a group of outcomes."""

    def journal(self) -> pl.DataFrame:
        """Every journal line."""
        ...

    def open_lines(self) -> pl.DataFrame:
        """The lines a run still has to act on."""
        ...

    @property
    def target(self) -> Target:
        """The Twilio this checkpoint's runs were made against."""
        ...

    def learn_account(self, account_sid: str) -> None:
        """Refuse another account; remember this one."""

    def contacts_in(self, states: frozenset[RowState]) -> pl.Series:
        """Contacts whose line is in one of ``states``."""
        ...

    def reached_for_other_input(self, input_digest: str) -> pl.DataFrame:
        """Contacts reached by runs for another input: contact, params_hash."""
        ...

    def sids_since(self, since_iso: str) -> set[str]:
        """SIDs attributed since a moment."""
        ...


def open_checkpoint(
    location: str | Path,
    fingerprint: Mapping[str, Any],
    target: Target,
    *,
    restart: bool = False,
    yes: bool = False,
    extra_meta: Mapping[str, str] | None = None,
) -> CheckpointStore:
    """:meth:`Checkpoint.open` for a file path, ``PgCheckpoint.open`` for a ``postgresql://`` location."""
    if _is_postgres(location):
        from .checkpoint_pg import PgCheckpoint  # noqa: PLC0415 - as above

        return PgCheckpoint.open(str(location), fingerprint, target, restart=restart, yes=yes, extra_meta=extra_meta)
    return Checkpoint.open(location, fingerprint, target, restart=restart, yes=yes, extra_meta=extra_meta)


def read_checkpoint(location: str | Path) -> CheckpointView:
    """:func:`read_only` for either backend: everything a checkpoint holds, safe while a run goes on."""
    if _is_postgres(location):
        from . import checkpoint_pg  # noqa: PLC0415 - it imports this module; SQLite users never load psycopg

        return checkpoint_pg.read_only(str(location))
    return read_only(location)


def checkpoint_exists(location: str | Path, *, plan: bool = False) -> bool:
    """Whether the job has a checkpoint (``plan``: one with its plan saved) at this location."""
    if _is_postgres(location):
        from . import checkpoint_pg  # noqa: PLC0415 - it imports this module; SQLite users never load psycopg

        return checkpoint_pg.exists(str(location), plan=plan)
    return plan_path(location).exists() if plan else Path(location).exists()
