"""Will this campaign arrive? Segments per row, the sender's pace, and when Twilio's queue empties.

Pure: one Flow definition, the plan and the job in; a :class:`Capacity` out (the network's part,
:class:`~.routing.SenderFacts`, is passed in). Called once per Flow.

The model: runs start at the trigger rate (``[send] rate``; with ``pace = "sender"`` no faster
than the sender's throughput divided by the segments a run sends). Each sender's messages
queue at Twilio and leave at its throughput (segments/s). A sender that receives
``S`` segments in ``trigger_seconds`` drains them in ``S / throughput`` seconds, so the last
message waits about ``S / throughput - trigger_seconds`` (never less than 0). What waits longer
than the validity period fails with 30036; a queue over 10 hours' worth is full (21611, 30001).
A send window delays the start to its first opening, and the finish to no earlier than its last.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import polars as pl

from ..flow import data_keys, render
from ..job import Spec
from .paths import FlowMessages, MessageWidget, flow_messages, most_segments
from .routing import Routing, SenderFacts
from .segments import count_segments
from .sender import DEFAULT_VALIDITY, SenderLine, describe_sender, sender_of

__all__ = ["QUEUE_LIMIT_SECONDS", "Capacity", "RowSegments", "capacity", "row_segments"]

QUEUE_LIMIT_SECONDS = 36_000
"""A sender's queue holds 10 hours' worth of its segments; beyond that Twilio refuses (21611) or fails (30001)."""
WHATSAPP_63016 = (
    "the first message is free text from a WhatsApp sender: outside the 24-hour customer service window "
    "Twilio fails it with 63016 (business-initiated messages must be approved Content templates)"
)


@dataclass(frozen=True)
class RowSegments:
    """Per pending row: its first message's segments, the most one run sends, and the first message's sender."""

    first: dict[int, int]
    per_run: dict[int, int]
    sender: dict[int, str]
    messages: FlowMessages


# Characters of keys a widget keeps for the next contact with the same values; then it only renders. A widget
# that reads big values, different for everyone (a list of items), would otherwise keep a copy of each.
_SHARED_RENDERS = 8_000_000


class _WidgetCounts:
    """One widget's segments for a contact: rendered once for all contacts with the same values of the keys it reads."""

    def __init__(self, widget: MessageWidget) -> None:
        self.widget = widget
        # A Content template's text is not in the Flow; one segment is its least.
        read = frozenset() if widget.template else data_keys(widget.body)
        self.keys = None if read is None else tuple(sorted(read))
        self._known: dict[object, int] = {}
        self._room = _SHARED_RENDERS

    def count(self, parameters: str | None, data: dict[str, Any]) -> int:
        """The segments this widget sends to a contact with these Parameters (``data``, parsed)."""
        # repr keeps types apart (1, 1.0, True and "1" render differently); a missing key renders as null does.
        key = parameters if self.keys is None else repr([data.get(k) for k in self.keys])
        found = self._known.get(key)
        if found is None:
            found = 1 if self.widget.template else count_segments(render(self.widget.body, data)).segments
            size = len(key) if key is not None else 0
            if size <= self._room:
                self._room -= size
                self._known[key] = found
        return found


def row_segments(definition: dict[str, Any], plan: pl.DataFrame) -> RowSegments:
    """Render every message widget with each pending row's ``flow.data`` and count its segments.

    A widget is rendered once for all the contacts that agree on the ``flow.data`` keys it reads
    (``"Reply YES"`` once for the whole list, ``"Hi {{flow.data.first_name}}"`` once a name).
    """
    messages = flow_messages(definition)
    pending = plan.filter(pl.col("status") == "pending").select("row", "from", "parameters")
    widgets = [_WidgetCounts(w) for w in messages.widgets]
    reads_data = any(w.keys is None or w.keys for w in widgets)
    first: dict[int, int] = {}
    per_run: dict[int, int] = {}
    senders: dict[int, str] = {}
    bounds: dict[tuple[int, ...], tuple[int, int]] = {}
    sender_by_from: dict[str | None, str] = {}
    head = messages.first
    for row, run_from, parameters in pending.iter_rows():
        data = json.loads(parameters) if parameters and reads_data else {}
        counts = tuple(w.count(parameters, data if isinstance(data, dict) else {}) for w in widgets)
        known = bounds.get(counts)
        if known is None:
            named = {w.widget.name: n for w, n in zip(widgets, counts, strict=True)}
            known = bounds[counts] = (named[head.name] if head else 0, most_segments(messages, named))
        first[row], per_run[row] = known
        sender = sender_by_from.get(run_from)
        if sender is None:
            sender = sender_by_from[run_from] = (
                sender_of(head.from_, head.service, run_from or "") if head else (run_from or "")
            )
        senders[row] = sender
    return RowSegments(first=first, per_run=per_run, sender=senders, messages=messages)


@dataclass(frozen=True)
class SenderLoad:
    """One sender's share of the campaign and how long its queue gets."""

    line: SenderLine
    runs: int
    segments: int
    throughput: float
    drain_seconds: float
    queue_seconds: float


