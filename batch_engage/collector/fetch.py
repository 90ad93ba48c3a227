"""``collect``'s fetching: per run, paced and retried GETs of the run, its Context, its messages; committed in groups.

An ``already_active`` run may be another sender's: its fields count only when its
Context carries the contact's marker (``flow.data.<marker_key>``); otherwise they are
null with the note "another sender's run". A 404 on a run is ``failed`` for that row
alone; ``Fatal`` (401/403, a 404 on the Flow) propagates.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from typing import Any

import structlog

from ..clock import iso_ms
from ..control import RunControl
from ..errors import Fatal, Rejected, StudioError
from ..job import Spec
from ..twilio import (
    PAST_RETENTION,
    READ_ATTEMPTS,
    MessagesClient,
    PacedReads,
    Pacer,
    StudioClient,
    error_code,
    parse_datetime,
    past_retention,
)
from .outcomes import OutcomeStore, StoredOutcome
from .table import Target, as_text, asked, context_value, value_columns

__all__ = ["ANOTHER_SENDER", "CollectProgress", "Collector"]

log = structlog.get_logger(__name__)

ANOTHER_SENDER = "another sender's run"
OPT_OUT_CODE = 21610
# A group is committed after this many rows or this long, whichever comes first: a kill loses at most one.
GROUP_ROWS = 50
GROUP_SECONDS = 0.5
# Message statuses Twilio never changes again; any other (queued, sent, …) is fetched again next time.
FINAL_DELIVERY = frozenset({"delivered", "undelivered", "failed", "received", "read", "canceled"})


@dataclass(frozen=True)
class CollectProgress:
    """A snapshot for progress displays: runs fetched of this pass's total, by what they showed."""

    done: int
    total: int
    active: int
    ended: int
    failed: int


def _kept_or(kept: StoredOutcome | None, line: StoredOutcome) -> StoredOutcome:
    """``line``, unless its run had ended when it was read before (``--refresh``, a changed ``[collect]``): what
    that read found is kept, never replaced by a line saying the run can no longer be read (a final one: asked
    now, and done). A run last seen active becomes what ``line`` says: it may never end in a table."""
    if kept is None or kept.sid != line.sid or kept.run_status != "ended":
        return line
    return dataclasses.replace(kept, asked=line.asked, final=True) if line.final else kept


