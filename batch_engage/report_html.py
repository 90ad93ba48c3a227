"""The campaign report as one self-contained HTML page: ``render_report(ReportData) -> str``.

The caller gathers the figures (from the checkpoint) into a frozen :class:`ReportData`; this module
only lays them out. The page, top to bottom:

* header: job, Flow SID, API, first start, last stop, duration, achieved / configured / settled rate;
* status tiles: count and share of each status (``id="status-<name>"``, ``data-status``, ``data-count``);
* sends over time: requests split into 2xx, 429 and other, plus retries, per second for runs shorter
  than ten minutes and in coarser buckets beyond (never more than :data:`MAX_BUCKETS` bars), or a
  sentence saying the checkpoint predates run events;
* why rows failed: Twilio error code, message, ``more_info`` link, count, masked examples; invalid
  rows by reason;
* send windows: pending rows by the hour their window opens, relative to ``as_of``;
* outcomes: ``run_status`` counts and each collected field's top values;
* footer: checkpoint path, as-of time, tool version.

Why it looks like this:

* **Self-contained.** Inline CSS, hand-written inline SVG, no JavaScript, no fonts or images from
  anywhere: the file opens the same on a laptop with no network as in a mail attachment. The only
  URLs are the ``more_info`` anchors, which load nothing until clicked.
* **Byte-identical for equal input.** No wall clock (``as_of`` is the checkpoint's last write), no
  generated ids, every float formatted to a fixed precision, statuses in one fixed order.
* **Bounded.** A 14-hour run is 50,000 seconds; bucketing caps the chart at :data:`MAX_BUCKETS`
  bars, and each series is one SVG ``<path>``, so the page stays well under a megabyte and renders
  in milliseconds.
"""

from __future__ import annotations

import html
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from . import phone

__all__ = [
    "MAX_BUCKETS",
    "STATUS_ORDER",
    "FailureGroup",
    "FieldValues",
    "ReportData",
    "RunSpan",
    "SecondStats",
    "render_report",
]

#: Every status a row can end in, in the order the tiles show them.
STATUS_ORDER: tuple[str, ...] = (
    "sent",
    "already_active",
    "failed",
    "invalid",
    "duplicate",
    "suppressed",
    "capped",
    "uncertain",
    "pending",
)

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

_STATUS_COLOURS: Mapping[str, str] = {
    "sent": "#2e7d32",
    "already_active": "#00838f",
    "failed": "#c62828",
    "invalid": "#ef6c00",
    "duplicate": "#795548",
    "suppressed": "#5e35b1",
    "capped": "#ad1457",
    "uncertain": "#f9a825",
    "pending": "#607d8b",
}
_OTHER_COLOUR = "#9e9e9e"
_OK_COLOUR = _STATUS_COLOURS["sent"]
_LIMITED_COLOUR = _STATUS_COLOURS["failed"]
_RETRY_COLOUR = "#1565c0"
_RATE_COLOUR = "#6a1b9a"
_BAR_COLOUR = "#3f6fb5"
_MORE_INFO = "https://www.twilio.com/docs/errors/{code}"


@dataclass(frozen=True, kw_only=True)
class SecondStats:
    """One row of the run-events table: what happened in one second of one run."""

    second: int  # unix time (UTC) of the second
    requests: int
    ok: int
    rate_limited: int
    retries: int
    lookups: int
    pacer_rate: float  # the pacer's rate at the end of that second


@dataclass(frozen=True, kw_only=True)
class RunSpan:
    """One invocation of ``run``: when it started, when it stopped (None: still running or killed), its exit code."""

    started: datetime
    stopped: datetime | None
    exit_code: int | None


@dataclass(frozen=True, kw_only=True)
class FailureGroup:
    """Rows that failed for the same Twilio error, with at most three already-masked example addresses."""

    code: int | None
    message: str
    count: int
    examples: tuple[str, ...]


