"""What the API does beyond a run: validate, status and report, sweep, and the turnover of periods."""

from .periods import job_for, job_tokens, settle_previous_period
from .status import Status, job_status, rewrite_results, write_report_html
from .sweep import DEFAULT_OLDER_THAN, Sweep, SweptRun, sweep_job
from .validate import Validation, offline_target, project_arrival, review_flow, review_variants, validation

__all__ = [
    "DEFAULT_OLDER_THAN",
    "Status",
    "Sweep",
    "SweptRun",
    "Validation",
    "job_for",
    "job_status",
    "job_tokens",
    "offline_target",
    "project_arrival",
    "review_flow",
    "review_variants",
    "rewrite_results",
    "settle_previous_period",
    "sweep_job",
    "validation",
    "write_report_html",
]
