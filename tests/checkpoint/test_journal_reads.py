"""The journal read as columns: every value as written, whatever came before it; the plan kept, written again
only when it changed; the report page's brief read leaves out only what the page never shows."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import polars as pl
import pytest

from batch_engage.checkpoint import sqlite_read
from batch_engage.checkpoint.model import states_from_text
from batch_engage.checkpoint.store import Intent, Outcome, Target, open_checkpoint, read_only
from batch_engage.states import RowState

FP = {"flow_sid": "FW" + "1" * 32, "api": "engagements", "mapping": {"to": "phone"}, "planning": {}}
TWILIO = Target(base_url="https://studio.twilio.com", identity="AC" + "a" * 32)
AT = "2026-11-25T10:00:00.000Z"
LATER = "2026-11-25T11:00:00.000Z"
SILENT = 3000  # more than one batch of the driver's type inference (1,024 rows)


def _contact(i: int) -> str:
    return f"+1415{i:07d}"


def _journal(path: Path) -> None:
    """SILENT lines sent with nothing to say, then one failed with Twilio's message and one uncertain."""
    contacts = [_contact(i) for i in range(SILENT + 2)]
    with open_checkpoint(path, FP, TWILIO) as cp:
        cp.start_run(AT, "digest-1")
        cp.write_intents(
            [Intent(c, i + 1, c, "+15005550006", "h", f"t:{i}") for i, c in enumerate(contacts)], at=AT, twilio_at=AT
        )
        cp.write_outcomes(Outcome(c, RowState.SENT, sid=f"FN{i:032x}", completed_at=AT) for i, c in enumerate(contacts))
        cp.write_outcomes(
            [
                Outcome(contacts[SILENT], RowState.FAILED, http_status=400, error_code=20001, error_message="Bad To"),
                Outcome(contacts[SILENT + 1], RowState.UNCERTAIN, error_message="timed out", completed_at=LATER),
            ]
        )


@pytest.mark.parametrize("columns", [True, False], ids=["as columns", "by rows"])
def test_a_message_after_thousands_of_silent_lines_is_read_as_written(tmp_path: Path, columns: bool) -> None:
    """The failed line's code and message, and the uncertain one's, come back after 3,000 lines without any."""
    path = tmp_path / "c"
    _journal(path)
    with open_checkpoint(path, FP, TWILIO) as cp:
        states = cp.states()
    lines = {r["contact"]: r for r in read_only(path, columns=columns).journal.iter_rows(named=True)}
    failed, uncertain = lines[_contact(SILENT)], lines[_contact(SILENT + 1)]
    assert (failed["state"], failed["error_code"], failed["error_message"]) == ("failed", 20001, "Bad To")
    assert (uncertain["state"], uncertain["error_message"]) == ("uncertain", "timed out")
    assert lines[_contact(0)]["sid"] == "FN" + "0" * 32 and lines[_contact(0)]["error_message"] is None
    assert states.height == SILENT + 2
    assert dict(states.group_by("state").len().iter_rows()) == {"sent": SILENT, "failed": 1, "uncertain": 1}


def test_a_checkpoint_in_a_folder_named_with_spaces_and_signs_reads(tmp_path: Path) -> None:
    """A folder named ``a b?#c`` holds a checkpoint that reads like any other (its path is never taken for a URI)."""
    path = tmp_path / "a b?#c" / "c"
    path.parent.mkdir()
    _journal(path)
    assert read_only(path).journal.height == read_only(path, columns=True).journal.height == SILENT + 2


def test_only_a_reader_that_asks_for_columns_loads_a_second_sqlite(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A run's own reads (variants kept, a stored plan) never go through the columnar driver's SQLite: two
    SQLites in one process drop each other's locks; ``status`` and ``report`` ask for it, and get it."""
    path = tmp_path / "c"
    _journal(path)
    used: list[str] = []
    real = sqlite_read.read_frame
    monkeypatch.setattr(sqlite_read, "read_frame", lambda *a, **k: used.append("columns") or real(*a, **k))
    by_rows = read_only(path)
    assert used == []
    assert read_only(path, columns=True).journal.sort("contact").equals(by_rows.journal.sort("contact"))
    assert used


def test_the_report_pages_brief_read_leaves_out_only_what_the_page_never_shows(tmp_path: Path) -> None:
    """Every line's contact, state, message and variant as in full; sent lines without their SID and stamps, the
    latest stamp of every line said once."""
    path = tmp_path / "c"
    _journal(path)
    full, brief = read_only(path), read_only(path, brief=True, columns=True)
    shown = ["contact", "state", "error_code", "error_message", "ended_sid", "variant"]
    assert brief.journal.sort("contact").select(shown).equals(full.journal.sort("contact").select(shown))
    sent = brief.journal.filter(pl.col("state") == "sent")
    assert sent.get_column("sid").null_count() == sent.get_column("completed_at").null_count() == SILENT
    assert brief.journal.filter(pl.col("state") == "failed").get_column("http_status").to_list() == [400]
    assert full.latest_line is None
    assert brief.latest_line == LATER == max(full.journal.get_column("completed_at").max(), AT)  # type: ignore[type-var]


def test_the_plan_is_written_again_only_when_it_changed(tmp_path: Path) -> None:
    """The same plan saved again leaves the file as it was; another plan replaces it, and reads back."""
    path = tmp_path / "c"
    plan = pl.DataFrame({"row": [1, 2], "contact": ["+1", "+2"], "parameters": ['{"a":1}', '{"a":2}']})
    with open_checkpoint(path, FP, TWILIO) as cp:
        cp.save_plan(plan)
        kept = cp.plan_path
        os.utime(kept, ns=(1, 1))  # a moment no write of today's would leave
        cp.save_plan(plan.clone())
        assert kept.stat().st_mtime_ns == 1
        changed = plan.with_columns(parameters=pl.lit('{"a":3}'))
        cp.save_plan(changed)
    assert kept.stat().st_mtime_ns != 1
    assert read_only(path).plan is not None and read_only(path).plan.equals(changed)  # type: ignore[union-attr]
    assert "parameters" not in read_only(path, brief=True).plan.columns  # type: ignore[union-attr]


def test_lines_of_a_run_that_had_no_input_digest_read_as_no_input() -> None:
    """A settle-only run records an empty digest: its lines are "no input", never an input called ""."""
    states = states_from_text("+1\n+2", "sent\nsent", None, "")
    assert states.get_column("input").to_list() == [None, None]


def test_a_state_this_release_does_not_know_is_read_as_written(tmp_path: Path) -> None:
    """A line a later release left in a state of its own (either side of ``sent``) is read with that state, so a
    resumed run never counts it sent nor sends it; the lines around it read as they are."""
    path = tmp_path / "c"
    _journal(path)
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE journal SET state = 'aaa_new' WHERE contact = ?", (_contact(1),))
        conn.execute("UPDATE journal SET state = 'zzz_new' WHERE contact = ?", (_contact(2),))
    with open_checkpoint(path, FP, TWILIO) as cp:
        states = dict(cp.states().select("contact", "state").iter_rows())
    assert states[_contact(1)] == "aaa_new" and states[_contact(2)] == "zzz_new"
    assert states[_contact(SILENT)] == "failed" and states[_contact(SILENT + 1)] == "uncertain"
    assert states[_contact(0)] == "sent" and len(states) == SILENT + 2