@dataclass(frozen=True, kw_only=True)
class FieldValues:
    """One collected outcome field's most common values, most common first."""

    name: str
    top: tuple[tuple[str, int], ...]


@dataclass(frozen=True, kw_only=True)
class ReportData:
    """Everything the report shows, gathered by the caller; the renderer adds nothing of its own."""

    job_name: str
    flow_sid: str
    api: str  # "engagements" (v1) or "executions" (v2)
    counts: Mapping[str, int]  # rows by status; missing statuses read 0, unknown ones get a tile too
    configured_rate: float
    runs: tuple[RunSpan, ...]
    seconds: tuple[SecondStats, ...] | None  # None: a checkpoint older than run events
    failures: tuple[FailureGroup, ...]
    invalid_reasons: tuple[tuple[str, int], ...]  # (reason, rows), shown in the order given
    window_openings: tuple[tuple[datetime, int], ...]  # (hour the window opens, pending rows); empty: no window
    run_status: Mapping[str, int] | None  # None: outcomes were not collected
    fields: tuple[FieldValues, ...]
    checkpoint_path: str
    as_of: datetime  # the checkpoint's last write, never the wall clock
    version: str
    title: str | None = field(default=None)  # the page title; default "<job_name> — campaign report"


def render_report(data: ReportData) -> str:
    """Render the report as one self-contained HTML page; equal input gives byte-identical output."""
    title = data.title or f"{data.job_name} — campaign report"
    parts = [
        "<!DOCTYPE html>\n",
        '<html lang="en">\n<head>\n<meta charset="utf-8">\n',
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n',
        # Belt and braces: even a future edit that slips in a URL cannot make the page fetch it.
        '<meta http-equiv="Content-Security-Policy" content="default-src \'none\'; '
        "style-src 'unsafe-inline'; img-src data:\">\n",
        f"<title>{_e(title)}</title>\n<style>{_CSS}</style>\n</head>\n<body>\n<main>\n",
        _header(data),
        _tiles(data.counts),
        _time_section(data),
        _failures_section(data),
        _windows_section(data),
        _outcomes_section(data),
        _footer(data),
        "</main>\n</body>\n</html>\n",
    ]
    return "".join(parts)


# --- sections ---------------------------------------------------------------------------------


def _header(data: ReportData) -> str:
    api = {"engagements": "Engagements (v1)", "executions": "Executions (v2)"}.get(data.api, data.api)
    runs = sorted(data.runs, key=lambda r: _utc(r.started))
    ends = _run_ends(runs, data.seconds)
    if not runs:
        finished = "never ran"
    elif runs[-1].stopped is not None:
        finished = _time(runs[-1].stopped)
    elif ends[-1] is not None:
        finished = f"{_time(ends[-1])} (last event; the run recorded no stop)"
    else:
        finished = "not finished (still running, or stopped without a trace)"
    spans = ((_utc(end) - _utc(run.started)).total_seconds() for run, end in zip(runs, ends, strict=True) if end)
    active = sum((max(span, 0.0) for span in spans), 0.0)
    duration = _duration(active) if runs else "—"
    if len(runs) > 1:
        duration += f" over {len(runs)} runs"
    started = runs[0].started if runs else None
    achieved, settled = _rates(data.seconds)
    facts = [
        ("Flow", f"<code>{_e(data.flow_sid)}</code>"),
        ("API", _e(api)),
        ("Started", _e(_time(started)) if started else "—"),
        ("Finished", _e(finished)),
        ("Duration", _e(duration)),
    ]
    rates = [
        ("achieved", achieved, "2xx answers per second in which anything was sent"),
        ("configured", data.configured_rate, "the job's send.rate"),
        ("settled", settled, "the pacer's rate at the end of the last recorded second"),
    ]
    dl = "".join(f"<div><dt>{k}</dt><dd>{v}</dd></div>" for k, v in facts)
    rate_html = "".join(
        f'<div class="rate" id="rate-{name}" title="{_e(why)}"><span class="num">{_rate(value)}</span>'
        f'<span class="unit">{"/s" if value is not None else ""}</span><span class="lbl">{name}</span></div>'
        for name, value, why in rates
    )
    return (
        '<header>\n<p class="kicker">batch-engage campaign report</p>\n'
        f"<h1>{_e(data.job_name)}</h1>\n"
        f'<div class="head-grid"><dl class="facts">{dl}</dl><div class="rates">{rate_html}</div></div>\n'
        "</header>\n"
    )


