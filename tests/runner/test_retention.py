"""Twilio's 30-day retention: past it, reconciliation and collect can no longer read a run, and say so."""

from __future__ import annotations

import dataclasses
from collections import Counter
from datetime import timedelta
from pathlib import Path

import polars as pl
import structlog

import batch_engage
from batch_engage import CollectOptions, RunOptions, run
from batch_engage.checkpoint.store import read_only
from batch_engage.clock import parse_iso
from batch_engage.testing import FakeClock
from batch_engage.twilio import AT_RETENTION

from conftest import Rig, make_contacts

DAY = 86400.0


async def _no_wait(seconds: float) -> None:
    return None


def test_possibly_sent_contacts_past_retention_stay_uncertain_and_are_not_resent(rig: Rig) -> None:
    """31 days on (both clocks): a contact left possibly sent ends uncertain, past retention; nothing is re-sent."""
    clock = FakeClock()
    sb = rig.sandbox(rate_limit=None, lost_answer_rate=0.5, read_rate_limit_rate=1.0, wall=clock)
    spec = rig.spec(sb.url, api="executions", max_backoff=5)
    frame = make_contacts(20)
    first = run(spec, frame=frame, credentials=rig.creds, options=RunOptions(clock=clock))
    lost = first.counts["uncertain"]
    assert lost > 0 and first.counts["sent"] == 20 - lost
    created = len(sb.ledger())

    clock.advance(31 * DAY)
    sb.reconfigure(lost_answer_rate=0.0, read_rate_limit_rate=0.0)
    later = run(spec, frame=frame, credentials=rig.creds, options=RunOptions(clock=clock))
    assert len(sb.ledger()) == created
    assert later.counts["uncertain"] == lost and later.exit_code == 1
    uncertain = later.results.filter(pl.col("status") == "uncertain")
    assert set(uncertain["error_message"]) == {"past Twilio's 30-day retention"}
    assert later.summary.lookups == 0


def test_collect_marks_vanished_runs_expired_and_never_fetches_them_again(rig: Rig, tmp_path: Path) -> None:
    """Runs Twilio deleted after 30 days answer 404: collect marks them expired (exit 0) and does not ask again."""
    clock = FakeClock()
    sb = rig.sandbox(rate_limit=None, wait_timeout=60.0, wall=clock)
    spec = rig.spec(sb.url, api="executions")
    assert run(spec, frame=make_contacts(10), credentials=rig.creds, options=RunOptions(clock=clock)).exit_code == 0

    clock.advance(31 * DAY)
    options = CollectOptions(clock=clock, sleep=_no_wait, output=str(tmp_path / "outcomes.csv"))
    result = batch_engage.collect(spec, credentials=rig.creds, options=options)
    assert result.counts.get("expired") == 10 and result.exit_code == 0
    assert set(result.outcomes["error_message"]) == {"past Twilio's 30-day retention: the run is gone"}
    fetched = sb.stats().run_requests
    again = batch_engage.collect(spec, credentials=rig.creds, options=options)
    assert again.counts.get("expired") == 10 and sb.stats().run_requests == fetched


def test_what_collect_read_before_is_kept_when_a_refresh_finds_the_runs_gone(rig: Rig, tmp_path: Path) -> None:
    """Collected while the runs lived, then --refresh 31 days on: the statuses and end times stay (never 'expired'
    and empty), and the next collect asks nothing more of them."""
    clock = FakeClock()
    sb = rig.sandbox(rate_limit=None, wall=clock)
    spec = rig.spec(sb.url, api="executions")
    assert run(spec, frame=make_contacts(5), credentials=rig.creds, options=RunOptions(clock=clock)).exit_code == 0
    sb.end_all_runs()
    options = CollectOptions(clock=clock, sleep=_no_wait, output=str(tmp_path / "outcomes.csv"))
    first = batch_engage.collect(spec, credentials=rig.creds, options=options)
    assert first.counts.get("ended") == 5
    clock.advance(31 * DAY)
    refreshed = batch_engage.collect(spec, credentials=rig.creds, options=dataclasses.replace(options, refresh=True))
    assert refreshed.counts.get("ended") == 5 and "expired" not in refreshed.counts
    assert refreshed.outcomes["ended_at"].to_list() == first.outcomes["ended_at"].to_list()
    fetched = sb.stats().run_requests
    assert batch_engage.collect(spec, credentials=rig.creds, options=options).counts.get("ended") == 5
    assert sb.stats().run_requests == fetched


def test_a_run_last_seen_active_and_gone_since_is_expired_not_active_forever(rig: Rig, tmp_path: Path) -> None:
    """Collected while active, then gone 31 days on: expired (exit 0, so --wait has nothing to wait for), never
    fetched again."""
    clock = FakeClock()
    sb = rig.sandbox(rate_limit=None, wait_timeout=60.0, wall=clock)
    spec = rig.spec(sb.url, api="executions")
    assert run(spec, frame=make_contacts(3), credentials=rig.creds, options=RunOptions(clock=clock)).exit_code == 0
    options = CollectOptions(clock=clock, sleep=_no_wait, output=str(tmp_path / "outcomes.csv"))
    assert batch_engage.collect(spec, credentials=rig.creds, options=options).counts.get("active") == 3
    clock.advance(31 * DAY)
    later = batch_engage.collect(spec, credentials=rig.creds, options=options)
    assert later.counts.get("expired") == 3 and later.exit_code == 0
    fetched = sb.stats().run_requests
    assert batch_engage.collect(spec, credentials=rig.creds, options=options).counts.get("expired") == 3
    assert sb.stats().run_requests == fetched


