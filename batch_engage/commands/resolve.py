"""A job resolved for a command: the file read, its period and its rehearsal twin; and for a run, once, all of it.

``load_job`` serves every command (with ``latest``: the newest period that has a checkpoint, for ``status``
and ``report``). A run is resolved by :func:`launched` in one pass: a period refused if it has not begun,
the outputs proven, the simulator started for a rehearsal, the previous period settled, and one
``Launch`` handed to the runner.
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager, nullcontext
from pathlib import Path
from typing import TYPE_CHECKING, Any

import polars as pl
import structlog

from ..checkpoint import checkpoint_exists, checkpoint_meta, checkpoints_beside, is_postgres, read_checkpoint
from ..credentials import Credentials, credentials_from_env
from ..errors import PeriodUnsettled, UsageError
from ..experiment import assign_frame
from ..job import Spec, load_spec, previous_period, prove_outputs
from ..results import build_results, counts_by_status
from ..runner import launch
from ..sandbox import SandboxConfig
from ..states import POSSIBLY_SENT, REACHED
from ..tables import prove_tables
from .rehearsal import simulated

if TYPE_CHECKING:
    import httpx

    from ..runner import Launch, RunOptions

__all__ = ["job_tokens", "launched", "load_job", "run_spec", "settle_previous_period"]

log = structlog.get_logger(__name__)


def _as_run(spec: Spec, sandbox: bool) -> Spec:
    return spec.rehearsal() if sandbox else spec


def _spec_of(job: str | Path | Spec, overrides: Mapping[str, Any] | None) -> Spec:
    if isinstance(job, Spec):
        if overrides:
            raise UsageError("overrides apply to job files; build the Spec with the values instead")
        return job
    return load_spec(job, overrides=overrides)


def run_spec(job: str | Path | Spec, overrides: Mapping[str, Any] | None = None, *, sandbox: bool = False) -> Spec:
    """The job as a run takes it (a path plus overrides, or a Spec): its current period; its twin if ``sandbox``."""
    spec = _spec_of(job, overrides)
    return spec.rehearsal() if sandbox else spec


@asynccontextmanager
async def launched(
    job: str | Path | Spec,
    overrides: Mapping[str, Any] | None,
    options: RunOptions,
    *,
    credentials: Credentials | None,
    simulator: SandboxConfig | None,
    transport: httpx.AsyncBaseTransport | None,
) -> AsyncIterator[Launch]:
    """The job resolved for one run, with its Studio (the simulator, for a rehearsal) served while it lasts.

    Everything that can refuse the job is asked before the simulator starts or anything is written.
    """
    spec = run_spec(job, overrides, sandbox=options.sandbox)
    spec.refuse_early_period(yes=options.yes)
    prove_outputs(spec)
    # A table that cannot take the rows was found only once everyone had been sent to.
    prove_tables(spec)
    tokens = job_tokens(spec, sandbox=options.sandbox) if spec.send.on_active == "end" else None
    with simulated(spec, config=simulator) if options.sandbox else nullcontext((spec, credentials)) as (spec, creds):
        resolved = launch(spec, creds or credentials_from_env(), sandbox=options.sandbox, tokens=tokens)
        if spec.job.period_kind is not None:
            await settle_previous_period(resolved, options, transport)
        yield resolved


def load_job(
    job: str | Path | Spec,
    overrides: Mapping[str, Any] | None = None,
    *,
    period: str | None = None,
    sandbox: bool = False,
    latest: bool = False,
) -> Spec:
    """A job file path (plus ``section.key`` overrides) or a ``Spec``, for a period, rehearsed on the sandbox or not.

    One pass: the job, its period (given, or with ``latest`` the newest that has a checkpoint, for ``status``
    and ``report``), and its rehearsal twin when ``sandbox``.
    """
    spec = _spec_of(job, overrides)
    if period is None and latest and spec.job.period_kind is not None:
        period = _newest_period(spec, sandbox)
    if period is not None:
        spec = spec.for_period(period)
    return _as_run(spec, sandbox)


def _newest_period(spec: Spec, sandbox: bool) -> str | None:
    """The newest period with a checkpoint; None when the current one has its own, or none has any."""
    location = _as_run(spec, sandbox).output.checkpoint
    if checkpoint_exists(location):
        return None
    found = [p for tail in checkpoints_beside(location) if (p := spec.period_of_checkpoint(tail, sandbox=sandbox))]
    return max(found, default=None)


def _set_aside(location: str, tails: list[str]) -> list[str]:
    """Checkpoints ``--restart`` moved aside: files ``<name>.<stamp>.old``, keys ``<key>@<stamp>.old``."""
    if is_postgres(location):
        base, key = location.rsplit("#", 1)
        return [f"{base}#{t}" for t in tails if t.startswith(key + "@") and t.endswith(".old")]
    path = Path(location)
    return [str(path.with_name(t)) for t in tails if t.startswith(path.name + ".") and t.endswith(".old")]


def job_tokens(spec: Spec, *, sandbox: bool) -> dict[str, str]:
    """The marker token of every checkpoint this job has had (each period's, and those set aside), with whose it is.

    A run's Context carrying ``<token>:...`` was started by this job, whichever period or checkpoint it came from.
    """
    location = _as_run(spec, sandbox).output.checkpoint
    tails = checkpoints_beside(location)
    places: list[tuple[str, str]] = [(location, f"job {spec.job.id}")]
    if spec.job.period_kind is not None:
        periods = {p for tail in tails if (p := spec.period_of_checkpoint(tail, sandbox=sandbox))}
        for period in sorted(periods - {spec.job.period or ""}):
            other = _as_run(spec.for_period(period), sandbox)
            places.append((other.output.checkpoint, f"job {other.job.id} (period {period})"))
    for place, whose in list(places):
        places += [(aside, f"{whose}, set aside by --restart") for aside in _set_aside(place, tails)]
    tokens: dict[str, str] = {}
    for place, whose in places:
        token = checkpoint_meta(place).get("token")
        if token:
            tokens.setdefault(token, whose)
    return tokens


async def settle_previous_period(
    current: Launch, options: RunOptions, transport: httpx.AsyncBaseTransport | None
) -> None:
    """Before a new period starts: settle the last period's possibly-sent contacts; warn about its unsent ones."""
    from ..runner import RunOptions, run_job  # noqa: PLC0415 - load_job, which every command uses, needs no runner
    from ..twilio import AT_RETENTION, PAST_RETENTION  # noqa: PLC0415

    spec = current.spec
    assert spec.job.period_kind is not None and spec.job.period is not None
    previous = _as_run(spec.for_period(previous_period(spec.job.period_kind, spec.job.period)), options.sandbox)
    if not checkpoint_exists(previous.output.checkpoint, plan=True):
        return
    view = read_checkpoint(previous.output.checkpoint)
    possibly = view.journal.filter(pl.col("state").is_in([s.value for s in POSSIBLY_SENT])).height
    if possibly:
        log.info("period.settle", period=previous.job.period, rows=possibly)
        prove_outputs(previous)
        # The same Flow, Studio and credentials, so the same launch but for its Spec (a fingerprint knows no period).
        # A rehearsal's simulator is this period's, though: the last period's simulated runs are not in it.
        result = await run_job(
            dataclasses.replace(current, spec=previous, tokens={}),
            options=RunOptions(limit=0, sandbox=options.sandbox, clock=options.clock, sleep=options.sleep),
            transport=transport,
            settle_only=True,
        )
        results = result.results
        # Past Twilio's retention nothing can settle them: waiting for them would hold every later period back.
        unsettled = results.filter(
            (pl.col("status") == "uncertain") & ~pl.col("error_message").is_in([PAST_RETENTION, AT_RETENTION])
        ).height
        if unsettled:
            raise PeriodUnsettled(
                f"{previous.output.checkpoint}: {unsettled} contacts of period "
                f"{previous.job.period} may have been sent and could not be settled yet; nothing new was sent. "
                "Run the same command again later."
            )
        view = read_checkpoint(previous.output.checkpoint)
    assert view.plan is not None
    _warn_experiment_changed(spec, previous.job.period, view.journal)
    left = counts_by_status(build_results(view.plan, view.journal)).get("pending", 0)
    if left:
        log.warning(
            "period.unsent",
            period=previous.job.period,
            rows=left,
            message=f"{left} contacts of period {previous.job.period} were never sent; they stay pending there "
            f"(run with --period {previous.job.period} and that period's own list to send them)",
        )


def _warn_experiment_changed(spec: Spec, period: str | None, journal: pl.DataFrame) -> None:
    """Say so when contacts the last period sent a variant would get another now (weights or holdout changed).

    Each period has its own checkpoint, so what a contact was sent there is not kept here: with other weights, the
    same person moved from A to B overnight without a word.
    """
    if spec.experiment is None or "variant" not in journal.columns:
        return
    reached = [s.value for s in REACHED]
    sent = journal.filter(pl.col("variant").is_not_null() & pl.col("state").is_in(reached))
    if sent.is_empty():
        return
    now = assign_frame(sent.select("contact", pl.col("variant").alias("was")), spec.experiment)
    moved = now.filter(pl.col("variant") != pl.col("was")).height
    if moved:
        log.warning(
            "period.experiment_changed",
            period=period,
            rows=moved,
            message=f"{moved} contacts sent a variant in period {period} would get another now: the [experiment] "
            "changed (weights, holdout or variants); keep it as it was while the experiment runs",
        )
