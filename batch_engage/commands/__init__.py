"""What the API does beyond a run: validate, status and report, the turnover of periods, the rehearsal's simulator."""

from .periods import job_for, settle_previous_period
from .rehearsal import SANDBOX_RUN_LIFETIME, sandbox_config, sandbox_credentials, sandbox_state_path, simulated
from .status import Status, job_status, rewrite_results, write_report_html
from .validate import Validation, offline_target, review_flow, validation

__all__ = [
    "SANDBOX_RUN_LIFETIME",
    "Status",
    "Validation",
    "job_for",
    "job_status",
    "offline_target",
    "review_flow",
    "rewrite_results",
    "sandbox_config",
    "sandbox_credentials",
    "sandbox_state_path",
    "settle_previous_period",
    "simulated",
    "validation",
    "write_report_html",
]
