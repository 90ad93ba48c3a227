"""The checkpoint file: locked to one process, owner-only, format 2 to the letter (what both backends promise:
test_checkpoint_contract.py)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from batch_engage.checkpoint.model import SecondStats
from batch_engage.checkpoint.store import Checkpoint, Intent, Outcome, Target, is_locked, open_checkpoint, read_only
from batch_engage.errors import CheckpointLocked
from batch_engage.states import RowState

FP = {"flow_sid": "FW" + "1" * 32, "api": "engagements", "mapping": {"to": "phone"}, "planning": {}}
TWILIO = Target(base_url="https://studio.twilio.com", identity="AC" + "a" * 32)
AT = "2026-11-25T10:00:00.000Z"


def _intents(*contacts: str) -> list[Intent]:
    return [Intent(c, i + 1, c, "+15005550006", "h", f"t:{i}") for i, c in enumerate(contacts)]


class TestLockAndFiles:
    """One process at a time; every file owner-only."""

    def test_a_second_open_is_locked_out_and_status_sees_the_run(self, tmp_path: Path) -> None:
        """While one process holds it, another gets CheckpointLocked and is_locked is true."""
        path = tmp_path / "c"
        with open_checkpoint(path, FP, TWILIO):
            assert is_locked(path)
            with pytest.raises(CheckpointLocked):
                open_checkpoint(path, FP, TWILIO)
        assert not is_locked(path)

    def test_the_checkpoint_and_its_lock_are_owner_only(self, tmp_path: Path) -> None:
        """No group or other bits on what holds phone numbers."""
        path = tmp_path / "c"
        open_checkpoint(path, FP, TWILIO).close()
        for file in (path, Checkpoint.lock_path(path)):
            assert file.stat().st_mode & 0o077 == 0, file


# The tables format 2 has always written: a file made by an earlier or later release of format 2 opens in this one.
FORMAT_2_TABLES = [
    "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    """CREATE TABLE journal (
    contact TEXT PRIMARY KEY,
    row INTEGER NOT NULL,
    to_addr TEXT NOT NULL,
    from_addr TEXT NOT NULL,
    params_hash TEXT,
    marker TEXT,
    input TEXT,
    state TEXT NOT NULL,
    sid TEXT,
    http_status INTEGER,
    error_code INTEGER,
    error_message TEXT,
    attempts INTEGER NOT NULL DEFAULT 0,
    intent_at TEXT,
    intent_twilio_at TEXT,
    completed_at TEXT
, ended_sid TEXT, variant TEXT)""",  # added in place since (nullable): an older release's file gains them on open
    "CREATE INDEX journal_state ON journal(state)",
    """CREATE TABLE runs (
    id INTEGER PRIMARY KEY,
    started_at TEXT NOT NULL,
    stopped_at TEXT,
    exit_code INTEGER,
    input TEXT
)""",
    """CREATE TABLE events (
    run INTEGER NOT NULL,
    second INTEGER NOT NULL,
    requests INTEGER NOT NULL,
    ok INTEGER NOT NULL,
    rate_limited INTEGER NOT NULL,
    retries INTEGER NOT NULL,
    lookups INTEGER NOT NULL,
    pacer_rate REAL NOT NULL,
    PRIMARY KEY (run, second)
)""",
]


class TestFormat:
    """The file's layout is format 2's, to the letter, with the journal's nullable ended_sid appended."""

    def test_a_new_checkpoint_has_the_tables_format_2_always_wrote(self, tmp_path: Path) -> None:
        """Every table and index, as SQLite stores its definition, is the one format 2 has always written."""
        path = tmp_path / "c"
        open_checkpoint(path, FP, TWILIO).close()
        conn = sqlite3.connect(path)
        try:
            tables = [sql for (sql,) in conn.execute("SELECT sql FROM sqlite_master WHERE sql IS NOT NULL")]
        finally:
            conn.close()
        assert tables == FORMAT_2_TABLES


