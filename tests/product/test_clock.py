"""The run's time stamps: an outcome's ``completed_at`` reads as the moment it was recorded, on any clock."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest

from batch_engage.clock import SYSTEM_CLOCK, CallableClock, iso_ms, iso_ms_stamper


def _iso_of_ns(ns: int) -> str:
    """What ``iso_ms(datetime.now(UTC))`` writes at ``ns`` nanoseconds since the epoch."""
    seconds, rest = divmod(ns, 1_000_000_000)
    return iso_ms(datetime.fromtimestamp(seconds, UTC) + timedelta(microseconds=rest // 1000))


@pytest.mark.parametrize(
    "ns",
    [
        1_796_000_000_000_000_000,  # a whole second
        1_796_000_000_999_999_999,  # the last nanosecond of a second: still .999, not the next second
        1_796_000_001_000_499_999,  # just past a second: .000
        1_796_000_061_123_456_789,  # a minute later: the second's text is formatted anew
        1_798_761_599_500_000_000,  # the last second of 2026
        1_798_761_600_000_000_001,  # the first of 2027
    ],
)
def test_the_system_clocks_stamp_reads_as_iso_ms_of_the_same_moment(monkeypatch: pytest.MonkeyPatch, ns: int) -> None:
    """A stamp on the real clock is the text ``iso_ms`` gives that moment, milliseconds cut, never rounded up."""
    stamp = iso_ms_stamper(SYSTEM_CLOCK)
    # One second before first, so the second's text cached then must not leak into this one.
    monkeypatch.setattr(time, "time_ns", lambda: ns - 1_000_000_000)
    assert stamp() == _iso_of_ns(ns - 1_000_000_000)
    monkeypatch.setattr(time, "time_ns", lambda: ns)
    assert stamp() == _iso_of_ns(ns)


def test_the_system_clocks_stamp_is_now() -> None:
    """Read for real, a stamp falls between the moments read just before and just after it."""
    stamp = iso_ms_stamper(SYSTEM_CLOCK)
    before = iso_ms(datetime.now(UTC))
    got = stamp()
    after = iso_ms(datetime.now(UTC))
    assert before <= got <= after
    assert got.endswith("Z") and len(got) == len("2026-12-07T17:30:41.123Z")


def test_an_injected_clock_is_stamped_from_its_own_now() -> None:
    """A test's (or a caller's) clock is read each time: its frozen or moved time is what the journal gets."""
    moments = iter([datetime(2026, 12, 7, 9, 30, 0, 250_000, tzinfo=UTC), datetime(2031, 1, 1, tzinfo=UTC)])
    stamp = iso_ms_stamper(CallableClock(wall=lambda: next(moments)))
    assert stamp() == "2026-12-07T09:30:00.250Z"
    assert stamp() == "2031-01-01T00:00:00.000Z"
