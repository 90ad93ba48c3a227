"""Benchmark 8, the campaign report: a 1,000,000-row checkpoint's HTML page, how fast and how large?

Set-up (not timed): the same million-row job and checkpoint as the resume benchmark (990,000 contacts
journaled ``sent`` through the Checkpoint API, with a day of per-second run events).
Timed: ``batch_engage.api.report(job, html=...)``, in-process: reading the checkpoint, projecting the
results table, gathering the figures and rendering the page.

Targets: under 2 s (issue 30; issue 18 asked for 10), and a file under 2 MB (issues 18, 25).
``report --html`` alone writes only the page: the results table is left as it is.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

from benchkit import LOOPBACK_USER, Target, emit, quiet_logs, realistic_contacts, stopwatch
from resume import DONE, ROWS, build_checkpoint, write_job

from batch_engage import api
from batch_engage.checkpoint.store import SecondStats, open_checkpoint
from batch_engage.checkpoint.store import Target as Studio
from batch_engage.job import load_spec
from batch_engage.plan.prepare import fingerprint

BASE_URL = "http://127.0.0.1:9"
EVENT_SECONDS = 14 * 3600  # 990,000 contacts at ~20/s


def add_run_events(job: Path) -> None:
    """A day of per-second counters, as a 14-hour run at 20/s leaves them."""
    spec = load_spec(job)
    target = Studio(base_url=BASE_URL, identity=LOOPBACK_USER)
    with open_checkpoint(spec.output.checkpoint, fingerprint(spec), target) as cp:
        cp.start_run("2026-11-24T06:00:00.000Z", cp.meta.get("input", ""))
        start = 1_795_500_000
        cp.write_events(
            SecondStats(second=start + s, requests=21, ok=20, rate_limited=1 if s % 97 == 0 else 0, pacer_rate=19.8)
            for s in range(EVENT_SECONDS)
        )
        cp.finish_run("2026-11-24T20:00:00.000Z", 0)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=ROWS)
    parser.add_argument("--done", type=int, default=DONE)
    args = parser.parse_args(argv)
    quiet_logs()
    tmp = Path(tempfile.mkdtemp(prefix="bench-report-"))
    try:
        realistic_contacts(args.rows).write_csv(tmp / "contacts.csv")
        job = write_job(tmp)
        build_checkpoint(job, args.done, BASE_URL)
        add_run_events(job)
        page = tmp / "report.html"
        with stopwatch() as took:
            api.report(job, html=page)
        size = page.stat().st_size
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    figures = {"rows": args.rows, "sent_in_checkpoint": args.done, "seconds_s": took["wall"], "bytes": size}
    targets = [
        Target("report --html of the checkpoint", took["wall"], "<=", 2, "s"),
        Target("page size", size / 1e6, "<=", 2, "MB"),
    ]
    notes = ["the page alone: the results table is not written again"]
    return emit("report_page", figures, targets, notes=notes)


if __name__ == "__main__":
    sys.exit(0 if main()["pass"] else 1)