def _tiles(counts: Mapping[str, int]) -> str:
    names = [*STATUS_ORDER, *sorted(set(counts) - set(STATUS_ORDER))]
    total = sum(counts.values())
    tiles = []
    segments = []
    x = 0.0
    for name in names:
        count = counts.get(name, 0)
        share = count / total if total else 0.0
        colour = _STATUS_COLOURS.get(name, _OTHER_COLOUR)
        zero = " zero" if count == 0 else ""
        tiles.append(
            f'<div class="tile{zero}" id="status-{_e(name)}" data-status="{_e(name)}" data-count="{count}" '
            f'style="--c:{colour}"><span class="count">{count:,}</span>'
            f'<span class="name">{_e(name.replace("_", " "))}</span><span class="share">{_pct(share)}</span></div>'
        )
        if count:
            width = share * 1000
            segments.append(
                f'<rect x="{_f(x)}" y="0" width="{_f(width)}" height="14" fill="{colour}">'
                f"<title>{_e(name)}: {count:,} ({_pct(share)})</title></rect>"
            )
            x += width
    bar = (
        '<svg class="sharebar" id="chart-shares" viewBox="0 0 1000 14" preserveAspectRatio="none" role="img" '
        f'aria-labelledby="chart-shares-title"><title id="chart-shares-title">Share of each status among '
        f"{total:,} rows</title>{''.join(segments)}</svg>"
    )
    return (
        f'<section id="statuses">\n<h2>Rows <span class="sub">{total:,} in all</span></h2>\n'
        f'<div class="tiles">{"".join(tiles)}</div>\n{bar}\n</section>\n'
    )


def _time_section(data: ReportData) -> str:
    head = '<section id="over-time">\n<h2>Sends over time</h2>\n'
    if data.seconds is None:
        return (
            head + '<p class="note" id="no-run-events">No time chart: this checkpoint was written by a version of '
            "batch-engage that did not yet record run events (what was sent in each second). Runs made "
            "with this version record them.</p>\n</section>\n"
        )
    if not data.seconds:
        return head + '<p class="note" id="no-run-events">No requests were sent yet.</p>\n</section>\n'
    return head + _time_chart(data.seconds, data.configured_rate) + "</section>\n"


def _failures_section(data: ReportData) -> str:
    if not data.failures and not data.invalid_reasons:
        return ""
    out = ['<section id="failures">\n<h2>Why rows failed</h2>\n']
    if data.failures:
        rows = []
        for group in sorted(data.failures, key=lambda g: (-g.count, g.code is None, g.code or 0, g.message)):
            if group.code is None:
                code = "—"
                link = ""
            else:
                url = _MORE_INFO.format(code=group.code)
                code = f"{group.code}"
                link = f'<a href="{_e(url)}" rel="noreferrer">{_e(url)}</a>'
            examples = ", ".join(f"<code>{_e(_masked(x))}</code>" for x in group.examples[:3])
            rows.append(
                f'<tr><td class="code">{code}</td><td>{_e(group.message)}<div class="more">{link}</div></td>'
                f'<td class="n">{group.count:,}</td><td class="ex">{examples}</td></tr>'
            )
        out.append(
            '<table class="failures"><thead><tr><th>Code</th><th>Twilio said</th><th class="n">Rows</th>'
            f'<th class="ex">Examples</th></tr></thead><tbody>{"".join(rows)}</tbody></table>\n'
        )
    if data.invalid_reasons:
        out.append("<h3>Invalid rows, by reason</h3>\n")
        out.append(_hbars("chart-invalid", "Invalid rows by reason", data.invalid_reasons, _STATUS_COLOURS["invalid"]))
    out.append("</section>\n")
    return "".join(out)


