"""The preflight: before any row is sent, prove the credentials and that the Flow is published and wired.

It also holds the job against the published definition (missing variables warn, or refuse
under ``strict_variables``) and logs our clock's offset from Twilio's.
"""

from __future__ import annotations

import asyncio
from typing import Any

import polars as pl
import structlog

from ..checkpoint import CheckpointStore
from ..errors import ConfigError, FlowNotFound, FlowUnwired, StudioError
from ..flow import FlowWiringError, log_findings, reply_conflicts, review, waits_for_replies
from ..job import Spec
from ..twilio import PacedReads, StudioClient

__all__ = ["CLOCK_WARNING_SECONDS", "check_flow", "preflight", "variant_parts"]

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
        await asyncio.to_thread(cp.learn_account, account)
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


async def preflight(
    spec: Spec,
    plan: pl.DataFrame,
    client: StudioClient,
    reads: PacedReads,
    cp: CheckpointStore,
    *,
    sandbox: bool,
    flow_info: dict[str, Any] | None = None,
) -> StudioError | None:
    """Prove credentials and a published Flow (each variant's, in an experiment) before any row is sent.

    Returns the reason to abort, or None. Raises the ``StudioError`` of a Studio it could not
    reach (nothing was sent: try again later).
    ``flow_info``, if given, receives the first Flow as Studio described it (its friendly name, its account).
    """
    aborted: StudioError | None = None
    published: dict[str, dict[str, Any]] = {}
    for _, part, rows in variant_parts(spec, plan):
        sid = part.flow.sid
        if sid not in published:
            found = await _fetch(part, client.for_flow(sid), reads, cp, sandbox=sandbox, flow_info=flow_info)
            flow_info = None  # the first Flow names the send; the others are the variants'.
            if isinstance(found, StudioError):
                aborted = found
                break
            published[sid] = found
        aborted = check_flow(part, rows, published[sid])
        if aborted is not None:
            break
    if aborted is not None:
        log.error("run.aborted", reason=aborted.message, http_status=aborted.http_status)
    else:
        waits = {sid: waits_for_replies(_definition(p)) for sid, p in published.items()}
        for warning in reply_conflicts(spec, waits):
            log.warning("experiment.replies", message=warning)
    _log_clock(client)
    return aborted


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
    return published
