"""Benchmark, send path: does a whole ``batch-engage run`` cost about what its HTTP client costs?

Set-up (not timed): 10,000 distinct contacts as a CSV and a v2 (Executions) job at
``rate = 10000``, ``concurrency = 64``, beside ``loopback_server.py`` (its own process,
answering every POST at once). Timed, each as a child process, interleaved and repeated
(median of ``--repeats``), CPU from the child's own rusage (``os.wait4``: user + system):

* ``run``: ``batch-engage run JOB --base-url URL --no-preflight --quiet`` on a fresh
  checkpoint (interpreter start, imports, planning, journal, sending, results table);
* ``validate``: ``batch-engage validate JOB --quiet`` (interpreter start, imports, planning);
* ``loop``: this file with ``--bare-loop``: the same 10,000 POSTs (form body with To,
  From and a Parameters JSON; the answer's JSON parsed) through ``httpx.AsyncClient``
  over httpx-aiohttp, 64 at a time, and nothing else.

Both sides subtract what comes before the first row, consistently: the run's cost is
``run - validate`` (interpreter start, imports, planning), the loop's is ``loop - imports``,
where ``imports`` is a child (``--imports-only``) that starts the interpreter and imports
httpx and httpx-aiohttp, then exits. The loop's whole process is shown too (its start
included, which only flatters the run's ratio). Rows/s for both is what the loopback server
saw: rows / (last POST - first POST), its clock being ``CLOCK_MONOTONIC``.

Targets (issue 30): run CPU/row <= 1.15 x the loop's; run rows/s >= 0.9 x the loop's.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from benchkit import (
    FLOW_SID,
    FROM,
    LOOPBACK_PASSWORD,
    LOOPBACK_USER,
    LoopbackServer,
    Target,
    cli,
    contacts,
    emit,
    median,
    write_job_file,
)

ROWS = 10_000
RATE = 10_000
CONCURRENCY = 64
REPEATS = 3


def write_job(tmp: Path, rows: int) -> Path:
    """The contacts CSV and a job file reading it (results and checkpoint under ``out/``)."""
    contacts(rows).write_csv(tmp / "contacts.csv")
    return write_job_file(
        tmp / "send.toml",
        input_path="contacts.csv",
        api="executions",
        rate=RATE,
        concurrency=CONCURRENCY,
        results="out/send.results.csv",
        checkpoint="out/send.checkpoint",
    )


def child(command: list[str], log: Path) -> dict[str, float]:
    """Run ``command`` to its end; its CPU seconds (user + system, this child alone) and exit code."""
    env = {**os.environ, "TWILIO_ACCOUNT_SID": LOOPBACK_USER, "TWILIO_AUTH_TOKEN": LOOPBACK_PASSWORD}
    for name in ("TWILIO_API_KEY", "TWILIO_API_SECRET", "TWILIO_REGION", "TWILIO_EDGE"):
        env.pop(name, None)
    with log.open("w") as err:
        proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=err, env=env)
        # wait4 reaps this one child and returns its rusage alone.
        _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(command[:3])} exited {proc.returncode}; see {log}")
    return {"cpu": usage.ru_utime + usage.ru_stime}


def sent_rate(server: LoopbackServer, rows: int) -> float:
    """Rows per second between the first and the last POST the server saw; every row must have come."""
    stats = server.stats()
    if stats["posts"] != rows:
        raise RuntimeError(f"the server saw {stats['posts']} POSTs, not {rows}")
    return rows / (stats["last_post"] - stats["first_post"])


def sample(tmp: Path, job: Path, server: LoopbackServer, rows: int) -> dict[str, float]:
    """One of each child, in turn: validate, run (fresh checkpoint), the bare loop, the import-only loop."""
    shutil.rmtree(tmp / "out", ignore_errors=True)
    validate = child([*cli(), "validate", str(job), "--quiet"], tmp / "validate.log")
    server.stats(reset=True)
    run = child([*cli(), "run", str(job), "--base-url", server.url, "--no-preflight", "--quiet"], tmp / "run.log")
    run_rps = sent_rate(server, rows)
    server.stats(reset=True)
    here = str(Path(__file__).resolve())
    loop = child([sys.executable, here, "--bare-loop", server.url, str(tmp / "contacts.csv")], tmp / "loop.log")
    loop_rps = sent_rate(server, rows)
    imports = child([sys.executable, here, "--imports-only"], tmp / "imports.log")
    return {
        "run_cpu": run["cpu"],
        "validate_cpu": validate["cpu"],
        "loop_cpu": loop["cpu"],
        "imports_cpu": imports["cpu"],
        "run_rps": run_rps,
        "loop_rps": loop_rps,
    }


# -- the bare loop (a child of its own) --------------------------------------------------


def bare_loop(base_url: str, path: str) -> None:
    """The reference: the same POSTs through httpx over httpx-aiohttp, 64 in flight, each answer's JSON read."""
    # Imported here: the loop's child imports only what the loop needs.
    import httpx
    from httpx_aiohttp import AiohttpTransport

    with open(path, encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f))
    url = f"{base_url}/v2/Flows/{FLOW_SID}/Executions"

    async def main() -> None:
        limits = httpx.Limits(max_connections=CONCURRENCY + 2, max_keepalive_connections=CONCURRENCY + 2)
        async with httpx.AsyncClient(
            auth=httpx.BasicAuth(LOOPBACK_USER, LOOPBACK_PASSWORD),
            transport=AiohttpTransport(limits=limits, trust_env=False),
            limits=limits,
            timeout=httpx.Timeout(connect=5.0, read=15.0, write=15.0, pool=None),
        ) as http:
            left = iter(rows)

            async def worker() -> None:
                for row in left:
                    parameters = {
                        "first_name": row["first_name"],
                        "city": row["city"],
                        "visits": int(row["visits"]),
                        "order": {"total": float(row["order_total"])},
                    }
                    form = {"To": row["phone"], "From": FROM, "Parameters": json.dumps(parameters)}
                    response = await http.post(url, data=form)
                    if response.status_code != 201 or not response.json().get("sid"):
                        raise RuntimeError(f"unexpected answer {response.status_code}")

            await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))

    asyncio.run(main())


