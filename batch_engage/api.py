"""The Python API: everything the CLI does, callable without it (the CLI calls only this module)."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable, Coroutine, Mapping
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, ParamSpec, TypeVar

import polars as pl

from .checkpoint import check_binding
from .commands import (
    DEFAULT_OLDER_THAN,
    SANDBOX_RUN_LIFETIME,
    Sweep,
    Validation,
    assign_variants,
    forget_opt_out,
    history_opt_outs,
    history_stats,
    import_history,
    launched,
    load_job,
    offline_target,
    opt_outs_store,
    prove_validate_outputs,
    real,
    refuse_period_behind,
    sandbox_config,
    sandbox_state_path,
    simulated,
    sweep_job,
    validate_plan,
    validation,
)
from .control import Progress, RunControl
from .credentials import Credentials
from .exits import (
    EXIT_ABORTED,
    EXIT_IOERR,
    EXIT_OK,
    EXIT_SOME_FAILED,
    EXIT_TEMPFAIL,
    EXIT_USAGE,
    collect_exit_code,
    exit_code_for,
    exit_code_for_error,
)
from .faces import lazy_face
from .job import Spec, parse_duration, prove_outputs
from .runner import calls_hanging
from .sandbox import SANDBOX_PASSWORD, SANDBOX_USERNAME, SandboxConfig, ServiceConfig

if TYPE_CHECKING:
    import httpx

    from .arrival import Capacity
    from .collector import DEFAULT_POLL_INTERVAL as DEFAULT_COLLECT_POLL
    from .collector import CollectOptions, CollectProgress, CollectResult
    from .commands import Status
    from .commands import guarded_report_html as write_report_html
    from .commands import guarded_summary_json as write_summary_json
    from .flow import FlowReview
    from .runner import Recovery, RunOptions, RunResult
    from .sandbox import Sandbox
    from .sandbox import serve as serve_sandbox

__all__ = [
    "DEFAULT_COLLECT_POLL",
    "EXIT_ABORTED",
    "EXIT_IOERR",
    "EXIT_OK",
    "EXIT_SOME_FAILED",
    "EXIT_TEMPFAIL",
    "EXIT_USAGE",
    "SANDBOX_PASSWORD",
    "SANDBOX_RUN_LIFETIME",
    "SANDBOX_USERNAME",
    "Capacity",
    "CollectOptions",
    "CollectProgress",
    "CollectResult",
    "Credentials",
    "FlowReview",
    "Progress",
    "Recovery",
    "RunControl",
    "RunOptions",
    "RunResult",
    "Sandbox",
    "SandboxConfig",
    "ServiceConfig",
    "Spec",
    "Status",
    "Sweep",
    "Validation",
    "assign_variants",
    "calls_hanging",
    "collect",
    "collect_async",
    "collect_exit_code",
    "exit_code_for",
    "exit_code_for_error",
    "forget_opt_out",
    "history_opt_outs",
    "history_stats",
    "import_history",
    "load_job",
    "opt_outs_store",
    "parse_duration",
    "prove_outputs",
    "recover",
    "recover_async",
    "report",
    "run",
    "run_async",
    "sandbox_config",
    "sandbox_state_path",
    "serve_sandbox",
    "status",
    "sweep",
    "sweep_async",
    "validate",
    "version",
    "write_report_html",
    "write_summary_json",
]


# A dry run's names are imported above; the rest load when first asked for (the simulator's server: aiohttp).
__getattr__, __dir__ = lazy_face(
    __name__,
    {
        "arrival": "Capacity",
        "collector": "CollectOptions CollectProgress CollectResult DEFAULT_COLLECT_POLL=DEFAULT_POLL_INTERVAL",
        "commands": "Status write_report_html=guarded_report_html write_summary_json=guarded_summary_json",
        "flow": "FlowReview",
        "runner": "Recovery RunOptions RunResult",
        "sandbox": "Sandbox serve_sandbox=serve",
    },
    within=__package__,
)


_P = ParamSpec("_P")
_T = TypeVar("_T")


def _blocking(twin: Callable[_P, Coroutine[Any, Any, _T]], name: str, doc: str) -> Callable[_P, _T]:
    """``twin`` run to its end on an event loop of its own: the sync API, with the async one's signature."""

    @functools.wraps(twin)
    def call(*args: _P.args, **kwargs: _P.kwargs) -> _T:
        return asyncio.run(twin(*args, **kwargs))

    call.__name__ = call.__qualname__ = name
    call.__doc__ = doc
    return call


