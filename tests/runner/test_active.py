"""Contacts still inside an earlier active run: ``[send] on_active`` wait and end, on the sandbox and a fake clock."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import polars as pl
import pytest
from structlog.testing import capture_logs

from batch_engage import Credentials, Progress, RunControl, RunOptions, RunResult, report, run
from batch_engage.errors import ConfigError, HoldLost
from batch_engage.job import Spec, load_spec
from batch_engage.runner import sending
from batch_engage.sandbox import Sandbox
from batch_engage.testing import FakeClock
from batch_engage.twilio import StudioClient

from conftest import FLOW_SID, make_contacts

EARLIER, NOW = "2026-W47", "2026-W48"


def survey(tmp_path: Path, base_url: str, period: str, **send: Any) -> Spec:
    """A weekly survey job (one checkpoint per week) on the sandbox, for ``period``."""
    raw = {
        "job": {"id": "survey-{week}"},
        "flow": {"sid": FLOW_SID, "api": send.pop("api", "executions"), "base_url": base_url},
        "mapping": {"to": "phone", "from": "+15005550006", "parameters": {"name": "name"}},
        "send": {"rate": 1000, "concurrency": 8, "reconcile_delay": 0.0} | send,
        "output": {
            "results": str(tmp_path / "{id}.results.csv"),
            "checkpoint": str(tmp_path / "{id}.checkpoint"),
        },
    }
    return load_spec(raw=raw).for_period(period)


def stop_after(final: int) -> dict[str, Any]:
    """run() keywords that stop the run (as Ctrl-C or --max-duration would) once ``final`` contacts are final."""
    control = RunControl()

    def watch(progress: Progress) -> None:
        if progress.done >= final:
            control.request_stop()

    return {"control": control, "on_progress": watch}


def report_page(tmp_path: Path) -> str:
    """The campaign report of this week's run, as HTML."""
    page = tmp_path / "report.html"
    report(survey(tmp_path, "http://127.0.0.1:9", NOW), html=page)
    return page.read_text()


def first_runs(sb: Sandbox) -> dict[str, Any]:
    """Each contact's first REST run in the ledger."""
    found: dict[str, Any] = {}
    for entry in sb.ledger():
        if entry.source == "rest":
            found.setdefault(entry.to, entry)
    return found


@dataclass(frozen=True)
class Weeks:
    """The sandbox holding last week's runs, the fake clock both weeks keep, and this week's survey on them."""

    sb: Sandbox
    clock: FakeClock
    tmp_path: Path
    creds: Credentials

    def run(self, period: str = NOW, contacts: int = 200, **send: Any) -> RunResult:
        """The survey of ``period`` (this week's) for ``contacts`` contacts, on the fake clock."""
        spec = survey(self.tmp_path, self.sb.url, period, **send)
        return run(spec, frame=make_contacts(contacts), credentials=self.creds, options=RunOptions(clock=self.clock))


@pytest.fixture
def weeks(tmp_path: Path, sandbox_factory: Callable[..., Sandbox], sandbox_creds: Credentials) -> Weeks:
    """Last week's survey reached 30 contacts whose runs wait 20 s for a reply (Send & Wait), still active now."""
    clock = FakeClock()
    weeks = Weeks(sandbox_factory(rate_limit=None, wait_timeout=20.0, wall=clock), clock, tmp_path, sandbox_creds)
    assert weeks.run(EARLIER, contacts=30).counts["sent"] == 30
    return weeks