class TestEndedSidColumn:
    """A checkpoint made before ``ended_sid`` existed still reads, and gets the column when a run opens it."""

    def _older(self, path: Path) -> None:
        open_checkpoint(path, FP, TWILIO).close()
        conn = sqlite3.connect(path)
        try:
            conn.execute("ALTER TABLE journal DROP COLUMN ended_sid")
            conn.commit()
        finally:
            conn.close()

    def test_an_older_checkpoint_reads_with_no_ended_sid(self, tmp_path: Path) -> None:
        """status and report read a journal without the column: ended_sid is null."""
        path = tmp_path / "c"
        self._older(path)
        view = read_only(path)
        assert "ended_sid" in view.journal.columns and view.journal.height == 0

    def test_a_run_adds_the_column_and_keeps_the_ended_sid(self, tmp_path: Path) -> None:
        """Opening an older file adds ended_sid; an outcome's ended SID stays when later outcomes name none."""
        path = tmp_path / "c"
        self._older(path)
        with open_checkpoint(path, FP, TWILIO) as cp:
            cp.write_intents(_intents("a"), at="2026-01-01T00:00:00.000Z", twilio_at=None)
            cp.write_outcomes([Outcome("a", RowState.WAITING_ACTIVE, ended_sid="FN" + "1" * 32)])
            cp.write_outcomes([Outcome("a", RowState.SENT, sid="FN" + "2" * 32)])
            line = cp.journal().row(0, named=True)
        assert line["ended_sid"] == "FN" + "1" * 32 and line["state"] == "sent"


class TestAddedColumns:
    """A checkpoint made before the journal's ``variant`` column still opens, reads and resumes."""

    def test_a_checkpoint_without_the_variant_column_is_read_then_gains_it_on_open(self, tmp_path: Path) -> None:
        """Read-only, its lines show a null variant; opened, it gains the column and keeps every line and its format."""
        path = tmp_path / "c"
        cp = open_checkpoint(path, FP, TWILIO)
        cp.write_intents(
            [Intent("+14155550100", 1, "+14155550100", "+15005550006", "h", "t:m")], at="a", twilio_at=None
        )
        cp.write_outcomes([Outcome(contact="+14155550100", state=RowState.SENT, sid="FN1", attempts=1)])
        cp.close()
        conn = sqlite3.connect(path)
        conn.execute("ALTER TABLE journal DROP COLUMN variant")  # as the release before variants wrote it
        conn.close()
        view = read_only(path)
        assert view.journal["variant"].to_list() == [None] and view.journal["sid"].to_list() == ["FN1"]
        with open_checkpoint(path, FP, TWILIO) as reopened:
            reopened.write_intents(
                [Intent("+14155550101", 2, "+14155550101", "+15005550006", "h", "t:n", "B")], at="b", twilio_at=None
            )
            journal = reopened.journal()
        assert journal.select("contact", "state", "variant").rows() == [
            ("+14155550100", "sent", None),
            ("+14155550101", "intent", "B"),
        ]
        assert read_only(path).meta["version"] == "2"