def version() -> str:
    """This installation's version (``unknown`` when run from a checkout that was never installed)."""
    from importlib import metadata  # noqa: PLC0415 - only --version and reports ask; importing it costs every command

    try:
        return metadata.version("batch-engage")
    except metadata.PackageNotFoundError:
        return "unknown"


async def run_async(
    job: str | Path | Spec,
    *,
    frame: pl.DataFrame | pl.LazyFrame | None = None,
    credentials: Credentials | None = None,
    overrides: Mapping[str, Any] | None = None,
    options: RunOptions | None = None,
    control: RunControl | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
    on_progress: Callable[[Progress], None] | None = None,
    stdin: BinaryIO | None = None,
    on_start: Callable[[str], None] | None = None,
    simulator: SandboxConfig | None = None,
) -> RunResult:
    """:func:`run` for callers that already run an event loop (``on_start``: the line shown before a real send)."""
    from .runner import RunOptions, run_job  # noqa: PLC0415 - a run loads the runner; a dry run does not

    options = options or RunOptions()
    async with launched(
        job, overrides, options, credentials=credentials, simulator=simulator, transport=transport
    ) as resolved:
        return await run_job(
            resolved,
            frame=frame,
            options=options,
            control=control,
            transport=transport,
            on_progress=on_progress,
            stdin=stdin,
            on_start=on_start,
        )


run = _blocking(
    run_async,
    "run",
    """Run a job to the end and return its results table, counts and exit code.

    ``frame`` (a polars DataFrame or LazyFrame) is used instead of ``[input]``.
    Credentials default to :func:`credentials_from_env`. Raises a
    ``BatchEngageError`` for anything that stops the job before it starts.
    With ``RunOptions(sandbox=True)`` the run is a rehearsal: it starts the built-in
    simulator in-process (``simulator``: one configured otherwise, e.g. with faults), keeps
    its state in the ``.sandbox`` checkpoint, and talks to nothing else, whatever
    ``credentials``, environment or ``[flow] base_url`` say.
    """,
)


async def recover_async(
    job: str | Path | Spec,
    *,
    credentials: Credentials | None = None,
    overrides: Mapping[str, Any] | None = None,
    options: RunOptions | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
) -> Recovery:
    """:func:`recover` for callers that already run an event loop."""
    from .runner import RunOptions, recover_job  # noqa: PLC0415 - the runner loads for the commands that run

    options = options or RunOptions()
    spec = load_job(job, overrides, sandbox=options.sandbox)
    with simulated(spec) if options.sandbox else real(spec, credentials) as (spec, creds):
        return await recover_job(spec, credentials=creds, options=options, transport=transport)


recover = _blocking(
    recover_async,
    "recover",
    """Rebuild a file checkpoint's lost or damaged journal from Twilio by marker (its run log must stand).

    The damaged files are moved aside; every contact of the plan is looked for by its marker since the
    run log's first intent, and the ones found are recorded ``sent``. Nothing is sent. The result says how
    many were found and how many were never reached (the next run sends only to those).
    """,
)


def validate(
    job: str | Path | Spec,
    *,
    frame: pl.DataFrame | pl.LazyFrame | None = None,
    overrides: Mapping[str, Any] | None = None,
    output: str | Path | None = None,
    stdin: BinaryIO | None = None,
    now: datetime | None = None,
    sandbox: bool = False,
    restart: bool = False,
    yes: bool = False,
    credentials: Credentials | None = None,
    flow: bool = False,
    transport: httpx.AsyncBaseTransport | None = None,
) -> Validation:
    """Plan the job: what would be sent, what would not, and why; no network unless ``flow``.

    Refuses exactly what ``run`` would refuse before sending (another job's or another
    Twilio's checkpoint, ``--restart`` without ``--yes``), with the same message. With
    ``flow``, also holds the job against the Flow's published revision (credentials and
    network needed; with ``sandbox``, the built-in simulator's, and nothing else): an
    unwired REST trigger raises ``FlowUnwired``, missing variables with
    ``flow.strict_variables`` raise ``ConfigError``.
    """
    spec = load_job(job, overrides, sandbox=sandbox)
    prove_validate_outputs(spec, output)
    prepared = validate_plan(spec, frame, stdin, restart=restart)
    target = offline_target(spec, None if sandbox else credentials, sandbox)
    check_binding(spec.output.checkpoint, prepared.fingerprint, target, restart=restart, yes=yes)
    refuse_period_behind(spec, sandbox=sandbox, yes=yes)
    if not flow:
        return validation(spec, prepared, flow_review=None, restart=restart, now=now, output=output)
    from .commands import held_against_flow  # noqa: PLC0415 - only --flow talks to Twilio

    with simulated(spec, keep_runs=False) if sandbox else real(spec, credentials) as (held, creds):
        found, variants, arrivals = held_against_flow(held, prepared.plan, creds, transport, now=now)
    return validation(
        spec,
        prepared,
        flow_review=found,
        restart=restart,
        now=now,
        output=output,
        variant_flows=variants,
        arrivals=arrivals,
    )


