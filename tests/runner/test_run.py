"""The whole job through the Python API against the sandbox over loopback."""

from __future__ import annotations

import asyncio
import time
import urllib.parse
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import httpx
import polars as pl
import pytest

from batch_engage import Credentials, RunControl, RunOptions, RunResult, run
from batch_engage.results import RESULT_COLUMNS
from batch_engage.sandbox import Sandbox
from batch_engage.testing import FakeClock

from conftest import Rig, make_contacts

FROZEN = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


async def _instant(seconds: float) -> None:
    return None


def ledger_counts(sb: Sandbox) -> Counter[str]:
    return Counter(entry.to for entry in sb.ledger())


def on_the_clock(rig: Rig, spec: Any, contacts: int, clock: FakeClock) -> RunResult:
    """``spec`` run for ``contacts`` contacts with the rig's credentials, its waits on the fake ``clock``."""
    return run(spec, frame=make_contacts(contacts), credentials=rig.creds, options=RunOptions(clock=clock))


class TestHappyPath:
    def test_every_valid_row_is_sent_once_with_the_ledgers_sid(
        self, sandbox: Sandbox, make_spec: Callable[..., Any], sandbox_creds: Credentials
    ) -> None:
        """Each row becomes one run; the results table holds the SID the sandbox created."""
        frame = make_contacts(40)
        result = run(make_spec(sandbox.url), frame=frame, credentials=sandbox_creds)
        assert result.exit_code == 0
        assert result.counts["sent"] == 40
        by_to = {e.to: e.sid for e in sandbox.ledger()}
        assert len(sandbox.ledger()) == 40
        assert dict(zip(result.results["to"], result.results["sid"])) == by_to

    def test_results_table_has_the_documented_columns_in_order(
        self, sandbox: Sandbox, make_spec: Callable[..., Any], sandbox_creds: Credentials
    ) -> None:
        """The results file on disk has exactly the documented columns, one line per row, in input order."""
        spec = make_spec(sandbox.url)
        run(spec, frame=make_contacts(5), credentials=sandbox_creds)
        table = pl.read_csv(spec.output.results)
        assert table.columns == RESULT_COLUMNS
        assert table["row"].to_list() == [1, 2, 3, 4, 5]
        assert set(table["status"]) == {"sent"}
        assert all(ts.endswith("Z") for ts in table["completed_at"])

    def test_parameters_reach_studio_with_types_and_nesting(
        self, sandbox: Sandbox, make_spec: Callable[..., Any], sandbox_creds: Credentials
    ) -> None:
        """Numbers stay numbers, text stays text (non-ASCII intact), nulls are left out, dotted keys nest."""
        frame = pl.DataFrame(
            {"phone": ["+14155550100", "+14155550101"], "name": ["Zoë", None], "visits": [3, 4], "total": [1.5, None]}
        )
        spec = make_spec(sandbox.url)
        from dataclasses import replace

        spec = spec.replace(
            mapping=replace(spec.mapping, parameters=(("name", "name"), ("visits", "visits"), ("order.total", "total")))
        )
        run(spec, frame=frame, credentials=sandbox_creds)
        params = {e.to: e.parameters for e in sandbox.ledger()}
        markers = {to: p.pop("_batch_engage") for to, p in params.items()}
        assert params["+14155550100"] == {"name": "Zoë", "visits": 3, "order": {"total": 1.5}}
        assert params["+14155550101"] == {"visits": 4}
        # Each request carries this checkpoint's marker: one token, and a different hash per contact.
        tokens = {m.split(":")[0] for m in markers.values()}
        assert len(tokens) == 1 and len(set(markers.values())) == 2

    def test_v2_executions_are_sent_and_counted_as_sent(
        self, sandbox: Sandbox, make_spec: Callable[..., Any], sandbox_creds: Credentials
    ) -> None:
        """api = "executions" posts to /v2 (201) and every row ends sent."""
        result = run(make_spec(sandbox.url, api="executions"), frame=make_contacts(10), credentials=sandbox_creds)
        assert result.counts["sent"] == 10
        assert {e.api for e in sandbox.ledger()} == {"executions"}

    def test_limit_leaves_the_rest_pending_and_exit_0_then_resume_finishes(
        self, sandbox: Sandbox, make_spec: Callable[..., Any], sandbox_creds: Credentials
    ) -> None:
        """--limit N sends N rows; the rest stay pending; the same job again sends only the rest."""
        spec = make_spec(sandbox.url)
        frame = make_contacts(12)
        first = run(spec, frame=frame, credentials=sandbox_creds, options=RunOptions(limit=5))
        assert (first.counts["sent"], first.counts["pending"], first.exit_code) == (5, 7, 0)
        second = run(spec, frame=frame, credentials=sandbox_creds)
        assert second.counts["sent"] == 12
        assert max(ledger_counts(sandbox).values()) == 1
        assert len(sandbox.ledger()) == 12


