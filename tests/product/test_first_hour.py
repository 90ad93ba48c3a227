"""What a new user meets in the first hour: each small thing does what they would expect."""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import polars as pl
import pytest

import batch_engage
from batch_engage.checkpoint import empty_journal
from batch_engage.control import Progress, RunControl
from batch_engage.credentials import Credentials
from batch_engage.disk import release_lock, try_lock
from batch_engage.plan import params_hash
from batch_engage.results import build_results
from batch_engage.sandbox import Sandbox

from conftest import FLOW_SID, REPO, cli, make_contacts
from killing import cli_env, start_cli, wait_until


def test_an_uncertain_row_says_why_and_what_happens_next() -> None:
    """An ``uncertain`` row never has an empty error_message: it says the run may exist and will be looked up."""
    plan = pl.DataFrame(
        {"row": [1], "to": ["+14155550100"], "from": ["+15005550006"], "status": ["pending"], "error_message": [None]},
        schema_overrides={"error_message": pl.String},
    ).with_columns(contact=pl.lit("c1"))
    schema = empty_journal().schema
    line = {"contact": "c1", "state": "uncertain", "attempts": 1, "input": "d"}
    journal = pl.DataFrame([{name: line.get(name) for name in schema}], schema=schema)
    for state in ("uncertain", "intent"):
        table = build_results(plan, journal.with_columns(state=pl.lit(state)), input_digest="d")
        assert table["status"].to_list() == ["uncertain"]
        assert "marker" in table["error_message"][0]


def test_a_persons_run_is_credited_to_the_row_sent_with_its_parameters() -> None:
    """One person on three rows (``to_from``), the run made for the third's Parameters: the third shows its SID, the
    others read ``duplicate`` naming it in the plan's words; with no row matching, the first keeps the run."""
    plan = pl.DataFrame(
        {
            "row": [1, 2, 3],
            "to": ["+14155550100"] * 3,
            "from": ["+15005550006"] * 3,
            "parameters": ['{"n":"new"}', '{"n":"newer"}', '{"n":"sent"}'],
            "status": ["pending", "duplicate", "duplicate"],
            "error_message": [None, "same contact and sender as row 1", "same contact and sender as row 1"],
            "contact": ["c1"] * 3,
        }
    )
    schema = empty_journal().schema
    line = {"contact": "c1", "state": "sent", "sid": "FN1", "attempts": 1, "input": "old"}
    journal = pl.DataFrame([{n: line.get(n) for n in schema}], schema=schema)
    table = build_results(plan, journal.with_columns(params_hash=pl.lit(params_hash('{"n":"sent"}'))), input_digest="d")
    assert table.select("status", "sid", "error_message").rows() == [
        ("duplicate", None, "same contact and sender as row 3"),
        ("duplicate", None, "same contact and sender as row 3"),
        ("sent", "FN1", "reached by an earlier run"),
    ]
    table = build_results(plan, journal.with_columns(params_hash=pl.lit(params_hash("{}"))), input_digest="d")
    assert table["sid"].to_list() == ["FN1", None, None]


