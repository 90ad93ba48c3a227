"""Between periods of a periodic job: which period has the newest checkpoint, and settling the previous one."""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import polars as pl
import structlog

from ..checkpoint import checkpoint_exists, checkpoint_meta, is_postgres, jobs_beside, read_checkpoint
from ..credentials import Credentials
from ..errors import PeriodUnsettled
from ..job import Spec, is_period, previous_period, render_period
from ..results import build_results, counts_by_status
from ..runner import RunOptions, run_job
from ..states import POSSIBLY_SENT
from ..twilio import PAST_RETENTION

__all__ = ["job_tokens", "latest_period", "settle_previous_period"]

log = structlog.get_logger(__name__)

_PERIOD_IN_NAME = re.compile(r"\d{4}-(?:W\d{2}|\d{2}-\d{2}|\d{2})")


def _as_run(spec: Spec, sandbox: bool) -> Spec:
    return spec.rehearsal() if sandbox else spec


def latest_period(spec: Spec, *, sandbox: bool) -> Spec:
    """``spec`` for the newest period that has a checkpoint (``spec`` itself when its own exists, or none does)."""
    kind = spec.job.period_kind
    assert kind is not None and spec.job.period is not None
    current = _as_run(spec, sandbox)
    if checkpoint_exists(current.output.checkpoint):
        return spec
    found = (
        _periods_in_database(spec, sandbox)
        if is_postgres(current.output.checkpoint)
        else _periods_on_disk(spec, sandbox)
    )
    return spec.for_period(max(found)) if found else spec


def _periods_in_database(spec: Spec, sandbox: bool) -> list[str]:
    kind = spec.job.period_kind
    assert kind is not None
    location = _as_run(spec, sandbox).output.checkpoint
    # Every job in the schema is a candidate; a period counts only if it renders to that very key.
    return [
        candidate
        for other in jobs_beside(location)
        for candidate in _PERIOD_IN_NAME.findall(other.rsplit("#", 1)[-1])
        if is_period(kind, candidate) and _as_run(spec.for_period(candidate), sandbox).output.checkpoint == other
    ]


def _periods_on_disk(spec: Spec, sandbox: bool) -> list[str]:
    kind = spec.job.period_kind
    assert kind is not None
    template = spec.output.checkpoint_template or spec.output.checkpoint
    pattern = render_period(template, {"id": render_period(spec.job.template, {kind: "*"}), kind: "*"})
    suffix = ".sandbox" if sandbox else ""
    found: list[str] = []
    for path in Path(pattern).parent.glob(Path(pattern).name + suffix):
        stem = path.name.removesuffix(suffix)
        for candidate in _PERIOD_IN_NAME.findall(stem):
            if is_period(kind, candidate) and Path(spec.for_period(candidate).output.checkpoint).name == stem:
                found.append(candidate)
    return found


def _set_aside(location: str) -> list[str]:
    """Checkpoints ``--restart`` moved aside: files ``<name>.<stamp>.old``, keys ``<key>@<stamp>.old``."""
    if is_postgres(location):
        prefix = location + "@"
        return [other for other in jobs_beside(location) if other.startswith(prefix) and other.endswith(".old")]
    path = Path(location)
    return [str(p) for p in path.parent.glob(path.name + ".*.old")]


def job_tokens(spec: Spec, *, sandbox: bool) -> dict[str, str]:
    """The marker token of every checkpoint this job has had (each period's, and those set aside), with whose it is.

    A run's Context carrying ``<token>:...`` was started by this job, whichever period or checkpoint it came from.
    """
    current = _as_run(spec, sandbox)
    places: list[tuple[str, str]] = [(current.output.checkpoint, f"job {spec.job.id}")]
    if spec.job.period_kind is not None:
        finder = _periods_in_database if is_postgres(current.output.checkpoint) else _periods_on_disk
        for period in sorted(set(finder(spec, sandbox)) - {spec.job.period or ""}):
            other = _as_run(spec.for_period(period), sandbox)
            places.append((other.output.checkpoint, f"job {other.job.id} (period {period})"))
    for location, whose in list(places):
        places += [(aside, f"{whose}, set aside by --restart") for aside in _set_aside(location)]
    tokens: dict[str, str] = {}
    for location, whose in places:
        token = checkpoint_meta(location).get("token")
        if token:
            tokens.setdefault(token, whose)
    return tokens


async def settle_previous_period(
    spec: Spec, credentials: Credentials, options: RunOptions, transport: httpx.AsyncBaseTransport | None
) -> None:
    """Before a new period starts: settle the last period's possibly-sent contacts; warn about its unsent ones."""
    assert spec.job.period_kind is not None and spec.job.period is not None
    previous = _as_run(spec.for_period(previous_period(spec.job.period_kind, spec.job.period)), options.sandbox)
    if not checkpoint_exists(previous.output.checkpoint, plan=True):
        return
    view = read_checkpoint(previous.output.checkpoint)
    possibly = view.journal.filter(pl.col("state").is_in([s.value for s in POSSIBLY_SENT])).height
    if possibly:
        log.info("period.settle", period=previous.job.period, rows=possibly)
        result = await run_job(
            previous,
            credentials=credentials,
            options=RunOptions(limit=0, sandbox=options.sandbox, clock=options.clock, sleep=options.sleep),
            transport=transport,
            settle_only=True,
        )
        results = result.results
        # Past Twilio's retention nothing can settle them: waiting for them would hold every later period back.
        unsettled = results.filter(
            (pl.col("status") == "uncertain") & (pl.col("error_message").fill_null("") != PAST_RETENTION)
        ).height
        if unsettled:
            raise PeriodUnsettled(
                f"{previous.output.checkpoint}: {unsettled} contacts of period "
                f"{previous.job.period} may have been sent and could not be settled yet; nothing new was sent. "
                "Run the same command again later."
            )
        view = read_checkpoint(previous.output.checkpoint)
    assert view.plan is not None
    left = counts_by_status(build_results(view.plan, view.journal)).get("pending", 0)
    if left:
        log.warning(
            "period.unsent",
            period=previous.job.period,
            rows=left,
            message=f"{left} contacts of period {previous.job.period} were never sent; they stay pending there "
            f"(run with --period {previous.job.period} to send them)",
        )