def _windows_section(data: ReportData) -> str:
    if not data.window_openings:
        return ""
    items = [
        (f"{_time(when, seconds=False)} ({_relative(when, data.as_of)})", count)
        for when, count in sorted(data.window_openings, key=lambda item: _utc(item[0]))
    ]
    total = sum(count for _, count in data.window_openings)
    return (
        '<section id="windows">\n<h2>Send windows <span class="sub">'
        f"{total:,} pending rows wait for their window</span></h2>\n"
        + _hbars("chart-windows", "Pending rows by the hour their send window opens", items, _STATUS_COLOURS["pending"])
        + "</section>\n"
    )


def _outcomes_section(data: ReportData) -> str:
    if data.run_status is None and not data.fields:
        return ""
    out = ['<section id="outcomes">\n<h2>Outcomes</h2>\n']
    if data.run_status is not None:
        items = sorted(data.run_status.items(), key=lambda kv: (-kv[1], kv[0]))
        out.append("<h3>Run status</h3>\n")
        out.append(_hbars("chart-run-status", "Flow runs by status", items, _BAR_COLOUR))
    for index, values in enumerate(data.fields):
        out.append(f"<h3>{_e(values.name)}</h3>\n")
        out.append(_hbars(f"chart-field-{index}", f"Most common values of {values.name}", values.top, _BAR_COLOUR))
    out.append("</section>\n")
    return "".join(out)


def _footer(data: ReportData) -> str:
    return (
        "<footer>\n"
        f"<p>Figures from the checkpoint <code>{_e(data.checkpoint_path)}</code> as of "
        f"<time>{_e(_time(data.as_of))}</time> (its last write), rendered by batch-engage "
        f"{_e(data.version)}.</p>\n</footer>\n"
    )


# --- charts -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Bucket:
    start: int
    requests: int
    ok: int
    rate_limited: int
    retries: int
    pacer_rate: float | None


def _bucket_width(span: int) -> int:
    for width in _BUCKETS:
        if width == 1 and span > _PER_SECOND_LIMIT:
            continue
        if math.ceil(span / width) <= MAX_BUCKETS:
            return width
    return _BUCKETS[-1] * math.ceil(span / (_BUCKETS[-1] * MAX_BUCKETS))


def _buckets(seconds: Sequence[SecondStats]) -> tuple[int, list[_Bucket]]:
    ordered = sorted(seconds, key=lambda s: s.second)
    width = _bucket_width(ordered[-1].second - ordered[0].second + 1)
    origin = ordered[0].second - ordered[0].second % width
    count = (ordered[-1].second - origin) // width + 1
    sums = [[0, 0, 0, 0] for _ in range(count)]
    rates: list[float | None] = [None] * count
    for s in ordered:
        i = (s.second - origin) // width
        acc = sums[i]
        acc[0] += s.requests
        acc[1] += s.ok
        acc[2] += s.rate_limited
        acc[3] += s.retries
        rates[i] = s.pacer_rate  # sorted, so the last second of the bucket wins
    return width, [_Bucket(origin + i * width, r, o, lim, ret, rates[i]) for i, (r, o, lim, ret) in enumerate(sums)]


