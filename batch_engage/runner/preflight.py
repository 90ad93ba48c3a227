"""The preflight: before any row is sent, prove the credentials and that the Flow is published and wired.

It also holds the job against the published definition (missing variables warn, or refuse
under ``strict_variables``), checks whether the campaign can arrive (``arrival``, per Flow: the
projection is logged, a slow sender warns, replies that go to another Flow or nowhere refuse
unless ``[flow] replies = "elsewhere"``), and logs our clock's offset from Twilio's.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import polars as pl
import structlog

from ..arrival import Arrival, check_arrival, log_capacity, refusal
from ..checkpoint import CheckpointStore
from ..errors import ConfigError, FlowNotFound, FlowUnwired, RepliesLost, StudioError
from ..flow import FlowWiringError, log_findings, reply_conflicts, review, waits_for_replies
from ..job import Spec
from ..twilio import PacedReads, StudioClient
from .offloop import off_loop

__all__ = ["CLOCK_WARNING_SECONDS", "Preflight", "check_flow", "preflight", "variant_parts"]

log = structlog.get_logger(__name__)

CLOCK_WARNING_SECONDS = 5.0


def check_flow(spec: Spec, plan: pl.DataFrame, published: dict[str, Any]) -> StudioError | None:
    """Hold the job against the published Flow: an unwired trigger aborts; missing variables warn (or refuse)."""
    if not isinstance(published.get("definition"), dict):
        log.warning("flow.unchecked", message="the published revision has no readable definition: not checked")
        return None
    try:
        found = review(spec, plan, published)
    except FlowWiringError as exc:
        return FlowUnwired(str(exc))
    log_findings(found)
    if found.check.missing and spec.flow.strict_variables:
        names = ", ".join(f"flow.data.{v.path} ({', '.join(v.widgets)})" for v in found.check.missing)
        raise ConfigError(
            "flow.strict_variables",
            f"the Flow prints {names}, which the job does not supply; map it or give it a default in the Flow. "
            "Nothing was sent.",
        )
    return None


async def _published(
    client: StudioClient, reads: PacedReads, cp: CheckpointStore, *, sandbox: bool
) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """The Flow and its published revision; the Flow's account is learnt into the checkpoint."""
    flow = await reads.call("flow", client.fetch_flow)
    account = flow.get("account_sid")
    if isinstance(account, str) and account and not sandbox:
        await off_loop(cp.learn_account, account)
    return flow, await reads.call("published revision", client.fetch_published)


def _log_clock(client: StudioClient) -> None:
    offset = client.clock.offset
    log.info("clock.offset", twilio_minus_ours=None if offset is None else round(offset, 3))
    if offset is not None and abs(offset) > CLOCK_WARNING_SECONDS:
        log.warning(
            "clock.skew",
            seconds=round(offset, 1),
            message="this machine's clock and Twilio's differ; batch-engage uses Twilio's, but check NTP",
        )


def variant_parts(spec: Spec, plan: pl.DataFrame) -> list[tuple[str | None, Spec, pl.DataFrame]]:
    """The job as each variant sends it (its Flow, its Parameters) with the plan's rows of that variant.

    A job without an experiment is one part, named None.
    """
    experiment = spec.experiment
    if experiment is None or "variant" not in plan.columns:
        return [(None, spec, plan)]
    return [(v.name, spec.for_variant(v), plan.filter(pl.col("variant") == v.name)) for v in experiment.variants]


@dataclass(frozen=True)
class Preflight:
    """What the preflight found: the reason to abort (None: go), and each Flow's arrival check."""

    aborted: StudioError | None
    arrivals: tuple[Arrival, ...] = ()


