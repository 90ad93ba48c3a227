"""Twilio as it really behaves: clocks disagree, other senders start runs, lists push back, drafts, prefixes.

Every assertion reads the sandbox's ledger (what Studio created, and who started it), never
the tool's own opinion of itself.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest
from structlog.testing import capture_logs

from batch_engage import RunOptions, run
from batch_engage.credentials import Credentials
from batch_engage.sandbox import LedgerEntry, Sandbox

from conftest import FLOW_SID, Rig, make_contacts


async def _no_wait(seconds: float) -> None:
    """Backoff and reconcile delays pass at once: the tests measure behaviour, not time."""


FAST = RunOptions(sleep=_no_wait)


def _ours(ledger: list[LedgerEntry]) -> list[LedgerEntry]:
    """Runs this job created: started by a REST request and carrying a marker."""
    return [e for e in ledger if e.source == "rest" and "_batch_engage" in e.parameters]


def _assert_each_contact_once(sb: Sandbox, result: Any, n: int) -> None:
    ours = _ours(sb.ledger())
    per_contact = Counter(e.to for e in ours)
    assert len(per_contact) == n and set(per_contact.values()) == {1}, per_contact.most_common(3)
    sids = dict(zip(result.results["to"].to_list(), result.results["sid"].to_list()))
    assert sids == {e.to: e.sid for e in ours}
    assert result.counts["sent"] == n


class TestTwilioClock:
    """Comparisons with Twilio's timestamps use Twilio's clock, estimated from its Date headers."""

    @pytest.mark.parametrize("offset", [30.0, -30.0])
    def test_v1_runs_are_sent_whatever_the_clock_skew(
        self,
        offset: float,
        rig: Rig,
    ) -> None:
        """With Twilio's clock 30 s ahead of or behind ours, new v1 runs are `sent`, not taken for hand-backs."""
        sb = rig.sandbox(rate_limit=None, clock_offset=offset)
        result = run(rig.spec(sb.url), frame=make_contacts(40), credentials=rig.creds, options=FAST)
        assert result.counts["sent"] == 40 and result.counts["already_active"] == 0
        assert result.summary.clock_offset == pytest.approx(offset, abs=2.0)

    def test_a_skew_over_five_seconds_is_a_warning_naming_ntp(self, rig: Rig) -> None:
        """The estimate is logged at start, and a skew over 5 s is a warning that names NTP."""
        sb = rig.sandbox(rate_limit=None, clock_offset=-90)
        with capture_logs() as logs:
            run(rig.spec(sb.url), frame=make_contacts(2), credentials=rig.creds, options=FAST)
        skew = [e for e in logs if e["event"] == "clock.skew"]
        assert skew and "NTP" in skew[0]["message"] and skew[0]["seconds"] == pytest.approx(-90, abs=2)

    def test_twilio_ten_minutes_behind_with_lost_answers_makes_no_duplicates(self, rig: Rig) -> None:
        """Twilio 10 minutes behind and 15% of answers lost: every lost answer is found in the list, nobody twice."""
        sb = rig.sandbox(rate_limit=None, active_rule=False, clock_offset=-600, lost_answer_rate=0.15)
        result = run(rig.spec(sb.url, api="executions"), frame=make_contacts(200), credentials=rig.creds, options=FAST)
        _assert_each_contact_once(sb, result, 200)
        assert result.summary.reconciled > 10


class TestOtherSenders:
    """Runs other senders start for the same contacts are never taken for this job's."""

    @pytest.mark.parametrize("api", ["engagements", "executions"])
    def test_other_senders_racing_server_errors_and_read_429s(
        self,
        api: str,
        rig: Rig,
    ) -> None:
        """10% uncommitted 503s while inbound messages start runs for the same contacts, and half the GETs 429:
        each contact gets exactly one run of this job, and no other run is ever recorded as a row's."""
        sb = rig.sandbox(
            rate_limit=None, active_rule=False, error_rate=0.10, other_sender_rate=0.5, read_rate_limit_rate=0.5
        )
        result = run(rig.spec(sb.url, api=api), frame=make_contacts(150), credentials=rig.creds, options=FAST)
        _assert_each_contact_once(sb, result, 150)
        inbound = {e.sid for e in sb.ledger() if e.source == "inbound"}
        assert len(inbound) > 20
        assert not inbound & set(result.results["sid"].to_list())
        assert result.summary.lookups > 0

    def test_without_the_marker_another_senders_run_can_be_taken_for_ours(self, rig: Rig) -> None:
        """marker_key = "" keeps the old matching by address, which cannot tell other senders' runs apart."""
        sb = rig.sandbox(rate_limit=None, active_rule=False, error_rate=0.2, other_sender_rate=1.0, seed=3)
        result = run(rig.spec(sb.url, marker_key=""), frame=make_contacts(60), credentials=rig.creds, options=FAST)
        inbound = {e.sid for e in sb.ledger() if e.source == "inbound"}
        assert inbound & set(result.results["sid"].to_list())


