"""A data team's pipeline: contacts from MariaDB, results and outcomes in PostgreSQL tables, rewritten atomically."""

from __future__ import annotations

import re
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import launch
import polars as pl
import psycopg
import pytest
from launch import Running

from batch_engage.cli.main import main
from batch_engage.errors import ConfigError
from batch_engage.job import load_spec
from batch_engage.sandbox import Sandbox

from conftest import FLOW_SID, REPO, make_contacts
from killing import cli_env
from mariadb import Database, fresh_database
from pg import Schema, fresh_schema

# One row per input row and the atomic replace hold at any size; each contact sent costs the run CPU.
CONTACTS = 300
NEW = 100
SOME_NOT_SENT = 1  # the invalid and the duplicate row
FAST_SEND = "rate = 10000\nconcurrency = 16\nreconcile_delay = 0.0"


@pytest.fixture
def maria() -> Iterator[Database]:
    """A fresh MariaDB database holding ``contacts``: CONTACTS rows, plus one invalid and one duplicate number."""
    with fresh_database() as db:
        db.execute("CREATE TABLE contacts (id int primary key, phone varchar(20), name varchar(40), visits int)")
        add_contacts(db, 0, CONTACTS)
        db.execute("INSERT INTO contacts VALUES (%s, 'not a number', 'Nobody', 0)", (CONTACTS + 1_000_000,))
        db.execute("INSERT INTO contacts VALUES (%s, '+14155550100', 'Twice', 0)", (CONTACTS + 1_000_001,))
        yield db


@pytest.fixture
def pg() -> Iterator[Schema]:
    """A fresh PostgreSQL schema, standing for ``campaigns``."""
    with fresh_schema() as schema:
        yield schema


def add_contacts(db: Database, start: int, n: int) -> None:
    """Contacts ``start`` .. ``start + n - 1`` (ids from 1), numbers from +14155550100 on."""
    frame = make_contacts(n, start=100 + start)
    rows = [(start + i + 1, *values) for i, values in enumerate(frame.iter_rows())]
    with db.conn.cursor() as cur:
        cur.executemany("INSERT INTO contacts VALUES (%s, %s, %s, %s)", rows)


@pytest.fixture
def pipeline_job(
    tmp_path: Path, maria: Database, pg: Schema, sandbox: Sandbox, sandbox_env: dict[str, str]
) -> Callable[..., Path]:
    """``pipeline_job(extra="")``: a job against ``sandbox`` (its credentials in the environment) reading
    ``contacts`` from MariaDB and writing its results (and outcomes) to PostgreSQL tables."""

    def write(extra: str = "") -> Path:
        job = tmp_path / "reminders.toml"
        job.write_text(
            f"""
[job]
id = "reminders"

[input]
uri = "{maria.url}"
query = "select phone, name, visits from contacts order by id"

[flow]
sid = "{FLOW_SID}"
base_url = "{sandbox.url}"

[mapping]
to = "phone"
from = "+15005550006"

[mapping.parameters]
name = "name"

[send]
{FAST_SEND}

[output]
results = "{pg.url}#{pg.name}.results"
outcomes = "{pg.url}#{pg.name}.outcomes"
checkpoint = "{tmp_path / "reminders.checkpoint"}"
{extra}
"""  # noqa: S608
        )
        return job

    return write


def table(pg: Schema, name: str = "results") -> pl.DataFrame:
    """The whole table, in key order."""
    rows = pg.conn.execute(f'SELECT * FROM "{pg.name}"."{name}" ORDER BY job_id, period, "row"')  # noqa: S608
    columns = [c.name for c in rows.description or []]
    return pl.DataFrame(rows.fetchall(), schema=columns, orient="row", infer_schema_length=None)


@pytest.fixture
def ran_once(pipeline_job: Callable[..., Path]) -> Path:
    """The pipeline job, run once by the CLI with the sandbox's credentials: all sent but the invalid and duplicate."""
    job = pipeline_job()
    assert main(["run", str(job)]) == SOME_NOT_SENT
    return job


