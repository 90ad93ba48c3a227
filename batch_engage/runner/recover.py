"""``recover``: rebuild a file checkpoint's journal from Twilio, by marker, when the journal is lost or damaged
and its run log still stands.

The damaged files are moved aside (never deleted); a new journal is made under the run log's
token, so the markers the lost runs' requests carried are this journal's again. Every contact of
the plan is then possibly sent since the run log's first intent, and reconciliation (by marker, on
Twilio's clock) records the ones found as ``sent``; the rest stay ``pending``. Nothing is sent: the
next run sends only to contacts never reached.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import httpx
import structlog

from ..checkpoint import is_postgres, read_runlog, refuse_lost_journal, runlog_path, set_aside_damaged
from ..credentials import Credentials
from ..disk import release_lock, try_lock
from ..errors import CheckpointLocked, CheckpointMismatch, UsageError
from ..job import Spec, prove_outputs
from .job import run_job
from .launch import launch
from .values import RunOptions, RunResult

__all__ = ["Recovery", "recover_job"]

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class Recovery:
    """What ``recover`` did: the contacts it found reached, those it left pending, the files it moved aside."""

    found: int
    pending: int
    intents: int
    moved: list[Path]
    result: RunResult


def _set_aside(path: Path, token: str) -> list[Path]:
    """Move a missing or damaged journal's files aside, under the checkpoint's lock; [] if the journal stands."""
    fd = try_lock(path.with_name(path.name + ".lock"))
    if fd is None:
        raise CheckpointLocked(f"{path}: another batch-engage process is running this job; nothing was recovered")
    try:
        try:
            refuse_lost_journal(path, None)
        except CheckpointMismatch:
            return set_aside_damaged(path, datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ"))
        return []
    finally:
        release_lock(fd)


async def recover_job(
    spec: Spec, *, credentials: Credentials, options: RunOptions, transport: httpx.AsyncBaseTransport | None = None
) -> Recovery:
    """Rebuild ``spec``'s lost journal from Twilio by marker; send nothing."""
    location = spec.output.checkpoint
    if is_postgres(location):
        raise UsageError(f"{location}: a PostgreSQL checkpoint relies on PostgreSQL's durability; nothing to recover")
    path = Path(location)
    state = read_runlog(path)
    if state is None:
        raise UsageError(f"{path}: no run log ({runlog_path(path).name}) beside it; nothing to recover from")
    # Whatever can refuse the job (its outputs, its Studio's address) is asked before anything is moved aside.
    prove_outputs(spec)
    job = launch(spec, credentials, sandbox=options.sandbox)
    moved = _set_aside(path, state.token)
    if moved:
        log.warning("recover.set_aside", files=[str(p) for p in moved])
    settle = RunOptions(
        limit=0, sandbox=options.sandbox, clock=options.clock, sleep=options.sleep, max_duration=options.max_duration
    )
    result = await run_job(job, options=settle, transport=transport, recover=state.token)
    return Recovery(
        found=result.summary.reconciled,
        pending=result.counts.get("pending", 0),
        intents=state.intents,
        moved=moved,
        result=result,
    )
