"""Contacts still inside an earlier active run (``[send] on_active``): wait for that run, or end it when it is ours.

Studio allows one active run per contact on a Flow: v2 answers 409 (20409) naming the
run (``details.conflicting_execution_sid``), v1 hands that run back. With ``on_active``:

- ``"skip"``: the contact ends ``already_active`` (final; this module is not used);
- ``"wait"``: it is set aside as ``waiting_active`` and tried again every ``active_retry``;
- ``"end"``: when the blocking run's Context carries a marker of one of this job's
  checkpoints (any period) and it is at least ``end_active_after`` old on Twilio's clock,
  it is ended (``Status=ended``, on the contact's variant's Flow in an experiment) and the
  contact sent at once; any other run (another job's, another sender's, an inbound
  conversation) is never ended: the contact waits, and its line says why.

A contact set aside keeps its place among the dispatcher's outstanding work, so the run
goes on with the others and stays until every contact is sent or the run is stopped.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import structlog

from ..clock import Clock
from ..control import RunControl
from ..errors import HoldLost, StudioError
from ..job import Spec
from ..states import RowState
from ..twilio import PacedReads, StudioClient, parse_datetime
from .item import Item
from .reconcile import marker_of

__all__ = ["ActiveRuns", "Verdict", "judge_run", "marker_token", "stop_for_lost_hold"]

log = structlog.get_logger(__name__)


def stop_for_lost_hold(control: RunControl) -> None:
    """The run's hold on the job went stale (before a create, or an end): say so once, and stop the run."""
    if not control.stopping:
        log.error("checkpoint.lease_lost", message="this run's hold on the job is stale; stopping, sending nothing")
        control.request_stop()


def marker_token(context: Mapping[str, Any], key: str) -> str | None:
    """The checkpoint token of the marker a run's Context carries (``flow.data.<key>`` = ``<token>:<hash>``)."""
    marker = marker_of(context, key) if key else None
    if not isinstance(marker, str) or ":" not in marker:
        return None
    return marker.split(":", 1)[0]


@dataclass(frozen=True)
class Verdict:
    """What is known of a blocking run: active or not, whose (None: not this job's), its age, why not to end it."""

    sid: str
    active: bool
    whose: str | None
    age: float | None
    reason: str


async def judge_run(
    client: StudioClient, reads: PacedReads, sid: str, *, tokens: Mapping[str, str], marker_key: str
) -> Verdict:
    """Read a run and its Context (paced, retried) and say whether this job may end it; read errors propagate."""
    run = await reads.call("run", partial(client.fetch_run, sid))
    active = run.get("status") == "active"
    created = parse_datetime(run.get("date_created"))
    age = (client.clock.now() - created).total_seconds() if created is not None else None
    if not active:
        return Verdict(sid, False, None, age, f"its earlier run {sid} has ended")
    context = await reads.call("context", partial(client.fetch_context, sid))
    token = marker_token(context, marker_key)
    whose = tokens.get(token) if token is not None else None
    if whose is not None:
        return Verdict(sid, True, whose, age, f"this job's own run ({whose})")
    started_by = run.get("initiated_by")
    if isinstance(started_by, str) and not started_by.startswith("RQ"):
        who = "an inbound conversation"
    elif token is not None:
        who = "another job (its marker names no checkpoint of this job)"
    else:
        who = "another sender (no marker of this job)"
    return Verdict(sid, True, None, age, f"its active run {sid} is {who}; never ended by batch-engage")