def _time_chart(seconds: Sequence[SecondStats], configured_rate: float) -> str:
    width, buckets = _buckets(seconds)
    unit = _BUCKET_NAMES.get(width, _duration(width))
    w, h = 1000.0, 300.0
    left, right, top, bottom = 56.0, 16.0, 22.0, 40.0
    plot_w, plot_h = w - left - right, h - top - bottom
    peak = max(1, *(b.requests for b in buckets), *(b.retries for b in buckets))
    scale_max, ticks = _nice_ticks(peak)
    step = plot_w / len(buckets)
    bar_w = step * 0.82 if step > 2 else step

    def y(value: float) -> float:
        return top + plot_h - value / scale_max * plot_h

    ok_d: list[str] = []
    lim_d: list[str] = []
    other_d: list[str] = []
    for i, b in enumerate(buckets):
        x = left + i * step
        other = max(b.requests - b.ok - b.rate_limited, 0)
        base = 0
        for d, value in ((ok_d, b.ok), (other_d, other), (lim_d, b.rate_limited)):
            if value:
                y0, y1 = y(base), y(base + value)
                d.append(f"M{_f(x)} {_f(y0)}V{_f(y1)}h{_f(bar_w)}V{_f(y0)}z")
            base += value
    # A few 429s in a bar of thousands are a sliver nobody sees; a mark above the plot cannot be missed.
    marks = "".join(
        f"M{_f(left + (i + 0.5) * step - 4)} {_f(top - 12)}h8l-4 7z" for i, b in enumerate(buckets) if b.rate_limited
    )
    retry_points = " ".join(f"{_f(left + (i + 0.5) * step)},{_f(y(b.retries))}" for i, b in enumerate(buckets))
    grid = "".join(
        f'<line x1="{_f(left)}" x2="{_f(w - right)}" y1="{_f(y(t))}" y2="{_f(y(t))}" class="grid"/>'
        f'<text x="{_f(left - 6)}" y="{_f(y(t) + 4)}" class="ytick">{_num(t)}</text>'
        for t in ticks
    )
    xlabels = "".join(
        f'<text x="{_f(left + i * step)}" y="{_f(h - bottom + 18)}" class="xtick">'
        f"{_e(_clock(buckets[i].start, width))}</text>"
        for i in _label_indices(len(buckets))
    )
    totals = (
        sum(b.requests for b in buckets),
        sum(b.ok for b in buckets),
        sum(b.rate_limited for b in buckets),
        sum(b.retries for b in buckets),
    )
    legend = (
        f'<ul class="legend"><li style="--c:{_OK_COLOUR}">2xx <b>{totals[1]:,}</b></li>'
        f'<li style="--c:{_OTHER_COLOUR}">other answers <b>{totals[0] - totals[1] - totals[2]:,}</b></li>'
        f'<li style="--c:{_LIMITED_COLOUR}">429 rate-limited (&#9660; above each bar with any) '
        f"<b>{totals[2]:,}</b></li>"
        f'<li class="line" style="--c:{_RETRY_COLOUR}">retries <b>{totals[3]:,}</b></li></ul>'
    )
    chart = (
        f'<div class="scroll"><svg class="chart" id="chart-time" viewBox="0 0 {_f(w)} {_f(h)}" role="img" '
        'aria-labelledby="chart-time-title chart-time-desc">'
        f'<title id="chart-time-title">Requests per {_e(unit)}: 2xx, other answers and 429s stacked; '
        "retries as a line</title>"
        f'<desc id="chart-time-desc">{totals[0]:,} requests in {len(buckets):,} buckets of one {_e(unit)}; '
        f"{totals[1]:,} answered 2xx, {totals[2]:,} answered 429, {totals[3]:,} retries.</desc>"
        f"{grid}"
        f'<path d="{"".join(ok_d)}" fill="{_OK_COLOUR}"/>'
        f'<path d="{"".join(other_d)}" fill="{_OTHER_COLOUR}"/>'
        f'<path d="{"".join(lim_d)}" fill="{_LIMITED_COLOUR}"/>'
        f'<path class="marks-429" d="{marks}" fill="{_LIMITED_COLOUR}"/>'
        f'<polyline points="{retry_points}" fill="none" stroke="{_RETRY_COLOUR}" stroke-width="1.5"/>'
        f'<line x1="{_f(left)}" x2="{_f(w - right)}" y1="{_f(y(0))}" y2="{_f(y(0))}" class="axis"/>'
        f"{xlabels}</svg></div>"
    )
    return f'<p class="note">Requests per {_e(unit)} (UTC).</p>\n{legend}\n{chart}\n' + _rate_chart(
        buckets, width, configured_rate
    )


