"""Benchmark 3, client ceiling: how fast can this process send when the server answers at once?

Against ``loopback_server.py`` (its own process, so only the client's CPU is
counted), 64 requests in flight, three clients side by side, each repeated and
reported as the median:

* ``httpx``: a plain ``httpx.AsyncClient`` (httpx's own connection pool), same auth,
  headers, limits and timeouts as ``make_http_client``, through ``StudioClient.create``;
* ``make_http_client``: the runner's own client (httpx API over the httpx-aiohttp
  transport), through ``StudioClient.create``;
* ``run_job``: the whole runner at rate 100,000 and concurrency 64: planning, the
  checkpoint's intents and outcomes, the pacer, the results file. Its CPU per row is
  the pipeline's whole overhead per row.

Targets (issue 7): >= 2,000 requests/s and <= 400 us of client CPU per request, for
the runner's client and for the whole runner (plain httpx is the reference).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import tempfile
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import httpx
from benchkit import (
    FLOW_SID,
    FROM,
    LOOPBACK_PASSWORD,
    LOOPBACK_USER,
    LoopbackServer,
    Target,
    contacts,
    emit,
    make_spec,
    median,
    quiet_logs,
)

from batch_engage.credentials import Credentials
from batch_engage.runner import RunOptions, launch, run_job
from batch_engage.twilio.client import USER_AGENT, StudioClient, make_http_client

CONCURRENCY = 64
REQUESTS = 5_000
# httpx's own pool needs ~3 ms of CPU a request at 64 in flight: fewer requests keep the suite in budget.
REFERENCE_REQUESTS = 1_500
ROWS = 5_000
REPEATS = 3
WARMUP = 300
PARAMS = '{"first_name":"Zoë","city":"Zürich","visits":12,"order":{"total":42.5}}'


def plain_httpx() -> httpx.AsyncClient:
    """httpx's own pool, configured as make_http_client configures its client (only the transport differs)."""
    limits = httpx.Limits(max_connections=CONCURRENCY + 2, max_keepalive_connections=CONCURRENCY + 2)
    return httpx.AsyncClient(
        auth=httpx.BasicAuth(LOOPBACK_USER, LOOPBACK_PASSWORD),
        timeout=httpx.Timeout(connect=5.0, read=15.0, write=15.0, pool=None),
        limits=limits,
        headers={"User-Agent": USER_AGENT, "Accept": "application/json"},
    )


def runner_client() -> httpx.AsyncClient:
    return make_http_client(
        username=LOOPBACK_USER,
        password=LOOPBACK_PASSWORD,
        concurrency=CONCURRENCY,
        connect_timeout=5.0,
        read_timeout=15.0,
    )


async def _blast(client: StudioClient, count: int) -> None:
    """``count`` creates with ``CONCURRENCY`` in flight: no pacer, the client is the only limit."""
    left = iter(range(count))

    async def worker() -> None:
        for i in left:
            await client.create(f"+1415{2_000_000 + i:07d}", FROM, PARAMS)

    await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))


async def measure_client(make: Callable[[], httpx.AsyncClient], base_url: str, count: int) -> dict[str, float]:
    async with make() as http:
        client = StudioClient(http, base_url=base_url, flow_sid=FLOW_SID, api="executions")
        # Warm up: open the pool's connections so the timed part is steady state.
        await _blast(client, WARMUP)
        gc.collect()
        wall, cpu = time.perf_counter(), time.process_time()
        await _blast(client, count)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return {"rps": count / wall, "cpu_us": cpu / count * 1e6, "wall": wall}