class TestStudioAnswers:
    def test_v2_conflict_becomes_already_active_with_the_conflicting_sid(
        self, sandbox: Sandbox, make_spec: Callable[..., Any], sandbox_creds: Credentials
    ) -> None:
        """A 409/20409 is already_active, carrying details.conflicting_execution_sid; it is not a failure."""
        frame = make_contacts(3)
        run(make_spec(sandbox.url, api="executions", name="first"), frame=frame, credentials=sandbox_creds)
        existing = {e.to: e.sid for e in sandbox.ledger()}
        again = run(make_spec(sandbox.url, api="executions", name="second"), frame=frame, credentials=sandbox_creds)
        assert again.counts["already_active"] == 3
        assert again.exit_code == 0
        assert dict(zip(again.results["to"], again.results["sid"])) == existing
        assert len(sandbox.ledger()) == 3

    def test_v1_hand_back_of_an_existing_run_is_already_active(
        self, sandbox: Sandbox, make_spec: Callable[..., Any], sandbox_creds: Credentials
    ) -> None:
        """v1 answers 200 with the run that already existed; a second job sees it as already_active, not sent."""
        frame = make_contacts(1)
        spec = make_spec(sandbox.url, name="first", dedupe="none")
        # The same contact twice in one job: the second row's 200 hands back the first row's SID.
        twice = pl.concat([frame, frame])
        result = run(spec, frame=twice, credentials=sandbox_creds)
        assert sorted(result.results["status"].to_list()) == ["already_active", "sent"]
        assert len(sandbox.ledger()) == 1

    def test_rejected_row_fails_with_twilios_code_and_message(
        self, make_spec: Callable[..., Any], sandbox_creds: Credentials
    ) -> None:
        """A 4xx other than 429/409 fails that row with Twilio's code and message, once; the others go on; exit 1."""
        handler = FakeStudio(reject={"+14155550101"})
        result = run(
            make_spec("http://127.0.0.1:9"),
            frame=make_contacts(3),
            credentials=sandbox_creds,
            transport=httpx.MockTransport(handler),
        )
        failed = result.results.filter(pl.col("status") == "failed").row(0, named=True)
        assert failed["to"] == "+14155550101"
        assert (failed["http_status"], failed["error_code"]) == (400, 21211)
        assert failed["error_message"] == "The 'To' number +14155550101 is not a valid phone number."
        assert failed["attempts"] == 1
        assert result.counts["sent"] == 2
        assert result.exit_code == 1
        assert result.summary.top_errors[0]["code"] == 21211

    @pytest.mark.parametrize("api", ["engagements", "executions"])
    def test_rate_limited_rows_are_retried_until_sent(self, api: str, rig: Rig) -> None:
        """A 429 storm (the first 40 creates refused) ends with every row sent once, after backoff, at a cut rate."""
        clock = FakeClock()
        sb = rig.sandbox(rate_limit=None, rate_limited_first=40, wall=clock)
        result = on_the_clock(rig, rig.spec(sb.url, api=api, rate=400, max_backoff=60), 30, clock)
        assert result.counts["sent"] == 30
        assert result.summary.rate_limited == sb.stats().rate_limited == 40
        assert max(ledger_counts(sb).values()) == 1
        assert result.summary.settled_rate < 400
        assert clock.slept > 0

    @pytest.mark.slow
    def test_a_job_above_the_accounts_real_limit_settles_under_it(self, rig: Rig) -> None:
        """rate = 4x an account's limit: every row sent once, at most 5% of requests answered 429.

        Real time on purpose (the sandbox's bucket is what the pacer adapts to), so kept short: about
        7 s of sending. (The achieved rate is measured by benchmarks/, not asserted on a shared machine.)
        Finding the limit costs some 17 refusals at the start whatever the length; 900 rows, not 600, keep
        that under 2% and leave room for what a loaded machine's stalls add (32 of 632 were seen in CI).
        """
        sb = rig.sandbox(rate_limit=120.0, latency=0.04, jitter=0.01)
        result = run(rig.spec(sb.url, rate=480, concurrency=32), frame=make_contacts(900), credentials=rig.creds)
        assert result.counts["sent"] == 900
        assert len(sb.ledger()) == 900 and max(ledger_counts(sb).values()) == 1
        assert sb.stats().rate_limited == result.summary.rate_limited
        assert result.summary.rate_limited / result.summary.requests <= 0.05
        # A loaded machine may never reach the account's limit; once Twilio said 429, the pace settled under 480.
        assert result.summary.rate_limited == 0 or result.summary.settled_rate < 480

    def test_a_row_refused_429_more_often_than_max_attempts_is_still_sent(self, rig: Rig) -> None:
        """A 429 was never processed: retried past max_attempts (max_backoff bounds it), the row ends sent, once."""
        clock = FakeClock()
        sb = rig.sandbox(rate_limit=None, rate_limited_first=5, retry_after=1, wall=clock)
        result = on_the_clock(rig, rig.spec(sb.url, rate=300, concurrency=1, max_attempts=2), 1, clock)
        assert result.counts["sent"] == 1
        assert len(sb.ledger()) == 1
        assert result.summary.rate_limited == 5

    def test_a_server_answering_429_with_retry_after_0_forever_ends_the_row_at_max_backoff(self, rig: Rig) -> None:
        """Each 429 spends at least a second of max_backoff: with max_backoff = 5 the run gives up on the row after
        six requests instead of retrying at once forever; Twilio never took it, so it stays pending (exit 75, its
        429 the reason), never ``failed``, and the next run sends it."""
        clock = FakeClock()
        sb = rig.sandbox(rate_limit=None, rate_limited_first=1000, retry_after=0, wall=clock)
        spec = rig.spec(sb.url, rate=300, concurrency=1, max_attempts=2, max_backoff=5)
        result = on_the_clock(rig, spec, 1, clock)
        assert (result.counts["pending"], result.counts["failed"], result.exit_code) == (1, 0, 75)
        assert "Too Many Requests" in result.results["error_message"][0]
        assert sb.stats().create_requests == 6
        assert len(sb.ledger()) == 0
        sb.reconfigure(rate_limited_first=0)
        again = on_the_clock(rig, spec, 1, clock)
        assert (again.counts["sent"], again.exit_code) == (1, 0)
        assert len(sb.ledger()) == 1

    def test_a_row_left_because_nothing_connected_starts_the_next_run_with_its_tries_whole(self, rig: Rig) -> None:
        """Creates that never connect, max_attempts = 2: the rows stay pending (exit 75); the next run, whose first
        two creates are answered 429, still sends each (it began with its tries spent, and gave up at once)."""
        clock = FakeClock()
        sb = rig.sandbox(rate_limit=None, wall=clock)
        spec = rig.spec(sb.url, rate=300, concurrency=1, max_attempts=2, max_backoff=30)
        frame = make_contacts(2)
        refused = run(
            spec, frame=frame, credentials=rig.creds, transport=RefuseCreates(), options=RunOptions(clock=clock)
        )
        assert (refused.counts["pending"], refused.exit_code) == (2, 75)
        sb.reconfigure(rate_limited_first=2, retry_after=1)
        again = run(spec, frame=frame, credentials=rig.creds, options=RunOptions(clock=clock))
        assert (again.counts["sent"], again.exit_code) == (2, 0)
        assert sorted(e.to for e in sb.ledger()) == frame["phone"].to_list()

    def test_a_retry_after_beyond_max_backoff_leaves_the_rows_for_a_later_run(self, rig: Rig) -> None:
        """Twilio asks to wait 600 s, max_backoff is 300: the rows are never ``failed`` (a re-run would skip them
        for good); they stay pending, the run exits 75, and a later run sends each once."""
        clock = FakeClock()
        sb = rig.sandbox(rate_limit=None, rate_limited_first=3, retry_after=600, wall=clock)
        spec = rig.spec(sb.url, rate=300, concurrency=3)
        result = on_the_clock(rig, spec, 3, clock)
        assert (result.counts["pending"], result.exit_code) == (3, 75)
        again = on_the_clock(rig, spec, 3, clock)
        assert (again.counts["sent"], again.exit_code) == (3, 0)
        assert sorted(e.to for e in sb.ledger()) == make_contacts(3)["phone"].to_list()

    def test_429s_before_a_stop_still_do_not_count_after_it(self, rig: Rig) -> None:
        """Three 429s, then a stop leaves the row pending; the next run (max_attempts = 2) meets two more 429s
        and still sends it: the journal carries only the tries that count."""
        control = RunControl()

        class StopOnThirdWait(FakeClock):
            waits = 0

            async def sleep(self, seconds: float) -> None:
                self.waits += seconds >= 10  # a Retry-After wait, not the pacer's
                if self.waits == 3:
                    control.request_stop()
                await super().sleep(seconds)

        clock = StopOnThirdWait()
        sb = rig.sandbox(rate_limit=None, rate_limited_first=5, retry_after=10, wall=clock)
        spec = rig.spec(sb.url, rate=300, concurrency=1, max_attempts=2)
        options = RunOptions(clock=clock)
        first = run(spec, frame=make_contacts(1), credentials=rig.creds, options=options, control=control)
        assert first.exit_code == 75 and first.counts["pending"] == 1
        assert sb.stats().rate_limited == 3 and len(sb.ledger()) == 0
        again = on_the_clock(rig, spec, 1, clock)
        assert again.counts["sent"] == 1
        assert sb.stats().rate_limited == 5 and len(sb.ledger()) == 1

    @pytest.mark.parametrize("api", ["engagements", "executions"])
    def test_retry_after_is_honoured_and_nothing_is_lost(self, api: str, rig: Rig) -> None:
        """With Retry-After on every 429, rows wait as told and all end sent, once."""
        clock = FakeClock()
        sb = rig.sandbox(rate_limit=None, rate_limited_first=10, retry_after=5, wall=clock)
        result = on_the_clock(rig, rig.spec(sb.url, api=api, rate=300), 40, clock)
        assert result.counts["sent"] == 40
        assert max(ledger_counts(sb).values()) == 1
        assert result.summary.retries == 10
        # Ten refused rows, each told to wait 5 s, each waited them (on the fake clock, at once).
        assert clock.slept >= 10 * 5.0 and clock.monotonic() >= 5.0

    @pytest.mark.parametrize("api", ["engagements", "executions"])
    def test_server_errors_and_slow_answers_are_reconciled_not_resent(self, api: str, rig: Rig) -> None:
        """503s without a run, runs whose answer is lost, and answers past the read timeout: all sent once."""
        # Twilio's clock and ours are the same fake one: v1 tells a hand-back by comparing them.
        clock = FakeClock()
        sb = rig.sandbox(
            rate_limit=None,
            active_rule=False,
            error_rate=0.15,
            lost_answer_rate=0.15,
            slow_rate=0.1,
            slow_seconds=0.4,
            wall=clock,
        )
        result = on_the_clock(rig, rig.spec(sb.url, api=api, read_timeout=0.2, reconcile_delay=3), 80, clock)
        assert result.counts["sent"] == 80
        assert len(sb.ledger()) == 80
        assert max(ledger_counts(sb).values()) == 1
        assert result.summary.reconciled > 0
        by_to = {e.to: e.sid for e in sb.ledger()}
        assert dict(zip(result.results["to"], result.results["sid"])) == by_to

    def test_lost_answers_recover_the_right_sids(self, rig: Rig) -> None:
        """A tenth of creates lose their answer: every row ends sent, no duplicate, SIDs recovered right."""
        sb = rig.sandbox(rate_limit=None, active_rule=False, lost_answer_rate=0.1, drop_rate=0.0)
        for api in ("engagements", "executions"):
            result = run(
                rig.spec(sb.url, api=api, name=api),
                frame=make_contacts(100),
                credentials=rig.creds,
                options=RunOptions(clock=FakeClock()),
            )
            ledger = [e for e in sb.ledger() if e.api == api]
            assert result.counts["sent"] == 100
            assert len(ledger) == 100
            assert result.summary.reconciled >= 1
            assert dict(zip(result.results["to"], result.results["sid"])) == {e.to: e.sid for e in ledger}