async def _arrival(
    spec: Spec,
    plan: pl.DataFrame,
    client: StudioClient,
    reads: PacedReads,
    published: dict[str, Any],
    where: tuple[datetime, str | None, str | None],
) -> tuple[Arrival | None, StudioError | None]:
    """One Flow's arrival check: the projection logged, replies that cannot arrive refused."""
    definition = published.get("definition")
    if not isinstance(definition, dict):
        return None, None
    account = published.get("account_sid")
    arrival = await check_arrival(
        spec,
        plan,
        definition,
        http=client.http,
        reads=reads,
        account_sid=account if isinstance(account, str) else None,
        now=where[0],
        region=where[1],
        edge=where[2],
    )
    log_capacity(arrival.capacity)
    reason = refusal(spec, arrival)
    return arrival, RepliesLost(reason) if reason else None


async def preflight(
    spec: Spec,
    plan: pl.DataFrame,
    client: StudioClient,
    reads: tuple[PacedReads, PacedReads],
    cp: CheckpointStore,
    *,
    sandbox: bool,
    now: datetime,
    region: str | None = None,
    edge: str | None = None,
    flow_info: dict[str, Any] | None = None,
) -> Preflight:
    """Prove credentials and a published Flow (each variant's, in an experiment) before any row is sent.

    Returns the reason to abort (or None) and each Flow's arrival check. ``reads``: Studio's paced
    reads, and the arrival check's (other APIs, their own pace). Raises the ``StudioError`` of a
    Studio it could not reach (nothing was sent: try again later).
    ``flow_info``, if given, receives the first Flow as Studio described it (its friendly name, its account).
    """
    aborted: StudioError | None = None
    published: dict[str, dict[str, Any]] = {}
    parts = variant_parts(spec, plan)
    for _, part, rows in parts:
        sid = part.flow.sid
        if sid not in published:
            found = await _fetch(part, client.for_flow(sid), reads[0], cp, sandbox=sandbox, flow_info=flow_info)
            flow_info = None  # the first Flow names the send; the others are the variants'.
            if isinstance(found, StudioError):
                aborted = found
                break
            published[sid] = found
        aborted = check_flow(part, rows, published[sid])
        if aborted is not None:
            break
    arrivals: list[Arrival] = []
    if aborted is None:
        waits = {sid: waits_for_replies(_definition(p)) for sid, p in published.items()}
        for warning in reply_conflicts(spec, waits):
            log.warning("experiment.replies", message=warning)
        for _, part, rows in parts:
            sid = part.flow.sid
            arrival, aborted = await _arrival(part, rows, client, reads[1], published[sid], (now, region, edge))
            arrivals.extend([arrival] if arrival is not None else [])
            if aborted is not None:
                break
    if aborted is not None:
        log.error("run.aborted", reason=aborted.message, http_status=aborted.http_status)
    _log_clock(client)
    return Preflight(aborted, tuple(arrivals))


def _definition(published: dict[str, Any]) -> dict[str, Any]:
    definition = published.get("definition")
    return definition if isinstance(definition, dict) else {}


async def _fetch(
    spec: Spec,
    client: StudioClient,
    reads: PacedReads,
    cp: CheckpointStore,
    *,
    sandbox: bool,
    flow_info: dict[str, Any] | None = None,
) -> dict[str, Any] | StudioError:
    """One Flow's published revision, or the reason to abort (missing, unpublished, credentials refused)."""
    try:
        flow, published = await _published(client, reads, cp, sandbox=sandbox)
    except FlowNotFound as exc:
        return exc
    except StudioError as exc:
        if exc.http_status not in (401, 403) and exc.code != 20003:
            raise
        return exc
    if flow_info is not None:
        flow_info.update(flow)
    if published is None:
        return FlowNotFound(f"the Flow {spec.flow.sid} has no published revision: publish it in the Studio console")
    if flow.get("revision") != published.get("revision"):
        log.warning(
            "flow.draft",
            flow=spec.flow.sid,
            message=f"the Flow has a newer unpublished draft (revision {flow.get('revision')}); "
            f"runs will use revision {published.get('revision')}, the last published",
        )
    account = flow.get("account_sid")
    # A revision may not name its account; the arrival check reads the account's numbers.
    return published | ({"account_sid": account} if isinstance(account, str) and account else {})