class Collector:
    """One collect invocation's fetching: the pacer, the retried reads, and the groups waiting to be committed."""

    def __init__(
        self,
        spec: Spec,
        store: OutcomeStore,
        studio: StudioClient,
        messages: MessagesClient,
        control: RunControl,
        on_progress: Callable[[CollectProgress], None] | None,
        *,
        clock: Callable[[], datetime],
        sleep: Callable[[float], Awaitable[None]],
    ) -> None:
        self.spec = spec
        self.store = store
        self.studio = studio
        self.messages = messages
        self.clock = clock
        self.control = control
        self.on_progress = on_progress
        rate = spec.collect.rate or spec.send.rate
        self.concurrency = spec.collect.concurrency or spec.send.concurrency
        self.reads = PacedReads(Pacer(rate), sleep=sleep, attempts=READ_ATTEMPTS, max_backoff=spec.send.max_backoff)
        self.calls = 0
        self.asked = asked(spec)
        self.needs_context = bool(spec.collect.fields or spec.collect.message_status)
        self.account_sid: str | None = None
        self.aborted: str | None = None
        self.lines: dict[str, StoredOutcome] = store.load()
        self._group: list[StoredOutcome] = []
        self._flushed = time.monotonic()
        # Learnt from the messages fetched: contacts who opted out (to, sender, at), and Twilio's queue times.
        self.opted_out: list[tuple[str, str, float]] = []
        self.queue_seconds: list[float] = []

    async def read(self, what: str, fn: Callable[[], Awaitable[dict[str, Any]]]) -> dict[str, Any]:
        """One read, paced and retried; counted, so that the retries are the requests beyond the calls."""
        self.calls += 1
        return await self.reads.call(what, fn)

    def due(self, targets: list[Target], *, refresh: bool) -> list[Target]:
        """The targets to fetch: all with ``refresh``, else those without a final line for this SID and this ask."""
        if refresh:
            return list(targets)
        due = []
        for t in targets:
            line = self.lines.get(t.contact)
            if line is None or line.sid != t.sid or not line.final or line.asked != self.asked:
                due.append(t)
        return due

    def studio_for(self, target: Target) -> StudioClient:
        """The client of the Flow that holds the target's run (its variant's, in an experiment)."""
        experiment = self.spec.experiment
        if experiment is None or target.variant is None:
            return self.studio
        return self.studio.for_flow(experiment.flow_of(target.variant, self.spec.flow.sid))

    async def preflight(self) -> None:
        """GET each Flow: proves credentials and Flows (else ``Fatal``), and names the Account SID for Messages."""
        for sid in self.spec.flow_sids():
            flow = await self.read("flow", self.studio.for_flow(sid).fetch_flow)
            account = flow.get("account_sid")
            self.account_sid = account if isinstance(account, str) else None

    async def run_pass(self, targets: list[Target]) -> None:
        """Fetch these targets with ``concurrency`` workers until done, stopped or aborted; commit every line."""
        queue: asyncio.Queue[Target] = asyncio.Queue()
        for t in targets:
            queue.put_nowait(t)
        seen: Counter[str] = Counter()
        total = len(targets)

        async def worker() -> None:
            while not self.control.stopping and self.aborted is None:
                try:
                    target = queue.get_nowait()
                except asyncio.QueueEmpty:
                    return
                try:
                    line = await self.fetch(target)
                except Fatal as exc:
                    self.aborted = exc.message
                    log.error("collect.aborted", reason=exc.message)
                    return
                seen[line.run_status] += 1
                self.keep(line)
                if self.on_progress is not None:
                    self.on_progress(
                        CollectProgress(sum(seen.values()), total, seen["active"], seen["ended"], seen["failed"])
                    )

        hard = self.control.bind()
        workers: asyncio.Future[Any] = asyncio.gather(*(worker() for _ in range(min(self.concurrency, max(1, total)))))
        stopper: asyncio.Future[Any] = asyncio.ensure_future(hard.wait())
        try:
            # A second stop request (hard) does not wait for the fetches in flight: they are fetched next time.
            await asyncio.wait([workers, stopper], return_when=asyncio.FIRST_COMPLETED)
        finally:
            workers.cancel()
            stopper.cancel()
            await asyncio.gather(workers, stopper, return_exceptions=True)
            self.flush()

    def keep(self, line: StoredOutcome) -> None:
        """Remember a fetched line; commit the group once it is big or old enough."""
        self.lines[line.contact] = line
        self._group.append(line)
        if len(self._group) >= GROUP_ROWS or time.monotonic() - self._flushed >= GROUP_SECONDS:
            self.flush()

    def flush(self) -> None:
        """Commit the lines fetched since the last commit."""
        self.store.save(self._group)
        self._group = []
        self._flushed = time.monotonic()

    def _line(self, target: Target, status: str, **kw: Any) -> StoredOutcome:
        return StoredOutcome(
            contact=target.contact,
            sid=target.sid,
            run_status=status,
            asked=self.asked,
            fetched_at=iso_ms(self.clock()),
            **kw,
        )

    async def fetch(self, target: Target) -> StoredOutcome:
        """Everything asked of one run; ``Fatal`` propagates, any other failure is this row's alone."""
        try:
            run = await self.read("run", partial(self.studio_for(target).fetch_run, target.sid))
        except Fatal:
            raise
        except Rejected as exc:
            gone = exc.http_status == 404
            if gone and target.started is not None and past_retention(target.started, self.studio.clock.now()):
                # Studio deleted it, as it does every run 30 days after it starts: nothing left to fetch, ever.
                expired = self._line(target, "expired", error_message=f"{PAST_RETENTION}: the run is gone", final=True)
                return _kept_or(self.lines.get(target.contact), expired)
            message = (
                "Twilio no longer knows this run (404)" if gone else f"Twilio refused the run's GET: {exc.message}"
            )
            log.warning("collect.failed", row=target.row, sid=target.sid, reason=message)
            return _kept_or(
                self.lines.get(target.contact), self._line(target, "failed", error_message=message, final=True)
            )
        except StudioError as exc:
            message = f"could not fetch the run: {exc.message}; collect again to retry"
            log.warning("collect.failed", row=target.row, sid=target.sid, reason=message)
            return _kept_or(
                self.lines.get(target.contact), self._line(target, "failed", error_message=message, final=False)
            )
        ended = run.get("status") == "ended"
        ended_at = parse_datetime(run.get("date_updated")) if ended else None
        values: dict[str, Any] = {name: None for name, _ in value_columns(self.spec)}
        note: str | None = None
        settled = True
        if self.needs_context:
            note, settled = await self._read_context(target, values)
        line = self._line(
            target,
            "ended" if ended else "active",
            ended_at=ended_at.strftime("%Y-%m-%dT%H:%M:%SZ") if ended_at else None,
            error_message=note,
            values=values,
            final=ended and settled,
        )
        log.debug("collect.row", row=target.row, sid=target.sid, run_status=line.run_status)
        return line

    async def _read_context(self, target: Target, values: dict[str, Any]) -> tuple[str | None, bool]:
        """Fill ``values`` from the run's Context (and Messages); return a note and whether nothing is left to learn."""
        try:
            context = await self.read("context", partial(self.studio_for(target).fetch_context, target.sid))
        except Fatal:
            raise
        except Rejected as exc:
            return f"the run's Context could not be read: {exc.message}", True
        except StudioError as exc:
            return f"could not fetch the run's Context: {exc.message}; collect again to retry", False
        if target.status == "already_active" and not self._proven(context, target.marker):
            return ANOTHER_SENDER, True
        if target.status == "sent" and self._disproven(context, target.marker):
            # A v1 hand-back of another sender's run made a moment before ours reads as new: its marker tells.
            return ANOTHER_SENDER, True
        for name, path in self.spec.collect.fields:
            values[name] = as_text(context_value(context, path))
        settled = True
        notes: list[str] = []
        for widget in self.spec.collect.message_status:
            sid = context_value(context, f"widgets.{widget}.outbound.Sid")
            if not isinstance(sid, str) or not sid:
                continue
            if self.account_sid is None:
                notes.append(f"{widget}: the Flow named no account_sid, so its message cannot be fetched")
                continue
            try:
                message = await self.read("message", partial(self.messages.fetch_message, self.account_sid, sid))
            except Fatal:
                raise
            except Rejected as exc:
                notes.append(f"{widget}: message {sid} could not be read: {exc.message}")
                continue
            except StudioError as exc:
                notes.append(f"{widget}: could not fetch message {sid}: {exc.message}; collect again to retry")
                settled = False
                continue
            status = message.get("status")
            code = message.get("error_code")
            values[f"{widget}_queue_seconds"] = self._learn(message)
            values[f"{widget}_delivery"] = status if isinstance(status, str) else None
            values[f"{widget}_delivery_error_code"] = error_code(code)
            settled = settled and status in FINAL_DELIVERY
        return ("; ".join(notes) or None), settled

    def _learn(self, message: Mapping[str, Any]) -> float | None:
        """Note an opt-out (21610: to, the sender it covers, when); the seconds the message waited in the queue."""
        created = parse_datetime(message.get("date_created"))
        sent = parse_datetime(message.get("date_sent"))
        waited = None
        if created is not None and sent is not None and message.get("direction") != "inbound":
            waited = max(0.0, (sent - created).total_seconds())
            self.queue_seconds.append(waited)
        if error_code(message.get("error_code")) != OPT_OUT_CODE:
            return waited
        to, service, sender = message.get("to"), message.get("messaging_service_sid"), message.get("from")
        # An opt-out from a number of a Messaging Service covers the whole service (docs/api/errors/21610).
        covered = service if isinstance(service, str) and service else sender
        if isinstance(to, str) and to and isinstance(covered, str) and covered:
            at = created.timestamp() if created is not None else self.clock().timestamp()
            self.opted_out.append((to, covered, at))
        return waited

    def _disproven(self, context: Mapping[str, Any], marker: str | None) -> bool:
        """Whether a run recorded as this contact's carries another marker, or none (only when ours is known)."""
        key = self.spec.send.marker_key
        data = context_value(context, "flow.data")
        return bool(key) and marker is not None and isinstance(data, Mapping) and data.get(key) != marker

    def _proven(self, context: Mapping[str, Any], marker: str | None) -> bool:
        """Whether an already-active run carries this contact's marker, so it is this job's."""
        key = self.spec.send.marker_key
        if not key or marker is None:
            return False
        data = context_value(context, "flow.data")
        return isinstance(data, Mapping) and data.get(key) == marker
