"""The checkpoint in PostgreSQL: runs, resumes, status and report from the database alone, one run per job
anywhere, a rehearsal apart, a frozen holder taken over, and two "machines" sharing only the URL under SIGKILL.

Against the real server in ``BATCH_ENGAGE_TEST_PG`` (default ``postgresql://postgres@127.0.0.1:5432/test``);
each test gets its own schema. Without a server they skip, or fail when ``CI`` is set.
"""

from __future__ import annotations

import os
import signal
import textwrap
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import launch
import polars as pl
import pytest

from batch_engage import api
from batch_engage.checkpoint.postgres.lease import RELEASE_GRACE, lock_job, write_lease
from batch_engage.checkpoint.postgres.tables import create_tables
from batch_engage.checkpoint.store import (
    Intent,
    Outcome,
    Target,
    checkpoint_exists,
    open_checkpoint,
    read_checkpoint,
)
from batch_engage.credentials import Credentials
from batch_engage.errors import CheckpointLocked, ConfigError, TryLater, UsageError
from batch_engage.job import load_spec
from batch_engage.postgres import parse_location
from batch_engage.runner import RunOptions
from batch_engage.sandbox import Sandbox
from batch_engage.states import RowState

from conftest import FLOW_SID, cli, make_contacts
from killing import cli_env, kill_9_at_random, ledger_length, start_run
from pg import Schema, fresh_schema

FAST_SEND = "rate = 500\nconcurrency = 8\nreconcile_delay = 0.0\nsettle_after = 1.0"
TARGET = Target(base_url="http://127.0.0.1:9", identity=None, sandbox=False)


@pytest.fixture
def pg_schema() -> Iterator[Schema]:
    """A schema of this test's own on the test server (skips without a server, fails under CI)."""
    with fresh_schema() as schema:
        yield schema


@pytest.fixture
def pg_url(pg_schema: Schema) -> str:
    """``output.checkpoint`` for that schema (the spec adds the job key)."""
    return pg_schema.history_url


@pytest.fixture
def pg_job(tmp_path: Path, sandbox: Sandbox, pg_url: str) -> Callable[..., Path]:
    """``pg_job(n)``: ``n`` contacts in tmp_path and a job for them on ``sandbox`` in ``tmp_path/m`` (or
    ``folder``), its checkpoint in this test's schema."""

    def write(n: int, *, folder: str = "m") -> Path:
        contacts = tmp_path / "contacts.csv"
        make_contacts(n).write_csv(contacts)
        return _job(tmp_path / folder, contacts=contacts, base_url=sandbox.url, checkpoint=pg_url)

    return write


def _job(
    folder: Path, *, contacts: Path, base_url: str, checkpoint: str, job_id: str = "pgjob", send: str = ""
) -> Path:
    """A job file in ``folder`` whose results stay there and whose checkpoint is ``checkpoint``."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "job.toml"
    path.write_text(
        textwrap.dedent(
            f"""
            [job]
            id = "{job_id}"

            [input]
            path = "{contacts}"

            [flow]
            sid = "{FLOW_SID}"
            api = "engagements"
            base_url = "{base_url}"

            [mapping]
            to = "phone"
            from = "+15005550006"

            [mapping.parameters]
            name = "name"

            [output]
            results = "{folder / "results.csv"}"
            checkpoint = "{checkpoint}"
            """
        )
        + f"\n[send]\n{send or FAST_SEND}\n"
    )
    return path


def _raw(checkpoint: str, results: Path, *, job_id: str | None = None) -> dict[str, Any]:
    """A job's table (no [input]) whose checkpoint is ``checkpoint``; with ``job_id``, a [job] id too."""
    raw: dict[str, Any] = {
        "flow": {"sid": FLOW_SID},
        "mapping": {"to": "phone", "from": "+15005550006"},
        "output": {"checkpoint": checkpoint, "results": str(results)},
    }
    return raw | ({"job": {"id": job_id}} if job_id else {})


