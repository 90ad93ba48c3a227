"""Contacts from a PostgreSQL query: the same plan and run as from a file, and one clear line for each failure."""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator
from pathlib import Path

import polars as pl
import pytest

from batch_engage.cli.main import main
from batch_engage.errors import ConfigError, InputFileError
from batch_engage.inputs.database import read_query
from batch_engage.job import InputSpec, load_spec
from batch_engage.sandbox import Sandbox

from conftest import digest_follows_the_rows
from pg import Schema, fresh_schema


@pytest.fixture
def pg() -> Iterator[Schema]:
    """A fresh schema holding ``appointments``: 12 contacts, ``id`` 1..12, phones stored as text and as numbers."""
    with fresh_schema() as schema:
        schema.execute(
            "CREATE TABLE {schema}.appointments (id int, phone text, phone_number bigint, first_name text, visits int)"
        )
        schema.execute(
            "INSERT INTO {schema}.appointments SELECT g, '+1415555' || lpad((100 + g)::text, 4, '0'), 14155550000 + 100 + g, "
            "'Person ' || g, g FROM generate_series(1, 12) g"
        )
        yield schema


@pytest.fixture
def closed_port() -> Iterator[int]:
    """A loopback port bound but not listening: connections are refused, and no parallel test can take it."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        yield s.getsockname()[1]


class TestQueryInput:
    def test_a_job_runs_the_rows_its_query_returns_in_the_querys_order(
        self, pg: Schema, sandbox: Sandbox, query_job: Callable[..., Path], tmp_path: Path
    ) -> None:
        """`[input] uri + query`: validate and run see exactly the query's rows; row numbers follow its `order by`."""
        query = "select phone, first_name as name, visits from appointments where id <= 10 order by id desc"
        job = query_job(pg.search_url, query)
        assert main(["validate", str(job)]) == 0
        assert main(["run", str(job)]) == 0
        table = pl.read_csv(tmp_path / "job.results.csv", infer_schema_length=0)
        assert table["status"].to_list() == ["sent"] * 10
        assert table["to"].to_list() == [f"+1415555{100 + i:04d}" for i in range(10, 0, -1)]
        assert {e.to for e in sandbox.ledger()} == set(table["to"].to_list())

    def test_mapped_columns_come_back_as_text_whatever_their_sql_type(self, pg: Schema) -> None:
        """A phone stored as bigint is read as the same digits in text, ready for normalizing; other columns keep types."""
        spec = InputSpec(uri=pg.search_url, query="select phone_number, visits from appointments order by id")
        table = read_query(spec, text_columns=["phone_number"])
        assert table.frame["phone_number"].to_list()[0] == "14155550101"
        assert table.frame.schema["visits"].is_integer()
        assert table.name == "input.query"

    def test_numeric_and_json_columns_arrive_as_the_servers_exact_text(self, pg: Schema) -> None:
        """`numeric(10,2)` 12.50 stays "12.50" (no float rounding) and jsonb is its text, mapped or not."""
        query = "select phone, 12.50::numeric(10,2) as total, '{\"a\": 1}'::jsonb as extra from appointments"
        table = read_query(InputSpec(uri=pg.search_url, query=query), text_columns=["phone", "total"])
        assert table.frame.schema["total"] == pl.String and table.frame.schema["extra"] == pl.String
        assert (table.frame["total"][0], table.frame["extra"][0]) == ("12.50", '{"a": 1}')

    def test_the_digest_changes_with_the_result_and_only_with_it(self, pg: Schema) -> None:
        """Same rows, same digest (a resumed job matches its checkpoint); one changed row, another digest."""
        spec = InputSpec(uri=pg.search_url, query="select phone from appointments order by id")
        digest_follows_the_rows(
            spec, lambda: pg.execute("UPDATE {schema}.appointments SET phone = '+14155550999' WHERE id = 3")
        )

    def test_libpq_environment_variables_are_honoured(self, pg: Schema, monkeypatch: pytest.MonkeyPatch) -> None:
        """The driver is libpq: PGOPTIONS (like PGPASSWORD, PGSSLMODE) applies, so an unqualified table is found."""
        monkeypatch.setenv("PGOPTIONS", f"-csearch_path={pg.name}")
        table = read_query(InputSpec(uri=pg.url, query="select phone from appointments order by id"))
        assert table.frame.height == 12

    def test_the_uri_can_come_from_an_environment_variable(self, pg: Schema, monkeypatch: pytest.MonkeyPatch) -> None:
        """`uri = "env:NAME"` reads the URL from NAME at run time, not from the job file."""
        monkeypatch.setenv("CRM_URL", pg.search_url)
        table = read_query(InputSpec(uri="env:CRM_URL", query="select phone from appointments"))
        assert table.frame.height == 12


