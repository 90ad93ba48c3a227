"""The contact history in PostgreSQL: the SQLite store's behaviour, shared by processes on any machine."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import polars as pl
import pytest
from psycopg import sql

from batch_engage.errors import ConfigError
from batch_engage.history.postgres import SCHEMA_VERSION, PgHistory
from batch_engage.history.store import History, job_of, open_history, owner
from batch_engage.job import load_spec
from batch_engage.job.sections import parse_cap
from batch_engage.sandbox import Sandbox

from conftest import FLOW_SID, REPO, make_contacts
from histories import OTHER_FLOW, import_stats_and_cap
from killing import cli_env, run_at_once
from pg import Schema, fresh_schema


@pytest.fixture
def pg() -> Iterator[Schema]:
    """A fresh, empty schema on the test server."""
    with fresh_schema() as schema:
        yield schema


class TestStore:
    def test_open_history_picks_the_backend_by_scheme(self, pg: Schema, tmp_path: Path) -> None:
        """A postgresql:// path opens PostgreSQL, tables created in the named schema; any other path a SQLite file."""
        with open_history(pg.history_url) as store:
            assert isinstance(store, PgHistory)
        version = pg.conn.execute(f"SELECT version FROM {pg.name}.version").fetchall()  # noqa: S608 - our own schema
        assert version == [(SCHEMA_VERSION,)]
        with open_history(tmp_path / "h.sqlite") as store:
            assert isinstance(store, History)

    def test_opening_twice_keeps_one_version_row_and_the_contacts(self, pg: Schema) -> None:
        """Tables are created on first use only; a second opening finds what the first recorded."""
        with open_history(pg.history_url) as store:
            store.record([("+14155550100", FLOW_SID, "FN1", 1_800_000_000.0)])
        with open_history(pg.history_url) as store:
            assert store.recent_addresses(1e12) == {"+14155550100"}
        assert pg.conn.execute(f"SELECT count(*) FROM {pg.name}.version").fetchone() == (1,)  # noqa: S608

    def test_a_user_granted_only_the_tables_can_use_an_existing_history(self, pg: Schema) -> None:
        """Once created, the history needs no CREATE privilege: a job's user granted the tables alone can claim;
        where it may not create one, a one-line error names the schema."""
        PgHistory(pg.history_url).close()
        role = sql.Identifier(f"r_{pg.name}")
        grants = [
            "CREATE ROLE {role} LOGIN",
            "GRANT USAGE ON SCHEMA {schema} TO {role}",
            "GRANT SELECT, INSERT, UPDATE, DELETE ON {schema}.contacts TO {role}",
            "GRANT USAGE ON SEQUENCE {schema}.contacts_id_seq TO {role}",
            "GRANT SELECT ON {schema}.version TO {role}",
        ]
        try:
            for grant in grants:
                pg.conn.execute(sql.SQL(grant).format(role=role, schema=sql.Identifier(pg.name)))  # type: ignore[arg-type]
            url = urlsplit(pg.history_url)
            as_role = urlunsplit(url._replace(netloc=url.netloc.replace(f"{url.username}@", f"r_{pg.name}@")))
            with open_history(as_role) as store:
                assert store.claim("+14155550100", FLOW_SID, "jobA#1", parse_cap("1 per 1d", key="cap"), None) is None
            other = urlunsplit(urlsplit(as_role)._replace(query=f"schema=s_{pg.name}"))
            with pytest.raises(ConfigError, match=r"^history\.path: cannot use schema s_\w+ on .*permission denied"):
                open_history(other)
        finally:
            pg.conn.execute(sql.SQL("DROP OWNED BY {}").format(role))
            pg.conn.execute(sql.SQL("DROP ROLE {}").format(role))

    def test_a_newer_schema_version_is_refused(self, pg: Schema) -> None:
        """A schema written by a later batch-engage: one line saying to upgrade, not a misread table."""
        PgHistory(pg.history_url).close()
        pg.execute("UPDATE {schema}.version SET version = 99")
        with pytest.raises(ConfigError, match=r"^history\.path: schema t_\w+ on .* newer batch-engage.*upgrade"):
            PgHistory(pg.history_url)


class TestUrl:
    def test_the_url_can_come_from_an_environment_variable(self, pg: Schema, monkeypatch: pytest.MonkeyPatch) -> None:
        """`history.path = "env:NAME"` stays a reference in the job (not a file path) and opens NAME's database."""
        raw = {
            "flow": {"sid": FLOW_SID},
            "mapping": {"to": "phone", "from": "+15005550006"},
            "history": {"path": "env:CAMPAIGN_HISTORY", "cap": "1 per 7d"},
        }
        spec = load_spec(raw=raw)
        assert spec.history.path == "env:CAMPAIGN_HISTORY"
        monkeypatch.setenv("CAMPAIGN_HISTORY", pg.history_url)
        with open_history(spec.history.path) as store:
            assert isinstance(store, PgHistory) and store.schema == pg.name

    def test_a_password_in_the_url_is_refused(self) -> None:
        """The history URL follows input.uri's rule: the password comes from PGPASSWORD or ~/.pgpass."""
        with pytest.raises(ConfigError, match=r"^history\.path: holds a password.*PGPASSWORD"):
            open_history("postgresql://u:secret@127.0.0.1/test")

    def test_an_unreachable_server_is_named(self) -> None:
        """Nobody listening: a one-line ConfigError naming history.path and host:port."""
        import socket

        # Bound but not listening while the test runs: refused, and no parallel test can take the port.
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
            with pytest.raises(
                ConfigError, match=rf"^history\.path: cannot reach PostgreSQL at 127\.0\.0\.1:{port} \("
            ):
                open_history(f"postgresql://postgres@127.0.0.1:{port}/test")

    def test_a_schema_that_is_not_an_identifier_is_refused(self) -> None:
        """`?schema=` names one plain schema; anything else is refused before connecting."""
        with pytest.raises(ConfigError, match=r"^history\.path: schema 'a;drop' is not a plain identifier"):
            open_history("postgresql://postgres@127.0.0.1/test?schema=a;drop")

    def test_owner_and_job_of_round_trip(self) -> None:
        """The job part of an owner is the job, even when the job (a path) holds `#`; an item may not."""
        assert job_of(owner("/jobs/a#b.checkpoint", "17")) == "/jobs/a#b.checkpoint"
        with pytest.raises(ValueError, match="may not hold"):
            owner("job", "a#b")


