"""The last check before a request is written: a run that lost its hold on the job sends nothing more.

A run frozen (SIGSTOP, a paused VM) after its dispatcher's own check, and woken after another machine took the
job over, would otherwise send the request it was about to: the other machine found no run of that contact in
Studio and sent it. Asked by the connection pool once it hands the request its connection (a new one's TCP
handshake already done), and again as the request's bytes are about to be written: aiohttp holds the headers
back and writes them with the body in a task of its own, a turn of the event loop later (before Python 3.12),
and a run frozen in that turn sent the request on waking (seen once in CI: one contact with two runs). What is
left after the question is the writing itself: the smallest gap Studio allows (it has no fencing token to
refuse a stale sender).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..errors import HoldLost

__all__ = ["fenced_connector", "fenced_request"]


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


def fenced_request(may_send: Callable[[], bool]) -> Any:
    """An aiohttp ``ClientRequest`` class whose POST asks ``may_send()`` once more as its bytes are about to be
    written: on no, nothing is written, the connection is closed and the answer awaited is :class:`HoldLost`."""
    import aiohttp  # noqa: PLC0415 - only a run that sends loads aiohttp

    class FencedRequest(aiohttp.ClientRequest):
        async def write_bytes(
            self,
            writer: aiohttp.abc.AbstractStreamWriter,
            conn: aiohttp.connector.Connection,
            content_length: int | None = None,
        ) -> None:
            if self.method == "POST" and not may_send():
                protocol = conn.protocol
                if protocol is not None:
                    protocol.set_exception(HoldLost("this run's hold on the job is stale: the request was not sent"))
                conn.close()
                return
            await super().write_bytes(writer, conn, content_length)

    return FencedRequest
