"""A results table in PostgreSQL is proven before anything is sent: it answers, it can take the rows, and a job
id's rows in it belong to one job. Each refusal is one line, exit 2, and nobody was sent to."""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import polars as pl
import pytest

from batch_engage.postgres import parse_table_url
from batch_engage.sandbox import Sandbox
from batch_engage.tables import write_table

from conftest import cli, make_contacts, unique_name
from pg import Schema, fresh_schema


@pytest.fixture
def pg() -> Iterator[Schema]:
    """A fresh PostgreSQL schema for the tables."""
    with fresh_schema() as schema:
        yield schema


@pytest.fixture
def folder_job(sandbox: Sandbox, job_for: Callable[..., Path], tmp_path: Path) -> Callable[..., Path]:
    """``folder_job(name, results, contacts_from=100)``: a job in a folder of its own, ``[job] id = "newsletter"``,
    five contacts of its own, its results to ``results``, sent to ``sandbox``."""

    def write(name: str, results: str, contacts_from: int = 100) -> Path:
        folder = tmp_path / name
        folder.mkdir()
        contacts = folder / "contacts.csv"
        make_contacts(5, start=contacts_from).write_csv(contacts)
        job = job_for(sandbox, input_path=contacts)
        text = re.sub(r'(?m)^results = ".*"$', lambda _: f'results = "{results}"', job.read_text())
        text = re.sub(r'(?m)^checkpoint = ".*"$', lambda _: f'checkpoint = "{folder / "job.checkpoint"}"', text)
        moved = folder / "job.toml"
        moved.write_text(text + '\n[job]\nid = "newsletter"\n')
        job.unlink()
        return moved

    return write


def rows(pg: Schema, table: str) -> list[tuple[str, str]]:
    """``(job_id, to)`` of every row of ``table``, in order."""
    query = f'SELECT job_id, "to" FROM "{pg.name}"."{table}" ORDER BY job_id, "row"'  # noqa: S608
    return [(str(a), str(b)) for a, b in pg.conn.execute(query).fetchall()]


def sent_to(sandbox: Sandbox) -> set[str]:
    """Every number the sandbox was asked to start a run for."""
    return {entry.to for entry in sandbox.ledger()}


