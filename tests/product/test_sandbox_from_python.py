"""The sandbox from Python is the sandbox: ``sandbox=True`` serves the simulator in-process and asks nothing else."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import polars as pl
import pytest

import batch_engage
from batch_engage import CollectOptions, RunOptions

from conftest import REPO

REAL_LOOKING = {"TWILIO_ACCOUNT_SID": "AC" + "0123456789abcdef" * 2, "TWILIO_AUTH_TOKEN": "f" * 32}
FAST_SEND = "rate = 500\nconcurrency = 8\nreconcile_delay = 0.0"
LOOPBACK = {"127.0.0.1", "localhost", "::1"}


@pytest.fixture
def real_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Credentials in the environment that would open a real account, were they ever used."""
    for name, value in REAL_LOOKING.items():
        monkeypatch.setenv(name, value)


class LoopbackOnly(httpx.AsyncBaseTransport):
    """A transport that refuses every host but loopback, and remembers where each request went."""

    def __init__(self) -> None:
        self.inner = httpx.AsyncHTTPTransport()
        self.hosts: list[str] = []
        self.secrets: list[str] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.hosts.append(request.url.host)
        self.secrets.append(request.headers.get("authorization", ""))
        if request.url.host not in LOOPBACK:
            raise AssertionError(f"a sandbox run asked {request.url.host}")
        return await self.inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self.inner.aclose()


