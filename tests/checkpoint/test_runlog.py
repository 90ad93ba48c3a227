"""A checkpoint that lost committed lines is noticed: its run log counts more intents than the journal holds.
After SIGKILL, a WAL cut in half or a journal deleted must never lead to a contact reached twice (counted in the
sandbox's ledger), and no message may advise ``--restart --yes`` while contacts may have been reached."""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from batch_engage.api import recover, run
from batch_engage.checkpoint.runlog import lost_lines, read_runlog, runlog_path
from batch_engage.credentials import Credentials
from batch_engage.errors import BatchEngageError
from batch_engage.job import Spec, load_spec
from batch_engage.sandbox import Sandbox

from conftest import FLOW_SID, cli, make_contacts
from killing import cli_env, kill_9_when, ledger_length, start_run

ROWS = 300


def _killed_mid_run(
    sb: Sandbox, write_job: Callable[..., Path], tmp_path: Path, env: dict[str, str]
) -> tuple[Path, Path]:
    contacts = tmp_path / "contacts.csv"
    make_contacts(ROWS).write_csv(contacts)
    job = write_job(
        input_path=contacts,
        base_url=sb.url,
        send="rate = 500\nconcurrency = 8\nreconcile_delay = 0.1\nsettle_after = 1.0",
    )
    proc = start_run(job, env)
    assert kill_9_when(proc, lambda: ledger_length(sb) >= ROWS // 2, within=60)
    return job, tmp_path / "job.checkpoint"


def _once_each(sb: Sandbox) -> None:
    per_contact = Counter(e.to for e in sb.ledger() if e.source == "rest")
    assert len(per_contact) == ROWS
    assert max(per_contact.values()) == 1


@pytest.mark.slow
def test_a_wal_cut_in_half_after_sigkill_is_reconciled_first_and_nobody_is_reached_twice(
    sandbox_factory: Callable[..., Sandbox],
    write_job: Callable[..., Path],
    tmp_path: Path,
    sandbox_env: dict[str, str],
    capsys: pytest.CaptureFixture[str],
) -> None:
    """SIGKILL mid-run, the WAL truncated to half its size, run again: the run says it reconciled because the
    checkpoint had lost lines, finishes with exit 0, and every contact has exactly one run."""
    sb = sandbox_factory(rate_limit=None, active_rule=False)
    env = cli_env(sandbox_env)
    job, checkpoint = _killed_mid_run(sb, write_job, tmp_path, env)
    wal = checkpoint.with_name(checkpoint.name + "-wal")
    assert wal.stat().st_size > 0
    os.truncate(wal, wal.stat().st_size // 2)
    # Only the killed run needs a process of its own: the commands after it run in this one (sandbox_env has
    # put the credentials in its environment).
    code, out, err = cli(["run", str(job)], capsys)
    assert code == 0, err[-4000:]
    assert "reconciled first: the checkpoint had lost lines" in out
    _once_each(sb)


@pytest.mark.slow
def test_a_deleted_journal_is_refused_without_restart_advice_and_recover_rebuilds_it(
    sandbox_factory: Callable[..., Sandbox],
    write_job: Callable[..., Path],
    tmp_path: Path,
    sandbox_env: dict[str, str],
    capsys: pytest.CaptureFixture[str],
) -> None:
    """SIGKILL mid-run, the checkpoint and its WAL deleted (the run log kept): a run refuses (exit 2) pointing at
    `recover`, never at --restart --yes; `recover` finds the contacts reached by marker; the next run sends only
    to the contacts never reached."""
    sb = sandbox_factory(rate_limit=None, active_rule=False)
    env = cli_env(sandbox_env)
    job, checkpoint = _killed_mid_run(sb, write_job, tmp_path, env)
    reached = len(sb.ledger())
    for suffix in ("", "-wal", "-shm"):
        checkpoint.with_name(checkpoint.name + suffix).unlink(missing_ok=True)
    assert runlog_path(checkpoint).exists()

    # Only the killed run needs a process of its own: the commands after it run in this one (sandbox_env has
    # put the credentials in its environment).
    code, _, err = cli(["run", str(job)], capsys)
    assert code == 2
    assert "batch-engage recover" in err and "--restart" not in err
    assert len(sb.ledger()) == reached

    code, out, err = cli(["recover", str(job)], capsys)
    assert code == 0, err[-4000:]
    assert f"recovered: {reached} contacts found" in out
    assert len(sb.ledger()) == reached

    code, _, err = cli(["run", str(job)], capsys)
    assert code == 0, err[-4000:]
    _once_each(sb)


def test_the_run_log_counts_each_group_and_a_shorter_journal_is_lost_lines(tmp_path: Path) -> None:
    """The run log keeps the latest count per token; a torn last line is skipped; a journal counting fewer
    intents than it is lost lines, one counting as many is not."""
    checkpoint = tmp_path / "job.checkpoint"
    runlog_path(checkpoint).write_text(
        '{"token": "t1", "run": 1, "intents": 20, "at": "2026-01-01T00:00:00.000Z", "twilio_at": null}\n'
        '{"token": "t1", "run": 1, "intents": 40, "at": "2026-01-01T00:00:01.000Z", "twilio_at": null}\n'
        '{"token": "t1", "run": 2, "int'
    )
    state = read_runlog(checkpoint)
    assert state is not None and (state.token, state.intents, state.first_at) == ("t1", 40, "2026-01-01T00:00:00.000Z")
    assert lost_lines(state, "t1", 40) is None
    assert lost_lines(state, "other", 0) is None
    lost = lost_lines(state, "t1", 25)
    assert lost is not None and (lost.expected, lost.found) == (40, 25)


DAMAGED = b"not a database, damaged"


def _damaged_job(tmp_path: Path, **sections: dict[str, Any]) -> tuple[Spec, Path]:
    """A job whose checkpoint file is damaged while its run log counts one intent (``sections`` added on top)."""
    contacts = tmp_path / "contacts.csv"
    contacts.write_text("phone\n+14155550100\n")
    checkpoint = tmp_path / "job.checkpoint"
    checkpoint.write_bytes(DAMAGED)
    runlog_path(checkpoint).write_text(
        '{"token": "t1", "run": 1, "intents": 1, "at": "2026-01-01T00:00:00.000Z", "twilio_at": null}\n'
    )
    raw: dict[str, Any] = {
        "input": {"path": str(contacts)},
        "flow": {"sid": FLOW_SID, "api": "executions"},
        "mapping": {"to": "phone", "from": "+15005550006"},
        "output": {"checkpoint": str(checkpoint), "results": str(tmp_path / "results.csv")},
    }
    for name, values in sections.items():
        raw[name] = raw.get(name, {}) | values
    return load_spec(raw=raw), checkpoint


def test_recover_refuses_an_unwritable_output_before_moving_anything_aside(tmp_path: Path) -> None:
    """`recover` with results that cannot be written: refused (one line), the damaged checkpoint left where it was."""
    spec, checkpoint = _damaged_job(tmp_path, output={"results": str(tmp_path / "contacts.csv" / "results.csv")})
    before = sorted(p.name for p in tmp_path.iterdir())
    with pytest.raises(BatchEngageError, match=r"results\.csv"):
        recover(spec, credentials=Credentials("AC" + "0" * 32, "token"))
    assert sorted(p.name for p in tmp_path.iterdir()) == before
    assert checkpoint.read_bytes() == DAMAGED


@pytest.mark.parametrize("on_active", ["skip", "end"])
def test_a_damaged_journal_is_refused_pointing_at_recover_whatever_on_active_says(
    on_active: str, tmp_path: Path
) -> None:
    """A damaged checkpoint whose run log counts intents: the run refuses, naming `recover`, never --restart
    (with on_active = "end" the job's tokens are read first, and that read said --restart --yes)."""
    spec, checkpoint = _damaged_job(tmp_path, send={"on_active": on_active})
    with pytest.raises(BatchEngageError, match="batch-engage recover") as refused:
        run(spec, credentials=Credentials("AC" + "0" * 32, "token"))
    assert "--restart" not in str(refused.value)
    assert checkpoint.read_bytes() == DAMAGED