def _intent(contact: str) -> Intent:
    return Intent(contact=contact, row=1, to=contact, from_="+15005550006", params_hash="h", marker="m")


class TestSpec:
    """What the job file must say for a PostgreSQL checkpoint."""

    def test_job_id_is_required(self, tmp_path: Path) -> None:
        """Without [job] id the job is refused, naming job.id: file stems collide across folders."""
        with pytest.raises(ConfigError, match=r"job\.id"):
            load_spec(raw=_raw("postgresql://db.example/crm", tmp_path / "r.csv"))

    def test_a_password_in_the_url_is_refused(self, tmp_path: Path) -> None:
        """A password in output.checkpoint is refused: it belongs in PGPASSWORD or ~/.pgpass."""
        with pytest.raises(ConfigError, match=r"output\.checkpoint.*PGPASSWORD") as info:
            load_spec(raw=_raw("postgresql://u:secret@db.example/crm", tmp_path / "r.csv", job_id="j"))
        assert "secret" not in str(info.value)

    def test_the_key_is_the_rendered_job_id_and_a_rehearsal_has_its_own(self, tmp_path: Path) -> None:
        """A {date} job id is keyed per period, and the rehearsal's key differs from the real job's."""
        raw = _raw("postgresql://db.example/crm", tmp_path / "{id}.csv", job_id="remind-{date}")
        spec = load_spec(raw=raw).for_period("2026-03-04")
        assert spec.output.checkpoint == "postgresql://db.example/crm#remind-2026-03-04"
        assert spec.rehearsal().output.checkpoint == "postgresql://db.example/crm#remind-2026-03-04.sandbox"


class TestJournal:
    """The journal's layout upgrade (what both backends promise: test_checkpoint_contract.py)."""

    def test_an_ended_sid_is_kept_and_a_layout_1_journal_reads_and_upgrades(
        self, pg_url: str, pg_schema: Schema
    ) -> None:
        """ended_sid survives later outcomes; a journal without the column reads (null) and a run adds it."""
        with open_checkpoint(f"{pg_url}#j", {"f": 1}, TARGET) as cp:
            cp.write_intents([_intent("a")], at="2026-01-01T00:00:00.000Z", twilio_at=None)
            cp.write_outcomes([Outcome("a", RowState.WAITING_ACTIVE, ended_sid="FN1")])
            cp.write_outcomes([Outcome("a", RowState.SENT, sid="FN2")])
            assert cp.journal().row(0, named=True)["ended_sid"] == "FN1"
        conn = pg_schema.conn
        conn.execute(f'ALTER TABLE "{pg_schema.name}".journal DROP COLUMN ended_sid')
        conn.execute(f'UPDATE "{pg_schema.name}".checkpoint_version SET version = 1')  # noqa: S608 - our own schema
        assert read_checkpoint(f"{pg_url}#j").journal.row(0, named=True)["ended_sid"] is None
        with open_checkpoint(f"{pg_url}#j", {"f": 1}, TARGET) as cp:
            assert cp.journal().row(0, named=True)["state"] == "sent"


