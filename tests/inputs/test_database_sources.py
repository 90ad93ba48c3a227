"""Contacts from MariaDB/MySQL, DuckDB and SQLite: read-only, one clear line per failure, no secret shown."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path

import polars as pl
import pytest

from batch_engage.cli.main import main
from batch_engage.errors import ConfigError, InputFileError
from batch_engage.inputs import SOURCES, read_query
from batch_engage.job import InputSpec, load_spec
from batch_engage.sandbox import Sandbox

from conftest import REPO, digest_follows_the_rows, make_contacts
from mariadb import Database, fresh_database

SECRET = "S3cret:p@ss/word#1"


@pytest.fixture
def maria() -> Iterator[Database]:
    """A fresh MariaDB database holding ``contacts``: 12 rows, ``id`` 1..12, the usual phone, name and visits."""
    with fresh_database() as db:
        db.execute("CREATE TABLE contacts (id int primary key, phone varchar(20), name varchar(40), visits int)")
        rows = [(i + 1, *values) for i, values in enumerate(make_contacts(12).iter_rows())]
        db.conn.cursor().executemany("INSERT INTO contacts VALUES (%s, %s, %s, %s)", rows)
        yield db


@pytest.fixture
def login(maria: Database) -> Iterator[str]:
    """A MariaDB user (named after the database) whose password is SECRET; its URL, without the password."""
    user = maria.name[:32]
    maria.execute(f"CREATE USER '{user}'@'127.0.0.1' IDENTIFIED BY %s", (SECRET,))
    maria.execute(f"GRANT ALL ON `{maria.name}`.* TO '{user}'@'127.0.0.1'")
    yield f"mysql://{user}@127.0.0.1:3306/{maria.name}"
    maria.execute(f"DROP USER '{user}'@'127.0.0.1'")


def run_cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    """Exit code and everything printed (stdout and stderr together)."""
    code = main(args)
    out, err = capsys.readouterr()
    return code, out + err


class TestMariaDB:
    def test_a_job_runs_the_rows_its_query_returns_in_the_querys_order(
        self, maria: Database, sandbox: Sandbox, query_job: Callable[..., Path], tmp_path: Path
    ) -> None:
        """`uri = "mysql://…"` + query: validate and run see exactly the query's rows, in its order."""
        job = query_job(maria.url, "select phone, name, visits from contacts where id <= 10 order by id desc")
        assert main(["validate", str(job)]) == 0
        assert main(["run", str(job)]) == 0
        table = pl.read_csv(tmp_path / "job.results.csv", infer_schema_length=0)
        assert table["status"].to_list() == ["sent"] * 10
        assert table["to"].to_list() == [f"+1415555{100 + i:04d}" for i in range(9, -1, -1)]
        assert {e.to for e in sandbox.ledger()} == set(table["to"].to_list())

    def test_the_digest_changes_with_the_result_and_only_with_it(self, maria: Database) -> None:
        """Same rows, same digest (a resumed job matches its checkpoint); one changed row, another digest."""
        spec = InputSpec(uri=maria.url, query="select phone from contacts order by id")
        digest_follows_the_rows(spec, lambda: maria.execute("UPDATE contacts SET phone = '+14155550999' WHERE id = 3"))

    def test_the_password_comes_from_mysql_pwd(self, login: str, monkeypatch: pytest.MonkeyPatch) -> None:
        """MYSQL_PWD, as the mysql client reads it, logs in (a password with : @ / # in it too)."""
        monkeypatch.setenv("MYSQL_PWD", SECRET)
        assert read_query(InputSpec(uri=login, query="select phone from contacts")).frame.height == 12

    def test_the_password_comes_from_my_cnf(self, login: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
        """Without MYSQL_PWD, `password` in ~/.my.cnf's [client] group logs in."""
        monkeypatch.delenv("MYSQL_PWD", raising=False)
        monkeypatch.setenv("HOME", str(tmp_path))
        (tmp_path / ".my.cnf").write_text(f'[mysql]\npassword = wrong\n\n[client]\npassword = "{SECRET}"\n')
        assert read_query(InputSpec(uri=login, query="select phone from contacts")).frame.height == 12

    def test_a_wrong_password_is_one_quick_line_exit_2_without_the_secret(
        self,
        login: str,
        sandbox: Sandbox,
        query_job: Callable[..., Path],
        monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str],
    ) -> None:
        """Access denied: exit 2 at once (not after connectorx's 30 s of retries), host and database named, nothing sent."""
        monkeypatch.setenv("MYSQL_PWD", "wrong-" + SECRET)
        job = query_job(login, "select phone, name, visits from contacts")
        code, output = run_cli(["run", str(job)], capsys)
        assert code == 2
        line = output.strip()
        assert "\n" not in line and "Traceback" not in line
        assert line.startswith("batch-engage: input.query: cannot read from MySQL at 127.0.0.1:3306 (database ")
        assert "Access denied" in line and SECRET not in output and "S3cret" not in output
        assert sandbox.ledger() == []

    def test_an_unknown_table_is_one_line_exit_2(
        self, maria: Database, sandbox: Sandbox, query_job: Callable[..., Path], capsys: pytest.CaptureFixture[str]
    ) -> None:
        """A typo in the table name: the server's own words, one line, nothing sent."""
        job = query_job(maria.url, "select phone from contatcs")
        code, output = run_cli(["run", str(job)], capsys)
        assert code == 2
        assert output.strip().startswith("batch-engage: input.query: the server refused the query: 1146 (42S02)")
        assert "contatcs" in output and "\n" not in output.strip()
        assert f"(MySQL at 127.0.0.1:3306, database {maria.name})" in output
        assert sandbox.ledger() == []

    @pytest.mark.parametrize(
        "query",
        [
            "delete from contacts where id <= 3",
            "delete from contacts where id <= 3 returning phone",
            "update contacts set visits = 0",
        ],
    )
    def test_a_query_that_writes_is_refused_and_changes_nothing(
        self,
        maria: Database,
        sandbox: Sandbox,
        query_job: Callable[..., Path],
        capsys: pytest.CaptureFixture[str],
        query: str,
    ) -> None:
        """The session is read-only: the server refuses the write (1792), exit 2, every row intact, nothing sent."""
        job = query_job(maria.url, query)
        code, output = run_cli(["run", str(job)], capsys)
        assert code == 2
        assert output.strip().startswith("batch-engage: input.query: the query would write (1792 (25006)")
        assert maria.execute("SELECT count(*), sum(visits) FROM contacts") == [(12, sum(range(12)))]
        assert sandbox.ledger() == []

    def test_a_password_in_the_url_is_refused(self) -> None:
        """`mysql://user:secret@host/db`: refused when the job loads, pointing to MYSQL_PWD and ~/.my.cnf."""
        raw = {
            "input": {"uri": "mysql://crm:hunter2@127.0.0.1/crm", "query": "select 1"},
            "flow": {"sid": "FW" + "0" * 32},
            "mapping": {"to": "phone", "from": "+15005550006"},
        }
        with pytest.raises(ConfigError, match=r"^input\.uri: holds a password") as caught:
            load_spec(raw=raw)
        assert "hunter2" not in str(caught.value)
        with pytest.raises(ConfigError, match=r"^input\.uri: holds a password.*MYSQL_PWD.*~/\.my\.cnf"):
            read_query(InputSpec(uri="mysql://crm:hunter2@127.0.0.1/crm", query="select 1"))


