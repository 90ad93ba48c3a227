"""A job's ``[experiment]`` applied to its plan: each contact's variant, that variant's Parameters, the holdout.

A variant's Parameters are planned exactly as ``[mapping] static_parameters`` are (the same
code, the variant's added to the job's), so they nest, encode and count towards the size
limit like any other. Holdout contacts keep their line with status ``holdout``: never sent.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import polars as pl

from ..experiment import VARIANT_COLUMN, assign_frame
from ..history import HistoryStore
from ..job import HOLDOUT, Cap, Spec
from .hygiene import apply_history
from .rows import plan as plan_rows

__all__ = ["experiment_fingerprint", "history_by_flow", "hold_out", "with_variants"]


def experiment_fingerprint(spec: Spec) -> dict[str, Any] | None:
    """The part of the binding an experiment adds: the salt, and each variant's Flow and Parameters.

    Weights and the holdout's share are not in it: changing them moves only contacts not yet
    reached (those keep the variant they were sent, from the checkpoint).
    """
    experiment = spec.experiment
    if experiment is None:
        return None
    variants = [[v.name, v.flow or spec.flow.sid, dict(v.parameters)] for v in experiment.variants]
    return {"salt": experiment.salt, "variants": variants}


def with_variants(
    planned: pl.DataFrame,
    source: pl.DataFrame,
    spec: Spec,
    *,
    source_name: str,
    contact: pl.Expr,
    kept: Mapping[str, str],
) -> pl.DataFrame:
    """The plan with a ``variant`` column (by contact key) and each variant's Parameters merged in."""
    experiment = spec.experiment
    assert experiment is not None
    keyed = planned.with_columns(contact)
    assigned = assign_frame(keyed, experiment, kept=kept).drop("contact")
    for variant in experiment.variants:
        if not variant.parameters:
            continue
        replanned = plan_rows(source, spec.for_variant(variant), source_name=source_name)
        mine = pl.col(VARIANT_COLUMN) == variant.name
        assigned = assigned.with_columns(
            pl.when(mine).then(replanned.get_column(name)).otherwise(pl.col(name)).alias(name)
            for name in ("parameters", "status", "error_message")
        )
    return assigned


def history_by_flow(
    planned: pl.DataFrame, history: HistoryStore, spec: Spec, caps: tuple[Cap | None, Cap | None], *, job: str
) -> pl.DataFrame:
    """The caps checked per variant: ``flow_cap`` against the Flow each contact's variant runs.

    The holdout is checked by no Flow here: it is sent nothing, and ends ``holdout``.
    """
    experiment = spec.experiment
    assert experiment is not None
    flows = experiment.flows(spec.flow.sid)
    for sid in spec.flow_sids():
        mine = pl.col(VARIANT_COLUMN).is_in([name for name, flow in flows.items() if flow == sid])
        # Rows of other Flows are hidden from the check (not pending), then given back their own status.
        checked = apply_history(
            planned.with_columns(status=pl.when(mine).then(pl.col("status")).otherwise(pl.lit("other"))),
            history,
            sid,
            *caps,
            job=job,
        )
        planned = planned.with_columns(
            status=pl.when(mine).then(checked.get_column("status")).otherwise(pl.col("status")),
            error_message=pl.when(mine).then(checked.get_column("error_message")).otherwise(pl.col("error_message")),
        )
    return planned


def hold_out(planned: pl.DataFrame) -> pl.DataFrame:
    """Pending contacts of the holdout become ``holdout`` (never sent); rows with no contact have no variant."""
    held = (pl.col("status") == "pending") & (pl.col(VARIANT_COLUMN) == HOLDOUT)
    return planned.with_columns(
        status=pl.when(held).then(pl.lit(HOLDOUT)).otherwise(pl.col("status")),
        variant=pl.when(pl.col("contact").is_not_null()).then(pl.col(VARIANT_COLUMN)),
    )