class TestRunsThroughTheSandbox:
    """A job with its whole state in PostgreSQL runs, resumes, and reports with nothing on disk but its results."""

    def test_a_job_finishes_and_resumes_and_status_and_report_read_the_database(
        self, pg_url: str, sandbox: Sandbox, sandbox_creds: Credentials, tmp_path: Path
    ) -> None:
        """Ten rows, then the rest; each contact once in the ledger; status and report from the database alone."""
        contacts = tmp_path / "in" / "contacts.csv"
        contacts.parent.mkdir()
        make_contacts(30).write_csv(contacts)
        job = _job(tmp_path / "m", contacts=contacts, base_url=sandbox.url, checkpoint=pg_url)
        first = api.run(job, credentials=sandbox_creds, options=RunOptions(limit=10))
        assert first.counts.get("sent") == 10
        second = api.run(job, credentials=sandbox_creds)
        assert second.exit_code == 0 and second.counts["sent"] == 30
        assert max(Counter(e.to for e in sandbox.ledger()).values()) == 1 and len(sandbox.ledger()) == 30
        # Nothing but the job file and its results table on disk: the checkpoint and plan are in the database.
        assert sorted(p.name for p in (tmp_path / "m").iterdir()) == ["job.toml", "results.csv"]
        assert api.status(job).counts["sent"] == 30
        written, counts = api.report(job, output=tmp_path / "again.csv")
        assert counts["sent"] == 30 and counts["pending"] == 0
        table = pl.read_csv(written)
        assert dict(zip(table["to"], table["sid"], strict=True)) == {e.to: e.sid for e in sandbox.ledger()}

    def test_another_list_is_refused_and_sent_only_when_meant(
        self, pg_job: Callable[..., Path], sandbox: Sandbox, sandbox_creds: Credentials, tmp_path: Path
    ) -> None:
        """A list none of whose contacts the job reached: refused before anything is sent (the journal read from
        the database); with `[input] other_lists = true` its 3 contacts are sent."""
        job = pg_job(3)
        assert api.run(job, credentials=sandbox_creds).counts["sent"] == 3
        make_contacts(3, start=700).write_csv(tmp_path / "contacts.csv")
        with pytest.raises(UsageError, match="none of its 3 contacts to send is among the 3 this job already reached"):
            api.run(job, credentials=sandbox_creds)
        assert len(sandbox.ledger()) == 3
        job.write_text(job.read_text().replace("[input]\n", "[input]\nother_lists = true\n", 1))
        assert api.run(job, credentials=sandbox_creds).counts["sent"] == 3
        assert len({e.to for e in sandbox.ledger()}) == 6

    def test_collect_says_in_one_line_that_it_does_not_work_here_yet(
        self, pg_job: Callable[..., Path], sandbox_creds: Credentials, tmp_path: Path
    ) -> None:
        """collect refuses a PostgreSQL checkpoint with a usage error naming the job, and writes no file."""
        job = pg_job(3)
        api.run(job, credentials=sandbox_creds)
        with pytest.raises(UsageError, match="job pgjob: collect does not work with a postgresql:// checkpoint"):
            api.collect(job, credentials=sandbox_creds)
        assert sorted(p.name for p in (tmp_path / "m").iterdir()) == ["job.toml", "results.csv"]

    def test_status_reads_while_a_run_holds_the_job(self, pg_url: str) -> None:
        """While a run holds the lock, a reader sees its journal and that it is live; afterwards (once the server has
        ended the closed session, a moment later), not live."""
        where = f"{pg_url}#j"
        with open_checkpoint(where, {"f": 1}, TARGET) as cp:
            cp.start_run("2026-01-01T00:00:00.000Z", "digest")
            cp.save_plan(pl.DataFrame({"row": [1], "contact": ["a"]}))
            cp.write_intents([_intent("a")], at="2026-01-01T00:00:00.000Z", twilio_at=None)
            view = read_checkpoint(where)
            assert view.live and view.journal["state"].to_list() == ["intent"]
            assert view.plan is not None and view.plan["contact"].to_list() == ["a"]
            assert view.runs.height == 1
        # A run closes its session without asking the server anything more (that could hang on a frozen server);
        # the server releases the lock a moment later, and a reader may see the run live for that moment.
        closed = time.monotonic()
        while read_checkpoint(where).live and time.monotonic() - closed < 2:
            time.sleep(0.01)
        assert not read_checkpoint(where).live
        assert checkpoint_exists(where, plan=True) and not checkpoint_exists(f"{pg_url}#other")


