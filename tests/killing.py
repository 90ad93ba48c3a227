"""The CLI as a process of its own, shared by the crash, signal and concurrency tests: start ``batch-engage``, SIGKILL
it once a condition holds (polled: the condition is the point, not the time it takes), or run it to its end."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import launch
from launch import Running

from batch_engage.sandbox import Sandbox

from conftest import REPO

__all__ = [
    "cli_env",
    "finish",
    "kill_9",
    "kill_9_at_random",
    "kill_9_when",
    "ledger_length",
    "run_at_once",
    "start_cli",
    "start_run",
    "wait_until",
]


def cli_env(sandbox_env: dict[str, str]) -> dict[str, str]:
    """This process's environment without the developer's TWILIO_* variables, with the sandbox's credentials."""
    return {k: v for k, v in os.environ.items() if not k.startswith("TWILIO_")} | sandbox_env


def ledger_length(sb: Sandbox) -> int:
    """``len(sb.ledger())`` without the copy: the runs ``sb`` created plus those other senders started.

    The kill conditions poll it every 5 ms while the run sends; ``ledger()`` deep-copies every run under the
    sandbox's lock (some 5 ms at 600 runs), so polling it took half a core from the run and its sandbox. A
    sandbox given a state_path also lists the runs it loaded: none of the tests polling this is given one.
    """
    stats = sb.stats()
    return stats.created + stats.inbound_runs


def start_run(job: Path, env: dict[str, str], *, cwd: Path | None = None) -> Running:
    """``batch-engage run JOB`` in a process of its own (warnings as JSON on stderr), from ``cwd`` (the job's folder)."""
    return launch.start(
        ["run", str(job), "--log-format", "json", "--log-level", "warning"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        cwd=cwd or job.parent,
    )


def start_cli(
    args: list[str], env: dict[str, str], *, stdout: int = subprocess.PIPE, stderr: int = subprocess.PIPE
) -> Running:
    """``batch-engage ARGS`` in a process of its own, its stdout and stderr piped back to the test (or ``DEVNULL``)."""
    return launch.start(args, env=env, stdout=stdout, stderr=stderr, cwd=REPO)


def finish(args: list[str], env: dict[str, str], *, timeout: float = 120) -> None:
    """``batch-engage ARGS`` in a process of its own, to its end: it must exit 0 (the tail of its stderr says why not)."""
    done = launch.run(args, env=env, capture_output=True, cwd=REPO, timeout=timeout)
    assert done.returncode == 0, done.stderr.decode()[-4000:]


def run_at_once(jobs: list[Path], env: dict[str, str]) -> None:
    """``batch-engage run`` for every job, each in a process of its own, all started together; each must exit 0."""
    procs = [start_run(job, env) for job in jobs]
    for proc in procs:
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err.decode()[-2000:]


def kill_9(proc: Running) -> bool:
    """SIGKILL ``proc`` if it still runs, reap it and close its stderr; True if it was killed."""
    killed = proc.poll() is None
    if killed:
        proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)
    if proc.stderr is not None:
        proc.stderr.close()
    return killed


def kill_9_when(proc: Running, condition: Callable[[], bool], *, within: float = 30.0) -> bool:
    """SIGKILL ``proc`` once ``condition()`` holds (or it ended, or ``within`` seconds passed); True if killed."""
    wait_until(proc, condition, within=within)
    return kill_9(proc)


def kill_9_at_random(
    start: Callable[[int], Running],
    sb: Sandbox,
    *,
    attempts: int,
    until_runs: int,
    seed: int,
    pause: tuple[float, float],
    new_runs: tuple[int, int],
    within: float = 30.0,
) -> int:
    """Start ``start(attempt)`` and SIGKILL it, ``attempts`` times or until ``sb`` holds ``until_runs`` runs; the kills.

    Even attempts die at any instant, start-up included (``pause``: a uniform draw of seconds); odd ones mid-send,
    once a random number of new runs exist (``new_runs``: a draw of ``randint``). ``seed`` makes the moments the same
    on every machine.
    """
    rng = random.Random(seed)
    kills = 0
    for attempt in range(attempts):
        before = ledger_length(sb)
        if before >= until_runs:
            break
        proc = start(attempt)
        if attempt % 2 == 0:
            time.sleep(rng.uniform(*pause))
            kills += kill_9(proc)
        else:
            target = before + rng.randint(*new_runs)
            kills += kill_9_when(proc, lambda target=target: ledger_length(sb) >= target, within=within)
    return kills


def wait_until(proc: Running, condition: Callable[[], bool], *, within: float = 30.0) -> None:
    """Return once ``condition()`` holds, ``proc`` has ended, or ``within`` seconds have passed, whichever is first."""
    deadline = time.monotonic() + within
    while not condition() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
