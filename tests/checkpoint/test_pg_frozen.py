"""A frozen PostgreSQL: the connection stays open and nothing answers (a proxy in front of the server stops
forwarding). A stop must still end the run within about 2 s with exit 75, and the next run on a healthy
connection must finish with nobody reached twice (counted in the sandbox's ledger)."""

from __future__ import annotations

import signal
import socket
import textwrap
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import urlsplit

import launch
import pytest

from batch_engage.sandbox import Sandbox

from conftest import FLOW_SID, make_contacts
from killing import cli_env, ledger_length, start_run
from pg import Schema, fresh_schema

ROWS = 600


class FreezingProxy:
    """A TCP proxy to the test server that can stop forwarding (its sockets stay open, as a frozen server's)."""

    def __init__(self, host: str, port: int) -> None:
        self._target = (host, port)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self._listener.getsockname()[1])
        self.frozen = threading.Event()
        self._closed = threading.Event()
        self._sockets: list[socket.socket] = [self._listener]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(self._target)
            self._sockets += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        source.settimeout(0.05)
        while not self._closed.is_set():
            if self.frozen.is_set():
                self._closed.wait(0.05)
                continue
            try:
                data = source.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                return
            if not data:
                return
            try:
                sink.sendall(data)
            except OSError:
                return

    def close(self) -> None:
        """Stop and close every socket: the server sees its sessions end."""
        self._closed.set()
        for s in self._sockets:
            s.close()


@pytest.fixture
def pg_schema() -> Iterator[Schema]:
    """A schema of this test's own on the test server."""
    with fresh_schema() as schema:
        yield schema


def _job(folder: Path, contacts: Path, sb: Sandbox, checkpoint: str) -> Path:
    path = folder / "job.toml"
    path.write_text(
        textwrap.dedent(
            f"""
            [job]
            id = "frozen"

            [input]
            path = "{contacts}"

            [flow]
            sid = "{FLOW_SID}"
            api = "engagements"
            base_url = "{sb.url}"

            [mapping]
            to = "phone"
            from = "+15005550006"

            [send]
            rate = 300
            concurrency = 4
            reconcile_delay = 0.1
            settle_after = 1.0

            [output]
            results = "{folder / "results.csv"}"
            checkpoint = "{checkpoint}"
            """
        )
    )
    return path


@pytest.mark.slow
def test_sigterm_with_postgresql_frozen_ends_within_2s_with_75_and_the_next_run_finishes_once_each(
    pg_schema: Schema, sandbox_factory: Callable[..., Sandbox], sandbox_env: dict[str, str], tmp_path: Path
) -> None:
    """The proxy in front of PostgreSQL stops forwarding mid-send; SIGTERM: exit 75 within 2 s, no traceback.
    The next run, straight to the server, finishes (exit 0) and every contact has exactly one run."""
    sb = sandbox_factory(rate_limit=None, active_rule=False)
    contacts = tmp_path / "contacts.csv"
    make_contacts(ROWS).write_csv(contacts)
    server = urlsplit(pg_schema.url)
    proxy = FreezingProxy(server.hostname or "127.0.0.1", server.port or 5432)
    try:
        through_proxy = pg_schema.history_url.replace(server.netloc, f"{server.username}@127.0.0.1:{proxy.port}")
        env = cli_env(sandbox_env)
        proc = start_run(_job(tmp_path, contacts, sb, through_proxy), env)
        deadline = time.monotonic() + 60
        while ledger_length(sb) < ROWS // 4 and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)  # polling for a condition, not sleeping to make timing work
        proxy.frozen.set()
        time.sleep(1.0)  # the behaviour under test: calls hang on the frozen connection for a while
        asked = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=30)
        took = time.monotonic() - asked
        assert proc.stderr is not None
        err = proc.stderr.read().decode()
        proc.stderr.close()
        assert code == 75, err[-3000:]
        assert took <= 2.0, took
        assert "did not answer after the stop" in err
        assert "Traceback" not in err
    finally:
        proxy.close()
    done = launch.run(
        ["run", str(_job(tmp_path, contacts, sb, pg_schema.history_url))],
        env=env,
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=180,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    per_contact = Counter(e.to for e in sb.ledger() if e.source == "rest")
    assert len(per_contact) == ROWS
    assert max(per_contact.values()) == 1
