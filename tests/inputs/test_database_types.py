"""SQL types a query may return that would send the wrong thing or stop with a traceback, on the real servers.

Each is either sent as its exact text, its row made ``invalid`` with a reason, or the job stopped with one
line naming the column and what to do (exit 2, nothing sent, no Rust panic or Python traceback on stderr).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import polars as pl
import pytest

from batch_engage.cli.main import main
from batch_engage.inputs.columns import quiet_panics
from batch_engage.sandbox import Sandbox

from mariadb import Database, fresh_database
from pg import Schema, fresh_schema

# 0331234567 (an Italian landline) kept as a number is 331234567: an Italian mobile's digits, someone else's.
IT_MAPPING = 'to = "phone"\nfrom = "+15005550006"\ndefault_region = "IT"'


def total_mapping(column: str = "total") -> str:
    """A US job mapping ``column`` to the Parameters key ``total``."""
    return f'to = "phone"\nfrom = "+15005550006"\ndefault_region = "US"\n\n[mapping.parameters]\ntotal = "{column}"'


@pytest.fixture
def pg() -> Iterator[Schema]:
    """A fresh PostgreSQL schema."""
    with fresh_schema() as schema:
        yield schema


@pytest.fixture
def maria() -> Iterator[Database]:
    """A fresh MariaDB database."""
    with fresh_database() as db:
        yield db


def results(tmp_path: Path) -> list[dict[str, str]]:
    """The job's results table, as text."""
    return pl.read_csv(tmp_path / "job.results.csv", infer_schema_length=0).to_dicts()


def sent_parameters(sandbox: Sandbox) -> list[dict[str, object]]:
    """The Parameters of each run created, without batch-engage's own marker."""
    return [{k: v for k, v in e.parameters.items() if not k.startswith("_")} for e in sandbox.ledger()]


def refused(job: Path, capfd: pytest.CaptureFixture[str]) -> str:
    """Run ``job``, which must stop with exit 2; the one line it printed (stdout and the stderr descriptor)."""
    code = main(["run", str(job)])
    out, err = capfd.readouterr()
    assert code == 2, out + err
    printed = (out + err).strip()
    assert "\n" not in printed, printed
    assert "Traceback" not in printed and "panicked" not in printed and "backtrace" not in printed
    return printed


