"""The report's charts as hand-written inline SVG, and the number formatting they share with the page.

Every coordinate goes through :func:`coord` (one decimal), so equal input gives byte-identical
SVG; each series is one ``<path>`` or ``<polyline>``, so a day of buckets stays small.
"""

from __future__ import annotations

import html
import math
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol

__all__ = [
    "BAR_COLOUR",
    "MAX_BUCKETS",
    "OTHER_COLOUR",
    "STATUS_COLOURS",
    "Second",
    "coord",
    "duration_text",
    "escape",
    "hbars",
    "percent",
    "rate_text",
    "time_chart",
]

#: The time chart never draws more bars than this (a day of minutes); longer spans use coarser buckets.
MAX_BUCKETS = 1440

# Bucket widths in seconds, finest first: the first one that fits the run within MAX_BUCKETS wins,
# except that runs of ten minutes or more are always shown per minute or coarser (per-second bars
# over an hour are noise).
_BUCKETS = (1, 60, 300, 900, 3600, 21600, 86400)
_PER_SECOND_LIMIT = 600
_BUCKET_NAMES: Mapping[int, str] = {
    1: "second",
    60: "minute",
    300: "5 minutes",
    900: "15 minutes",
    3600: "hour",
    21600: "6 hours",
    86400: "day",
}

#: One colour per status, shared by the tiles and the bars of a status.
STATUS_COLOURS: Mapping[str, str] = {
    "sent": "#2e7d32",
    "already_active": "#00838f",
    "failed": "#c62828",
    "invalid": "#ef6c00",
    "duplicate": "#795548",
    "suppressed": "#5e35b1",
    "capped": "#ad1457",
    "holdout": "#455a64",
    "uncertain": "#f9a825",
    "pending": "#607d8b",
    "waiting_active": "#4e7fa3",
}
OTHER_COLOUR = "#9e9e9e"  # a status without its own colour, and answers neither 2xx nor 429
_OK_COLOUR = STATUS_COLOURS["sent"]
_LIMITED_COLOUR = STATUS_COLOURS["failed"]
_RETRY_COLOUR = "#1565c0"
_READ_COLOUR = "#90caf9"  # reads: the preflight's Flow checks and reconciliation's lookups, not sends
_RATE_COLOUR = "#6a1b9a"
BAR_COLOUR = "#3f6fb5"  # bars that are not statuses (run status, field values)


class Second(Protocol):
    """What the time chart reads of one second of one run (the page's ``SecondStats``)."""

    @property
    def second(self) -> int:
        """Unix time (UTC) of the second."""

    @property
    def requests(self) -> int:
        """Requests sent in it."""

    @property
    def ok(self) -> int:
        """2xx answers."""

    @property
    def rate_limited(self) -> int:
        """429 answers."""

    @property
    def retries(self) -> int:
        """Requests that were retries."""

    @property
    def lookups(self) -> int:
        """Reads made in it: the preflight's Flow checks and reconciliation's lookups."""

    @property
    def pacer_rate(self) -> float:
        """The pacer's rate at the end of the second."""


@dataclass(frozen=True)
class _Bucket:
    start: int
    requests: int
    ok: int
    rate_limited: int
    retries: int
    pacer_rate: float | None
    reads: int = 0

    @property
    def other(self) -> int:
        """Creates answered neither 2xx nor 429 within the bucket (an answer may land in the next one)."""
        return max(self.requests - self.ok - self.rate_limited, 0)


def _bucket_width(span: int) -> int:
    for width in _BUCKETS:
        if width == 1 and span > _PER_SECOND_LIMIT:
            continue
        if math.ceil(span / width) <= MAX_BUCKETS:
            return width
    return _BUCKETS[-1] * math.ceil(span / (_BUCKETS[-1] * MAX_BUCKETS))


def _buckets(seconds: Sequence[Second]) -> tuple[int, list[_Bucket]]:
    ordered = sorted(seconds, key=lambda s: s.second)
    width = _bucket_width(ordered[-1].second - ordered[0].second + 1)
    origin = ordered[0].second - ordered[0].second % width
    count = (ordered[-1].second - origin) // width + 1
    sums = [[0, 0, 0, 0, 0] for _ in range(count)]
    rates: list[float | None] = [None] * count
    for s in ordered:
        i = (s.second - origin) // width
        acc = sums[i]
        acc[0] += s.requests
        acc[1] += s.ok
        acc[2] += s.rate_limited
        acc[3] += s.retries
        acc[4] += s.lookups
        rates[i] = s.pacer_rate  # sorted, so the last second of the bucket wins
    return width, [
        _Bucket(origin + i * width, r, o, lim, ret, rates[i], reads) for i, (r, o, lim, ret, reads) in enumerate(sums)
    ]


