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
from ..flow import FlowWiringError, log_findings, review
from ..job import Spec
from ..twilio import PacedReads, StudioClient

__all__ = ["CLOCK_WARNING_SECONDS", "check_flow", "preflight"]

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


async def preflight(
    spec: Spec,
    plan: pl.DataFrame,
    client: StudioClient,
    reads: PacedReads,
    cp: CheckpointStore,
    *,
    sandbox: bool,
    found: dict[str, Any] | None = None,
) -> StudioError | None:
    """Prove credentials and a published Flow before any row is sent; the reason to abort, or None.

    Raises the ``StudioError`` of a Studio it could not reach (nothing was sent: try again later).
    ``found``, if given, receives the Flow as Studio described it (its friendly name, its account).
    """
    aborted: StudioError | None = None
    try:
        flow, published = await _published(client, reads, cp, sandbox=sandbox)
    except FlowNotFound as exc:
        aborted = exc
    except StudioError as exc:
        if exc.http_status not in (401, 403) and exc.code != 20003:
            raise
        aborted = exc
    else:
        if found is not None:
            found.update(flow)
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
    if aborted is not None:
        log.error("run.aborted", reason=aborted.message, http_status=aborted.http_status)
    _log_clock(client)
    return aborted
