"""A shared history tells jobs apart by their id as written and the place holding their state, not by a file name."""

from __future__ import annotations

import sqlite3
import threading
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import polars as pl
import pytest

import batch_engage
from batch_engage.credentials import Credentials
from batch_engage.history.store import History, owner
from batch_engage.job import history_identity, load_spec
from batch_engage.job.sections import parse_cap
from batch_engage.sandbox import Sandbox

from conftest import FLOW_SID, make_contacts

CAP = 'cap = "1 per 7d"'


def _job(folder: Path, history: Path, contacts: Path, base_url: str, *, job_id: str | None = None) -> Path:
    """``<folder>/job.toml``: its checkpoint and results beside it, the shared history elsewhere."""
    folder.mkdir(parents=True, exist_ok=True)
    head = f'[job]\nid = "{job_id}"\n\n' if job_id else ""
    path = folder / "job.toml"
    path.write_text(
        head
        + f'[input]\npath = "{contacts}"\n\n[flow]\nsid = "{FLOW_SID}"\nbase_url = "{base_url}"\n\n'
        + '[mapping]\nto = "phone"\nfrom = "+15005550006"\n\n'
        + "[send]\nrate = 200\nconcurrency = 4\nreconcile_delay = 0.0\n\n"
        + f'[history]\npath = "{history}"\n{CAP}\n'
    )
    return path


@pytest.fixture
def capped_job(tmp_path: Path, sandbox: Sandbox) -> Callable[..., Path]:
    """``capped_job(n)``: ``n`` contacts and a job for them on ``sandbox`` in ``tmp_path/a`` (or ``folder``),
    capped by the history ``tmp_path/h.sqlite``."""

    def write(n: int, *, folder: str = "a", job_id: str | None = None) -> Path:
        contacts = tmp_path / "c.csv"
        make_contacts(n).write_csv(contacts)
        return _job(tmp_path / folder, tmp_path / "h.sqlite", contacts, sandbox.url, job_id=job_id)

    return write


class TestIdentity:
    def test_jobs_with_the_same_file_name_in_two_folders_are_two_jobs(self, tmp_path: Path) -> None:
        """a/job.toml and b/job.toml both default to the id `job`, yet their checkpoints' folders differ."""
        raw = {"flow": {"sid": FLOW_SID}, "mapping": {"to": "phone", "from": "+15005550006"}}
        a = load_spec(raw=raw | {"output": {"checkpoint": str(tmp_path / "a" / "job.checkpoint")}})
        b = load_spec(raw=raw | {"output": {"checkpoint": str(tmp_path / "b" / "job.checkpoint")}})
        assert a.job.id == b.job.id == "job"
        assert history_identity(a) != history_identity(b)
        assert history_identity(a) == f"job@{(tmp_path / 'a').resolve()}"

    def test_every_period_of_a_job_is_one_job(self, tmp_path: Path) -> None:
        """A job with {date} in its id is the same job on every day: the id as written, before it is filled in."""
        raw = {
            "job": {"id": "daily-{date}"},
            "flow": {"sid": FLOW_SID},
            "mapping": {"to": "phone", "from": "+15005550006"},
            "output": {"checkpoint": str(tmp_path / "{id}" / "x.checkpoint")},
        }
        spec = load_spec(raw=raw)
        monday, tuesday = spec.for_period("2026-03-02"), spec.for_period("2026-03-03")
        assert monday.output.checkpoint != tuesday.output.checkpoint
        assert history_identity(monday) == history_identity(tuesday) == history_identity(spec)
        assert history_identity(monday).startswith("daily-{date}@")

    def test_a_postgresql_checkpoints_job_is_named_by_its_server_database_and_schema(self) -> None:
        """The place of a PostgreSQL checkpoint is host, port, database and schema: another schema is another job."""
        raw = {"job": {"id": "news"}, "flow": {"sid": FLOW_SID}, "mapping": {"to": "phone", "from": "+15005550006"}}
        url = "postgresql://db.example:6543/campaigns?schema=team_a"
        a = load_spec(raw=raw | {"output": {"checkpoint": url}})
        b = load_spec(raw=raw | {"output": {"checkpoint": url.replace("team_a", "team_b")}})
        assert history_identity(a) == "news@postgresql://db.example:6543/campaigns?schema=team_a"
        assert history_identity(a) != history_identity(b)


