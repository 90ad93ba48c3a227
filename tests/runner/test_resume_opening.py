"""A resumed run opens its checkpoint while it plans its input: a refused input is still the answer, first, and
leaves the job's checkpoint free for the next command."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

from batch_engage.checkpoint import is_locked
from batch_engage.disk import try_lock

from conftest import cli, make_contacts


def _resumable(write_job: Callable[..., Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> tuple[Path, Path]:
    """A job run once on the sandbox (so its checkpoint exists), and that checkpoint."""
    contacts = tmp_path / "contacts.csv"
    make_contacts(20).write_csv(contacts)
    job = write_job(input_path=contacts)
    assert cli(["run", str(job), "--sandbox", "--quiet"], capsys)[0] == 0
    checkpoint = tmp_path / "job.checkpoint.sandbox"  # a rehearsal keeps its own checkpoint beside the job's
    assert checkpoint.exists()
    return job, checkpoint


def _break_input(tmp_path: Path) -> None:
    make_contacts(20).rename({"phone": "mobile"}).write_csv(tmp_path / "contacts.csv")


def test_a_refused_input_on_resume_answers_and_leaves_the_checkpoint_free(
    write_job: Callable[..., Path], tmp_path: Path, capsys: pytest.CaptureFixture[str], sandbox_env: dict[str, str]
) -> None:
    """Exit 2 naming the missing column; the checkpoint is not held after, and the fixed input runs at once."""
    job, checkpoint = _resumable(write_job, tmp_path, capsys)
    _break_input(tmp_path)
    code, _, err = cli(["run", str(job), "--sandbox", "--quiet"], capsys)
    assert code == 2 and "phone" in err
    assert not is_locked(checkpoint)
    make_contacts(25).write_csv(tmp_path / "contacts.csv")
    code, out, _ = cli(["run", str(job), "--sandbox"], capsys)
    assert code == 0 and "sent 25" in out


def test_while_another_run_holds_the_job_a_refused_input_is_still_the_answer(
    write_job: Callable[..., Path], tmp_path: Path, capsys: pytest.CaptureFixture[str], sandbox_env: dict[str, str]
) -> None:
    """The input's problem is said (exit 2), not the lock; with a good input the lock is (nothing sent)."""
    job, checkpoint = _resumable(write_job, tmp_path, capsys)
    held = try_lock(checkpoint.with_name(checkpoint.name + ".lock"))
    assert held is not None
    try:
        _break_input(tmp_path)
        code, _, err = cli(["run", str(job), "--sandbox", "--quiet"], capsys)
        assert code == 2 and "phone" in err and "another batch-engage process" not in err
        make_contacts(25).write_csv(tmp_path / "contacts.csv")
        code, _, err = cli(["run", str(job), "--sandbox", "--quiet"], capsys)
        assert code != 0 and "another batch-engage process is running this job" in err
    finally:
        os.close(held)


def test_a_file_that_is_no_checkpoint_does_not_hide_the_inputs_own_problem(
    write_job: Callable[..., Path], tmp_path: Path, capsys: pytest.CaptureFixture[str], sandbox_env: dict[str, str]
) -> None:
    """The checkpoint's path holds something else and the input lacks its column: the input's error comes first
    (exit 2, naming the column), as before the checkpoint was opened early; the other file is left as it was."""
    job, checkpoint = _resumable(write_job, tmp_path, capsys)
    for kin in (checkpoint.with_name(checkpoint.name + s) for s in ("-wal", "-shm")):
        kin.unlink(missing_ok=True)
    checkpoint.write_bytes(b"not a database, just some bytes" * 200)
    _break_input(tmp_path)
    code, _, err = cli(["run", str(job), "--sandbox", "--quiet"], capsys)
    assert code == 2 and "phone" in err and "not a batch-engage checkpoint" not in err
    assert checkpoint.read_bytes() == b"not a database, just some bytes" * 200
