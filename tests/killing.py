"""Crashing the CLI on purpose, shared by the crash tests: start ``batch-engage run`` as a process of its own, and
SIGKILL it once a condition holds (polled: the condition is the point, not the time it takes)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

__all__ = ["cli_env", "kill_9", "kill_9_when", "start_run", "wait_until"]


def cli_env(sandbox_env: dict[str, str]) -> dict[str, str]:
    """This process's environment without the developer's TWILIO_* variables, with the sandbox's credentials."""
    return {k: v for k, v in os.environ.items() if not k.startswith("TWILIO_")} | sandbox_env


def start_run(job: Path, env: dict[str, str], *, cwd: Path | None = None) -> subprocess.Popen[bytes]:
    """``batch-engage run JOB`` in a process of its own (warnings as JSON on stderr), from ``cwd`` (the job's folder)."""
    return subprocess.Popen(
        [sys.executable, "-m", "batch_engage", "run", str(job), "--log-format", "json", "--log-level", "warning"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        cwd=cwd or job.parent,
    )


def kill_9(proc: subprocess.Popen[bytes]) -> bool:
    """SIGKILL ``proc`` if it still runs, reap it and close its stderr; True if it was killed."""
    killed = proc.poll() is None
    if killed:
        proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)
    if proc.stderr is not None:
        proc.stderr.close()
    return killed


def kill_9_when(proc: subprocess.Popen[bytes], condition: Callable[[], bool], *, within: float = 30.0) -> bool:
    """SIGKILL ``proc`` once ``condition()`` holds (or it ended, or ``within`` seconds passed); True if killed."""
    wait_until(proc, condition, within=within)
    return kill_9(proc)


def wait_until(proc: subprocess.Popen[bytes], condition: Callable[[], bool], *, within: float = 30.0) -> None:
    """Return once ``condition()`` holds, ``proc`` has ended, or ``within`` seconds have passed, whichever is first."""
    deadline = time.monotonic() + within
    while not condition() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