class TestWait:
    def test_waiting_contacts_are_reached_once_after_their_earlier_runs_end(self, tmp_path: Path, weeks: Weeks) -> None:
        """on_active = "wait": all 200 reached once this week; the 30 only after last week's runs ended; exit 0."""
        sb = weeks.sb
        before = first_runs(sb)
        result = weeks.run(on_active="wait", active_retry="5s")
        assert result.exit_code == 0 and result.counts["sent"] == 200
        this_week = [e for e in sb.ledger() if e.source == "rest"][30:]
        assert Counter(e.to for e in this_week) == Counter(make_contacts(200)["phone"].to_list())
        for entry in this_week:
            if entry.to in before:
                assert (entry.date_created - before[entry.to].date_created).total_seconds() >= 20
        assert sb.stats().ended_by_request == 0
        assert result.results["ended_sid"].null_count() == 200
        # Those that met their earlier run say so (on the fast fake clock some find it ended already).
        waited = result.results.filter(pl.col("error_message").is_not_null())
        assert 0 < waited.height <= 30 and set(waited["to"]) <= set(before)
        assert all(m.startswith("sent after waiting (waiting for its earlier run FN") for m in waited["error_message"])
        page = report_page(tmp_path)
        assert 'id="active-waited"' in page and "sent after waiting (waiting for its earlier run FN… to end)" in page

    def test_a_stop_leaves_them_waiting_and_a_resumed_run_sends_them(self, tmp_path: Path, weeks: Weeks) -> None:
        """Stopped while 30 wait: they stay waiting_active (exit 75); the next run sends them, once."""
        sb, clock = weeks.sb, weeks.clock
        spec = survey(tmp_path, sb.url, NOW, on_active="wait", active_retry="5m")
        # This run keeps real time while the sandbox's fake clock stands still: last week's runs never end in it.
        stopped = run(spec, frame=make_contacts(200), credentials=weeks.creds, **stop_after(170))
        assert stopped.exit_code == 75
        assert stopped.counts["sent"] == 170 and stopped.counts["waiting_active"] == 30
        waiting = stopped.results.filter(pl.col("status") == "waiting_active")
        assert all(m.startswith("waiting for its earlier run FN") for m in waiting["error_message"])
        clock.advance(30)
        resumed = weeks.run(on_active="wait", active_retry="5m")
        assert resumed.exit_code == 0 and resumed.counts["sent"] == 200
        assert max(Counter(e.to for e in sb.ledger() if e.source == "rest").values()) == 2

    def test_a_contact_sent_again_after_waiting_and_stopped_in_flight_is_possibly_sent(
        self, tmp_path: Path, sandbox_factory: Callable[..., Sandbox], sandbox_creds: Credentials, monkeypatch: Any
    ) -> None:
        """Its waiting_active outcome, still buffered when it is sent again, never lands on the new intent: stopped
        with that request in flight, it is uncertain, and the next run finds its run instead of making another."""
        from batch_engage.runner import recorder

        # The outcome buffered a while longer than usual, so the re-send's intent always comes first.
        monkeypatch.setattr(recorder, "FLUSH_SECONDS", 0.25)
        clock = FakeClock()
        sb = sandbox_factory(rate_limit=None, wait_timeout=20.0, wall=clock)
        options = RunOptions(clock=clock)
        run(survey(tmp_path, sb.url, EARLIER), frame=make_contacts(1), credentials=sandbox_creds, options=options)
        control = RunControl()
        stopped = run(
            survey(tmp_path, sb.url, NOW, on_active="wait", active_retry="25s"),
            frame=make_contacts(1),
            credentials=sandbox_creds,
            options=options,
            control=control,
            transport=StopWhileCreating(control),
        )
        assert [e.sid for e in sb.ledger() if e.source == "rest"][1:]  # the re-send made its run
        assert stopped.results["status"].to_list() == ["uncertain"]
        again = run(
            survey(tmp_path, sb.url, NOW, on_active="wait", active_retry="25s"),
            frame=make_contacts(1),
            credentials=sandbox_creds,
            options=options,
        )
        this_week = [e.sid for e in sb.ledger() if e.source == "rest"][1:]
        assert len(this_week) == 1, again.results.select("status", "sid", "error_message").to_dicts()
        assert again.results.select("status", "sid").row(0) == ("sent", this_week[0])

    def test_a_contact_sent_again_weeks_after_it_began_waiting_is_looked_up_by_its_new_intent(
        self, tmp_path: Path, sandbox_factory: Callable[..., Sandbox], sandbox_creds: Credentials
    ) -> None:
        """Left waiting_active, sent again 31 days later and stopped in flight: the next run finds its run, never
        "past Twilio's 30-day retention" from the time of the request the 409 refused."""
        clock = FakeClock()
        sb = sandbox_factory(rate_limit=None, wait_timeout=20.0, wall=clock)
        options = RunOptions(clock=clock)
        run(survey(tmp_path, sb.url, EARLIER), frame=make_contacts(1), credentials=sandbox_creds, options=options)
        job = survey(tmp_path, sb.url, NOW, on_active="wait", active_retry="25s")

        def stopped_by(transport: Callable[[RunControl], httpx.AsyncBaseTransport]) -> list[str]:
            control = RunControl()
            stopped = run(
                job,
                frame=make_contacts(1),
                credentials=sandbox_creds,
                options=options,
                control=control,
                transport=transport(control),
            )
            return list(stopped.results["status"])

        assert stopped_by(StopOnConflict) == ["waiting_active"]
        clock.advance(31 * 86_400)
        assert stopped_by(StopWhileCreating) == ["uncertain"]
        again = run(job, frame=make_contacts(1), credentials=sandbox_creds, options=options)
        this_week = [e.sid for e in sb.ledger() if e.source == "rest"][1:]
        assert len(this_week) == 1
        assert again.results.select("status", "sid").row(0) == ("sent", this_week[0]), again.results.to_dicts()


