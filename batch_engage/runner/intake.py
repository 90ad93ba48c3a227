"""The dispatcher's queue: contacts taken from the source in groups whose intents are committed before any
of them is sent, and retries released when their backoff has passed on the run's clock."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable, Iterator
from functools import partial

from ..checkpoint import CheckpointStore
from ..clock import Clock, iso_ms
from ..errors import Stopped
from ..twilio import Pacer, TwilioClock
from .failures import Storage
from .item import Item, make_marker

__all__ = ["GROUP_MAX", "Intake"]

GROUP_MAX = 1000


class Intake:
    """Hands workers the next contact: a retry that is due, else the next of a group whose intents are written."""

    def __init__(
        self,
        cp: CheckpointStore,
        *,
        pacer: Pacer,
        clock: Clock,
        twilio: TwilioClock,
        stopping: Callable[[], bool],
        storage: Storage,
        outcomes_written: Callable[[], Awaitable[None]],
    ) -> None:
        self._cp = cp
        self._storage = storage
        self._outcomes_written = outcomes_written
        self._pacer = pacer
        self._clock = clock
        self._twilio = twilio
        self._stopping = stopping
        self.taken = 0
        self.in_flight = 0
        self._ready: deque[Item] = deque()
        self._retry_ready: deque[Item] = deque()
        self._scheduled: dict[str, tuple[Item, asyncio.Task[None]]] = {}
        self._source: Iterator[Item] = iter(())
        self._source_done = True
        self._limit_left: int | None = None
        self._wake = asyncio.Condition()
        self._refill_lock = asyncio.Lock()
        self._refilling: asyncio.Task[None] | None = None

    def load(self, items: Iterator[Item], limit: int | None) -> None:
        """Take contacts from ``items`` from now on, at most ``limit`` of them."""
        self._source = items
        self._source_done = limit is not None and limit <= 0
        self._limit_left = limit

    def outstanding(self) -> int:
        """Contacts queued, waiting for a retry, or in flight."""
        return len(self._ready) + len(self._retry_ready) + len(self._scheduled) + self.in_flight

    async def notify(self) -> None:
        """Wake every worker waiting for a contact."""
        async with self._wake:
            self._wake.notify_all()

    def _group_size(self) -> int:
        return max(1, min(int(self._pacer.rate) or 1, GROUP_MAX))

    async def _refill(self) -> None:
        async with self._refill_lock:
            if self._ready or self._source_done or self._stopping():
                return
            size = self._group_size()
            if self._limit_left is not None:
                size = min(size, self._limit_left)
            batch: list[Item] = []
            exhausted = False
            for item in self._source:
                self.taken += 1
                batch.append(item)
                if len(batch) >= size:
                    break
            else:
                exhausted = True
            if self._limit_left is not None:
                self._limit_left -= len(batch)
                exhausted = exhausted or self._limit_left <= 0
            if batch:
                try:
                    await self._write_intents(batch)
                except Exception as exc:
                    # Held by the storage: the run stops; this group's contacts were never sent.
                    self._storage.failed("writing intents", exc)
                    self._source_done = True
                    await self.notify()
                    return
                self._ready.extend(batch)
            # Only now: a worker that saw the source done while this group's intents were being
            # written (and nothing ready yet) would have left, and the group been sent one by one.
            self._source_done = exhausted
        await self.notify()

    async def _write_intents(self, batch: list[Item]) -> None:
        for item in batch:
            item.marker = item.marker or make_marker(self._cp.token, item.contact)
        ours = self._clock.now()
        theirs = self._twilio.to_twilio(ours) if self._twilio.offset is not None else None
        at = iso_ms(ours)
        write = partial(self._cp.write_intents, at=at, twilio_at=iso_ms(theirs) if theirs else None)
        await self._storage.commit("writing intents", write, [i.intent() for i in batch])
        for item in batch:
            item.intent_at = item.intent_at or at
            item.intent_twilio = item.intent_twilio or theirs

    def take(self) -> Item | None:
        """The next contact if one is ready now (no retry due, no write to wait for); None: ask :meth:`next_item`."""
        if self._retry_ready or not self._ready or self._stopping():
            return None
        return self._taken()

    def _taken(self) -> Item:
        ready = self._ready
        item = ready.popleft()
        # Write the next group's intents while this one is still being sent: once, when the
        # queue is down to half a group (worked out only when the queue is that short).
        if len(ready) < GROUP_MAX // 2 and not self._source_done and not self._refill_lock.locked():
            half_group = max(1, min(int(self._pacer.rate), GROUP_MAX) // 2)
            if len(ready) < half_group:
                self._refill_ahead()
        return item

    async def next_item(self) -> Item | None:
        """The next contact to send, waiting for one; None when there is none left or the run is stopping."""
        while True:
            if self._stopping():
                return None
            if self._retry_ready:
                item = self._retry_ready.popleft()
                if item.reintent:
                    # Written by the worker that sends it, so a stop never leaves the write behind its outcome.
                    item.reintent = False
                    # A new intent: the last one's request made no run, so its time is not this one's.
                    item.intent_at = item.intent_twilio = None
                    try:
                        # Its last outcome (waiting_active) may still be buffered: committed first, it can never
                        # land on this intent and hide a request in flight from the next run's reconciliation.
                        await self._outcomes_written()
                        await self._write_intents([item])
                    except Exception as exc:
                        self._storage.failed("writing intents", exc)
                        return None
                return item
            if not self._ready and not self._source_done:
                await self._refill()
            if self._ready:
                return self._taken()
            if self._source_done and self.outstanding() == 0:
                return None
            async with self._wake:
                await self._wake.wait()

    def _refill_ahead(self) -> None:
        """Refill in the background, the task kept: whatever it raises becomes the run's failure, never lost."""
        if self._refilling is not None and not self._refilling.done():
            return
        self._refilling = asyncio.get_running_loop().create_task(self._refill())
        self._refilling.add_done_callback(self._refilled)

    def _refilled(self, task: asyncio.Task[None]) -> None:
        if task.cancelled():
            return
        error = task.exception()
        if error is not None:
            # The dispatcher sees the failure in stopping() and wakes the workers.
            self._storage.failed("writing intents", error)
            self._source_done = True

    async def close(self) -> None:
        """Wait for (or, stopping, give up on) a refill still under way."""
        task, self._refilling = self._refilling, None
        if task is None or task.done():
            return
        if self._stopping():
            task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    def retry_later(self, item: Item, delay: float) -> None:
        """Give ``item`` back to the workers once ``delay`` seconds have passed on the pacer's clock."""

        async def release() -> None:
            try:
                await self._pacer.clock.sleep(delay)
            except Stopped:
                return  # the run is stopping: unsent() hands the item back
            self._scheduled.pop(item.contact, None)
            self._retry_ready.append(item)
            await self.notify()

        self._scheduled[item.contact] = (item, asyncio.get_running_loop().create_task(release()))

    def hold(self, item: Item, until: Callable[[], Awaitable[bool]]) -> None:
        """Keep ``item`` outstanding while ``until`` runs; if it answers True, send it again under a new intent."""

        async def release() -> None:
            # Left in _scheduled when the wait ends early, so unsent() hands the contact back: its create was refused
            # (409), so it is waiting_active or pending, never "uncertain" for want of an answer that came.
            try:
                again = await until()
            except Stopped:
                return
            except Exception as exc:
                # Never a lost task exception: a failure of the wait is the run's, named.
                self._storage.failed("waiting for an earlier run to end", exc)
                return
            self._scheduled.pop(item.contact, None)
            if again:
                # Its last line says it was never created: the worker writes a new intent before it leaves again.
                item.reintent = True
                self._retry_ready.append(item)
            await self.notify()

        self._scheduled[item.contact] = (item, asyncio.get_running_loop().create_task(release()))

    def unsent(self) -> list[Item]:
        """Empty the queue (retries waiting included) and return what it held: intents written, never sent."""
        for item, waiting in self._scheduled.values():
            waiting.cancel()
            self._ready.append(item)
        self._scheduled.clear()
        items = [*self._ready, *self._retry_ready]
        self._ready.clear()
        self._retry_ready.clear()
        return items
