"""batch-engage: turn a file of contacts into Twilio Studio Flow runs, paced, resumable, never twice.

Use it from Python as ``batch_engage.run("jobs/campaign.toml")`` or
``batch_engage.run(spec, frame=df)``, and bring back what happened in each run with
``batch_engage.collect("jobs/campaign.toml")``; ``batch_engage.assign_variants(frame, job)`` shows an
experiment's split before any send; the ``batch-engage`` command is a thin layer over them.
"""

# ruff: noqa: E402 - the imports follow the early stop handler on purpose

from .early import stop_before_start, structlog_without_rich

# First, before the seconds of importing below: a stop now ends the command cleanly (the command only).
stop_before_start()
del stop_before_start

import logging as _logging
from typing import TYPE_CHECKING

with structlog_without_rich():
    import structlog as _structlog
del structlog_without_rich

from .api import (
    assign_variants,
    collect,
    collect_async,
    history_stats,
    import_history,
    load_job,
    report,
    run,
    run_async,
    status,
    sweep,
    validate,
)
from .control import Progress, RunControl
from .credentials import Credentials, credentials_from_env
from .errors import BatchEngageError
from .faces import lazy_face
from .job import ExperimentSpec, FlowSpec, InputSpec, MappingSpec, OutputSpec, SendSpec, Spec, load_spec

if TYPE_CHECKING:
    from .collector import CollectOptions, CollectResult
    from .commands import Status, Validation
    from .runner import RunOptions, RunResult, RunSummary

__all__ = [
    "BatchEngageError",
    "CollectOptions",
    "CollectResult",
    "Credentials",
    "ExperimentSpec",
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
    "assign_variants",
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
    "sweep",
    "validate",
]

# The run's and collect's types load with the first that asks: ``batch-engage validate`` needs none of them.
__getattr__, __dir__ = lazy_face(
    __name__,
    {
        "collector": "CollectOptions CollectResult",
        "commands": "Status Validation",
        "runner": "RunOptions RunResult RunSummary",
    },
)
del TYPE_CHECKING, lazy_face

# A library is quiet by default: structlog, left unconfigured, prints every debug line. Only
# warnings and errors show until the caller configures structlog (the CLI does, from its flags).
if not _structlog.is_configured():
    _structlog.configure(wrapper_class=_structlog.make_filtering_bound_logger(_logging.WARNING))
