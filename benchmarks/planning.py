"""Benchmark 4, planning: validate a million-row list, from CSV and from Parquet, in seconds and memory.

A realistic file (``benchkit.realistic_contacts``: ~95% E.164, ~5% other spellings
such as ``(415) 555-0100``, a few unusable and repeated numbers, non-ASCII names,
integer and decimal parameters) is written to a temporary folder, then each format
is validated by ``batch_engage.api.validate`` in a child process of its own:

* seconds: the ``validate()`` call inside the child (reading, mapping, normalizing,
  encoding Parameters, deduplicating, building the results table);
* peak memory: the child's RSS high-water mark, from the kernel's rusage of that child
  (``os.wait4``, the per-child form of ``getrusage(RUSAGE_CHILDREN)``), so it includes
  the interpreter and polars themselves, as a user's process would.

* against a bare read: a third child runs ``pl.read_csv`` of the same CSV (no options),
  ``read_table`` (reading as validate does), ``phone.normalize`` of the To column and
  ``validate()``, alternately, three times each; each is shown as its best time beside
  the best bare read and their ratio, from one run on one machine.

The list has 2% unusable numbers, all distinct, as an old export has them: wrong E.164
(``+1555…``, a digit too many), a US number in a bad area code written nationally, and
a column a spreadsheet turned into scientific notation or decimals.

Targets (issue 7): <= 3 s and <= 1 GB, for each format; (issue 13) validating the CSV
takes at most 3x the bare ``pl.read_csv`` of it.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import polars as pl
from benchkit import Target, emit, make_spec, quiet_logs, realistic_contacts, with_invalid_numbers

ROWS = 1_000_000
GB = 1024**3
MAX_READ_RATIO = 3.0


def child(path: str) -> None:
    """Runs in the child: validate once and print what it found and how long it took."""
    quiet_logs()
    from batch_engage import api

    tmp = Path(path).parent
    spec = make_spec(tmp, input_path=path)
    started = time.perf_counter()
    v = api.validate(spec)
    seconds = time.perf_counter() - started
    print(
        json.dumps(
            {
                "seconds": seconds,
                "rows": v.total,
                "valid": v.valid,
                "invalid": v.invalid,
                "duplicate": v.duplicate,
                "invalid_reasons": v.invalid_reasons,
            }
        )
    )


def ratio_child(path: str) -> None:
    """Runs in a child of its own: a bare read, reading as validate does, judging To, and validate, best of three."""
    quiet_logs()
    from batch_engage import api
    from batch_engage.inputs.files import read_table
    from batch_engage.plan import phone
    from batch_engage.plan.rows import text_columns

    spec = make_spec(Path(path).parent, input_path=path)
    frame = read_table(spec.input, text_columns=text_columns(spec.mapping)).frame
    # Alternate them so that none gets a warmer cache or a quieter machine than the others.
    steps = {
        "bare_read_csv_seconds": lambda: pl.read_csv(path),
        "read_table_seconds": lambda: read_table(spec.input, text_columns=text_columns(spec.mapping)),
        "judge_to_seconds": lambda: phone.normalize(frame["phone"], spec.mapping.default_region),
        "validate_seconds": lambda: api.validate(spec),
    }
    best: dict[str, float] = {}
    for _ in range(3):
        for name, step in steps.items():
            started = time.perf_counter()
            step()
            best[name] = min(best.get(name, float("inf")), time.perf_counter() - started)
    print(json.dumps(best))


def ratios(path: Path) -> dict[str, float]:
    """The timings of ``ratio_child``, in a process of its own: the peak-memory child measures one validate."""
    out = subprocess.run(
        [sys.executable, __file__, "--ratio-child", str(path)], check=True, stdout=subprocess.PIPE, text=True
    ).stdout
    figures: dict[str, float] = json.loads(out.strip().splitlines()[-1])
    return figures


def measure(path: Path) -> dict[str, Any]:
    """Validate ``path`` in a fresh process; its figures plus its own peak RSS."""
    started = time.perf_counter()
    proc = subprocess.Popen([sys.executable, __file__, "--child", str(path)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    out = proc.stdout.read()
    # wait4 reaps this one child and returns its rusage alone: RUSAGE_CHILDREN would be the
    # maximum over every child so far, so the second format would inherit the first one's peak.
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - started
    if proc.returncode != 0:
        raise RuntimeError(f"validating {path} failed (exit {proc.returncode})")
    figures: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    figures["process_wall_s"] = wall
    figures["peak_rss_mb"] = usage.ru_maxrss * 1024 / 1024**2  # ru_maxrss is in KiB on Linux
    figures["child_cpu_s"] = usage.ru_utime + usage.ru_stime
    figures["file_mb"] = path.stat().st_size / 1024**2
    return figures


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=ROWS)
    parser.add_argument("--child", metavar="PATH", help=argparse.SUPPRESS)
    parser.add_argument("--ratio-child", metavar="PATH", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child(args.child)
        return {}
    if args.ratio_child:
        ratio_child(args.ratio_child)
        return {}
    quiet_logs()

    with tempfile.TemporaryDirectory(prefix="bench-planning-") as tmpdir:
        tmp = Path(tmpdir)
        frame = with_invalid_numbers(realistic_contacts(args.rows))
        files = {"csv": tmp / "csv" / "contacts.csv", "parquet": tmp / "parquet" / "contacts.parquet"}
        for path in files.values():
            path.parent.mkdir()
        frame.write_csv(files["csv"])
        frame.write_parquet(files["parquet"])
        del frame
        results = {fmt: measure(path) for fmt, path in files.items()}
        results["csv"].update(ratios(files["csv"]))

    figures: dict[str, Any] = {"rows": args.rows, **results}
    targets: list[Target] = []
    for fmt, r in results.items():
        targets.append(Target(f"{fmt}: validate seconds", r["seconds"], "<=", 3, "s"))
        targets.append(Target(f"{fmt}: peak RSS", r["peak_rss_mb"], "<=", GB / 1024**2, "MB"))
    csv = results["csv"]
    bare = csv["bare_read_csv_seconds"]
    csv["read_ratio"] = csv["validate_seconds"] / bare
    targets.append(
        Target("csv: validate / bare pl.read_csv (best of 3 each)", csv["read_ratio"], "<=", MAX_READ_RATIO, "x")
    )
    table = [
        (f"csv: {label} s | bare pl.read_csv s | ratio", f"{csv[key]:.3f} | {bare:.3f} | {csv[key] / bare:.2f}x")
        for label, key in (
            ("api.validate", "validate_seconds"),
            ("read_table", "read_table_seconds"),
            ("phone.normalize(To)", "judge_to_seconds"),
        )
    ]
    table += [
        (f"{fmt}: {label}", r[key])
        for fmt, r in results.items()
        for label, key in (("process wall s (incl. imports)", "process_wall_s"), ("file MB", "file_mb"))
    ]
    some = results["csv"]
    table += [("valid / invalid / duplicate", f"{some['valid']:,} / {some['invalid']:,} / {some['duplicate']:,}")]
    notes = [f"{args.rows:,} rows; each format validated once, in its own fresh process"]
    return emit("planning", figures, targets, table=table, notes=notes)


if __name__ == "__main__":
    main()
