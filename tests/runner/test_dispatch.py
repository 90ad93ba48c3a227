"""The dispatch loop keeps `concurrency` requests in flight, also for a job that fits in one intent group."""

from __future__ import annotations

import asyncio
import contextlib
import urllib.parse
from collections.abc import Callable
from typing import Any

import httpx

from batch_engage import run
from batch_engage.credentials import Credentials

from conftest import make_contacts


class _Barrier:
    """A fake Studio that holds each create until `width` are in flight at once (or a second has passed)."""

    def __init__(self, width: int) -> None:
        self.width = width
        self.in_flight = 0
        self.most = 0
        self.creates = 0
        self.full: asyncio.Event | None = None

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        if request.method == "GET":
            return httpx.Response(200, json={"sid": "FW" + "0" * 32, "revision": 1})
        self.full = self.full or asyncio.Event()
        self.in_flight += 1
        self.creates += 1
        self.most = max(self.most, self.in_flight)
        if self.in_flight >= self.width:
            self.full.set()
        # Waits for the others, not for time: a serial dispatcher never fills the barrier.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.full.wait(), 1.0)
        self.in_flight -= 1
        to = dict(urllib.parse.parse_qsl(request.content.decode()))["To"]
        return httpx.Response(200, json={"sid": "FN" + to[-4:].rjust(32, "0"), "date_created": None})


class TestConcurrency:
    """Requests in flight reach `send.concurrency`."""

    def test_a_job_smaller_than_one_group_still_sends_concurrency_at_once(
        self, make_spec: Callable[..., Any], sandbox_creds: Credentials
    ) -> None:
        """16 rows at concurrency 8 (one intent group): 8 requests are in flight together, not one by one."""
        studio = _Barrier(width=8)
        result = run(
            make_spec("http://127.0.0.1:9", concurrency=8, rate=1000),
            frame=make_contacts(16),
            credentials=sandbox_creds,
            transport=httpx.MockTransport(studio),
        )
        assert result.counts["sent"] == 16
        assert studio.most == 8
