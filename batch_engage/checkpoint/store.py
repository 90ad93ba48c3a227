"""The checkpoint: a journal keyed by *contact*, bound to one job and one Twilio, locked to one process.

One interface, two backends: a file path is SQLite (:mod:`batch_engage._checkpoint_sqlite`),
a ``postgresql://`` URL is PostgreSQL (:mod:`batch_engage.checkpoint_pg`, loaded only by jobs
that use it, so SQLite users never load psycopg). This module picks one by the location and
re-exports the vocabulary both share (:mod:`batch_engage._checkpoint_model`).

A line's state is one of :class:`~batch_engage.states.RowState`. ``meta`` binds the
checkpoint to its job (the *fingerprint*) and to its *target*, and holds the *token*: a
random value made with the checkpoint (a ``--restart`` makes a new one) that, with a hash
of the contact, is the marker each request carries in its Parameters, so reconciliation
can prove a run is this job's. ``runs`` and ``events`` record each invocation and what it
did per second (for the report).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Unpack

from .binding import check_meta, describe_mismatch, with_account
from .model import (
    CheckpointStore,
    CheckpointView,
    Intent,
    OpenOptions,
    Outcome,
    RestartOptions,
    SecondStats,
    Target,
    empty_journal,
)
from .schema import EVENT_COLUMNS, RUN_COLUMNS, SCHEMA_VERSION
from .sqlite import Checkpoint, check_file_binding, is_locked, meta_of_file, plan_path, read_only

__all__ = [
    "EVENT_COLUMNS",
    "RUN_COLUMNS",
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
    "checkpoint_meta",
    "describe_mismatch",
    "empty_journal",
    "is_locked",
    "is_postgres",
    "jobs_beside",
    "open_checkpoint",
    "plan_path",
    "read_checkpoint",
    "read_only",
    "with_account",
]


def is_postgres(location: str | Path) -> bool:
    """Whether a checkpoint location is a ``postgresql://`` URL (else it is a file path)."""
    return isinstance(location, str) and location.startswith(("postgresql://", "postgres://"))


def check_binding(
    path: str | Path, fingerprint: Mapping[str, Any], target: Target, **options: Unpack[RestartOptions]
) -> None:
    """Refuse (``CheckpointMismatch``) what a run must refuse: another job, another Twilio, a restart without --yes.

    Reads only; ``validate`` calls it to give the same answer as ``run``, offline.
    A ``postgresql://`` location is checked in the database.
    """
    if is_postgres(path):
        from . import postgres as checkpoint_pg  # noqa: PLC0415 - SQLite users never load psycopg

        checkpoint_pg.check_binding(str(path), fingerprint, target, **options)
        return
    check_file_binding(Path(path), fingerprint, target, **options)


def jobs_beside(location: str) -> list[str]:
    """For a PostgreSQL location: the location of every job whose checkpoint is in the same schema."""
    from . import postgres as checkpoint_pg  # noqa: PLC0415 - as above

    return checkpoint_pg.jobs_beside(location)


def open_checkpoint(
    location: str | Path, fingerprint: Mapping[str, Any], target: Target, **options: Unpack[OpenOptions]
) -> CheckpointStore:
    """:meth:`Checkpoint.open` for a file path, ``PgCheckpoint.open`` for a ``postgresql://`` location."""
    if is_postgres(location):
        from .postgres import PgCheckpoint  # noqa: PLC0415 - as above

        return PgCheckpoint.open(str(location), fingerprint, target, **options)
    return Checkpoint.open(location, fingerprint, target, **options)


def read_checkpoint(location: str | Path) -> CheckpointView:
    """:func:`read_only` for either backend: everything a checkpoint holds, safe while a run goes on."""
    if is_postgres(location):
        from . import postgres as checkpoint_pg  # noqa: PLC0415 - as above

        return checkpoint_pg.read_only(str(location))
    return read_only(location)


def checkpoint_meta(location: str | Path) -> dict[str, str]:
    """A checkpoint's meta alone (its token among it), without reading its journal; empty when there is none."""
    if is_postgres(location):
        from . import postgres as checkpoint_pg  # noqa: PLC0415 - as above

        return checkpoint_pg.meta_of(str(location))
    return meta_of_file(Path(location))


def checkpoint_exists(location: str | Path, *, plan: bool = False) -> bool:
    """Whether the job has a checkpoint (``plan``: one with its plan saved) at this location."""
    if is_postgres(location):
        from . import postgres as checkpoint_pg  # noqa: PLC0415 - as above

        return checkpoint_pg.exists(str(location), plan=plan)
    return plan_path(location).exists() if plan else Path(location).exists()