class StopOnConflict(httpx.AsyncBaseTransport):
    """The sandbox; a create refused with 409 (the contact's earlier run still active) stops the run."""

    def __init__(self, control: RunControl) -> None:
        self._inner = httpx.AsyncHTTPTransport()
        self._control = control

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self._inner.handle_async_request(request)
        if request.method == "POST" and response.status_code == 409:
            self._control.request_stop()
        return response

    async def aclose(self) -> None:
        await self._inner.aclose()


class StopWhileCreating(httpx.AsyncBaseTransport):
    """The sandbox; the second create (the re-send after waiting) is made, then the run is stopped at once (a
    second Ctrl-C) with its answer in flight, after a latency in which the recorder would flush."""

    def __init__(self, control: RunControl) -> None:
        self._inner = httpx.AsyncHTTPTransport()
        self._control = control
        self.creates = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        creates = request.method == "POST" and request.url.path.endswith("/Executions")
        if creates:
            self.creates += 1
            if self.creates >= 2:
                await asyncio.sleep(0.6)
        response = await self._inner.handle_async_request(request)
        if creates and response.status_code == 201:
            self._control.request_stop()
            self._control.request_stop()
            await asyncio.sleep(30)  # the answer never reaches the run: it stops first
        return response

    async def aclose(self) -> None:
        await self._inner.aclose()


