"""The checkpoint's contract, held against each backend: SQLite (a file) and PostgreSQL (a job key in a schema)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import polars as pl
import pytest

from batch_engage.checkpoint.store import (
    Intent,
    Outcome,
    Target,
    check_binding,
    checkpoints_beside,
    open_checkpoint,
    read_checkpoint,
)
from batch_engage.errors import CheckpointMismatch
from batch_engage.states import FINAL, OPEN, POSSIBLY_SENT, RowState

from pg import fresh_schema

FP = {"flow_sid": "FW" + "1" * 32, "api": "engagements", "mapping": {"to": "phone"}, "planning": {}}
TWILIO = Target(base_url="https://studio.twilio.com", identity="AC" + "a" * 32)
AT = "2026-11-25T10:00:00.000Z"


def _intents(*contacts: str) -> list[Intent]:
    return [Intent(c, i + 1, c, "+15005550006", "h", f"t:{i}") for i, c in enumerate(contacts)]


@pytest.fixture(params=["sqlite", "postgresql"])
def location(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """Where one backend keeps a job's checkpoint, empty at first: a file, or a job key in a fresh schema."""
    if request.param == "sqlite":
        yield str(tmp_path / "c")
        return
    with fresh_schema() as schema:
        yield f"{schema.history_url}#j"


class TestBinding:
    """A checkpoint refuses another job or another Twilio, and a restart without --yes."""

    def test_another_flow_is_refused_naming_what_changed(self, location: str) -> None:
        """The Flow SID changed: CheckpointMismatch says so, before and at opening, and the journal stays."""
        with open_checkpoint(location, FP, TWILIO) as cp:
            cp.write_intents(_intents("+1"), at=AT, twilio_at=None)
        other = FP | {"flow_sid": "FW" + "2" * 32}
        with pytest.raises(CheckpointMismatch, match="the Flow SID changed"):
            check_binding(location, other, TWILIO)
        with pytest.raises(CheckpointMismatch, match="the Flow SID changed"):
            open_checkpoint(location, other, TWILIO)
        assert read_checkpoint(location).journal["contact"].to_list() == ["+1"]

    def test_the_sandbox_and_twilio_never_share_a_checkpoint(self, location: str) -> None:
        """A rehearsal's checkpoint opened against Twilio is refused, naming the sandbox; another Twilio too."""
        open_checkpoint(location, FP, Target(base_url="sandbox", identity=None, sandbox=True)).close()
        with pytest.raises(CheckpointMismatch, match="the sandbox"):
            open_checkpoint(location, FP, TWILIO)
        with pytest.raises(CheckpointMismatch, match="made against"):
            open_checkpoint(location, FP, Target(base_url="https://other.example", identity=None))

    def test_restart_without_yes_counts_what_it_would_forget_and_with_it_keeps_the_old_aside(
        self, location: str
    ) -> None:
        """Two contacts reached and one in flight: --restart alone refuses naming 3; with --yes the job starts
        empty and the old state is set aside beside it, not deleted."""
        with open_checkpoint(location, FP, TWILIO) as cp:
            cp.write_intents(_intents("+1", "+2", "+3", "+4"), at=AT, twilio_at=None)
            cp.write_outcomes([Outcome("+1", RowState.SENT, sid="FN1"), Outcome("+2", RowState.ALREADY_ACTIVE)])
            cp.write_outcomes([Outcome("+4", RowState.PENDING)])
        with pytest.raises(CheckpointMismatch, match="forget 3 contacts"):
            open_checkpoint(location, FP, TWILIO, restart=True)
        with open_checkpoint(location, FP, TWILIO, restart=True, yes=True) as cp:
            assert cp.journal().height == 0
        assert len([t for t in checkpoints_beside(location) if t.endswith(".old")]) == 1