class TestPostgreSQL:
    @pytest.mark.parametrize("sql_type", ["numeric", "numeric(12,0)", "decimal(14,2)"])
    def test_a_numeric_phone_column_that_lost_its_leading_zero_is_invalid(
        self, sql_type: str, pg: Schema, sandbox: Sandbox, query_job: Callable[..., Path], tmp_path: Path
    ) -> None:
        """0331234567 (an Italian landline) kept in a numeric column reads 331234567: the row is `invalid`, as from a
        bigint column, instead of going to +39 331 234 567, another person's mobile."""
        pg.execute(f"CREATE TABLE {{schema}}.people (id int, phone {sql_type})")
        pg.execute("INSERT INTO {schema}.people VALUES (1, 331234567)")
        job = query_job(pg.search_url, "select phone from people order by id", mapping=IT_MAPPING)
        assert main(["run", str(job)]) == 1  # a row is invalid
        [row] = results(tmp_path)
        assert row["status"] == "invalid" and "leading zero" in row["error_message"]
        assert sandbox.ledger() == []

    def test_a_money_column_is_refused_by_name(
        self, pg: Schema, sandbox: Sandbox, query_job: Callable[..., Path], capfd: pytest.CaptureFixture[str]
    ) -> None:
        """`12.50::money` arrives as whole cents, which would be sent as 1250: one line naming the column, exit 2."""
        job = query_job(
            pg.search_url, "select '+14155550100' as phone, 12.50::money as due", mapping=total_mapping("due")
        )
        line = refused(job, capfd)
        assert line.startswith("batch-engage: input.query: column 'due': a PostgreSQL money column")
        assert "cast it to numeric or text in the query" in line
        assert sandbox.ledger() == []

    def test_nan_and_infinity_parameters_make_their_rows_invalid(
        self, pg: Schema, sandbox: Sandbox, query_job: Callable[..., Path], tmp_path: Path
    ) -> None:
        """float8 NaN and Infinity were dropped from Parameters and numeric NaN sent as "nan": each row is `invalid`
        with the column and value in its reason; a numeric 12.50 beside them is sent as its exact text."""
        pg.execute("CREATE TABLE {schema}.bills (id int, phone text, f float8, n numeric)")
        pg.execute(
            "INSERT INTO {schema}.bills VALUES (1, '+14155550101', 'NaN', 1), (2, '+14155550102', 'Infinity', 1), "
            "(3, '+14155550103', 1.5, 'NaN'), (4, '+14155550104', 1.5, 12.50)"
        )
        mapping = total_mapping("f") + '\nexact = "n"'
        job = query_job(pg.search_url, "select phone, f, n from bills order by id", mapping=mapping)
        assert main(["run", str(job)]) == 1
        rows = results(tmp_path)
        assert [(r["status"], r["error_message"]) for r in rows] == [
            ("invalid", "f: NaN is no JSON number (NaN and infinities have none)"),
            ("invalid", "f: inf is no JSON number (NaN and infinities have none)"),
            ("invalid", "n: nan is no JSON number (NaN and infinities have none)"),
            ("sent", None),
        ]
        assert sent_parameters(sandbox) == [{"total": 1.5, "exact": "12.50"}]

    @pytest.mark.parametrize(
        ("select", "column", "what"),
        [
            ("'+14155550100' as phone, interval '1 day' as gap", "gap", "a PostgreSQL interval column"),
            (
                "'+14155550100' as phone, 'infinity'::date as total",
                "total",
                "a PostgreSQL date column holding 'infinity'",
            ),
            (
                "'+14155550100' as phone, '-infinity'::timestamptz as total",
                "total",
                "a PostgreSQL timestamptz column holding 'infinity'",
            ),
            ("'+14155550100' as phone, '+14155550101' as phone, 1 as total", "phone", "the query returns two columns"),
        ],
        ids=["interval-unmapped", "infinity-date", "infinity-timestamptz", "duplicate-name"],
    )
    def test_a_column_that_cannot_be_read_is_one_line_naming_it(
        self,
        select: str,
        column: str,
        what: str,
        pg: Schema,
        sandbox: Sandbox,
        query_job: Callable[..., Path],
        capfd: pytest.CaptureFixture[str],
    ) -> None:
        """interval (even unmapped), 'infinity' dates and a name used twice were tracebacks (polars' ComputeError,
        a PanicException, DuplicateError): now one line naming the column and what to do, exit 2, nothing sent."""
        job = query_job(pg.search_url, f"select {select}", mapping=total_mapping())
        line = refused(job, capfd)
        assert line.startswith(f"batch-engage: input.query: column {column!r}: {what}")
        assert "cast it to text in the query" in line or "give each its own name" in line
        assert sandbox.ledger() == []


