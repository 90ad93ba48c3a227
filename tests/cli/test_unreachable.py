"""An unreachable Studio is never silent: a log line names the host within about 10 s, the run gives up after
``send.unreachable_timeout`` with exit 75 saying nothing was sent, and Ctrl-C ends it within 2 s at any point.
Real processes, real sockets on 127.0.0.1, real time: the behaviour under test is how long things take."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import launch
import pytest

from conftest import REPO
from killing import cli_env


@pytest.fixture
def refusing_port() -> int:
    """A port on 127.0.0.1 nothing listens on: connections are refused."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port that accepts connections (the kernel's backlog) and never answers a byte."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(64)
        yield int(s.getsockname()[1])


class _Run:
    """``batch-engage run`` in a process, its stderr lines collected with the time each arrived."""

    def __init__(self, job: Path, env: dict[str, str]) -> None:
        self.started = time.monotonic()
        self.proc = launch.start(
            ["run", str(job), "--log-format", "json"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=REPO,
        )
        self.lines: list[tuple[float, str]] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for raw in self.proc.stderr:
            self.lines.append((time.monotonic() - self.started, raw.decode(errors="replace")))

    def first(self, event: str, within: float) -> tuple[float, dict[str, object]]:
        """The first log line of ``event`` (waiting up to ``within`` s from start): when, and what it said."""
        deadline = self.started + within
        while time.monotonic() < deadline:
            for at, line in list(self.lines):
                if f'"{event}"' in line:
                    return at, json.loads(line)
            time.sleep(0.05)
        raise AssertionError(f"no {event} within {within} s: {[line for _, line in self.lines][-5:]}")

    def finish(self, within: float) -> tuple[int, float, str]:
        """Exit code, seconds from start, stdout."""
        try:
            code = self.proc.wait(timeout=within)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
        took = time.monotonic() - self.started
        self._reader.join(timeout=5)
        assert self.proc.stdout is not None and self.proc.stderr is not None
        out = self.proc.stdout.read().decode()
        self.proc.stdout.close()
        self.proc.stderr.close()
        assert not any("Traceback" in line for _, line in self.lines)
        return code, took, out


# Past the 4 s after which a silent Studio is named, so the name comes first; no longer, because a worker
# waits out every second of it.
GIVE_UP_AFTER = 8.0


def _job(write_job: Callable[..., Path], contacts_csv: Path, port: int) -> Path:
    return write_job(
        input_path=contacts_csv,
        base_url=f"http://127.0.0.1:{port}",
        send=f'rate = 50\nconcurrency = 4\nread_timeout = 15\nunreachable_timeout = "{GIVE_UP_AFTER:g}s"',
    )


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["refused", "silent"])
def test_an_unreachable_studio_is_named_within_10s_and_the_run_ends_75_at_its_timeout(
    kind: str,
    refusing_port: int,
    silent_port: int,
    write_job: Callable[..., Path],
    contacts_csv: Path,
    sandbox_env: dict[str, str],
) -> None:
    """Connection refused, or a port that accepts and never answers: a studio.unreachable line naming the host
    within 10 s; with unreachable_timeout = "8s", exit 75 no sooner than that and within 10 s more, saying nothing
    was sent."""
    port = refusing_port if kind == "refused" else silent_port
    run = _Run(_job(write_job, contacts_csv, port), cli_env(sandbox_env))
    # 10 s of the run, plus the interpreter's start-up (seconds on a loaded machine).
    at, line = run.first("studio.unreachable", within=12)
    assert at <= 12.0
    assert line["host"] == "127.0.0.1"
    assert line["cause"]
    code, took, out = run.finish(within=GIVE_UP_AFTER + 30)
    assert code == 75
    assert GIVE_UP_AFTER <= took <= GIVE_UP_AFTER + 10.0
    assert "nothing was sent" in out


@pytest.mark.slow
@pytest.mark.parametrize("after", [1.0, 4.0])
def test_ctrl_c_while_studio_never_answers_exits_within_2s(
    after: float, silent_port: int, write_job: Callable[..., Path], contacts_csv: Path, sandbox_env: dict[str, str]
) -> None:
    """Studio accepts and never answers; one Ctrl-C (during start-up or while a request hangs) ends the run
    within 2 s with exit 75."""
    run = _Run(_job(write_job, contacts_csv, silent_port), cli_env(sandbox_env))
    while time.monotonic() - run.started < after:
        time.sleep(0.02)  # the behaviour under test is a stop at this moment
    asked = time.monotonic()
    run.proc.send_signal(signal.SIGINT)
    code, _, _ = run.finish(within=20)
    assert code == 75
    assert time.monotonic() - asked <= 2.5