def _rate_chart(buckets: Sequence[_Bucket], width: int, configured_rate: float) -> str:
    """A thin strip of the pacer's rate under the sends, so a slowdown lines up with its 429s."""
    unit = _BUCKET_NAMES.get(width, _duration(width))
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
        current.append(f"{_f(left + (i + 0.5) * step)},{_f(y(b.pacer_rate))}")
    if current:
        lines.append(current)
    polylines = "".join(
        f'<polyline points="{" ".join(points)}" fill="none" stroke="{_RATE_COLOUR}" stroke-width="1.5"/>'
        for points in lines
    )
    return (
        f'<ul class="legend"><li class="line" style="--c:{_RATE_COLOUR}">pacer rate (requests/s)</li>'
        '<li class="dash">configured rate</li></ul>\n'
        f'<div class="scroll"><svg class="chart" id="chart-rate" viewBox="0 0 {_f(w)} {_f(h)}" role="img" '
        'aria-labelledby="chart-rate-title">'
        f'<title id="chart-rate-title">The pacer\'s rate at the end of each {_e(unit)}, '
        f"against the configured {_rate(configured_rate)}/s</title>"
        f'<line x1="{_f(left)}" x2="{_f(w - right)}" y1="{_f(y(configured_rate))}" y2="{_f(y(configured_rate))}" '
        'class="target"/>'
        f'<text x="{_f(left - 6)}" y="{_f(y(configured_rate) + 4)}" class="ytick">{_rate(configured_rate)}</text>'
        f'<text x="{_f(left - 6)}" y="{_f(y(0) + 4)}" class="ytick">0</text>'
        f"{polylines}"
        f'<line x1="{_f(left)}" x2="{_f(w - right)}" y1="{_f(y(0))}" y2="{_f(y(0))}" class="axis"/></svg></div>\n'
    )


def _hbars(chart_id: str, title: str, items: Iterable[tuple[str, int]], colour: str) -> str:
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
        share = _pct(count / total if total else 0.0)
        labels.append(f'<div title="{_e(label)}">{_e(label)}</div>')
        counts.append(f"<div>{count:,}</div>")
        width = max(count / peak * 1000, 2.0 if count else 0.0)
        bars.append(
            f'<rect class="track" x="0" y="{i * row_h + 5}" width="1000" height="{row_h - 10}"/>'
            f'<rect x="0" y="{i * row_h + 5}" width="{_f(width)}" height="{row_h - 10}" fill="{colour}">'
            f"<title>{_e(label)}: {count:,} ({share})</title></rect>"
        )
    return (
        f'<div class="hbars"><div class="hb-l">{"".join(labels)}</div>'
        f'<svg id="{chart_id}" viewBox="0 0 1000 {height}" preserveAspectRatio="none" style="height:{height}px" '
        f'role="img" aria-labelledby="{chart_id}-title"><title id="{chart_id}-title">{_e(title)}</title>'
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


# --- formatting -------------------------------------------------------------------------------


def _masked(address: str) -> str:
    # Examples arrive masked; masking again here means a caller's slip can never put a whole
    # number into a file people mail around.
    return address if "***" in address else phone.mask(address)


def _e(text: str) -> str:
    return html.escape(text, quote=True)


def _f(value: float) -> str:
    """SVG coordinates to one decimal: stable across platforms, small, and finer than a pixel."""
    text = f"{value:.1f}"
    return text[:-2] if text.endswith(".0") else text


def _num(value: float) -> str:
    return f"{value:,.0f}" if value == int(value) else f"{value:,.1f}"


def _rate(value: float | None) -> str:
    return "—" if value is None else f"{value:.2f}"


def _pct(share: float) -> str:
    return f"{share * 100:.1f}%"


def _utc(when: datetime) -> datetime:
    # A naive datetime from the checkpoint is already UTC; an aware one may come from a caller's zone.
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)


