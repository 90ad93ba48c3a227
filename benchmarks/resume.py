"""Benchmark 5, resume: a million-row job with 990,000 rows done; how soon does the next request leave?

Set-up (not timed): a realistic 1,000,000-row CSV and a job file in a temporary
folder; the job is planned once (``runner.prepare``) and its checkpoint written
directly through the Checkpoint API: the plan, then intents and ``sent`` outcomes
for the first 990,000 sendable rows. That is the journal a real run would have left
(a real run of 990,000 rows at Twilio's 20/s would take 14 hours), written without
sending them.

Timed: ``batch-engage run JOB --base-url http://127.0.0.1:PORT --no-preflight`` as a
subprocess, from just before it is started until the loopback server (a separate
process) sees its first POST. The run is then stopped with SIGTERM, as a person
would with Ctrl-C, and its exit code (75: stopped early, resumable) is recorded.

Target (issue 30; issue 7 asked for 5): <= 1.5 s from process start to the first new request.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from benchkit import (
    LOOPBACK_PASSWORD,
    LOOPBACK_USER,
    LoopbackServer,
    Target,
    cli,
    emit,
    quiet_logs,
    realistic_contacts,
    stopwatch,
    write_job_file,
)

from batch_engage.checkpoint.store import Outcome, open_checkpoint
from batch_engage.checkpoint.store import Target as Studio
from batch_engage.clock import iso_ms
from batch_engage.job import load_spec
from batch_engage.plan.prepare import prepare
from batch_engage.runner.dispatch import Item, make_marker
from batch_engage.states import RowState

ROWS = 1_000_000
DONE = 990_000
FIRST_REQUEST_TIMEOUT = 60.0
# A few requests after the first show the run is really under way before it is stopped.
REQUESTS_BEFORE_STOP = 5


def write_job(tmp: Path) -> Path:
    """The resumed job: the contacts beside it, results and checkpoint under ``out/``."""
    return write_job_file(
        tmp / "resume.toml",
        input_path="contacts.csv",
        api="executions",
        results="out/resume.results.csv",
        checkpoint="out/resume.checkpoint",
    )


def build_checkpoint(job: Path, done: int, base_url: str) -> dict[str, Any]:
    """Plan the job and journal its first ``done`` sendable contacts as sent, through the Checkpoint API."""
    spec = load_spec(job)
    with stopwatch() as plan_time:
        prepared = prepare(spec)
    plan = prepared.plan
    pending = plan.filter(plan["status"] == "pending").head(done)
    rows = pending.select("row", "contact", "to", "from", "parameters").rows()
    stamp = iso_ms(datetime.now(UTC))
    target = Studio(base_url=base_url, identity=LOOPBACK_USER)
    with stopwatch() as journal_time, open_checkpoint(spec.output.checkpoint, prepared.fingerprint, target) as cp:
        cp.start_run(stamp, prepared.input_digest)
        # As a real run keeps it: with the key of what it was made from, so the resumed run may take it again.
        cp.save_plan(plan, prepared.key)
        items = [Item(row=r, contact=c, to=t, from_=f, parameters=p) for r, c, t, f, p in rows]
        for item in items:
            item.marker = make_marker(cp.token, item.contact)
        cp.write_intents([i.intent() for i in items], at=stamp, twilio_at=stamp)
        cp.write_outcomes(
            Outcome(
                contact=i.contact,
                state=RowState.SENT,
                sid=f"FN{i.row:032x}",
                http_status=201,
                attempts=1,
                completed_at=stamp,
            )
            for i in items
        )
    return {
        "plan_rows": plan.height,
        "pending_rows": int((plan["status"] == "pending").sum()),
        "journaled_sent": len(items),
        "setup_plan_s": plan_time["wall"],
        "setup_journal_s": journal_time["wall"],
    }


def time_to_first_request(job: Path, server: LoopbackServer, log: Path) -> dict[str, Any]:
    env = {
        **os.environ,
        "TWILIO_ACCOUNT_SID": LOOPBACK_USER,
        "TWILIO_AUTH_TOKEN": LOOPBACK_PASSWORD,
    }
    for name in ("TWILIO_API_KEY", "TWILIO_API_SECRET", "TWILIO_REGION", "TWILIO_EDGE"):
        env.pop(name, None)
    server.stats(reset=True)
    command = [*cli(), "run", str(job), "--base-url", server.url, "--no-preflight", "--quiet"]
    with log.open("w") as err:
        # time.monotonic is CLOCK_MONOTONIC, the same clock the server stamps its first POST with.
        started = time.monotonic()
        proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=err, env=env)
        try:
            stats = server.stats()
            while (stats["posts"] < REQUESTS_BEFORE_STOP) and proc.poll() is None:
                if time.monotonic() - started > FIRST_REQUEST_TIMEOUT:
                    break
                time.sleep(0.02)
                stats = server.stats()
            stop_sent = time.monotonic()
            proc.send_signal(signal.SIGTERM)
            code = proc.wait(timeout=60)
            exited = time.monotonic()
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    stats = server.stats()
    if stats["first_post"] is None:
        raise RuntimeError(f"no request reached the server within {FIRST_REQUEST_TIMEOUT:.0f}s; see {log}")
    return {
        "first_request_s": stats["first_post"] - started,
        "requests_before_stop": stats["posts"],
        "exit_code": code,
        "exit_after_sigterm_s": exited - stop_sent,
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=ROWS)
    parser.add_argument("--done", type=int, default=DONE)
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder (for profiling)")
    args = parser.parse_args(argv)
    quiet_logs()

    tmp = Path(tempfile.mkdtemp(prefix="bench-resume-"))
    try:
        realistic_contacts(args.rows).write_csv(tmp / "contacts.csv")
        job = write_job(tmp)
        with LoopbackServer() as server:
            setup = build_checkpoint(job, args.done, server.url)
            timing = time_to_first_request(job, server, tmp / "run.log")
    finally:
        if args.keep:
            print(f"kept {tmp}", file=sys.stderr)
        else:
            shutil.rmtree(tmp, ignore_errors=True)

    figures = {"rows": args.rows, "done_in_checkpoint": args.done, **setup, **timing}
    targets = [
        Target("process start -> first request", timing["first_request_s"], "<=", 1.5, "s"),
        # 75 is "stopped early, run again to finish": the run must stop cleanly, not crash.
        Target("exit code after SIGTERM", timing["exit_code"], "==", 75),
    ]
    table = [
        ("rows left to send", setup["pending_rows"] - setup["journaled_sent"]),
        ("exit after SIGTERM s", timing["exit_after_sigterm_s"]),
        ("set-up: planning s", setup["setup_plan_s"]),
        ("set-up: writing the journal s", setup["setup_journal_s"]),
    ]
    notes = [
        "the checkpoint's 990,000 sent rows were journaled through the Checkpoint API, not sent",
        "measured from just before the CLI process is spawned (interpreter start and imports included)",
    ]
    return emit("resume", figures, targets, table=table, notes=notes)


if __name__ == "__main__":
    main()
