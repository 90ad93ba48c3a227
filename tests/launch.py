"""``batch-engage`` as a process of its own, for every test that needs one (to SIGKILL it, signal it, run two at
once, or read what the command prints): :func:`start` is ``subprocess.Popen``, :func:`run` is ``subprocess.run``.

Each process is forked from a server that has imported the package already (``forkserver.py``, one for the
run, shared by its workers): the 0.4-0.5 s of CPU a command spends importing cost the suite some 30 s of CPU.
The child is a real process all the same (its own pid, descriptors, environment, folder and exit status),
running what ``python -m batch_engage ARGS`` runs. ``BATCH_ENGAGE_TEST_EXEC=1`` starts each with ``python -m batch_engage``
instead: the suite passes both ways. The tests of the interpreter's own behaviour (a full disk under stdout with
``PYTHONUNBUFFERED``, a profiler, a terminal) start ``python`` themselves.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import select
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Protocol

__all__ = ["FORKED", "PIPE", "Running", "run", "start"]

PIPE = subprocess.PIPE
DEVNULL = subprocess.DEVNULL
STDOUT = subprocess.STDOUT
FORKED = os.environ.get("BATCH_ENGAGE_TEST_EXEC") != "1" and hasattr(os, "pidfd_open") and hasattr(socket, "send_fds")
_SERVER = Path(__file__).with_name("forkserver.py")


class Running(Protocol):
    """What the tests use of a started process: ``subprocess.Popen``'s names, for a forked or an exec'd one."""

    pid: int
    returncode: Any
    stdin: IO[Any] | None
    stdout: IO[Any] | None
    stderr: IO[Any] | None

    def poll(self) -> int | None: ...
    def wait(self, timeout: float | None = None) -> int: ...
    def send_signal(self, sig: int) -> None: ...
    def terminate(self) -> None: ...
    def kill(self) -> None: ...
    def communicate(self, input: Any = None, timeout: float | None = None) -> tuple[Any, Any]: ...


def start(
    args: list[str],
    *,
    env: dict[str, str] | None = None,
    cwd: str | Path | None = None,
    stdin: int | IO[Any] | None = None,
    stdout: int | IO[Any] | None = None,
    stderr: int | IO[Any] | None = None,
    text: bool = False,
) -> Running:
    """``batch-engage ARGS`` started, as ``subprocess.Popen([python, "-m", "batch_engage", *ARGS], ...)`` would."""
    if not FORKED:
        return subprocess.Popen(
            [sys.executable, "-m", "batch_engage", *args],
            env=env,
            cwd=cwd,
            stdin=stdin,
            stdout=stdout,
            stderr=stderr,
            text=text,
        )
    return _Forked(args, env=env, cwd=cwd, stdin=stdin, stdout=stdout, stderr=stderr, text=text)


def run(
    args: list[str],
    *,
    env: dict[str, str] | None = None,
    cwd: str | Path | None = None,
    input: bytes | str | None = None,
    capture_output: bool = False,
    stdout: int | IO[Any] | None = None,
    stderr: int | IO[Any] | None = None,
    text: bool = False,
    timeout: float | None = None,
) -> subprocess.CompletedProcess[Any]:
    """``batch-engage ARGS`` to its end, as ``subprocess.run([python, "-m", "batch_engage", *ARGS], ...)`` would."""
    if capture_output:
        stdout = stderr = PIPE
    proc = start(
        args, env=env, cwd=cwd, stdin=PIPE if input is not None else None, stdout=stdout, stderr=stderr, text=text
    )
    try:
        out, err = proc.communicate(input, timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        raise
    return subprocess.CompletedProcess(["batch-engage", *args], proc.wait(), out, err)


class _Forked:
    """A child of the run's fork server, answering as ``subprocess.Popen`` does."""

    def __init__(
        self,
        args: list[str],
        *,
        env: dict[str, str] | None,
        cwd: str | Path | None,
        stdin: int | IO[Any] | None,
        stdout: int | IO[Any] | None,
        stderr: int | IO[Any] | None,
        text: bool,
    ) -> None:
        self.args = ["batch-engage", *args]
        self.returncode: int | None = None
        self._text = text
        self._readers: list[threading.Thread] = []
        self._read: dict[str, Any] = {}
        theirs: list[int] = []  # the child's ends, closed here once sent (as Popen closes them after its fork)
        child_in, self.stdin = self._end(stdin, 0, "w", theirs)
        child_out, self.stdout = self._end(stdout, 1, "r", theirs)
        if stderr == STDOUT:
            child_err, self.stderr = child_out, None
        else:
            child_err, self.stderr = self._end(stderr, 2, "r", theirs)
        request = {"argv": list(args), "env": dict(os.environ if env is None else env), "cwd": str(cwd or os.getcwd())}
        self._conn = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            self._conn.connect(_server())
            socket.send_fds(self._conn, [json.dumps(request).encode()], [child_in, child_out, child_err])
            self.pid: int = json.loads(self._conn.recv(4096))["pid"]
        except BaseException:
            # No child holds the other ends: ours would only leak (a test that retries would run out of descriptors).
            for mine in (self.stdin, self.stdout, self.stderr, self._conn):
                if mine is not None:
                    mine.close()
            raise
        finally:
            for fd in theirs:
                os.close(fd)

    def _end(
        self, spec: int | IO[Any] | None, inherited: int, mode: str, theirs: list[int]
    ) -> tuple[int, IO[Any] | None]:
        if spec is None:
            return inherited, None
        if spec == PIPE:
            read, write = os.pipe()
            mine, child = (write, read) if mode == "w" else (read, write)
            theirs.append(child)
            return child, open(mine, mode + ("" if self._text else "b"))
        if spec == DEVNULL:
            fd = os.open(os.devnull, os.O_RDWR)
            theirs.append(fd)
            return fd, None
        if isinstance(spec, int):
            return spec, None
        return spec.fileno(), None

    def poll(self) -> int | None:
        """The exit status if the child has ended, else None."""
        if self.returncode is None and select.select([self._conn], [], [], 0)[0]:
            self._collect()
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        """The exit status, once the child ends; ``subprocess.TimeoutExpired`` after ``timeout`` seconds."""
        if self.returncode is None:
            if not select.select([self._conn], [], [], timeout)[0]:
                raise subprocess.TimeoutExpired(self.args, timeout or 0)
            self._collect()
        assert self.returncode is not None
        return self.returncode

    def _collect(self) -> None:
        answer = self._conn.recv(4096)
        if not answer:
            raise RuntimeError("the fork server ended before this child did")
        self.returncode = json.loads(answer)["returncode"]
        self._conn.close()

    def send_signal(self, sig: int) -> None:
        """Signal the child unless it has been seen to end (its pid may be another process's by then)."""
        if self.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, sig)

    def terminate(self) -> None:
        """SIGTERM."""
        self.send_signal(15)

    def kill(self) -> None:
        """SIGKILL."""
        self.send_signal(9)

    def communicate(self, input: Any = None, timeout: float | None = None) -> tuple[Any, Any]:
        """Send ``input``, read stdout and stderr to their ends, wait: ``(out, err)``, as ``Popen.communicate``."""
        deadline = None if timeout is None else time.monotonic() + timeout
        if not self._readers:
            if self.stdin is not None:
                self._readers.append(threading.Thread(target=self._feed, args=(self.stdin, input), daemon=True))
            for name, stream in (("out", self.stdout), ("err", self.stderr)):
                if stream is not None:
                    self._readers.append(threading.Thread(target=self._drain, args=(name, stream), daemon=True))
            for reader in self._readers:
                reader.start()
        for reader in self._readers:
            reader.join(None if deadline is None else max(0.0, deadline - time.monotonic()))
            if reader.is_alive():
                raise subprocess.TimeoutExpired(self.args, timeout or 0)
        self.wait(None if deadline is None else max(0.0, deadline - time.monotonic()))
        return self._read.get("out"), self._read.get("err")

    def _feed(self, stream: IO[Any], data: Any) -> None:
        try:
            if data:
                stream.write(data)
            stream.close()
        except BrokenPipeError:
            pass

    def _drain(self, name: str, stream: IO[Any]) -> None:
        self._read[name] = stream.read()
        stream.close()

    def __enter__(self) -> _Forked:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        for stream in (self.stdin, self.stdout, self.stderr):
            if stream is not None and not stream.closed:
                stream.close()
        self.wait()