def _time(when: datetime, *, seconds: bool = True) -> str:
    return _utc(when).strftime("%Y-%m-%d %H:%M:%S UTC" if seconds else "%Y-%m-%d %H:%M UTC")


def _clock(unix: int, width: int) -> str:
    when = datetime.fromtimestamp(unix, UTC)
    if width >= 86400:
        return when.strftime("%m-%d")
    return when.strftime("%H:%M:%S" if width == 1 else "%H:%M")


def _duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f} s"
    whole = round(seconds)
    if whole < 3600:
        return f"{whole // 60} min {whole % 60:02d} s"
    if whole < 86400:
        return f"{whole // 3600} h {whole % 3600 // 60:02d} min"
    return f"{whole // 86400} d {whole % 86400 // 3600:02d} h"


def _relative(when: datetime, as_of: datetime) -> str:
    delta = (_utc(when) - _utc(as_of)).total_seconds()
    if delta <= 0:
        return "open at the last write"
    return "in " + _duration(delta)


def _run_ends(runs: Sequence[RunSpan], seconds: Sequence[SecondStats] | None) -> list[datetime | None]:
    """When each run ended: its recorded stop, else the end of its last recorded second (a killed run)."""
    ends: list[datetime | None] = []
    for i, run in enumerate(runs):
        if run.stopped is not None:
            ends.append(run.stopped)
            continue
        lo = _utc(run.started).timestamp() // 1
        hi = _utc(runs[i + 1].started).timestamp() if i + 1 < len(runs) else math.inf
        last = max((s.second for s in seconds or () if lo <= s.second < hi), default=None)
        ends.append(None if last is None else datetime.fromtimestamp(last + 1, UTC))
    return ends


def _rates(seconds: Sequence[SecondStats] | None) -> tuple[float | None, float | None]:
    """Achieved (2xx per second in which anything was sent) and settled (the last pacer rate)."""
    if not seconds:
        return None, None
    active = sum(1 for s in seconds if s.requests)
    ok = sum(s.ok for s in seconds)
    last = max(seconds, key=lambda s: s.second)
    return (ok / active if active else None), last.pacer_rate


