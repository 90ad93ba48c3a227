"""The last check before a request is written: a run that lost its hold on the job sends nothing more.

A run frozen (SIGSTOP, a paused VM) after its dispatcher's own check, and woken after another machine took the
job over, would otherwise send the request it was about to: the other machine found no run of that contact in
Studio and sent it. Asked by the connection pool once it hands the request its connection (a new one's TCP
handshake already done), only the writing of the request is left after the question: the smallest gap Studio
allows (it has no fencing token to refuse a stale sender).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..errors import HoldLost

__all__ = ["fenced_connector"]


def fenced_connector(may_send: Callable[[], bool]) -> Any:
    """An aiohttp ``TCPConnector`` class that raises :class:`HoldLost`, nothing written, when a POST (a run created
    or ended) has its connection and ``may_send()`` says no; reads change nothing in Studio and always go."""
    import aiohttp  # noqa: PLC0415 - only a run that sends loads aiohttp

    class FencedConnector(aiohttp.TCPConnector):
        async def connect(self, req: Any, traces: Any, timeout: Any) -> Any:  # noqa: ASYNC109 - aiohttp's signature
            connection = await super().connect(req, traces, timeout)
            # Asked after the await: a run frozen while it waited for a connection asks again on waking.
            if req.method == "POST" and not may_send():
                connection.close()
                raise HoldLost("this run's hold on the job is stale: the request was not sent")
            return connection

    return FencedConnector
