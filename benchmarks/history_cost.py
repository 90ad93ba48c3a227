"""Benchmark: what one claim + settle costs in the contact history, SQLite against PostgreSQL, in one run.

Every request a capped job sends first *claims* its contact (caps checked and the claim
recorded in one transaction) and later *settles* it (the SID written). This measures
that pair on a history already holding ``--seed-rows`` past contacts:

* one thread: microseconds per claim + settle, median of 3 rounds;
* ``--threads`` threads (the runner's worker threads): pairs per second, all threads together.

SQLite is a file in a temporary folder; PostgreSQL a throwaway schema on the server named
by ``BATCH_ENGAGE_BENCH_PG`` (default ``postgresql://postgres@127.0.0.1:5432/test``).
No target: the figures say how much of a request's budget the history takes.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
from benchkit import FLOW_SID, emit, median, quiet_logs

from batch_engage.history.store import HistoryStore, open_history, owner
from batch_engage.job.sections import parse_cap

CLAIMS = 2_000
SEED_ROWS = 100_000
THREADS = 4
DEFAULT_URL = "postgresql://postgres@127.0.0.1:5432/test"
CAP = parse_cap("1 per 7d", key="cap")


def seed(store: HistoryStore, rows: int) -> None:
    """Past contacts the caps have to look through (other numbers than the ones claimed)."""
    now = time.time()
    store.record((f"+1646{i:07d}", FLOW_SID, f"FN{i:032x}", now - i) for i in range(rows))


def one_round(store: HistoryStore, job: str, n: int) -> float:
    """Microseconds per claim + settle, over ``n`` fresh contacts, one thread."""
    started = time.perf_counter()
    for i in range(n):
        who = owner(job, str(i))
        store.claim(f"+1415{i:07d}", FLOW_SID, who, CAP, None)
        store.settle(who, f"FN{i:032x}")
    return (time.perf_counter() - started) / n * 1e6


def threaded(store: HistoryStore, job: str, n: int, threads: int) -> float:
    """Claim + settle pairs per second with ``threads`` threads sharing the store."""

    def work(part: int) -> None:
        for i in range(part, n, threads):
            who = owner(job, str(i))
            store.claim(f"+1212{i:07d}", FLOW_SID, who, CAP, None)
            store.settle(who, f"FN{i:032x}")

    workers = [threading.Thread(target=work, args=(t,)) for t in range(threads)]
    started = time.perf_counter()
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    return n / (time.perf_counter() - started)


def measure(opener: Callable[[], HistoryStore], args: argparse.Namespace) -> dict[str, Any]:
    """Seed, then the single-thread rounds and the threaded run, on one store."""
    with opener() as store:
        seed(store, args.seed_rows)
        rounds = [one_round(store, f"round{r}", args.claims) for r in range(3)]
        per_s = threaded(store, "threads", args.claims, args.threads)
    return {"us_per_claim_settle": median(rounds), "pairs_per_s_threaded": per_s}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--claims", type=int, default=CLAIMS)
    parser.add_argument("--seed-rows", type=int, default=SEED_ROWS)
    parser.add_argument("--threads", type=int, default=THREADS)
    args = parser.parse_args(argv)
    quiet_logs()
    url = os.environ.get("BATCH_ENGAGE_BENCH_PG", DEFAULT_URL)
    schema = f"bench_{uuid.uuid4().hex[:10]}"
    with tempfile.TemporaryDirectory(prefix="bench-history-") as tmpdir:
        sqlite = measure(lambda: open_history(Path(tmpdir) / "history.sqlite"), args)
    try:
        postgres = measure(lambda: open_history(f"{url}{'&' if '?' in url else '?'}schema={schema}"), args)
    finally:
        with psycopg.connect(url, autocommit=True) as admin:
            admin.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")

    figures = {"claims": args.claims, "seed_rows": args.seed_rows, "sqlite": sqlite, "postgresql": postgres}
    table = [
        ("SQLite: µs per claim + settle (1 thread)", sqlite["us_per_claim_settle"]),
        ("PostgreSQL: µs per claim + settle (1 thread)", postgres["us_per_claim_settle"]),
        (f"SQLite: pairs/s ({args.threads} threads)", sqlite["pairs_per_s_threaded"]),
        (f"PostgreSQL: pairs/s ({args.threads} threads)", postgres["pairs_per_s_threaded"]),
        ("PostgreSQL / SQLite (1 thread)", f"{postgres['us_per_claim_settle'] / sqlite['us_per_claim_settle']:.2f}x"),
    ]
    notes = [
        f"{args.claims:,} fresh contacts per round on a history seeded with {args.seed_rows:,} contacts; "
        "cap 1 per 7d; single-thread figure is the median of 3 rounds; PostgreSQL over loopback"
    ]
    return emit("history_cost", figures, [], table=table, notes=notes)


if __name__ == "__main__":
    main()