class TestLostSession:
    """A run whose database session ends stops with a clear answer, and the job is free for the next run."""

    def test_a_write_after_the_session_ended_is_exit_75_and_the_job_is_free(
        self, pg_url: str, pg_schema: Schema
    ) -> None:
        """The server ends the run's session: its next intent write raises TryLater naming the cause, and another
        run can take the job at once."""
        where = f"{pg_url}#j"
        with open_checkpoint(where, {"f": 1}, TARGET) as cp:
            query = f'SELECT backend_pid FROM "{pg_schema.name}".leases'  # noqa: S608 - our own schema
            (pid,) = pg_schema.conn.execute(query).fetchone()
            pg_schema.conn.execute("SELECT pg_terminate_backend(%s, 5000)", (pid,))
            with pytest.raises(TryLater, match="lost the connection to the checkpoint's database"):
                cp.write_intents([_intent("a")], at="2026-01-01T00:00:00.000Z", twilio_at=None)
            with open_checkpoint(where, {"f": 1}, TARGET) as other:
                assert other.journal().height == 0


class TestPeriods:
    """A job with a period finds its state in the database as it does in files."""

    def test_status_without_this_period_reads_the_latest_one_of_this_job(self, pg_url: str, tmp_path: Path) -> None:
        """With no state for today, the newest period of *this* job is read: not a rehearsal's, not another job's."""
        job = _job(tmp_path, contacts=tmp_path / "c.csv", base_url="http://127.0.0.1:9", checkpoint=pg_url,
                   job_id="remind-{date}")  # fmt: skip
        spec = api.load_job(job)
        for where in (
            spec.for_period("2026-03-01").output.checkpoint,
            spec.for_period("2026-03-02").output.checkpoint,
            spec.for_period("2026-03-05").rehearsal().output.checkpoint,
            pg_url + "#other-2026-03-09",
        ):
            with open_checkpoint(where, {"f": 1}, TARGET):
                pass
        assert api.load_job(job, latest=True).job.period == "2026-03-02"
        assert api.load_job(job, latest=True, sandbox=True).job.period == "2026-03-05"


class TestOneRunPerJob:
    """One run per job, on any machine; a rehearsal never touches the real job's state."""

    def test_a_second_run_exits_75_at_once_and_sends_nothing(
        self, pg_job: Callable[..., Path], sandbox: Sandbox, sandbox_env: dict[str, str], tmp_path: Path
    ) -> None:
        """While another process holds the job, `run` exits 75 in another folder and the sandbox sees nothing."""
        job = pg_job(5, folder="b")
        spec = api.load_job(job)
        with open_checkpoint(spec.output.checkpoint, {"f": 1}, TARGET):
            started = time.monotonic()
            done = launch.run(
                ["run", str(job)],
                env=os.environ | sandbox_env,
                capture_output=True,
                cwd=tmp_path / "b",
                timeout=60,
            )
            assert time.monotonic() - started < 20
        assert done.returncode == 75, done.stderr.decode()[-2000:]
        assert "another batch-engage process is running this job" in done.stderr.decode()
        assert sandbox.ledger() == []

    def test_a_run_started_while_a_killed_holders_session_ends_takes_the_job(self, pg_job: Callable[..., Path]) -> None:
        """A holder gone without letting go (killed: the server ends its session a moment later) is waited for, not
        called running: a run started in that moment takes the job; one still held past the grace is refused."""
        loc = parse_location(api.load_job(pg_job(5)).output.checkpoint)
        with loc.connect() as gone, loc.connect() as still, loc.connect() as next_run:
            create_tables(gone, loc)
            lock_job(gone, loc)
            write_lease(gone, loc)
            # Its socket closes 0.3 s from now with the lock never released, as a killed process's does.
            threading.Timer(0.3, gone.close).start()
            lock_job(next_run, loc)
            next_run.execute("SELECT pg_advisory_unlock(%s)", (loc.lock_id,))
            lock_job(still, loc)
            write_lease(still, loc)
            asked = time.monotonic()
            with pytest.raises(CheckpointLocked, match="another batch-engage process is running this job"):
                lock_job(next_run, loc)
            assert RELEASE_GRACE <= time.monotonic() - asked < RELEASE_GRACE + 5

    def test_a_rehearsal_keeps_its_state_apart(
        self, pg_job: Callable[..., Path], sandbox: Sandbox, sandbox_creds: Credentials, tmp_path: Path
    ) -> None:
        """The real job's journal is untouched by a rehearsal of the whole list, and the other way round."""
        job = pg_job(12)
        api.run(job, credentials=sandbox_creds, options=RunOptions(limit=4))
        rehearsal = api.load_job(job, sandbox=True)
        assert not checkpoint_exists(rehearsal.output.checkpoint)
        done = launch.run(
            ["run", str(job), "--sandbox", "--rate", "1000"],
            capture_output=True,
            cwd=tmp_path,
            timeout=120,
        )
        assert done.returncode == 0, done.stderr.decode()[-2000:]
        assert read_checkpoint(rehearsal.output.checkpoint).journal.height == 12
        assert read_checkpoint(api.load_job(job).output.checkpoint).journal.height == 4
        assert len(sandbox.ledger()) == 4
        assert sorted(p.name for p in (tmp_path / "m").iterdir()) == ["job.toml", "results.csv", "results.sandbox.csv"]
        assert sorted(p.name for p in tmp_path.iterdir()) == ["contacts.csv", "m"]