# The run's one fork server: its socket, for every worker of the run (they inherit the controller's environment).
SERVER_VARIABLE = "BATCH_ENGAGE_TEST_FORK_SERVER"
_lock = threading.Lock()


def start_server() -> None:
    """Start the run's fork server, once, before the workers start (``pytest_configure``): they share it."""
    if FORKED and SERVER_VARIABLE not in os.environ:
        os.environ[SERVER_VARIABLE] = _spawn()


def _server() -> str:
    """The path of the fork server's socket; one is started here if the run has none (the tests run another way)."""
    with _lock:
        if SERVER_VARIABLE not in os.environ:
            os.environ[SERVER_VARIABLE] = _spawn()
        return os.environ[SERVER_VARIABLE]


def _spawn() -> str:
    path = os.path.join(tempfile.mkdtemp(prefix="be-fork-"), "socket")
    server = subprocess.Popen([sys.executable, str(_SERVER), path], stdin=PIPE, stdout=PIPE, cwd=_SERVER.parent)
    assert server.stdout is not None
    if server.stdout.readline() != b"ready\n":
        raise RuntimeError("the fork server did not start")
    atexit.register(_stop, server)
    return path


def _stop(server: subprocess.Popen[bytes]) -> None:
    assert server.stdin is not None
    server.stdin.close()  # the server ends at the end of its stdin
    try:
        server.wait(timeout=10)
    except subprocess.TimeoutExpired:
        server.kill()
