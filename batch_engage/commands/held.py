"""``validate --flow``: the Flow's published revision held against the plan, and will it arrive.

Apart from the dry run itself (``validate``), so that a dry run without ``--flow`` loads no HTTP client.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import httpx
import polars as pl
import structlog

from ..arrival import Arrival, check_arrival, log_capacity
from ..credentials import Credentials
from ..errors import ConfigError, FlowNotFound, FlowUnwired
from ..flow import FlowReview, FlowWiringError, log_findings, reply_conflicts, review, waits_for_replies
from ..job import Spec
from ..twilio import PacedReads, Pacer, StudioClient, check_base_url, make_http_client, studio_base_url

__all__ = ["held_against_flow", "review_flow", "review_variants"]

log = structlog.get_logger(__name__)


def review_flow(
    spec: Spec,
    plan: pl.DataFrame,
    credentials: Credentials,
    transport: httpx.AsyncBaseTransport | None,
    *,
    published: dict[str, Any] | None = None,
) -> FlowReview:
    """Hold the plan against the Flow's published revision; raise what ``run``'s preflight would refuse."""
    if published is None:
        published = asyncio.run(_published(spec, credentials, transport))
    try:
        found = review(spec, plan, published)
    except FlowWiringError as exc:
        raise FlowUnwired(str(exc)) from None
    log_findings(found)
    if found.check.missing and spec.flow.strict_variables:
        names = ", ".join(f"flow.data.{v.path}" for v in found.check.missing)
        raise ConfigError("flow.strict_variables", f"the Flow prints {names}, which the job does not supply")
    return found


def project_arrival(
    spec: Spec,
    plan: pl.DataFrame,
    credentials: Credentials,
    transport: httpx.AsyncBaseTransport | None,
    *,
    now: datetime | None = None,
) -> tuple[Arrival, ...]:
    """Will it arrive, per Flow (each variant's rows with its Flow, in an experiment): logged, and returned."""
    experiment = spec.experiment
    parts = (
        [(spec.for_variant(v), plan.filter(pl.col("variant") == v.name)) for v in experiment.variants]
        if experiment is not None and "variant" in plan.columns
        else [(spec, plan)]
    )
    found = asyncio.run(_arrivals(parts, credentials, transport, now or datetime.now(UTC)))
    for arrival in found:
        log_capacity(arrival.capacity)
    return found


def held_against_flow(
    spec: Spec,
    plan: pl.DataFrame,
    credentials: Credentials,
    transport: httpx.AsyncBaseTransport | None,
    *,
    now: datetime | None,
) -> tuple[FlowReview | None, tuple[dict[str, FlowReview], list[str]], tuple[Arrival, ...]]:
    """``--flow``: the Flow's review (each variant's, in an experiment), and will it arrive."""
    # The review first: it names what the run would refuse (no Flow, nothing published, unwired).
    variants = review_variants(spec, plan, credentials, transport) if spec.experiment is not None else None
    found = next(iter(variants[0].values()), None) if variants else review_flow(spec, plan, credentials, transport)
    return found, variants or ({}, []), project_arrival(spec, plan, credentials, transport, now=now)


def _studio_http(
    spec: Spec, credentials: Credentials, transport: httpx.AsyncBaseTransport | None
) -> tuple[str, httpx.AsyncClient]:
    """The Studio base URL (checked) and a small client for validate's reads, with the job's timeouts."""
    base_url = studio_base_url(spec.flow, region=credentials.region, edge=credentials.edge)
    check_base_url(base_url)
    http = make_http_client(
        username=credentials.username,
        password=credentials.password,
        concurrency=2,
        connect_timeout=spec.send.connect_timeout,
        read_timeout=spec.send.read_timeout,
        transport=transport,
    )
    return base_url, http


async def _arrivals(
    parts: list[tuple[Spec, pl.DataFrame]],
    credentials: Credentials,
    transport: httpx.AsyncBaseTransport | None,
    now: datetime,
) -> tuple[Arrival, ...]:
    """Each part's arrival check, over one connection: its Flow's published definition, its senders' set-up."""
    spec = parts[0][0]
    base_url, http = _studio_http(spec, credentials, transport)
    found = []
    async with http:
        reads = PacedReads(Pacer(spec.send.rate), sleep=asyncio.sleep, attempts=6, max_backoff=60.0)
        for part, rows in parts:
            client = StudioClient(http, base_url=base_url, flow_sid=part.flow.sid, api=part.flow.api)
            published = await reads.call("published revision", client.fetch_published)
            definition = published.get("definition") if published else None
            if not isinstance(definition, dict):
                continue
            account = published.get("account_sid") if published else None
            try:
                arrival = await check_arrival(
                    part,
                    rows,
                    definition,
                    http=http,
                    reads=reads,
                    account_sid=account if isinstance(account, str) else None,
                    now=now,
                    region=credentials.region,
                    edge=credentials.edge,
                )
            except FlowWiringError:
                continue  # the review names the wiring problem
            found.append(arrival)
    return tuple(found)


def review_variants(
    spec: Spec, plan: pl.DataFrame, credentials: Credentials, transport: httpx.AsyncBaseTransport | None
) -> tuple[dict[str, FlowReview], list[str]]:
    """Each variant's Flow (fetched once per Flow) held against that variant's rows and Parameters; and the
    warnings about replies that two variant Flows sharing one sender would split."""
    experiment = spec.experiment
    if experiment is None:
        return {}, []
    published: dict[str, dict[str, Any]] = {}
    reviews: dict[str, FlowReview] = {}
    for variant in experiment.variants:
        part = spec.for_variant(variant)
        if part.flow.sid not in published:
            published[part.flow.sid] = asyncio.run(_published(part, credentials, transport))
        rows = plan.filter(pl.col("variant") == variant.name)
        reviews[variant.name] = review_flow(part, rows, credentials, transport, published=published[part.flow.sid])
    waits = {sid: waits_for_replies(p.get("definition") or {}) for sid, p in published.items()}
    warnings = reply_conflicts(spec, waits)
    for warning in warnings:
        log.warning("experiment.replies", message=warning)
    return reviews, warnings


async def _published(
    spec: Spec, credentials: Credentials, transport: httpx.AsyncBaseTransport | None
) -> dict[str, Any]:
    """The Flow's last published revision (with its definition), fetched as the run's preflight does."""
    base_url, http = _studio_http(spec, credentials, transport)
    async with http:
        client = StudioClient(http, base_url=base_url, flow_sid=spec.flow.sid, api=spec.flow.api)
        reads = PacedReads(Pacer(spec.send.rate), sleep=asyncio.sleep, attempts=6, max_backoff=60.0)
        await reads.call("flow", client.fetch_flow)
        published = await reads.call("published revision", client.fetch_published)
    if published is None:
        raise FlowNotFound(f"the Flow {spec.flow.sid} has no published revision: publish it in the Studio console")
    return published
