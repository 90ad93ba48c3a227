"""``validate --flow`` and ``status`` for a job with variants: each variant's Flow and first message, the split."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from batch_engage import Credentials, run, status, validate
from batch_engage.sandbox import Sandbox

from conftest import cli, make_contacts

FLOW_B = "FW" + "b" * 32
EXPERIMENT = f"""
[experiment]
holdout = 0.2

[[experiment.variants]]
name = "A"
parameters = {{ city = "Oslo" }}

[[experiment.variants]]
name = "B"
flow = "{FLOW_B}"
parameters = {{ city = "Rome" }}
"""


@pytest.fixture
def job(sandbox: Sandbox, write_job: Callable[..., Path], tmp_path: Path) -> Path:
    path = tmp_path / "contacts.csv"
    make_contacts(50).write_csv(path)
    return write_job(input_path=path, base_url=sandbox.url, extra=EXPERIMENT)


def test_validate_flow_renders_each_variants_first_message_and_warns_about_shared_replies(
    job: Path, sandbox_creds: Credentials
) -> None:
    """Each variant's Flow is held against its own rows: its first message shows its own Parameters; both
    Flows wait for replies from one sender, so B is named as the variant whose replies go elsewhere."""
    with capture_logs() as logs:
        found = validate(job, credentials=sandbox_creds, flow=True)
    assert set(found.variant_flows) == {"A", "B"}
    assert found.variant_flows["A"].samples and all("from Oslo" in s for s in found.variant_flows["A"].samples)
    assert found.variant_flows["B"].samples and all("from Rome" in s for s in found.variant_flows["B"].samples)
    [warning] = found.flow_warnings
    assert "variant B's replies go elsewhere" in warning
    assert [e["message"] for e in logs if e["event"] == "experiment.replies"] == [warning]


def test_validate_flow_on_the_command_line_shows_each_variant(
    job: Path, sandbox_env: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    """`validate --flow` prints a block per variant (its first messages) and the replies warning."""
    code, out, _ = cli(["validate", str(job), "--flow"], capsys)
    assert code == 0
    assert "variant A:" in out and "variant B:" in out
    assert "from Oslo" in out and "from Rome" in out
    assert "warning: variants A and B send from" in out


def test_the_run_warns_about_shared_replies_and_status_shows_the_split(
    job: Path, sandbox_creds: Credentials, sandbox_env: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    """The preflight gives the same warning; `status` lists each variant with its contacts by status."""
    with capture_logs() as logs:
        result = run(job, credentials=sandbox_creds)
    assert result.exit_code == 0 and result.counts["holdout"] > 0
    assert any(e["event"] == "experiment.replies" for e in logs)
    state = status(job)
    assert set(state.variants) == {"A", "B", "holdout"} and list(state.variants)[-1] == "holdout"
    assert state.variants["holdout"] == {"holdout": result.counts["holdout"]}
    assert sum(sum(v.values()) for v in state.variants.values()) == 50
    code, out, _ = cli(["status", str(job)], capsys)
    assert code == 0
    assert f"variant holdout: {result.counts['holdout']} (holdout {result.counts['holdout']})" in out
    assert "variant A: " in out and "variant B: " in out


def test_holdout_counts_claims_the_holdout_in_the_history_as_if_contacted(
    sandbox: Sandbox, write_job: Callable[..., Path], tmp_path: Path, sandbox_creds: Credentials
) -> None:
    """With holdout_counts = true, another job under a cap sees the held-out contacts as reached (capped)."""
    path = tmp_path / "contacts.csv"
    make_contacts(40).write_csv(path)
    history = tmp_path / "history.db"
    extra = f'[history]\npath = "{history}"\ncap = "1 per 7d"\n' + EXPERIMENT.replace(
        "holdout = 0.2", "holdout = 0.2\nholdout_counts = true"
    )
    first = run(write_job(input_path=path, base_url=sandbox.url, extra=extra), credentials=sandbox_creds)
    held = first.counts["holdout"]
    assert held > 0
    second_extra: Any = f'[history]\npath = "{history}"\ncap = "1 per 7d"\n'
    second = run(
        write_job(input_path=path, base_url=sandbox.url, extra=second_extra, name="other"), credentials=sandbox_creds
    )
    assert second.counts["capped"] == 40 and second.counts["sent"] == 0


def test_a_flow_cap_is_checked_against_each_variants_own_flow(
    sandbox: Sandbox, write_job: Callable[..., Path], tmp_path: Path, sandbox_creds: Credentials
) -> None:
    """Contacts reached on B's Flow last week: those assigned B are `capped` (flow_cap), those assigned A are sent."""
    import time

    from batch_engage.history import open_history

    path = tmp_path / "contacts.csv"
    contacts = make_contacts(60)
    contacts.write_csv(path)
    history = tmp_path / "history.db"
    with open_history(history) as store:
        store.record((to, FLOW_B, "FN" + "0" * 32, time.time() - 7 * 86400) for to in contacts["phone"])
    extra = f'[history]\npath = "{history}"\nflow_cap = "1 per 30d"\n' + EXPERIMENT
    result = run(write_job(input_path=path, base_url=sandbox.url, extra=extra), credentials=sandbox_creds)
    by_variant = {v: set(result.results.filter(result.results["variant"] == v)["status"].to_list()) for v in ("A", "B")}
    assert by_variant == {"A": {"sent"}, "B": {"capped"}}
    assert all(e.flow_sid != FLOW_B for e in sandbox.ledger())


def test_the_arrival_check_runs_once_per_variants_flow(job: Path, sandbox_creds: Credentials) -> None:
    """Each variant's rows are counted against its own Flow: validate and the run's summary project each."""
    found = validate(job, credentials=sandbox_creds, flow=True)
    assert found.capacity is not None and found.results["segments"].drop_nulls().len() == found.valid
    result = run(job, credentials=sandbox_creds)
    capacity = result.summary.as_dict()["capacity"]
    assert len(capacity["per_flow"]) == 2 and sum(c["runs"] for c in capacity["per_flow"]) == found.valid
