"""Where a job's learnt opt-outs live: the shared history, or (without one) a SQLite file beside the checkpoint.

Twilio has no API that lists opted-out numbers (docs/api/errors/21610): a contact who sent STOP
shows only as a message failing with 21610. ``collect`` records them here; planning reads them.
"""

from __future__ import annotations

from pathlib import Path

from ..checkpoint import is_postgres
from ..job import Spec, periods
from .model import HistoryStore, is_database_url
from .store import open_history

__all__ = ["OPT_OUTS_SUFFIX", "open_opt_outs", "opt_outs_path"]

OPT_OUTS_SUFFIX = ".opt-outs"
REHEARSAL_SUFFIX = ".sandbox"
"""The job's own opt-out store, without a history: ``<checkpoint>.opt-outs``."""


def opt_outs_path(spec: Spec) -> str | None:
    """The store a job's opt-outs are kept in; None when there is none (a PostgreSQL checkpoint and no history).

    A job with periods (``id = "daily-{date}"``) keeps one store for all of them, named with ``every-date`` where a
    period's checkpoint has its date: each period has a checkpoint of its own, and a store beside it forgot at
    midnight everyone who had texted STOP.
    """
    if spec.history.path:
        return spec.history.path
    if is_postgres(spec.output.checkpoint):
        return None
    kind = spec.job.period_kind
    if kind is None:
        return spec.output.checkpoint + OPT_OUTS_SUFFIX
    every = f"every-{kind}"
    template = spec.output.checkpoint_template or spec.output.checkpoint
    job_id = periods.render(spec.job.template, {kind: every})
    # A rehearsal's checkpoint has its own name (its template does not say so): a simulated STOP stays out of
    # the real job's store, or a real person would never be sent.
    rehearsal = REHEARSAL_SUFFIX if spec.output.checkpoint.endswith(REHEARSAL_SUFFIX) else ""
    return periods.render(template, {"id": job_id, kind: every}) + rehearsal + OPT_OUTS_SUFFIX


def open_opt_outs(spec: Spec, *, create: bool) -> HistoryStore | None:
    """The job's opt-out store, opened; None when it has none (or, without ``create``, none was made yet)."""
    path = opt_outs_path(spec)
    if path is None:
        return None
    if not create and not is_database_url(path) and not Path(path).exists():
        return None
    if not is_database_url(path):
        # A period in a folder's name (out/{date}/job.checkpoint) puts every period's store in out/every-date/.
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    return open_history(path)
