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

The charts and the number formatting they share with the page live in the private ``_svg``, the
stylesheet in ``_report_css``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import NamedTuple

from ..checkpoint import achieved_rate
from ..plan import mask
from ..results import EXPERIMENT_STATUSES, STATUSES
from .active import ActiveGroup, active_section
from .arrival import ArrivalFigures, arrival_section
from .compare import ExperimentReport
from .css import CSS
from .svg import (
    BAR_COLOUR,
    MAX_BUCKETS,
    OTHER_COLOUR,
    STATUS_COLOURS,
    coord,
    duration_text,
    escape,
    hbars,
    percent,
    rate_text,
    time_chart,
)
from .variants import variants_section

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

#: Every status a row can end in, in the order the tiles show them (the results table's order); an experiment's
#: own statuses (``holdout``) follow them, and only in a job with one.
STATUS_ORDER: tuple[str, ...] = tuple(s for s in STATUSES if s not in EXPERIMENT_STATUSES)

_MORE_INFO = "https://www.twilio.com/docs/errors/{code}"


class SecondStats(NamedTuple):
    """One row of the run-events table: one second of one run (a tuple: a 14-hour run has 50,000 of them)."""

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
    no_reply: int = 0  # collected runs without a value for it (no answer yet, or never)


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
    invalid_examples: tuple[tuple[str, tuple[str, ...]], ...] = ()  # (reason, masked values as written)
    rehearsal: bool = False  # made on the sandbox: said at the top, so nobody reads it as a campaign
    active: tuple[ActiveGroup, ...] = ()  # contacts that met an earlier active run ([send] on_active)
    arrival: ArrivalFigures | None = None  # the preflight's projection beside what collect saw; None: neither
    experiment: ExperimentReport | None = None  # the variants side by side; None: the job has no experiment


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
        f"<title>{escape(title)}</title>\n<style>{CSS}</style>\n</head>\n<body>\n<main>\n",
        _header(data),
        _tiles(data.counts),
        variants_section(data.experiment),
        _time_section(data),
        _failures_section(data),
        active_section(data.active),
        _windows_section(data),
        _outcomes_section(data),
        arrival_section(data.arrival),
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
    duration = duration_text(active) if runs else "—"
    if len(runs) > 1:
        duration += f" over {len(runs)} runs"
    started = runs[0].started if runs else None
    achieved, settled = _rates(data.seconds)
    facts = [
        ("Flow", f"<code>{escape(data.flow_sid)}</code>"),
        ("API", escape(api)),
        ("Started", escape(_time(started)) if started else "—"),
        ("Finished", escape(finished)),
        ("Duration", escape(duration)),
    ]
    rates = [
        ("achieved", achieved, "2xx answers per second in which anything was sent"),
        ("configured", data.configured_rate, "the job's send.rate"),
        ("settled", settled, "the pacer's rate at the end of the last recorded second"),
    ]
    dl = "".join(f"<div><dt>{k}</dt><dd>{v}</dd></div>" for k, v in facts)
    rate_html = "".join(
        f'<div class="rate" id="rate-{name}" title="{escape(why)}"><span class="num">{rate_text(value)}</span>'
        f'<span class="unit">{"/s" if value is not None else ""}</span><span class="lbl">{name}</span></div>'
        for name, value, why in rates
    )
    rehearsal = (
        '<p class="rehearsal" id="rehearsal"><strong>Rehearsal</strong>: these runs were made on the built-in '
        "sandbox; no message reached anyone.</p>\n"
        if data.rehearsal
        else ""
    )
    kicker = "batch-engage rehearsal report (sandbox)" if data.rehearsal else "batch-engage campaign report"
    return (
        f'<header>\n{rehearsal}<p class="kicker">{kicker}</p>\n'
        f"<h1>{escape(data.job_name)}</h1>\n"
        f'<div class="head-grid"><dl class="facts">{dl}</dl><div class="rates">{rate_html}</div></div>\n'
        "</header>\n"
    )


