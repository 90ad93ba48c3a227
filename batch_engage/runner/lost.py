"""A checkpoint that lost committed lines (its run log counts more intents than its journal holds): every
contact not known final may have been reached, so each is marked possibly sent, from the first intent the
run log knows, and the run reconciles them by marker on Twilio's clock before it sends anything new."""

from __future__ import annotations

from functools import partial

import polars as pl
import structlog

from ..checkpoint import CheckpointStore
from .failures import Storage
from .item import make_marker
from .schedule import to_send, with_states

__all__ = ["mark_lost_lines"]

_GROUP = 1000
log = structlog.get_logger(__name__)


async def mark_lost_lines(cp: CheckpointStore, plan: pl.DataFrame, storage: Storage) -> str | None:
    """If ``cp`` lost lines, mark every plan contact not final or possibly sent already; say so (else None)."""
    lost = cp.lost
    if lost is None:
        return None
    note = lost.describe()
    log.warning("checkpoint.lost_lines", expected=lost.expected, found=lost.found, message=note)
    items = list(to_send(with_states(plan, cp.states()), cp.open_lines()))
    write = partial(cp.write_intents, at=lost.since, twilio_at=lost.since_twilio)
    for start in range(0, len(items), _GROUP):
        group = items[start : start + _GROUP]
        for item in group:
            item.marker = make_marker(lost.token, item.contact)
        await storage.commit("marking contacts possibly sent", write, [i.intent() for i in group])
    await storage.commit("marking contacts possibly sent", cp.acknowledge_lost)
    return note