class FailTheFirstCreate(httpx.AsyncBaseTransport):
    """The sandbox, but the first create is answered 500 before it reaches Studio (no run made)."""

    def __init__(self) -> None:
        self._inner = httpx.AsyncHTTPTransport()
        self.failed = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        creates = request.method == "POST" and request.url.path.endswith(("/Executions", "/Engagements"))
        if creates and not self.failed:
            self.failed += 1
            return httpx.Response(500, json={"code": 20500, "message": "Internal Server Error", "status": 500})
        return await self._inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self._inner.aclose()


class RefuseCreates(httpx.AsyncBaseTransport):
    """The sandbox, but no create ever connects (reads do): each create is never processed."""

    def __init__(self) -> None:
        self._inner = httpx.AsyncHTTPTransport()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if request.method == "POST" and request.url.path.endswith(("/Executions", "/Engagements")):
            raise httpx.ConnectError("connection refused", request=request)
        return await self._inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self._inner.aclose()


class LoseTheFirstCreatesAnswer(httpx.AsyncBaseTransport):
    """The sandbox, but the first create's answer (its run made) comes back as a 503: that row is possibly sent."""

    def __init__(self) -> None:
        self._inner = httpx.AsyncHTTPTransport()
        self.lost = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self._inner.handle_async_request(request)
        creates = request.method == "POST" and request.url.path.endswith(("/Executions", "/Engagements"))
        if creates and not self.lost:
            self.lost += 1
            await response.aread()
            await response.aclose()
            return httpx.Response(503, json={"code": 20503, "message": "Service Unavailable", "status": 503})
        return response

    async def aclose(self) -> None:
        await self._inner.aclose()


