"""`batch-engage run --on-active`: the flag overrides [send] on_active, and end is refused for v1 Engagements."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from batch_engage.sandbox import Sandbox

from conftest import cli, make_contacts


def test_on_active_end_is_refused_for_engagements(
    job: Path, sandbox: Sandbox, capsys: pytest.CaptureFixture[str]
) -> None:
    """--on-active end with api = "engagements": exit 2 naming send.on_active; nothing sent."""
    code, _, err = cli(["run", str(job), "--on-active", "end"], capsys)
    assert code == 2 and "send.on_active" in err and "Engagement" in err
    assert sandbox.ledger() == []


def test_on_active_wait_leaves_blocked_contacts_waiting_with_exit_75(
    sandbox_factory: Callable[..., Sandbox], job_for: Callable[..., Path], capsys: pytest.CaptureFixture[str]
) -> None:
    """Three contacts in other senders' conversations; --on-active wait --max-duration 1s: 27 sent, 3 waiting, 75."""
    blocked = tuple(make_contacts(3)["phone"].to_list())
    sb = sandbox_factory(rate_limit=None, wait_timeout=3600.0, other_sender_active=blocked)
    job = job_for(sb, api="executions")
    code, out, _ = cli(["run", str(job), "--on-active", "wait", "--max-duration", "1s"], capsys)
    assert code == 75 and "sent 27" in out and "waiting_active 3" in out
