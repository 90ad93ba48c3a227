"""Two variants on two Flows: each Flow gets only its variant's contacts, also across kill -9 and a resume."""

from __future__ import annotations

import subprocess
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import launch
import polars as pl
import pytest
from launch import Running

from batch_engage.sandbox import Sandbox

from conftest import FLOW_SID, REPO, cli, make_contacts
from killing import cli_env, kill_9_when, ledger_length

FLOW_B = "FW" + "b" * 32
ROWS = 300
TWO_FLOWS = f"""
[experiment]
salt = "two-flows"
holdout = 0.1

[[experiment.variants]]
name = "A"

[[experiment.variants]]
name = "B"
flow = "{FLOW_B}"
"""


def _start(job: Path, env: dict[str, str]) -> Running:
    return launch.start(
        ["run", str(job), "--log-format", "json", "--log-level", "warning"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        cwd=REPO,
    )


def _flows_match_variants(sb: Sandbox, results: pl.DataFrame) -> None:
    ledger = [e for e in sb.ledger() if e.source == "rest"]
    per_contact = Counter(e.to for e in ledger)
    assert max(per_contact.values()) == 1
    variant = dict(zip(results["to"], results["variant"], strict=True))
    flows = {"A": FLOW_SID, "B": FLOW_B}
    assert all(e.flow_sid == flows[variant[e.to]] for e in ledger)
    assert {e.flow_sid for e in ledger} == {FLOW_SID, FLOW_B}
    sent = results.filter(pl.col("status") == "sent")
    assert sent.height == len(ledger) and set(sent["to"]) == set(per_contact)
    assert not set(results.filter(pl.col("variant") == "holdout")["to"]) & set(per_contact)


def test_each_flow_gets_only_its_variants_contacts(
    sandbox_factory: Callable[..., Sandbox],
    write_job: Callable[..., Path],
    tmp_path: Path,
    sandbox_env: dict[str, str],
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Variant B names its own Flow: the sandbox's record of runs shows A's contacts on the job's Flow, B's on B's."""
    sb = sandbox_factory(rate_limit=None)
    path = tmp_path / "contacts.csv"
    make_contacts(60).write_csv(path)
    job = write_job(input_path=path, base_url=sb.url, extra=TWO_FLOWS)
    assert cli(["run", str(job)], capsys)[0] == 0
    _flows_match_variants(sb, pl.read_csv(job.parent / "job.results.csv"))


@pytest.mark.slow
def test_kill_9_mid_run_and_a_resume_keep_each_contact_once_on_its_own_flow(
    sandbox_factory: Callable[..., Sandbox],
    write_job: Callable[..., Path],
    tmp_path: Path,
    sandbox_env: dict[str, str],
    capsys: pytest.CaptureFixture[str],
) -> None:
    """SIGKILLs while sending (answers lost too, so reconciliation must look in each variant's Flow), then the
    same command finishes: every contact exactly once, on its own variant's Flow."""
    sb = sandbox_factory(rate_limit=None, latency=0.02, jitter=0.01, active_rule=False, lost_answer_rate=0.05)
    path = tmp_path / "contacts.csv"
    make_contacts(ROWS).write_csv(path)
    send = "rate = 500\nconcurrency = 8\nreconcile_delay = 0.1\nsettle_after = 1.0"
    job = write_job(input_path=path, base_url=sb.url, send=send, extra=TWO_FLOWS)
    env = cli_env(sandbox_env)
    kills = 0
    for step in (15, 60, 120):
        proc = _start(job, env)
        kills += kill_9_when(proc, lambda: ledger_length(sb) >= step, within=20)  # noqa: B023 (called at once)
    assert kills >= 2
    # Only the killed runs need processes of their own: the resume runs in this one (sandbox_env has put the
    # credentials in its environment).
    code, _, err = cli(["run", str(job)], capsys)
    assert code == 0, err[-4000:]
    results = pl.read_csv(job.parent / "job.results.csv")
    assert set(results["status"]) == {"sent", "holdout"}
    _flows_match_variants(sb, results)