@pytest.fixture
def duck(tmp_path: Path) -> Path:
    """A DuckDB file holding ``contacts`` (12 rows)."""
    # Imported here: duckdb loads in 0.13 s, and every worker collects this file while one runs these tests.
    import duckdb

    path = tmp_path / "crm.duckdb"
    with duckdb.connect(str(path)) as conn:
        conn.register("frame", make_contacts(12).to_arrow())
        conn.sql("CREATE TABLE contacts AS SELECT * FROM frame")
    return path


@pytest.fixture
def lite(tmp_path: Path) -> Path:
    """A SQLite file holding ``contacts`` (12 rows)."""
    path = tmp_path / "crm.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE contacts (phone text, name text, visits integer)")
        conn.executemany("INSERT INTO contacts VALUES (?, ?, ?)", make_contacts(12).iter_rows())
    conn.close()
    return path


class TestFiles:
    @pytest.mark.parametrize("scheme", ["duckdb", "sqlite"])
    def test_a_job_runs_the_rows_of_a_query_on_a_database_file(
        self, scheme: str, duck: Path, lite: Path, query_job: Callable[..., Path], tmp_path: Path
    ) -> None:
        """`duckdb:///crm.duckdb` / `sqlite:///crm.db` (beside the job file) + query: the query's rows are sent."""
        name = (duck if scheme == "duckdb" else lite).name
        job = query_job(f"{scheme}:///{name}", "select phone, name, visits from contacts order by visits desc")
        assert main(["run", str(job)]) == 0
        table = pl.read_csv(tmp_path / "job.results.csv", infer_schema_length=0)
        assert table["to"].to_list() == make_contacts(12)["phone"].to_list()[::-1]
        assert set(table["status"]) == {"sent"}

    def test_a_query_whose_rows_are_all_new_people_is_sent_not_refused(
        self, lite: Path, query_job: Callable[..., Path], sandbox: Sandbox
    ) -> None:
        """Today's appointments are other people than yesterday's: a query's rows change by design, so a result
        sharing no contact with those reached is sent, never refused as a wrong file would be."""
        job = query_job(f"sqlite:///{lite.name}", "select phone, name, visits from contacts")
        assert main(["run", str(job)]) == 0
        with sqlite3.connect(lite) as conn:
            conn.execute("DELETE FROM contacts")
            conn.executemany("INSERT INTO contacts VALUES (?, ?, ?)", make_contacts(5, start=700).iter_rows())
        conn.close()
        assert main(["validate", str(job)]) == 0
        assert main(["run", str(job)]) == 0
        assert len({e.to for e in sandbox.ledger()}) == 17

    @pytest.mark.parametrize("scheme", ["duckdb", "sqlite"])
    def test_a_query_that_writes_is_refused_by_the_read_only_file(self, scheme: str, duck: Path, lite: Path) -> None:
        """The file is opened read-only: a DELETE is one line and every row stays."""
        path = duck if scheme == "duckdb" else lite
        with pytest.raises(InputFileError, match=r"^input\.query: the query would write"):
            read_query(InputSpec(uri=f"{scheme}:///{path}", query="delete from contacts"))
        assert read_query(InputSpec(uri=f"{scheme}:///{path}", query="select * from contacts")).frame.height == 12

    def test_a_missing_file_is_named(self, tmp_path: Path) -> None:
        """No such file: one line naming it (a database file is never created by reading)."""
        with pytest.raises(InputFileError, match=r"no such database file"):
            read_query(InputSpec(uri=f"sqlite:///{tmp_path}/nope.db", query="select 1"))
        assert not (tmp_path / "nope.db").exists()

    def test_an_unknown_scheme_lists_the_known_ones(self) -> None:
        """`oracle://`: a ConfigError naming input.uri and every scheme the catalog knows."""
        with pytest.raises(
            ConfigError,
            match=r"^input\.uri: 'oracle' is not a known database \(use postgresql://.*mysql://.*duckdb://.*sqlite://",
        ):
            read_query(InputSpec(uri="oracle://db/x", query="select 1"))


def test_the_readmes_table_of_inputs_is_the_catalog() -> None:
    """Each input the catalog knows has its row in the README's table: names, reading library, credentials."""
    readme = (REPO / "README.md").read_text()
    for source in SOURCES:
        names = ", ".join(f"`{name}`" for name in source.names)
        assert f"| {source.kind} | {names} | {source.library} | {source.credentials} |" in readme