def _machines(root: Path, rows: int, sb: Sandbox, url: str, send: str) -> tuple[Path, Path]:
    """Two folders, each with its own copy of the list and its own job file: they share only the URL."""
    jobs = []
    for name in ("a", "b"):
        folder = root / f"machine-{name}"
        folder.mkdir()
        make_contacts(rows).write_csv(folder / "contacts.csv")
        jobs.append(_job(folder, contacts=folder / "contacts.csv", base_url=sb.url, checkpoint=url, send=send))
    return jobs[0], jobs[1]


@pytest.mark.slow
class TestTwoMachines:
    """Processes in different folders with no shared file, only the PostgreSQL URL."""

    ROWS = 600

    def test_kill_9_on_one_machine_and_resume_on_the_other_reaches_everyone_once(
        self, pg_url: str, sandbox_factory: Callable[..., Sandbox], sandbox_env: dict[str, str], tmp_path: Path
    ) -> None:
        """SIGKILLs at random moments, alternating machines, then the other machine finishes: every contact has
        exactly one run in the ledger and the finishing machine's results carry the ledger's SIDs."""
        sb = sandbox_factory(rate_limit=None, latency=0.02, jitter=0.01, active_rule=False, lost_answer_rate=0.05)
        send = "rate = 200\nconcurrency = 8\nreconcile_delay = 0.1\nsettle_after = 1.0"
        machines = _machines(tmp_path, self.ROWS, sb, pg_url, send)
        env = cli_env(sandbox_env)
        kills = kill_9_at_random(
            lambda attempt: start_run(machines[attempt % 2], env),
            sb,
            attempts=8,
            until_runs=self.ROWS - 20,
            seed=1125,
            pause=(0.2, 1.5),
            new_runs=(5, 60),
        )
        assert kills >= 5
        last = machines[1]
        final = launch.run(["run", str(last)], env=env, capture_output=True, cwd=last.parent)
        assert final.returncode == 0, final.stderr.decode()[-6000:]
        ledger = [e for e in sb.ledger() if e.source == "rest"]
        per_contact = Counter(e.to for e in ledger)
        assert len(per_contact) == self.ROWS
        assert max(per_contact.values()) == 1
        table = pl.read_csv(last.parent / "results.csv")
        assert table["status"].to_list() == ["sent"] * self.ROWS
        assert dict(zip(table["to"], table["sid"], strict=True)) == {e.to: e.sid for e in ledger}

    def test_a_frozen_machine_loses_the_job_to_the_other_after_one_lease(
        self,
        pg_url: str,
        sandbox_factory: Callable[..., Sandbox],
        sandbox_env: dict[str, str],
        tmp_path: Path,
        capsys: pytest.CaptureFixture[str],
    ) -> None:
        """A run frozen mid-send (SIGSTOP: its socket stays open, its kernel still answers) keeps the job while
        its lease is fresh; after one lease the other machine takes it over and finishes; the frozen one,
        woken up, sends nothing more: nobody twice."""
        sb = sandbox_factory(rate_limit=None, latency=0.02, active_rule=False)
        # The second machine's first try must read the lease before it ages out (the last heartbeat may be a
        # quarter of a lease old when the holder freezes). It runs in this process, so no Python start-up
        # comes first: a loaded CI machine has taken over 3 s for that alone.
        lease = 5
        machines = _machines(
            tmp_path, 200, sb, f"{pg_url}&lease={lease}", "rate = 100\nconcurrency = 4\nsettle_after = 1.0"
        )
        env = cli_env(sandbox_env)
        frozen = start_run(machines[0], env)
        try:
            deadline = time.monotonic() + 30
            while ledger_length(sb) < 20 and time.monotonic() < deadline:
                time.sleep(0.01)
            frozen.send_signal(signal.SIGSTOP)
            stopped = time.monotonic()
            # sandbox_env has put the credentials in this process's environment too.
            assert cli(["run", str(machines[1])], capsys)[0] == 75, "a fresh lease must keep the job with its holder"
            while time.monotonic() - stopped < lease:
                time.sleep(0.05)
            takeover = launch.run(
                ["run", str(machines[1])],
                env=env,
                capture_output=True,
                cwd=machines[1].parent,
                timeout=120,
            )
            assert takeover.returncode == 0, takeover.stderr.decode()[-4000:]
            before = len(sb.ledger())
            frozen.send_signal(signal.SIGCONT)
            woken = frozen.wait(timeout=60)
            assert woken != 0
            assert len(sb.ledger()) == before
        finally:
            if frozen.poll() is None:
                frozen.send_signal(signal.SIGKILL)
                frozen.wait(timeout=10)
            assert frozen.stderr is not None
            frozen.stderr.close()
        per_contact = Counter(e.to for e in sb.ledger() if e.source == "rest")
        assert len(per_contact) == 200 and max(per_contact.values()) == 1


