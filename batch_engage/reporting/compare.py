"""The variants side by side, from the checkpoint and ``collect``'s outcomes: counts, rates, intervals, differences.

Every rate is of the variant's contacts *sent* (a run was started for them): delivered (a message
widget ``collect`` asked about reached the phone), answered (a ``[collect] fields`` value came
back), and each value of each field. The first variant is the baseline: every other one is
compared with it (Newcombe's interval of the difference).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass

import polars as pl

from ..collector import StoredOutcome
from ..experiment import Difference, Rate, difference, rate
from ..job import HOLDOUT, Spec

__all__ = ["ExperimentReport", "Metric", "experiment_report"]

_DELIVERED = frozenset({"delivered", "read"})
_VALUES_PER_FIELD = 5


@dataclass(frozen=True, kw_only=True)
class Metric:
    """One line of the comparison: a rate per variant, and each later variant's difference from the first."""

    key: str  # stable, for ids: "sent", "delivered", "answered", "field:<name>=<value>"
    label: str
    rates: tuple[Rate, ...]
    differences: tuple[Difference | None, ...]  # variants[1:] minus variants[0]


@dataclass(frozen=True, kw_only=True)
class ExperimentReport:
    """The comparison the report shows: variants in the job's order, their contacts, the holdout's size."""

    variants: tuple[str, ...]
    assigned: tuple[int, ...]
    holdout: int
    holdout_share: float
    metrics: tuple[Metric, ...]
    collected: bool


def _metric(key: str, label: str, counts: list[int], totals: list[int]) -> Metric:
    rates = tuple(rate(c, n) for c, n in zip(counts, totals, strict=True))
    return Metric(key=key, label=label, rates=rates, differences=tuple(difference(rates[0], r) for r in rates[1:]))


def _sent_by_variant(results: pl.DataFrame, plan: pl.DataFrame) -> dict[str, set[str]]:
    """Contacts each variant was sent (a run exists: sent or already active)."""
    keyed = results.with_columns(plan.get_column("contact"))
    reached = keyed.filter(pl.col("status").is_in(["sent", "already_active"]) & pl.col("variant").is_not_null())
    out: dict[str, set[str]] = {}
    for contact, variant in reached.select("contact", "variant").iter_rows():
        out.setdefault(variant, set()).add(contact)
    return out


def _delivered(outcome: StoredOutcome, widgets: tuple[str, ...]) -> bool:
    return any(outcome.values.get(f"{w}_delivery") in _DELIVERED for w in widgets)


def _answered(outcome: StoredOutcome, fields: list[str]) -> bool:
    return any(outcome.values.get(name) is not None for name in fields)


def _field_values(spec: Spec, outcomes: list[StoredOutcome]) -> list[tuple[str, str]]:
    """The (field, value) pairs to compare: each field's most common values over every variant."""
    pairs = []
    for name, _ in spec.collect.fields:
        seen = Counter(str(o.values[name]) for o in outcomes if o.values.get(name) is not None)
        pairs += [(name, value) for value, _ in sorted(seen.items(), key=lambda kv: (-kv[1], kv[0]))][
            :_VALUES_PER_FIELD
        ]
    return pairs


def experiment_report(
    spec: Spec, plan: pl.DataFrame, results: pl.DataFrame, collected: Mapping[str, StoredOutcome] | None
) -> ExperimentReport | None:
    """The comparison of ``spec``'s variants (None: the job has no experiment)."""
    experiment = spec.experiment
    if experiment is None or "variant" not in plan.columns:
        return None
    names = tuple(v.name for v in experiment.variants)
    # Assigned: the contacts the plan would send (or holds out); duplicates, suppressed and capped rows are not.
    assignable = plan.filter(pl.col("status").is_in(["pending", HOLDOUT]))
    split = Counter(assignable.get_column("variant").drop_nulls().to_list())
    sent = _sent_by_variant(results, plan)
    totals = [len(sent.get(name, ())) for name in names]
    metrics = [_metric("sent", "Sent", totals, [split.get(name, 0) for name in names])]
    if collected is not None:
        mine = {name: [collected[c] for c in sent.get(name, ()) if c in collected] for name in names}
        widgets = spec.collect.message_status
        fields = [name for name, _ in spec.collect.fields]
        if widgets:
            delivered = [sum(_delivered(o, widgets) for o in mine[n]) for n in names]
            metrics.append(_metric("delivered", "Delivered", delivered, totals))
        if fields:
            answered = [sum(_answered(o, fields) for o in mine[n]) for n in names]
            metrics.append(_metric("answered", "Answered", answered, totals))
        everyone = [o for n in names for o in mine[n]]
        for field_name, value in _field_values(spec, everyone):
            counts = [sum(str(o.values.get(field_name)) == value for o in mine[n]) for n in names]
            label = f"{field_name} = {value}"
            metrics.append(_metric(f"field:{field_name}={value}", label, counts, totals))
    return ExperimentReport(
        variants=names,
        assigned=tuple(split.get(name, 0) for name in names),
        holdout=split.get(HOLDOUT, 0),
        holdout_share=experiment.holdout,
        metrics=tuple(metrics),
        collected=collected is not None,
    )
