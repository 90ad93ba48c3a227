"""What is sent when: the plan's contacts still to send, released to the dispatcher as their send windows open.

Without a window everything goes at once. With one, rows whose recipients' window is
closed are held; without ``--wait`` the run ends there (resumable), with it the run
sleeps on its clock until the next opening and sends again.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from datetime import datetime, timedelta

import polars as pl
import structlog

from ..clock import Clock, iso_ms
from ..job import SendWindow
from ..states import RowState
from .dispatch import Dispatcher
from .item import Item

__all__ = ["send_all", "to_send", "with_states"]

log = structlog.get_logger(__name__)


def with_states(plan: pl.DataFrame, lines: pl.DataFrame) -> pl.DataFrame:
    """The plan's sendable rows in input order, each with its contact's journal line's ``state`` (null: none).

    ``lines``: every journal line's ``contact`` and ``state`` (``CheckpointStore.states``), other columns kept.
    """
    return plan.filter(pl.col("status") == "pending").join(lines, on="contact", how="left", maintain_order="left")


def to_send(sendable: pl.DataFrame, open_lines: pl.DataFrame, flows: Mapping[str, str] | None = None) -> Iterator[Item]:
    """Contacts of ``sendable`` (:func:`with_states`) with no line, or a line left ``pending`` or waiting:
    never one final, possibly sent, or in a state this release does not know.

    ``open_lines``: the open lines in full (their attempts). A generator: a million rows build as they go.
    ``flows``: each variant's Flow SID, for a job with an experiment.
    """
    flows = flows or {}
    again = [RowState.PENDING.value, RowState.WAITING_ACTIVE.value]
    todo = sendable.filter(pl.col("state").is_null() | pl.col("state").is_in(again))
    todo = todo.join(open_lines.select("contact", "attempts"), on="contact", how="left", maintain_order="left")
    zones = (
        todo.get_column("zones")
        if "zones" in todo.columns
        else pl.repeat(None, todo.height, dtype=pl.String, eager=True)
    )
    # A contact left waiting_active spent its attempts meeting an earlier run: they do not count against it.
    waited = (pl.col("state") == RowState.WAITING_ACTIVE.value).fill_null(False)
    attempts = pl.col("attempts").fill_null(0)
    variants = (
        todo.get_column("variant")
        if "variant" in todo.columns
        else pl.repeat(None, todo.height, dtype=pl.String, eager=True)
    )
    columns = todo.select(
        "row",
        "contact",
        "to",
        "from",
        "parameters",
        attempts,
        pl.when(waited).then(attempts).otherwise(0).alias("waits"),
    )
    rows = zip(columns.iter_rows(), zones.to_list(), variants.to_list(), strict=True)
    for (row, contact, to, from_, params, tries, waits), zone, variant in rows:
        # Positional, in Item's order (row, contact, to, from_, parameters, marker, attempts, backoff, intent_at,
        # intent_twilio, zones): once for every row, where keywords cost a name lookup each.
        item = Item(row, contact, to, from_, params, None, tries, 0.0, None, None, zone)
        item.waits = waits
        if variant is not None:
            item.variant = variant
            item.flow = flows.get(variant)
        yield item


async def send_all(
    d: Dispatcher, source: Iterator[Item], *, window: SendWindow | None, limit: int | None, wait: bool, clock: Clock
) -> bool:
    """Send every item whose window is open, waiting for windows with ``wait``; True when rows are left waiting."""
    if window is None:
        await d.dispatch(source, limit)
        return False
    items = list(source)
    while True:
        now = clock.now()
        is_open = {z: window.is_open(z.split(","), now) for z in {i.zones for i in items if i.zones}}
        ready = [i for i in items if not i.zones or is_open[i.zones]]
        held = [i for i in items if i.zones and not is_open[i.zones]]
        await d.dispatch(iter(ready), None if limit is None else limit - d.dispatched)
        held += d.held
        d.held = []
        limit_reached = limit is not None and d.dispatched >= limit
        if not held or d.stopping() or limit_reached:
            return bool(held) and not d.stopping() and not limit_reached
        opens = _next_opening(window, held, clock.now())
        if not wait:
            log.info("window.waiting", rows=len(held), next_open=iso_ms(opens))
            return True
        log.info("window.sleep", rows=len(held), until=iso_ms(opens))
        await d.control.wait_stop(max(0.0, (opens - clock.now()).total_seconds()), clock.sleep)
        items = held


def _next_opening(window: SendWindow, items: list[Item], now: datetime) -> datetime:
    opens = [window.next_open(tuple(z.split(",")), now) for z in {i.zones for i in items if i.zones}]
    return min((o for o in opens if o is not None), default=now + timedelta(days=1))
