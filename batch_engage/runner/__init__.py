"""One run of a job: preflight, settle earlier runs, schedule, dispatch paced requests, reconcile, record."""

from .failures import calls_hanging
from .item import Item, make_marker
from .job import run_job, target_for
from .recover import Recovery, recover_job
from .values import RunOptions, RunResult, RunSummary

__all__ = [
    "Item",
    "Recovery",
    "RunOptions",
    "RunResult",
    "RunSummary",
    "calls_hanging",
    "make_marker",
    "recover_job",
    "run_job",
    "target_for",
]