class TestOneJobPerJobId:
    def test_a_second_job_with_the_same_id_is_refused_before_sending_and_report_cannot_replace_its_rows(
        self,
        folder_job: Callable[..., Path],
        pg: Schema,
        sandbox: Sandbox,
        capsys: pytest.CaptureFixture[str],
    ) -> None:
        """Two jobs (two folders, two checkpoints) both `[job] id = "newsletter"` into one table: a's run fills it;
        b's validate and run exit 2 in one line naming the other job, none of b's contacts is sent, a's rows stay;
        b's report cannot replace them either (b's run replaced them, both exited 0, and a's report took them back)."""
        shared = f"{pg.url}#{pg.name}.shared"
        a, b = folder_job("a", shared), folder_job("b", shared, contacts_from=200)
        assert cli(["run", str(a)], capsys)[0] == 0
        written = rows(pg, "shared")
        assert len(written) == 5
        for command in ("validate", "run"):
            code, _, err = cli([command, str(b)], capsys)
            assert code == 2, err
            assert err.count("\n") == 1 and "holds rows of job id 'newsletter' that another job wrote" in err
            assert str(a.parent) in err
        assert sent_to(sandbox) == set(make_contacts(5)["phone"])
        assert rows(pg, "shared") == written
        # report for b, from a checkpoint of its own: still a's table.
        b_spec = b.read_text().replace(f'results = "{shared}"', f'results = "{b.parent / "r.csv"}"')
        b.write_text(b_spec)
        assert cli(["run", str(b)], capsys)[0] == 0
        code, _, err = cli(["report", str(b), "--output", shared], capsys)
        assert code == 2 and err.count("\n") == 1 and "another job wrote" in err
        assert rows(pg, "shared") == written
        assert cli(["report", str(a)], capsys)[0] == 0
        assert rows(pg, "shared") == written

    def test_rows_written_before_owners_were_kept_are_taken_over_by_the_job_that_runs(
        self, folder_job: Callable[..., Path], pg: Schema, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """A table an earlier version wrote (rows of nobody): the job runs and writes them as its own."""
        from batch_engage.tables import write_output

        shared = f"{pg.url}#{pg.name}.shared"
        write_output(pl.DataFrame({"row": [1], "status": ["sent"]}), shared, job_id="newsletter", period="", key="k")
        pg.execute("UPDATE {schema}.shared SET job_owner = NULL")
        a = folder_job("a", shared)
        assert cli(["run", str(a)], capsys)[0] == 0
        owners = pg.conn.execute(f'SELECT DISTINCT job_owner FROM "{pg.name}".shared').fetchall()  # noqa: S608
        assert owners == [(f"newsletter@{(a.parent / 'job.checkpoint').resolve()}",)]


class TestUnusableTable:
    def test_a_database_that_does_not_exist_is_refused_before_anyone_is_sent_to(
        self, folder_job: Callable[..., Path], pg: Schema, sandbox: Sandbox, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """`results = "postgresql://…/nosuchdb#s.r2"`: validate and run exit 2 in one line naming the database (run
        sent everyone, then exited 74 saying "once there is room")."""
        missing = unique_name()
        job = folder_job("a", f"{pg.url.rsplit('/', 1)[0]}/{missing}#s.r2")
        for command in ("validate", "run"):
            code, _, err = cli([command, str(job)], capsys)
            assert code == 2, err
            assert err.count("\n") == 1 and f'database "{missing}" does not exist' in err
            assert err.startswith("batch-engage: output.results: ") and "room" not in err
        assert sandbox.ledger() == []

    @pytest.mark.parametrize("target", ["src", "src_w"])
    def test_a_table_or_view_the_query_reads_through_a_view_is_refused_before_anyone_is_sent_to(
        self,
        query_job: Callable[..., Path],
        pg: Schema,
        sandbox: Sandbox,
        capsys: pytest.CaptureFixture[str],
        target: str,
    ) -> None:
        """The contacts' own table (read through a view), or another view of it, as `output.results`: validate and run exit 2
        saying it is not a results table, nobody sent, the contacts untouched (run sent all, then failed with
        `column "job_id" does not exist`, exit 74)."""
        pg.execute("CREATE TABLE {schema}.src (id int PRIMARY KEY, phone text, name text, visits int)")
        for i, (phone, name, visits) in enumerate(make_contacts(5).iter_rows()):
            pg.conn.execute(f'INSERT INTO "{pg.name}".src VALUES (%s, %s, %s, %s)', (i, phone, name, visits))  # noqa: S608
        pg.execute("CREATE VIEW {schema}.src_v AS SELECT * FROM {schema}.src")
        pg.execute("CREATE VIEW {schema}.src_w AS SELECT * FROM {schema}.src")
        job = query_job(pg.url, f"select phone, name, visits from {pg.name}.src_v order by id")  # noqa: S608
        results = f"{pg.url}#{pg.name}.{target}"
        job.write_text(
            re.sub(r'(?m)^results = ".*"$', lambda _: f'results = "{results}"', job.read_text()) + '\n[job]\nid = "j"\n'
        )
        for command in ("validate", "run"):
            code, _, err = cli([command, str(job)], capsys)
            assert code == 2, err
            assert err.count("\n") == 1
            assert ("is a view" if target == "src_w" else "without batch-engage's key (job_id, period, row)") in err
        assert sandbox.ledger() == []
        assert pg.conn.execute(f'SELECT count(*) FROM "{pg.name}".src').fetchone() == (5,)  # noqa: S608


def test_four_writers_meeting_a_table_from_before_job_owner_all_land(pg: Schema) -> None:
    """A results table an earlier release made (no job_owner column), four jobs writing at once: each one's rows
    land (three failed "column job_owner already exists" after their runs had sent, exit 74)."""
    pg.execute(
        'CREATE TABLE {schema}.results (job_id text NOT NULL, period text NOT NULL, "row" bigint NOT NULL, '
        '"to" text, status text, PRIMARY KEY (job_id, period, "row"))'
    )
    table = parse_table_url(f"{pg.url}#{pg.name}.results", key="output.results")
    frame = pl.DataFrame({"row": list(range(1, 5001)), "to": ["+14155550100"] * 5000, "status": ["sent"] * 5000})
    failures: list[str] = []

    def write(job: str) -> None:
        try:
            write_table(frame, table, job_id=job, period=None, owner=f"{job}@/jobs/{job}.checkpoint")
        except Exception as exc:
            failures.append(f"{job}: {exc}")

    writers = [threading.Thread(target=write, args=(f"job{i}",)) for i in range(4)]
    for writer in writers:
        writer.start()
    for writer in writers:
        writer.join()
    assert failures == []
    query = f'SELECT job_id, count(*) FROM "{pg.name}".results GROUP BY 1 ORDER BY 1'  # noqa: S608 - our schema
    counts = pg.conn.execute(query).fetchall()
    assert counts == [(f"job{i}", 5000) for i in range(4)]
