"""Will the campaign arrive, through the sandbox: the projection, reply routing, the sender's pace, opt-outs learnt."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from structlog.testing import capture_logs

from batch_engage import collect, run, validate
from batch_engage.api import CollectOptions, history_opt_outs, write_report_html
from batch_engage.cli.main import main
from batch_engage.credentials import Credentials
from batch_engage.history import opt_outs_path
from batch_engage.job import load_spec
from batch_engage.runner import RunOptions
from batch_engage.sandbox import OTHER_FLOW_SID, Sandbox, ServiceConfig
from batch_engage.testing import FakeClock

from conftest import FLOW_SID, make_contacts

FROM = "+15005550006"
SERVICE = "MG" + "c" * 32


def _spec(tmp_path: Path, base_url: str, name: str = "job", **sections: dict[str, Any]) -> Any:
    """A frame-fed job against the sandbox; keyword sections extend the defaults."""
    raw = _raw(tmp_path, base_url, name)
    for section, values in sections.items():
        raw[section] = raw.get(section, {}) | values
    return load_spec(raw=raw)


def _raw(tmp_path: Path, base_url: str, name: str = "job") -> dict[str, Any]:
    """:func:`_spec`'s job as the raw sections of a job file."""
    return {
        "flow": {"sid": FLOW_SID, "api": "executions", "base_url": base_url},
        "mapping": {"to": "phone", "from": FROM, "parameters": {"name": "name", "visits": "visits"}},
        "send": {"rate": 1000, "concurrency": 8, "reconcile_delay": 0.0},
        "output": {
            "results": str(tmp_path / f"{name}.results.csv"),
            "checkpoint": str(tmp_path / f"{name}.checkpoint"),
            "outcomes": str(tmp_path / f"{name}.outcomes.csv"),
        },
    }


class TestReplyRouting:
    """A Flow that waits for replies refuses to start when its number's replies go to another Flow or nowhere."""

    def test_replies_to_another_flow_refuse_before_any_create_naming_number_and_flow(
        self, tmp_path: Path, sandbox_factory: Callable[..., Sandbox], sandbox_creds: Credentials
    ) -> None:
        """Exit 3, no run created; the message names the From number and the other Flow."""
        sb = sandbox_factory(rate_limit=None, numbers={FROM: "other_flow"})
        result = run(_spec(tmp_path, sb.url), frame=make_contacts(5), credentials=sandbox_creds)
        assert result.exit_code == 3 and sb.stats().create_requests == 0
        assert result.summary.aborted is not None
        assert FROM in result.summary.aborted and OTHER_FLOW_SID in result.summary.aborted

    def test_replies_elsewhere_acknowledges_a_deliberate_setup_and_sends(
        self, tmp_path: Path, sandbox_factory: Callable[..., Sandbox], sandbox_creds: Credentials
    ) -> None:
        """[flow] replies = "elsewhere": the same sandbox, every row sent; the replies never reach these runs."""
        sb = sandbox_factory(rate_limit=None, numbers={FROM: "other_flow"})
        answer = {"fields": {"answer": "widgets.ask.inbound.Body"}, "rate": 1000}
        spec = _spec(tmp_path, sb.url, flow={"replies": "elsewhere"}, collect=answer)
        result = run(spec, frame=make_contacts(5), credentials=sandbox_creds)
        assert result.exit_code == 0 and len(sb.ledger()) == 5
        sb.end_all_runs()
        assert collect(spec, credentials=sandbox_creds).outcomes["answer"].null_count() == 5

    def test_a_service_with_inbound_off_drops_replies_and_refuses(
        self, tmp_path: Path, sandbox_factory: Callable[..., Sandbox], sandbox_creds: Credentials
    ) -> None:
        """A number in a Messaging Service whose inbound_request_url is null: replies go nowhere, exit 3."""
        sb = sandbox_factory(rate_limit=None, services={SERVICE: ServiceConfig(numbers=(FROM,), inbound="none")})
        result = run(_spec(tmp_path, sb.url), frame=make_contacts(3), credentials=sandbox_creds)
        assert result.exit_code == 3 and sb.stats().create_requests == 0
        assert result.summary.aborted is not None and "inbound is off" in result.summary.aborted

    def test_another_url_or_an_unknown_number_only_warns(
        self, tmp_path: Path, sandbox_factory: Callable[..., Sandbox], sandbox_creds: Credentials
    ) -> None:
        """A webhook that is not a Flow, or a number the account does not hold: a warning, and the run sends."""
        sb = sandbox_factory(rate_limit=None, numbers={FROM: "https://example.com/sms"})
        with capture_logs() as logs:
            result = run(_spec(tmp_path, sb.url), frame=make_contacts(3), credentials=sandbox_creds)
        assert result.exit_code == 0 and len(sb.ledger()) == 3
        assert any("example.com/sms" in e.get("message", "") for e in logs if e["event"] == "arrival.warning")
        sb.reconfigure(numbers={FROM: "absent"})
        with capture_logs() as logs:
            again = run(_spec(tmp_path, sb.url, name="other"), frame=make_contacts(3), credentials=sandbox_creds)
        assert again.exit_code == 0
        assert any("not a phone number" in e.get("message", "") for e in logs if e["event"] == "arrival.warning")


