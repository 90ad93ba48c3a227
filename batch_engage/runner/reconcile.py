"""Reconciliation: find the runs that possibly-sent requests created, and prove they are this job's.

Twilio has no idempotency key for Studio, so every request carries one in its Parameters:
the *marker* (``<checkpoint token>:<contact hash>``). A possibly-sent contact is settled by:

1. listing the Flow's runs created since its intent (on *Twilio's* clock, less a margin);
2. keeping the candidates: runs for the same address (compared without a channel prefix
   such as ``whatsapp:``, which Twilio may drop), not already another contact's, and, where
   v2 says who started them (``initiated_by``), started by a REST request (``RQ…``);
3. taking a candidate as the contact's run only when its Context carries the contact's
   marker (``flow.data.<marker_key>``). Other senders' runs (inbound messages, other
   tools) for the same contact never carry it.

With the marker switched off (``marker_key = ""``) step 3 is skipped and the oldest
candidate is taken: then another sender's run for the same contact cannot be told apart.
Neither the list's order nor the address's prefix matters.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import partial
from typing import Any

import structlog

from ..errors import StudioError
from ..twilio import PacedReads, RunRecord, StudioClient

__all__ = ["RECONCILE_MARGIN", "Lookup", "Reconciler", "Settlement", "address_key", "marker_of"]

# Twilio's clock is estimated from Date headers (whole seconds); the margin also covers a
# run created a little before the intent was written on another machine's clock.
RECONCILE_MARGIN = timedelta(minutes=2)

log = structlog.get_logger(__name__)


def address_key(address: str) -> str:
    """An address as compared across Twilio's answers: without the ``whatsapp:`` prefix, in lower case."""
    return address.strip().lower().removeprefix("whatsapp:")


@dataclass(frozen=True)
class Lookup:
    """A possibly-sent contact to look for."""

    contact: str
    to: str
    marker: str | None
    since: datetime  # its intent, on Twilio's clock
    ours: datetime | None = None  # its intent, on our clock (None: not known)


@dataclass
class Settlement:
    """What reconciliation found: a SID per contact found, a reason per contact it could not decide."""

    found: dict[str, str] = field(default_factory=dict)
    undecided: dict[str, str] = field(default_factory=dict)
    lookups: int = 0


class Reconciler:
    """Looks for possibly-sent contacts' runs in Studio, paced and retried like everything else."""

    def __init__(
        self,
        client: StudioClient,
        reads: PacedReads,
        *,
        marker_key: str,
        taken_sids: Callable[[datetime], Awaitable[set[str]]],
    ) -> None:
        self._client = client
        self._reads = reads
        self._marker_key = marker_key
        self._taken_sids = taken_sids

    async def settle(self, lookups: Sequence[Lookup]) -> Settlement:
        """Find each contact's run; contacts neither found nor undecided were never created (safe to send)."""
        result = Settlement()
        if not lookups:
            return result
        # From the earlier of the intent's two readings: Twilio's clock is read off Date headers, and a proxy or an
        # edge whose clock is not the one that stamps date_created would otherwise move the run out of the window.
        since = min(min(item.since, item.ours or item.since) for item in lookups) - RECONCILE_MARGIN
        before = self._reads.requests
        try:
            records = await self._reads.call("list", lambda: self._list(since))
        except StudioError as exc:
            result.lookups = self._reads.requests - before
            log.warning("reconcile.failed", rows=len(lookups), reason=exc.message)
            result.undecided = {item.contact: f"reconciliation failed: {exc.message}" for item in lookups}
            return result
        taken = await self._taken_sids(since)
        by_address: dict[str, list[RunRecord]] = {}
        for record in sorted(records, key=_oldest_first):
            if record.address and _started_by_rest(record):
                by_address.setdefault(address_key(record.address), []).append(record)
        contexts: dict[str, dict[str, Any]] = {}
        for item in lookups:
            candidates = by_address.get(address_key(item.to), [])
            try:
                sid = await self._match(item, candidates, contexts, taken)
            except StudioError as exc:
                result.undecided[item.contact] = f"reconciliation could not read a run's Context: {exc.message}"
                continue
            if sid is not None:
                result.found[item.contact] = sid
                candidates[:] = [c for c in candidates if c.sid != sid]
        result.lookups = self._reads.requests - before
        log.info(
            "reconcile.done",
            rows=len(lookups),
            found=len(result.found),
            undecided=len(result.undecided),
            not_found=len(lookups) - len(result.found) - len(result.undecided),
            lookups=result.lookups,
        )
        return result

    async def _list(self, since: datetime) -> list[RunRecord]:
        return [record async for record in self._client.list_runs(since=since)]

    async def _match(
        self, item: Lookup, candidates: list[RunRecord], contexts: dict[str, dict[str, Any]], taken: set[str]
    ) -> str | None:
        """The contact's run among the runs to its address: the one carrying its marker; without a marker, the
        oldest no other line of the journal holds as its own."""
        if not self._marker_key or item.marker is None:
            return next((c.sid for c in candidates if c.sid not in taken), None)
        # Every run to the address is read, those other lines name too: a 409 or v1's hand-back names the run
        # that blocked another row, and that may be the very run this contact's lost answer created.
        for record in candidates:
            if record.sid not in contexts:
                contexts[record.sid] = await self._reads.call(
                    "context", partial(self._client.fetch_context, record.sid)
                )
            if marker_of(contexts[record.sid], self._marker_key) == item.marker:
                return record.sid
        return None


def _oldest_first(record: RunRecord) -> tuple[float, str]:
    return (record.date_created.timestamp() if record.date_created else 0.0, record.sid)


def _started_by_rest(record: RunRecord) -> bool:
    # v1 says nothing about who started a run; v2 names a request (RQ…) for REST, else a message or call.
    return record.initiated_by is None or record.initiated_by.startswith("RQ")


def marker_of(context: Mapping[str, Any], key: str) -> object:
    """The marker a run's Context carries (``flow.data.<key>``), None when it carries none."""
    flow = context.get("flow")
    data = flow.get("data") if isinstance(flow, Mapping) else None
    return data.get(key) if isinstance(data, Mapping) else None
