"""A Studio stand-in that answers at once: the client's ceiling, not the server's, is what gets measured.

A raw ``asyncio.Protocol`` (no HTTP framework) parses just enough HTTP/1.1 (request
line, ``Content-Length``, ``Authorization``) and answers every POST with a
Twilio-shaped 201 Execution, every other GET with a published Flow, and
``GET /__stats`` with its own counters. It runs as its own process (see
``benchkit.LoopbackServer``) so its CPU is never charged to the client under test.

It prints ``listening http://127.0.0.1:PORT`` once bound, then serves until SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import datetime as dt
import json
import signal
import time
from typing import Any

_FLOW_SID = "FW0123456789abcdef0123456789abcdef"


class _State:
    def __init__(self, auth: bytes) -> None:
        self.auth = auth
        self.posts = 0
        self.gets = 0
        self.refused = 0
        self.first_post: float | None = None
        self.last_post: float | None = None
        self.cpu_at_reset = time.process_time()
        self._stamp_second = -1
        self._stamp = ""

    def stamp(self) -> str:
        # A run's date_created must be "now": the v1 client treats an old one as a hand-back.
        now = int(time.time())
        if now != self._stamp_second:
            self._stamp_second = now
            self._stamp = dt.datetime.fromtimestamp(now, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        return self._stamp

    def reset(self) -> None:
        self.posts = self.gets = self.refused = 0
        self.first_post = self.last_post = None
        self.cpu_at_reset = time.process_time()

    def as_dict(self) -> dict[str, Any]:
        return {
            "posts": self.posts,
            "gets": self.gets,
            "refused": self.refused,
            "first_post": self.first_post,
            "last_post": self.last_post,
            "server_cpu": time.process_time() - self.cpu_at_reset,
        }


_EXECUTION = (
    '{{"sid":"FN{n:032x}","account_sid":"{account}","flow_sid":"' + _FLOW_SID + '",'
    '"contact_sid":"FC{n:032x}","contact_channel_address":"+14155550100","flow_version":2,'
    '"context":{{}},"status":"active","date_created":"{stamp}","date_updated":"{stamp}",'
    '"initiated_by":"RQ{n:032x}","url":"{base}/v2/Flows/' + _FLOW_SID + '/Executions/FN{n:032x}",'
    '"links":{{"steps":"{base}/v2/Flows/' + _FLOW_SID + '/Executions/FN{n:032x}/Steps"}}}}'
)


def _response(status: bytes, body: bytes) -> bytes:
    return (
        b"HTTP/1.1 "
        + status
        + b"\r\nContent-Type: application/json\r\nContent-Length: "
        + str(len(body)).encode()
        + b"\r\n\r\n"
        + body
    )


class _Http(asyncio.Protocol):
    def __init__(self, state: _State, base: str, account: str) -> None:
        self.state = state
        self.base = base
        self.account = account
        self.buffer = bytearray()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        # Clients do not pipeline, but a request may arrive in pieces or two at once: loop until short.
        while True:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            head = bytes(self.buffer[:end])
            lower = head.lower()
            length = 0
            at = lower.find(b"\r\ncontent-length:")
            if at >= 0:
                stop = lower.find(b"\r\n", at + 2)
                length = int(head[at + 17 : stop if stop >= 0 else len(head)])
            total = end + 4 + length
            if len(self.buffer) < total:
                return
            del self.buffer[:total]
            assert self.transport is not None
            self.transport.write(self.answer(head, lower))

    def answer(self, head: bytes, lower: bytes) -> bytes:
        state = self.state
        request_line = head.split(b"\r\n", 1)[0]
        method, _, rest = request_line.partition(b" ")
        path = rest.partition(b" ")[0]
        if path.startswith(b"/__stats"):
            body = json.dumps(state.as_dict()).encode()
            if b"reset=1" in path:
                state.reset()
            return _response(b"200 OK", body)
        at = lower.find(b"\r\nauthorization:")
        stop = lower.find(b"\r\n", at + 2) if at >= 0 else -1
        given = head[at + 16 : stop if stop >= 0 else len(head)].strip() if at >= 0 else b""
        if given != state.auth:
            state.refused += 1
            refusal = b'{"code":20003,"message":"Authentication Error - invalid username","status":401}'
            return _response(b"401 Unauthorized", refusal)
        if method == b"POST":
            now = time.monotonic()
            state.posts += 1
            if state.first_post is None:
                state.first_post = now
            state.last_post = now
            created = _EXECUTION.format(n=state.posts, account=self.account, stamp=state.stamp(), base=self.base)
            return _response(b"201 Created", created.encode())
        state.gets += 1
        flow = {"sid": _FLOW_SID, "account_sid": self.account, "status": "published", "version": 2}
        return _response(b"200 OK", json.dumps(flow).encode())


async def _serve(host: str, port: int, user: str, password: str) -> None:
    loop = asyncio.get_running_loop()
    auth = b"Basic " + base64.b64encode(f"{user}:{password}".encode())
    state = _State(auth)
    holder: dict[str, str] = {}
    server = await loop.create_server(lambda: _Http(state, holder["base"], user), host, port)
    bound = server.sockets[0].getsockname()[1]
    holder["base"] = f"http://{host}:{bound}"
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print(f"listening {holder['base']}", flush=True)
    async with server:
        await stop.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--user", required=True)
    parser.add_argument("--password", required=True)
    args = parser.parse_args()
    asyncio.run(_serve(args.host, args.port, args.user, args.password))


if __name__ == "__main__":
    main()
