"""The report masks numbers as the README says and stays small whatever the input."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import polars as pl
import pytest

from batch_engage.reporting.data import mask_numbers

from conftest import cli

_LIMIT = 2 * 1024 * 1024


@pytest.mark.slow
def test_a_hundred_thousand_invalid_numbers_make_a_report_under_2_mb_that_shows_no_full_number(
    write_job: Callable[..., Path], tmp_path: Path, capsys: pytest.CaptureFixture[str], sandbox_env: dict[str, str]
) -> None:
    """100,000 distinct invalid numbers: the page is at most 2 MB, lists a few masked examples, no whole number."""
    n = 100_000
    numbers = [f"+1555{i:07d}" if i % 2 else f"4917{i:08d}x" for i in range(n)]
    contacts = tmp_path / "contacts.csv"
    pl.DataFrame({"phone": numbers, "name": ["x"] * n, "visits": [1] * n}).write_csv(contacts)
    job = write_job(input_path=contacts)
    assert cli(["run", str(job), "--quiet"], capsys)[0] == 1
    page_path = tmp_path / "r.html"
    assert cli(["report", str(job), "--html", str(page_path)], capsys)[0] == 0
    page = page_path.read_text()
    assert len(page.encode()) <= _LIMIT
    assert not [number for number in numbers if number in page]
    assert "***" in page  # examples are shown, masked


def test_numbers_inside_a_message_are_masked() -> None:
    """A Twilio message that quotes the number shows it masked, like every example."""
    text = "The 'To' number +14155550123 is not a valid phone number. Call (415) 555-0199 or 4917123456789."
    shown = mask_numbers(text)
    assert "+14155550123" not in shown and "4917123456789" not in shown and "555-0199" not in shown
    assert "+1415***0123" in shown
