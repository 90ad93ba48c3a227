"""Which checkpoints are this job's: the marker tokens ``on_active = "end"`` and ``sweep`` accept as proof."""

from __future__ import annotations

from pathlib import Path

from batch_engage.checkpoint import Target, checkpoint_meta, open_checkpoint
from batch_engage.commands import job_tokens
from batch_engage.job import load_spec

from conftest import FLOW_SID

FP = {"flow_sid": FLOW_SID}
TWILIO = Target(base_url="https://studio.twilio.com", identity="AC" + "1" * 32)


def _raw(tmp_path: Path, job_id: str) -> dict[str, object]:
    return {
        "job": {"id": job_id},
        "flow": {"sid": FLOW_SID, "api": "executions"},
        "mapping": {"to": "phone", "from": "+15005550006"},
        "output": {"results": str(tmp_path / "{id}.results.csv"), "checkpoint": str(tmp_path / "{id}.checkpoint")},
    }


def test_every_period_and_every_set_aside_checkpoint_is_the_jobs(tmp_path: Path) -> None:
    """Two weeks' checkpoints and one moved aside by --restart: all three tokens, named; another job's is not."""
    spec = load_spec(raw=_raw(tmp_path, "survey-{week}"))
    weeks = [spec.for_period(p) for p in ("2026-W47", "2026-W48")]
    for week in weeks:
        open_checkpoint(week.output.checkpoint, FP, TWILIO).close()
    earlier = checkpoint_meta(weeks[1].output.checkpoint)["token"]
    open_checkpoint(weeks[1].output.checkpoint, FP, TWILIO, restart=True, yes=True).close()
    other = load_spec(raw=_raw(tmp_path, "reminders"))
    open_checkpoint(other.output.checkpoint, FP, TWILIO).close()

    tokens = job_tokens(weeks[1], sandbox=False)
    assert tokens[checkpoint_meta(weeks[1].output.checkpoint)["token"]] == "job survey-2026-W48"
    assert tokens[checkpoint_meta(weeks[0].output.checkpoint)["token"]] == "job survey-2026-W47 (period 2026-W47)"
    assert tokens[earlier] == "job survey-2026-W48, set aside by --restart"
    assert checkpoint_meta(other.output.checkpoint)["token"] not in tokens
    assert len(tokens) == 3


def test_a_job_that_never_ran_has_no_tokens(tmp_path: Path) -> None:
    """No checkpoint yet: nothing can be proven this job's."""
    assert job_tokens(load_spec(raw=_raw(tmp_path, "survey-{week}")).for_period("2026-W48"), sandbox=False) == {}