def test_status_names_the_checkpoint_it_read(job: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``status`` says which checkpoint its counts come from."""
    assert cli(["run", str(job), "--quiet"], capsys)[0] == 0
    code, out, _ = cli(["status", str(job)], capsys)
    assert code == 0
    assert out.splitlines()[0] == f"checkpoint: {job.parent / 'job.checkpoint'}"


def test_collect_exits_75_while_a_run_of_the_job_is_still_sending(
    job: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A run holds the checkpoint: collect brings back what it can, then exits 75 saying a run is still sending."""
    assert cli(["run", str(job), "--quiet", "--limit", "5"], capsys)[0] == 0
    fd = try_lock(job.parent / "job.checkpoint.lock")
    assert fd is not None
    try:
        code, out, _ = cli(["collect", str(job)], capsys)
    finally:
        release_lock(fd)
    assert code == 75
    assert "a run of this job is still sending" in out


def test_a_future_period_needs_yes(
    sandbox: Sandbox, job_for: Callable[..., Path], capsys: pytest.CaptureFixture[str]
) -> None:
    """``--period`` after today's: refused (exit 2, nothing sent) unless ``--yes``."""
    job = job_for(sandbox, extra='[job]\nid = "daily-{date}"\n')
    text = job.read_text()
    job.write_text(
        text.replace(f'results = "{job.parent / "job.results.csv"}"', 'results = "{id}.results.csv"').replace(
            f'checkpoint = "{job.parent / "job.checkpoint"}"', 'checkpoint = "{id}.checkpoint"'
        )
    )
    code, _, err = cli(["run", str(job), "--period", "2099-01-01"], capsys)
    assert code == 2
    assert "has not begun" in err and "--yes" in err
    assert sandbox.ledger() == []
    assert cli(["run", str(job), "--period", "2099-01-01", "--yes", "--quiet"], capsys)[0] == 0
    assert len(sandbox.ledger()) == 30


def test_version_prints_the_version(capsys: pytest.CaptureFixture[str]) -> None:
    """``batch-engage --version`` prints its name and version and exits 0."""
    from batch_engage.cli.main import main

    with pytest.raises(SystemExit) as done:
        main(["--version"])
    assert done.value.code == 0
    assert capsys.readouterr().out.startswith("batch-engage ")


def test_the_progress_counts_the_whole_job_on_a_resume(
    sandbox: Sandbox, make_spec: Callable[..., batch_engage.Spec], sandbox_creds: Credentials
) -> None:
    """Ten sent, then a resume: its progress says 30 sent of 30, not 20."""
    spec = make_spec(sandbox.url)
    frame = make_contacts(30)
    batch_engage.run(spec, frame=frame, credentials=sandbox_creds, options=batch_engage.RunOptions(limit=10))
    seen: list[Progress] = []
    batch_engage.run(spec, frame=frame, credentials=sandbox_creds, on_progress=seen.append)
    assert seen[-1].sent == 30
    assert seen[-1].done == seen[-1].total == 30


def test_a_real_send_is_announced_with_contacts_flow_account_and_rate(
    job: Path, sandbox_env: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    """Before sending for real: one line with N contacts → Flow FW… (its name), the account, the rate."""
    code, _, err = cli(["run", str(job), "--log-format", "console", "--log-level", "warning"], capsys)
    assert code == 0
    account = sandbox_env["TWILIO_ACCOUNT_SID"]
    line = f"batch-engage: sending 30 contacts → Flow {FLOW_SID} (Sandbox Flow {FLOW_SID[-4:]}), account {account}"
    assert [x for x in err.splitlines() if x.startswith("batch-engage: sending")] == [line + ", at most 500/s"]


def test_a_rehearsal_is_not_announced_as_a_real_send(
    write_job: Callable[..., Path], contacts_csv: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``--sandbox`` sends nowhere real: no "sending N contacts" line."""
    job = write_job(input_path=contacts_csv)
    code, _, err = cli(["run", str(job), "--sandbox", "--log-format", "json", "--log-level", "warning"], capsys)
    assert code == 0
    assert "batch-engage: sending" not in err


def test_ctrl_c_is_acknowledged_with_a_line(
    sandbox_factory: Callable[..., Sandbox], job_for: Callable[..., Path], sandbox_env: dict[str, str]
) -> None:
    """SIGINT mid-run: a line on stderr says it is stopping and how to stop at once; exit 75."""
    sb = sandbox_factory(rate_limit=None, latency=0.02)
    job = job_for(sb, contacts=200, send="rate = 20\nconcurrency = 2")
    argv = ["run", str(job), "--log-format", "console", "--log-level", "error"]
    proc = start_cli(argv, cli_env(sandbox_env) | {"PYTHONPATH": str(REPO)})
    wait_until(proc, lambda: len(sb.ledger()) >= 3)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 75, err.decode()[-2000:]
    assert "batch-engage: stopping: waiting for the answers in flight (again to stop at once)" in err.decode()


def test_the_stop_acknowledgment_says_a_second_stop_is_immediate(capsys: pytest.CaptureFixture[str]) -> None:
    """The first Ctrl-C says it waits for answers in flight; the second says it stops now."""
    from batch_engage.cli.output import configure_logging, stop_acknowledged

    configure_logging("console", "info", quiet=False)
    control = RunControl()
    stop_acknowledged(control)
    stop_acknowledged(control)
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("batch-engage:")]
    assert control.hard
    assert lines[0].startswith("batch-engage: stopping: waiting") and lines[1].startswith("batch-engage: stopping now")


def test_the_library_logs_only_warnings_unless_the_caller_configures_logging(
    job: Path, sandbox_env: dict[str, str]
) -> None:
    """``batch_engage.run`` from Python prints no debug or info lines by default."""
    code = f"import batch_engage; r = batch_engage.run({str(job)!r}); print('exit', r.exit_code)"
    done = subprocess.run(
        [sys.executable, "-c", code],
        env=cli_env(sandbox_env) | {"PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "exit 0"
    shown = done.stderr + done.stdout
    assert "[debug" not in shown and "[info" not in shown
    assert "run.summary" not in shown
