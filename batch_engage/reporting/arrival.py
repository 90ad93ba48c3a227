"""The report's "Will it arrive?" section: the preflight's projection next to what ``collect`` saw.

Projected: the queue time, finish, sender and warnings the run's preflight kept in the checkpoint.
Seen: the time each collected message waited in Twilio's queue (its ``date_created`` to ``date_sent``),
the messages that failed in the queue (30036, 21611, 30001), and the contacts who had opted out (21610).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .svg import duration_text, escape

__all__ = ["QUEUE_CODES", "ArrivalFigures", "arrival_figures", "arrival_section"]

QUEUE_CODES = {
    30036: "waited past the validity period",
    21611: "the number's queue was full",
    30001: "the service's queue overflowed",
}
"""The errors a message gets from Twilio's queue, and what they mean."""
OPT_OUT = 21610


@dataclass(frozen=True)
class ArrivalFigures:
    """What was projected (None: no preflight projection kept) and what the collected messages showed."""

    projected: Mapping[str, Any] | None
    waits: tuple[float, ...] = ()
    queue_failures: Mapping[int, int] = field(default_factory=dict)
    opted_out: int = 0


def arrival_figures(meta: Mapping[str, str], outcomes: Iterable[Mapping[str, Any]]) -> ArrivalFigures | None:
    """The figures from the checkpoint's kept projection and the collected outcomes' values; None if neither."""
    raw = meta.get("arrival")
    projected = json.loads(raw) if raw else None
    waits: list[float] = []
    failures: Counter[int] = Counter()
    opted = 0
    for values in outcomes:
        codes = [v for k, v in values.items() if k.endswith("_delivery_error_code") and isinstance(v, int)]
        waits.extend(v for k, v in values.items() if k.endswith("_queue_seconds") and isinstance(v, int | float))
        failures.update(c for c in codes if c in QUEUE_CODES)
        opted += OPT_OUT in codes
    if projected is None and not waits and not failures and not opted:
        return None
    return ArrivalFigures(projected, tuple(sorted(waits)), dict(failures), opted)


def _seconds(value: object) -> str:
    return duration_text(float(value)) if isinstance(value, int | float) else "—"


def arrival_section(figures: ArrivalFigures | None) -> str:
    """The section's HTML (empty without figures)."""
    if figures is None:
        return ""
    p = figures.projected or {}
    waits = figures.waits
    seen_max = _seconds(waits[-1]) if waits else "not collected"
    seen_median = _seconds(waits[len(waits) // 2]) if waits else "—"
    rows = [
        (
            "Sender",
            escape(
                f"{p.get('sender') or '—'} ({p.get('sender_kind') or '?'}, "
                f"{p.get('sender_throughput') or '?'} segments/s)"
            ),
            "",
        ),
        ("Longest wait in Twilio's queue", _seconds(p.get("queue_seconds")), seen_max),
        ("Median wait in Twilio's queue", "—", seen_median),
        ("Validity period", _seconds(p.get("validity_period")), ""),
        ("Finish", escape(str(p.get("finish_at") or "—")), ""),
        ("Replies", escape(str(p.get("reply_routing") or "—")), ""),
    ]
    rows += [
        (f"Failed in the queue: {code} ({escape(why)})", "", f"{figures.queue_failures.get(code, 0):,}")
        for code, why in QUEUE_CODES.items()
    ]
    rows.append(("Opted out (21610), now suppressed for that sender", "", f"{figures.opted_out:,}"))
    body = "".join(f"<tr><td>{name}</td><td>{projected}</td><td>{seen}</td></tr>" for name, projected, seen in rows)
    warnings = "".join(f"<li>{escape(str(w))}</li>" for w in p.get("warnings") or [])
    return (
        '<section id="arrival">\n<h2>Will it arrive? <span class="sub">projected before the run, '
        "seen by collect</span></h2>\n"
        '<table class="failures"><thead><tr><th></th><th>Projected</th><th>Seen</th></tr></thead>'
        f"<tbody>{body}</tbody></table>\n" + (f"<ul>{warnings}</ul>\n" if warnings else "") + "</section>\n"
    )
