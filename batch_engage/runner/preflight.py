"""The preflight: before any row is sent, prove the credentials and that the Flow is published and wired.

It also holds the job against the published definition (missing variables warn, or refuse
under ``strict_variables``), checks whether the campaign can arrive (``arrival``: the
projection is logged, a slow sender warns, replies that go to another Flow or nowhere
refuse unless ``[flow] replies = "elsewhere"``), and logs our clock's offset from Twilio's.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import polars as pl
import structlog

from ..arrival import Arrival, check_arrival, log_capacity, refusal
from ..checkpoint import CheckpointStore
from ..errors import ConfigError, FlowNotFound, FlowUnwired, RepliesLost, StudioError
from ..flow import FlowWiringError, log_findings, review
from ..job import Spec
from ..twilio import PacedReads, StudioClient

__all__ = ["CLOCK_WARNING_SECONDS", "Preflight", "check_flow", "preflight"]

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


@dataclass(frozen=True)
class Preflight:
    """What the preflight found: the reason to abort (None: go), and the arrival check of the Flow."""

    aborted: StudioError | None
    arrival: Arrival | None = None


async def _arrival(
    spec: Spec,
    plan: pl.DataFrame,
    client: StudioClient,
    reads: PacedReads,
    flow: dict[str, Any],
    where: tuple[datetime, str | None, str | None],
) -> tuple[Arrival | None, StudioError | None]:
    """The arrival check of the published Flow: the projection logged, replies that cannot arrive refused."""
    definition = flow.get("definition")
    if not isinstance(definition, dict):
        return None, None
    account = flow.get("account_sid")
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
) -> Preflight:
    """Prove credentials and a published Flow before any row is sent; the reason to abort (or None), the arrival.

    ``reads``: Studio's paced reads, and the arrival check's (other APIs, their own pace).

    Raises the ``StudioError`` of a Studio it could not reach (nothing was sent: try again later).
    """
    aborted: StudioError | None = None
    arrival: Arrival | None = None
    try:
        flow, published = await _published(client, reads[0], cp, sandbox=sandbox)
    except FlowNotFound as exc:
        aborted = exc
    except StudioError as exc:
        if exc.http_status not in (401, 403) and exc.code != 20003:
            raise
        aborted = exc
    else:
        if published is None:
            aborted = FlowNotFound(
                f"the Flow {spec.flow.sid} has no published revision: publish it in the Studio console"
            )
        else:
            if flow.get("revision") != published.get("revision"):
                log.warning(
                    "flow.draft",
                    message=f"the Flow has a newer unpublished draft (revision {flow.get('revision')}); "
                    f"runs will use revision {published.get('revision')}, the last published",
                )
            aborted = check_flow(spec, plan, published)
            if aborted is None:
                arrival, aborted = await _arrival(
                    spec, plan, client, reads[1], published | _account(flow), (now, region, edge)
                )
    if aborted is not None:
        log.error("run.aborted", reason=aborted.message, http_status=aborted.http_status)
    _log_clock(client)
    return Preflight(aborted, arrival)


def _account(flow: dict[str, Any]) -> dict[str, Any]:
    """The Flow's account (a revision may not name it)."""
    account = flow.get("account_sid")
    return {"account_sid": account} if isinstance(account, str) and account else {}
