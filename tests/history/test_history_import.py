"""`history import` of a results table: idempotent, and a table a spreadsheet rewrote refused in one line."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import polars as pl
import pytest

from batch_engage.sandbox import Sandbox

from conftest import FLOW_SID, cli


def _past(sandbox: Sandbox, job_for: Callable[..., Path], capsys: pytest.CaptureFixture[str]) -> Path:
    """Five contacts sent by a past job; its results table."""
    job = job_for(sandbox, name="past")
    past = job.with_name("past.csv")
    assert cli(["run", str(job), "--limit", "5", "--output", str(past)], capsys)[0] == 0
    return past


def test_importing_one_results_table_twice_counts_each_contact_once(
    sandbox: Sandbox, job_for: Callable[..., Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """What a user notices: after importing the same table twice, `history stats` counts 5 contacts, and a job
    capped at `2 per 7d` does not cap those five (reached once, not twice)."""
    past, history = _past(sandbox, job_for, capsys), str(tmp_path / "h.sqlite")
    for _ in range(2):
        code, out, _ = cli(["history", "import", str(past), "--history", history, "--flow-sid", FLOW_SID], capsys)
        assert code == 0
    assert "recorded 0 contacts" in out
    assert cli(["history", "stats", "--history", history], capsys)[1].rstrip().endswith(" 5")
    capped = job_for(sandbox, name="next", extra=f'[history]\npath = "{history}"\ncap = "2 per 7d"\n')
    code, out, _ = cli(["run", str(capped)], capsys)
    assert code == 0 and "capped" not in out
    statuses = pl.read_csv(tmp_path / "next.results.csv", infer_schema_length=0)["status"].to_list()
    assert "capped" not in statuses and len(statuses) == 30


def test_a_results_table_whose_times_a_spreadsheet_rewrote_is_refused_in_one_line_naming_the_row(
    sandbox: Sandbox, job_for: Callable[..., Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """What a user notices: `completed_at` rewritten as `12/8/2026 3:54` is exit 2 and one line naming the row
    and the cell (no traceback), and nothing is recorded."""
    past = _past(sandbox, job_for, capsys)
    table = pl.read_csv(past, infer_schema_length=0)
    table = table.with_columns(
        pl.when(pl.int_range(pl.len()) == 3)
        .then(pl.lit("12/8/2026 3:54"))
        .otherwise(pl.col("completed_at"))
        .alias("completed_at")
    )
    edited = tmp_path / "edited.csv"
    table.write_csv(edited)
    history = tmp_path / "h.sqlite"
    code, out, err = cli(["history", "import", str(edited), "--history", str(history), "--flow-sid", FLOW_SID], capsys)
    assert code == 2 and out == ""
    [line] = err.strip().splitlines()
    assert "row 5" in line and "'12/8/2026 3:54'" in line and "nothing was recorded" in line
    assert not history.exists() or cli(["history", "stats", "--history", str(history)], capsys)[1].count("\n") <= 1
