"""Benchmark: the whole ``batch-engage validate JOB`` process against a whole-process bare ``pl.read_csv``.

A user waits for a process, not for a function: interpreter start, imports, reading,
judging every number, the report. So this benchmark times whole processes, side by side:

* ``python -m batch_engage validate JOB`` (what the ``batch-engage`` console script runs);
* ``python -c "import polars as pl; pl.read_csv(PATH)"``, the cost of reading the file at all.

They run interleaved, three times each, and the best of each is kept; the ratio is validate's
best over the bare read's best. Peak memory is the validate child's RSS high-water mark from the
kernel's rusage of that child alone (``os.wait4``), the highest of its three runs.

The file: 1,000,000 rows from ``benchkit.realistic_contacts`` (its other spellings: ``1415…``
without ``+``, ``+1 415 …``, a few unusable and repeated numbers), 2% unusable numbers, each a
different value (``benchkit.with_invalid_numbers``), and national format (``(415) 555-0100``,
``415-555-0100``, ``415 555 0100``) raised to 5% of the rows.

Target (issue 30): the validate process takes at most 3x the bare read; its peak RSS at most 500 MB.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import polars as pl
from benchkit import Target, compiled, emit, quiet_logs, realistic_contacts, with_invalid_numbers, write_job_file

ROWS = 1_000_000
NATIONAL_SHARE = 0.05
MAX_RATIO = 3.0
MAX_RSS_MB = 500.0
ROUNDS = 3
_E164_US = r"^\+1[0-9]{10}$"
_NATIONAL = r"^(?:\([0-9]{3}\) |[0-9]{3}[ -])[0-9]{3}-?[0-9]{4}$|^[0-9]{3} [0-9]{3} [0-9]{4}$"


def with_national_numbers(frame: pl.DataFrame, share: float = NATIONAL_SHARE) -> pl.DataFrame:
    """Respell plain ``+1`` numbers nationally, three ways in turn, until ``share`` of all rows are national."""
    phone = pl.col("phone")
    national = phone.str.contains(_NATIONAL)
    wanted = round(share * frame.height) - int(frame.select(national.sum()).item())
    e164 = phone.str.contains(_E164_US)
    odds = wanted / int(frame.select(e164.sum()).item())
    # A hash of the row's place spreads the respelled rows through the file, not in a stripe at its start.
    draw = pl.int_range(pl.len()).hash(seed=30)
    pick = e164 & ((draw % 1_000_000) < round(odds * 1_000_000))
    turn = draw % 3
    area, exchange, line = phone.str.slice(2, 3), phone.str.slice(5, 3), phone.str.slice(8, 4)
    respelled = (
        pl.when(turn == 0)
        .then(pl.format("({}) {}-{}", area, exchange, line))
        .when(turn == 1)
        .then(pl.format("{}-{}-{}", area, exchange, line))
        .otherwise(pl.format("{} {} {}", area, exchange, line))
    )
    return frame.with_columns(phone=pl.when(pick).then(respelled).otherwise(phone))


def the_mix(frame: pl.DataFrame) -> dict[str, float]:
    """Shares of the spellings in the file, so the figures say what was measured."""
    phone = pl.col("phone")
    shares = frame.select(
        e164=phone.str.contains(_E164_US).mean(),
        national=phone.str.contains(_NATIONAL).mean(),
    ).row(0, named=True)
    shares["other"] = 1 - shares["e164"] - shares["national"]
    return {f"{k}_share": float(v) for k, v in shares.items()}


def write_job(tmp: Path, contacts: Path) -> Path:
    """The job file: the sample campaign's shape (one literal sender, four mapped parameters, one nested)."""
    return write_job_file(
        tmp / "job.toml",
        input_path=contacts,
        results=tmp / "results.csv",
        checkpoint=tmp / "job.checkpoint",
    )


def timed(argv: list[str]) -> dict[str, Any]:
    """Run ``argv`` to its end: wall seconds from spawn to reaped, its own CPU seconds and peak RSS, its stdout."""
    with tempfile.TemporaryFile(mode="w+") as errors:
        started = time.perf_counter()
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=errors, text=True)
        assert proc.stdout is not None
        out = proc.stdout.read()
        # wait4 reaps this child alone and returns its own rusage (communicate() would reap it first).
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - started
        proc.returncode = code = os.waitstatus_to_exitcode(status)
        errors.seek(0)
        err = errors.read()
    return {
        "seconds": wall,
        "cpu_s": usage.ru_utime + usage.ru_stime,
        "peak_rss_mb": usage.ru_maxrss / 1024,  # ru_maxrss is in KiB on Linux
        "exit": code,
        "stdout": out,
        "stderr": err,
    }