class TestProjection:
    """validate --flow projects trigger time, Twilio's queue and the finish, and warns before a slow sender fails."""

    def test_2000_two_segment_runs_through_one_long_code_queue_about_4000_seconds(
        self, tmp_path: Path, sandbox: Sandbox, sandbox_creds: Credentials
    ) -> None:
        """Rate 20, 1 segment/s: about 4,000 s in the queue; a validity period shorter than that is warned of."""
        spec = _spec(tmp_path, sandbox.url, send={"rate": 20})
        found = validate(spec, frame=make_contacts(2000), credentials=sandbox_creds, flow=True).capacity
        assert found is not None
        assert found.segments_per_run_max == 2 and found.segments == 4000
        assert found.sender == FROM and found.sender_kind == "long_code" and found.sender_throughput == 1.0
        assert found.trigger_seconds == pytest.approx(100.0)
        assert found.queue_seconds == pytest.approx(4000, rel=0.10)
        assert found.reply_routing == "this_flow" and not found.warnings
        short = _spec(tmp_path, sandbox.url, send={"rate": 20, "validity_period": 3600})
        warned = validate(short, frame=make_contacts(2000), credentials=sandbox_creds, flow=True).capacity
        assert warned is not None and len(warned.warnings) == 1
        assert "30036" in warned.warnings[0] and FROM in warned.warnings[0]

    def test_pace_sender_projects_the_slower_trigger_rate(
        self, tmp_path: Path, sandbox: Sandbox, sandbox_creds: Credentials
    ) -> None:
        """sender_throughput = 10 and pace = "sender": 10 / 2 segments = 5 runs/s, and no queue to speak of."""
        spec = _spec(tmp_path, sandbox.url, send={"rate": 20, "sender_throughput": 10, "pace": "sender"})
        found = validate(spec, frame=make_contacts(100), credentials=sandbox_creds, flow=True).capacity
        assert found is not None and found.trigger_rate == pytest.approx(5.0)
        assert found.queue_seconds == pytest.approx(0.0, abs=0.5)

    def test_validate_flow_summary_json_holds_the_capacity_keys(
        self, tmp_path: Path, sandbox: Sandbox, job_for: Callable[..., Path], capsys: pytest.CaptureFixture[str]
    ) -> None:
        """The counts, and a capacity object with the keys a pipeline reads; the text shows the same projection."""
        out = tmp_path / "summary.json"
        job = job_for(sandbox, api="executions")
        code = main(["validate", str(job), "--flow", "--summary-json", str(out)])
        text = capsys.readouterr().out
        assert code == 0 and "Twilio's queue" in text and "first message segments" in text
        summary = json.loads(out.read_text())
        capacity = summary["capacity"]
        keys = {"runs", "segments", "segments_per_run_max", "sender", "sender_kind", "sender_throughput"}
        keys |= {"trigger_seconds", "queue_seconds", "finish_at", "reply_routing", "warnings"}
        assert keys <= set(capacity) and summary["valid"] == capacity["runs"] == 30
        assert capacity["finish_at"].endswith("Z") and capacity["reply_routing"] == "this_flow"

    def test_results_carry_the_first_messages_segments_unless_no_preflight(
        self, tmp_path: Path, sandbox: Sandbox, sandbox_creds: Credentials
    ) -> None:
        """The results table gains segments (last column); --no-preflight leaves it empty."""
        result = run(_spec(tmp_path, sandbox.url), frame=make_contacts(4), credentials=sandbox_creds)
        assert result.results.columns[-1] == "segments" and result.results["segments"].to_list() == [1] * 4
        assert result.summary.as_dict()["capacity"]["segments"] == 8
        bare = _spec(tmp_path, sandbox.url, name="bare", send={"preflight": False})
        skipped = run(bare, frame=make_contacts(4, start=500), credentials=sandbox_creds)
        assert skipped.results["segments"].null_count() == 4 and "capacity" not in skipped.summary.as_dict()