class TestQueryErrors:
    def test_a_password_in_the_uri_is_refused_before_anything_connects(self, tmp_path: Path) -> None:
        """A password in input.uri is a ConfigError naming the key and pointing to PGPASSWORD / ~/.pgpass."""
        raw = {
            "input": {"uri": "postgresql://crm:hunter2@db.example/crm", "query": "select 1"},
            "flow": {"sid": "FW" + "0" * 32},
            "mapping": {"to": "phone", "from": "+15005550006"},
        }
        with pytest.raises(ConfigError, match=r"^input\.uri: holds a password.*PGPASSWORD.*~/\.pgpass"):
            load_spec(raw=raw)
        raw["input"]["uri"] = "postgresql://crm@db.example/crm?password=hunter2"
        with pytest.raises(ConfigError, match=r"^input\.uri: holds a password"):
            load_spec(raw=raw)

    def test_a_password_arriving_through_env_is_refused_too(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """`env:NAME` is no way around the rule: the resolved URL is checked the same."""
        monkeypatch.setenv("CRM_URL", "postgresql://crm:hunter2@127.0.0.1/crm")
        with pytest.raises(ConfigError, match=r"^input\.uri: holds a password"):
            read_query(InputSpec(uri="env:CRM_URL", query="select 1"))

    def test_an_unset_environment_variable_is_named(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """`env:CRM_URL` with CRM_URL unset: a ConfigError naming input.uri and the variable."""
        monkeypatch.delenv("CRM_URL", raising=False)
        with pytest.raises(ConfigError, match=r"^input\.uri: names the environment variable 'CRM_URL', which is not"):
            read_query(InputSpec(uri="env:CRM_URL", query="select 1"))

    def test_input_flag_replaces_the_query(self, tmp_path: Path) -> None:
        """`--input FILE` on a query job reads the file instead (a rehearsal on an export), not an error."""
        raw = {
            "input": {"uri": "postgresql://localhost/crm", "query": "select 1"},
            "flow": {"sid": "FW" + "0" * 32},
            "mapping": {"to": "phone", "from": "+15005550006"},
        }
        spec = load_spec(raw=raw, overrides={"input.path": str(tmp_path / "export.csv")})
        assert (spec.input.path, spec.input.uri, spec.input.query) == (str(tmp_path / "export.csv"), None, None)

    def test_uri_and_query_go_together_and_exclude_path(self) -> None:
        """A query without a URI, a URI without a query, or both a file and a query: the key at fault is named."""
        base = {"flow": {"sid": "FW" + "0" * 32}, "mapping": {"to": "phone", "from": "+15005550006"}}
        with pytest.raises(ConfigError, match=r"^input\.uri: input\.uri and input\.query go together"):
            load_spec(raw={**base, "input": {"query": "select 1"}})
        with pytest.raises(ConfigError, match=r"^input\.query: input\.uri and input\.query go together"):
            load_spec(raw={**base, "input": {"uri": "postgresql://localhost/crm"}})
        with pytest.raises(ConfigError, match=r"^input\.path: give input\.path or input\.uri \+ input\.query"):
            load_spec(
                raw={**base, "input": {"path": "a.csv", "uri": "postgresql://localhost/crm", "query": "select 1"}}
            )

    def test_an_unreachable_server_is_named_by_host_and_port(self, closed_port: int) -> None:
        """Nobody listening: one line naming 127.0.0.1:<port>, no traceback."""
        port = closed_port
        spec = InputSpec(uri=f"postgresql://postgres@127.0.0.1:{port}/test", query="select 1")
        with pytest.raises(
            InputFileError, match=rf"^input\.query: cannot read from PostgreSQL at 127\.0\.0\.1:{port} "
        ):
            read_query(spec)

    def test_a_bad_query_carries_the_servers_message(self, pg: Schema) -> None:
        """A typo in the table name: the server's own words, on one line."""
        with pytest.raises(InputFileError) as caught:
            read_query(InputSpec(uri=pg.search_url, query="select phone from appointmnts"))
        message = str(caught.value)
        assert message.startswith("input.query: the server refused the query: relation ")
        assert "appointmnts" in message and "does not exist" in message and "\n" not in message

    def test_a_query_returning_no_rows_is_an_error(self, pg: Schema) -> None:
        """No contacts today is not silently a job that sends nothing."""
        with pytest.raises(InputFileError, match=r"^input\.query: the query returned no rows$"):
            read_query(InputSpec(uri=pg.search_url, query="select phone from appointments where false"))

    def test_a_mapped_column_the_query_does_not_return_is_named_with_those_it_does(
        self, pg: Schema, query_job: Callable[..., Path], capsys: pytest.CaptureFixture[str]
    ) -> None:
        """`mapping.to = "phone"` on a query returning `mobile`: exit 2, one line listing the result's columns."""
        job = query_job(pg.search_url, "select phone as mobile, first_name as name, visits from appointments")
        assert main(["validate", str(job)]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("batch-engage: input.query: column 'phone': mapping.to names a column")
        assert "mobile" in err and "\n" not in err


class TestReadOnly:
    def test_a_query_that_writes_is_refused_and_changes_nothing(
        self, pg: Schema, sandbox: Sandbox, query_job: Callable[..., Path], capsys: pytest.CaptureFixture[str]
    ) -> None:
        """`DELETE … RETURNING` runs in a read-only transaction: exit 2, one line, no row deleted, nothing sent."""
        job = query_job(pg.search_url, "delete from appointments where id <= 3 returning phone")
        assert main(["run", str(job)]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("batch-engage: input.query: the query would write (cannot execute DELETE in a read-only")
        assert "\n" not in err
        assert pg.conn.execute(f'SELECT count(*) FROM "{pg.name}".appointments').fetchone() == (12,)  # noqa: S608
        assert sandbox.ledger() == []
