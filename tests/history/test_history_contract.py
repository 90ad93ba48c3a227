"""The history store's contract, held against each backend: SQLite (a file) and PostgreSQL (a schema)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from batch_engage.history.model import HistoryStore
from batch_engage.history.store import History, owner
from batch_engage.job.sections import parse_cap

from conftest import FLOW_SID
from histories import DAY, OTHER_FLOW, Clock
from pg import fresh_schema


@pytest.fixture(params=["sqlite", "postgresql"])
def open_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Callable[..., HistoryStore]]:
    """Open a history store of one backend, empty at first; every call opens the same store anew."""
    if request.param == "sqlite":
        yield lambda **options: History(tmp_path / "h.sqlite", **options)
        return
    from batch_engage.history.postgres import PgHistory

    with fresh_schema() as schema:
        yield lambda **options: PgHistory(schema.history_url, **options)


class TestContract:
    def test_caps_honour_their_windows(self, open_store: Callable[..., HistoryStore]) -> None:
        """`1 per 7d` blocks a contact six days later but not eight; `flow_cap` counts only the same flow."""
        clock = Clock()
        history = open_store(clock=clock)
        history.record([("+14155550100", FLOW_SID, "FN1", clock.now)])
        week, month = parse_cap("1 per 7d", key="cap"), parse_cap("1 per 30d", key="flow_cap")
        clock.now += 6 * DAY
        blocked = history.check("+14155550100", OTHER_FLOW, week, None)
        assert blocked is not None and blocked[0].sid == "FN1"
        assert "within the cap 1 per 7d" in blocked[0].describe(blocked[1])
        clock.now += 2 * DAY
        assert history.check("+14155550100", OTHER_FLOW, week, None) is None
        assert history.check("+14155550100", OTHER_FLOW, None, month) is None
        assert history.check("+14155550100", FLOW_SID, None, month) is not None
        clock.now += 23 * DAY
        assert history.check("+14155550100", FLOW_SID, None, month) is None
        history.close()

    def test_a_cap_of_two_allows_a_second_contact_not_a_third(self, open_store: Callable[..., HistoryStore]) -> None:
        """`2 per 1d`: counts contacts, not just their presence."""
        history = open_store()
        cap = parse_cap("2 per 1d", key="cap")
        assert history.claim("+14155550100", FLOW_SID, owner("jobA", "1"), cap, None) is None
        assert history.claim("+14155550100", FLOW_SID, owner("jobB", "1"), cap, None) is None
        assert history.claim("+14155550100", FLOW_SID, owner("jobC", "1"), cap, None) is not None
        history.close()

    def test_a_claim_made_without_refresh_keeps_its_first_time(self, open_store: Callable[..., HistoryStore]) -> None:
        """A holdout's claim claimed again a day later still caps from its first day (it is not moved forward);
        a sending claim claimed again moves to now."""
        clock = Clock()
        history = open_store(clock=clock)
        week = parse_cap("1 per 7d", key="cap")
        history.claim("+14155550100", FLOW_SID, "jobA#held", None, None, refresh=False)
        history.claim("+14155550101", FLOW_SID, "jobA#sent", None, None)
        clock.now += 6 * DAY
        history.claim("+14155550100", FLOW_SID, "jobA#held", None, None, refresh=False)
        history.claim("+14155550101", FLOW_SID, "jobA#sent", None, None)
        clock.now += 2 * DAY
        assert history.check("+14155550100", FLOW_SID, week, None) is None
        assert history.check("+14155550101", FLOW_SID, week, None) is not None
        history.close()

    def test_recording_the_same_contacts_twice_adds_them_once(self, open_store: Callable[..., HistoryStore]) -> None:
        """A results table imported twice: its runs (by SID) and its SID-less contacts are each counted once."""
        clock = Clock()
        history = open_store(clock=clock)
        rows = [("+14155550100", FLOW_SID, "FN1", clock.now), ("+14155550101", FLOW_SID, None, clock.now)]
        assert history.record(rows) == 2
        assert history.record([*rows, ("+14155550102", FLOW_SID, "FN2", clock.now)]) == 1
        assert history.check("+14155550100", FLOW_SID, parse_cap("2 per 1d", key="cap"), None) is None
        assert history.check("+14155550101", FLOW_SID, parse_cap("2 per 1d", key="cap"), None) is None
        history.close()

    def test_a_claim_blocks_others_and_a_withdrawn_claim_does_not(
        self, open_store: Callable[..., HistoryStore]
    ) -> None:
        """The first job to claim a contact wins; a claim withdrawn (nothing sent) frees the contact again."""
        history = open_store()
        cap = parse_cap("1 per 1d", key="cap")
        assert history.claim("+14155550100", FLOW_SID, "jobA#1", cap, None) is None
        assert history.claim("+14155550100", FLOW_SID, "jobB#7", cap, None) is not None
        assert history.claim("+14155550100", FLOW_SID, "jobA#1", cap, None) is None  # its own claim: not capped
        history.settle("jobA#1", None)
        assert history.claim("+14155550100", FLOW_SID, "jobB#7", cap, None) is None
        history.settle("jobB#7", "FN7")
        blocker = history.check("+14155550100", FLOW_SID, cap, None, job="jobA")
        assert blocker is not None and blocker[0].sid == "FN7"
        history.close()

    def test_stats_count_reached_contacts_per_flow_per_utc_day(self, open_store: Callable[..., HistoryStore]) -> None:
        """Settled contacts count once per address per flow and day; open claims do not count."""
        history = open_store()
        day = 1_800_000_000.0  # 2027-01-15 08:00 UTC
        history.record(
            [
                ("+14155550100", FLOW_SID, "FN1", day),
                ("+14155550100", FLOW_SID, "FN2", day + 60),
                ("+14155550101", FLOW_SID, "FN3", day + 60),
                ("+14155550101", OTHER_FLOW, "FN4", day + DAY),
            ]
        )
        history.claim("+14155550109", FLOW_SID, "jobA#1", None, None)
        rows = history.stats().rows()
        assert rows == [(FLOW_SID, "2027-01-15", 2), (OTHER_FLOW, "2027-01-16", 1)]
        history.close()
