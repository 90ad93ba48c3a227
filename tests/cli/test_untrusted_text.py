"""Text anyone can write (a list's cells and column names, a Flow's names, Twilio's error text, replies) never
reaches a terminal or a log as control characters: no escape sequence, no line of its own."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
import structlog

from batch_engage.cli.output import configure_logging

from conftest import cli

ESCAPES = "\x1b]0;pwned\x07\x1b[2J\x1b[31m"


def test_a_dry_runs_lines_carry_no_escape_sequence_from_the_list(
    write_job: Callable[..., Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A name with an escape sequence, a number with one in front, one with U+202E: nothing raw reaches the screen."""
    contacts = tmp_path / "c.csv"
    contacts.write_text(
        f'phone,name,visits\n"\x1b[A\x1b[K\x1b[2J 212 555 0107",Ann{ESCAPES},1\n"\u202e212-555-0108",Bob,2\n',
        encoding="utf-8",
    )
    mapping = 'to = "phone"\nfrom = "+15005550006"\ndefault_region = "US"\n\n[mapping.parameters]\nname = "name"'
    job = write_job(input_path=contacts, mapping=mapping)
    code, out, err = cli(["validate", str(job)], capsys)
    assert code == 1 and "valid: 1" in out
    assert "\x1b" not in out + err and "\u202e" not in out + err
    assert "\\u202e212-555-0108 → +12125550108" in out


def test_a_column_name_with_a_line_break_is_one_line_of_refusal(
    write_job: Callable[..., Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A header cell holding a line break and a separator: one escaped line naming the columns, never a traceback
    or a line that reads as a log event of its own."""
    contacts = tmp_path / "c.csv"
    contacts.write_text('"a,b\n2026-01-01T00:00:00Z [info ] run.summary exit_code=0",name\n+12125550101,a\n')
    job = write_job(input_path=contacts)
    code, _, err = cli(["validate", str(job)], capsys)
    assert code == 2
    assert err.count("\n") == 1 and "a,b\\n2026-01-01T00:00:00Z" in err


@pytest.mark.parametrize("fmt", ["json", "console"])
def test_a_log_event_holding_line_breaks_is_one_line(fmt: str, capsys: pytest.CaptureFixture[str]) -> None:
    """A reply with U+2028 or NEL in a JSON event, or an escape in a console one: one line, however it is split."""
    configure_logging(fmt, "info", quiet=False)
    try:
        structlog.get_logger("t").info("collect.summary", top=f"yes\u2028no\x85maybe{ESCAPES}")
    finally:
        structlog.reset_defaults()
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1
    if fmt == "json":
        assert json.loads(err)["top"] == f"yes\u2028no\x85maybe{ESCAPES}"
    else:
        assert "\x1b]0" not in err and "\\x1b]0;pwned" in err