class TestSenderPace:
    """pace = "sender" keeps Twilio's queue short; without it a slow sender's queue fails messages."""

    def test_pace_sender_triggers_at_throughput_over_segments_and_the_queue_fails_nothing(
        self, tmp_path: Path, sandbox_factory: Callable[..., Sandbox], sandbox_creds: Credentials
    ) -> None:
        """sender_throughput 10, 2 segments a run: 5 runs/s (from the ledger's timestamps), no 21611/30001/30036."""
        clock = FakeClock()
        sb = sandbox_factory(rate_limit=None, wall=clock, sender_pace=10.0, validity_period=5)
        # One request in flight: on virtual time, overlapping sleeps end together and would bunch the stamps.
        send = {"rate": 50, "sender_throughput": 10, "pace": "sender", "concurrency": 1}
        spec = _spec(tmp_path, sb.url, send=send, collect={"message_status": ["send_intro", "ask"], "rate": 1000})
        result = run(spec, frame=make_contacts(60), credentials=sandbox_creds, options=RunOptions(clock=clock))
        assert result.counts["sent"] == 60
        stamps = sorted(e.date_created for e in sb.ledger())
        rate = (len(stamps) - 1) / (stamps[-1] - stamps[0]).total_seconds()
        assert rate == pytest.approx(5.0, rel=0.05)
        sb.end_all_runs()
        found = collect(spec, credentials=sandbox_creds)
        codes = set(found.outcomes["send_intro_delivery_error_code"].drop_nulls().to_list())
        codes |= set(found.outcomes["ask_delivery_error_code"].drop_nulls().to_list())
        assert not codes & {21611, 30001, 30036}

    def test_without_pace_a_slow_senders_queue_fails_messages_and_collect_shows_it(
        self, tmp_path: Path, sandbox_factory: Callable[..., Sandbox], sandbox_creds: Credentials
    ) -> None:
        """The same sender at rate 50: the queue outgrows the validity period; collect shows 30036."""
        clock = FakeClock()
        sb = sandbox_factory(rate_limit=None, wall=clock, sender_pace=10.0, validity_period=5)
        spec = _spec(tmp_path, sb.url, send={"rate": 50}, collect={"message_status": ["send_intro"], "rate": 1000})
        result = run(spec, frame=make_contacts(60), credentials=sandbox_creds, options=RunOptions(clock=clock))
        assert result.counts["sent"] == 60
        sb.end_all_runs()
        found = collect(spec, credentials=sandbox_creds)
        failed = found.outcomes.filter(pl.col("send_intro_delivery_error_code") == 30036)
        assert failed.height > 0 and set(failed["send_intro_delivery"].to_list()) == {"failed"}
        assert found.queue_seconds_max is not None and found.queue_seconds_max <= 5
        page = tmp_path / "report.html"
        write_report_html(spec, page)
        html = page.read_text()
        assert "Will it arrive?" in html and "30036" in html and "Longest wait in Twilio" in html