_CLAIMER = textwrap.dedent(
    """
    import json, sys, threading
    from batch_engage.history.store import open_history, owner
    from batch_engage.job import load_spec
    from batch_engage.job.sections import parse_cap
    url, job = sys.argv[1], sys.argv[2]
    cap = parse_cap("1 per 7d", key="cap")
    contacts = [f"+1415555{i:04d}" for i in range(200)]
    won = []
    with open_history(url) as store:
        print("ready", flush=True)
        sys.stdin.readline()  # the parent says go once both processes are connected
        def claim(part):
            for to in part:
                if store.claim(to, "FW" + "0" * 32, owner(job, to), cap, None) is None:
                    won.append(to)
        threads = [threading.Thread(target=claim, args=(contacts[i::4],)) for i in range(4)]
        for t in threads: t.start()
        for t in threads: t.join()
    print(json.dumps(won))
    """
)


class TestConcurrency:
    def test_two_processes_claiming_the_same_contacts_get_each_once_between_them(
        self, pg: Schema, tmp_path: Path
    ) -> None:
        """200 shared contacts, `1 per 7d`, two processes of four threads each claiming all: every contact once."""
        PgHistory(pg.history_url).close()  # tables exist before the race, as in a long-lived history
        procs = [
            subprocess.Popen(
                [sys.executable, "-c", _CLAIMER, pg.history_url, job],
                cwd=REPO,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for job in ("jobA", "jobB")
        ]
        for p in procs:
            assert p.stdout is not None
            assert p.stdout.readline() == "ready\n"
        for p in procs:
            assert p.stdin is not None
            p.stdin.write("go\n")
            p.stdin.flush()
        won = []
        for p in procs:
            out, err = p.communicate(timeout=120)
            assert p.returncode == 0, err[-2000:]
            won.append(json.loads(out))
        claimed = Counter(won[0] + won[1])
        assert len(claimed) == 200
        assert max(claimed.values()) == 1
        rows = pg.conn.execute(f"SELECT count(*), count(DISTINCT to_addr) FROM {pg.name}.contacts").fetchone()  # noqa: S608
        assert rows == (200, 200)

    def test_two_concurrent_jobs_reach_each_shared_contact_once(
        self,
        pg: Schema,
        sandbox_factory: Callable[..., Sandbox],
        job_for: Callable[..., Path],
        tmp_path: Path,
        sandbox_env: dict[str, str],
    ) -> None:
        """Two "machines" (own folders, no shared file, only the PostgreSQL URL for state and history), two jobs on
        two flows over overlapping lists, `cap = "1 per 7d"`, started at the same moment: nobody twice."""
        sb = sandbox_factory(rate_limit=None, latency=0.01, active_rule=False)
        jobs = []
        for name, start, flow in (("a", 100, FLOW_SID), ("b", 120, OTHER_FLOW)):
            machine = tmp_path / f"machine-{name}"
            machine.mkdir()
            path = machine / "contacts.csv"
            make_contacts(40, start=start).write_csv(path)
            extra = f'[job]\nid = "job-{name}"\n[history]\npath = "{pg.history_url}"\ncap = "1 per 7d"\n'
            job = job_for(sb, input_path=path, name=name, extra=extra, send="rate = 100\nconcurrency = 4")
            text = job.read_text().replace(FLOW_SID, flow)
            text = text.replace(
                f'checkpoint = "{tmp_path / (name + ".checkpoint")}"', f'checkpoint = "{pg.history_url}"'
            )
            text = text.replace(str(tmp_path / f"{name}.results.csv"), str(machine / "results.csv"))
            (machine / "job.toml").write_text(text)
            job.unlink()
            jobs.append(machine / "job.toml")
        run_at_once(jobs, cli_env(sandbox_env))
        per_contact = Counter(e.to for e in sb.ledger())
        assert len(per_contact) == 60
        assert max(per_contact.values()) == 1
        tables = [pl.read_csv(j.parent / "results.csv") for j in jobs]
        assert sum(t.filter(pl.col("status") == "capped").height for t in tables) == 20
        assert {p.name for j in jobs for p in j.parent.iterdir()} == {"contacts.csv", "job.toml", "results.csv"}


class TestHistoryCommands:
    def test_import_and_stats_on_postgresql(
        self, pg: Schema, sandbox: Sandbox, job_for: Callable[..., Path], capsys: pytest.CaptureFixture[str]
    ) -> None:
        """`history import` / `history stats` with `--history postgresql://...`; a capped job then skips those five."""
        import_stats_and_cap(pg.history_url, sandbox, job_for, capsys)
