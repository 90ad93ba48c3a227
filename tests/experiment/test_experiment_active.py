"""A variant's runs live on its own Flow: `sweep` and `on_active = "end"` read and end them there."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import polars as pl

import batch_engage
from batch_engage import Credentials, RunOptions, run
from batch_engage.job import Spec, load_spec
from batch_engage.sandbox import Sandbox
from batch_engage.testing import FakeClock

from conftest import FLOW_SID, make_contacts

FLOW_B = "FW" + "b" * 32
DAY = 86400.0
AB = {
    "holdout": 0.0,
    "variants": [{"name": "A"}, {"name": "B", "flow": FLOW_B}],
}


def weekly(tmp_path: Path, base_url: str, period: str, **send: Any) -> Spec:
    """A weekly job with variants A (the job's Flow) and B (its own Flow) against ``base_url``, for ``period``."""
    raw = {
        "job": {"id": "survey-{week}"},
        "flow": {"sid": FLOW_SID, "api": "executions", "base_url": base_url},
        "mapping": {"to": "phone", "from": "+15005550006", "parameters": {"name": "name"}},
        "send": {"rate": 1000, "concurrency": 8, "reconcile_delay": 0.0} | send,
        "output": {"results": str(tmp_path / "{id}.results.csv"), "checkpoint": str(tmp_path / "{id}.checkpoint")},
        "experiment": AB,
    }
    return load_spec(raw=raw).for_period(period)


def test_sweep_ends_each_variants_runs_on_its_own_flow(
    tmp_path: Path, sandbox_factory: Callable[..., Sandbox], sandbox_creds: Credentials
) -> None:
    """What a user notices: `sweep --older-than 0 --yes` ends B's runs too (not "0 left active" while they stay
    active): every run the job made is ended, on its own Flow."""
    clock = FakeClock()
    sb = sandbox_factory(rate_limit=None, wait_timeout=DAY, wall=clock)
    spec = weekly(tmp_path, sb.url, "2026-W48")
    result = run(spec, frame=make_contacts(40), credentials=sandbox_creds, options=RunOptions(clock=clock))
    assert result.counts["sent"] == 40
    assert set(result.results["variant"]) == {"A", "B"}
    clock.advance(5)
    swept = batch_engage.sweep(spec, credentials=sandbox_creds, older_than=0.0, yes=True)
    assert swept.count("ended") == 40 and swept.exit_code == 0
    assert sb.stats().ended_by_request == 40
    assert {e.flow_sid for e in sb.ledger()} == {FLOW_SID, FLOW_B}


def test_on_active_end_ends_a_variants_earlier_run_on_its_own_flow(
    tmp_path: Path, sandbox_factory: Callable[..., Sandbox], sandbox_creds: Credentials
) -> None:
    """What a user notices: with `on_active = "end"`, last week's B contacts are not left `waiting_active` ("could
    not be read … was not found", exit 75): their runs are ended on B's Flow and everyone is sent this week."""
    clock = FakeClock()
    sb = sandbox_factory(rate_limit=None, wait_timeout=DAY, wall=clock)
    creds, options = sandbox_creds, RunOptions(clock=clock)
    last = run(weekly(tmp_path, sb.url, "2026-W47"), frame=make_contacts(30), credentials=creds, options=options)
    assert last.counts["sent"] == 30
    clock.advance(2)
    spec = weekly(tmp_path, sb.url, "2026-W48", on_active="end", end_active_after="1s")
    result = run(spec, frame=make_contacts(30), credentials=creds, options=options)
    assert result.exit_code == 0 and result.counts["sent"] == 30
    assert sb.stats().ended_by_request == 30
    ended = result.results.filter(pl.col("ended_sid").is_not_null())
    assert set(ended["variant"]) == {"A", "B"} and ended.height == 30
