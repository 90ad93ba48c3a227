"""The last check before a request is written: a run that lost its hold on the job sends nothing more.

A run frozen (SIGSTOP, a paused VM) after its dispatcher's own check, and woken after another machine took the
job over, would otherwise send the request it was about to: the other machine found no run of that contact in
Studio and sent it. Asked in an aiohttp middleware, the moment before a pooled connection is taken and the request
written, the question leaves the smallest gap Studio allows (it has no fencing token to refuse a stale sender).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..errors import HoldLost

__all__ = ["fence"]


def fence(may_send: Callable[[], bool]) -> Any:
    """An aiohttp client middleware that raises :class:`HoldLost`, nothing written, when a POST (a run created or
    ended) is about to leave and ``may_send()`` says no; reads change nothing in Studio and always go."""

    async def middleware(request: Any, handler: Any) -> Any:
        if request.method == "POST" and not may_send():
            raise HoldLost("this run's hold on the job is stale: the request was not sent")
        return await handler(request)

    return middleware