class HoldTheFirstCreatesAnswer(httpx.AsyncBaseTransport):
    """The sandbox, but the first create's answer is held until the second create's has been taken."""

    def __init__(self) -> None:
        self._inner = httpx.AsyncHTTPTransport()
        self._second_answered = asyncio.Event()
        self.creates = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        creates = request.method == "POST" and request.url.path.endswith(("/Executions", "/Engagements"))
        order = self.creates = self.creates + creates
        response = await self._inner.handle_async_request(request)
        if creates and order == 1:
            await response.aread()
            await self._second_answered.wait()
        elif creates and order == 2:
            await response.aread()
            # Released once this answer's worker has yielded: by then it has taken (and recorded) the answer.
            asyncio.get_running_loop().call_soon(self._second_answered.set)
        return response

    async def aclose(self) -> None:
        await self._inner.aclose()


class Misleading(httpx.AsyncBaseTransport):
    """The sandbox, but the first create's answer is lost (a 503 after its run was made), and then the first list of
    runs comes back empty and the first ``reads`` Context reads are answered 429 (as Twilio may, briefly)."""

    def __init__(self, *, empty_lists: int = 0, throttled_reads: int = 0, lose_first: bool = True) -> None:
        self._inner = httpx.AsyncHTTPTransport()
        self.lost = 0 if lose_first else 1
        self.empty_lists = empty_lists
        self.throttled_reads = throttled_reads

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if request.method == "GET" and path.endswith("/Context") and self.throttled_reads:
            self.throttled_reads -= 1
            return httpx.Response(429, json={"code": 20429, "message": "Too Many Requests", "status": 429})
        response = await self._inner.handle_async_request(request)
        creates = request.method == "POST" and path.endswith(("/Executions", "/Engagements"))
        if creates and not self.lost:
            self.lost += 1
            await response.aread()
            return httpx.Response(503, json={"code": 20503, "message": "Service Unavailable", "status": 503})
        lists = request.method == "GET" and path.endswith(("/Executions", "/Engagements"))
        if lists and self.empty_lists:
            self.empty_lists -= 1
            await response.aread()
            page = response.json()
            page.update({key: [] for key, value in page.items() if isinstance(value, list)})
            return httpx.Response(200, json=page)
        return response

    async def aclose(self) -> None:
        await self._inner.aclose()


