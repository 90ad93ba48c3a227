"""Benchmark: the checkpoint's cost per row on the send path, SQLite beside PostgreSQL, from one run.

What a run writes per contact: its intent (committed before the request leaves, in
groups of about a second's worth at ``rate``) and its outcome (committed in groups of
up to ~100, the recorder's flush). Both backends are driven through the same
``open_checkpoint`` API with the same groups, one after the other, and the wall time of
``write_intents`` + ``write_outcomes`` is divided by the rows written.

SQLite: a file in a temporary folder (WAL, ``synchronous=FULL``). PostgreSQL: the server
in ``BATCH_ENGAGE_TEST_PG`` (default ``postgresql://postgres@127.0.0.1:5432/test``), a
schema of its own, dropped afterwards. Target (issue 17): PostgreSQL within 2x SQLite.

    python benchmarks/checkpoint_cost.py [--rows 20000] [--intent-group 100] [--outcome-group 100]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
import uuid
from pathlib import Path

import psycopg

from batch_engage.checkpoint.store import Intent, Outcome, Target, open_checkpoint
from batch_engage.states import RowState

SERVER = os.environ.get("BATCH_ENGAGE_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")
TARGET = Target(base_url="http://127.0.0.1:9", identity=None, sandbox=False)


def _cost(location: str, rows: int, intent_group: int, outcome_group: int) -> tuple[float, float]:
    """Seconds per row for intents and for outcomes, written in the run's group sizes."""
    contacts = [f"+1415{i:07d}" for i in range(rows)]
    intent_s = outcome_s = 0.0
    with open_checkpoint(location, {"bench": 1}, TARGET) as cp:
        cp.start_run("2026-01-01T00:00:00.000Z", "bench")
        for start in range(0, rows, intent_group):
            group = contacts[start : start + intent_group]
            intents = [Intent(c, start + n, c, "+15005550006", "h", f"tok:{c}") for n, c in enumerate(group)]
            t = time.perf_counter()
            cp.write_intents(intents, at="2026-01-01T00:00:01.000Z", twilio_at=None)
            intent_s += time.perf_counter() - t
            for o_start in range(0, len(group), outcome_group):
                outcomes = [
                    Outcome(c, RowState.SENT, sid=f"FN{c}", http_status=201, completed_at="2026-01-01T00:00:02.000Z")
                    for c in group[o_start : o_start + outcome_group]
                ]
                t = time.perf_counter()
                cp.write_outcomes(outcomes)
                outcome_s += time.perf_counter() - t
    return intent_s / rows, outcome_s / rows


def main(argv: list[str] | None = None) -> None:
    """Run both backends with the same rows and groups and print their cost per row side by side."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--intent-group", type=int, default=100, help="intents per commit (about a second at rate)")
    parser.add_argument("--outcome-group", type=int, default=100, help="outcomes per commit (the recorder's flush)")
    args = parser.parse_args(argv)
    schema = f"bench_{uuid.uuid4().hex[:10]}"
    results: dict[str, tuple[float, float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        results["SQLite"] = _cost(str(Path(tmp) / "bench.checkpoint"), args.rows, args.intent_group, args.outcome_group)
    sep = "&" if "?" in SERVER else "?"
    try:
        results["PostgreSQL"] = _cost(
            f"{SERVER}{sep}schema={schema}#bench", args.rows, args.intent_group, args.outcome_group
        )
    finally:
        with psycopg.connect(SERVER, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    print(
        f"checkpoint cost per row: {args.rows} rows, intents in groups of {args.intent_group}, "
        f"outcomes in groups of {args.outcome_group}"
    )
    print(f"{'backend':<12}{'intent µs':>12}{'outcome µs':>12}{'total µs':>12}{'vs SQLite':>11}")
    base = sum(results["SQLite"])
    for name, (intent, outcome) in results.items():
        total = intent + outcome
        print(f"{name:<12}{intent * 1e6:>12.1f}{outcome * 1e6:>12.1f}{total * 1e6:>12.1f}{total / base:>10.2f}x")


if __name__ == "__main__":
    main()
