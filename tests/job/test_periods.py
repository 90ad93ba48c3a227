"""A campaign per period: `[job] id = "reminders-{date}"` gives each day its own checkpoint; nothing is lost at midnight."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from batch_engage import RunOptions, load_spec, run, status, validate
from batch_engage.credentials import Credentials
from batch_engage.errors import ConfigError, PeriodUnsettled, UsageError
from batch_engage.sandbox import Sandbox

DAY1 = datetime(2026, 11, 24, 15, 0, tzinfo=UTC)
DAY2 = datetime(2026, 11, 25, 9, 0, tzinfo=UTC)
DAY3 = datetime(2026, 11, 26, 9, 0, tzinfo=UTC)


async def _no_wait(seconds: float) -> None:
    """Delays pass at once."""


@pytest.fixture
def daily_job(write_job: Callable[..., Path], contacts_csv: Path) -> Callable[[str], Path]:
    """A job file whose id carries {date}, with its outputs named by {id}."""

    def make(base_url: str) -> Path:
        job = write_job(input_path=contacts_csv, base_url=base_url, extra='[job]\nid = "reminders-{date}"\n')
        text = (
            job.read_text().replace("job.results.csv", "{id}.results.csv").replace("job.checkpoint", "{id}.checkpoint")
        )
        job.write_text(text)
        return job

    return make


class TestPeriods:
    """Each period is its own campaign, with its own checkpoint."""

    def test_each_day_reaches_everyone_once_with_its_own_checkpoint(
        self, sandbox: Sandbox, daily_job: Callable[[str], Path], sandbox_creds: Credentials
    ) -> None:
        """Day 1 and day 2 each send to all 30 contacts; their checkpoints are named by the date."""
        job = daily_job(sandbox.url)
        assert run(load_spec(job, now=DAY1), credentials=sandbox_creds).counts["sent"] == 30
        sandbox.end_all_runs()
        assert run(load_spec(job, now=DAY2), credentials=sandbox_creds).counts["sent"] == 30
        assert (job.parent / "reminders-2026-11-24.checkpoint").exists()
        assert (job.parent / "reminders-2026-11-25.checkpoint").exists()
        assert len(sandbox.ledger()) == 60
        assert status(job, period="2026-11-24").counts["sent"] == 30

    def test_the_previous_days_possibly_sent_contacts_are_settled_first(
        self, sandbox: Sandbox, daily_job: Callable[[str], Path], sandbox_creds: Credentials
    ) -> None:
        """Day 1 was killed with 5 requests out: day 2 finds those runs by their marker before sending its own."""
        job = daily_job(sandbox.url)
        run(load_spec(job, now=DAY1), credentials=sandbox_creds)
        day1 = job.parent / "reminders-2026-11-24.checkpoint"
        with sqlite3.connect(day1) as db:  # as if killed: 5 intents whose answers were never recorded
            db.execute("UPDATE journal SET state = 'intent', sid = NULL WHERE row <= 5")
        sandbox.end_all_runs()
        result = run(load_spec(job, now=DAY2), credentials=sandbox_creds, options=RunOptions(sleep=_no_wait))
        assert result.counts["sent"] == 30
        day1_counts = status(job, period="2026-11-24").counts
        assert (day1_counts["sent"], day1_counts["uncertain"]) == (30, 0)
        assert len(sandbox.ledger()) == 60  # day 1's five were found, not sent again

    def test_a_previous_day_that_cannot_be_settled_stops_the_new_day_with_75(
        self, sandbox_factory: Callable[..., Sandbox], daily_job: Callable[[str], Path], sandbox_creds: Credentials
    ) -> None:
        """Studio's lists refuse every read: day 2 sends nothing and says which period to settle."""
        sb = sandbox_factory(rate_limit=None)
        job = daily_job(sb.url)
        run(load_spec(job, now=DAY1), credentials=sandbox_creds)
        with sqlite3.connect(job.parent / "reminders-2026-11-24.checkpoint") as db:
            db.execute("UPDATE journal SET state = 'intent', sid = NULL WHERE row <= 2")
        sb.reconfigure(read_rate_limit_rate=1.0)
        before = sb.stats().create_requests
        with pytest.raises(PeriodUnsettled, match="2026-11-24"):
            run(load_spec(job, now=DAY2), credentials=sandbox_creds, options=RunOptions(sleep=_no_wait))
        assert sb.stats().create_requests == before

    def test_contacts_the_previous_day_never_sent_stay_pending_with_a_warning(
        self, sandbox: Sandbox, daily_job: Callable[[str], Path], sandbox_creds: Credentials
    ) -> None:
        """Day 1 stopped after 10: day 2 warns that 20 stay pending there, naming how to send them."""
        job = daily_job(sandbox.url)
        run(load_spec(job, now=DAY1), credentials=sandbox_creds, options=RunOptions(limit=10))
        with capture_logs() as logs:
            run(load_spec(job, now=DAY2), credentials=sandbox_creds)
        unsent = [e for e in logs if e["event"] == "period.unsent"]
        assert unsent and unsent[0]["rows"] == 20 and "--period 2026-11-24" in unsent[0]["message"]

    def test_an_experiment_changed_since_the_last_day_is_said(
        self, sandbox: Sandbox, daily_job: Callable[[str], Path], sandbox_creds: Credentials
    ) -> None:
        """Day 1 at A:B 1:1, day 2 at 1:4: day 2 warns that a contact of both days may get another variant (the
        same person moved from A to B overnight without a word); the same weights on day 2 say nothing."""
        job = daily_job(sandbox.url)
        variants = '[experiment]\nvariants = [{name = "A", weight = 1}, {name = "B", weight = 1}]\n'
        job.write_text(job.read_text() + variants)
        run(load_spec(job, now=DAY1), credentials=sandbox_creds)
        with capture_logs() as same:
            run(load_spec(job, now=DAY2), credentials=sandbox_creds)
        assert not [e for e in same if e["event"] == "period.experiment_changed"]
        job.write_text(job.read_text().replace('name = "B", weight = 1', 'name = "B", weight = 4'))
        with capture_logs() as logs:
            run(load_spec(job, now=DAY3), credentials=sandbox_creds)
        changed = [e for e in logs if e["event"] == "period.experiment_changed"]
        assert changed and changed[0]["rows"] > 0 and "period 2026-11-25" in changed[0]["message"]

    def test_the_same_file_under_an_earlier_period_is_refused_unless_yes(
        self, sandbox: Sandbox, daily_job: Callable[[str], Path], sandbox_creds: Credentials
    ) -> None:
        """Day 2 sent, then day 1 with day 2's file: run and validate refuse, nothing sent; --yes sends it all the same."""
        job = daily_job(sandbox.url)
        assert run(load_spec(job, now=DAY2), credentials=sandbox_creds).counts["sent"] == 30
        sandbox.end_all_runs()
        with pytest.raises(UsageError, match="this list is the very file period 2026-11-25 was sent from"):
            run(load_spec(job, now=DAY1), credentials=sandbox_creds)
        assert len(sandbox.ledger()) == 30
        with pytest.raises(UsageError, match="this list is the very file period 2026-11-25 was sent from"):
            validate(load_spec(job, now=DAY1))
        assert validate(load_spec(job, now=DAY1), yes=True).valid == 30
        again = run(load_spec(job, now=DAY1), credentials=sandbox_creds, options=RunOptions(yes=True))
        assert again.counts["sent"] == 30

    def test_a_time_zone_set_after_the_day_was_sent_does_not_send_it_again(
        self, sandbox: Sandbox, daily_job: Callable[[str], Path], sandbox_creds: Credentials
    ) -> None:
        """Sent at 03:00 UTC on the 25th; a Los Angeles time zone then makes it the 24th: refused, none sent twice."""
        job = daily_job(sandbox.url)
        early = datetime(2026, 11, 25, 3, 0, tzinfo=UTC)
        assert run(load_spec(job, now=early), credentials=sandbox_creds).counts["sent"] == 30
        zoned = 'reconcile_delay = 0.0\nwindow = "00:00-24:00"\ndefault_timezone = "America/Los_Angeles"'
        job.write_text(job.read_text().replace("reconcile_delay = 0.0", zoned))
        spec = load_spec(job, now=early)
        assert spec.job.period == "2026-11-24"
        with pytest.raises(UsageError, match=r"Did send\.default_timezone change"):
            run(spec, credentials=sandbox_creds)
        assert len(sandbox.ledger()) == 30

    def test_status_shows_the_latest_period_by_default(
        self, sandbox: Sandbox, daily_job: Callable[[str], Path], sandbox_creds: Credentials
    ) -> None:
        """Without --period, status reads the newest period that has a checkpoint."""
        job = daily_job(sandbox.url)
        run(load_spec(job, now=DAY1), credentials=sandbox_creds, options=RunOptions(limit=4))
        latest = status(job)
        assert latest.period == "2026-11-24" and latest.counts["sent"] == 4