# Layout 1 as every release has made it ("!" marks NOT NULL): a schema made by any of them serves this one.
# Layout 2 appends the journal's ended_sid (nullable), added to a layout-1 table when a run opens it.
LAYOUT_1_COLUMNS = {
    "checkpoint_version": "version integer!",
    "events": "job text!, run bigint!, second bigint!, requests integer!, ok integer!, rate_limited integer!, "
    "retries integer!, lookups integer!, pacer_rate double precision!",
    "journal": "job text!, contact text!, row bigint!, to_addr text!, from_addr text!, params_hash text, marker text, "
    "input text, state text!, sid text, http_status integer, error_code integer, error_message text, "
    "attempts integer!, intent_at text, intent_twilio_at text, completed_at text"
    # Added in place since (nullable, at the end): a schema made by an older release gains them on open.
    ", ended_sid text, variant text",
    "leases": "job text!, backend_pid integer!, holder text!, heartbeat_at timestamp with time zone!",
    "meta": "job text!, key text!, value text!",
    "plans": "job text!, saved_at text!, plan bytea!",
    "runs": "id bigint!, job text!, started_at text!, stopped_at text, exit_code integer, input text",
}
LAYOUT_1_INDEXES = [
    "CREATE UNIQUE INDEX events_pkey ON S.events USING btree (job, run, second)",
    "CREATE INDEX journal_open ON S.journal USING btree (job, state) "
    "WHERE (state = ANY (ARRAY['intent'::text, 'uncertain'::text, 'pending'::text]))",
    "CREATE UNIQUE INDEX journal_pkey ON S.journal USING btree (job, contact)",
    "CREATE UNIQUE INDEX leases_pkey ON S.leases USING btree (job)",
    "CREATE UNIQUE INDEX meta_pkey ON S.meta USING btree (job, key)",
    "CREATE UNIQUE INDEX plans_pkey ON S.plans USING btree (job)",
    "CREATE INDEX runs_job ON S.runs USING btree (job)",
    "CREATE UNIQUE INDEX runs_pkey ON S.runs USING btree (id)",
]


