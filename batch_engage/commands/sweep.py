"""``sweep``: end this job's own runs that are still active (a dry run unless ``yes``).

The runs are the checkpoint's SIDs; each is read on the Flow that holds it (its variant's, in an
experiment), paced and retried like every read, and
ended only when its Context carries a marker of one of this job's checkpoints (any period)
and it is older than ``older_than`` on Twilio's clock. Another job's run, another sender's
or an inbound conversation is listed and left alone. v1 Engagements have no documented
update, so a job with ``api = "engagements"`` is refused.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING

import polars as pl
import structlog

from ..checkpoint import read_checkpoint
from ..credentials import Credentials
from ..errors import StudioError, UsageError
from ..exits import EXIT_OK, EXIT_TEMPFAIL
from ..job import Spec
from ..twilio import studio_base_url
from .owned import refuse_foreign_checkpoint
from .resolve import job_tokens

if TYPE_CHECKING:
    import httpx

    from ..runner import Verdict
    from ..twilio import PacedReads, StudioClient

__all__ = ["DEFAULT_OLDER_THAN", "Sweep", "SweptRun", "sweep_job"]

log = structlog.get_logger(__name__)

DEFAULT_OLDER_THAN = 86400.0


@dataclass(frozen=True)
class SweptRun:
    """One active run the sweep looked at: what it did (or would do) with it, and why."""

    sid: str
    row: int
    action: str  # "ended", "would end", "left active" (ours, not ended yet), "not ours"
    reason: str


@dataclass(frozen=True)
class Sweep:
    """What a sweep found among the checkpoint's runs still active, and the exit code the CLI gives."""

    runs: list[SweptRun]
    checked: int
    dry_run: bool

    def count(self, action: str) -> int:
        """How many runs got ``action``."""
        return sum(r.action == action for r in self.runs)

    @property
    def exit_code(self) -> int:
        """0 when none of this job's runs is left active (always, for a dry run); 75 when some could not be ended."""
        return EXIT_TEMPFAIL if not self.dry_run and self.count("left active") else EXIT_OK


def _runs_of(spec: Spec) -> list[tuple[str, int, str]]:
    """Each SID the checkpoint names (sent, already active, waited on), once, with its row and the Flow that holds
    it (its variant's, in an experiment, as ``collect`` reads it)."""
    view = read_checkpoint(spec.output.checkpoint)
    lines = view.journal.filter(pl.col("sid").is_not_null()).select("sid", "row", "variant")
    experiment, default = spec.experiment, spec.flow.sid
    return [
        (sid, row, experiment.flow_of(variant, default) if experiment is not None and variant else default)
        for sid, row, variant in lines.unique("sid", maintain_order=True).iter_rows()
    ]


async def sweep_job(
    spec: Spec,
    *,
    credentials: Credentials,
    older_than: float = DEFAULT_OLDER_THAN,
    yes: bool = False,
    sandbox: bool = False,
    transport: httpx.AsyncBaseTransport | None = None,
) -> Sweep:
    """Look at every run the checkpoint names; end (with ``yes``) the active ones proven this job's and old enough."""
    if spec.flow.api == "engagements":
        raise UsageError(
            "sweep: Twilio documents no way to end a v1 Engagement but deleting it (flow.api = 'engagements'); "
            "nothing was ended"
        )
    # Another job's checkpoint (--checkpoint) would have that job's runs ended as this job's own.
    refuse_foreign_checkpoint(spec, "sweep", sandbox=sandbox, nothing="nothing was ended", credentials=credentials)
    # The API's default above is this module's: the HTTP client loads only when a sweep runs.
    from ..twilio import READ_ATTEMPTS, PacedReads, Pacer, StudioClient, make_http_client  # noqa: PLC0415

    runs = _runs_of(spec)
    tokens = job_tokens(spec, sandbox=sandbox)
    http = make_http_client(
        username=credentials.username,
        password=credentials.password,
        concurrency=spec.send.concurrency,
        connect_timeout=spec.send.connect_timeout,
        read_timeout=spec.send.read_timeout,
        transport=transport,
    )
    async with http:
        base_url = studio_base_url(spec.flow, region=credentials.region, edge=credentials.edge)
        client = StudioClient(http, base_url=base_url, flow_sid=spec.flow.sid, api=spec.flow.api)
        reads = PacedReads(
            Pacer(spec.send.rate), sleep=asyncio.sleep, attempts=READ_ATTEMPTS, max_backoff=spec.send.max_backoff
        )
        found: list[SweptRun] = []
        for sid, row, flow in runs:
            swept = await _one(
                client.for_flow(flow),
                reads,
                sid,
                row,
                tokens=tokens,
                marker_key=spec.send.marker_key,
                yes=yes,
                older_than=older_than,
            )
            if swept is not None:
                found.append(swept)
    result = Sweep(found, checked=len(runs), dry_run=not yes)
    log.info(
        "sweep.done",
        checked=result.checked,
        ended=result.count("ended"),
        would_end=result.count("would end"),
        left_active=result.count("left active"),
        not_ours=result.count("not ours"),
    )
    return result


async def _one(
    client: StudioClient,
    reads: PacedReads,
    sid: str,
    row: int,
    *,
    tokens: dict[str, str],
    marker_key: str,
    yes: bool,
    older_than: float,
) -> SweptRun | None:
    """What to do with one run; None when it is no longer active (or gone)."""
    from ..runner import judge_run  # noqa: PLC0415 - with the HTTP client, only when a sweep runs

    try:
        verdict = await judge_run(client, reads, sid, tokens=tokens, marker_key=marker_key)
    except StudioError as exc:
        return None if exc.http_status == 404 else SweptRun(sid, row, "left active", f"unreadable: {exc.message}")
    action, reason = _decide(verdict, older_than=older_than, yes=yes)
    if action == "end":
        try:
            await reads.call("end", partial(client.end_run, sid))
        except StudioError as exc:
            return SweptRun(sid, row, "left active", f"{reason}: ending it failed ({exc.message})")
        log.info("sweep.ended", sid=sid, row=row, whose=verdict.whose)
        action = "ended"
    return SweptRun(sid, row, action, reason) if action else None


def _decide(verdict: Verdict, *, older_than: float, yes: bool) -> tuple[str, str]:
    """The action for a judged run ("" for one no longer active, "end" to end it now) and why."""
    if not verdict.active:
        return "", verdict.reason
    if verdict.whose is None:
        return "not ours", verdict.reason
    age = verdict.age or 0.0
    if age < older_than:
        return "left active", f"{verdict.reason}, {age:.0f} s old: younger than --older-than"
    return ("end" if yes else "would end"), f"{verdict.reason}, {age:.0f} s old"