class CutOff(httpx.AsyncBaseTransport):
    """The sandbox; once a create has made its run, the run is stopped at once (a second Ctrl-C), its answer never
    taken: the contact's line stays an intent."""

    def __init__(self, control: RunControl) -> None:
        self._inner = httpx.AsyncHTTPTransport()
        self._control = control

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self._inner.handle_async_request(request)
        if request.method == "POST" and response.status_code in (200, 201):
            self._control.request_stop()
            self._control.request_stop()
            await asyncio.Event().wait()  # the answer never reaches the run: the hard stop cancels this
        return response

    async def aclose(self) -> None:
        await self._inner.aclose()


class StopOnRead(httpx.AsyncBaseTransport):
    """The sandbox; the first read of a run's Context is answered 429 and the run is asked to stop (Ctrl-C)."""

    def __init__(self, control: RunControl) -> None:
        self._inner = httpx.AsyncHTTPTransport()
        self._control = control
        self.stopped = False

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if request.method == "GET" and request.url.path.endswith("/Context") and not self.stopped:
            self.stopped = True
            self._control.request_stop()
            return httpx.Response(429, json={"code": 20429, "message": "Too Many Requests", "status": 429})
        return await self._inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self._inner.aclose()


class CountContextReads(httpx.AsyncBaseTransport):
    """The sandbox, counting the creates and the reads of a run's Context."""

    def __init__(self) -> None:
        self._inner = httpx.AsyncHTTPTransport()
        self.creates = self.reads = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.reads += request.method == "GET" and request.url.path.endswith("/Context")
        self.creates += request.method == "POST" and request.url.path.endswith(("/Executions", "/Engagements"))
        return await self._inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self._inner.aclose()


class TestARunItsOwnEarlierRequestMade:
    """A row's answer is lost and reconciliation misses its run; sent again, Studio names that run (v2's 409, v1's
    hand-back): its marker says it is the row's own, so the row is sent, once."""

    @pytest.mark.parametrize("on_active", ["skip", "wait"])
    @pytest.mark.parametrize("api", ["executions", "engagements"])
    def test_the_row_holds_its_own_run_and_is_never_sent_again(self, rig: Rig, api: str, on_active: str) -> None:
        """One run in Studio, the row `sent` with its SID: not `already_active`, not waited out and sent twice."""
        # Its run ends after 2 s: waited out, the row would be sent a second time.
        sb = rig.sandbox(rate_limit=None, run_lifetime=2.0)
        spec = rig.spec(sb.url, api=api, concurrency=1, reconcile_delay=0.0, on_active=on_active, active_retry="1s")
        transport = Misleading(empty_lists=1)
        result = run(spec, frame=make_contacts(1), credentials=rig.creds, transport=transport)
        runs = [e.sid for e in sb.ledger() if e.source == "rest"]
        assert len(runs) == 1, result.results.select("status", "sid", "error_message").to_dicts()
        assert result.results.select("status", "sid").row(0) == ("sent", runs[0])

    @pytest.mark.parametrize("api", ["executions", "engagements"])
    def test_a_request_cut_off_by_a_crash_counts_so_its_run_is_still_read_for_the_marker(
        self, rig: Rig, api: str
    ) -> None:
        """Run 1 stops hard with the create in flight (the line stays an intent); run 2's reconciliation misses the
        run, so the contact is sent again and Studio names that run: it is the row's, sent, never waited out."""
        clock = FakeClock()
        sb = rig.sandbox(rate_limit=None, run_lifetime=30.0, wall=clock)
        spec = rig.spec(sb.url, api=api, concurrency=1, on_active="wait", active_retry="5s")
        control = RunControl()
        options = RunOptions(clock=clock)
        transport = CutOff(control)
        cut = run(
            spec, frame=make_contacts(1), credentials=rig.creds, control=control, transport=transport, options=options
        )
        assert cut.results["status"].to_list() == ["uncertain"] and len(sb.ledger()) == 1
        # Past v1's 2.5 s margin: its clock alone would call the row's own run a hand-back.
        clock.advance(5)
        again = run(
            spec,
            frame=make_contacts(1),
            credentials=rig.creds,
            transport=Misleading(empty_lists=1, lose_first=False),
            options=options,
        )
        runs = [e.sid for e in sb.ledger() if e.source == "rest"]
        assert len(runs) == 1, again.results.select("status", "sid", "error_message").to_dicts()
        assert again.results.select("status", "sid").row(0) == ("sent", runs[0])

    def test_a_stop_while_a_run_is_read_hands_the_unsent_rows_back_as_pending(self, rig: Rig) -> None:
        """Stopped while the run v1 handed back waits to be read: only the row whose request left is possibly
        sent; the rows whose intents were written but never sent are pending, not left for reconciliation."""
        sb = rig.sandbox(rate_limit=None)
        spec = rig.spec(sb.url, api="engagements", dedupe="none", concurrency=1, rate=5)
        # One person on the first two rows, then 40 others: the first row's run is read, and the stop comes then.
        frame = pl.concat([make_contacts(2).with_columns(phone=pl.lit("+14155559999")), make_contacts(40)])
        control = RunControl()
        result = run(spec, frame=frame, credentials=rig.creds, control=control, transport=StopOnRead(control))
        assert result.exit_code == 75
        assert result.counts["uncertain"] == 1 and result.counts["pending"] == 41, result.counts
        assert result.results.row(0, named=True)["status"] == "uncertain"

    def test_a_context_read_answered_429_is_read_again_not_guessed(self, rig: Rig) -> None:
        """v1, one person on two rows, row 1's answer lost: a throttled read of the run v1 hands row 2 is retried."""
        sb = rig.sandbox(rate_limit=None)
        spec = rig.spec(sb.url, api="engagements", dedupe="none", concurrency=1, reconcile_delay=1.0)
        frame = pl.DataFrame({"phone": ["+14155550100"] * 2, "name": ["a", "b"], "visits": [1, 2]})
        result = run(spec, frame=frame, credentials=rig.creds, transport=Misleading(throttled_reads=1))
        runs = [e.sid for e in sb.ledger() if e.source == "rest"]
        rows = result.results.select("status", "sid").to_dicts()
        assert len(runs) == 1
        assert rows == [{"status": "sent", "sid": runs[0]}, {"status": "already_active", "sid": runs[0]}]


