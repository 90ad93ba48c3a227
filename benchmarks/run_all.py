"""Run every benchmark, each in its own process, and print one combined table.

    python benchmarks/run_all.py                 # all nine, about 8 minutes on 2 cores
    python benchmarks/run_all.py --only planning,resume
    python benchmarks/run_all.py --json out/bench.json

Each benchmark prints one JSON line (figures, targets, pass/fail, machine) and a
short table; this script shows those tables as they finish, then every target of
every benchmark in one table. Exit 0 when every target is met, 1 when some are
not, 2 when a benchmark could not run at all.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from benchkit import HERE, machine, print_table

# In the order; the slow, sleep-bound ones are not run in parallel on purpose:
# two at once would share 2 cores and skew each other's CPU figures.
BENCHMARKS = (
    "rate_fidelity",
    "unknown_limit",
    "client_ceiling",
    "send_path",
    "planning",
    "validate_process",
    "resume",
    "report_page",
    "sdk_comparison",
)
BUDGET_S = 300.0


def run_one(name: str) -> tuple[dict[str, Any] | None, float, str]:
    """Run ``benchmarks/NAME.py``; its JSON record (None if it failed), its wall time, and its stdout."""
    started = time.perf_counter()
    proc = subprocess.run([sys.executable, str(HERE / f"{name}.py")], capture_output=True, text=True, check=False)
    wall = time.perf_counter() - started
    record = next(
        (json.loads(line) for line in proc.stdout.splitlines() if line.startswith('{"benchmark"')),
        None,
    )
    if proc.returncode != 0 or record is None:
        # Only a failure's stderr is shown: a healthy run's warnings (e.g. the runner's) are noise here.
        print(f"{name}: exit {proc.returncode}\n{proc.stderr[-4000:]}", file=sys.stderr)
        return None, wall, proc.stdout
    return record, wall, proc.stdout


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", help="comma-separated benchmark names (default: all)")
    parser.add_argument("--json", metavar="PATH", help="also write every record to PATH as one JSON document")
    args = parser.parse_args(argv)
    names = [n.strip() for n in args.only.split(",")] if args.only else list(BENCHMARKS)
    unknown = [n for n in names if n not in BENCHMARKS]
    if unknown:
        parser.error(f"unknown benchmark(s): {', '.join(unknown)} (known: {', '.join(BENCHMARKS)})")

    host = machine()
    print(
        f"machine: {host['cpu']}, {host['cores']} cores, {host['os']}, Python {host['python']}, "
        f"polars {host['polars']}, httpx {host['httpx']}, httpx-aiohttp {host['httpx_aiohttp']}, "
        f"aiohttp {host['aiohttp']}, twilio {host['twilio']}; {host['date']}; load {host['load_average_1m']}",
        flush=True,
    )
    package = host["batch_engage"]
    print(f"batch_engage: {package['path']} (commit {package['commit']}, edited: {package['dirty']})\n", flush=True)

    started = time.perf_counter()
    records: list[dict[str, Any]] = []
    rows: list[tuple[str, ...]] = []
    crashed: list[str] = []
    for name in names:
        record, wall, stdout = run_one(name)
        # The benchmark's own table, without its JSON line: the combined table comes last.
        print("\n".join(line for line in stdout.splitlines() if not line.startswith('{"benchmark"')))
        print(f"  ({wall:.1f} s)\n", flush=True)
        if record is None:
            crashed.append(name)
            rows.append((name, "(did not run)", "", "", "ERROR"))
            continue
        record["wall_s"] = round(wall, 2)
        records.append(record)
        for target, t in record["targets"].items():
            rows.append((name, target, t["shown"], t["target"], "PASS" if t["pass"] else "FAIL"))
    total = time.perf_counter() - started

    print_table(
        f"all benchmarks ({host['cpu']}, {host['cores']} cores, {host['date']})",
        rows,
        header=("benchmark", "figure", "value", "target", ""),
    )
    met = sum(1 for r in rows if r[-1] == "PASS")
    print(f"\n{met} of {len(rows)} targets met; total {total:.0f} s (budget {BUDGET_S:.0f} s)")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        document = {"machine": host, "total_s": round(total, 1), "results": records}
        Path(args.json).write_text(json.dumps(document, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    if crashed:
        return 2
    return 0 if met == len(rows) else 1


if __name__ == "__main__":
    sys.exit(main())