class TestPipeline:
    def test_results_reach_the_table_one_row_per_input_row_and_a_rerun_updates_in_place(
        self, ran_once: Path, maria: Database, pg: Schema, sandbox: Sandbox, tmp_path: Path
    ) -> None:
        """MariaDB in, PostgreSQL out: one row per input row with the CSV's statuses and SIDs; new contacts add rows."""
        job = ran_once
        written = table(pg)
        assert written.height == CONTACTS + 2
        assert written["row"].to_list() == list(range(1, CONTACTS + 3))
        assert set(written["job_id"]) == {"reminders"} and set(written["period"]) == {""}
        # The CSV of the same job, from the same checkpoint: the same statuses and SIDs, row by row.
        assert main(["report", str(job), "--output", str(tmp_path / "same.csv")]) == 0
        csv = pl.read_csv(tmp_path / "same.csv", infer_schema_length=0)
        assert written["status"].to_list() == csv["status"].to_list()
        assert written["sid"].to_list() == csv["sid"].to_list()
        assert written["status"].value_counts().sort("status").rows() == [
            ("duplicate", 1),
            ("invalid", 1),
            ("sent", CONTACTS),
        ]

        add_contacts(maria, CONTACTS, NEW)
        assert main(["run", str(job)]) == SOME_NOT_SENT
        again = table(pg)
        assert again.height == CONTACTS + 2 + NEW
        assert again.select("job_id", "period", "row").is_unique().all()
        assert again.filter(pl.col("status") == "sent").height == CONTACTS + NEW
        assert len(sandbox.ledger()) == CONTACTS + NEW

    def test_columns_are_typed(self, pipeline_job: Callable[..., Path], pg: Schema) -> None:
        """Timestamps are timestamptz, http_status an integer, and the key is (job_id, period, row)."""
        job = pipeline_job()
        spec = load_spec(job)
        from batch_engage.tables import write_output

        frame = pl.DataFrame(
            {
                "row": [1],
                "to": ["+1"],
                "status": ["sent"],
                "http_status": [201],
                "completed_at": ["2026-12-06T10:00:00Z"],
            }
        )
        write_output(frame, spec.output.results, job_id="reminders", period=None, key="output.results")
        types = dict(
            pg.conn.execute(
                "SELECT column_name, data_type FROM information_schema.columns WHERE table_schema = %s AND table_name = 'results'",
                (pg.name,),
            ).fetchall()
        )
        assert types["completed_at"] == "timestamp with time zone"
        assert types["http_status"] == "integer" and types["row"] == "bigint"
        key = pg.conn.execute(
            "SELECT array_agg(a.attname::text ORDER BY array_position(i.indkey, a.attnum)) FROM pg_index i "
            "JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey) "
            "WHERE i.indrelid = %s::regclass AND i.indisprimary",
            (f'"{pg.name}".results',),
        ).fetchone()
        assert key == (["job_id", "period", "row"],)

    def test_other_jobs_and_periods_are_untouched_and_a_shrunk_list_leaves_no_stale_rows(self, pg: Schema) -> None:
        """A write replaces exactly its own job-and-period's rows."""
        from batch_engage.tables import write_output

        target = f"{pg.url}#{pg.name}.results"
        three = pl.DataFrame({"row": [1, 2, 3], "status": ["sent"] * 3})
        write_output(three, target, job_id="a", period="2026-12-05", key="k")
        write_output(three, target, job_id="a", period="2026-12-06", key="k")
        write_output(three, target, job_id="b", period="2026-12-06", key="k")
        write_output(three.head(1), target, job_id="a", period="2026-12-06", key="k")
        counts = table(pg).group_by("job_id", "period").len().sort("job_id", "period").rows()
        assert counts == [("a", "2026-12-05", 3), ("a", "2026-12-06", 1), ("b", "2026-12-06", 3)]

    def test_four_jobs_creating_one_new_table_at_once_all_land(self, pg: Schema) -> None:
        """Four writers into a schema and table that do not exist yet, at the same moment: every job's rows are
        there, none refused (PostgreSQL's catalog collides on CREATE ... IF NOT EXISTS without the lock)."""
        import threading

        from psycopg import sql

        from batch_engage.tables import write_output

        fresh = f"{pg.name}_new"
        target = f"{pg.url}#{fresh}.results"
        three = pl.DataFrame({"row": [1, 2, 3], "status": ["sent"] * 3})
        failures: list[BaseException] = []

        def write(job: str) -> None:
            try:
                write_output(three, target, job_id=job, period="", key="k")
            except BaseException as exc:
                failures.append(exc)

        writers = [threading.Thread(target=write, args=(f"job{i}",)) for i in range(4)]
        try:
            for w in writers:
                w.start()
            for w in writers:
                w.join()
            rows = pg.conn.execute(
                sql.SQL("SELECT job_id, count(*) FROM {}.results GROUP BY 1 ORDER BY 1").format(sql.Identifier(fresh))
            ).fetchall()
        finally:
            pg.conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(fresh)))
        assert failures == []
        assert rows == [(f"job{i}", 3) for i in range(4)]

    def test_a_write_held_up_on_one_table_never_holds_up_another_tables(self, pg: Schema) -> None:
        """A transaction left open on table a (someone's UPDATE) holds a's writer; b's writer, in the same schema,
        finishes all the same: the creation lock is taken only while a table is missing."""
        import threading

        import psycopg
        from psycopg import sql

        from batch_engage.tables import write_output

        rows = pl.DataFrame({"row": [1, 2], "status": ["sent", "sent"]})
        for name in ("a", "b"):
            write_output(rows, f"{pg.url}#{pg.name}.{name}", job_id="j", period="", key="k")
        with psycopg.connect(pg.url) as holder:
            holder.execute(sql.SQL("UPDATE {}.a SET status = 'x'").format(sql.Identifier(pg.name)))
            done: dict[str, bool] = {}

            def write(name: str) -> None:
                write_output(rows, f"{pg.url}#{pg.name}.{name}", job_id="j", period="", key="k")
                done[name] = True

            held = threading.Thread(target=write, args=("a",))
            free = threading.Thread(target=write, args=("b",))
            held.start()
            free.start()
            free.join(timeout=30)
            assert done == {"b": True}
            holder.rollback()
        held.join(timeout=30)
        assert done == {"a": True, "b": True}


