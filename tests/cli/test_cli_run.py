"""`batch-engage run`, `status` and `report` driven as a user would: in-process and as a subprocess."""

from __future__ import annotations

import signal
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from batch_engage.sandbox import SANDBOX_USERNAME, Sandbox

from conftest import REPO, cli
from killing import cli_env, finish, start_cli, wait_until


class TestExitCodes:
    def test_exit_0_when_every_row_is_sent(
        self, job: Path, sandbox: Sandbox, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """A clean list ends with exit 0 and a summary naming the results file."""
        code, out, _ = cli(["run", str(job)], capsys)
        assert code == 0
        assert "results:" in out and "sent 30" in out
        code, out, _ = cli(["run", str(job)], capsys)
        assert code == 0
        assert out.startswith("all 30 rows were done by earlier runs") and len(out.splitlines()) == 1
        assert len(sandbox.ledger()) == 30

    def test_exit_1_when_some_rows_are_invalid(
        self, sandbox: Sandbox, job_for: Callable[..., Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """Invalid rows are reported, the rest are sent, and the exit code is 1."""
        path = tmp_path / "c.csv"
        path.write_text("phone,name,visits\n+14155550100,A,1\nnope,B,2\n")
        code, out, _ = cli(["run", str(job_for(sandbox, input_path=path))], capsys)
        assert code == 1
        assert "invalid 1" in out
        assert len(sandbox.ledger()) == 1

    def test_exit_2_on_a_config_error_naming_the_key(
        self, sandbox: Sandbox, job_for: Callable[..., Path], capsys: pytest.CaptureFixture[str]
    ) -> None:
        """An unknown key or a wrong type is one line naming the key; exit 2; nothing sent."""
        job = job_for(sandbox, send="rate = 20\nburst = 3")
        code, _, err = cli(["run", str(job)], capsys)
        assert (code, err.strip()) == (2, "batch-engage: send.burst: is not a known key")
        job = job_for(sandbox, send='rate = "fast"')
        code, _, err = cli(["run", str(job)], capsys)
        assert (code, err.strip()) == (2, "batch-engage: send.rate: must be a number, not 'fast'")
        assert sandbox.ledger() == []

    def test_exit_2_on_a_bad_flow_sid_before_anything_is_sent(
        self, job: Path, sandbox: Sandbox, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """A Flow SID that is not FW + 32 hex is refused up front."""
        job.write_text(job.read_text().replace('sid = "FW', 'sid = "XX'))
        code, _, err = cli(["run", str(job)], capsys)
        assert code == 2 and "flow.sid" in err
        assert sandbox.stats().create_requests == 0

    def test_exit_2_when_credentials_are_missing(
        self, sandbox: Sandbox, write_job: Callable[..., Path], contacts_csv: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """No TWILIO_* variables: one line saying which to set, exit 2, nothing sent."""
        code, _, err = cli(["run", str(write_job(input_path=contacts_csv, base_url=sandbox.url))], capsys)
        assert code == 2
        assert err.count("\n") == 1 and "TWILIO_API_KEY" in err
        assert sandbox.stats().create_requests == 0 and sandbox.stats().flow_requests == 0

    def test_exit_3_on_a_refused_token(
        self,
        sandbox: Sandbox,
        write_job: Callable[..., Path],
        contacts_csv: Path,
        monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str],
    ) -> None:
        """A wrong auth token aborts with exit 3 and a message naming the cause and the fix."""
        monkeypatch.setenv("TWILIO_ACCOUNT_SID", SANDBOX_USERNAME)
        monkeypatch.setenv("TWILIO_AUTH_TOKEN", "not-the-token")
        code, out, _ = cli(["run", str(write_job(input_path=contacts_csv, base_url=sandbox.url))], capsys)
        assert code == 3
        assert "aborted: Twilio refused the credentials" in out and "TWILIO_AUTH_TOKEN" in out

    def test_exit_75_when_another_process_holds_the_checkpoint(
        self, job: Path, sandbox: Sandbox, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """A second run on a locked checkpoint (cron overlap) exits 75 at once, sending nothing."""
        from batch_engage.checkpoint.store import Target, open_checkpoint

        with open_checkpoint(job.parent / "job.checkpoint", {"input": "other"}, Target(base_url="x", identity=None)):
            code, _, err = cli(["run", str(job)], capsys)
        assert code == 75
        assert "another batch-engage process is running this job" in err
        assert sandbox.stats().create_requests == 0

    def test_max_duration_stops_with_75_and_the_same_command_finishes(
        self, sandbox_factory: Callable[..., Sandbox], job_for: Callable[..., Path], capsys: pytest.CaptureFixture[str]
    ) -> None:
        """--max-duration stops gracefully (exit 75, rest pending); the same command again finishes the job."""
        sb = sandbox_factory(rate_limit=None)
        # A second at 20/s: some sent and most left, with room for a loaded machine (0.3 s at 40/s failed there
        # now and then).
        job = job_for(sb, contacts=60, send="rate = 20\nconcurrency = 4")
        code, out, _ = cli(["run", str(job), "--max-duration", "1s"], capsys)
        assert code == 75
        assert "stopped early" in out
        table = pl.read_csv(job.parent / "job.results.csv")
        assert 0 < table.filter(pl.col("status") == "pending").height < 60
        code, _, _ = cli(["run", str(job), "--rate", "1000"], capsys)
        assert code == 0
        assert len(sb.ledger()) == 60
        assert max(Counter(e.to for e in sb.ledger()).values()) == 1


class TestCheckpointCommands:
    def test_restart_says_what_it_would_forget_and_needs_yes(
        self, job: Path, sandbox: Sandbox, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """--restart alone refuses (exit 2, nothing sent) naming how many contacts it would send to again;
        with --yes it starts over and keeps the old checkpoint aside."""
        assert cli(["run", str(job), "--limit", "3"], capsys)[0] == 0
        code, _, err = cli(["run", str(job), "--restart"], capsys)
        assert code == 2
        assert "would forget 3 contacts" in err and "--yes" in err
        assert len(sandbox.ledger()) == 3
        code, _, err = cli(["validate", str(job), "--restart"], capsys)
        assert code == 2 and "would forget 3 contacts" in err
        sandbox.end_all_runs()
        code, _, _ = cli(["run", str(job), "--restart", "--yes"], capsys)
        assert code == 0
        assert len(sandbox.ledger()) == 33
        kept = list(job.parent.glob("job.checkpoint.*.old"))
        assert len(kept) == 1

    def test_changed_mapping_is_refused(self, job: Path, capsys: pytest.CaptureFixture[str]) -> None:
        """Mapping another column after a run started is refused, naming the mapping."""
        cli(["run", str(job), "--limit", "2"], capsys)
        job.write_text(job.read_text().replace('visits = "visits"', 'count = "visits"'))
        code, _, err = cli(["run", str(job)], capsys)
        assert code == 2 and "the column mapping changed" in err

    def test_status_and_report_read_the_checkpoint_without_sending(
        self, job: Path, sandbox: Sandbox, capsys: pytest.CaptureFixture[str], tmp_path: Path
    ) -> None:
        """status prints counts; report rewrites the results table; neither sends a request."""
        cli(["run", str(job), "--limit", "10"], capsys)
        before = sandbox.stats()
        code, out, _ = cli(["status", str(job)], capsys)
        assert code == 0
        assert "sent            10" in out and "pending         20" in out
        target = tmp_path / "again.parquet"
        code, out, _ = cli(["report", str(job), "--output", str(target)], capsys)
        assert code == 0
        again = pl.read_parquet(target)
        original = pl.read_csv(job.parent / "job.results.csv", schema=again.schema)
        assert again.equals(original)
        assert sandbox.stats() == before

    def test_files_are_readable_by_their_owner_only(self, job: Path, capsys: pytest.CaptureFixture[str]) -> None:
        """Results, checkpoint and the plan beside it are created with mode 0600."""
        cli(["run", str(job)], capsys)
        for name in ("job.results.csv", "job.checkpoint", "job.checkpoint.plan.parquet"):
            assert (job.parent / name).stat().st_mode & 0o777 == 0o600, name


class TestSignals:
    def test_sigterm_stops_with_75_and_the_run_resumes(
        self, sandbox_factory: Callable[..., Sandbox], job_for: Callable[..., Path], sandbox_env: dict[str, str]
    ) -> None:
        """SIGTERM mid-run: exit 75, rows not sent stay pending; the same command again finishes, nobody twice."""
        sb = sandbox_factory(rate_limit=None, latency=0.02)
        job = job_for(sb, contacts=200, send="rate = 50\nconcurrency = 4")
        proc = start_cli(["run", str(job), "--log-format", "json"], cli_env(sandbox_env))
        wait_until(proc, lambda: len(sb.ledger()) >= 10)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
        assert proc.returncode == 75, err.decode()[-2000:]
        table = pl.read_csv(job.parent / "job.results.csv")
        assert table.filter(pl.col("status") == "pending").height > 0
        assert table.filter(pl.col("status") == "uncertain").height == 0
        finish(["run", str(job), "--rate", "1000"], cli_env(sandbox_env), timeout=60)
        assert len(sb.ledger()) == 200
        assert max(Counter(e.to for e in sb.ledger()).values()) == 1


@pytest.mark.slow
def test_sample_job_runs_against_the_sandbox(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The README's sample command works: every valid sample row is sent, invalid and duplicate rows are reported."""
    out_dir = tmp_path / "out"
    code, _, _ = cli(
        [
            "run",
            str(REPO / "jobs" / "sample_campaign.toml"),
            "--sandbox",
            "--output",
            str(out_dir / "r.csv"),
            "--checkpoint",
            str(out_dir / "c"),
        ],
        capsys,
    )
    # A rehearsal keeps its state apart from the real job's: the paths get ".sandbox".
    table = pl.read_csv(out_dir / "r.sandbox.csv")
    assert (out_dir / "c.sandbox").exists() and not (out_dir / "c").exists()
    counts: dict[str, Any] = dict(Counter(table["status"].to_list()))
    assert counts == {"sent": 195, "invalid": 4, "duplicate": 1}
    assert code == 1
    assert table.height == 200


@pytest.mark.slow
def test_second_sigint_stops_at_once_and_the_next_run_settles_the_rows_in_flight(
    sandbox_factory: Callable[..., Sandbox], job_for: Callable[..., Path], sandbox_env: dict[str, str]
) -> None:
    """Two SIGINTs: exit 75 without waiting for answers, rows in flight reported uncertain; the next run settles
    them from Studio's list and finishes, nobody twice."""
    sb = sandbox_factory(rate_limit=None, latency=1.5, active_rule=False)
    job = job_for(sb, contacts=20, send="rate = 100\nconcurrency = 4\nreconcile_delay = 2.0")
    proc = start_cli(["run", str(job)], cli_env(sandbox_env))
    wait_until(proc, lambda: sb.stats().create_requests >= 4)
    proc.send_signal(signal.SIGINT)
    assert proc.stderr is not None
    # The second Ctrl-C comes after the first was seen, as a person's would.
    for line in proc.stderr:
        if b'"run.stopping"' in line:
            break
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 75, err.decode()[-2000:]
    table = pl.read_csv(job.parent / "job.results.csv")
    assert table.filter(pl.col("status") == "uncertain").height >= 1
    assert table.filter(pl.col("status") == "sent").height == 0
    # Studio answers at once from now on: the rows never sent need not wait 1.5 s a round (the runs created
    # while the stopped run waited keep their latency; reconcile_delay still covers them).
    sb.reconfigure(latency=0.0)
    finish(["run", str(job)], cli_env(sandbox_env))
    assert len(sb.ledger()) == 20
    assert max(Counter(e.to for e in sb.ledger()).values()) == 1
