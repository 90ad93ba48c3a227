"""Benchmark: contacts from a PostgreSQL query, 1,000,000 rows: which driver reads faster, and what validate costs.

A realistic list (``benchkit.realistic_contacts``) is loaded into a throwaway schema on
the server named by ``BATCH_ENGAGE_BENCH_PG`` (default: the test server,
``postgresql://postgres@127.0.0.1:5432/test``), then, in one run:

* read: ``pl.read_database_uri(query, uri, engine="adbc")`` (ADBC's libpq-based driver,
  what batch-engage uses) against ``pl.read_database(query, psycopg_connection)``
  (psycopg 3), each the median of 3 reads, and their ratio; connectorx is left out
  because it does not read ``~/.pgpass``;
* validate: ``api.validate`` of a job whose ``[input]`` is that query, in a fresh
  child process: seconds of the call, and the child's peak RSS (``os.wait4``).

Targets (issue 17): validate <= 10 s and <= 1.5 GB.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import polars as pl
import psycopg
from benchkit import Target, emit, make_spec, median, quiet_logs, realistic_contacts

ROWS = 1_000_000
REPEATS = 3
GB = 1024**3
DEFAULT_URL = "postgresql://postgres@127.0.0.1:5432/test"


def search_url(url: str, schema: str) -> str:
    """``url`` with ``schema`` first on the search path, so the query names a bare table."""
    return f"{url}{'&' if '?' in url else '?'}options=-csearch_path%3D{schema}"


def query_for(columns: list[str]) -> str:
    """The job's query: every column, in the list's order."""
    return f"select {', '.join(columns)} from contacts order by i"  # noqa: S608 - our own column names


def child(uri: str, query: str) -> None:
    """Runs in the child: validate the query job once and print what it found and how long it took."""
    quiet_logs()
    import dataclasses

    from batch_engage import api
    from batch_engage.job import InputSpec

    with tempfile.TemporaryDirectory(prefix="bench-query-") as tmpdir:
        spec = make_spec(Path(tmpdir))
        spec = dataclasses.replace(spec, input=InputSpec(uri=uri, query=query))
        started = time.perf_counter()
        v = api.validate(spec)
        seconds = time.perf_counter() - started
    print(json.dumps({"seconds": seconds, "rows": v.total, "valid": v.valid, "invalid": v.invalid}))


def measure_validate(uri: str, query: str) -> dict[str, Any]:
    """Validate in a fresh process; its figures plus its own peak RSS."""
    proc = subprocess.Popen(
        [sys.executable, __file__, "--child-uri", uri, "--child-query", query], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    out = proc.stdout.read()
    # wait4 reaps this one child and returns its rusage alone.
    _, status, usage = os.wait4(proc.pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError("validating the query job failed")
    figures: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    figures["peak_rss_mb"] = usage.ru_maxrss * 1024 / 1024**2  # ru_maxrss is in KiB on Linux
    return figures


def time_reads(uri: str, query: str) -> dict[str, float]:
    """Median seconds of REPEATS reads of the whole result, by each driver."""
    adbc, psy = [], []
    for _ in range(REPEATS):
        started = time.perf_counter()
        a = pl.read_database_uri(query, uri, engine="adbc")
        adbc.append(time.perf_counter() - started)
        started = time.perf_counter()
        with psycopg.connect(uri) as conn:
            p = pl.read_database(query, conn)
        psy.append(time.perf_counter() - started)
        assert a.height == p.height
    return {"adbc_s": median(adbc), "psycopg_s": median(psy)}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=ROWS)
    parser.add_argument("--child-uri", help=argparse.SUPPRESS)
    parser.add_argument("--child-query", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child_uri:
        child(args.child_uri, args.child_query)
        return {}
    quiet_logs()
    url = os.environ.get("BATCH_ENGAGE_BENCH_PG", DEFAULT_URL)
    schema = f"bench_{uuid.uuid4().hex[:10]}"
    admin = psycopg.connect(url, autocommit=True)
    admin.execute(f"CREATE SCHEMA {schema}")
    try:
        uri = search_url(url, schema)
        frame = realistic_contacts(args.rows).with_row_index("i")
        frame.write_database("contacts", uri, engine="adbc")
        columns = [c for c in frame.columns if c != "i"]
        del frame
        query = query_for(columns)
        reads = time_reads(uri, query)
        validate = measure_validate(uri, query)
    finally:
        admin.execute(f"DROP SCHEMA {schema} CASCADE")
        admin.close()

    ratio = reads["psycopg_s"] / reads["adbc_s"]
    figures: dict[str, Any] = {"rows": args.rows, **reads, "psycopg_over_adbc": ratio, "validate": validate}
    targets = [
        Target("validate seconds", validate["seconds"], "<=", 10, "s"),
        Target("validate peak RSS", validate["peak_rss_mb"], "<=", 1.5 * GB / 1024**2, "MB"),
    ]
    table = [
        ("read: ADBC (read_database_uri) s", reads["adbc_s"]),
        ("read: psycopg 3 (read_database) s", reads["psycopg_s"]),
        ("psycopg / ADBC", f"{ratio:.2f}x"),
        ("valid / invalid", f"{validate['valid']:,} / {validate['invalid']:,}"),
    ]
    notes = [f"{args.rows:,} rows; reads: median of {REPEATS}, same query, same process; validate: a fresh process"]
    return emit("query_input", figures, targets, table=table, notes=notes)


if __name__ == "__main__":
    main()