async def measure_runner(base_url: str, rows: int, tmp: Path) -> dict[str, float]:
    spec = make_spec(tmp, base_url=base_url, rate=100_000, concurrency=CONCURRENCY, api="executions")
    frame = contacts(rows)
    gc.collect()
    wall, cpu = time.perf_counter(), time.process_time()
    result = await run_job(
        launch(spec, Credentials(LOOPBACK_USER, LOOPBACK_PASSWORD), sandbox=False), frame=frame, options=RunOptions()
    )
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    sent = result.counts.get("sent", 0)
    if sent != rows:
        raise RuntimeError(f"run_job sent {sent} of {rows} rows: {result.counts}")
    return {
        # Dispatch only: first request to last answer, as the run summary measures it.
        "rps": result.summary.achieved_rate,
        # End to end: planning, checkpoint, dispatch, results file.
        "rows_per_s_end_to_end": rows / wall,
        "cpu_us": cpu / rows * 1e6,
        "wall": wall,
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=REQUESTS, help="requests per client sample")
    parser.add_argument("--rows", type=int, default=ROWS, help="rows per run_job sample")
    parser.add_argument("--repeats", type=int, default=REPEATS)
    args = parser.parse_args(argv)
    quiet_logs()

    samples: dict[str, list[dict[str, float]]] = {"httpx": [], "make_http_client": [], "run_job": []}
    server_cpu: dict[str, list[float]] = {k: [] for k in samples}
    with LoopbackServer() as server, tempfile.TemporaryDirectory(prefix="bench-ceiling-") as tmpdir:
        runs: dict[str, Callable[[int], Coroutine[Any, Any, dict[str, float]]]] = {
            "httpx": lambda r: measure_client(plain_httpx, server.url, min(args.requests, REFERENCE_REQUESTS)),
            "make_http_client": lambda r: measure_client(runner_client, server.url, args.requests),
            "run_job": lambda r: measure_runner(server.url, args.rows, Path(tmpdir) / f"run{r}"),
        }
        # Interleaved, so a slow moment of the machine does not land on one client only.
        for r in range(args.repeats):
            for name, run in runs.items():
                server.stats(reset=True)
                samples[name].append(asyncio.run(run(r)))
                server_cpu[name].append(server.stats()["server_cpu"])

    figures: dict[str, Any] = {"concurrency": CONCURRENCY, "repeats": args.repeats}
    for name, values in samples.items():
        figures[name] = {
            "requests_per_s": median([v["rps"] for v in values]),
            "client_cpu_us_per_request": median([v["cpu_us"] for v in values]),
            "server_cpu_s": median(server_cpu[name]),
            "samples_rps": [v["rps"] for v in values],
            "samples_cpu_us": [v["cpu_us"] for v in values],
        }
    figures["run_job"]["rows_per_s_end_to_end"] = median([v["rows_per_s_end_to_end"] for v in samples["run_job"]])
    figures["requests_per_sample"] = {
        "httpx": min(args.requests, REFERENCE_REQUESTS),
        "make_http_client": args.requests,
    }
    figures["rows_per_run_job"] = args.rows

    targets = [
        Target("make_http_client requests/s", figures["make_http_client"]["requests_per_s"], ">=", 2000, "/s"),
        Target(
            "make_http_client CPU/request", figures["make_http_client"]["client_cpu_us_per_request"], "<=", 400, "us"
        ),
        Target("run_job requests/s", figures["run_job"]["requests_per_s"], ">=", 2000, "/s"),
        Target("run_job CPU/row", figures["run_job"]["client_cpu_us_per_request"], "<=", 400, "us"),
        # Issue 30: the whole run at the cost of its HTTP client.
        Target(
            "run_job CPU/row / make_http_client CPU/request",
            round(
                figures["run_job"]["client_cpu_us_per_request"]
                / figures["make_http_client"]["client_cpu_us_per_request"],
                4,
            ),
            "<=",
            1.2,
            "x",
        ),
    ]
    table = [
        ("httpx (reference) requests/s", figures["httpx"]["requests_per_s"]),
        ("httpx (reference) CPU/request us", figures["httpx"]["client_cpu_us_per_request"]),
        ("run_job rows/s end to end", figures["run_job"]["rows_per_s_end_to_end"]),
    ]
    notes = [
        f"median of {args.repeats}; requests per sample: httpx {min(args.requests, REFERENCE_REQUESTS)}, "
        f"make_http_client {args.requests}, run_job {args.rows} rows; {WARMUP} warm-up requests per client",
        "CPU is time.process_time() of this process (all threads); the server is a separate process",
    ]
    return emit("client_ceiling", figures, targets, table=table, notes=notes)


if __name__ == "__main__":
    main()
