"""``sweep``: end this job's own runs still active; a dry run unless --yes; never another sender's."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import batch_engage
from batch_engage import Credentials, RunOptions, run
from batch_engage.errors import UsageError
from batch_engage.sandbox import Sandbox
from batch_engage.testing import FakeClock

from conftest import Rig, cli, make_contacts

DAY = 86400.0


@pytest.fixture
def swept_job(rig: Rig) -> tuple[Sandbox, FakeClock, Any]:
    """40 contacts: 30 sent into runs that wait a day; 10 sat in another sender's conversation (already_active)."""
    clock = FakeClock()
    others = tuple(make_contacts(10, start=500)["phone"].to_list())
    sb = rig.sandbox(rate_limit=None, wait_timeout=DAY, other_sender_active=others, wall=clock)
    spec = rig.spec(sb.url, api="executions")
    frame = make_contacts(30).vstack(make_contacts(10, start=500))
    result = run(spec, frame=frame, credentials=rig.creds, options=RunOptions(clock=clock))
    assert result.counts["sent"] == 30 and result.counts["already_active"] == 10
    clock.advance(5)
    return sb, clock, spec


def test_a_dry_run_lists_our_runs_and_ends_nothing(
    swept_job: tuple[Sandbox, FakeClock, Any], sandbox_creds: Credentials
) -> None:
    """sweep --older-than 1s without --yes: our 30 listed as "would end", the other sender's 10 not ours; exit 0."""
    sb, _, spec = swept_job
    result = batch_engage.sweep(spec, credentials=sandbox_creds, older_than=1.0)
    assert result.count("would end") == 30 and result.count("not ours") == 10
    assert result.exit_code == 0 and sb.stats().ended_by_request == 0


def test_yes_ends_exactly_ours_and_none_of_another_senders(
    swept_job: tuple[Sandbox, FakeClock, Any], sandbox_creds: Credentials
) -> None:
    """With --yes it ends our 30 and none of the other sender's 10; nothing of ours left active: exit 0."""
    sb, _, spec = swept_job
    ours = {e.sid for e in sb.ledger() if e.source == "rest"}
    result = batch_engage.sweep(spec, credentials=sandbox_creds, older_than=1.0, yes=True)
    assert {r.sid for r in result.runs if r.action == "ended"} == ours
    assert result.count("not ours") == 10 and result.exit_code == 0
    assert sb.stats().ended_by_request == 30
    again = batch_engage.sweep(spec, credentials=sandbox_creds, older_than=1.0, yes=True)
    assert again.count("ended") == 0 and again.count("not ours") == 10 and again.exit_code == 0


def test_runs_younger_than_older_than_are_left_and_exit_75(
    swept_job: tuple[Sandbox, FakeClock, Any], sandbox_creds: Credentials
) -> None:
    """--older-than 24h (the default) on 5-second-old runs: none ended, ours left active: exit 75."""
    sb, _, spec = swept_job
    result = batch_engage.sweep(spec, credentials=sandbox_creds, yes=True)
    assert result.count("left active") == 30 and result.exit_code == 75
    assert sb.stats().ended_by_request == 0


def test_engagements_are_refused(make_spec: Callable[..., Any], sandbox_creds: Credentials) -> None:
    """v1 Engagements have no documented update: sweep refuses (exit 2) and ends nothing."""
    spec = make_spec("http://127.0.0.1:9", api="engagements")
    with pytest.raises(UsageError, match="Engagement"):
        batch_engage.sweep(spec, credentials=sandbox_creds)


def test_the_cli_lists_then_ends(
    swept_job: tuple[Sandbox, FakeClock, Any],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    sandbox_env: dict[str, str],
) -> None:
    """batch-engage sweep JOB --older-than 1s prints what it would end; with --yes it ends them; exit 0 both times."""
    sb, _, spec = swept_job
    job = tmp_path / "sweep.toml"
    job.write_text(
        f'[flow]\nsid = "{spec.flow.sid}"\napi = "executions"\nbase_url = "{sb.url}"\n'
        '[mapping]\nto = "phone"\nfrom = "+15005550006"\n[mapping.parameters]\nname = "name"\nvisits = "visits"\n'
        # The reads are paced at the job's rate: at the default 20/s, two sweeps of 40 runs wait 8 s.
        f"[send]\nrate = {spec.send.rate:g}\n"
        f'[output]\nresults = "{spec.output.results}"\ncheckpoint = "{spec.output.checkpoint}"\n'
    )
    code, out, _ = cli(["sweep", str(job), "--older-than", "1s"], capsys)
    assert code == 0 and out.count("would end") == 31 and "add --yes" in out
    code, out, _ = cli(["sweep", str(job), "--older-than", "1s", "--yes"], capsys)
    assert code == 0 and "30 ended" in out and sb.stats().ended_by_request == 30