class TestLayout:
    """The tables are layout 1's, to the column, with the nullable journal columns added since appended."""

    def test_a_new_schema_has_the_tables_layout_1_always_had(self, pg_url: str, pg_schema: Schema) -> None:
        """Every column (type, NOT NULL, order), key and index is the one layout 1 has always had."""
        with open_checkpoint(f"{pg_url}#j", {"f": 1}, TARGET):
            pass
        columns = pg_schema.conn.execute(
            "SELECT table_name, column_name, data_type, is_nullable FROM information_schema.columns "
            "WHERE table_schema = %s ORDER BY table_name, ordinal_position",
            (pg_schema.name,),
        ).fetchall()
        found: dict[str, list[str]] = {}
        for table, column, kind, nullable in columns:
            found.setdefault(table, []).append(f"{column} {kind}{'!' if nullable == 'NO' else ''}")
        assert {table: ", ".join(cols) for table, cols in found.items()} == LAYOUT_1_COLUMNS
        indexes = pg_schema.conn.execute(
            "SELECT indexdef FROM pg_indexes WHERE schemaname = %s ORDER BY indexname", (pg_schema.name,)
        ).fetchall()
        assert [d.replace(f"{pg_schema.name}.", "S.") for (d,) in indexes] == LAYOUT_1_INDEXES


class TestDroppedTable:
    @pytest.mark.parametrize("table", ["journal", "meta", "events"])
    def test_a_dropped_checkpoint_table_is_one_line_exit_2_for_every_later_command_and_never_made_again(
        self,
        pg_job: Callable[..., Path],
        pg_schema: Schema,
        sandbox: Sandbox,
        sandbox_env: dict[str, str],
        capsys: pytest.CaptureFixture[str],
        table: str,
    ) -> None:
        """The journal (or another table) dropped after a run: every later run, status, report and validate exits 2
        in one line naming the table, nobody is sent to again, and the table is not made again (every later run was
        a psycopg UndefinedTable traceback, exit 1; made again, it would send to everyone afresh)."""
        job = pg_job(5)
        code, _, err = cli(["run", str(job)], capsys)
        assert code == 0, err
        pg_schema.execute(f"DROP TABLE {{schema}}.{table}")
        for command in ("run", "run", "status", "report", "validate"):
            code, _, err = cli([command, str(job)], capsys)
            assert code == 2, err
            assert err.count("\n") == 1 and f"the checkpoint table {pg_schema.name}.{table} is missing" in err
            assert "?schema=" in err
        assert len(sandbox.ledger()) == 5
        gone = pg_schema.conn.execute("SELECT to_regclass(%s)", (f'"{pg_schema.name}".{table}',)).fetchone()
        assert gone == (None,)


class TestAddedColumns:
    """A schema made before the journal's ``variant`` column still serves: read as is, given the column on open."""

    def test_a_schema_without_the_variant_column_is_read_then_gains_it_on_open(
        self, pg_url: str, pg_schema: Schema
    ) -> None:
        """Read-only, lines show a null variant; the next open adds the column, and intents record their variant."""
        location = f"{pg_url}#j"
        with open_checkpoint(location, {"f": 1}, TARGET) as cp:
            cp.write_intents(
                [Intent("+14155550100", 1, "+14155550100", "+1500", "h", "t:m")],
                at="2026-01-01T00:00:00.000Z",
                twilio_at=None,
            )
        pg_schema.conn.execute(f"ALTER TABLE {pg_schema.name}.journal DROP COLUMN variant")
        assert read_checkpoint(location).journal["variant"].to_list() == [None]
        with open_checkpoint(location, {"f": 1}, TARGET) as cp:
            cp.write_intents(
                [Intent("+14155550101", 2, "+14155550101", "+1500", "h", "t:n", "B")],
                at="2026-01-01T00:00:01.000Z",
                twilio_at=None,
            )
        assert read_checkpoint(location).journal["variant"].to_list() == [None, "B"]