class TestStudioStillWorking:
    """An edge answers 504 while Studio still works on the request: its run appears only later."""

    @pytest.mark.parametrize("api", ["executions", "engagements"])
    def test_a_run_created_after_its_504_is_found_and_never_sent_again(self, rig: Rig, api: str) -> None:
        """Every create answered 504 at once and its run made 0.5 s later: looked for again once the request is
        settle_after old, each contact has one run and its row that run's SID (it was sent twice)."""
        sb = rig.sandbox(rate_limit=None, late_rate=1.0, late_seconds=0.5)
        spec = rig.spec(sb.url, api=api, concurrency=2, settle_after=2.0)
        frame = pl.DataFrame(
            {"phone": [f"+1415555010{i}" for i in range(3)], "name": ["a", "b", "c"], "visits": [1] * 3}
        )
        result = run(spec, frame=frame, credentials=rig.creds)
        runs = [e for e in sb.ledger() if e.source == "rest"]
        assert sorted(e.to for e in runs) == frame["phone"].to_list()
        assert result.results["status"].to_list() == ["sent"] * 3
        assert dict(zip(result.results["to"], result.results["sid"])) == {e.to: e.sid for e in runs}

    def test_a_row_sent_again_after_a_500_waits_settle_after_from_its_second_request(self, rig: Rig) -> None:
        """Its first create 500 (no run), its second answered 504 with the run made a second later: the second
        request's run is waited for and found, one run (its age was taken from the first intent, and a third
        request went out at once: two runs)."""
        sb = rig.sandbox(rate_limit=None, late_rate=1.0, late_seconds=1.0)
        spec = rig.spec(sb.url, api="executions", concurrency=1, settle_after=2.0)
        frame = pl.DataFrame({"phone": ["+14155550100"], "name": ["a"], "visits": [1]})
        result = run(spec, frame=frame, credentials=rig.creds, transport=FailTheFirstCreate())
        runs = [e for e in sb.ledger() if e.source == "rest"]
        assert [e.to for e in runs] == ["+14155550100"]
        assert result.results.select("status", "sid").rows() == [("sent", runs[0].sid)]


class TestAnEdgeWithItsOwnClock:
    """The Date header Twilio's clock is read from is not the clock that stamps a run's date_created."""

    def test_v1_runs_are_this_rows_own_when_the_date_header_runs_ahead(self, rig: Rig) -> None:
        """v1, Date 200 s ahead of date_created: each fresh run looked older than its request and every row read
        already_active with its own run's SID; the marker says they are this row's: sent, one run each."""
        sb = rig.sandbox(rate_limit=None, date_header_offset=200.0)
        spec = rig.spec(sb.url, api="engagements", concurrency=2)
        result = run(spec, frame=make_contacts(4), credentials=rig.creds)
        runs = {e.to: e.sid for e in sb.ledger() if e.source == "rest"}
        assert result.results["status"].to_list() == ["sent"] * 4
        assert dict(zip(result.results["to"], result.results["sid"])) == runs

    def test_a_date_header_five_minutes_ahead_never_hides_a_lost_answers_run(self, rig: Rig) -> None:
        """Every answer lost (the run made, 503 back) and Date 300 s ahead of date_created: the runs are still
        found by their marker, one a contact (the window on the Date clock alone missed them: six runs each)."""
        sb = rig.sandbox(rate_limit=None, lost_answer_rate=1.0, active_rule=False, date_header_offset=300.0)
        spec = rig.spec(sb.url, api="executions", concurrency=2)
        result = run(spec, frame=make_contacts(3), credentials=rig.creds)
        runs = [e for e in sb.ledger() if e.source == "rest"]
        assert sorted(e.to for e in runs) == make_contacts(3)["phone"].to_list()
        assert result.results["status"].to_list() == ["sent"] * 3


