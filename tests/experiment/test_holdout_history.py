"""A holdout that counts against the shared history (``holdout_counts = true``): whose claims they are, and when."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest

from batch_engage import Credentials, load_spec, run
from batch_engage.sandbox import Sandbox

from conftest import cli, make_contacts

CAPPED_HOLDOUT = """
[history]
path = "{history}"
cap = "1 per 7d"

[experiment]
salt = "s1"
holdout = {share}
holdout_counts = true

[[experiment.variants]]
name = "A"
"""


@pytest.fixture
def holdout_job(tmp_path: Path, write_job: Callable[..., Path], sandbox: Sandbox) -> Callable[[float], Path]:
    """``holdout_job(share)``: 40 contacts, an experiment holding out ``share`` that counts, a cap of 1 per 7d."""
    path = tmp_path / "contacts.csv"
    make_contacts(40).write_csv(path)
    history = tmp_path / "history.db"

    def write(share: float) -> Path:
        extra = CAPPED_HOLDOUT.format(history=history, share=share)
        return write_job(input_path=path, base_url=sandbox.url, api="executions", extra=extra)

    return write


def _claimed_at(history: Path) -> dict[str, float]:
    with sqlite3.connect(history) as conn:
        return dict(conn.execute("SELECT to_addr, at FROM contacts WHERE sid IS NULL").fetchall())


def test_a_job_is_not_capped_by_its_own_holdouts_claims_when_they_leave_the_holdout(
    holdout_job: Callable[[float], Path], sandbox: Sandbox, sandbox_creds: Credentials
) -> None:
    """What a user notices: after `holdout = 0.0`, the former holdout contacts are sent, not `capped` "contacted
    at … (run in progress)" by the job's own holdout (nobody was contacted)."""
    first = run(holdout_job(0.5), credentials=sandbox_creds)
    held = first.counts["holdout"]
    assert held > 0 and first.counts["sent"] == 40 - held
    second = run(holdout_job(0.0), credentials=sandbox_creds)
    assert second.exit_code == 0
    assert second.counts.get("capped", 0) == 0 and second.counts["sent"] == 40
    assert len({e.to for e in sandbox.ledger()}) == 40


def test_a_rerun_of_a_finished_job_neither_moves_its_holdouts_claims_nor_calls_them_undone(
    holdout_job: Callable[[float], Path],
    sandbox_creds: Credentials,
    sandbox_env: dict[str, str],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """What a user notices: a cron re-running a finished job keeps the held-out people's "contacted at" where
    the first run put it (they are not capped for other jobs forever), and says all 40 rows were done."""
    job = holdout_job(0.5)
    first = run(job, credentials=sandbox_creds)
    claimed = _claimed_at(tmp_path / "history.db")
    assert len(claimed) == first.counts["holdout"] > 0
    code, out, err = cli(["run", str(job)], capsys)
    assert code == 0, err
    assert "all 40 rows were done by earlier runs" in out
    assert _claimed_at(tmp_path / "history.db") == claimed


def test_a_daily_jobs_holdout_is_claimed_again_each_day_and_once_a_day(
    tmp_path: Path, write_job: Callable[..., Path], sandbox: Sandbox, sandbox_creds: Credentials
) -> None:
    """What a user notices: a daily job holding people out claims them on each day it holds them (the first day's
    claim stood for every later day, so once the cap's window had passed other jobs reached people it still held
    out); a rerun the same day adds nothing."""
    path = tmp_path / "contacts.csv"
    make_contacts(40).write_csv(path)
    history = tmp_path / "history.db"
    extra = CAPPED_HOLDOUT.format(history=history, share=0.5) + '\n[job]\nid = "h-{date}"\n'
    job = write_job(input_path=path, base_url=sandbox.url, api="executions", extra=extra)
    job.write_text(job.read_text().replace("job.results.csv", "{id}.results.csv").replace("job.checkpoint", "{id}.c"))

    def claims() -> dict[str, int]:
        with sqlite3.connect(history) as conn:
            rows = conn.execute("SELECT to_addr, count(*) FROM contacts WHERE sid IS NULL GROUP BY 1").fetchall()
        return dict(rows)

    monday = run(load_spec(job, now=datetime(2026, 11, 23, 9, 0, tzinfo=UTC)), credentials=sandbox_creds)
    held = monday.counts["holdout"]
    assert held > 0 and set(claims().values()) == {1}
    tuesday = load_spec(job, now=datetime(2026, 11, 24, 9, 0, tzinfo=UTC))
    assert run(tuesday, credentials=sandbox_creds).counts["holdout"] == held
    assert len(claims()) == held and set(claims().values()) == {2}
    run(tuesday, credentials=sandbox_creds)
    assert set(claims().values()) == {2}
