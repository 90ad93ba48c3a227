"""Benchmark 1, rate fidelity: at a known limit, does the run go at that limit, and without 429s?

The sandbox (batch_engage.sandbox) limits creates to 20/s and answers after about
100 ms; the job sends 1,000 distinct contacts at ``rate = 20``. Measured at the
server: the rate at which the sandbox created runs (its ledger's timestamps) and
the share of create requests it answered 429. The run summary's own
``achieved_rate`` is shown beside it.

Targets (issue 7): achieved / 20 >= 0.98; 429s <= 0.5% of requests.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
from pathlib import Path
from typing import Any

from benchkit import Target, contacts, emit, make_spec, quiet_logs

from batch_engage.credentials import Credentials
from batch_engage.runner import RunOptions, launch, run_job
from batch_engage.sandbox import SANDBOX_PASSWORD, SANDBOX_USERNAME, LedgerEntry, Sandbox, SandboxConfig

LIMIT = 20.0
LATENCY = 0.1
JITTER = 0.02
ROWS = 1_000


def ledger_rate(ledger: list[LedgerEntry]) -> float:
    """Runs per second between the first and the last run the server created (n - 1 intervals)."""
    if len(ledger) < 2:
        return 0.0
    span = (ledger[-1].date_created - ledger[0].date_created).total_seconds()
    return (len(ledger) - 1) / span if span > 0 else 0.0


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=ROWS)
    args = parser.parse_args(argv)
    quiet_logs()

    config = SandboxConfig(rate_limit=LIMIT, latency=LATENCY, jitter=JITTER, seed=1)
    with Sandbox(config) as sandbox, tempfile.TemporaryDirectory(prefix="bench-rate-") as tmp:
        # Concurrency 8 (the default) covers rate x latency = 2 in flight with room for jitter.
        spec = make_spec(Path(tmp), base_url=sandbox.url, rate=LIMIT, concurrency=8)
        result = asyncio.run(
            run_job(
                launch(spec, Credentials(SANDBOX_USERNAME, SANDBOX_PASSWORD), sandbox=False),
                frame=contacts(args.rows),
                options=RunOptions(),
            )
        )
        ledger = sandbox.ledger()
        stats = sandbox.stats()

    achieved = ledger_rate(ledger)
    share_429 = stats.rate_limited / stats.create_requests if stats.create_requests else 1.0
    figures = {
        "rows": args.rows,
        "sandbox": {"rate_limit": LIMIT, "latency_s": LATENCY, "jitter_s": JITTER},
        "achieved_rate_server": achieved,
        "achieved_over_limit": achieved / LIMIT,
        "achieved_rate_summary": result.summary.achieved_rate,
        "settled_rate": result.summary.settled_rate,
        "create_requests": stats.create_requests,
        "rate_limited": stats.rate_limited,
        "share_429": share_429,
        "created": len(ledger),
        "counts": result.counts,
        "duration_s": result.summary.duration,
    }
    targets = [
        Target("achieved / limit", achieved / LIMIT, ">=", 0.98),
        Target("429 share", share_429 * 100, "<=", 0.5, "%"),
        Target("rows created", len(ledger), ">=", args.rows),
    ]
    table = [
        ("achieved rate (server) /s", achieved),
        ("achieved rate (run summary) /s", result.summary.achieved_rate),
        ("create requests", stats.create_requests),
        ("429 answers", stats.rate_limited),
        ("duration s", result.summary.duration),
    ]
    notes = ["achieved rate = (runs - 1) / (last - first date_created) in the sandbox's ledger"]
    return emit("rate_fidelity", figures, targets, table=table, notes=notes)


if __name__ == "__main__":
    main()
