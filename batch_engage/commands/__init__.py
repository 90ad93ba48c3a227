"""What the API does beyond a run: validate, status, report, sweep, periods' turnover, the rehearsal's simulator."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..faces import lazy_face

if TYPE_CHECKING:
    from .held import held_against_flow
    from .history import forget_opt_out, history_opt_outs, history_stats, import_history, opt_outs_store
    from .rehearsal import (
        SANDBOX_RUN_LIFETIME,
        real,
        sandbox_config,
        sandbox_credentials,
        sandbox_state_path,
        simulated,
    )
    from .resolve import job_tokens, launched, load_job, settle_previous_period
    from .status import Status, job_status, rewrite_results, write_report_html
    from .sweep import DEFAULT_OLDER_THAN, Sweep, SweptRun, sweep_job
    from .validate import (
        Validation,
        offline_target,
        prove_validate_outputs,
        refuse_period_behind,
        validate_plan,
        validation,
    )
    from .variants import assign_variants
    from .written import guarded_collect, guarded_report, guarded_report_html, guarded_summary_json

__all__ = [
    "DEFAULT_OLDER_THAN",
    "SANDBOX_RUN_LIFETIME",
    "Status",
    "Sweep",
    "SweptRun",
    "Validation",
    "assign_variants",
    "forget_opt_out",
    "guarded_collect",
    "guarded_report",
    "guarded_report_html",
    "guarded_summary_json",
    "held_against_flow",
    "history_opt_outs",
    "history_stats",
    "import_history",
    "job_status",
    "job_tokens",
    "launched",
    "load_job",
    "offline_target",
    "opt_outs_store",
    "prove_validate_outputs",
    "real",
    "refuse_period_behind",
    "rewrite_results",
    "sandbox_config",
    "sandbox_credentials",
    "sandbox_state_path",
    "settle_previous_period",
    "simulated",
    "sweep_job",
    "validate_plan",
    "validation",
    "write_report_html",
]

# Each command loads its own module, and what that needs, when first asked for: validate is not the runner.
__getattr__, __dir__ = lazy_face(
    __name__,
    {
        "held": "held_against_flow",
        "history": "forget_opt_out history_opt_outs history_stats import_history opt_outs_store",
        "rehearsal": "SANDBOX_RUN_LIFETIME real sandbox_config sandbox_credentials sandbox_state_path simulated",
        "resolve": "job_tokens launched load_job settle_previous_period",
        "status": "Status job_status rewrite_results write_report_html",
        "sweep": "DEFAULT_OLDER_THAN Sweep SweptRun sweep_job",
        "validate": "Validation offline_target prove_validate_outputs refuse_period_behind validate_plan validation",
        "variants": "assign_variants",
        "written": "guarded_collect guarded_report guarded_report_html guarded_summary_json",
    },
)