def time_chart(seconds: Sequence[Second], configured_rate: float) -> str:
    """Requests per bucket (2xx, other, 429 stacked; retries as a line) over the pacer's rate strip."""
    width, buckets = _buckets(seconds)
    unit = _BUCKET_NAMES.get(width, duration_text(width))
    w, h = 1000.0, 300.0
    left, right, top, bottom = 56.0, 16.0, 22.0, 40.0
    plot_w, plot_h = w - left - right, h - top - bottom
    peak = max(1, *(b.requests + b.reads for b in buckets), *(b.retries for b in buckets))
    scale_max, ticks = _nice_ticks(peak)
    step = plot_w / len(buckets)
    bar_w = step * 0.82 if step > 2 else step

    def y(value: float) -> float:
        return top + plot_h - value / scale_max * plot_h

    ok_d, other_d, lim_d, read_d = _stacked_paths(buckets, left, step, bar_w, y)
    # A few 429s in a bar of thousands are a sliver nobody sees; a mark above the plot cannot be missed.
    marks = "".join(
        f"M{coord(left + (i + 0.5) * step - 4)} {coord(top - 12)}h8l-4 7z"
        for i, b in enumerate(buckets)
        if b.rate_limited
    )
    retry_points = " ".join(f"{coord(left + (i + 0.5) * step)},{coord(y(b.retries))}" for i, b in enumerate(buckets))
    grid = "".join(
        f'<line x1="{coord(left)}" x2="{coord(w - right)}" y1="{coord(y(t))}" y2="{coord(y(t))}" class="grid"/>'
        f'<text x="{coord(left - 6)}" y="{coord(y(t) + 4)}" class="ytick">{_num(t)}</text>'
        for t in ticks
    )
    xlabels = "".join(
        f'<text x="{coord(left + i * step)}" y="{coord(h - bottom + 18)}" class="xtick">'
        f"{escape(_clock(buckets[i].start, width))}</text>"
        for i in _label_indices(len(buckets))
    )
    totals = _totals(buckets)
    legend = _time_legend(totals)
    chart = (
        f'<div class="scroll"><svg class="chart" id="chart-time" viewBox="0 0 {coord(w)} {coord(h)}" role="img" '
        'aria-labelledby="chart-time-title chart-time-desc">'
        f'<title id="chart-time-title">Requests per {escape(unit)}: 2xx, other answers, 429s and reads stacked; '
        "retries as a line</title>"
        f'<desc id="chart-time-desc">{totals[0]:,} requests in {len(buckets):,} buckets of one {escape(unit)}; '
        f"{totals[1]:,} answered 2xx, {totals[2]:,} answered 429, {totals[3]:,} retries; "
        f"{totals[5]:,} reads.</desc>"
        f"{grid}"
        f'<path d="{ok_d}" fill="{_OK_COLOUR}"/>'
        f'<path d="{other_d}" fill="{OTHER_COLOUR}"/>'
        f'<path d="{lim_d}" fill="{_LIMITED_COLOUR}"/>'
        f'<path class="reads" d="{read_d}" fill="{_READ_COLOUR}"/>'
        f'<path class="marks-429" d="{marks}" fill="{_LIMITED_COLOUR}"/>'
        f'<polyline points="{retry_points}" fill="none" stroke="{_RETRY_COLOUR}" stroke-width="1.5"/>'
        f'<line x1="{coord(left)}" x2="{coord(w - right)}" y1="{coord(y(0))}" y2="{coord(y(0))}" class="axis"/>'
        f"{xlabels}</svg></div>"
    )
    return f'<p class="note">Requests per {escape(unit)} (UTC).</p>\n{legend}\n{chart}\n' + _rate_chart(
        buckets, width, configured_rate
    )


def _totals(buckets: Sequence[_Bucket]) -> tuple[int, int, int, int, int, int]:
    """What each series adds up to: requests, 2xx, 429, retries, other answers (as drawn), reads."""
    return (
        sum(b.requests for b in buckets),
        sum(b.ok for b in buckets),
        sum(b.rate_limited for b in buckets),
        sum(b.retries for b in buckets),
        sum(b.other for b in buckets),
        sum(b.reads for b in buckets),
    )