class TestKilledWrite:
    @pytest.mark.slow
    def test_sigkill_during_the_write_leaves_the_table_as_it_was_and_the_next_run_completes_it(
        self, ran_once: Path, maria: Database, pg: Schema, sandbox_env: dict[str, str]
    ) -> None:
        """Killed with the write's transaction open: readers saw the old rows throughout; they stay; a rerun writes all."""
        job = ran_once
        before = table(pg)
        add_contacts(maria, CONTACTS, NEW)
        new_row = CONTACTS + 2 + NEW
        # Another session holds an uncommitted row under the key the write will insert last: the writer
        # blocks there, after deleting and inserting everything else inside its transaction.
        with psycopg.connect(pg.url) as blocker:
            blocker.execute(
                f'INSERT INTO "{pg.name}".results (job_id, period, "row") VALUES (%s, %s, %s)',  # noqa: S608
                ("reminders", "", new_row),
            )
            with launch.start(
                ["run", str(job), "--quiet"],
                env=cli_env(sandbox_env) | {"PYTHONPATH": str(REPO)},
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
            ) as proc:
                try:
                    wait_for_blocked_insert(pg, proc)
                    assert table(pg).equals(before)  # a reader sees the old rows, not a half-written table
                    proc.send_signal(signal.SIGKILL)
                    assert proc.wait(timeout=30) == -signal.SIGKILL
                finally:
                    if proc.poll() is None:
                        proc.kill()
            blocker.rollback()
        assert wait_for_no_writer(pg)
        assert table(pg).equals(before)
        assert main(["run", str(job)]) == SOME_NOT_SENT
        after = table(pg)
        assert after.height == CONTACTS + 2 + NEW
        # The new contacts come before the invalid and duplicate rows (order by id): compare by contact.
        same = ["to", "status", "sid"]
        assert set(before.select(same).rows()) <= set(after.select(same).rows())


def wait_for_blocked_insert(pg: Schema, proc: Running, timeout: float = 120) -> None:
    """Poll until a session waits on a lock while inserting into the schema's results table."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        waiting = pg.conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE %s",
            (f'INSERT INTO "{pg.name}"."results"%',),
        ).fetchone()
        if waiting and waiting[0]:
            return
        assert proc.poll() is None, (proc.stderr.read() if proc.stderr else b"").decode()
        time.sleep(0.05)  # polling a condition, not timing
    pytest.fail("the writer never reached its INSERT")


def wait_for_no_writer(pg: Schema, timeout: float = 30) -> bool:
    """Poll until no session holds an open transaction on the schema's results table (the killed one's ends)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        left = pg.conn.execute(
            "SELECT count(*) FROM pg_locks l JOIN pg_class c ON c.oid = l.relation "
            "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = %s AND c.relname = 'results' "
            "AND l.pid <> pg_backend_pid()",
            (pg.name,),
        ).fetchone()
        if left == (0,):
            return True
        time.sleep(0.05)  # polling a condition, not timing
    return False