class TestSharedHistory:
    def test_two_jobs_named_job_in_two_folders_running_at_once_reach_each_contact_once(
        self, sandbox_factory: Callable[..., Sandbox], tmp_path: Path, sandbox_creds: Credentials
    ) -> None:
        """a/job.toml and b/job.toml, one SQLite history with a 1-per-7-days cap, overlapping lists, run at once."""
        sb = sandbox_factory(rate_limit=None, latency=0.01, active_rule=False)
        history = tmp_path / "contact-history.sqlite"
        jobs = []
        for name, start in (("a", 100), ("b", 120)):
            contacts = tmp_path / f"{name}.csv"
            make_contacts(40, start=start).write_csv(contacts)
            jobs.append(_job(tmp_path / name, history, contacts, sb.url))
        barrier = threading.Barrier(2)
        results: dict[str, batch_engage.RunResult] = {}
        failures: list[BaseException] = []

        def run(job: Path) -> None:
            barrier.wait()
            try:
                results[job.parent.name] = batch_engage.run(job, credentials=sandbox_creds)
            except BaseException as exc:  # handed to the test's thread
                failures.append(exc)

        threads = [threading.Thread(target=run, args=(job,)) for job in jobs]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
        assert not failures
        per_contact = Counter(entry.to for entry in sb.ledger())
        assert len(per_contact) == 60
        assert max(per_contact.values()) == 1
        assert sum(r.counts.get("capped", 0) for r in results.values()) == 20

    def test_a_restarted_job_is_not_held_back_by_its_own_earlier_claims(
        self, capped_job: Callable[..., Path], sandbox: Sandbox, sandbox_creds: Credentials
    ) -> None:
        """`--restart --yes` is the same job: its earlier claims don't cap it, every contact is sent to again."""
        job = capped_job(10)
        assert batch_engage.run(job, credentials=sandbox_creds).counts["sent"] == 10
        sandbox.end_all_runs()
        options = batch_engage.RunOptions(restart=True, yes=True)
        assert batch_engage.run(job, credentials=sandbox_creds, options=options).counts["sent"] == 10
        assert len(sandbox.ledger()) == 20

    def test_claims_written_under_the_bare_job_id_count_as_another_jobs(
        self, capped_job: Callable[..., Path], tmp_path: Path, sandbox_creds: Credentials
    ) -> None:
        """A history from before (owners `<id>#<contact>`) is not migrated: those contacts cap every job, safely."""
        job = capped_job(3)
        with History(tmp_path / "h.sqlite") as store:
            store.claim(
                "+14155550100", FLOW_SID, owner("job", "+14155550100"), parse_cap("1 per 7d", key="history.cap"), None
            )
            store.settle(owner("job", "+14155550100"), "FN" + "0" * 32)
        result = batch_engage.run(job, credentials=sandbox_creds)
        assert result.counts == {"sent": 2, "capped": 1} | {k: 0 for k in result.counts if k not in ("sent", "capped")}
        capped = result.results.filter(pl.col("status") == "capped")
        assert capped["to"].to_list() == ["+14155550100"]

    def test_a_job_upgraded_mid_campaign_keeps_showing_the_runs_it_made(
        self, capped_job: Callable[..., Path], tmp_path: Path, sandbox: Sandbox, sandbox_creds: Credentials
    ) -> None:
        """Its old claims (bare id) cap it, yet a contact its checkpoint reached stays `sent`, not `capped`."""
        job = capped_job(6)
        assert (
            batch_engage.run(job, credentials=sandbox_creds, options=batch_engage.RunOptions(limit=3)).counts["sent"]
            == 3
        )
        with sqlite3.connect(
            tmp_path / "h.sqlite"
        ) as conn:  # as the previous version wrote them: owner `job#<contact>`
            conn.execute("UPDATE contacts SET owner = 'job#' || substr(owner, instr(owner, '#') + 1)")
        result = batch_engage.run(job, credentials=sandbox_creds)
        assert result.results["status"].to_list() == ["sent"] * 6
        assert len(sandbox.ledger()) == 6

    def test_two_jobs_with_different_ids_in_one_folder_are_two_jobs(
        self, capped_job: Callable[..., Path], sandbox: Sandbox, sandbox_creds: Credentials
    ) -> None:
        """Two ids whose checkpoints share a folder cap each other: the second job reaches nobody the first did."""
        first = capped_job(5, folder="x", job_id="first")
        second = first.with_name("second.toml")
        second.write_text(first.read_text().replace('id = "first"', 'id = "second"'))
        assert batch_engage.run(first, credentials=sandbox_creds).counts["sent"] == 5
        assert batch_engage.run(second, credentials=sandbox_creds).counts["capped"] == 5
        assert len(sandbox.ledger()) == 5


@pytest.mark.parametrize("job_id", ["job", "news-{date}"])
def test_an_identity_never_holds_a_secret(tmp_path: Path, job_id: str) -> None:
    """The identity is written into the history: it names places, never credentials."""
    raw = {"job": {"id": job_id}, "flow": {"sid": FLOW_SID}, "mapping": {"to": "phone", "from": "+15005550006"}}
    spec = load_spec(raw=raw | {"output": {"checkpoint": "postgresql://app@db.example/c#{id}"}})
    assert "app@" not in history_identity(spec)
    assert history_identity(spec).endswith("@postgresql://db.example:5432/c?schema=batch_engage")
