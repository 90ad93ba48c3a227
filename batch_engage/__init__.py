"""batch-engage: turn a file of contacts into Twilio Studio Flow runs, paced, resumable, never twice.

Use it from Python as ``batch_engage.run("jobs/campaign.toml")`` or
``batch_engage.run(spec, frame=df)``, and bring back what happened in each run with
``batch_engage.collect("jobs/campaign.toml")``; the ``batch-engage`` command is a thin layer over them.
"""

from .api import (
    CollectOptions,
    CollectResult,
    Status,
    Validation,
    collect,
    collect_async,
    history_stats,
    import_history,
    load_job,
    report,
    run,
    run_async,
    status,
    validate,
)
from .credentials import Credentials, credentials_from_env
from .errors import BatchEngageError
from .runner import Progress, RunControl, RunOptions, RunResult, RunSummary
from .spec import FlowSpec, InputSpec, MappingSpec, OutputSpec, SendSpec, Spec, load_spec

__all__ = [
    "BatchEngageError",
    "CollectOptions",
    "CollectResult",
    "Credentials",
    "FlowSpec",
    "InputSpec",
    "MappingSpec",
    "OutputSpec",
    "Progress",
    "RunControl",
    "RunOptions",
    "RunResult",
    "RunSummary",
    "SendSpec",
    "Spec",
    "Status",
    "Validation",
    "collect",
    "collect_async",
    "credentials_from_env",
    "history_stats",
    "import_history",
    "load_job",
    "load_spec",
    "report",
    "run",
    "run_async",
    "status",
    "validate",
]
