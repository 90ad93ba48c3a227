"""What the API does beyond a run: validate, status and report, sweep, and the turnover of periods."""

from .periods import job_for, job_tokens, settle_previous_period
from .status import Status, job_status, rewrite_results, write_report_html
from .sweep import DEFAULT_OLDER_THAN, Sweep, SweptRun, sweep_job
from .validate import Validation, offline_target, review_flow, review_variants, validation
from .written import guarded_report, guarded_report_html, guarded_summary_json, refuse_future_period

__all__ = [
    "DEFAULT_OLDER_THAN",
    "Status",
    "Sweep",
    "SweptRun",
    "Validation",
    "guarded_report",
    "guarded_report_html",
    "guarded_summary_json",
    "job_for",
    "job_status",
    "job_tokens",
    "offline_target",
    "refuse_future_period",
    "review_flow",
    "review_variants",
    "rewrite_results",
    "settle_previous_period",
    "sweep_job",
    "validation",
    "write_report_html",
]