class TestJournal:
    """Lines are keyed by contact; a pending outcome withdraws an intent; what a run ended is kept."""

    def test_contacts_by_state_and_a_pending_outcome_withdraws_the_intent(self, location: str) -> None:
        """Intents are open lines; sent is final; pending clears the intent times; a reader sees it all."""
        with open_checkpoint(location, FP, TWILIO) as cp:
            cp.write_intents(_intents("+1", "+2", "+3"), at=AT, twilio_at=AT)
            assert sorted(cp.open_lines()["contact"]) == ["+1", "+2", "+3"]
            cp.write_outcomes(
                [Outcome("+1", RowState.SENT, sid="FN1", completed_at=AT), Outcome("+2", RowState.PENDING)]
            )
            assert cp.contacts_in(FINAL).to_list() == ["+1"]
            assert cp.contacts_in(POSSIBLY_SENT).to_list() == ["+3"]
            assert sorted(cp.contacts_in(OPEN).to_list()) == ["+2", "+3"]
            assert cp.sids_since(AT) == {"FN1"}
            lines = {c: (s, at) for c, s, at in cp.journal().select("contact", "state", "intent_twilio_at").iter_rows()}
        assert lines == {"+1": ("sent", AT), "+2": ("pending", None), "+3": ("intent", AT)}
        view = read_checkpoint(location)
        assert view.journal.height == 3 and view.meta["token"]

    def test_a_contact_refused_while_its_earlier_run_is_active_is_stamped_anew_when_sent_again(
        self, location: str
    ) -> None:
        """waiting_active clears the intent times as pending does: the re-send's intent is the one looked up."""
        later = "2027-01-10T00:00:00.000Z"
        with open_checkpoint(location, FP, TWILIO) as cp:
            cp.write_intents(_intents("+1", "+2"), at=AT, twilio_at=AT)
            cp.write_outcomes([Outcome("+1", RowState.WAITING_ACTIVE), Outcome("+2", RowState.UNCERTAIN)])
            cp.write_intents(_intents("+1", "+2"), at=later, twilio_at=later)
            lines = {
                c: (a, t) for c, a, t in cp.journal().select("contact", "intent_at", "intent_twilio_at").iter_rows()
            }
        # An uncertain request may have made a run then: its first intent time is kept.
        assert lines == {"+1": (later, later), "+2": (AT, AT)}

    def test_each_line_keeps_the_input_it_was_written_for(self, location: str) -> None:
        """A resumed run tells lines of the last export from an earlier export's and from a line with none."""
        with open_checkpoint(location, FP, TWILIO) as cp:
            cp.write_intents(_intents("+0"), at=AT, twilio_at=AT)
            cp.start_run(AT, "earlier-export")
            cp.write_intents(_intents("+1"), at=AT, twilio_at=AT)
            cp.start_run(AT, "last-export")
            cp.write_intents(_intents("+2", "+3"), at=AT, twilio_at=AT)
        expected = {"+0": None, "+1": "earlier-export", "+2": "last-export", "+3": "last-export"}
        with open_checkpoint(location, FP, TWILIO) as cp:
            states = cp.states()
        assert dict(states.select("contact", pl.col("input").cast(pl.String)).iter_rows()) == expected
        assert set(states["state"]) == {"intent"}

    def test_states_reads_every_line_in_the_state_it_was_left_in(self, location: str) -> None:
        """Each state a line can be in (the journal's bulk ``sent`` among them) comes back as the journal holds it:
        the frame a resumed run decides from never takes an open or possibly-sent line for a finished one."""
        left = [s for s in RowState if s is not RowState.INTENT]
        contacts = [f"+1{i:03d}" for i in range(3 * len(left) + 1)]
        with open_checkpoint(location, FP, TWILIO) as cp:
            cp.write_intents(_intents(*contacts), at=AT, twilio_at=AT)
            cp.write_outcomes(Outcome(c, left[i % len(left)]) for i, c in enumerate(contacts[1:]))
        with open_checkpoint(location, FP, TWILIO) as cp:
            states = cp.states()
            journal = cp.journal()
        assert states.height == len(contacts) and states.get_column("contact").is_unique().all()
        assert dict(states.select("contact", "state").iter_rows()) == dict(
            journal.select("contact", "state").iter_rows()
        )
        assert set(states.get_column("state")) == {s.value for s in RowState}

    def test_result_lines_hold_what_the_journal_holds_in_their_columns(self, location: str) -> None:
        """The read a run's results table is built from: every line, each column as the whole journal has it."""
        contacts = [f"+1{i:03d}" for i in range(4)]
        with open_checkpoint(location, FP, TWILIO) as cp:
            cp.write_intents(_intents(*contacts), at=AT, twilio_at=AT)
            cp.write_outcomes(
                [
                    Outcome(contacts[0], RowState.SENT, sid="FN0", http_status=201, attempts=1, completed_at=AT),
                    Outcome(contacts[1], RowState.FAILED, http_status=400, error_code=21211, error_message="bad"),
                    Outcome(contacts[2], RowState.PENDING, attempts=1, ended_sid="FN9"),
                ]
            )
            narrow = cp.result_lines().sort("contact")
            whole = cp.journal().sort("contact")
        assert narrow.height == len(contacts)
        assert narrow.equals(whole.select(narrow.columns))

    def test_an_ended_sid_outlives_later_outcomes(self, location: str) -> None:
        """The run a contact was waiting on, once ended, stays named after the contact is sent."""
        with open_checkpoint(location, FP, TWILIO) as cp:
            cp.write_intents(_intents("+1"), at=AT, twilio_at=None)
            cp.write_outcomes([Outcome("+1", RowState.WAITING_ACTIVE, ended_sid="FN1")])
            cp.write_outcomes([Outcome("+1", RowState.SENT, sid="FN2")])
        line = read_checkpoint(location).journal.filter(pl.col("contact") == "+1").row(0, named=True)
        assert (line["state"], line["sid"], line["ended_sid"]) == ("sent", "FN2", "FN1")