class TestCollect:
    def test_collect_writes_outcomes_to_a_table_that_joins_the_results_as_the_readme_shows(
        self, pipeline_job: Callable[..., Path], maria: Database, pg: Schema, sandbox: Sandbox
    ) -> None:
        """`collect` replaces the job's outcome rows in one transaction; the README's join returns each row's reply."""
        maria.execute("DELETE FROM contacts WHERE id > 20 AND id < 1000000")
        job = pipeline_job(extra='\n[collect.fields]\nanswer = "widgets.ask.inbound.Body"\n')
        job.write_text(job.read_text().replace('id = "reminders"', 'id = "spring-reminders"'))
        assert main(["run", str(job)]) == SOME_NOT_SENT
        assert main(["collect", str(job)]) == 75
        assert set(table(pg, "outcomes")["run_status"]) == {"active"}
        sandbox.end_all_runs()
        assert main(["collect", str(job)]) == 0
        outcomes = table(pg, "outcomes")
        assert outcomes.height == 20 and set(outcomes["run_status"]) == {"ended"}
        readme = (REPO / "README.md").read_text()
        query = re.search(r"```sql\n(SELECT r\.row.*?)```", readme, re.DOTALL)
        assert query is not None
        joined = pg.conn.execute(query[1].replace("campaigns.", f'"{pg.name}".')).fetchall()
        assert len(joined) == 22
        replied = [r for r in joined if r[4] == "ended"]
        assert len(replied) == 20 and all(r[3] for r in replied)
        ended = pg.conn.execute(
            "SELECT data_type FROM information_schema.columns WHERE table_schema = %s AND table_name = 'outcomes' "
            "AND column_name = 'ended_at'",
            (pg.name,),
        ).fetchone()
        assert ended == ("timestamp with time zone",)


