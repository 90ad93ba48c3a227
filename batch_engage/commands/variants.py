"""Which variant each contact of an experiment gets, before any send."""

from __future__ import annotations

from pathlib import Path

import polars as pl

from ..errors import UsageError
from ..experiment import assign_frame
from ..job import ExperimentSpec, Spec
from ..plan import prepare
from ..runner import kept_variants
from .resolve import load_job

__all__ = ["assign_variants"]


def assign_variants(
    frame: pl.DataFrame | pl.LazyFrame,
    experiment: str | Path | Spec | ExperimentSpec,
    *,
    contact: str = "contact",
) -> pl.DataFrame:
    """``frame`` with a ``variant`` column: the variant each row gets (``"holdout"``: sent nothing), before any send.

    Given a job (file or ``Spec``), the rows are planned as a run plans them (numbers
    normalized, contact keys; contacts the job's checkpoint already sent keep their
    variant); a row with no contact key (invalid) gets null. Given an ``ExperimentSpec``,
    the ``contact`` column is taken as the contact key as it is.
    """
    data = frame.collect() if isinstance(frame, pl.LazyFrame) else frame
    if isinstance(experiment, ExperimentSpec):
        return assign_frame(data, experiment, contact=contact)
    spec = load_job(experiment)
    if spec.experiment is None:
        raise UsageError(f"job {spec.job.id} has no [experiment]: every contact gets the one Flow")
    plan = prepare(spec, frame=data, kept=kept_variants(spec, restart=False), digest=False).plan
    return data.with_columns(plan.get_column("variant"))
