"""`sweep` and `report` given a checkpoint that is not this job's (another job's, or a rehearsal's): refused."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from batch_engage.sandbox import Sandbox

from conftest import cli

DAY = 86400.0
OTHER_MAPPING = 'to = "phone"\nfrom = "+15005550006"\n\n[mapping.parameters]\nnm = "name"'


@pytest.fixture
def two_jobs(
    sandbox_factory: Callable[..., Sandbox],
    job_for: Callable[..., Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> tuple[Sandbox, Path, Path]:
    """Two jobs on one sandbox, both run (their runs wait a day): ``job`` and ``other`` (another mapping)."""
    sb = sandbox_factory(rate_limit=None, wait_timeout=DAY)
    job = job_for(sb, api="executions")
    other = job_for(sb, api="executions", name="other", mapping=OTHER_MAPPING)
    for path in (job, other):
        assert cli(["run", str(path)], capsys)[0] == 0
    return sb, job, other


def _one_line_refusal(code: int, out: str, err: str, *needles: str) -> None:
    assert code == 2 and out == ""
    [line] = err.strip().splitlines()
    assert all(n in line for n in needles), line


def test_sweep_refuses_another_jobs_checkpoint_and_ends_nothing(
    two_jobs: tuple[Sandbox, Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """What a user notices: `sweep JOB --checkpoint OTHER.checkpoint --older-than 0 --yes` is exit 2, one line,
    and the other job's 30 runs stay active (they were ended, labelled as this job's own)."""
    sb, job, _ = two_jobs
    other_checkpoint = str(tmp_path / "other.checkpoint")
    args = ["sweep", str(job), "--checkpoint", other_checkpoint, "--older-than", "0", "--yes"]
    _one_line_refusal(*cli(args, capsys), "made for another job", "nothing was ended")
    assert sb.stats().ended_by_request == 0


def test_sweep_refuses_a_rehearsals_checkpoint_against_a_real_target(
    two_jobs: tuple[Sandbox, Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """What a user notices: a `.sandbox` checkpoint given to a real sweep is exit 2, one line saying to add
    --sandbox; nothing is read or ended on the real target."""
    sb, job, _ = two_jobs
    assert cli(["run", str(job), "--sandbox"], capsys)[0] == 0
    rehearsal = str(tmp_path / "job.checkpoint.sandbox")
    requests = sb.stats().update_requests
    args = ["sweep", str(job), "--checkpoint", rehearsal, "--older-than", "0", "--yes"]
    _one_line_refusal(*cli(args, capsys), "made on the sandbox (add --sandbox)", "nothing was ended")
    assert sb.stats().update_requests == requests and sb.stats().ended_by_request == 0


def test_report_refuses_another_jobs_checkpoint_and_leaves_the_results_table(
    two_jobs: tuple[Sandbox, Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """What a user notices: `report JOB --checkpoint OTHER.checkpoint` is exit 2, one line, and this job's results
    table is left as its own run wrote it (it was overwritten with the other job's rows)."""
    _, job, _ = two_jobs
    results = tmp_path / "job.results.csv"
    before = results.read_bytes()
    args = ["report", str(job), "--checkpoint", str(tmp_path / "other.checkpoint")]
    _one_line_refusal(*cli(args, capsys), "made for another job", "nothing was written")
    assert results.read_bytes() == before


def test_report_refuses_a_rehearsals_checkpoint_without_sandbox_and_takes_it_with(
    two_jobs: tuple[Sandbox, Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """What a user notices: `report JOB --checkpoint JOB.checkpoint.sandbox` is exit 2 (a rehearsal's rows never
    land in the real results table); `report JOB --sandbox` still writes the rehearsal's own table."""
    _, job, _ = two_jobs
    assert cli(["run", str(job), "--sandbox"], capsys)[0] == 0
    results = tmp_path / "job.results.csv"
    before = results.read_bytes()
    args = ["report", str(job), "--checkpoint", str(tmp_path / "job.checkpoint.sandbox")]
    _one_line_refusal(*cli(args, capsys), "made on the sandbox", "nothing was written")
    assert results.read_bytes() == before
    assert cli(["report", str(job), "--sandbox"], capsys)[0] == 0
    assert cli(["report", str(job)], capsys)[0] == 0 and results.read_bytes() == before


def test_collect_refuses_another_jobs_checkpoint_and_fetches_nothing(
    two_jobs: tuple[Sandbox, Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """What a user notices: `collect JOB --checkpoint OTHER.checkpoint` is exit 2, one line; no run is read and no
    outcomes table is written (the other job's runs were fetched and written as this job's outcomes)."""
    sb, job, _ = two_jobs
    reads = sb.stats().run_requests
    args = ["collect", str(job), "--checkpoint", str(tmp_path / "other.checkpoint")]
    _one_line_refusal(*cli(args, capsys), "made for another job", "nothing was fetched")
    assert sb.stats().run_requests == reads
    assert not (tmp_path / "job.outcomes.csv").exists()
