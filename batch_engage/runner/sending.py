"""The sending part of a run: the Studio client over the run's connection pool, the dispatcher with its pacer
and recorder, and the run's phases under the --max-duration timer, with the heap frozen while rows are sent."""

from __future__ import annotations

import asyncio
import contextlib
import gc
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import timedelta

import structlog

from ..checkpoint import CheckpointStore
from ..clock import iso_ms, wall_seconds
from ..control import StoppableClock
from ..errors import Stopped, StudioError
from ..history import HistoryStore
from ..job import Spec
from ..plan import send_window
from ..states import FINAL, REACHED, RowState
from ..twilio import Pacer, StudioClient, TwilioClock, make_http_client
from .dispatch import Dispatcher
from .failures import is_storage_error
from .known import Known
from .lifecycle import flushed
from .lost import mark_lost_lines
from .phases import Invocation, phases
from .recorder import Recorder
from .unreachable import watched

__all__ = ["RECENT_SIDS", "Sent", "frozen_heap", "run_with_checkpoint"]

log = structlog.get_logger(__name__)

RECENT_SIDS = timedelta(minutes=10)


@contextlib.contextmanager
def frozen_heap() -> Iterator[None]:
    """While rows are sent, what was alive before (modules, the plan) is left out of the collector's scans.

    Every request leaves cyclic garbage behind (httpx's and aiohttp's objects), so collections keep
    running; without this, each full one walks the whole imported heap again, for nothing.
    """
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


@dataclass
class Sent:
    """What the sending part of a run hands back to the reporting part."""

    d: Dispatcher
    stopped_early: bool = False
    reached_earlier: int = 0
    changed: int = 0
    left_out: int = 0  # reached contacts this list no longer holds: said, since their runs leave the results table
    stop_reason: str | None = None
    repaired: str | None = None


def _dispatcher(
    job: Invocation, cp: CheckpointStore, client: StudioClient, history: HistoryStore | None, known: Known
) -> Dispatcher:
    """The dispatcher of this run, with its pacer and recorder; it counts the contacts already final."""
    spec, clock = job.spec, job.clock
    pacer = Pacer(spec.send.rate, clock=StoppableClock(job.options.pacing(), job.control))
    return Dispatcher(
        spec=spec,
        window=send_window(spec),
        cp=cp,
        client=client,
        history=history,
        recorder=Recorder(cp, history, now=wall_seconds(clock), rate=lambda: pacer.rate, storage=job.storage),
        storage=job.storage,
        pacer=pacer,
        clock=clock,
        control=job.control,
        on_progress=job.on_progress,
        total=known.sendable.height,
        done=known.count(FINAL),
        sent_before=known.count(REACHED),
        failed_before=known.count(frozenset({RowState.FAILED})),
        sids=cp.sids_since(iso_ms(clock.now() - RECENT_SIDS)) if spec.flow.api == "engagements" else set(),
        listed_twice=_listed_twice(spec, known),
    )


def _listed_twice(spec: Spec, known: Known) -> frozenset[str]:
    """v1 with the marker: the addresses of more than one sendable row (``dedupe = "none"``), whose hand-backs
    the marker tells apart."""
    if spec.flow.api != "engagements" or not spec.send.marker_key:
        return frozenset()
    to = known.sendable.get_column("to")
    return frozenset(to.filter(to.is_duplicated()).to_list())


@contextlib.asynccontextmanager
async def _studio(job: Invocation, cp: CheckpointStore) -> AsyncIterator[StudioClient]:
    """The Studio client over this run's HTTP connection pool, closed at the end; a leased checkpoint's hold is
    asked once more as each request is written."""
    send = job.spec.send
    http = make_http_client(
        username=job.credentials.username,
        password=job.credentials.password,
        concurrency=send.concurrency,
        connect_timeout=send.connect_timeout,
        read_timeout=send.read_timeout,
        transport=job.transport,
        reach=job.reach,
        may_send=cp.holds if cp.leased else None,
    )
    async with http:
        flow = job.spec.flow
        yield StudioClient(
            http, base_url=job.base_url, flow_sid=flow.sid, api=flow.api, clock=TwilioClock(wall=job.clock.now)
        )


async def run_with_checkpoint(
    job: Invocation, cp: CheckpointStore, history: HistoryStore | None, known: Known | None = None
) -> Sent:
    """The sending part: the dispatcher and its flusher around the run's phases, with the --max-duration timer.

    ``known``: what the journal said of the plan when the run began (None: read now).
    """
    control, prepared = job.control, job.prepared
    known = known or Known.read(cp, prepared.plan)
    reached_earlier, changed = known.earlier(cp, prepared.plan, prepared.input_digest)
    if reached_earlier:
        log.info("input.reached_earlier", rows=reached_earlier, parameters_changed=changed)
    async with _studio(job, cp) as client:
        d = _dispatcher(job, cp, client, history, known)
        sent = Sent(d, reached_earlier=reached_earlier, changed=changed)
        done_flushing = asyncio.Event()
        flusher = asyncio.create_task(d.recorder.run(done_flushing))
        limit = job.options.max_duration
        timer = None
        if limit is not None:

            def out_of_time() -> None:
                sent.stop_reason = sent.stop_reason or f"--max-duration of {job.options.max_duration} s reached"
                control.request_stop()

            timer = asyncio.get_running_loop().call_later(limit, out_of_time)
        try:
            sent.repaired = await mark_lost_lines(cp, job.prepared.plan, job.storage)
            with frozen_heap():
                sent.stopped_early = await watched(
                    # Lines marked lost changed the journal: the phases read it again.
                    phases(job, cp, d, known if sent.repaired is None else None),
                    job.reach,
                    control,
                    give_up_after=job.spec.send.unreachable_timeout,
                    sent=lambda: d.stats.created,
                    gave_up=lambda why: setattr(sent, "stop_reason", why),
                )
        except StudioError as exc:
            # Preflight could not reach Studio: nothing was sent; try again later.
            log.error("run.unreachable", reason=exc.message)
            sent.stopped_early = True
            sent.stop_reason = f"Studio could not be reached: {exc.message}"
        except Stopped:
            sent.stopped_early = True
        except Exception as exc:
            if not is_storage_error(exc):
                raise
            job.storage.failed("the checkpoint", exc)
        finally:
            if timer is not None:
                timer.cancel()
            done_flushing.set()
            await flushed(flusher, control)
    if sent.stop_reason is None and control.stopping:
        sent.stop_reason = "a stop was asked for"
    if d.later is not None and not sent.stopped_early:
        sent.stopped_early, sent.stop_reason = True, d.later
    return sent
