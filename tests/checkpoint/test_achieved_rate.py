"""The achieved rate the summary and the report page show: the pace a run held."""

from __future__ import annotations

from batch_engage.checkpoint import achieved_rate


def test_a_run_paced_at_20_per_second_achieved_20_though_it_began_and_ended_mid_second() -> None:
    """195 rows at 20/s touch parts of 11 seconds: the summary says 20/s, not 195 / 11 = 17.7/s."""
    seconds = [(5, 5), *[(20, 20)] * 9, (10, 10)]
    assert sum(ok for _, ok in seconds) == 195
    assert achieved_rate(seconds) == 20.0


def test_only_answered_creates_count_and_idle_seconds_are_not_seconds_of_sending() -> None:
    """A 429'd request is no run; a second with no request (a closed window) does not dilute the pace."""
    seconds = [(3, 3), (20, 18), (0, 0), (0, 0), (20, 20), (20, 19), (4, 4)]
    assert achieved_rate(seconds) == (18 + 20 + 19) / 3


def test_a_run_of_one_or_two_seconds_is_its_answers_per_second_and_nothing_sent_is_none() -> None:
    """With no full second between the first and the last, every second counts; no request: no rate."""
    assert achieved_rate([(7, 7)]) == 7.0
    assert achieved_rate([(7, 6), (3, 3)]) == 4.5
    assert achieved_rate([]) is None
    assert achieved_rate([(0, 0)]) is None
