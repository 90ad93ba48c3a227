"""One run of a job: preflight, settle earlier runs, schedule, dispatch paced requests, reconcile, record."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..faces import lazy_face
from .item import Item, make_marker
from .launch import Launch, launch, target_for

if TYPE_CHECKING:
    from .active import Verdict, judge_run
    from .job import run_job
    from .offloop import calls_hanging
    from .recover import Recovery, recover_job
    from .values import RunOptions, RunResult, RunSummary
    from .variants import kept_variants

__all__ = [
    "Item",
    "Launch",
    "Recovery",
    "RunOptions",
    "RunResult",
    "RunSummary",
    "Verdict",
    "calls_hanging",
    "judge_run",
    "kept_variants",
    "launch",
    "make_marker",
    "recover_job",
    "run_job",
    "target_for",
]

# A plan's dry run needs only the item and the launch: the rest (the run itself) loads when first asked for.
__getattr__, __dir__ = lazy_face(
    __name__,
    {
        "active": "Verdict judge_run",
        "offloop": "calls_hanging",
        "job": "run_job",
        "recover": "Recovery recover_job",
        "values": "RunOptions RunResult RunSummary",
        "variants": "kept_variants",
    },
)