class TestReadsPushThrough:
    """List and Context GETs are paced and retried; a row is final-uncertain only when retries are spent."""

    def test_429s_on_every_other_read_still_settle_every_lost_answer(self, rig: Rig) -> None:
        """Half the list and Context GETs answered 429: reconciliation retries them and settles every row."""
        sb = rig.sandbox(rate_limit=None, active_rule=False, lost_answer_rate=0.2, read_rate_limit_rate=0.5)
        result = run(rig.spec(sb.url), frame=make_contacts(80), credentials=rig.creds, options=FAST)
        _assert_each_contact_once(sb, result, 80)

    def test_whatsapp_addresses_listed_without_their_prefix_are_still_found(self, rig: Rig) -> None:
        """Twilio may list `whatsapp:+1…` as `+1…`: lost answers for WhatsApp contacts are still found, not resent."""
        sb = rig.sandbox(rate_limit=None, active_rule=False, lost_answer_rate=0.3, list_drops_channel_prefix=True)
        frame = make_contacts(40).with_columns(phone="whatsapp:" + make_contacts(40)["phone"])
        result = run(rig.spec(sb.url), frame=frame, credentials=rig.creds, options=FAST)
        _assert_each_contact_once(sb, result, 40)


class TestPreflight:
    """The preflight runs a Flow that has a published revision, whatever its latest draft."""

    @pytest.mark.parametrize("api", ["engagements", "executions"])
    def test_a_published_flow_with_a_newer_draft_runs_with_a_warning(
        self,
        api: str,
        rig: Rig,
    ) -> None:
        """A newer unpublished draft is a warning naming the revision runs will use; the job runs."""
        sb = rig.sandbox(rate_limit=None, flows={FLOW_SID: "draft_over_published"})
        with capture_logs() as logs:
            result = run(rig.spec(sb.url, api=api), frame=make_contacts(3), credentials=rig.creds, options=FAST)
        assert result.counts["sent"] == 3
        draft = [e for e in logs if e["event"] == "flow.draft"]
        assert draft and "the last published" in draft[0]["message"]


class TestRegions:
    """A region where Studio is not generally offered is allowed, with a warning at start."""

    def test_a_run_in_ie1_goes_to_the_dublin_edge_with_a_warning(self, tmp_path: Any) -> None:
        """ie1 without an edge reaches studio.dublin.ie1.twilio.com, and the log warns that Studio is a us1 product."""
        import httpx

        from batch_engage.job import load_spec

        hosts: set[str] = set()

        def studio(request: httpx.Request) -> httpx.Response:
            hosts.add(request.url.host)
            if request.method == "GET":
                return httpx.Response(200, json={"sid": FLOW_SID, "revision": 1, "status": "published"})
            return httpx.Response(201, json={"sid": "FN" + "1" * 32, "date_created": None})

        spec = load_spec(
            raw={
                "flow": {"sid": FLOW_SID, "api": "executions"},
                "mapping": {"to": "phone", "from": "+15005550006"},
                "output": {"results": str(tmp_path / "r.csv"), "checkpoint": str(tmp_path / "c")},
            }
        )
        creds = Credentials("AC" + "5a" * 16, "token", region="ie1")
        with capture_logs() as logs:
            result = run(spec, frame=make_contacts(1), credentials=creds, transport=httpx.MockTransport(studio))
        assert result.counts["sent"] == 1
        assert hosts == {"studio.dublin.ie1.twilio.com"}
        assert any(e["event"] == "region.studio" and "us1" in e["message"] for e in logs)