def test_a_younger_runs_404_is_still_a_failure(rig: Rig, tmp_path: Path) -> None:
    """A 404 for a run younger than 30 days is failed, as before: only age explains a vanished run."""
    clock = FakeClock()
    sb = rig.sandbox(rate_limit=None, wall=clock)
    spec = rig.spec(sb.url, api="executions")
    run(spec, frame=make_contacts(3), credentials=rig.creds, options=RunOptions(clock=clock))
    sb2 = rig.sandbox(rate_limit=None, wall=clock)  # a Twilio that never made these runs
    moved = spec.replace(flow=dataclasses.replace(spec.flow, base_url=sb2.url))
    result = batch_engage.collect(
        moved,
        credentials=rig.creds,
        options=CollectOptions(clock=clock, sleep=_no_wait, output=str(tmp_path / "o.csv")),
    )
    assert result.counts["failed"] == 3 and "expired" not in result.counts


def test_collect_warns_when_uncollected_runs_near_retention(
    rig: Rig,
    tmp_path: Path,
) -> None:
    """Runs still active after 26 days: collect warns, naming the days left before Twilio deletes them."""
    clock = FakeClock()
    sb = rig.sandbox(rate_limit=None, wait_timeout=40 * DAY, wall=clock)
    spec = rig.spec(sb.url, api="executions")
    run(spec, frame=make_contacts(4), credentials=rig.creds, options=RunOptions(clock=clock))
    clock.advance(26 * DAY)
    with structlog.testing.capture_logs() as events:
        result = batch_engage.collect(
            spec,
            credentials=rig.creds,
            options=CollectOptions(clock=clock, sleep=_no_wait, output=str(tmp_path / "o.csv")),
        )
    assert result.counts["active"] == 4
    warning = next(e for e in events if e["event"] == "collect.retention")
    assert warning["runs"] == 4 and 3.9 <= warning["days_left"] <= 4.0


def test_a_run_deleted_while_reconciliation_lists_it_is_not_sent_again(rig: Rig) -> None:
    """Seconds inside the 30 days when looked up, gone by the time the list answers: uncertain, never re-sent."""
    clock = FakeClock()
    sb = rig.sandbox(rate_limit=None, lost_answer_rate=1.0, read_rate_limit_rate=1.0, wall=clock, retry_after=5)
    spec = rig.spec(sb.url, api="executions", max_backoff=5)
    frame = make_contacts(5)
    first = run(spec, frame=frame, credentials=rig.creds, options=RunOptions(clock=clock))
    assert first.counts["uncertain"] == 5 and len(sb.ledger()) == 5

    newest = max(parse_iso(t) for t in read_only(spec.output.checkpoint).journal["intent_at"].to_list())
    # Two seconds inside: Twilio's clock is read off Date headers of one-second resolution, so a one-second margin
    # was judged past the 30 days before the lookup when a loaded machine stretched the round trip (seen in CI).
    clock.set(newest + timedelta(days=30) - timedelta(seconds=2))
    # The list is answered 429 once (Retry-After: 5 s): the runs are past 30 days when it is asked again.
    sb.reconfigure(lost_answer_rate=0.0, read_rate_limit_rate=0.0, read_rate_limited_first=1)
    later = run(spec, frame=frame, credentials=rig.creds, options=RunOptions(clock=clock))
    assert len(sb.ledger()) == 5, Counter(entry.to for entry in sb.ledger())
    assert later.counts.get("sent", 0) == 0 and later.counts["uncertain"] == 5
    assert set(later.results["error_message"]) == {AT_RETENTION}


def test_retention_is_judged_on_one_clock_before_twilios_is_known(rig: Rig) -> None:
    """--no-preflight, Twilio two minutes ahead: the resumed run's first request is the list, yet runs already gone
    on Twilio's clock are past retention, not "not found" and sent again."""
    clock = FakeClock()
    sb = rig.sandbox(rate_limit=None, lost_answer_rate=1.0, read_rate_limit_rate=1.0, wall=clock, clock_offset=120.0)
    spec = rig.spec(sb.url, api="executions", max_backoff=5, rate=1, preflight=False)
    frame = make_contacts(4)
    # The first contact's intent on our clock alone (Twilio's unknown yet); the other three's carry Twilio's time
    # too, its offset read by a preflight first (the Flow's GET is no read the simulator refuses): a mix, whatever
    # the order in which answers and intent writes happen to come.
    run(spec, frame=frame, credentials=rig.creds, options=RunOptions(clock=clock, limit=1))
    preflighted = dataclasses.replace(spec, send=dataclasses.replace(spec.send, preflight=True))
    first = run(preflighted, frame=frame, credentials=rig.creds, options=RunOptions(clock=clock))
    assert first.counts["uncertain"] == 4 and len(sb.ledger()) == 4
    journal = read_only(spec.output.checkpoint).journal
    assert journal["intent_twilio_at"].null_count() == 1
    newest = max(parse_iso(t) for t in journal["intent_at"].to_list())
    # 30 days and 30 s after the newest intent on our clock: every run is gone on Twilio's.
    clock.set(newest + timedelta(days=30, seconds=30))
    sb.reconfigure(lost_answer_rate=0.0, read_rate_limit_rate=0.0)
    later = run(spec, frame=frame, credentials=rig.creds, options=RunOptions(clock=clock))
    assert len(sb.ledger()) == 4, Counter(entry.to for entry in sb.ledger())
    assert later.counts["uncertain"] == 4
    assert set(later.results["error_message"]) == {"past Twilio's 30-day retention"}