class TestARunAnotherRowNames:
    """Two rows for one person (dedupe = "none"): row 1's answer is lost, row 2 meets row 1's run (409, or v1 hands
    it back). Row 2's line then names that run; row 1's reconciliation must still find it as row 1's own."""

    @pytest.mark.parametrize(
        ("api", "marker_key"),
        [("executions", "_batch_engage"), ("engagements", "_batch_engage"), ("executions", "")],
        # Without a marker, v1 hands row 1's run to row 2 as its own: the limit the README names.
        ids=["v2", "v1", "v2-no-marker"],
    )
    def test_the_row_whose_answer_was_lost_is_never_sent_again(self, rig: Rig, api: str, marker_key: str) -> None:
        """One run in Studio for the person, and row 1 holds it (its run ends at once, so a second could start)."""
        sb = rig.sandbox(rate_limit=None, run_lifetime=1.0)
        spec = rig.spec(sb.url, api=api, dedupe="none", concurrency=1, reconcile_delay=2.0, marker_key=marker_key)
        frame = pl.DataFrame({"phone": ["+14155550100"] * 2, "name": ["a", "b"], "visits": [1, 2]})
        transport = LoseTheFirstCreatesAnswer()
        result = run(spec, frame=frame, credentials=rig.creds, transport=transport)
        assert transport.lost == 1
        runs = [e.sid for e in sb.ledger() if e.source == "rest"]
        assert len(runs) == 1, result.results.select("row", "status", "sid", "error_message").to_dicts()
        assert result.results.row(0, named=True)["sid"] == runs[0]
        assert result.results.row(0, named=True)["status"] == "sent"

    @pytest.mark.parametrize("api", ["executions", "engagements"], ids=["v2-409", "v1-hand-back"])
    def test_while_that_run_is_active_row_1_is_sent_and_row_2_already_active(self, rig: Rig, api: str) -> None:
        """Row 1's own run is still active when it is reconciled: found (sent), not refused by its own run; row 2,
        refused (v2) or handed that run (v1, whose clock cannot tell: the run's marker does), is already_active."""
        sb = rig.sandbox(rate_limit=None)
        spec = rig.spec(sb.url, api=api, dedupe="none", concurrency=1, reconcile_delay=1.0)
        frame = pl.DataFrame({"phone": ["+14155550100"] * 2, "name": ["a", "b"], "visits": [1, 2]})
        result = run(spec, frame=frame, credentials=rig.creds, transport=LoseTheFirstCreatesAnswer())
        runs = [e.sid for e in sb.ledger() if e.source == "rest"]
        rows = result.results.select("status", "sid").to_dicts()
        assert len(runs) == 1
        assert rows == [{"status": "sent", "sid": runs[0]}, {"status": "already_active", "sid": runs[0]}]

    def test_a_run_handed_back_again_and_again_while_row_2_waits_is_read_once(self, rig: Rig) -> None:
        """v1, on_active = "wait": row 2 is handed row 1's run every retry until it ends; its marker is read once."""
        clock = FakeClock()
        # Runs wait 30 s (of the fake clock) for a reply, then end.
        sb = rig.sandbox(rate_limit=None, wait_timeout=30.0, wall=clock)
        spec = rig.spec(sb.url, api="engagements", dedupe="none", concurrency=1, on_active="wait", active_retry="5s")
        frame = pl.DataFrame({"phone": ["+14155550100"] * 2, "name": ["a", "b"], "visits": [1, 2]})
        transport = CountContextReads()
        result = run(spec, frame=frame, credentials=rig.creds, transport=transport, options=RunOptions(clock=clock))
        runs = [e.sid for e in sb.ledger() if e.source == "rest"]
        assert len(runs) == 2 and result.results["status"].to_list() == ["sent", "sent"]
        assert result.results["sid"].to_list() == runs
        assert transport.creates > 3  # row 2 met row 1's run on several tries
        assert transport.reads == 2  # row 1's run once, row 2's own once

    def test_v1_answers_coming_back_out_of_order_still_name_the_row_that_made_the_run(self, rig: Rig) -> None:
        """Row 1 and row 2 in flight at once, row 2's hand-back answered first: row 1 sent, row 2 already_active."""
        sb = rig.sandbox(rate_limit=None)
        spec = rig.spec(sb.url, api="engagements", dedupe="none", concurrency=2)
        frame = pl.DataFrame({"phone": ["+14155550100"] * 2, "name": ["a", "b"], "visits": [1, 2]})
        transport = HoldTheFirstCreatesAnswer()
        result = run(spec, frame=frame, credentials=rig.creds, transport=transport)
        runs = [e.sid for e in sb.ledger() if e.source == "rest"]
        rows = result.results.select("status", "sid").to_dicts()
        assert transport.creates == 2 and len(runs) == 1
        assert rows == [{"status": "sent", "sid": runs[0]}, {"status": "already_active", "sid": runs[0]}]