_CSS = """
:root{--fg:#1d2330;--muted:#5f6b7a;--line:#e3e7ee;--bg:#f6f7fb;--card:#fff;--accent:#3f6fb5;
font-family:system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif;color:var(--fg);
background:var(--bg);line-height:1.45}
body{margin:0}
main{max-width:1100px;margin:0 auto;padding:28px 20px 40px}
header,section,footer{background:var(--card);border:1px solid var(--line);border-radius:12px;padding:20px 24px;
margin-bottom:18px}
h1{font-size:1.9rem;margin:0 0 12px;letter-spacing:-.01em;overflow-wrap:anywhere}
h2{font-size:1.15rem;margin:0 0 14px}
h3{font-size:.95rem;margin:18px 0 6px;color:var(--muted);font-weight:600}
.sub{font-weight:400;color:var(--muted);font-size:.9rem;margin-left:.4em}
.kicker{margin:0 0 2px;text-transform:uppercase;letter-spacing:.08em;font-size:.72rem;color:var(--muted)}
code{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;font-size:.88em;overflow-wrap:anywhere}
.head-grid{display:flex;flex-wrap:wrap;gap:16px 32px;align-items:flex-start;justify-content:space-between}
.facts{display:flex;flex-wrap:wrap;gap:10px 30px;margin:0;flex:1 1 520px}
.facts dd{white-space:nowrap}
.facts dt{font-size:.75rem;color:var(--muted);text-transform:uppercase;letter-spacing:.05em}
.facts dd{margin:0;font-weight:500}
.rates{display:flex;gap:10px}
.rate{border:1px solid var(--line);border-radius:10px;padding:8px 14px;min-width:92px;text-align:center}
.rate .num{font-size:1.5rem;font-weight:650;font-variant-numeric:tabular-nums}
.rate .unit{color:var(--muted);font-size:.85rem;margin-left:2px}
.rate .lbl{display:block;font-size:.72rem;color:var(--muted);text-transform:uppercase;letter-spacing:.05em}
#rate-achieved{border-color:var(--accent);background:#eef3fb}
.tiles{display:grid;grid-template-columns:repeat(auto-fill,minmax(104px,1fr));gap:10px;margin-bottom:12px}
.tile{border:1px solid var(--line);border-top:4px solid var(--c);border-radius:10px;padding:10px 12px}
.tile .count{display:block;font-size:1.35rem;font-weight:650;font-variant-numeric:tabular-nums;color:var(--c)}
.tile .name{display:block;font-size:.85rem;font-weight:500}
.tile .share{display:block;font-size:.8rem;color:var(--muted);font-variant-numeric:tabular-nums}
.tile.zero{opacity:.5}
.tile.zero .count{color:var(--muted)}
.sharebar{display:block;width:100%;height:14px;border-radius:7px;background:var(--line)}
.chart{display:block;width:100%;height:auto;min-width:560px}
.scroll{overflow-x:auto}
.chart text{font-size:12px;fill:var(--muted);font-variant-numeric:tabular-nums}
.chart .ytick{text-anchor:end}
.chart .xtick{text-anchor:start}
.chart .grid{stroke:var(--line);stroke-width:1}
.chart .axis{stroke:#9aa3b0;stroke-width:1}
.chart .target{stroke:#9aa3b0;stroke-width:1;stroke-dasharray:5 4}
.hbars{display:flex;gap:12px;align-items:flex-start;font-size:.9rem;margin-bottom:6px}
.hbars svg{flex:1 1 0;min-width:60px;display:block}
.hbars .track{fill:#eef1f6}
.hb-l{flex:0 1 auto;max-width:42%;min-width:0;text-align:right}
.hb-l div,.hb-n div{height:26px;line-height:26px;white-space:nowrap;overflow:hidden;text-overflow:ellipsis}
.hb-n{flex:0 0 auto;min-width:4.5em;font-weight:600;font-variant-numeric:tabular-nums}
.legend{list-style:none;display:flex;flex-wrap:wrap;gap:6px 18px;padding:0;margin:0 0 6px;font-size:.85rem}
.legend li::before{content:"";display:inline-block;width:11px;height:11px;border-radius:2px;background:var(--c);
margin-right:6px;vertical-align:-1px}
.legend li.line::before{height:3px;border-radius:0;vertical-align:3px}
.legend li.dash::before{height:0;border-top:2px dashed #9aa3b0;background:none;vertical-align:3px}
.note{color:var(--muted);margin:0 0 8px;font-size:.9rem}
#no-run-events{background:#fff8e1;border:1px solid #ffe082;color:#6d4c00;border-radius:8px;padding:10px 14px}
table.failures{width:100%;border-collapse:collapse;font-size:.92rem}
.failures th{text-align:left;font-size:.75rem;text-transform:uppercase;letter-spacing:.05em;color:var(--muted);
border-bottom:1px solid var(--line);padding:6px 8px}
.failures td{border-bottom:1px solid var(--line);padding:8px;vertical-align:top}
.failures .code{font-weight:650;color:#c62828;font-variant-numeric:tabular-nums;white-space:nowrap}
.failures .n{text-align:right;font-variant-numeric:tabular-nums;font-weight:600}
.failures .more{font-size:.8rem;overflow-wrap:anywhere}
.failures .more a{color:var(--accent)}
.failures .ex code{white-space:nowrap}
footer{font-size:.85rem;color:var(--muted)}
footer p{margin:0}
@media (max-width:640px){main{padding:12px 8px}header,section,footer{padding:14px}.rates{flex-wrap:wrap}
.failures .ex{display:none}}
""".strip()