@pytest.fixture
def no_sockets_but_loopback(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Any name lookup or connection to an address other than loopback fails the test (the process's own view)."""
    tried: list[Any] = []
    real_connect, real_lookup = socket.socket.connect, socket.getaddrinfo

    def connect(self: socket.socket, address: Any) -> Any:
        tried.append(address)
        if isinstance(address, tuple) and address[0] not in LOOPBACK:
            raise AssertionError(f"a sandbox run connected to {address}")
        return real_connect(self, address)

    def lookup(host: Any, *args: Any, **kwargs: Any) -> Any:
        if host not in LOOPBACK and host is not None:
            raise AssertionError(f"a sandbox run looked up {host}")
        return real_lookup(host, *args, **kwargs)

    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket, "getaddrinfo", lookup)
    return tried


@pytest.fixture
def live_job(write_job: Callable[..., Path], contacts_csv: Path) -> Path:
    """A job pointed at the real Studio host, as a production job file is."""
    return write_job(input_path=contacts_csv, base_url="https://studio.twilio.com", send=FAST_SEND, extra="[collect]\n")


@pytest.mark.usefixtures("real_env")
class TestSandboxOption:
    def test_run_with_sandbox_option_sends_every_row_to_the_simulator_and_asks_no_other_host(
        self, live_job: Path
    ) -> None:
        """RunOptions(sandbox=True) with real credentials in the environment: all 30 sent, every request to loopback."""
        guard = LoopbackOnly()
        result = batch_engage.run(live_job, options=RunOptions(sandbox=True), transport=guard)
        assert result.counts["sent"] == 30 and result.exit_code == 0
        assert guard.hosts and set(guard.hosts) <= LOOPBACK
        assert not any(REAL_LOOKING["TWILIO_AUTH_TOKEN"] in s for s in guard.secrets)

    def test_run_with_sandbox_option_keeps_its_state_in_the_sandbox_checkpoint(self, live_job: Path) -> None:
        """The rehearsal writes the `.sandbox` checkpoint and results; the live job's files are never made."""
        batch_engage.run(live_job, options=RunOptions(sandbox=True), transport=LoopbackOnly())
        live = batch_engage.load_job(live_job)
        assert Path(live.output.checkpoint + ".sandbox").exists()
        assert not Path(live.output.checkpoint).exists()
        assert not Path(live.output.results).exists()
        assert pl.read_csv(live_job.with_name("job.results.sandbox.csv"))["status"].to_list() == ["sent"] * 30

    def test_run_and_collect_with_sandbox_option_open_no_socket_but_loopback(
        self, live_job: Path, no_sockets_but_loopback: list[Any]
    ) -> None:
        """Without an injected transport, run and collect with sandbox=True connect only to the simulator."""
        assert batch_engage.run(live_job, options=RunOptions(sandbox=True)).counts["sent"] == 30
        collected = batch_engage.collect(live_job, options=CollectOptions(sandbox=True))
        assert collected.outcomes.height == 30
        assert no_sockets_but_loopback and all(a[0] in LOOPBACK for a in no_sockets_but_loopback)

    def test_collect_with_sandbox_option_fetches_from_the_simulator_only(self, live_job: Path) -> None:
        """CollectOptions(sandbox=True) finds the rehearsal's runs on the simulator; no request leaves loopback."""
        batch_engage.run(live_job, options=RunOptions(sandbox=True), transport=LoopbackOnly())
        guard = LoopbackOnly()
        collected = batch_engage.collect(live_job, options=CollectOptions(sandbox=True), transport=guard)
        assert collected.outcomes.height == 30
        assert guard.hosts and set(guard.hosts) <= LOOPBACK

    def test_validate_flow_with_sandbox_reads_the_simulators_flow_only(self, live_job: Path) -> None:
        """validate(..., sandbox=True, flow=True) holds the job against the simulator's Flow, not the real one."""
        guard = LoopbackOnly()
        checked = batch_engage.validate(live_job, sandbox=True, flow=True, transport=guard)
        assert checked.flow is not None
        assert guard.hosts and set(guard.hosts) <= LOOPBACK

    def test_a_configured_simulator_is_still_the_only_studio_asked(self, live_job: Path, tmp_path: Path) -> None:
        """`simulator=SandboxConfig(...)` serves a simulator set up otherwise (here: 429s), and still nothing else."""
        guard = LoopbackOnly()
        simulator = batch_engage.api.SandboxConfig(rate_limit=50.0, state_path=str(tmp_path / "runs.jsonl"))
        result = batch_engage.run(live_job, options=RunOptions(sandbox=True), transport=guard, simulator=simulator)
        assert result.counts["sent"] == 30
        assert set(guard.hosts) <= LOOPBACK
        assert len((tmp_path / "runs.jsonl").read_text().splitlines()) == 30

    def test_sweep_with_sandbox_lists_the_rehearsals_runs_on_the_simulator_only(
        self, write_job: Callable[..., Path], contacts_csv: Path
    ) -> None:
        """sweep(..., sandbox=True) reads the rehearsal's runs from the simulator; no request leaves loopback."""
        job = write_job(input_path=contacts_csv, base_url="https://studio.twilio.com", api="executions", send=FAST_SEND)
        batch_engage.run(job, options=RunOptions(sandbox=True), transport=LoopbackOnly())
        guard = LoopbackOnly()
        batch_engage.sweep(job, sandbox=True, older_than=0.0, transport=guard)
        assert guard.hosts and set(guard.hosts) <= LOOPBACK


_IN_A_NAMESPACE = """
import json, sys
import batch_engage
from batch_engage import CollectOptions, RunOptions
job = sys.argv[1]
run = batch_engage.run(job, options=RunOptions(sandbox=True))
collected = batch_engage.collect(job, options=CollectOptions(sandbox=True))
print(json.dumps({"counts": run.counts, "exit": run.exit_code, "collected": collected.outcomes.height}))
"""


def _unshare_works() -> bool:
    if shutil.which("unshare") is None or shutil.which("ip") is None:
        return False
    return subprocess.run(["unshare", "-n", "true"], capture_output=True, check=False).returncode == 0


def test_sandbox_run_and_collect_finish_inside_a_network_namespace_with_only_loopback(live_job: Path) -> None:
    """In `unshare -n` (no route anywhere but loopback), with real-looking credentials, every row is sent."""
    if not _unshare_works():
        if os.environ.get("CI"):
            pytest.fail("unshare -n is needed under CI to prove the sandbox needs no network")
        pytest.skip("unshare -n is not available here (needs root or user namespaces)")
    script = textwrap.dedent(_IN_A_NAMESPACE)
    env = {**os.environ, **REAL_LOOKING, "PYTHONPATH": str(REPO)}
    inner = f'ip link set lo up && exec "{sys.executable}" -c "$0" "$1"'
    done = subprocess.run(
        ["unshare", "-n", "sh", "-c", inner, script, str(live_job)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    answer = json.loads(done.stdout.strip().splitlines()[-1])
    assert answer == {"counts": answer["counts"], "exit": 0, "collected": 30}
    assert answer["counts"]["sent"] == 30
    runs = Path(batch_engage.load_job(live_job).output.checkpoint + ".sandbox.runs.jsonl").read_text().splitlines()
    assert sum(json.loads(line).get("type") == "run" for line in runs) == 30


@pytest.fixture
def sample_copy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The repository's sample job and data, copied to a scratch folder that is the working directory."""
    shutil.copytree(REPO / "jobs", tmp_path / "jobs")
    shutil.copytree(REPO / "sample_data", tmp_path / "sample_data")
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.mark.usefixtures("real_env")
def test_readme_sandbox_testing_example_runs(sample_copy: Path) -> None:
    """The README's "Testing a pipeline in the sandbox" example runs as written, on the simulator only."""
    readme = (REPO / "README.md").read_text()
    section = readme.split("### Testing a pipeline in the sandbox", 1)[1]
    code = section.split("```python\n", 1)[1].split("```", 1)[0]
    exec(compile(code, "README.md", "exec"), {})  # noqa: S102 - the README's own example
    assert (sample_copy / "out" / "sample_campaign.checkpoint.sandbox").exists()
    assert not (sample_copy / "out" / "sample_campaign.checkpoint").exists()