def counts(stdout: str) -> dict[str, int]:
    """The counts validate printed (``rows: N`` and the like), to show the work was done."""
    found = {}
    for line in stdout.splitlines():
        key, _, value = line.partition(": ")
        if key in ("rows", "valid", "invalid", "duplicate") and value.strip().isdigit():
            found[key] = int(value)
    return found


def measure(job: Path, contacts: Path) -> dict[str, Any]:
    """Both processes, interleaved, ``ROUNDS`` times each: the best of each, and validate's highest peak RSS."""
    compiled()
    validate = [sys.executable, "-m", "batch_engage", "validate", str(job)]
    bare = [sys.executable, "-c", f"import polars as pl; pl.read_csv({str(contacts)!r})"]
    runs: dict[str, list[dict[str, Any]]] = {"validate": [], "bare": []}
    for _ in range(ROUNDS):
        for name, argv in (("bare", bare), ("validate", validate)):
            run = timed(argv)
            # validate exits 1 when some rows are unusable, as they are here; anything else is a failure.
            if run["exit"] not in ((0,) if name == "bare" else (0, 1)):
                raise RuntimeError(f"{name} failed (exit {run['exit']}): {run['stderr'][-2000:]}")
            runs[name].append(run)
    best = {name: min(runs[name], key=lambda r: r["seconds"]) for name in runs}
    return {
        "validate_seconds": best["validate"]["seconds"],
        "bare_read_csv_seconds": best["bare"]["seconds"],
        "validate_cpu_s": best["validate"]["cpu_s"],
        "bare_read_csv_cpu_s": best["bare"]["cpu_s"],
        "validate_peak_rss_mb": max(r["peak_rss_mb"] for r in runs["validate"]),
        "bare_read_csv_peak_rss_mb": max(r["peak_rss_mb"] for r in runs["bare"]),
        "all_validate_seconds": [r["seconds"] for r in runs["validate"]],
        "all_bare_read_csv_seconds": [r["seconds"] for r in runs["bare"]],
        **counts(best["validate"]["stdout"]),
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Write the file and the job, time both processes side by side, print the record and the table."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=ROWS)
    args = parser.parse_args(argv)
    quiet_logs()
    with tempfile.TemporaryDirectory(prefix="bench-validate-process-") as tmpdir:
        tmp = Path(tmpdir)
        contacts = tmp / "contacts.csv"
        frame = with_national_numbers(with_invalid_numbers(realistic_contacts(args.rows)))
        frame.write_csv(contacts)
        mix = the_mix(frame)
        del frame
        figures: dict[str, Any] = {
            "rows_written": args.rows,
            "file_mb": contacts.stat().st_size / 1024**2,
            **mix,
            **measure(write_job(tmp, contacts), contacts),
        }
    figures["ratio"] = figures["validate_seconds"] / figures["bare_read_csv_seconds"]
    figures["cpu_ratio"] = figures["validate_cpu_s"] / figures["bare_read_csv_cpu_s"]
    targets = [
        Target("validate process / bare pl.read_csv process (best of 3 each)", figures["ratio"], "<=", MAX_RATIO, "x"),
        Target("validate process: peak RSS", figures["validate_peak_rss_mb"], "<=", MAX_RSS_MB, "MB"),
    ]
    table = [
        (
            "validate process s | bare read s",
            f"{figures['validate_seconds']:.3f} | {figures['bare_read_csv_seconds']:.3f}",
        ),
        (
            "validate CPU s | bare read CPU s | ratio",
            f"{figures['validate_cpu_s']:.3f} | {figures['bare_read_csv_cpu_s']:.3f} | {figures['cpu_ratio']:.2f}x",
        ),
        ("bare read peak RSS MB", figures["bare_read_csv_peak_rss_mb"]),
        (
            "E.164 / national / other spellings",
            f"{mix['e164_share']:.1%} / {mix['national_share']:.1%} / {mix['other_share']:.1%}",
        ),
        (
            "rows / valid / invalid / duplicate",
            " / ".join(f"{figures.get(k, 0):,}" for k in ("rows", "valid", "invalid", "duplicate")),
        ),
    ]
    notes = [f"{args.rows:,} rows, CSV; each process run {ROUNDS} times, interleaved, best of each"]
    return emit("validate_process", figures, targets, table=table, notes=notes)


if __name__ == "__main__":
    main()