class TestRefusals:
    def base(self, tmp_path: Path, **output: Any) -> dict[str, Any]:
        return {
            "input": {"path": str(tmp_path / "c.csv")},
            "flow": {"sid": FLOW_SID},
            "mapping": {"to": "phone", "from": "+15005550006"},
            "output": {"checkpoint": str(tmp_path / "x.checkpoint"), **output},
        }

    def test_a_table_needs_a_job_id(self, tmp_path: Path) -> None:
        """Results to a table without `[job] id`: the key of its rows is missing, exit 2 naming job.id."""
        raw = self.base(tmp_path, results="postgresql://db.internal/analytics#campaigns.results")
        with pytest.raises(ConfigError, match=r"^job\.id: is required when output\.results is a postgresql:// table"):
            load_spec(raw=raw)

    def test_a_table_must_be_named_after_the_hash(self, tmp_path: Path) -> None:
        """No fragment, or not a plain name: the key and the expected form are named."""
        for url in ("postgresql://db/analytics", "postgresql://db/analytics#Campaigns.Results"):
            raw = self.base(tmp_path, results=url) | {"job": {"id": "j"}}
            with pytest.raises(ConfigError, match=r"^output\.results: name the table after '#', as schema\.table"):
                load_spec(raw=raw)

    def test_a_password_in_the_table_url_is_refused(self, tmp_path: Path) -> None:
        """The job file is not a secret: PGPASSWORD or ~/.pgpass instead."""
        raw = self.base(tmp_path, outcomes="postgresql://u:hunter2@db/analytics#c.outcomes") | {"job": {"id": "j"}}
        with pytest.raises(ConfigError, match=r"^output\.outcomes: holds a password") as caught:
            load_spec(raw=raw)
        assert "hunter2" not in str(caught.value)

    def test_a_rehearsal_writes_the_sandbox_table(self, tmp_path: Path) -> None:
        """`--sandbox`: `#campaigns.results` becomes `#campaigns.results_sandbox`, the outcomes likewise."""
        raw = self.base(
            tmp_path,
            results="postgresql://db/analytics#campaigns.results",
            outcomes="postgresql://db/analytics#campaigns.outcomes",
        ) | {"job": {"id": "j"}}
        rehearsal = load_spec(raw=raw).rehearsal()
        assert rehearsal.output.results == "postgresql://db/analytics#campaigns.results_sandbox"
        assert rehearsal.output.outcomes == "postgresql://db/analytics#campaigns.outcomes_sandbox"
        assert rehearsal.rehearsal().output.results == rehearsal.output.results

    @pytest.mark.parametrize(
        ("section", "value", "results"),
        [
            ("checkpoint", "postgresql://db/analytics?schema=ops", "postgresql://db/analytics#ops.results"),
            ("history", "postgresql://db/analytics", "postgresql://db/analytics#batch_engage.results"),
            ("input", "select phone from campaigns.results", "postgresql://db/analytics#campaigns.results"),
        ],
    )
    def test_the_checkpoints_the_historys_or_the_inputs_own_table_is_refused(
        self, tmp_path: Path, section: str, value: str, results: str
    ) -> None:
        """Results written over the state, the history or the contacts themselves: exit 2, nothing sent."""
        raw = self.base(tmp_path, results=results) | {"job": {"id": "j"}}
        if section == "checkpoint":
            raw["output"]["checkpoint"] = value
        elif section == "history":
            raw["history"] = {"path": value}
        else:
            raw["input"] = {"uri": "postgresql://db/analytics", "query": value}
        with pytest.raises(ConfigError, match=r"^output\.results: postgresql://db:5432/analytics#"):
            load_spec(raw=raw)

    def test_another_server_or_another_table_is_fine(self, tmp_path: Path) -> None:
        """Same names on another database, or another table on the same one: accepted."""
        raw = self.base(tmp_path, results="postgresql://other/analytics#campaigns.results") | {"job": {"id": "j"}}
        raw["input"] = {"uri": "postgresql://db/analytics", "query": "select phone from campaigns.results"}
        load_spec(raw=raw)
        raw["output"]["results"] = "postgresql://db/analytics#campaigns.results2"
        load_spec(raw=raw)


def test_an_unreachable_table_is_one_line_exit_2(
    job: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`report --output` to a server that does not answer: exit 2, one line naming the table, no password hint lost."""
    job.write_text(job.read_text() + '\n[job]\nid = "j"\n')
    assert main(["run", str(job)]) == 0
    capsys.readouterr()
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
        code = main(["report", str(job), "--output", f"postgresql://postgres@127.0.0.1:{port}/test#c.results"])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert err.startswith(f"batch-engage: postgresql://127.0.0.1:{port}/test#c.results: cannot connect (")
    assert "\n" not in err and "PGPASSWORD" in err


READS_CONTACTS = (
    '[job]\nid = "j"\n[input]\nuri = "postgresql://db.internal/crm"\nquery = "select phone from crm.contacts"\n'
)


def test_report_output_to_the_inputs_own_table_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`report --output` naming the table the query reads: exit 2 before anything is read or written."""
    job = tmp_path / "j.toml"
    job.write_text(READS_CONTACTS + f'[flow]\nsid = "{FLOW_SID}"\n[mapping]\nto = "phone"\nfrom = "+15005550006"\n')
    code = main(["report", str(job), "--output", "postgresql://db.internal/crm#crm.contacts"])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert err == (
        "batch-engage: --output: postgresql://db.internal:5432/crm#crm.contacts is a table input.query reads: "
        "choose another"
    )


@pytest.mark.parametrize("command", ["report", "collect"])
def test_output_to_a_table_from_a_job_without_an_id_is_refused(
    job: Path, capsys: pytest.CaptureFixture[str], command: str
) -> None:
    """`report`/`collect --output` to a table need `[job] id`, as `run` does: two jobs named `job.toml` in two
    folders would replace each other's rows. Exit 2, one line, before anything is read or written."""
    assert main(["run", str(job)]) == 0
    capsys.readouterr()
    code = main([command, str(job), "--output", "postgresql://postgres@127.0.0.1:9/test#c.results"])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert (
        err.startswith("batch-engage: job.id: is required when --output is a postgresql:// table") and "\n" not in err
    )