class TestEnd:
    def test_our_own_earlier_runs_are_ended_and_each_contact_gets_one_new_run(
        self, tmp_path: Path, weeks: Weeks
    ) -> None:
        """on_active = "end", end_active_after = "1s": last week's 30 runs are ended; one new run each; exit 0."""
        sb, clock = weeks.sb, weeks.clock
        before = first_runs(sb)
        clock.advance(2)
        result = weeks.run(on_active="end", end_active_after="1s")
        assert result.exit_code == 0 and result.counts["sent"] == 200
        assert sb.stats().ended_by_request == 30
        this_week = [e for e in sb.ledger() if e.source == "rest"][30:]
        assert len(this_week) == 200 and len({e.to for e in this_week}) == 200
        ended = result.results.filter(pl.col("ended_sid").is_not_null())
        assert sorted(ended["ended_sid"]) == sorted(e.sid for e in before.values())
        assert all("job survey-2026-W47 (period 2026-W47)" in m for m in ended["error_message"])
        # Ended at once, not after their 20 s: nothing waited for them.
        assert clock.monotonic() < 20
        page = report_page(tmp_path)
        assert 'id="active-ended"' in page and "job survey-2026-W47 (period 2026-W47)" in page

    def test_a_run_younger_than_end_active_after_is_waited_for_not_ended(self, weeks: Weeks) -> None:
        """end_active_after = "24h" (the default): our 20 s runs are too young, so the contacts wait them out."""
        sb = weeks.sb
        result = weeks.run(on_active="end", active_retry="5s")
        assert result.exit_code == 0 and result.counts["sent"] == 200
        assert sb.stats().ended_by_request == 0

    def test_another_senders_active_runs_are_never_ended(
        self, tmp_path: Path, sandbox_factory: Callable[..., Sandbox], sandbox_creds: Credentials
    ) -> None:
        """10 contacts sit in inbound conversations: "end" ends none of them; they wait and say why."""
        clock = FakeClock()
        taken = make_contacts(10)["phone"].to_list()
        sb = sandbox_factory(rate_limit=None, wait_timeout=3600.0, other_sender_active=tuple(taken), wall=clock)
        # Real time here, the sandbox's clock standing still: the conversations outlast the run, which is stopped.
        result = run(
            survey(tmp_path, sb.url, NOW, on_active="end", end_active_after="1s"),
            frame=make_contacts(50),
            credentials=sandbox_creds,
            **stop_after(40),
        )
        assert result.exit_code == 75
        assert result.counts["sent"] == 40 and result.counts["waiting_active"] == 10
        assert sb.stats().ended_by_request == 0
        waiting = result.results.filter(pl.col("status") == "waiting_active")
        assert sorted(waiting["to"]) == sorted(taken)
        assert all("is an inbound conversation; never ended by batch-engage" in m for m in waiting["error_message"])
        assert waiting["ended_sid"].null_count() == 10
        page = report_page(tmp_path)
        assert 'id="active-refused"' in page and "is an inbound conversation" in page
        assert 'id="active-ended"' not in page

    def test_a_hold_lost_as_an_earlier_run_is_ended_ends_nothing_and_the_next_run_finishes_once_each(
        self, weeks: Weeks, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """The run's hold goes stale from the first 409 on (a machine frozen past its lease): no earlier run is
        ended and nothing more is created, the run stops with 75 and one named reason, never a traceback; the next
        run ends last week's 30 and reaches each of the 200 once."""
        sb, clock = weeks.sb, weeks.clock
        real = sending.make_http_client

        def stale_from_the_first_conflict(**kwargs: Any) -> Any:
            return real(**kwargs | {"may_send": lambda: sb.stats().by_status.get(409, 0) == 0})

        monkeypatch.setattr(sending, "make_http_client", stale_from_the_first_conflict)
        clock.advance(2)
        with capture_logs() as logs:
            stale = weeks.run(on_active="end", end_active_after="1s")
        assert stale.exit_code == 75, stale.summary
        assert sb.stats().ended_by_request == 0 and sb.stats().update_requests == 0
        assert sb.stats().created == 30  # last week's: every create that left met a 409
        assert "uncertain" not in stale.results["status"].to_list()
        assert "checkpoint.lease_lost" in [entry["event"] for entry in logs]
        assert not [entry for entry in logs if "exc_info" in entry or "exception" in entry]

        monkeypatch.undo()
        again = weeks.run(on_active="end", end_active_after="1s")
        assert again.exit_code == 0, again.summary
        assert again.counts["sent"] == 200 and sb.stats().ended_by_request == 30
        this_week = [e for e in sb.ledger() if e.source == "rest"][30:]
        assert len(this_week) == 200 and len({e.to for e in this_week}) == 200

    def test_an_end_refused_by_the_fence_ends_nothing_and_the_contacts_wait_for_the_next_run(
        self, weeks: Weeks, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """The fence refuses the end itself (nothing written): the run stops with 75, the contacts say why they
        wait, not "uncertain"; the next run ends last week's 30 and reaches each of the 200 once."""
        sb, clock = weeks.sb, weeks.clock

        async def refused(self: StudioClient, sid: str) -> None:
            raise HoldLost("this run's hold on the job is stale: the request was not sent")

        monkeypatch.setattr(StudioClient, "end_run", refused)
        clock.advance(2)
        with capture_logs() as logs:
            stale = weeks.run(on_active="end", end_active_after="1s")
        assert stale.exit_code == 75, stale.summary
        assert sb.stats().ended_by_request == 0 and "uncertain" not in stale.results["status"].to_list()
        waiting = stale.results.filter(pl.col("status") == "waiting_active")["error_message"].to_list()
        assert any("was not ended, this run's hold on the job being stale" in m for m in waiting), waiting
        assert [entry["event"] for entry in logs].count("checkpoint.lease_lost") == 1

        monkeypatch.undo()
        again = weeks.run(on_active="end", end_active_after="1s")
        assert again.exit_code == 0, again.summary
        assert again.counts["sent"] == 200 and sb.stats().ended_by_request == 30
        this_week = [e for e in sb.ledger() if e.source == "rest"][30:]
        assert len({e.to for e in this_week}) == len(this_week) == 200


class TestRefusals:
    def test_end_is_refused_for_v1_engagements(self, tmp_path: Path) -> None:
        """Twilio documents no update of a v1 Engagement: on_active = "end" with api = "engagements" is exit 2."""
        with pytest.raises(ConfigError, match=r"send\.on_active"):
            survey(tmp_path, "http://127.0.0.1:9", NOW, api="engagements", on_active="end")

    @pytest.mark.parametrize(("key", "value"), [("on_active", "kill"), ("active_retry", "soon"), ("active_retry", 0)])
    def test_bad_values_name_their_key(self, tmp_path: Path, key: str, value: object) -> None:
        """An unknown on_active or a duration that is not one is refused, naming the key."""
        with pytest.raises(ConfigError, match=rf"send\.{key}"):
            survey(tmp_path, "http://127.0.0.1:9", NOW, **{key: value})

    def test_a_job_without_on_active_still_skips(self, weeks: Weeks) -> None:
        """The default, "skip": the 30 end already_active (final), as before; nothing waits, nothing is ended."""
        result = weeks.run()
        assert result.counts["already_active"] == 30 and result.counts["sent"] == 170
        assert "waiting_active" not in result.counts and result.exit_code == 0
