"""The checkpoint: a journal keyed by *contact*, bound to one job and one Twilio, locked to one process.

One interface, two backends: a file path is SQLite (:mod:`.sqlite`),
a ``postgresql://`` URL is PostgreSQL (:mod:`.postgres`, loaded only by jobs
that use it, so SQLite users never load psycopg). This module picks one by the location and
re-exports the vocabulary both share (:mod:`.model`); :mod:`.binding` binds either to its job.

A line's state is one of :class:`~batch_engage.states.RowState`. ``meta`` binds the
checkpoint to its job (the *fingerprint*) and to its *target*, and holds the *token*: a
random value made with the checkpoint (a ``--restart`` makes a new one) that, with a hash
of the contact, is the marker each request carries in its Parameters, so reconciliation
can prove a run is this job's. ``runs`` and ``events`` record each invocation and what it
did per second (for the report).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Unpack

import polars as pl

from ..errors import UsageError
from .binding import bind, check, check_meta, describe_mismatch
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
    with_account,
)
from .plan_file import stored_plan as _stored_plan
from .schema import EVENT_COLUMNS, RUN_COLUMNS, SCHEMA_VERSION
from .sqlite import Checkpoint, FileBinding, is_locked, lock_file, meta_of_file, plan_path, read_only

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
    "checkpoints_beside",
    "describe_mismatch",
    "empty_journal",
    "is_locked",
    "is_postgres",
    "later_period_bound_to",
    "open_checkpoint",
    "period_behind",
    "plan_path",
    "read_checkpoint",
    "read_only",
    "stored_plan",
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

        with checkpoint_pg.reading_binding(str(path)) as binding:
            check(binding, fingerprint, target, **options)
        return
    check(FileBinding(Path(path)), fingerprint, target, **options)


def checkpoints_beside(location: str | Path) -> list[str]:
    """The last part of every checkpoint beside ``location``: job keys in its schema, or file names in its folder."""
    if is_postgres(location):
        from . import postgres as checkpoint_pg  # noqa: PLC0415 - as above

        return [other.rsplit("#", 1)[-1] for other in checkpoint_pg.jobs_beside(str(location))]
    folder = Path(location).parent
    return [path.name for path in folder.iterdir()] if folder.is_dir() else []


def open_checkpoint(
    location: str | Path, fingerprint: Mapping[str, Any], target: Target, **options: Unpack[OpenOptions]
) -> CheckpointStore:
    """Lock the job's checkpoint, bind it to this job and target (creating it if new), and open it.

    Raises ``CheckpointLocked`` if another process holds it, and ``CheckpointMismatch`` if it
    was made for another job or target, or ``restart`` lacks ``yes`` (a restart moves the old
    one aside, never deletes it). A ``postgresql://`` location is a PostgreSQL checkpoint.
    """
    restart = options.get("restart", False)
    if is_postgres(location):
        from . import postgres as checkpoint_pg  # noqa: PLC0415 - as above

        locked: checkpoint_pg.PgBinding | FileBinding = checkpoint_pg.lock_job_checkpoint(str(location))
    else:
        recovering = (options.get("extra_meta") or {}).get("token")
        locked = lock_file(location, fingerprint, restart=restart, recovering=recovering)
    try:
        meta = bind(
            locked, fingerprint, target, options.get("extra_meta"), restart=restart, yes=options.get("yes", False)
        )
        return locked.opened(meta)
    except BaseException:
        locked.abandon()
        raise


def read_checkpoint(location: str | Path, *, brief: bool = False, columns: bool = False) -> CheckpointView:
    """:func:`read_only` for either backend: everything a checkpoint holds, safe while a run goes on.

    ``brief`` (the report page): a file checkpoint's plain ``sent`` lines may come without their SID and
    addresses; a PostgreSQL one reads them in full. ``columns``: a file checkpoint read as columns, for
    ``status`` and ``report`` alone (see :func:`read_only`).
    """
    if is_postgres(location):
        from . import postgres as checkpoint_pg  # noqa: PLC0415 - as above

        return checkpoint_pg.read_only(str(location))
    return read_only(location, brief=brief, columns=columns)


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


def stored_plan(location: str | Path, key: str) -> pl.DataFrame | None:
    """The plan a file checkpoint keeps, when it was made from ``key`` (``plan.plan_key``); else None (always for
    PostgreSQL, whose run opens its checkpoint only after planning)."""
    if is_postgres(location):
        return None
    return _stored_plan(plan_path(location), key)


def later_period_bound_to(
    location: str, digest: str, period: str, period_of: Callable[[str], str | None]
) -> str | None:
    """A period after ``period`` whose checkpoint beside ``location`` was bound to the input ``digest``, if one was.

    ``period_of`` tells a checkpoint's period by the last part of its location (None: no period's). A new period
    that comes before one already sent, with the same file, is a clock gone back (a time zone set today: the
    period is yesterday's) or ``--period`` given without that period's own list, never a new day's run; a new
    period after one sent from the same file is a recurring campaign.
    """
    if not digest:
        return None
    for tail in checkpoints_beside(location):
        other = period_of(tail)
        if other is None or other <= period:
            continue
        place = f"{location.rsplit('#', 1)[0]}#{tail}" if is_postgres(location) else str(Path(location).with_name(tail))
        if checkpoint_meta(place).get("input") == digest:
            return other
    return None


def period_behind(period: str, later: str) -> UsageError:
    """The refusal of a new ``period`` whose list is the very file the ``later`` period was sent from."""
    return UsageError(
        f"period {period} has not sent yet, and this list is the very file period {later} was sent from, a later "
        f"period: its contacts would be reached again. Did send.default_timezone change, or is --period {period}'s "
        "own list another file (give it with --input)? Nothing was sent; add --yes to send it all the same"
    )