class TestGroupsInOneStep:
    """A group of lines goes to SQLite as one JSON array; where SQLite cannot take it so, line by line, alike."""

    def _write(self, path: Path, *, one_step: bool) -> list[tuple[object, ...]]:
        with open_checkpoint(path, FP, TWILIO) as cp:
            assert isinstance(cp, Checkpoint)
            cp._one_step = one_step
            cp.start_run(AT, "digest")
            contacts = [f"+1415555{i:04d}" for i in range(6)]
            cp.write_intents(_intents(*contacts), at=AT, twilio_at=None)
            cp.write_outcomes(
                [
                    Outcome(contacts[0], RowState.SENT, sid="FN0", http_status=201, attempts=1, completed_at=AT),
                    Outcome(
                        contacts[1],
                        RowState.FAILED,
                        http_status=400,
                        error_code=21211,
                        error_message='Zürich "x"\n',
                        attempts=2,
                        completed_at=AT,
                    ),
                    # A contact named twice in one group: its outcomes in order (a withdrawal, then sent).
                    Outcome(contacts[2], RowState.PENDING, attempts=1, ended_sid="FN9"),
                    Outcome(contacts[3], RowState.SENT, sid="FN3", http_status=201, attempts=1, completed_at=AT),
                    Outcome(contacts[2], RowState.SENT, sid="FN2", http_status=201, attempts=2, completed_at=AT),
                    Outcome(contacts[4], RowState.PENDING, attempts=1),
                ]
            )
            # Written again: the first intent stamp stays, and a line unknown to the journal is not made.
            cp.write_intents(_intents(contacts[4]), at="2026-11-25T11:00:00.000Z", twilio_at="2026-11-25T11:00:00.500Z")
            cp.write_outcomes([Outcome("+19995550000", RowState.SENT, sid="FNx", http_status=201, attempts=1)])
            # The journal read back in one step is the journal read line by line.
            read = cp.journal()
            cp._one_step = False
            assert read.equals(cp.journal())
            assert read.height == 6
        with sqlite3.connect(path) as conn:
            return conn.execute("SELECT * FROM journal ORDER BY contact").fetchall()

    def _after_a_retry(self, path: Path, *, one_step: bool) -> tuple[list[tuple[object, ...]], Checkpoint]:
        cp = open_checkpoint(path, FP, TWILIO)
        assert isinstance(cp, Checkpoint)
        cp._one_step = one_step
        cp.start_run(AT, "digest")
        cp.write_intents(_intents("+14155550000", "+14155550001"), at=AT, twilio_at=None)
        cp.write_outcomes(
            [
                Outcome("+14155550000", RowState.PENDING, http_status=429, error_code=20429, error_message="slow"),
                Outcome("+14155550001", RowState.PENDING, attempts=1, ended_sid="FN9", error_message="ended"),
            ]
        )
        cp.write_intents(_intents("+14155550000", "+14155550001"), at=AT, twilio_at=None)
        cp.write_outcomes(
            [
                Outcome(c, RowState.SENT, sid="FN" + c[-1], http_status=201, attempts=2, completed_at=AT)
                for c in ("+14155550000", "+14155550001")
            ]
        )
        return cp.journal().rows(), cp

    def test_a_plain_sent_group_clears_the_error_and_keeps_the_ended_run(self, tmp_path: Path) -> None:
        """Sent lines without an error or an ended run take a shorter statement: the same lines as the full one."""
        one, cp = self._after_a_retry(tmp_path / "one", one_step=True)
        cp.close()
        lines, cp = self._after_a_retry(tmp_path / "lines", one_step=False)
        cp.close()
        assert one == lines
        by_contact = {row[0]: row for row in one}
        assert by_contact["+14155550000"][9:12] == (201, None, None)
        assert by_contact["+14155550001"][11] is None
        assert by_contact["+14155550001"][16] == "FN9"

    def test_result_lines_are_the_journal_columns_the_results_read(self, tmp_path: Path) -> None:
        """The narrow read for the results table holds what the whole journal holds in those columns."""
        for one_step in (True, False):
            _, cp = self._after_a_retry(tmp_path / str(one_step), one_step=one_step)
            with cp:
                narrow = cp.result_lines().sort("contact")
                whole = cp.journal().sort("contact").select(narrow.columns)
            assert narrow.equals(whole)
            assert {"contact", "state", "sid", "error_message", "ended_sid", "input", "variant"} <= set(narrow.columns)

    def test_one_step_writes_what_line_by_line_writes(self, tmp_path: Path) -> None:
        """Intents, sent and other outcomes, a withdrawal, a contact twice in a group: the same journal either way."""
        one = self._write(tmp_path / "one", one_step=True)
        lines = self._write(tmp_path / "lines", one_step=False)
        assert one == lines
        assert [row[7] for row in one] == ["sent", "failed", "sent", "sent", "intent", "intent"]
        assert one[1][11] == 'Zürich "x"\n'
        assert one[2][16] == "FN9"


class TestDurability:
    """Intents are committed with a sync to disk before any request leaves; outcomes need not wait for it."""

    def test_intents_are_synced_to_disk_even_right_after_outcomes_were_not(self, tmp_path: Path) -> None:
        """Every intent commit runs at synchronous=FULL; outcomes and counters commit at NORMAL."""
        with open_checkpoint(tmp_path / "c", FP, TWILIO) as cp:
            cp.start_run(AT, "digest")
            conn = cp._conn  # the statements SQLite runs, in order, with the sync level each commit ran at
            seen: list[tuple[str, int]] = []

            def trace(statement: str) -> None:
                if statement.strip().upper() == "COMMIT":
                    seen.append((last[0], level()))
                elif statement.lstrip().upper().startswith(("INSERT", "UPDATE")):
                    words = statement.split()
                    last[0] = f"{words[0].upper()} {words[2]}"

            def level() -> int:
                # Read beside the trace, on a second cursor of the same connection: what COMMIT will honour.
                conn.set_trace_callback(None)
                try:
                    return int(conn.execute("PRAGMA synchronous").fetchone()[0])
                finally:
                    conn.set_trace_callback(trace)

            last = [""]
            conn.set_trace_callback(trace)
            cp.write_intents(_intents("a", "b"), at=AT, twilio_at=None)
            cp.write_outcomes([Outcome("a", RowState.SENT, sid="FN1", attempts=1)])
            cp.write_events([SecondStats(second=1, pacer_rate=20.0, requests=1, ok=1)])
            cp.write_intents(_intents("c"), at=AT, twilio_at=None)
            conn.set_trace_callback(None)
        full, normal = 2, 1
        intents = [lvl for what, lvl in seen if what == "INSERT journal"]
        others = [lvl for what, lvl in seen if what != "INSERT journal"]
        assert intents == [full, full]
        assert others and set(others) == {normal}
