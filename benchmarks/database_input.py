"""Benchmark: the same 1,000,000-row query from MariaDB/MySQL and from PostgreSQL: read, and validate a job on it.

A realistic list (``benchkit.realistic_contacts``) is loaded into a throwaway PostgreSQL
schema (``BATCH_ENGAGE_BENCH_PG``, default the test server) and a throwaway MariaDB
database (``BATCH_ENGAGE_BENCH_MYSQL``, default ``mysql://root@127.0.0.1:3306``; its
password, if any, from ``MYSQL_PWD``), with the same columns and types. Then, for each:

* read: ``inputs.read_query`` (what a job does: the login check, the read-only
  transaction, the text columns), the median of 3;
* validate: ``api.validate`` of a job whose ``[input]`` is that query, in a fresh child
  process: seconds of the call and the child's peak RSS.

Target (issue 29): validating from MariaDB takes at most 2x the time from PostgreSQL.
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
from urllib.parse import urlsplit

import polars as pl
import psycopg
import pymysql
from benchkit import Target, emit, make_spec, median, quiet_logs, realistic_contacts

ROWS = 1_000_000
REPEATS = 3
DEFAULT_PG = "postgresql://postgres@127.0.0.1:5432/test"
DEFAULT_MYSQL = "mysql://root@127.0.0.1:3306"
COLUMNS = "phone, first_name, city, visits, order_total"
QUERY = f"select {COLUMNS} from contacts order by i"  # noqa: S608 - our own column names


def child(uri: str) -> None:
    """Runs in the child: validate the query job once and print what it found and how long it took."""
    quiet_logs()
    import dataclasses

    from batch_engage import api
    from batch_engage.job import InputSpec

    with tempfile.TemporaryDirectory(prefix="bench-db-") as tmpdir:
        spec = dataclasses.replace(make_spec(Path(tmpdir)), input=InputSpec(uri=uri, query=QUERY))
        started = time.perf_counter()
        v = api.validate(spec)
        seconds = time.perf_counter() - started
    print(json.dumps({"seconds": seconds, "rows": v.total, "valid": v.valid}))


def measure_validate(uri: str) -> dict[str, Any]:
    """Validate in a fresh process; its figures plus its own peak RSS."""
    proc = subprocess.Popen([sys.executable, __file__, "--child-uri", uri], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"validating the query job on {uri} failed")
    figures: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    figures["peak_rss_mb"] = usage.ru_maxrss / 1024
    return figures


def time_reads(uri: str) -> float:
    """Median seconds of REPEATS reads of the whole result, as a job reads it."""
    from batch_engage.inputs import read_query
    from batch_engage.job import InputSpec

    seconds = []
    for _ in range(REPEATS):
        started = time.perf_counter()
        read_query(InputSpec(uri=uri, query=QUERY), text_columns=["phone"])
        seconds.append(time.perf_counter() - started)
    return median(seconds)


def load_mysql(url: str, name: str, frame: pl.DataFrame, folder: Path) -> str:
    """Create database ``name`` holding ``contacts`` (LOAD DATA from a CSV: a million INSERTs would take minutes)."""
    parts = urlsplit(url)
    conn = pymysql.connect(
        host=parts.hostname or "127.0.0.1",
        port=parts.port or 3306,
        user=parts.username or "root",
        password=os.environ.get("MYSQL_PWD", ""),
        autocommit=True,
        local_infile=True,
    )
    csv = folder / "contacts.csv"
    frame.write_csv(csv, include_header=False)
    with conn.cursor() as cur:
        cur.execute(f"CREATE DATABASE `{name}`")
        cur.execute(
            f"CREATE TABLE `{name}`.contacts (i bigint primary key, phone varchar(40), first_name varchar(80), "
            "city varchar(80), visits bigint, order_total double)"
        )
        cur.execute(
            f"LOAD DATA LOCAL INFILE %s INTO TABLE `{name}`.contacts CHARACTER SET utf8mb4 "
            "FIELDS TERMINATED BY ',' OPTIONALLY ENCLOSED BY '\"' LINES TERMINATED BY '\\n'",
            (str(csv),),
        )
    conn.close()
    return f"mysql://{parts.username or 'root'}@{parts.hostname or '127.0.0.1'}:{parts.port or 3306}/{name}"


def drop_mysql(url: str, name: str) -> None:
    """Drop the throwaway database."""
    parts = urlsplit(url)
    conn = pymysql.connect(
        host=parts.hostname or "127.0.0.1",
        port=parts.port or 3306,
        user=parts.username or "root",
        password=os.environ.get("MYSQL_PWD", ""),
        autocommit=True,
    )
    with conn.cursor() as cur:
        cur.execute(f"DROP DATABASE IF EXISTS `{name}`")
    conn.close()


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=ROWS)
    parser.add_argument("--child-uri", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child_uri:
        child(args.child_uri)
        return {}
    quiet_logs()
    pg_url = os.environ.get("BATCH_ENGAGE_BENCH_PG", DEFAULT_PG)
    my_url = os.environ.get("BATCH_ENGAGE_BENCH_MYSQL", DEFAULT_MYSQL)
    name = f"bench_{uuid.uuid4().hex[:10]}"
    admin = psycopg.connect(pg_url, autocommit=True)
    admin.execute(f"CREATE SCHEMA {name}")
    try:
        with tempfile.TemporaryDirectory(prefix="bench-db-") as tmpdir:
            frame = realistic_contacts(args.rows).with_row_index("i").with_columns(pl.col("i").cast(pl.Int64))
            pg_uri = f"{pg_url}{'&' if '?' in pg_url else '?'}options=-csearch_path%3D{name}"
            frame.write_database("contacts", pg_uri, engine="adbc")
            my_uri = load_mysql(my_url, name, frame, Path(tmpdir))
            del frame
        reads = {"mysql_s": time_reads(my_uri), "postgresql_s": time_reads(pg_uri)}
        validate = {"mysql": measure_validate(my_uri), "postgresql": measure_validate(pg_uri)}
    finally:
        admin.execute(f"DROP SCHEMA {name} CASCADE")
        admin.close()
        drop_mysql(my_url, name)

    ratio = validate["mysql"]["seconds"] / validate["postgresql"]["seconds"]
    assert validate["mysql"]["valid"] == validate["postgresql"]["valid"]
    figures: dict[str, Any] = {"rows": args.rows, **reads, "validate": validate, "mysql_over_postgresql": ratio}
    targets = [Target("validate: MariaDB / PostgreSQL", ratio, "<=", 2.0, "x")]
    table = [
        ("read: MariaDB (connectorx) s", reads["mysql_s"]),
        ("read: PostgreSQL (ADBC) s", reads["postgresql_s"]),
        ("validate: MariaDB s", validate["mysql"]["seconds"]),
        ("validate: PostgreSQL s", validate["postgresql"]["seconds"]),
        ("validate: MariaDB / PostgreSQL", f"{ratio:.2f}x"),
        (
            "validate peak RSS: MariaDB / PostgreSQL MB",
            f"{validate['mysql']['peak_rss_mb']:.0f} / {validate['postgresql']['peak_rss_mb']:.0f}",
        ),
    ]
    notes = [f"{args.rows:,} rows, same query and types; reads: median of {REPEATS}; validate: a fresh process each"]
    return emit("database_input", figures, targets, table=table, notes=notes)


if __name__ == "__main__":
    main()
