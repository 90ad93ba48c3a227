"""The report's "Variants" section: each rate with its 95% interval, each difference from the baseline, in words.

Every figure also sits in ``data-*`` attributes (rates and bounds to four decimals), so a
browser test reads what the page shows without parsing prose.
"""

from __future__ import annotations

from ..experiment import Difference, Rate
from .compare import ExperimentReport, Metric
from .svg import escape

__all__ = ["variants_section"]


def _share(value: float) -> str:
    return f"{value * 100:.1f}%"


def _points(value: float) -> str:
    return f"{value * 100:+.1f} pt"


def _cell(r: Rate, show_rate: bool) -> str:
    if r.value is None or r.low is None or r.high is None:
        return f'<td class="n" data-count="{r.count}" data-total="{r.total}">{r.count:,}<div class="ci">—</div></td>'
    attrs = (
        f'data-count="{r.count}" data-total="{r.total}" '
        f'data-rate="{r.value:.4f}" data-low="{r.low:.4f}" data-high="{r.high:.4f}"'
    )
    interval = f"{_share(r.value)} <span>(95% CI {_share(r.low)}–{_share(r.high)})</span>" if show_rate else ""
    return f'<td class="n" {attrs}>{r.count:,}<div class="ci">{interval}</div></td>'


def _diff_cell(d: Difference | None) -> str:
    if d is None:
        return '<td class="n">—</td>'
    attrs = (
        f'data-diff="{d.value:.4f}" data-low="{d.low:.4f}" data-high="{d.high:.4f}" '
        f'data-excludes-zero="{str(d.excludes_zero).lower()}"'
    )
    interval = f"(95% CI {_points(d.low)} to {_points(d.high)})"
    return f'<td class="n" {attrs}>{_points(d.value)}<div class="ci">{interval}</div></td>'


def _sentence(report: ExperimentReport, metric: Metric, index: int, d: Difference) -> str:
    base, other = report.variants[0], report.variants[index + 1]
    way = "higher" if d.value > 0 else "lower"
    return (
        f'<li class="verdict" data-metric="{escape(metric.key)}" data-variant="{escape(other)}">'
        f"{escape(metric.label)}: {escape(other)}'s rate is {way} than {escape(base)}'s by "
        f"{abs(d.value) * 100:.1f} percentage points (95% interval {_points(d.low)} to {_points(d.high)}); "
        "the interval excludes zero, so the difference is unlikely to be chance.</li>"
    )


def variants_section(report: ExperimentReport | None) -> str:
    """The section (empty without an experiment)."""
    if report is None:
        return ""
    names = report.variants
    head = "".join(f'<th class="n">{escape(n)}</th>' for n in names)
    head += "".join(f'<th class="n">{escape(n)} − {escape(names[0])}</th>' for n in names[1:])
    rows = []
    sentences = []
    for metric in report.metrics:
        cells = "".join(_cell(r, True) for r in metric.rates)
        cells += "".join(_diff_cell(d) for d in metric.differences)
        rows.append(f'<tr data-metric="{escape(metric.key)}"><th>{escape(metric.label)}</th>{cells}</tr>')
        sentences += [
            _sentence(report, metric, i, d)
            for i, d in enumerate(metric.differences)
            if d is not None and d.excludes_zero
        ]
    assigned = ", ".join(f"{escape(n)} {c:,}" for n, c in zip(names, report.assigned, strict=True))
    # The share held out, of everyone the experiment placed: the job's own setting said 50 % where 32.5 % were
    # (contacts sent before a holdout was added, or raised, keep their variant).
    placed = report.holdout + sum(report.assigned)
    held = f"{_share(report.holdout / placed)} of {placed:,}" if placed else "none"
    holdout = (
        f'<p class="holdout" id="holdout" data-count="{report.holdout}">Holdout: <strong>{report.holdout:,}</strong> '
        f"contacts were held out ({held}; the job's holdout is {_share(report.holdout_share)}) and sent nothing; "
        f"assigned: {assigned}.</p>"
    )
    note = (
        "<p class=\"note\">Rates are of each variant's contacts sent (Sent: of those assigned), with Wilson's 95% "
        "interval; differences from the first variant use Newcombe's interval.</p>"
    )
    if not report.collected:
        note += '<p class="note">Run <code>collect</code> to compare deliveries and answers.</p>'
    verdicts = (
        f'<ul class="verdicts" id="verdicts">{"".join(sentences)}</ul>'
        if sentences
        else '<p class="note" id="no-verdict">No difference between the variants excludes zero yet.</p>'
    )
    table = (
        f'<table class="variants" id="variants-table"><thead><tr><th></th>{head}</tr></thead>'
        f"<tbody>{''.join(rows)}</tbody></table>"
    )
    return f'<section id="variants">\n<h2>Variants</h2>\n{holdout}\n{table}\n{verdicts}\n{note}\n</section>\n'
