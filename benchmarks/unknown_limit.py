"""Benchmark 2, unknown limit: configured well above the real limit, does the pacer find it, and lose nothing?

The sandbox limits creates to 50/s (about 100 ms latency); the job asks for 200/s
with enough requests in flight for it (rate x latency = 20; 32 allowed). The pacer
has to find 50/s from the 429s alone. Studio's one-active-run rule is off in the
sandbox, so a row sent twice would show up twice in the ledger instead of being
handed back quietly.

Targets (issue 7): achieved >= 45/s; 429s <= 5% of requests; rows lost = 0 and rows
sent twice = 0, per the sandbox's ledger.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

from benchkit import Target, contacts, emit, make_spec, quiet_logs
from rate_fidelity import ledger_rate

from batch_engage.credentials import Credentials
from batch_engage.runner import RunOptions, launch, run_job
from batch_engage.sandbox import SANDBOX_PASSWORD, SANDBOX_USERNAME, Sandbox, SandboxConfig

LIMIT = 50.0
RATE = 200.0
CONCURRENCY = 32
LATENCY = 0.1
JITTER = 0.02
# 1,500 rows at 50/s is 30 s: long enough for slow start, the first cuts and a settled stretch.
ROWS = 1_500


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=ROWS)
    args = parser.parse_args(argv)
    quiet_logs()

    frame = contacts(args.rows)
    config = SandboxConfig(rate_limit=LIMIT, latency=LATENCY, jitter=JITTER, active_rule=False, seed=2)
    with Sandbox(config) as sandbox, tempfile.TemporaryDirectory(prefix="bench-unknown-") as tmp:
        spec = make_spec(Path(tmp), base_url=sandbox.url, rate=RATE, concurrency=CONCURRENCY)
        result = asyncio.run(
            run_job(
                launch(spec, Credentials(SANDBOX_USERNAME, SANDBOX_PASSWORD), sandbox=False),
                frame=frame,
                options=RunOptions(),
            )
        )
        ledger = sandbox.ledger()
        stats = sandbox.stats()

    wanted = set(frame.get_column("phone").to_list())
    per_contact = Counter(entry.to for entry in ledger)
    lost = len(wanted - set(per_contact))
    twice = sum(n - 1 for n in per_contact.values() if n > 1)
    strangers = len(set(per_contact) - wanted)
    achieved = ledger_rate(ledger)
    # The second half alone: the rate the pacer settled at, without slow start and the first cuts.
    half = ledger[len(ledger) // 2 :]
    settled = ledger_rate(half)
    share_429 = stats.rate_limited / stats.create_requests if stats.create_requests else 1.0
    figures = {
        "rows": args.rows,
        "configured_rate": RATE,
        "concurrency": CONCURRENCY,
        "sandbox": {"rate_limit": LIMIT, "latency_s": LATENCY, "jitter_s": JITTER, "active_rule": False},
        "achieved_rate_server": achieved,
        "achieved_rate_second_half": settled,
        "achieved_rate_summary": result.summary.achieved_rate,
        "pacer_settled_rate": result.summary.settled_rate,
        "create_requests": stats.create_requests,
        "rate_limited": stats.rate_limited,
        "share_429": share_429,
        "rows_lost": lost,
        "rows_sent_twice": twice,
        "unknown_contacts": strangers,
        "counts": result.counts,
        "duration_s": result.summary.duration,
    }
    targets = [
        Target("achieved rate", achieved, ">=", 45, "/s"),
        Target("429 share", share_429 * 100, "<=", 5, "%"),
        Target("rows lost", lost, "<=", 0),
        Target("rows sent twice", twice, "<=", 0),
    ]
    table = [
        ("achieved rate, second half /s", settled),
        ("pacer settled at /s", result.summary.settled_rate),
        ("create requests", stats.create_requests),
        ("429 answers", stats.rate_limited),
        ("duration s", result.summary.duration),
    ]
    notes = [
        "achieved rate = (runs - 1) / (last - first date_created) in the sandbox's ledger, whole run",
        "the sandbox's bucket starts full (50 tokens), as a token bucket does: the first second admits more",
    ]
    return emit("unknown_limit", figures, targets, table=table, notes=notes)


if __name__ == "__main__":
    main()
