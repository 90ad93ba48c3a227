"""Benchmark 6, against what users write today: a loop over Twilio's own Python SDK.

The same rows go to the same kind of sandbox (20/s, about 100 ms per answer; a fresh
one for each contender, so none inherits another's active runs) three ways:

* ``sdk sequential``: ``client.studio.v1.flows(FLOW).engagements.create(...)`` in a
  plain ``for`` loop, a ``TwilioRestException`` caught and counted, no retry;
* ``sdk 8 threads``: the same call from a ``ThreadPoolExecutor(8)`` sharing one client;
* ``batch-engage``: ``run_job`` at rate 20 (its default pace), concurrency 8.

The SDK talks to the sandbox through its own ``TwilioHttpClient`` (requests) with
``https://studio.twilio.com`` rewritten to the sandbox's loopback URL; nothing else
changes. Per contender: rows delivered (runs in the sandbox's ledger), rows lost to
429, other errors, wall time.

Rows: 500 for all three, not 1,000: the sequential SDK loop needs ~0.11 s a row, and
1,000 rows would take the whole suite past its 5-minute budget.

Targets (issue 7's point, not a number from it): batch-engage delivers every row and
loses none to 429.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import polars as pl
from benchkit import FLOW_SID, FROM, Target, contacts, emit, make_spec, print_table, quiet_logs
from twilio.base.exceptions import TwilioRestException  # type: ignore[import-untyped]
from twilio.http.http_client import TwilioHttpClient  # type: ignore[import-untyped]
from twilio.http.response import Response  # type: ignore[import-untyped]
from twilio.rest import Client  # type: ignore[import-untyped]

from batch_engage.credentials import Credentials
from batch_engage.runner import RunOptions, launch, run_job
from batch_engage.sandbox import SANDBOX_PASSWORD, SANDBOX_USERNAME, Sandbox, SandboxConfig

ROWS = 500
LIMIT = 20.0
LATENCY = 0.1
JITTER = 0.02
THREADS = 8
STUDIO = "https://studio.twilio.com"


class SandboxHttpClient(TwilioHttpClient):  # type: ignore[misc]
    """Twilio's own requests-based client, with Studio's host swapped for the sandbox on 127.0.0.1."""

    def __init__(self, base_url: str) -> None:
        super().__init__(timeout=15)
        self.base_url = base_url
        # The sandbox is plain http on loopback: a developer's HTTP(S)_PROXY must not apply.
        if self.session is not None:
            self.session.trust_env = False

    def request(self, method: str, url: str, *args: Any, **kwargs: Any) -> Response:
        if url.startswith(STUDIO):
            url = self.base_url + url[len(STUDIO) :]
        return super().request(method, url, *args, **kwargs)


def sdk_rows(frame: pl.DataFrame) -> list[tuple[str, dict[str, Any]]]:
    """What a user's script sends: To, and the same Parameters batch-engage maps from the same columns."""
    return [
        (phone, {"first_name": first, "city": city, "visits": visits, "order": {"total": total}})
        for phone, first, city, visits, total in frame.select(
            "phone", "first_name", "city", "visits", "order_total"
        ).iter_rows()
    ]


def run_sdk(base_url: str, rows: list[tuple[str, dict[str, Any]]], threads: int) -> Counter[str]:
    """The script people write: create each engagement, count what came back, retry nothing."""
    client = Client(SANDBOX_USERNAME, SANDBOX_PASSWORD, http_client=SandboxHttpClient(base_url))
    flow = client.studio.v1.flows(FLOW_SID)

    def send(row: tuple[str, dict[str, Any]]) -> str:
        to, parameters = row
        try:
            flow.engagements.create(to=to, from_=FROM, parameters=parameters)
        except TwilioRestException as exc:
            return "lost_429" if exc.status == 429 else f"error_{exc.status}"
        return "ok"

    if threads <= 1:
        return Counter(send(row) for row in rows)
    with ThreadPoolExecutor(threads) as pool:
        return Counter(pool.map(send, rows))


def run_batch_engage(base_url: str, frame: pl.DataFrame, tmp: Path) -> Counter[str]:
    spec = make_spec(tmp, base_url=base_url, rate=LIMIT, concurrency=THREADS)
    result = asyncio.run(
        run_job(
            launch(spec, Credentials(SANDBOX_USERNAME, SANDBOX_PASSWORD), sandbox=False),
            frame=frame,
            options=RunOptions(),
        )
    )
    outcome: Counter[str] = Counter({k: v for k, v in result.counts.items() if v})
    outcome["http_429_retried"] = result.summary.rate_limited
    return outcome


def contend(name: str, send: Callable[[str], Counter[str]], rows: int) -> dict[str, Any]:
    config = SandboxConfig(rate_limit=LIMIT, latency=LATENCY, jitter=JITTER, seed=6)
    with Sandbox(config) as sandbox:
        started = time.perf_counter()
        outcome = send(sandbox.url)
        wall = time.perf_counter() - started
        delivered = len({entry.to for entry in sandbox.ledger()})
        stats = sandbox.stats()
    return {
        "name": name,
        "rows": rows,
        "delivered": delivered,
        "lost": rows - delivered,
        "lost_to_429": outcome.get("lost_429", 0),
        "requests": stats.create_requests,
        "answered_429": stats.rate_limited,
        "wall_s": wall,
        "outcome": dict(outcome),
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=ROWS)
    args = parser.parse_args(argv)
    quiet_logs()

    frame = contacts(args.rows)
    rows = sdk_rows(frame)
    with tempfile.TemporaryDirectory(prefix="bench-sdk-") as tmp:
        results = [
            contend("sdk sequential", lambda url: run_sdk(url, rows, 1), args.rows),
            contend(f"sdk {THREADS} threads", lambda url: run_sdk(url, rows, THREADS), args.rows),
            contend("batch-engage", lambda url: run_batch_engage(url, frame, Path(tmp)), args.rows),
        ]
    by_name = {r["name"]: r for r in results}
    ours = by_name["batch-engage"]
    figures: dict[str, Any] = {
        "rows": args.rows,
        "sandbox": {"rate_limit": LIMIT, "latency_s": LATENCY, "jitter_s": JITTER},
        "contenders": results,
    }
    targets = [
        Target("batch-engage rows delivered", ours["delivered"], ">=", args.rows),
        Target("batch-engage rows lost", ours["lost"], "<=", 0),
    ]
    record = emit("sdk_comparison", figures, targets, notes=[f"{args.rows} rows each (see the module docstring)"])
    print_table(
        "  side by side",
        [
            (
                r["name"],
                f"{r['delivered']:,}",
                f"{r['lost']:,}",
                f"{r['lost_to_429']:,}",
                f"{r['requests']:,}",
                f"{r['wall_s']:.1f}",
            )
            for r in results
        ],
        header=("contender", "delivered", "lost", "lost to 429", "requests", "wall s"),
    )
    return record


if __name__ == "__main__":
    main()
