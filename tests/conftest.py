"""Shared fixtures (a clean environment, the sandbox over loopback, job files in tmp_path) and how the
suite runs in parallel: worker count, slow tests first, one Chromium per run, Hypothesis without deadlines.
"""

from __future__ import annotations

import atexit
import compileall
import functools
import gc
import os
import sys
import tempfile
import textwrap
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import launch
import polars as pl
import pytest
import structlog
from hypothesis import HealthCheck, settings

from batch_engage.credentials import Credentials
from batch_engage.sandbox import SANDBOX_PASSWORD, SANDBOX_USERNAME, Sandbox, SandboxConfig

# pytest keeps each test module's assertion-rewritten bytecode beside it unless told not to write bytecode
# (PYTHONDONTWRITEBYTECODE, set on CI-like machines): then every xdist worker parses and rewrites all 190
# test files again, 3 s of CPU each. The suite's own caches are written anyway (``tests/__pycache__``,
# ignored by git); the package is compiled once in ``pytest_configure``. The xdist workers inherit the
# environment, not this flag, and import the plugins (anyio, hypothesis, xdist: rewritten too, as pytest
# plugins' packages) before this file: without the variable they keep those rewrites as well.
sys.dont_write_bytecode = False
os.environ.pop("PYTHONDONTWRITEBYTECODE", None)

# At exit the interpreter runs the cyclic collector over everything a process still holds: a worker's heap
# after some two hundred tests took 0.2-0.5 s of CPU to walk, six workers at once at the very end of every
# run. Frozen objects are left to the operating system; atexit runs its handlers last in, first out, so
# every handler registered after this one (the fork server's stop among them) still runs first.
atexit.register(gc.freeze)

FLOW_SID = "FW0123456789abcdef0123456789abcdef"
REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
OAI_DIR = SHARED / "twilio-oai"