@dataclass(eq=False, kw_only=True)
class ActiveRuns:
    """Decides, for a contact whose create met an earlier active run, when to try it again (and ends ours)."""

    spec: Spec
    client: StudioClient
    reads: PacedReads
    control: RunControl
    clock: Clock
    tokens: Mapping[str, str]
    record: Callable[..., None]
    waiting: dict[str, tuple[str, str | None]] = field(default_factory=dict)
    ended: int = 0

    def settled(self, contact: str) -> None:
        """The contact left ``waiting_active`` (sent, failed...): nothing to keep for it."""
        self.waiting.pop(contact, None)

    def still_waiting(self, item: Item) -> bool:
        """When the run stops with ``item`` set aside: record it ``waiting_active`` again; False if it never waited."""
        if item.contact not in self.waiting:
            return False
        reason, sid = self.waiting[item.contact]
        self.record(item, RowState.WAITING_ACTIVE, sid=sid, message=reason)
        return True

    def _wait(self, item: Item, sid: str | None, reason: str) -> None:
        if self.waiting.get(item.contact) != (reason, sid) or item.attempts <= 1:
            log.info("row.waiting_active", row=item.row, sid=sid, reason=reason)
        self.waiting[item.contact] = (reason, sid)
        # What its sent line will say if the earlier run ends by itself and the contact goes.
        item.note = f"sent after waiting ({reason})"
        self.record(item, RowState.WAITING_ACTIVE, sid=sid, message=reason)

    async def blocked(self, item: Item, sid: str | None) -> bool:
        """Handle one blocked create; True to send the contact again now, False when the run is stopping."""
        send = self.spec.send
        item.waits += 1
        # Known as waiting from the first 409 on, so a stop before it is judged still leaves it waiting_active.
        self.waiting.setdefault(item.contact, (self._waiting_for(sid), sid))
        if send.on_active == "end" and sid is not None:
            if await self._try_end(item, sid):
                return self._go_on(item)
        elif send.on_active == "end":
            self._wait(item, None, "waiting: Twilio did not name the active run, so it cannot be proven this job's")
        else:
            self._wait(item, sid, self._waiting_for(sid))
        await self.control.wait_stop(send.active_retry, self.clock.sleep)
        return self._go_on(item)

    def _go_on(self, item: Item) -> bool:
        """Whether to send the contact again now; a stopping run leaves it waiting_active instead."""
        if self.control.stopping:
            self.still_waiting(item)
            return False
        return True

    def _client(self, item: Item) -> StudioClient:
        """The client of the Flow that holds the contact's runs: its variant's, in an experiment."""
        return self.client.for_flow(item.flow) if item.flow else self.client

    @staticmethod
    def _waiting_for(sid: str | None) -> str:
        return f"waiting for its earlier run {sid} to end" if sid else "waiting for its earlier run to end"

    async def _try_end(self, item: Item, sid: str) -> bool:
        """End the blocking run if it is this job's and old enough; True when the contact may go at once."""
        send = self.spec.send
        try:
            verdict = await judge_run(
                self._client(item), self.reads, sid, tokens=self.tokens, marker_key=send.marker_key
            )
        except StudioError as exc:
            self._wait(item, sid, f"waiting: its active run {sid} could not be read ({exc.message})")
            return False
        if not verdict.active:
            return True
        if verdict.whose is None:
            self._wait(item, sid, f"not ended, waiting: {verdict.reason}")
            return False
        if verdict.age is not None and verdict.age < send.end_active_after:
            self._wait(
                item, sid, f"waiting: {verdict.reason} is {verdict.age:.0f} s old, younger than end_active_after"
            )
            return False
        return await self._end(item, sid, verdict.reason, verdict.whose)

    async def _end(self, item: Item, sid: str, reason: str, whose: str) -> bool:
        """End ``sid`` (this job's run, old enough); True when it ended and the contact may go at once."""
        try:
            await self.reads.call("end", partial(self._client(item).end_run, sid))
        except HoldLost:
            # The end never left (the transport's fence): nothing more may leave from this run, and the contact,
            # refused with a 409, still waits for its earlier run: neither sent nor possibly sent.
            stop_for_lost_hold(self.control)
            self._wait(item, sid, f"waiting: {reason} was not ended, this run's hold on the job being stale")
            return False
        except StudioError as exc:
            self._wait(item, sid, f"waiting: ending {reason} failed ({exc.message})")
            return False
        self.ended += 1
        item.ended_sid = sid
        item.note = f"ended {reason} first"
        log.info("row.ended_active", row=item.row, sid=sid, whose=whose)
        return True