class TestPeriodSettings:
    """A period in the id must come with outputs that keep periods apart."""

    def test_a_checkpoint_path_without_the_id_is_refused(self, tmp_path: Path, contacts_csv: Path) -> None:
        """Every day would share one checkpoint: a ConfigError naming output.checkpoint."""
        raw = {
            "job": {"id": "reminders-{date}"},
            "input": {"path": str(contacts_csv)},
            "flow": {"sid": "FW" + "0" * 32},
            "mapping": {"to": "phone", "from": "+15005550006"},
            "output": {"checkpoint": str(tmp_path / "fixed.checkpoint")},
        }
        with pytest.raises(ConfigError, match=r"output\.checkpoint"):
            load_spec(raw=raw)

    @pytest.mark.parametrize("job_id", ["x-{day}", "a/b", "x-{date}-{week}"])
    def test_a_bad_id_is_refused_naming_job_id(self, job_id: str, contacts_csv: Path) -> None:
        """Unknown placeholders, path separators and two kinds of period are refused."""
        raw = {
            "job": {"id": job_id},
            "input": {"path": str(contacts_csv)},
            "flow": {"sid": "FW" + "0" * 32},
            "mapping": {"to": "phone", "from": "+15005550006"},
        }
        with pytest.raises(ConfigError, match=r"job\.id"):
            load_spec(raw=raw)

    def test_the_period_follows_the_default_timezone(self, contacts_csv: Path) -> None:
        """23:30 UTC on the 24th is already the 25th in Tokyo."""
        raw = {
            "job": {"id": "r-{date}"},
            "input": {"path": str(contacts_csv)},
            "flow": {"sid": "FW" + "0" * 32},
            "mapping": {"to": "phone", "from": "+15005550006"},
            "send": {"window": "09:00-20:00", "default_timezone": "Asia/Tokyo"},
        }
        spec = load_spec(raw=raw, now=datetime(2026, 11, 24, 23, 30, tzinfo=UTC))
        assert spec.job.id == "r-2026-11-25"
