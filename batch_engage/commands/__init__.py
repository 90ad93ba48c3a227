"""What the API does beyond a run: validate, status and report, and the turnover of periods."""

from .periods import job_for, settle_previous_period
from .status import Status, job_status, rewrite_results, write_report_html
from .validate import Validation, offline_target, review_flow, validation

__all__ = [
    "Status",
    "Validation",
    "job_for",
    "job_status",
    "offline_target",
    "review_flow",
    "rewrite_results",
    "settle_previous_period",
    "validation",
    "write_report_html",
]
