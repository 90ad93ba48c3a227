"""One invocation's phases: the preflight (with the arrival check), settling earlier runs, sending, settling.

``run_job`` (``job.py``) opens the checkpoint and the dispatcher around these; the phases themselves
are here so that each module keeps to one job.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx
import polars as pl
import structlog

from ..checkpoint import CheckpointStore
from ..clock import Clock
from ..control import Progress, RunControl
from ..credentials import Credentials
from ..job import Spec
from ..plan import Prepared
from ..states import POSSIBLY_SENT
from ..twilio import (
    READ_ATTEMPTS,
    PacedReads,
    Pacer,
    Reach,
)
from .active import ActiveRuns
from .dispatch import Dispatcher
from .failures import Storage
from .known import Known
from .preflight import preflight
from .schedule import send_all, to_send, with_states
from .settle import Settler
from .values import RunOptions

__all__ = ["ARRIVAL_META", "Invocation", "announce", "phases", "run_preflight"]

log = structlog.get_logger(__name__)

ARRIVAL_META = "arrival"
ARRIVAL_READ_RATE = 50.0
ARRIVAL_READ_ATTEMPTS = 4
ARRIVAL_MAX_BACKOFF = 30.0


@dataclass(frozen=True)
class Invocation:
    """One invocation's inputs, as the sending part needs them."""

    spec: Spec
    prepared: Prepared
    credentials: Credentials
    base_url: str
    options: RunOptions
    clock: Clock
    control: RunControl
    storage: Storage
    reach: Reach = field(init=False)
    """What the run knows of Studio's host (``base_url``'s): requests under way, the last answer."""
    transport: httpx.AsyncBaseTransport | None
    on_progress: Callable[[Progress], None] | None
    tokens: Mapping[str, str]
    on_start: Callable[[str], None] | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "reach", Reach(httpx.URL(self.base_url).host))


def announce(job: Invocation, contacts: int, flow: dict[str, Any]) -> None:
    """Before a real send: one line saying how many contacts go to which Flow, in which account, how fast."""
    if job.options.sandbox or contacts <= 0:
        return
    name = flow.get("friendly_name")
    account = flow.get("account_sid") or job.credentials.username
    flows = job.spec.flow_sids()
    # An experiment sends to each variant's Flow: name them all (the friendly name is the first one's).
    where = f"Flow {flows[0]}{f' ({name})' if name else ''}" if len(flows) == 1 else f"Flows {', '.join(flows)}"
    line = f"sending {contacts:,} contacts → {where}, account {account}, at most {job.spec.send.rate:g}/s"
    log.info("run.sending", contacts=contacts, flow=job.spec.flow.sid, friendly_name=name, account=account)
    if job.on_start is not None:
        job.on_start(line)


async def phases(job: Invocation, cp: CheckpointStore, d: Dispatcher, known: Known | None = None) -> bool:
    """Preflight, settle earlier runs' possibly-sent contacts, send, settle this run's; True if stopped early.

    ``known``: the journal's states as the run read them at its start, if nothing has written to it since.
    """
    spec, plan, control, clock = job.spec, job.prepared.plan, job.control, job.clock
    reads = PacedReads(
        d.pacer,
        sleep=clock.sleep,
        # A read changes nothing at Twilio: it is worth more tries than a create.
        attempts=max(READ_ATTEMPTS, 2 * spec.send.max_attempts),
        max_backoff=spec.send.max_backoff,
        on_request=lambda: d.recorder.count("lookups"),
        on_retry=job.reach.retrying_in,
    )
    d.reads = reads
    settler = Settler(spec, cp, d, reads, clock)
    if spec.send.on_active != "skip":
        tokens = {**job.tokens, cp.token: f"job {spec.job.id}"}
        d.active = ActiveRuns(
            spec=spec, client=d.client, reads=reads, control=control, clock=clock, tokens=tokens, record=d.record
        )
    possibly = cp.open_lines().filter(pl.col("state").is_in([s.value for s in POSSIBLY_SENT]))
    has_work = possibly.height > 0 or d.total > d.done
    flow: dict[str, Any] = {}
    if has_work and spec.send.preflight and not control.stopping:
        await run_preflight(job, cp, d, reads, flow)
    if d.aborted is None and possibly.height and not control.stopping:
        await settler.settle_earlier(possibly)
    waiting = False
    if d.aborted is None and not control.stopping:
        flows = spec.experiment.flows(spec.flow.sid) if spec.experiment is not None else None
        # Settling changed the journal: then it is read again (this run alone writes to it).
        sendable = known.sendable if known is not None and possibly.height == 0 else None
        if sendable is None:
            sendable = with_states(plan, cp.states())
        source = to_send(sendable, cp.open_lines(), flows)
        options = job.options
        announce(job, d.total - d.done, flow)
        waiting = await send_all(d, source, window=d.window, limit=options.limit, wait=options.wait, clock=clock)
    await settler.settle_this_run()
    return control.stopping or waiting


async def run_preflight(
    job: Invocation, cp: CheckpointStore, d: Dispatcher, reads: PacedReads, flow_info: dict[str, Any]
) -> None:
    """The preflight (``flow_info`` receives the first Flow); its arrival check caps the pace (``pace =
    "sender"``) and is kept for results and report."""
    spec, clock, creds = job.spec, job.clock, job.credentials
    # The arrival check reads other APIs (numbers, Messaging Services): its own pace, not Studio's slots.
    arrival_reads = PacedReads(
        Pacer(ARRIVAL_READ_RATE, clock=job.options.pacing()),
        sleep=clock.sleep,
        attempts=ARRIVAL_READ_ATTEMPTS,
        max_backoff=min(spec.send.max_backoff, ARRIVAL_MAX_BACKOFF),
    )
    found = await preflight(
        spec,
        job.prepared.plan,
        d.client,
        (reads, arrival_reads),
        cp,
        sandbox=job.options.sandbox,
        now=clock.now(),
        region=creds.region,
        edge=creds.edge,
        flow_info=flow_info,
    )
    d.aborted = found.aborted
    if not found.arrivals:
        return
    d.segments = {row: n for arrival in found.arrivals for row, n in arrival.rows.first.items()}
    capacities = [arrival.capacity for arrival in found.arrivals]
    # One capacity object (the first Flow's); with an experiment's several Flows, each in order beside it.
    d.capacity = capacities[0].as_dict()
    if len(capacities) > 1:
        d.capacity["per_flow"] = [c.as_dict() for c in capacities]
    if spec.send.pace == "sender":
        d.pacer.cap(min(c.trigger_rate for c in capacities))