def _stacked_paths(
    buckets: Sequence[_Bucket], left: float, step: float, bar_w: float, y: Callable[[float], float]
) -> tuple[str, str, str, str]:
    """The 2xx, other, 429 and read bars as four SVG path strings, stacked in that order from the axis."""
    ok_d: list[str] = []
    lim_d: list[str] = []
    other_d: list[str] = []
    read_d: list[str] = []
    for i, b in enumerate(buckets):
        x = left + i * step
        base = 0
        for d, value in ((ok_d, b.ok), (other_d, b.other), (lim_d, b.rate_limited), (read_d, b.reads)):
            if value:
                y0, y1 = y(base), y(base + value)
                d.append(f"M{coord(x)} {coord(y0)}V{coord(y1)}h{coord(bar_w)}V{coord(y0)}z")
            base += value
    return "".join(ok_d), "".join(other_d), "".join(lim_d), "".join(read_d)


def _time_legend(totals: tuple[int, int, int, int, int, int]) -> str:
    """The time chart's legend: what each drawn series adds up to (2xx, other, 429, reads, retries)."""
    _, ok, limited, retries, other, reads = totals
    return (
        f'<ul class="legend"><li style="--c:{_OK_COLOUR}">2xx <b>{ok:,}</b></li>'
        f'<li style="--c:{OTHER_COLOUR}">other answers <b>{other:,}</b></li>'
        f'<li style="--c:{_LIMITED_COLOUR}">429 rate-limited (&#9660; above each bar with any) '
        f"<b>{limited:,}</b></li>"
        f'<li style="--c:{_READ_COLOUR}" id="legend-reads">reads (Flow checks, lookups; not sends) '
        f"<b>{reads:,}</b></li>"
        f'<li class="line" style="--c:{_RETRY_COLOUR}">retries <b>{retries:,}</b></li></ul>'
    )


def _rate_chart(buckets: Sequence[_Bucket], width: int, configured_rate: float) -> str:
    """A thin strip of the pacer's rate under the sends, so a slowdown lines up with its 429s."""
    unit = _BUCKET_NAMES.get(width, duration_text(width))
    w, h = 1000.0, 110.0
    left, right, top, bottom = 56.0, 16.0, 10.0, 22.0
    plot_w, plot_h = w - left - right, h - top - bottom
    known = [b.pacer_rate for b in buckets if b.pacer_rate is not None]
    peak = max([configured_rate, *known, 1.0])
    scale_max, _ = _nice_ticks(peak)
    step = plot_w / len(buckets)

    def y(value: float) -> float:
        return top + plot_h - value / scale_max * plot_h

    # One polyline per stretch of buckets with a rate: a gap between runs stays a gap.
    lines: list[list[str]] = []
    current: list[str] = []
    for i, b in enumerate(buckets):
        if b.pacer_rate is None:
            if current:
                lines.append(current)
            current = []
            continue
        current.append(f"{coord(left + (i + 0.5) * step)},{coord(y(b.pacer_rate))}")
    if current:
        lines.append(current)
    polylines = "".join(
        f'<polyline points="{" ".join(points)}" fill="none" stroke="{_RATE_COLOUR}" stroke-width="1.5"/>'
        for points in lines
    )
    return (
        f'<ul class="legend"><li class="line" style="--c:{_RATE_COLOUR}">pacer rate (requests/s)</li>'
        '<li class="dash">configured rate</li></ul>\n'
        f'<div class="scroll"><svg class="chart" id="chart-rate" viewBox="0 0 {coord(w)} {coord(h)}" role="img" '
        'aria-labelledby="chart-rate-title">'
        f'<title id="chart-rate-title">The pacer\'s rate at the end of each {escape(unit)}, '
        f"against the configured {rate_text(configured_rate)}/s</title>"
        f'<line x1="{coord(left)}" x2="{coord(w - right)}" y1="{coord(y(configured_rate))}" '
        f'y2="{coord(y(configured_rate))}" class="target"/>'
        f'<text x="{coord(left - 6)}" y="{coord(y(configured_rate) + 4)}" class="ytick">'
        f"{rate_text(configured_rate)}</text>"
        f'<text x="{coord(left - 6)}" y="{coord(y(0) + 4)}" class="ytick">0</text>'
        f"{polylines}"
        f'<line x1="{coord(left)}" x2="{coord(w - right)}" y1="{coord(y(0))}" y2="{coord(y(0))}" class="axis"/>'
        "</svg></div>\n"
    )