class TestMariaDB:
    @pytest.mark.parametrize("end", ["", " -- the bills", " # the bills", "; -- the bills"])
    def test_a_decimal_parameter_is_sent_as_its_exact_text(
        self, maria: Database, sandbox: Sandbox, query_job: Callable[..., Path], end: str
    ) -> None:
        """DECIMAL(10,2) 12.50 was sent as "12.5000000000": it is sent as 12.50, as the README promises, also from
        a query ending in a comment (whose wrapping failed, so the column check was silently skipped)."""
        maria.execute("CREATE TABLE bills (phone varchar(20), total decimal(10,2), whole decimal(12,0))")
        maria.execute("INSERT INTO bills VALUES ('+14155550100', 12.50, 42)")
        mapping = total_mapping() + '\nwhole = "whole"'
        query = f"select phone, total, whole from bills{end}"  # noqa: S608 - the test's own table
        job = query_job(maria.url, query, mapping=mapping)
        assert main(["run", str(job)]) == 0
        assert sent_parameters(sandbox) == [{"total": "12.50", "whole": "42"}]

    def test_a_decimal_phone_column_that_lost_its_leading_zero_is_invalid(
        self, maria: Database, sandbox: Sandbox, query_job: Callable[..., Path], tmp_path: Path
    ) -> None:
        """DECIMAL(12,0) 0331234567, now read as its exact text 331234567 (no longer "331234567.0000000000", whose
        fraction marked it a number column): still `invalid` ("leading zero"), not sent to another person's mobile."""
        maria.execute("CREATE TABLE people (phone decimal(12,0))")
        maria.execute("INSERT INTO people VALUES (331234567)")
        job = query_job(maria.url, "select phone from people", mapping=IT_MAPPING)
        assert main(["run", str(job)]) == 1  # a row is invalid
        [row] = results(tmp_path)
        assert row["status"] == "invalid" and "leading zero" in row["error_message"]
        assert sandbox.ledger() == []

    @pytest.mark.parametrize(
        ("select", "named", "what"),
        [
            ("phone, born", "column 'born'", "holds '0000-00-00', which connectorx cannot read as a date"),
            ("phone, seen, stamp", "one of the columns 'seen', 'stamp'", "holds '0000-00-00'"),
            ("phone, span", "column 'span'", "which connectorx cannot read as a time of day"),
            ("phone, place", "column 'place'", "a GEOMETRY column"),
            ("phone, null as coupon", "column 'coupon'", "a NULL with no type"),
            ("phone, phone", "column 'phone'", "the query returns two columns of this name"),
        ],
        ids=["zero-date-unmapped", "zero-datetime-timestamp", "time-past-24h", "geometry", "typeless-null", "twice"],
    )
    def test_a_column_connectorx_cannot_read_is_one_line_naming_it(
        self,
        select: str,
        named: str,
        what: str,
        maria: Database,
        sandbox: Sandbox,
        query_job: Callable[..., Path],
        capfd: pytest.CaptureFixture[str],
    ) -> None:
        """Zero dates (even unmapped), a TIME of 25:30, GEOMETRY, `null as coupon` and a name used twice were a Rust
        panic with its backtrace and a Python traceback: now one line naming the column, exit 2, nothing sent."""
        maria.execute("SET SESSION sql_mode = ''")
        maria.execute(
            "CREATE TABLE people (phone varchar(20), born date, seen datetime, stamp timestamp null, span time, "
            "place geometry)"
        )
        maria.execute(
            "INSERT INTO people VALUES ('+14155550100', '0000-00-00', '0000-00-00 00:00:00', '0000-00-00 00:00:00', "
            "'25:30:00', POINT(1, 2))"
        )
        query = f"select {select} from people"  # noqa: S608 - the test's own columns
        job = query_job(maria.url, query, mapping='to = "phone"\nfrom = "+15005550006"')
        line = refused(job, capfd)
        assert line.startswith(f"batch-engage: input.query: {named}")
        assert what in line
        assert "cast it to CHAR in the query" in line or "ST_AsText" in line or "in the query" in line
        assert sandbox.ledger() == []


def test_two_threads_reading_queries_at_once_leave_stderr_where_it_was() -> None:
    """A library caller reading two queries in two threads, the first done first: descriptor 2 is the one it was
    (it was left on the second's deleted temporary file, and every later error went nowhere)."""
    before = os.fstat(2)
    inside, second_in, first_out = threading.Event(), threading.Event(), threading.Event()

    def first() -> None:
        with quiet_panics():
            inside.set()
            second_in.wait(5)
        first_out.set()

    def second() -> None:
        inside.wait(5)
        with quiet_panics():
            second_in.set()
            first_out.wait(5)

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    after = os.fstat(2)
    assert (after.st_dev, after.st_ino) == (before.st_dev, before.st_ino)