def _tiles(counts: Mapping[str, int]) -> str:
    extra = [s for s in EXPERIMENT_STATUSES if s in counts]
    names = [*STATUS_ORDER, *extra, *sorted(set(counts) - set(STATUS_ORDER) - set(extra))]
    total = sum(counts.values())
    tiles = []
    segments = []
    x = 0.0
    for name in names:
        count = counts.get(name, 0)
        share = count / total if total else 0.0
        colour = STATUS_COLOURS.get(name, OTHER_COLOUR)
        zero = " zero" if count == 0 else ""
        tiles.append(
            f'<div class="tile{zero}" id="status-{escape(name)}" data-status="{escape(name)}" data-count="{count}" '
            f'style="--c:{colour}"><span class="count">{count:,}</span>'
            f'<span class="name">{escape(name.replace("_", " "))}</span>'
            f'<span class="share">{percent(share)}</span></div>'
        )
        if count:
            width = share * 1000
            segments.append(
                f'<rect x="{coord(x)}" y="0" width="{coord(width)}" height="14" fill="{colour}">'
                f"<title>{escape(name)}: {count:,} ({percent(share)})</title></rect>"
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
    return head + time_chart(data.seconds, data.configured_rate) + "</section>\n"


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
                link = f'<a href="{escape(url)}" rel="noreferrer">{escape(url)}</a>'
            examples = ", ".join(f"<code>{escape(_masked(x))}</code>" for x in group.examples[:3])
            rows.append(
                f'<tr><td class="code">{code}</td><td>{escape(group.message)}<div class="more">{link}</div></td>'
                f'<td class="n">{group.count:,}</td><td class="ex">{examples}</td></tr>'
            )
        out.append(
            '<table class="failures"><thead><tr><th>Code</th><th>Twilio said</th><th class="n">Rows</th>'
            f'<th class="ex">Examples</th></tr></thead><tbody>{"".join(rows)}</tbody></table>\n'
        )
    if data.invalid_reasons:
        out.append("<h3>Invalid rows, by reason</h3>\n")
        out.append(hbars("chart-invalid", "Invalid rows by reason", data.invalid_reasons, STATUS_COLOURS["invalid"]))
        if data.invalid_examples:
            items = "".join(
                f"<li>{escape(reason)}: {', '.join(f'<code>{escape(_masked(x))}</code>' for x in examples[:3])}</li>"
                for reason, examples in data.invalid_examples
            )
            out.append(f'<ul class="examples" id="invalid-examples">{items}</ul>\n')
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
        + hbars("chart-windows", "Pending rows by the hour their send window opens", items, STATUS_COLOURS["pending"])
        + "</section>\n"
    )


def _outcomes_section(data: ReportData) -> str:
    if data.run_status is None and not data.fields:
        return ""
    out = ['<section id="outcomes">\n<h2>Outcomes</h2>\n']
    if data.run_status is not None:
        items = sorted(data.run_status.items(), key=lambda kv: (-kv[1], kv[0]))
        out.append("<h3>Run status</h3>\n")
        out.append(hbars("chart-run-status", "Flow runs by status", items, BAR_COLOUR))
    for index, values in enumerate(data.fields):
        out.append(f"<h3>{escape(values.name)}</h3>\n")
        answers = [*values.top, *([("no reply", values.no_reply)] if values.no_reply else [])]
        out.append(hbars(f"chart-field-{index}", f"Most common values of {values.name}", answers, BAR_COLOUR))
    out.append("</section>\n")
    return "".join(out)


def _footer(data: ReportData) -> str:
    return (
        "<footer>\n"
        f"<p>Figures from the checkpoint <code>{escape(data.checkpoint_path)}</code> as of "
        f"<time>{escape(_time(data.as_of))}</time> (its last write), rendered by batch-engage "
        f"{escape(data.version)}.</p>\n</footer>\n"
    )


# --- formatting -------------------------------------------------------------------------------


def _masked(address: str) -> str:
    # Examples arrive masked; masking again here means a caller's slip can never put a whole
    # number into a file people mail around.
    return address if "***" in address else mask(address)


def _utc(when: datetime) -> datetime:
    # A naive datetime from the checkpoint is already UTC; an aware one may come from a caller's zone.
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)


def _time(when: datetime, *, seconds: bool = True) -> str:
    return _utc(when).strftime("%Y-%m-%d %H:%M:%S UTC" if seconds else "%Y-%m-%d %H:%M UTC")


def _relative(when: datetime, as_of: datetime) -> str:
    delta = (_utc(when) - _utc(as_of)).total_seconds()
    if delta <= 0:
        return "open at the last write"
    return "in " + duration_text(delta)


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
    """Achieved (the pace held: ``achieved_rate``) and settled (the last pacer rate)."""
    if not seconds:
        return None, None
    ordered = sorted(seconds, key=lambda s: s.second)
    return achieved_rate((s.requests, s.ok) for s in ordered), ordered[-1].pacer_rate
