"""A run's part in a job's ``[experiment]`` besides sending: variants kept from the checkpoint, the holdout's claims."""

from __future__ import annotations

import polars as pl
import structlog

from ..checkpoint import checkpoint_exists, read_checkpoint
from ..history import HistoryStore
from ..history import owner as history_owner
from ..job import HOLDOUT, Spec, history_identity
from ..states import RowState

__all__ = ["count_holdout", "kept_variants"]

log = structlog.get_logger(__name__)


def kept_variants(spec: Spec, *, restart: bool) -> dict[str, str]:
    """Contacts a run already sent (or may have sent) a variant, and that variant: they keep it whatever the weights.

    Read before the checkpoint is opened (the plan is made first); a job without an experiment,
    or starting over, keeps nothing.
    """
    if spec.experiment is None or restart or not checkpoint_exists(spec.output.checkpoint):
        return {}
    journal = read_checkpoint(spec.output.checkpoint).journal
    sent = journal.filter(pl.col("variant").is_not_null() & (pl.col("state") != RowState.PENDING.value))
    return dict(sent.select("contact", "variant").iter_rows())


def count_holdout(history: HistoryStore, spec: Spec, plan: pl.DataFrame) -> int:
    """With ``holdout_counts``, the holdout's contacts claim their place in the history, as if contacted.

    The claim is keyed by the job's history identity, contact and period, so a rerun claims nobody twice and the
    job's own claims never cap it (a contact later moved out of the holdout is sent). It is made once and
    never moved: the holdout was "contacted" when first held out, and a rerun of a finished job (a cron)
    must not push that forward and so cap them for every other job forever. It never carries a run SID:
    the history's statistics count only contacts really reached.
    """
    experiment = spec.experiment
    if experiment is None or not experiment.holdout_counts:
        return 0
    held = plan.filter(pl.col("status") == HOLDOUT).select("to", "contact")
    identity = history_identity(spec)
    # A job with periods holds a contact out again each period: each period's claim is its own (made once), or the
    # first one's time stood for all and, past the cap's window, other jobs reached people it still held out.
    period = f" {spec.job.period}" if spec.job.period is not None else ""
    for to, contact in held.iter_rows():
        history.claim(to, spec.flow.sid, history_owner(identity, contact + period), None, None, refresh=False)
    if held.height:
        log.info("holdout.counted", contacts=held.height)
    return held.height
