"""Crash safety: SIGKILL the CLI at random moments, resume, and count runs in the sandbox's ledger."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from pathlib import Path

import polars as pl
import pytest

from batch_engage.sandbox import Sandbox

from conftest import REPO, cli, make_contacts
from killing import cli_env, kill_9_at_random, ledger_length, start_run

ROWS = 300


@pytest.mark.slow
def test_kill_9_at_random_moments_never_sends_twice_and_finishes(
    sandbox_factory: Callable[..., Sandbox],
    write_job: Callable[..., Path],
    tmp_path: Path,
    sandbox_env: dict[str, str],
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Seven SIGKILLs (during start-up, sending and reconciling), then the same command finishes:
    every contact has exactly one run in the ledger and the results table's SIDs are the ledger's."""
    # No active-run rule: nothing on Studio's side would stop a duplicate, only the checkpoint does.
    sb = sandbox_factory(rate_limit=None, latency=0.02, jitter=0.01, active_rule=False, lost_answer_rate=0.05)
    path = tmp_path / "contacts.csv"
    make_contacts(ROWS).write_csv(path)
    job = write_job(
        input_path=path, base_url=sb.url, send="rate = 150\nconcurrency = 8\nreconcile_delay = 0.1\nsettle_after = 1.0"
    )
    env = cli_env(sandbox_env)
    kills = kill_9_at_random(
        lambda _: start_run(job, env, cwd=REPO),
        sb,
        attempts=7,
        until_runs=ROWS - 10,
        seed=1124,
        pause=(0.05, 1.2),
        new_runs=(3, 40),
        within=20,
    )
    # Each assertion says what it saw: a failure of this test is worth reading the first time it happens.
    assert kills >= 5, f"{kills} kills before the ledger held {ROWS - 10} runs ({ledger_length(sb)} now)"
    # Only the killed runs need processes of their own: the last runs in this one (sandbox_env has put the
    # credentials in its environment).
    code, _, err = cli(["run", str(job)], capsys)
    assert code == 0, err[-6000:]
    # Runs this job created (other senders' runs are Studio's business, never a row's).
    ledger = [e for e in sb.ledger() if e.source == "rest"]
    per_contact = Counter(e.to for e in ledger)
    twice = {to: [e.sid for e in ledger if e.to == to] for to, n in per_contact.items() if n > 1}
    assert not twice, f"contacts with more than one run: {twice}"
    assert len(per_contact) == ROWS, f"{ROWS - len(per_contact)} contacts never reached"
    table = pl.read_csv(job.parent / "job.results.csv")
    assert table["status"].to_list() == ["sent"] * ROWS, dict(Counter(table["status"].to_list()))
    assert dict(zip(table["to"], table["sid"])) == {e.to: e.sid for e in ledger}
