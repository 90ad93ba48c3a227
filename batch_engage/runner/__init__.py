"""One run of a job: preflight, settle earlier runs, schedule, dispatch paced requests, reconcile, record."""

from .item import Item, make_marker
from .job import prove_outputs, run_job, target_for
from .values import RunOptions, RunResult, RunSummary

__all__ = ["Item", "RunOptions", "RunResult", "RunSummary", "make_marker", "prove_outputs", "run_job", "target_for"]