def imports_only() -> None:
    """What the loop's process costs before its first row: interpreter start and the loop's imports."""
    import httpx  # noqa: F401
    import httpx_aiohttp  # noqa: F401


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=ROWS)
    parser.add_argument("--repeats", type=int, default=REPEATS)
    args = parser.parse_args(argv)

    samples: list[dict[str, float]] = []
    with LoopbackServer() as server, tempfile.TemporaryDirectory(prefix="bench-send-") as tmpdir:
        tmp = Path(tmpdir)
        job = write_job(tmp, args.rows)
        for _ in range(args.repeats):
            samples.append(sample(tmp, job, server, args.rows))

    def per_row(key: str) -> float:
        return median([s[key] for s in samples]) / args.rows * 1e6

    run_us = median([s["run_cpu"] - s["validate_cpu"] for s in samples]) / args.rows * 1e6
    loop_us = per_row("loop_cpu")
    loop_sending_us = median([s["loop_cpu"] - s["imports_cpu"] for s in samples]) / args.rows * 1e6
    run_rps, loop_rps = median([s["run_rps"] for s in samples]), median([s["loop_rps"] for s in samples])
    figures = {
        "rows": args.rows,
        "rate": RATE,
        "concurrency": CONCURRENCY,
        "repeats": args.repeats,
        "run_minus_validate_cpu_us_per_row": run_us,
        "loop_cpu_us_per_row": loop_us,
        "loop_minus_imports_cpu_us_per_row": loop_sending_us,
        "run_cpu_us_per_row": per_row("run_cpu"),
        "validate_cpu_us_per_row": per_row("validate_cpu"),
        "cpu_ratio": run_us / loop_sending_us,
        "cpu_ratio_against_whole_loop": run_us / loop_us,
        "run_rows_per_s": run_rps,
        "loop_rows_per_s": loop_rps,
        "rows_per_s_ratio": run_rps / loop_rps,
        "samples": samples,
    }
    targets = [
        Target("run CPU/row / loop CPU/row", run_us / loop_sending_us, "<=", 1.15, "x"),
        Target("run rows/s / loop rows/s", run_rps / loop_rps, ">=", 0.9, "x"),
    ]
    table = [
        ("run - validate CPU/row us", run_us),
        ("loop - imports CPU/row us", loop_sending_us),
        ("loop CPU/row us (whole process)", loop_us),
        ("CPU ratio against the whole loop", run_us / loop_us),
        ("run rows/s (server's first to last POST)", run_rps),
        ("loop rows/s (server's first to last POST)", loop_rps),
    ]
    notes = [
        f"median of {args.repeats}; each figure a child process's rusage (os.wait4), user + system",
        "run: validate of the same job subtracted (start, imports, planning); "
        "loop: an import-only child subtracted (start, httpx and httpx-aiohttp imported)",
    ]
    return emit("send_path", figures, targets, table=table, notes=notes)


if __name__ == "__main__":
    if sys.argv[1:2] == ["--bare-loop"]:
        bare_loop(sys.argv[2], sys.argv[3])
    elif sys.argv[1:2] == ["--imports-only"]:
        imports_only()
    else:
        main()
