"""Where a job's learnt opt-outs live: the shared history, or (without one) a SQLite file beside the checkpoint.

Twilio has no API that lists opted-out numbers (docs/api/errors/21610): a contact who sent STOP
shows only as a message failing with 21610. ``collect`` records them here; planning reads them.
"""

from __future__ import annotations

from pathlib import Path

from ..checkpoint import is_postgres
from ..job import Spec
from .model import HistoryStore, is_database_url
from .store import open_history

__all__ = ["OPT_OUTS_SUFFIX", "open_opt_outs", "opt_outs_path"]

OPT_OUTS_SUFFIX = ".opt-outs"
"""The job's own opt-out store, without a history: ``<checkpoint>.opt-outs``."""


def opt_outs_path(spec: Spec) -> str | None:
    """The store a job's opt-outs are kept in; None when there is none (a PostgreSQL checkpoint and no history)."""
    if spec.history.path:
        return spec.history.path
    if is_postgres(spec.output.checkpoint):
        return None
    return spec.output.checkpoint + OPT_OUTS_SUFFIX


def open_opt_outs(spec: Spec, *, create: bool) -> HistoryStore | None:
    """The job's opt-out store, opened; None when it has none (or, without ``create``, none was made yet)."""
    path = opt_outs_path(spec)
    if path is None:
        return None
    if not create and not is_database_url(path) and not Path(path).exists():
        return None
    return open_history(path)
