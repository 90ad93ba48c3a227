"""A rehearsal's simulator: the built-in Studio sandbox, served in-process, that ``sandbox=True`` talks to.

The one path by which the CLI's ``--sandbox`` and the library's ``RunOptions(sandbox=True)``,
``CollectOptions(sandbox=True)`` and ``validate(..., sandbox=True)`` reach a Studio: the job is
pointed at a simulator on the loopback interface and given the simulator's credentials, so
whatever credentials or ``[flow] base_url`` the caller holds, nothing else is ever asked.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from contextlib import contextmanager

from ..checkpoint import is_postgres
from ..credentials import Credentials, credentials_from_env
from ..errors import UsageError
from ..job import Spec
from ..sandbox import SANDBOX_PASSWORD, SANDBOX_USERNAME, SandboxConfig

__all__ = ["SANDBOX_RUN_LIFETIME", "real", "sandbox_config", "sandbox_credentials", "sandbox_state_path", "simulated"]

SANDBOX_RUN_LIFETIME = 5.0
"""Seconds a ``--sandbox`` run lives before it ends with answers: short, so a demo shows them coming back."""


def sandbox_state_path(spec: Spec) -> str:
    """Where ``--sandbox`` keeps the runs of ``spec``'s rehearsal: ``<rehearsal checkpoint>.runs.jsonl``.

    ``run --sandbox`` and ``collect --sandbox`` both call this, so the second finds the first's runs.
    """
    return spec.rehearsal().output.checkpoint + ".runs.jsonl"


def sandbox_config(spec: Spec) -> SandboxConfig:
    """What ``--sandbox`` serves for ``spec``'s rehearsal: runs kept in :func:`sandbox_state_path`, ending soon."""
    state = sandbox_state_path(spec)
    # A PostgreSQL checkpoint keeps nothing on disk, and collect (the reader of these runs) refuses it.
    return SandboxConfig(state_path=None if is_postgres(state) else state, run_lifetime=SANDBOX_RUN_LIFETIME)


def sandbox_credentials() -> Credentials:
    """The credentials the built-in simulator takes (they open nothing anywhere else)."""
    return Credentials(SANDBOX_USERNAME, SANDBOX_PASSWORD)


@contextmanager
def simulated(
    spec: Spec, *, keep_runs: bool = True, config: SandboxConfig | None = None
) -> Iterator[tuple[Spec, Credentials]]:
    """Serve the simulator for the rehearsal ``spec``; yield the rehearsal pointed at it, and its credentials.

    ``keep_runs`` keeps the runs beside the rehearsal's checkpoint, so a later ``run`` or
    ``collect`` with ``sandbox`` (in another process too) finds the same runs, as Studio would.
    ``config`` serves another simulator instead (its faults, its pace, its state file): still
    in-process, still the only Studio the job talks to.
    """
    from ..sandbox import Sandbox  # noqa: PLC0415 - it loads aiohttp, which only --sandbox needs

    if config is None:
        config = sandbox_config(spec) if keep_runs else SandboxConfig()
    rehearsal = spec.rehearsal()
    try:
        simulator = Sandbox(config)
        url = simulator.start()
    except ValueError as exc:  # a state file that is not the sandbox's
        raise UsageError(f"sandbox: {exc}") from None
    try:
        flow = dataclasses.replace(rehearsal.flow, base_url=url)
        yield dataclasses.replace(rehearsal, flow=flow), sandbox_credentials()
    finally:
        simulator.stop()


@contextmanager
def real(spec: Spec, credentials: Credentials | None) -> Iterator[tuple[Spec, Credentials]]:
    """The job as given, with the caller's credentials (else the environment's): :func:`simulated`'s twin."""
    yield spec, credentials if credentials is not None else credentials_from_env()