def hbars(chart_id: str, title: str, items: Iterable[tuple[str, int]], colour: str) -> str:
    """Horizontal bars, one per (label, count): HTML labels and counts either side of an SVG of the bars.

    Labels and counts are HTML text so they stay readable at any width; only the bars stretch.
    """
    rows = list(items)
    if not rows:
        return f'<p class="note" id="{chart_id}-empty">Nothing recorded.</p>\n'
    row_h = 26
    peak = max(1, *(count for _, count in rows))
    total = sum(count for _, count in rows)
    height = row_h * len(rows)
    labels, counts, bars = [], [], []
    for i, (label, count) in enumerate(rows):
        share = percent(count / total if total else 0.0)
        labels.append(f'<div title="{escape(label)}">{escape(label)}</div>')
        counts.append(f"<div>{count:,}</div>")
        width = max(count / peak * 1000, 2.0 if count else 0.0)
        bars.append(
            f'<rect class="track" x="0" y="{i * row_h + 5}" width="1000" height="{row_h - 10}"/>'
            f'<rect x="0" y="{i * row_h + 5}" width="{coord(width)}" height="{row_h - 10}" fill="{colour}">'
            f"<title>{escape(label)}: {count:,} ({share})</title></rect>"
        )
    return (
        f'<div class="hbars"><div class="hb-l">{"".join(labels)}</div>'
        f'<svg id="{chart_id}" viewBox="0 0 1000 {height}" preserveAspectRatio="none" style="height:{height}px" '
        f'role="img" aria-labelledby="{chart_id}-title"><title id="{chart_id}-title">{escape(title)}</title>'
        f'{"".join(bars)}</svg><div class="hb-n">{"".join(counts)}</div></div>\n'
    )


def _nice_ticks(peak: float) -> tuple[float, list[float]]:
    """A round axis maximum at or above ``peak`` and four or five evenly spaced ticks up to it."""
    raw = peak / 4
    magnitude = 10 ** math.floor(math.log10(raw)) if raw > 0 else 1
    # Never finer than 1: the axes count requests, and "0.2 requests" is not a tick anyone wants.
    step = max(next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw), 1)
    top = step * math.ceil(peak / step)
    return top, [step * k for k in range(round(top / step) + 1)]


def _label_indices(count: int) -> list[int]:
    """Which buckets get a time label: about eight, evenly spread, always the first."""
    every = max(1, math.ceil(count / 8))
    return list(range(0, count, every))


# C0 and C1 controls but tab, line feed and carriage return: invalid in HTML, and raw bytes to whoever reads it.
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")


def escape(text: str) -> str:
    """Text made safe for HTML content and attribute values; a control character (a reply's ESC or BEL) shown as
    U+FFFD, never written raw."""
    return _CONTROL.sub("\ufffd", html.escape(text, quote=True))


def coord(value: float) -> str:
    """SVG coordinates to one decimal: stable across platforms, small, and finer than a pixel."""
    text = f"{value:.1f}"
    return text[:-2] if text.endswith(".0") else text


def _num(value: float) -> str:
    return f"{value:,.0f}" if value == int(value) else f"{value:,.1f}"


def rate_text(value: float | None) -> str:
    """A rate to two decimals, or an em dash when unknown."""
    return "—" if value is None else f"{value:.2f}"


def percent(share: float) -> str:
    """A share (0 to 1) as a percentage to one decimal."""
    return f"{share * 100:.1f}%"


def _clock(unix: int, width: int) -> str:
    when = datetime.fromtimestamp(unix, UTC)
    if width >= 86400:
        return when.strftime("%m-%d")
    return when.strftime("%H:%M:%S" if width == 1 else "%H:%M")


def duration_text(seconds: float) -> str:
    """A duration for people: seconds under a minute, else its two largest units (``4 min 05 s``, ``2 h 10 min``)."""
    if seconds < 60:
        return f"{seconds:.1f} s"
    whole = round(seconds)
    if whole < 3600:
        return f"{whole // 60} min {whole % 60:02d} s"
    if whole < 86400:
        return f"{whole // 3600} h {whole % 3600 // 60:02d} min"
    return f"{whole // 86400} d {whole % 86400 // 3600:02d} h"
