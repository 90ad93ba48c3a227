"""Twilio's clock, estimated from Date headers on a fake wall clock."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest

from batch_engage.twilio.clock import TwilioClock, parse_http_date

OURS = datetime(2026, 11, 25, 12, 0, 0, tzinfo=UTC)


class FakeWall:
    """A wall clock the test moves by hand."""

    def __init__(self, start: datetime = OURS) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now


def header(moment: datetime) -> str:
    return format_datetime(moment, usegmt=True)


class TestBeforeAnyAnswer:
    def test_no_offset_and_our_own_time(self) -> None:
        """Before any Date header, the offset is unknown and Twilio's now is ours."""
        clock = TwilioClock(wall=FakeWall())
        assert clock.offset is None
        assert clock.now() == OURS
        assert clock.to_twilio(OURS) == OURS


class TestOneSecondGranularity:
    def test_a_header_counts_as_the_middle_of_its_second(self) -> None:
        """A Date of 12:00:05 read at our 12:00:05 means Twilio is about half a second ahead."""
        clock = TwilioClock(wall=FakeWall())
        clock.observe(header(OURS))
        assert clock.offset == 0.5

    def test_a_clock_two_minutes_ahead_is_seen(self) -> None:
        """Twilio two minutes ahead of us: its now and our moments shift by that much."""
        wall = FakeWall()
        clock = TwilioClock(wall=wall)
        clock.observe(header(OURS + timedelta(minutes=2)))
        assert clock.offset == pytest.approx(120.5)
        assert clock.now() == OURS + timedelta(seconds=120.5)
        assert clock.to_twilio(OURS - timedelta(hours=1)) == OURS - timedelta(hours=1) + timedelta(seconds=120.5)

    def test_an_answer_read_later_in_the_second_lowers_the_sample(self) -> None:
        """The sample is measured against our wall time at the moment the answer arrived."""
        wall = FakeWall(OURS + timedelta(seconds=0.75))
        clock = TwilioClock(wall=wall)
        clock.observe(header(OURS))
        assert clock.offset == pytest.approx(-0.25)


class TestRobustness:
    def test_the_median_ignores_an_outlier(self) -> None:
        """One stale answer (a cache, a proxy) does not move the estimate."""
        wall = FakeWall()
        clock = TwilioClock(wall=wall)
        for _ in range(4):
            clock.observe(header(OURS + timedelta(seconds=30)))
        clock.observe(header(OURS - timedelta(days=3)))
        assert clock.offset == pytest.approx(30.5)

    def test_only_the_last_samples_count(self) -> None:
        """A clock that was corrected is followed once the old samples age out of the window."""
        wall = FakeWall()
        clock = TwilioClock(wall=wall, samples=3)
        for _ in range(3):
            clock.observe(header(OURS + timedelta(seconds=60)))
        for _ in range(2):
            clock.observe(header(OURS))
        assert clock.offset == pytest.approx(0.5)

    @pytest.mark.parametrize("garbage", [None, "", "yesterday", "Wed, 99 Nov 2026 25:61:00 GMT", "0", "\x00"])
    def test_missing_or_garbage_headers_are_ignored(self, garbage: str | None) -> None:
        """An answer without a readable Date changes nothing and raises nothing."""
        clock = TwilioClock(wall=FakeWall())
        clock.observe(garbage)
        assert clock.offset is None
        clock.observe(header(OURS + timedelta(seconds=10)))
        clock.observe(garbage)
        assert clock.offset == pytest.approx(10.5)

    def test_samples_must_be_positive(self) -> None:
        """A window of no samples is refused at once."""
        with pytest.raises(ValueError, match="samples"):
            TwilioClock(samples=0)


class TestParsing:
    def test_rfc_7231_and_obsolete_forms_read_as_utc(self) -> None:
        """IMF-fixdate and a numeric zone both give aware UTC."""
        assert parse_http_date("Wed, 25 Nov 2026 12:00:05 GMT") == OURS + timedelta(seconds=5)
        assert parse_http_date("Wed, 25 Nov 2026 13:00:05 +0100") == OURS + timedelta(seconds=5)