def status(
    job: str | Path | Spec,
    *,
    overrides: Mapping[str, Any] | None = None,
    now: datetime | None = None,
    period: str | None = None,
    sandbox: bool = False,
) -> Status:
    """Counts by status from the checkpoint alone; sends nothing, works while a run is going on."""
    from .commands import job_status  # noqa: PLC0415 - each command loads what it needs

    return job_status(load_job(job, overrides, period=period, sandbox=sandbox, latest=True), now)


def report(
    job: str | Path | Spec,
    *,
    overrides: Mapping[str, Any] | None = None,
    output: str | Path | None = None,
    period: str | None = None,
    sandbox: bool = False,
    html: str | Path | None = None,
) -> tuple[str | None, dict[str, int]]:
    """The results table again from the checkpoint (with ``html`` alone, only the page): where, and the counts."""
    from .commands import guarded_report  # noqa: PLC0415 - each command loads what it needs

    spec = load_job(job, overrides, period=period, sandbox=sandbox, latest=True)
    return guarded_report(spec, output, html, sandbox=sandbox)


async def sweep_async(
    job: str | Path | Spec,
    *,
    credentials: Credentials | None = None,
    overrides: Mapping[str, Any] | None = None,
    period: str | None = None,
    sandbox: bool = False,
    older_than: float = DEFAULT_OLDER_THAN,
    yes: bool = False,
    transport: httpx.AsyncBaseTransport | None = None,
) -> Sweep:
    """:func:`sweep` for callers that already run an event loop."""
    spec = load_job(job, overrides, period=period, sandbox=sandbox, latest=True)
    with simulated(spec) if sandbox else real(spec, credentials) as (spec, creds):
        return await sweep_job(
            spec, credentials=creds, older_than=older_than, yes=yes, sandbox=sandbox, transport=transport
        )


sweep = _blocking(
    sweep_async,
    "sweep",
    """End this job's own runs still active and older than ``older_than`` seconds; a dry run unless ``yes``.

    A run counts as the job's only when its Context carries a marker of one of the job's
    checkpoints (any period); any other run is listed and left alone. Refuses
    (``UsageError``) a job with ``api = "engagements"``. The result lists each active run
    with what was (or would be) done and why, and the exit code the CLI gives. With
    ``sandbox``, the rehearsal's runs on the built-in simulator, and nothing else.
    """,
)


async def collect_async(
    job: str | Path | Spec,
    *,
    credentials: Credentials | None = None,
    overrides: Mapping[str, Any] | None = None,
    options: CollectOptions | None = None,
    period: str | None = None,
    control: RunControl | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
    on_progress: Callable[[CollectProgress], None] | None = None,
    simulator: SandboxConfig | None = None,
) -> CollectResult:
    """:func:`collect` for callers that already run an event loop."""
    from .collector import CollectOptions, collect_job  # noqa: PLC0415 - each command loads what it needs
    from .commands import guarded_collect  # noqa: PLC0415 - each command loads what it needs

    options = options or CollectOptions()
    spec = load_job(job, overrides, period=period, sandbox=options.sandbox, latest=True)
    guarded_collect(spec, options.output, sandbox=options.sandbox)
    with simulated(spec, config=simulator) if options.sandbox else real(spec, credentials) as (spec, creds):
        return await collect_job(
            spec, credentials=creds, options=options, control=control, transport=transport, on_progress=on_progress
        )


collect = _blocking(
    collect_async,
    "collect",
    """Fetch what happened in each run of a job that has run: status, ``[collect.fields]``, message delivery.

    Reads the job's checkpoint (never locks it: a ``run`` may be going on), fetches only
    what can still change, and writes ``output.outcomes``. ``options`` picks
    ``refresh``, ``wait`` (poll until every run ended), ``max_duration`` and ``sandbox``
    (the rehearsal's checkpoint, its runs served by the built-in simulator in-process, or
    by ``simulator``'s; nothing else is asked). The result holds the outcomes as a polars DataFrame,
    counts by ``run_status`` and the exit code the CLI would give.
    """,
)
