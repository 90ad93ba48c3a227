"""`report --html` alone writes only the page; `report` without it, or with `--output`, writes the results table."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from conftest import cli, make_contacts


def _ran(write_job: Callable[..., Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> tuple[Path, Path]:
    contacts = tmp_path / "contacts.csv"
    make_contacts(20).write_csv(contacts)
    job = write_job(input_path=contacts)
    assert cli(["run", str(job), "--sandbox", "--quiet"], capsys)[0] == 0
    results = next(tmp_path.glob("*.results.sandbox.csv"))
    return job, results


def test_report_html_alone_writes_the_page_and_leaves_the_results_table_untouched(
    write_job: Callable[..., Path], tmp_path: Path, capsys: pytest.CaptureFixture[str], sandbox_env: dict[str, str]
) -> None:
    """The page is written; the results table keeps its bytes and its modification time."""
    job, results = _ran(write_job, tmp_path, capsys)
    results.write_text(results.read_text() + "# a mark report must not erase\n")
    before = (results.read_bytes(), results.stat().st_mtime_ns)
    page = tmp_path / "page.html"
    code, out, _ = cli(["report", str(job), "--sandbox", "--html", str(page)], capsys)
    assert code == 0 and page.exists() and "sent 20" in out
    assert (results.read_bytes(), results.stat().st_mtime_ns) == before


def test_report_without_html_writes_the_results_table_again(
    write_job: Callable[..., Path], tmp_path: Path, capsys: pytest.CaptureFixture[str], sandbox_env: dict[str, str]
) -> None:
    """Without --html (or with --output beside it) the table is written from the checkpoint, as before."""
    job, results = _ran(write_job, tmp_path, capsys)
    results.unlink()
    assert cli(["report", str(job), "--sandbox"], capsys)[0] == 0
    assert results.exists()
    again = tmp_path / "again.csv"
    assert (
        cli(["report", str(job), "--sandbox", "--output", str(again), "--html", str(tmp_path / "p.html")], capsys)[0]
        == 0
    )
    assert again.read_text() == results.read_text()
    # The page alone comes from a brief read of the checkpoint; beside the table, from the full one: one page.
    assert cli(["report", str(job), "--sandbox", "--html", str(tmp_path / "alone.html")], capsys)[0] == 0
    assert (tmp_path / "alone.html").read_bytes() == (tmp_path / "p.html").read_bytes()
