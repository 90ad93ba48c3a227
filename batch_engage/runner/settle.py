"""Settling possibly-sent contacts: wait out the reconcile delay, look each one up, record what was found.

Earlier runs' possibly-sent contacts are settled before anything new is sent; this run's
after its sending, and the ones never created are sent again (up to ``max_attempts``).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta

import polars as pl
import structlog

from ..checkpoint import CheckpointStore, Outcome
from ..clock import Clock, iso_ms, parse_iso
from ..job import Spec
from ..states import RowState
from ..twilio import AT_RETENTION, PAST_RETENTION, RETENTION, RETENTION_MARGIN, PacedReads
from .dispatch import Dispatcher
from .item import Item
from .offloop import off_loop
from .reconcile import Lookup, Reconciler, Settlement

__all__ = ["Settler", "earlier_items"]

log = structlog.get_logger(__name__)


def earlier_items(lines: pl.DataFrame, flows: Mapping[str, str] | None = None) -> list[Item]:
    """Journal lines an earlier run left possibly sent, as items to settle (on their variant's Flow: ``flows``)."""
    columns = ("row", "contact", "to_addr", "from_addr", "marker", "attempts", "intent_at", "intent_twilio_at", "state")
    items = []
    variants = lines.get_column("variant").to_list() if "variant" in lines.columns else [None] * lines.height
    rows = zip(lines.select(*columns).iter_rows(), variants, strict=True)
    for (row, contact, to, from_, marker, attempts, at, theirs, state), variant in rows:
        # The Parameters are not needed: a contact found is recorded, one not found goes back to pending.
        item = Item(row=row, contact=contact, to=to, from_=from_, parameters=None, marker=marker, intent_at=at)
        # An intent line's request was never answered (a crash, a second Ctrl-C): it counts, as an uncertain
        # line's does, so that a run Studio names for the contact once it is sent again is read for its marker.
        item.attempts = (attempts or 0) + (state == RowState.INTENT)
        item.intent_twilio = parse_iso(theirs) if theirs else None
        item.variant = variant
        item.flow = (flows or {}).get(variant) if variant is not None else None
        items.append(item)
    return items


class Settler:
    """Reconciles possibly-sent contacts and records the answer, through the run's dispatcher."""

    def __init__(self, spec: Spec, cp: CheckpointStore, d: Dispatcher, reads: PacedReads, clock: Clock) -> None:
        self.spec = spec
        self.cp = cp
        self.d = d
        self.clock = clock
        self.reads = reads
        self.reconciler = Reconciler(d.client, reads, marker_key=spec.send.marker_key, taken_sids=self._taken)
        self._reconcilers: dict[str, Reconciler] = {}
        experiment = spec.experiment
        self.flows = experiment.flows(spec.flow.sid) if experiment is not None else {}

    def _reconciler(self, flow: str | None) -> Reconciler:
        """The reconciler that lists ``flow``'s runs (each variant's Flow has its own list)."""
        if flow is None or flow == self.d.client.flow_sid:
            return self.reconciler
        if flow not in self._reconcilers:
            client = self.d.client_for(flow)
            marker_key = self.spec.send.marker_key
            self._reconcilers[flow] = Reconciler(client, self.reads, marker_key=marker_key, taken_sids=self._taken)
        return self._reconcilers[flow]

    async def _reconcile(self, items: list[Item]) -> Settlement:
        """Every item looked for among its own Flow's runs."""
        by_flow: dict[str | None, list[Item]] = {}
        for item in items:
            by_flow.setdefault(item.flow, []).append(item)
        settlement = Settlement()
        for flow, group in by_flow.items():
            part = await self._reconciler(flow).settle([self.lookup(i) for i in group])
            settlement.found.update(part.found)
            settlement.undecided.update(part.undecided)
            settlement.lookups += part.lookups
        return settlement

    async def _taken(self, since: datetime) -> set[str]:
        ours = since - timedelta(seconds=self.d.client.clock.offset or 0.0)
        return await off_loop(self.cp.sids_since, iso_ms(ours))

    def lookup(self, item: Item) -> Lookup:
        """What reconciliation needs of a possibly-sent item (its intent on Twilio's clock)."""
        since = item.intent_twilio
        if since is None:
            since = self.d.client.clock.to_twilio(parse_iso(item.intent_at) if item.intent_at else self.clock.now())
        ours = parse_iso(item.intent_at) if item.intent_at else None
        return Lookup(contact=item.contact, to=item.to, marker=item.marker, since=since, ours=ours)

    def _age(self, item: Item) -> timedelta:
        """How long ago ``item``'s intent was, on one clock: Twilio's once an answer has told it, ours before.

        An intent stamped on Twilio's clock is never measured against our now: with the preflight off, the list
        is the run's first request, and a clock ahead of ours would make every run look younger than it is.
        """
        twilio = self.d.client.clock
        if twilio.offset is not None:
            return twilio.now() - self.lookup(item).since
        return self.clock.now() - parse_iso(item.intent_at) if item.intent_at else timedelta(0)

    def _since_left(self, item: Item) -> float:
        """Seconds since ``item``'s latest possibly-sent request was answered, not since its first intent (a row
        sent again after a 500 keeps that intent's stamp, and its second request's late run was sent a third time).

        An earlier run's line tells only its first intent: it is taken as just answered, the one safe reading.
        """
        return self.clock.monotonic() - item.left if item.left is not None else 0.0

    def _uncertain(self, item: Item, reason: str) -> None:
        self.d.recorder.outcome(
            Outcome(contact=item.contact, state=RowState.UNCERTAIN, error_message=reason, attempts=item.attempts)
        )

    async def settle(self, items: list[Item]) -> list[Item]:
        """Reconcile possibly-sent items; record the found and the undecided; return those never created.

        An item whose intent is older than Studio's retention can no longer be looked up: its run, if any,
        is gone. It stays uncertain (never sent again blindly, never waited on). So does one not found within a
        day of it, judged again once the list is in: its run may have been deleted while it was looked for.
        """
        aged = [(self._age(i) >= RETENTION, i) for i in items]
        expired = [i for old, i in aged if old]
        for item in expired:
            self._uncertain(item, PAST_RETENTION)
        if expired:
            log.warning("reconcile.past_retention", rows=len(expired), reason=PAST_RETENTION)
            items = [i for old, i in aged if not old]
        if not items:
            return []
        wait = self.d.last_ambiguous + self.spec.send.reconcile_delay - self.clock.monotonic()
        if wait > 0:
            await self.clock.sleep(wait)
        not_found = self._judge(items, await self._reconcile(items))
        return await self._settled_not_found(not_found)

    def _judge(self, items: list[Item], settlement: Settlement) -> list[Item]:
        """Record the items found and those undecided (or at retention); return those not found."""
        self.d.stats.lookups += settlement.lookups
        not_found: list[Item] = []
        for item in items:
            if item.contact in settlement.found:
                self.d.stats.reconciled += 1
                self.d.record(item, RowState.SENT, sid=settlement.found[item.contact])
            elif item.contact in settlement.undecided:
                self._uncertain(item, f"possibly sent; {settlement.undecided[item.contact]}")
            elif self._age(item) >= RETENTION - RETENTION_MARGIN:
                self._uncertain(item, AT_RETENTION)
                log.warning("reconcile.at_retention", row=item.row, reason=AT_RETENTION)
            else:
                not_found.append(item)
        return not_found

    async def _settled_not_found(self, items: list[Item]) -> list[Item]:
        """The items not found that were never created: each looked for again once its request is ``settle_after``
        old, as Studio may still be working on a request its edge answered 504 (or we stopped waiting for)."""
        horizon = self.spec.send.settle_after
        young = [i for i in items if self._since_left(i) < horizon]
        if not young:
            return items
        looked = {id(i) for i in young}
        wait = horizon - min(self._since_left(i) for i in young)
        log.info("reconcile.not_found_yet", rows=len(young), wait_seconds=round(wait, 1))
        await self.clock.sleep(wait)
        if self.d.control.stopping:
            # Looked for too soon to tell: the next run looks again rather than send blindly.
            for item in young:
                self._uncertain(item, f"possibly sent; not found yet, under {horizon:g} s after its request")
            return [i for i in items if id(i) not in looked]
        again = self._judge(young, await self._reconcile(young))
        return [i for i in items if id(i) not in looked] + again

    async def settle_earlier(self, lines: pl.DataFrame) -> None:
        """Contacts an earlier run may have sent: settle them before anything new is sent."""
        items = earlier_items(lines, self.flows)
        newest = max((i.intent_at or "") for i in items)
        age = (self.clock.now() - parse_iso(newest)).total_seconds() if newest else 0.0
        self.d.last_ambiguous = self.clock.monotonic() - age
        log.info("reconcile.start", rows=len(items))
        for item in await self.settle(items):
            self.d.recorder.outcome(Outcome(contact=item.contact, state=RowState.PENDING, attempts=item.attempts))
        await self.d.recorder.flush()

    async def settle_this_run(self) -> None:
        """This run's possibly-sent contacts: reconcile, then send again the ones never created."""
        d, most = self.d, self.spec.send.max_attempts
        while d.uncertain and d.aborted is None and not d.control.stopping:
            items, d.uncertain = d.uncertain, []
            retry = await self.settle(items)
            for item in retry:
                if item.tries >= most:
                    self._uncertain(item, f"possibly sent, not found in Studio after {item.attempts} attempts")
            sendable = [i for i in retry if i.tries < most]
            if sendable:
                await d.dispatch(iter(sendable), None)