class TestOptOuts:
    """A contact whose message failed with 21610 is left out of later jobs from that sender."""

    def test_five_opted_out_contacts_are_suppressed_by_the_next_job_sharing_the_history(
        self, tmp_path: Path, sandbox_factory: Callable[..., Sandbox], sandbox_creds: Credentials
    ) -> None:
        """collect learns the 5; the next job plans them suppressed (opted out (21610)) and sends nothing to them."""
        frame = make_contacts(20)
        opted = frozenset(frame["phone"].head(5).to_list())
        sb = sandbox_factory(rate_limit=None, opted_out=opted)
        history = {"path": str(tmp_path / "history.db")}
        first = _spec(tmp_path, sb.url, history=history, collect={"message_status": ["send_intro"], "rate": 1000})
        assert run(first, frame=frame, credentials=sandbox_creds).counts["sent"] == 20
        sb.end_all_runs()
        found = collect(first, credentials=sandbox_creds, options=CollectOptions())
        assert found.opted_out == 5
        listed = history_opt_outs(history["path"], output=tmp_path / "opt-outs.csv")
        assert set(listed["to"].to_list()) == opted and set(listed["sender"].to_list()) == {FROM}
        assert pl.read_csv(tmp_path / "opt-outs.csv").height == 5
        second = _spec(tmp_path, sb.url, name="next", history=history)
        before = len(sb.ledger())
        result = run(second, frame=frame, credentials=sandbox_creds)
        suppressed = result.results.filter(pl.col("status") == "suppressed")
        assert set(suppressed["to"].to_list()) == opted
        assert set(suppressed["error_message"].to_list()) == {"opted out (21610)"}
        assert not {e.to for e in sb.ledger()[before:]} & opted and len(sb.ledger()) - before == 15

    def test_a_daily_job_without_a_history_remembers_opt_outs_the_next_day(
        self, tmp_path: Path, sandbox_factory: Callable[..., Sandbox], sandbox_creds: Credentials
    ) -> None:
        """`id = "daily-{date}"`, no [history]: the 3 who texted STOP on Monday are suppressed on Tuesday and sent
        nothing (each day's checkpoint had its own opt-out store, and Tuesday's knew nobody)."""
        frame = make_contacts(8)
        opted = frozenset(frame["phone"].head(3).to_list())
        sb = sandbox_factory(rate_limit=None, opted_out=opted)
        daily = load_spec(
            raw={
                **_raw(tmp_path, sb.url),
                "job": {"id": "daily-{date}"},
                "collect": {"message_status": ["send_intro"]},
                "output": {
                    "checkpoint": str(tmp_path / "{id}.checkpoint"),
                    "results": str(tmp_path / "{id}.csv"),
                    "outcomes": str(tmp_path / "{id}.outcomes.csv"),
                },
            }
        )
        monday, tuesday = daily.for_period("2026-12-07"), daily.for_period("2026-12-08")
        assert run(monday, frame=frame, credentials=sandbox_creds).counts["sent"] == 8
        sb.end_all_runs()
        assert collect(monday, credentials=sandbox_creds, options=CollectOptions()).opted_out == 3
        before = len(sb.ledger())
        result = run(tuesday, frame=frame, credentials=sandbox_creds)
        suppressed = result.results.filter(pl.col("status") == "suppressed")
        assert set(suppressed["to"].to_list()) == opted
        assert not {e.to for e in sb.ledger()[before:]} & opted and len(sb.ledger()) - before == 5

    def test_a_rehearsals_opt_outs_never_reach_the_real_daily_jobs_store(self, tmp_path: Path) -> None:
        """A daily job's rehearsal (`--sandbox`) keeps its simulated STOPs in a store of its own: in the real one, a
        real person would never be sent."""
        daily = load_spec(
            raw={
                **_raw(tmp_path, "http://127.0.0.1:9"),
                "job": {"id": "daily-{date}"},
                "output": {"checkpoint": str(tmp_path / "{id}.checkpoint"), "results": str(tmp_path / "{id}.csv")},
            }
        ).for_period("2026-12-08")
        real, rehearsal = opt_outs_path(daily), opt_outs_path(daily.rehearsal())
        assert real == str(tmp_path / "daily-every-date.checkpoint.opt-outs")
        assert rehearsal == str(tmp_path / "daily-every-date.checkpoint.sandbox.opt-outs")

    def test_an_opt_out_covers_its_sender_only_unless_everywhere(
        self, tmp_path: Path, sandbox_factory: Callable[..., Sandbox], sandbox_creds: Credentials
    ) -> None:
        """Another From still reaches them; [suppress] opted_out = "everywhere" leaves them out of every sender."""
        frame = make_contacts(6)
        sb = sandbox_factory(rate_limit=None, opted_out=frozenset(frame["phone"].head(2).to_list()))
        history = {"path": str(tmp_path / "history.db")}
        first = _spec(tmp_path, sb.url, history=history, collect={"message_status": ["send_intro"], "rate": 1000})
        run(first, frame=frame, credentials=sandbox_creds)
        sb.end_all_runs()
        collect(first, credentials=sandbox_creds)
        other_from = {"to": "phone", "from": "+15005550007", "parameters": {"name": "name"}}
        plain = validate(_spec(tmp_path, sb.url, name="b", history=history, mapping=other_from), frame=frame)
        assert plain.suppressed == {}
        wide = _spec(
            tmp_path, sb.url, name="c", history=history, mapping=other_from, suppress={"opted_out": "everywhere"}
        )
        assert validate(wide, frame=frame).suppressed == {"opted out (21610)": 2}

    def test_history_forget_removes_one_contact_on_the_command_line(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """history opt-outs lists them; history forget NUMBER removes that one."""
        from batch_engage.history import open_history

        path = tmp_path / "h.db"
        with open_history(path) as store:
            store.add_opt_outs([("+14155550100", FROM, 1.8e9), ("+14155550101", FROM, 1.8e9)])
        assert main(["history", "opt-outs", "--history", str(path)]) == 0
        assert "+14155550101" in capsys.readouterr().out
        assert main(["history", "forget", "+14155550101", "--history", str(path)]) == 0
        assert history_opt_outs(path)["to"].to_list() == ["+14155550100"]


def test_a_whatsapp_sender_with_a_free_text_first_message_is_warned_of_63016(
    tmp_path: Path, sandbox: Sandbox, sandbox_creds: Credentials
) -> None:
    """The sandbox Flow's first message is free text: from whatsapp:, the projection warns with 63016's meaning."""
    frame = make_contacts(3).with_columns(phone=pl.lit("whatsapp:") + pl.col("phone"))
    mapping = {"to": "phone", "from": "whatsapp:" + FROM, "parameters": {"name": "name"}}
    spec = _spec(tmp_path, sandbox.url, mapping=mapping)
    found = validate(spec, frame=frame, credentials=sandbox_creds, flow=True).capacity
    assert found is not None and found.sender_kind == "whatsapp"
    assert any("63016" in w and "template" in w for w in found.warnings)


def test_a_closed_send_window_moves_the_projection_to_its_opening(
    tmp_path: Path, sandbox: Sandbox, sandbox_creds: Credentials
) -> None:
    """At noon UTC, a 09:00-10:00 window for contacts in California (+1 415, PST) opens at 17:00 UTC: it starts then."""
    from datetime import UTC, datetime

    noon = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
    window = {"window": "09:00-10:00", "default_timezone": "UTC"}
    spec = _spec(tmp_path, sandbox.url, send={"rate": 20, **window})
    found = validate(spec, frame=make_contacts(40), credentials=sandbox_creds, flow=True, now=noon).capacity
    assert found is not None
    assert found.as_dict()["start_at"] == "2026-03-02T17:00:00Z"
    assert found.finish_at > found.start_at