# Workers share the cores, so one example's wall time says nothing about the code under test:
# a per-example deadline or a "too slow" health check would fail a correct test under load.
settings.register_profile("parallel", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("parallel")

# Three workers a core: most of the suite waits on loopback servers and subprocesses, not on the CPU
# (on 2 cores, 6 workers leave the CPU idle a tenth of the time where 4 leave it idle a fifth).
# At most 8: each worker's PostgreSQL tests hold a few connections (plus their subprocesses'), the
# server's default max_connections is 100, and every worker pays the start-up imports again.
WORKERS_PER_CORE = 3
MAX_WORKERS = 8


def pytest_configure(config: pytest.Config) -> None:
    """The package byte-compiled once, before any worker or CLI subprocess imports it; the CLI's fork server started.

    Under PYTHONDONTWRITEBYTECODE every worker and every ``batch-engage`` subprocess of the suite would
    otherwise compile its 150 modules again: 0.15 s of CPU each, some hundred times a run. pip leaves an
    installed package compiled, so this is what a user runs.
    """
    if not hasattr(config, "workerinput"):  # xdist's workers find it done
        compileall.compile_dir(REPO / "batch_engage", quiet=2)
        launch.start_server()  # one for the run: its imports are paid once, not once a worker
        groups = tempfile.NamedTemporaryFile(prefix="be-test-groups-", suffix=".txt", delete=False)  # noqa: SIM115
        groups.close()
        atexit.register(os.unlink, groups.name)
        os.environ[TEST_GROUPS] = groups.name  # the workers are started after this, with this environment


@pytest.hookimpl(optionalhook=True)  # xdist's hooks: only called when it is installed
def pytest_xdist_auto_num_workers(config: pytest.Config) -> int:
    """``-n auto``: three a usable core, at most MAX_WORKERS; PYTEST_XDIST_AUTO_NUM_WORKERS overrides."""
    if os.environ.get("PYTEST_XDIST_AUTO_NUM_WORKERS", "").isdigit():
        return int(os.environ["PYTEST_XDIST_AUTO_NUM_WORKERS"])
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return min(MAX_WORKERS, WORKERS_PER_CORE * cores)


# Which tests share a worker is told by their fixtures, which xdist's controller cannot see (it has node IDs;
# its own xdist_group mark is lost under pytest 9.2, pytest-xdist issue 1386): each worker writes the groups to
# the file named here as it collects (they all collect the same tests), and the scheduler reads it.
TEST_GROUPS = "BATCH_ENGAGE_TEST_GROUPS"
# Groups whose tests run together on one worker, as one unit of work.
GROUPS = {
    # One headless Chromium a run (a module fixture): slow to start, and its first page must not be a test's.
    "chromium",
    # Twilio's OpenAPI descriptions: openapi_core's import and their parse cost each worker that reads them a
    # third of a second of CPU, so one worker reads them for the run (the tests' CPU: 2.2 s a run, now 0.55 s).
    "openapi",
}


def _group(item: pytest.Item) -> str | None:
    """The one of GROUPS a test belongs to, if any."""
    names = getattr(item, "fixturenames", ())
    if "browser" in names:
        return "chromium"
    return "openapi" if "twilio_oai" in names else None


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """One test at a time to whichever worker is free, but each of GROUPS kept together on one worker."""
    from xdist.scheduler import LoadScopeScheduling

    class OneAtATime(LoadScopeScheduling):  # type: ignore[misc]
        groups: dict[str, str] | None = None

        def _split_scope(self, nodeid: str) -> str:
            if self.groups is None:  # read once, after every worker has reported its collection
                lines = Path(os.environ[TEST_GROUPS]).read_text().splitlines()
                self.groups = dict(line.rsplit(" ", 1) for line in lines)
            return self.groups.get(nodeid, nodeid)

    return OneAtATime(config, log)


# One slow test every SLOW_STRIDE others: see pytest_collection_modifyitems.
SLOW_STRIDE = 30


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Slow tests start in the first half of a parallel run, one every SLOW_STRIDE others; under xdist, each
    test's group written for the scheduler.

    Early, so that none is left running alone at the end. Spread, because a slow test mostly waits (a lease, a
    timeout, a lock held on the real clock): all of them first left five of six workers waiting and the cores
    idle, and xdist hands each worker two tests at a time, so two of them ran one after the other on one worker.
    """
    slow = [item for item in items if item.get_closest_marker("slow") is not None]
    rest = [item for item in items if item.get_closest_marker("slow") is None]
    items[:] = []
    for at, item in enumerate(slow):
        items.append(item)
        items.extend(rest[at * SLOW_STRIDE : (at + 1) * SLOW_STRIDE])
    items.extend(rest[len(slow) * SLOW_STRIDE :])
    if hasattr(config, "workerinput") and TEST_GROUPS in os.environ:
        groups = "".join(f"{item.nodeid} {group}\n" for item in items if (group := _group(item)) is not None)
        written = Path(f"{os.environ[TEST_GROUPS]}.{config.workerinput['workerid']}")
        written.write_text(groups)
        written.replace(os.environ[TEST_GROUPS])  # whole, whichever worker writes last


def absent(reason: str) -> NoReturn:
    """Skip the test for want of a server or folder (``reason``), or fail it when ``CI`` is set (CI has them all)."""
    if os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no"):
        pytest.fail(f"{reason}; CI is set, so it must be there")
    pytest.skip(reason)


def unique_name() -> str:
    """A database or schema name no other test uses; the worker's name in it tells whose a leftover is."""
    return f"t_{os.environ.get('PYTEST_XDIST_WORKER', 'main')}_{uuid.uuid4().hex[:12]}"


def shared_folder(path: Path) -> Path:
    """``path`` when it exists; otherwise skip the test, or fail it when ``CI`` is set (CI has ../shared)."""
    if not path.is_dir():
        absent(f"{path} is absent (Twilio's OpenAPI files live in ../shared beside the clone)")
    return path


@pytest.fixture
def twilio_oai() -> Path:
    """The folder of Twilio's Studio OpenAPI descriptions (skips without it, fails without it under CI)."""
    return shared_folder(OAI_DIR)


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No test depends on the developer's shell: every TWILIO_* variable is cleared."""
    for name in list(os.environ):
        if name.startswith("TWILIO_"):
            monkeypatch.delenv(name)


@pytest.fixture(autouse=True)
def _reset_logging() -> Iterator[None]:
    """The CLI configures structlog for the process; undo it so one test's streams never leak into the next."""
    yield
    structlog.reset_defaults()


@pytest.fixture
def sandbox_factory() -> Iterator[Callable[..., Sandbox]]:
    """Start sandboxes with the given config; all are stopped after the test."""
    started: list[Sandbox] = []

    def make(**config: Any) -> Sandbox:
        config.setdefault("latency", 0.0)
        config.setdefault("jitter", 0.0)
        config.setdefault("seed", 7)
        sb = Sandbox(SandboxConfig(**config))
        sb.start()
        started.append(sb)
        return sb

    yield make
    for sb in started:
        sb.stop()


@pytest.fixture
def sandbox(sandbox_factory: Callable[..., Sandbox]) -> Sandbox:
    """A sandbox with no latency and no rate limit: fast, for behaviour tests."""
    return sandbox_factory(rate_limit=None)


@pytest.fixture
def sandbox_creds() -> Credentials:
    """Credentials the sandbox accepts."""
    return Credentials(SANDBOX_USERNAME, SANDBOX_PASSWORD)


@pytest.fixture
def sandbox_env(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """TWILIO_ACCOUNT_SID/TWILIO_AUTH_TOKEN set to the sandbox's credentials."""
    monkeypatch.setenv("TWILIO_ACCOUNT_SID", SANDBOX_USERNAME)
    monkeypatch.setenv("TWILIO_AUTH_TOKEN", SANDBOX_PASSWORD)
    return {"TWILIO_ACCOUNT_SID": SANDBOX_USERNAME, "TWILIO_AUTH_TOKEN": SANDBOX_PASSWORD}


def make_contacts(n: int, *, start: int = 100) -> pl.DataFrame:
    """``n`` distinct valid contacts with a text, a number and a nested parameter."""
    return pl.DataFrame(
        {
            "phone": [f"+1415555{start + i:04d}" for i in range(n)],
            "name": [f"Person {i}" for i in range(n)],
            "visits": list(range(n)),
        }
    )


@pytest.fixture
def contacts_csv(tmp_path: Path) -> Path:
    """A CSV of 30 valid, distinct contacts."""
    path = tmp_path / "contacts.csv"
    make_contacts(30).write_csv(path)
    return path


@pytest.fixture
def write_job(tmp_path: Path) -> Callable[..., Path]:
    """Write a job file into tmp_path; keyword sections replace or extend the defaults."""

    def write(
        *,
        input_path: Path | str,
        base_url: str = "http://127.0.0.1:9",
        api: str = "engagements",
        extra: str = "",
        send: str = "rate = 500\nconcurrency = 8\nreconcile_delay = 0.0\nsettle_after = 0.0",
        mapping: str = 'to = "phone"\nfrom = "+15005550006"\n\n[mapping.parameters]\nname = "name"\nvisits = "visits"',
        name: str = "job",
    ) -> Path:
        text = textwrap.dedent(
            f"""
            [input]
            path = "{input_path}"

            [flow]
            sid = "{FLOW_SID}"
            api = "{api}"
            base_url = "{base_url}"

            [mapping]
            {{mapping}}

            [send]
            {{send}}

            [output]
            results = "{tmp_path / (name + ".results.csv")}"
            checkpoint = "{tmp_path / (name + ".checkpoint")}"
            """
        ).format(mapping=mapping, send=send)
        path = tmp_path / f"{name}.toml"
        path.write_text(text + "\n" + extra)
        return path

    return write


@pytest.fixture
def job_for(
    write_job: Callable[..., Path], contacts_csv: Path, sandbox_env: dict[str, str], tmp_path: Path
) -> Callable[..., Path]:
    """Write a job against the sandbox (or base URL) ``at``, with the sandbox's credentials in the environment: the 30
    contacts of ``contacts_csv``, ``contacts=n`` others (written to c.csv) or ``input_path``; other keywords as
    ``write_job``'s."""

    def write(at: Sandbox | str, *, contacts: int | None = None, **sections: Any) -> Path:
        if contacts is not None:
            sections["input_path"] = tmp_path / "c.csv"
            make_contacts(contacts).write_csv(sections["input_path"])
        base_url = at if isinstance(at, str) else at.url
        return write_job(**{"input_path": contacts_csv} | sections, base_url=base_url)

    return write


@pytest.fixture
def job(sandbox: Sandbox, job_for: Callable[..., Path]) -> Path:
    """The job most CLI tests start from: the 30 contacts of ``contacts_csv`` against ``sandbox``, whose credentials
    the environment holds."""
    return job_for(sandbox)


@pytest.fixture
def query_job(sandbox: Sandbox, job_for: Callable[..., Path]) -> Callable[..., Path]:
    """``query_job(uri, query)``: a job against ``sandbox`` whose [input] is ``uri`` + ``query`` instead of a file."""

    def write(uri: str, query: str, **sections: Any) -> Path:
        job = job_for(sandbox, input_path="PLACEHOLDER", **sections)
        job.write_text(job.read_text().replace('path = "PLACEHOLDER"', f'uri = "{uri}"\nquery = "{query}"'))
        return job

    return write


@pytest.fixture
def make_spec(tmp_path: Path) -> Callable[..., Any]:
    """Build a Spec for a frame-fed job against ``base_url``; ``send`` keys override fast defaults."""
    from batch_engage.job import load_spec

    def make(base_url: str, *, api: str = "engagements", name: str = "job", **send: Any) -> Any:
        send_table = {"rate": 1000, "concurrency": 8, "reconcile_delay": 0.0, "settle_after": 0.0} | send
        raw = {
            "flow": {"sid": FLOW_SID, "api": api, "base_url": base_url},
            "mapping": {"to": "phone", "from": "+15005550006", "parameters": {"name": "name", "visits": "visits"}},
            "send": send_table,
            "output": {
                "results": str(tmp_path / f"{name}.results.csv"),
                "checkpoint": str(tmp_path / f"{name}.checkpoint"),
            },
        }
        return load_spec(raw=raw)

    return make


@dataclass(frozen=True)
class Rig:
    """What a frame-fed job's test against the simulator takes: start one, a Spec for it, the credentials it accepts."""

    sandbox: Callable[..., Sandbox]
    spec: Callable[..., Any]
    creds: Credentials


@pytest.fixture
def rig(sandbox_factory: Callable[..., Sandbox], make_spec: Callable[..., Any], sandbox_creds: Credentials) -> Rig:
    """``sandbox_factory``, ``make_spec`` and ``sandbox_creds`` as one: ``rig.sandbox(...)``, ``rig.spec(url)``, ``rig.creds``."""
    return Rig(sandbox_factory, make_spec, sandbox_creds)


def cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """Run the CLI in-process: exit code, stdout, stderr; no output may hold a traceback."""
    from batch_engage.cli.main import main

    code = main(args)
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    return code, out, err


def digest_follows_the_rows(spec: Any, change_a_row: Callable[[], None]) -> None:
    """A query input's digest stays while its rows do (a resumed job matches its checkpoint), and changes with them."""
    from batch_engage.inputs import read_query

    first = read_query(spec).digest
    assert read_query(spec).digest == first
    change_a_row()
    assert read_query(spec).digest != first


@functools.cache
def twilio_specs(folder: Path) -> dict[str, Any]:
    """Twilio's Studio v1 and v2 descriptions, parsed once per worker (each parse takes a quarter second)."""
    from openapi_core import OpenAPI

    return {v: OpenAPI.from_path(folder / f"twilio_studio_{v}.yaml") for v in ("v1", "v2")}