class TestFatal:
    @pytest.mark.parametrize("preflight", [True, False])
    def test_bad_token_aborts_with_exit_3_after_few_requests(
        self, sandbox: Sandbox, make_spec: Callable[..., Any], preflight: bool
    ) -> None:
        """Wrong credentials stop the whole run (exit 3) before a worker sends twice; rows stay pending."""
        bad = Credentials("AC" + "0" * 32, "wrong-token")
        # Only the requests already out when the first answer comes back are sent: one per worker at most.
        spec = make_spec(sandbox.url, preflight=preflight, concurrency=4)
        result = run(spec, frame=make_contacts(50), credentials=bad)
        assert result.exit_code == 3
        assert "credentials" in (result.summary.aborted or "")
        assert sandbox.stats().create_requests + sandbox.stats().flow_requests <= 4
        assert result.counts["pending"] == 50
        assert sandbox.ledger() == []

    def test_unknown_flow_aborts_with_exit_3(self, rig: Rig) -> None:
        """A Flow SID the account does not have stops the run before a worker sends twice; rows stay pending."""
        sb = rig.sandbox(rate_limit=None, flows={"FW" + "f" * 32: "published"})
        # How many leave before the first 404 is back depends on the machine; never more than one per worker.
        spec = rig.spec(sb.url, preflight=False, concurrency=4)
        result = run(spec, frame=make_contacts(30), credentials=rig.creds)
        assert result.exit_code == 3
        assert "Flow was not found" in (result.summary.aborted or "")
        assert sb.stats().create_requests <= 4
        assert result.counts["pending"] == 30

    def test_draft_v2_flow_is_refused_by_the_preflight(self, rig: Rig) -> None:
        """A v2 Flow that was never published is refused before any row is sent."""
        from conftest import FLOW_SID

        sb = rig.sandbox(rate_limit=None, flows={FLOW_SID: "draft"})
        result = run(rig.spec(sb.url, api="executions"), frame=make_contacts(3), credentials=rig.creds)
        assert result.exit_code == 3
        assert "no published revision" in (result.summary.aborted or "")
        assert sb.stats().create_requests == 0

    def test_failure_breaker_stops_a_run_where_most_rows_fail(
        self, make_spec: Callable[..., Any], sandbox_creds: Credentials
    ) -> None:
        """When more than half of the last rows failed, the run aborts (exit 3) instead of failing them all."""
        frame = make_contacts(200)
        handler = FakeStudio(reject=set(frame["phone"].to_list()))
        result = run(
            make_spec("http://127.0.0.1:9", breaker_window=20, concurrency=2),
            frame=frame,
            credentials=sandbox_creds,
            transport=httpx.MockTransport(handler),
        )
        assert result.exit_code == 3
        assert "failed" in (result.summary.aborted or "")
        assert result.counts["failed"] < 40
        assert result.counts["pending"] > 150


class FakeStudio:
    """A MockTransport handler: a published Flow, 400/21211 for the given To numbers, 200 otherwise."""

    def __init__(self, reject: set[str]) -> None:
        self.reject = reject
        self.creates = 0

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if request.method == "GET":
            return httpx.Response(200, json={"sid": "FW" + "0" * 32, "status": "published"})
        self.creates += 1
        form = dict(urllib.parse.parse_qsl(request.content.decode()))
        if form["To"] in self.reject:
            return httpx.Response(
                400,
                json={
                    "code": 21211,
                    "message": f"The 'To' number {form['To']} is not a valid phone number.",
                    "more_info": "https://www.twilio.com/docs/errors/21211",
                    "status": 400,
                },
            )
        return httpx.Response(200, json={"sid": f"FN{self.creates:032x}", "date_created": None})


def test_warns_when_concurrency_cannot_reach_the_rate(rig: Rig) -> None:
    """rate x latency above concurrency: one warning saying how many requests in flight the rate needs."""
    from structlog.testing import capture_logs

    sb = rig.sandbox(rate_limit=None, latency=0.01)
    with capture_logs() as events:
        run(rig.spec(sb.url, rate=1000, concurrency=1), frame=make_contacts(22), credentials=rig.creds)
    warnings = [e for e in events if e["event"] == "pacing.concurrency_too_low"]
    assert len(warnings) == 1
    assert warnings[0]["concurrency"] == 1 and warnings[0]["needed"] >= 2
    assert warnings[0]["max_rate"] < 1000


class TestTimeInjectedAsCallables:
    """A wall callable and a sleep (the older way to inject time) never make a run outpace Twilio's limit."""

    @pytest.mark.parametrize(
        "options",
        [
            pytest.param(RunOptions(sleep=_instant), id="instant-sleep"),
            pytest.param(RunOptions(clock=lambda: FROZEN), id="frozen-wall"),
        ],
    )
    def test_slots_stay_on_real_time(
        self, options: RunOptions, sandbox: Sandbox, make_spec: Callable[..., Any], sandbox_creds: Credentials
    ) -> None:
        """21 rows at rate 20 take at least a real second, and the summary's duration says so."""
        started = time.monotonic()
        result = run(
            make_spec(sandbox.url, rate=20), frame=make_contacts(21), credentials=sandbox_creds, options=options
        )
        took = time.monotonic() - started
        assert result.counts["sent"] == 21
        assert took >= 0.95
        assert result.summary.duration >= 0.95
