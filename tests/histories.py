"""What the history tests share: a wall clock they move by hand, a day in seconds, a second Flow, and the
import-stats-cap walk that each history store must pass."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from batch_engage.cli.main import main
from batch_engage.sandbox import Sandbox

from conftest import FLOW_SID

__all__ = ["DAY", "OTHER_FLOW", "Clock", "import_stats_and_cap"]

OTHER_FLOW = "FW" + "f" * 32
DAY = 86400.0


class Clock:
    """A wall clock the test moves by hand."""

    def __init__(self) -> None:
        """Start at a fixed moment (2027-01-15), whatever today is."""
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        """The moment the test has set."""
        return self.now


def import_stats_and_cap(
    history: str, sb: Sandbox, job_for: Callable[..., Path], capsys: pytest.CaptureFixture[str]
) -> None:
    """Five contacts sent, their results imported into ``history`` and counted by ``history stats``; a job with a
    Flow cap then validates them as capped and sends only the other 25 (the sandbox then holds 30 runs)."""
    job = job_for(sb, name="past")
    past = job.with_name("past.csv")
    assert main(["run", str(job), "--limit", "5", "--output", str(past)]) == 0
    assert main(["history", "import", str(past), "--history", history, "--flow-sid", FLOW_SID]) == 0
    assert "recorded 5 contacts" in capsys.readouterr().out
    assert main(["history", "stats", "--history", history]) == 0
    out = capsys.readouterr().out
    assert FLOW_SID in out and out.rstrip().endswith("5")
    capped_job = job_for(sb, name="next", extra=f'[history]\npath = "{history}"\nflow_cap = "1 per 30d"\n')
    assert main(["validate", str(capped_job)]) == 0
    assert "capped: 5" in capsys.readouterr().out
    assert main(["run", str(capped_job)]) == 0
    assert len(sb.ledger()) == 30