@dataclass(frozen=True)
class Capacity:
    """The projection of one Flow's campaign; ``as_dict`` is the ``capacity`` object of ``--summary-json``."""

    runs: int
    segments: int
    segments_per_run_max: int
    first_segments: dict[int, int]
    sender: str | None
    sender_kind: str | None
    sender_label: str | None
    sender_throughput: float | None
    trigger_rate: float
    trigger_seconds: float
    queue_seconds: float
    validity_period: int
    start_at: datetime
    finish_at: datetime
    reply_routing: Routing
    replies_to: str | None
    loads: tuple[SenderLoad, ...] = ()
    warnings: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        """Plain data for JSON."""
        return {
            "runs": self.runs,
            "segments": self.segments,
            "segments_per_run_max": self.segments_per_run_max,
            "first_message_segments": {str(k): v for k, v in sorted(self.first_segments.items())},
            "sender": self.sender,
            "sender_kind": self.sender_kind,
            "sender_throughput": self.sender_throughput,
            "trigger_rate": round(self.trigger_rate, 3),
            "trigger_seconds": round(self.trigger_seconds, 1),
            "queue_seconds": round(self.queue_seconds, 1),
            "validity_period": self.validity_period,
            "start_at": _iso(self.start_at),
            "finish_at": _iso(self.finish_at),
            "reply_routing": self.reply_routing,
            "replies_to": self.replies_to,
            "warnings": list(self.warnings),
        }


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _loads(rows: RowSegments, spec: Spec, facts: dict[str, SenderFacts]) -> list[SenderLoad]:
    """Each sender's runs, segments and pace (busiest first); the job's ``sender_throughput`` wins."""
    runs: Counter[str] = Counter(rows.sender.values())
    segments: Counter[str] = Counter()
    for row, sender in rows.sender.items():
        segments[sender] += rows.per_run[row]
    loads = []
    for sender, count in runs.most_common():
        line = describe_sender(sender)
        known = facts.get(sender)
        pace = spec.send.sender_throughput or (known.throughput if known and known.throughput else line.throughput)
        loads.append(SenderLoad(line, count, segments[sender], pace or 1.0, 0.0, 0.0))
    return loads


def trigger_rate(spec: Spec, loads: list[SenderLoad]) -> float:
    """The rate runs start at: ``[send] rate``; with ``pace = "sender"`` no faster than any sender drains them."""
    rate = spec.send.rate
    if spec.send.pace != "sender":
        return rate
    total = sum(load.runs for load in loads)
    for load in loads:
        if load.segments:
            # This sender gets runs/total of the triggers, each bringing segments/runs of its segments.
            rate = min(rate, load.throughput * total / load.segments)
    return rate


def capacity(
    spec: Spec,
    rows: RowSegments,
    *,
    start_at: datetime,
    last_opening: datetime | None = None,
    facts: dict[str, SenderFacts] | None = None,
    routing: Routing = "not_needed",
    replies_to: str | None = None,
) -> Capacity:
    """The projection of one Flow's campaign: trigger time, queue time, finish, and what would go wrong."""
    facts = facts or {}
    loads = _loads(rows, spec, facts)
    rate = trigger_rate(spec, loads)
    runs = len(rows.per_run)
    trigger_seconds = runs / rate if rate > 0 else 0.0
    drained = []
    for load in loads:
        drain = load.segments / load.throughput
        drained.append(
            SenderLoad(load.line, load.runs, load.segments, load.throughput, drain, max(0.0, drain - trigger_seconds))
        )
    worst = max(drained, key=lambda load: load.queue_seconds, default=None)
    validity = _validity(spec, facts, worst)
    longest = max([trigger_seconds, *(load.drain_seconds for load in drained)])
    found = Capacity(
        runs=runs,
        segments=sum(rows.per_run.values()),
        segments_per_run_max=max(rows.per_run.values(), default=0),
        first_segments=dict(sorted(Counter(rows.first.values()).items())),
        sender=worst.line.sender if worst else None,
        sender_kind=worst.line.kind if worst else None,
        sender_label=worst.line.label() if worst else None,
        sender_throughput=worst.throughput if worst else None,
        trigger_rate=rate,
        trigger_seconds=trigger_seconds,
        queue_seconds=worst.queue_seconds if worst else 0.0,
        validity_period=validity,
        start_at=start_at,
        # Rows whose send window opens later start then: the campaign ends no earlier than the last opening.
        finish_at=max(start_at + timedelta(seconds=math.ceil(longest)), last_opening or start_at),
        reply_routing=routing,
        replies_to=replies_to,
        loads=tuple(drained),
    )
    found.warnings.extend(_warnings(spec, found, rows, facts))
    return found


def _validity(spec: Spec, facts: dict[str, SenderFacts], worst: SenderLoad | None) -> int:
    if spec.send.validity_period is not None:
        return spec.send.validity_period
    known = facts.get(worst.line.sender) if worst else None
    return known.validity_period if known and known.validity_period else DEFAULT_VALIDITY


def _warnings(spec: Spec, found: Capacity, rows: RowSegments, facts: dict[str, SenderFacts]) -> list[str]:
    warnings = []
    late = [load for load in found.loads if load.queue_seconds > found.validity_period]
    if late:
        names = ", ".join(f"{load.line.sender} (about {load.queue_seconds:,.0f} s)" for load in late)
        full = any(load.queue_seconds > QUEUE_LIMIT_SECONDS for load in late)
        warnings.append(
            f"Twilio's queue would hold messages longer than the validity period ({found.validity_period:,} s) "
            f"for {names}: those would fail with 30036"
            + ("; the queue would also fill past 10 hours (21611 for a number, 30001 for a service)" if full else "")
            + '. Set [send] pace = "sender", lower [send] rate, or add senders'
        )
    head = rows.messages.first
    if head is not None and not head.template and any(s.startswith("whatsapp:") for s in rows.sender.values()):
        warnings.append(WHATSAPP_63016)
    for known in facts.values():
        warnings.extend(known.notes)
    if found.reply_routing == "url":
        warnings.append(
            f"replies to the sender go to {found.replies_to}, not to this Flow: a Send & Wait for Reply "
            "widget hears them only if that URL forwards them"
        )
    return warnings
