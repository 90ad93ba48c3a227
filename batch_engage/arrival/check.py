"""The arrival check of one Flow: count segments, read the senders' set-up, project, and decide whether to refuse.

Shared by ``validate --flow`` and the run's preflight; both call :func:`check_arrival` once per Flow.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import httpx
import polars as pl
import structlog

from ..job import Spec, window_openings
from ..twilio import MessagingClient, PacedReads, TwilioClock, api_base_url, messaging_base_url
from .projection import Capacity, RowSegments, capacity, row_segments
from .routing import SenderFacts, read_senders, worst_routing

__all__ = ["Arrival", "check_arrival", "first_opening", "log_capacity", "refusal"]

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class Arrival:
    """One Flow's arrival check: the segments per row, what Twilio said of each sender, the projection."""

    rows: RowSegments
    facts: dict[str, SenderFacts]
    capacity: Capacity


def openings(spec: Spec, plan: pl.DataFrame, now: datetime) -> tuple[datetime, datetime]:
    """When the first and the last pending row may be sent: now, or their send windows' openings."""
    pending = plan.filter(pl.col("status") == "pending")
    if pending.height == 0:
        return now, now
    waiting = window_openings(plan, plan.select("row", "status"), spec, now)
    opens = [o for o in waiting.get_column("opens").to_list() if o is not None]
    first = now if waiting.height < pending.height or not opens else min(opens)
    return first, max(opens, default=first)


def first_opening(spec: Spec, plan: pl.DataFrame, now: datetime) -> datetime:
    """When the first pending row may be sent: now, or its send window's first opening."""
    return openings(spec, plan, now)[0]


def _hosts(spec: Spec, region: str | None, edge: str | None) -> tuple[str, str]:
    """(REST API host, Messaging host): ``[flow] base_url`` serves both when set (the sandbox does)."""
    if spec.flow.base_url:
        base = spec.flow.base_url.rstrip("/")
        return base, base
    region, edge = spec.flow.region or region, spec.flow.edge or edge
    return api_base_url(region, edge), messaging_base_url(region, edge)


async def check_arrival(
    spec: Spec,
    plan: pl.DataFrame,
    definition: dict[str, Any],
    *,
    http: httpx.AsyncClient,
    reads: PacedReads,
    account_sid: str | None,
    now: datetime,
    region: str | None = None,
    edge: str | None = None,
) -> Arrival:
    """Segments per row, the senders' set-up as Twilio tells it, and the projection, for one Flow."""
    rows = row_segments(definition, plan)
    by_runs = pl.Series("sender", list(rows.sender.values()), dtype=pl.String).value_counts(sort=True)
    senders = [s for s in by_runs.get_column("sender").to_list() if s]
    facts: dict[str, SenderFacts] = {}
    if senders and account_sid:
        api, messaging = _hosts(spec, region, edge)
        client = MessagingClient(http, api_base=api, messaging_base=messaging, clock=TwilioClock(wall=lambda: now))
        facts = await read_senders(
            client,
            reads,
            account_sid=account_sid,
            flow_sid=spec.flow.sid,
            senders=senders,
            routing=rows.messages.waits_for_reply,
        )
    first, last = openings(spec, plan, now)
    routing = worst_routing(facts) if rows.messages.waits_for_reply else "not_needed"
    if routing == "not_needed" and rows.messages.waits_for_reply:
        routing = "unknown"
    worst = next((f for f in facts.values() if f.routing == routing), None)
    found = capacity(
        spec,
        rows,
        start_at=first,
        last_opening=last,
        facts=facts,
        routing=routing,
        replies_to=worst.replies_to if worst else None,
    )
    return Arrival(rows=rows, facts=facts, capacity=found)


def refusal(spec: Spec, arrival: Arrival) -> str | None:
    """Why the run must not start: replies to a Flow that waits for them go to another Flow, or nowhere."""
    if spec.flow.replies == "elsewhere":
        return None
    lost = [f for f in arrival.facts.values() if f.routing in ("other_flow", "none")]
    if not lost:
        return None
    where = "; ".join(
        f"{f.sender}: replies go to "
        + (f"the Flow {f.replies_to}" if f.routing == "other_flow" else f"nothing ({f.replies_to or 'no SMS URL'})")
        for f in lost
    )
    waits = ", ".join(w.name for w in arrival.rows.messages.widgets if w.waits)
    return (
        f"the Flow waits for replies ({waits}), but {where}. Configure the number's incoming messages with this "
        f'Flow ({spec.flow.sid}), or set [flow] replies = "elsewhere" if that is on purpose. Nothing was sent.'
    )


def log_capacity(found: Capacity) -> None:
    """The projection as one info line, each warning as its own line."""
    log.info(
        "arrival.projection",
        runs=found.runs,
        segments=found.segments,
        sender=found.sender,
        sender_kind=found.sender_label,
        sender_throughput=found.sender_throughput,
        trigger_rate=round(found.trigger_rate, 3),
        trigger_seconds=round(found.trigger_seconds, 1),
        queue_seconds=round(found.queue_seconds, 1),
        finish_at=found.as_dict()["finish_at"],
        reply_routing=found.reply_routing,
    )
    for warning in found.warnings:
        log.warning("arrival.warning", message=warning)
