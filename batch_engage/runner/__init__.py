"""One run of a job: preflight, settle earlier runs, schedule, dispatch paced requests, reconcile, record."""

from .active import Verdict, judge_run
from .failures import calls_hanging
from .item import Item, make_marker
from .job import run_job
from .launch import Launch, launch, target_for
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
