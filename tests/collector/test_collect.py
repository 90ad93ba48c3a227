"""`batch-engage collect` through the sandbox: run status, answers and delivery come back, resumably, fetched once."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import polars as pl
import pytest

import batch_engage
from batch_engage import api
from batch_engage.collector.collect import ANOTHER_SENDER, CollectOptions, context_value
from batch_engage.collector.outcomes import OutcomeStore, outcomes_path
from batch_engage.credentials import Credentials
from batch_engage.runner import RunOptions
from batch_engage.sandbox import SANDBOX_PASSWORD, SANDBOX_USERNAME, Sandbox

from conftest import FLOW_SID, REPO, cli, make_contacts
from killing import cli_env, finish, kill_9_when, start_cli, wait_until

# Pacing is not what these tests are about: at the highest rate (collect's defaults to it too),
# slow start begins at 1250/s, so no test waits in real time for its requests' slots.
FAST = "rate = 10000"
FAST_SEND = f"{FAST}\nconcurrency = 8\nreconcile_delay = 0.0"
COLLECT = """
[collect]
message_status = ["send_intro"]

[collect.fields]
answer = "widgets.ask.inbound.Body"
intro = "widgets.send_intro.outbound.Status"
data = "flow.data"
"""


async def no_wait(seconds: float) -> None:
    """Backoff and polling without the wait: tests never sleep to make timing work."""


def twilio_run(http: httpx.Client, sid: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """A run and its Context as the sandbox itself serves them (not through batch-engage)."""
    url = f"/v1/Flows/{FLOW_SID}/Engagements/{sid}"
    return http.get(url).json(), dict(http.get(f"{url}/Context").json()["context"])


def read_outcomes(job: Path) -> pl.DataFrame:
    return pl.read_csv(job.with_name("job.outcomes.csv"), infer_schema_length=0)


def another_sender_starts_the_first_contact(sb: Sandbox, path: str) -> None:
    """A run for the first of ``make_contacts``' contacts, created straight through the sandbox's ``path``."""
    first = make_contacts(1)["phone"][0]
    data = {"To": first, "From": "+15005550006"}
    httpx.post(f"{sb.url}{path}", data=data, auth=(SANDBOX_USERNAME, SANDBOX_PASSWORD)).raise_for_status()


@pytest.fixture
def ran(sandbox: Sandbox, job_for: Callable[..., Path], sandbox_creds: Credentials) -> Path:
    """A job with [collect] fields whose 30 runs were just created in the sandbox (all still active)."""
    job = job_for(sandbox, send=FAST_SEND, extra=COLLECT)
    assert batch_engage.run(job, credentials=sandbox_creds).exit_code == 0
    return job


class TestRunStatusAndFields:
    def test_right_after_run_collect_exits_75_with_every_row_active(
        self, ran: Path, sandbox_env: dict[str, str], capsys: pytest.CaptureFixture[str]
    ) -> None:
        """Runs still going: exit 75, every row `active` with no end time and no answer yet."""
        code, out, _ = cli(["collect", str(ran)], capsys)
        assert code == 75
        table = read_outcomes(ran)
        assert table.height == 30
        assert set(table["run_status"]) == {"active"}
        assert table["ended_at"].null_count() == 30 and table["answer"].null_count() == 30
        assert "still active: 30" in out

    def test_after_the_runs_end_collect_exits_0_with_status_end_time_and_answers(
        self, ran: Path, sandbox: Sandbox, sandbox_env: dict[str, str], capsys: pytest.CaptureFixture[str]
    ) -> None:
        """Ended runs: exit 0; each row's ended_at, answer, intro status and delivery are what Twilio shows."""
        assert cli(["collect", str(ran)], capsys)[0] == 75
        sandbox.end_all_runs()
        code, out, _ = cli(["collect", str(ran)], capsys)
        assert code == 0
        table = read_outcomes(ran)
        results = pl.read_csv(ran.with_name("job.results.csv"), infer_schema_length=0)
        assert table["row"].to_list() == results["row"].to_list()
        assert table["sid"].to_list() == results["sid"].to_list()
        assert set(table["run_status"]) == {"ended"}
        with httpx.Client(base_url=sandbox.url, auth=(SANDBOX_USERNAME, SANDBOX_PASSWORD)) as http:
            for line in table.iter_rows(named=True):
                run, context = twilio_run(http, line["sid"])
                assert line["ended_at"] == run["date_updated"]
                assert line["answer"] == context_value(context, "widgets.ask.inbound.Body")
                assert line["intro"] == "sent"
                assert line["send_intro_delivery"] in ("delivered", "undelivered")
                assert (line["send_intro_delivery_error_code"] == "30003") == (
                    line["send_intro_delivery"] == "undelivered"
                )
        assert table["answer"].drop_nulls().len() > 0
        assert "answer: " in out and "still active: 0" in out

    def test_an_object_field_is_kept_as_json_text(
        self, ran: Path, sandbox: Sandbox, sandbox_env: dict[str, str], capsys: pytest.CaptureFixture[str]
    ) -> None:
        """`flow.data` (an object) comes back as JSON text holding the row's Parameters."""
        sandbox.end_all_runs()
        cli(["collect", str(ran)], capsys)
        first = read_outcomes(ran).row(0, named=True)
        assert json.loads(first["data"])["name"] == "Person 0"

    def test_an_absent_path_gives_null(
        self, sandbox: Sandbox, job_for: Callable[..., Path], sandbox_creds: Credentials
    ) -> None:
        """A field whose path is not in the Context is null, not an error."""
        job = job_for(sandbox, send=FAST_SEND, extra='[collect.fields]\nnope = "widgets.nope.inbound.Body"')
        batch_engage.run(job, credentials=sandbox_creds)
        sandbox.end_all_runs()
        result = batch_engage.collect(job, credentials=sandbox_creds)
        assert result.exit_code == 0
        assert result.outcomes["nope"].null_count() == 30

    def test_another_senders_active_run_keeps_its_status_but_not_its_fields(
        self, sandbox: Sandbox, job_for: Callable[..., Path], sandbox_creds: Credentials
    ) -> None:
        """An `already_active` run without the row's marker: status collected, fields null, "another sender's run"."""
        # v2, because a v1 hand-back of a run made a moment earlier cannot be told from a new run.
        another_sender_starts_the_first_contact(sandbox, f"/v2/Flows/{FLOW_SID}/Executions")
        job = job_for(sandbox, contacts=3, api="executions", send=FAST_SEND, extra=COLLECT)
        assert batch_engage.run(job, credentials=sandbox_creds).counts["already_active"] == 1
        sandbox.end_all_runs()
        result = batch_engage.collect(job, credentials=sandbox_creds)
        other, *ours = result.outcomes.iter_rows(named=True)
        assert (other["run_status"], other["error_message"], other["answer"]) == ("ended", ANOTHER_SENDER, None)
        assert other["send_intro_delivery"] is None
        assert all(line["intro"] == "sent" and line["error_message"] is None for line in ours)
        assert result.exit_code == 0

    def test_a_v1_hand_back_taken_for_new_is_still_another_senders_run(
        self, sandbox: Sandbox, job_for: Callable[..., Path], sandbox_creds: Credentials
    ) -> None:
        """v1 hands back a run another sender made a moment earlier; `run` counts it sent, but its Context lacks
        the row's marker, so `collect` keeps its status and not its fields."""
        another_sender_starts_the_first_contact(sandbox, f"/v1/Flows/{FLOW_SID}/Engagements")
        job = job_for(sandbox, contacts=3, send=FAST_SEND, extra=COLLECT)
        assert batch_engage.run(job, credentials=sandbox_creds).counts["sent"] == 3
        sandbox.end_all_runs()
        result = batch_engage.collect(job, credentials=sandbox_creds)
        other, *ours = result.outcomes.iter_rows(named=True)
        assert (other["error_message"], other["answer"]) == (ANOTHER_SENDER, None)
        assert all(line["error_message"] is None for line in ours)


class TestFetchedOnce:
    def test_a_third_collect_makes_no_request_for_ended_runs(
        self, ran: Path, sandbox: Sandbox, sandbox_env: dict[str, str], capsys: pytest.CaptureFixture[str]
    ) -> None:
        """Once every run is recorded ended, collecting again asks Twilio nothing and gives the same table."""
        cli(["collect", str(ran)], capsys)
        sandbox.end_all_runs()
        cli(["collect", str(ran)], capsys)
        before, table = sandbox.stats(), read_outcomes(ran)
        code, _, _ = cli(["collect", str(ran)], capsys)
        after = sandbox.stats()
        assert code == 0
        assert read_outcomes(ran).equals(table)
        for counter in ("run_requests", "context_requests", "message_requests", "flow_requests"):
            assert getattr(after, counter) == getattr(before, counter), counter

    def test_only_active_runs_are_fetched_again(self, ran: Path, sandbox: Sandbox, sandbox_creds: Credentials) -> None:
        """Rows recorded ended are skipped; rows recorded active are fetched again."""
        batch_engage.collect(ran, credentials=sandbox_creds)
        sandbox.end_all_runs()
        batch_engage.collect(ran, credentials=sandbox_creds)
        before = sandbox.stats().run_requests
        batch_engage.collect(ran, credentials=sandbox_creds, options=CollectOptions(refresh=True))
        assert sandbox.stats().run_requests - before == 30

    def test_changed_fields_fetch_the_runs_again(self, ran: Path, sandbox: Sandbox, sandbox_creds: Credentials) -> None:
        """A field added to [collect.fields] is filled in for runs already recorded ended."""
        sandbox.end_all_runs()
        batch_engage.collect(ran, credentials=sandbox_creds)
        ran.write_text(ran.read_text() + 'from_address = "flow.channel.address"\n')
        result = batch_engage.collect(ran, credentials=sandbox_creds)
        assert set(result.outcomes["from_address"]) == {"+15005550006"}

    @pytest.mark.slow
    def test_a_killed_collect_resumes_without_fetching_an_ended_run_twice(
        self, ended_job: Callable[..., tuple[Sandbox, Path]], tmp_path: Path, sandbox_env: dict[str, str]
    ) -> None:
        """SIGKILL mid-way, then again: every row collected; the rows the first one recorded are not fetched again."""
        rows = 80
        # Slow enough (slow start at 50 GETs/s, two per row) for the kill to land between the first commits.
        extra = '[collect]\nrate = 400\nconcurrency = 2\n\n[collect.fields]\nanswer = "widgets.ask.inbound.Body"\n'
        sb, job = ended_job(rows, extra)
        env, args = cli_env(sandbox_env), collect_args(job)
        proc = start_cli(args, env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        store = outcomes_path(tmp_path / "job.checkpoint")
        kill_9_when(proc, lambda: stored(store) >= 10, within=20)
        kept = stored(store)
        assert 10 <= kept < rows, "the kill must land mid-way"
        fast_collect(job)
        before = sb.stats().run_requests
        finish(args, env, timeout=60)
        assert sb.stats().run_requests - before == rows - kept
        table = read_outcomes(job)
        assert table.height == rows and set(table["run_status"]) == {"ended"}


class TestSignals:
    @pytest.mark.slow
    def test_sigterm_stops_with_75_writing_what_was_collected_and_the_next_collect_finishes(
        self, ended_job: Callable[..., tuple[Sandbox, Path]], tmp_path: Path, sandbox_env: dict[str, str]
    ) -> None:
        """SIGTERM: exit 75, the table has the rows fetched so far and "not collected yet" for the rest."""
        _, job = ended_job(60, "[collect]\nrate = 20\nconcurrency = 2\n")
        env, args = cli_env(sandbox_env), collect_args(job)
        proc = start_cli(args, env, stdout=subprocess.DEVNULL)
        store = outcomes_path(tmp_path / "job.checkpoint")
        wait_until(proc, lambda: stored(store) >= 5, within=20)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
        assert proc.returncode == 75, err
        table = read_outcomes(job)
        assert table.height == 60
        collected = table.filter(pl.col("run_status") == "ended").height
        assert 5 <= collected < 60
        assert set(table.filter(pl.col("run_status").is_null())["error_message"]) == {"not collected yet"}
        fast_collect(job)
        finish(args, env, timeout=60)
        assert set(read_outcomes(job)["run_status"]) == {"ended"}


@pytest.fixture
def ended_job(
    sandbox_factory: Callable[..., Sandbox], job_for: Callable[..., Path], sandbox_creds: Credentials
) -> Callable[[int, str], tuple[Sandbox, Path]]:
    """``ended_job(rows, extra)``: a sandbox, and a job on it (``extra``: its [collect] tables) whose ``rows`` runs were
    created and have all ended: ready to collect. Its contacts file is named relative to the job, beside it."""

    def make(rows: int, extra: str) -> tuple[Sandbox, Path]:
        sb = sandbox_factory(rate_limit=None, latency=0.01)
        job = job_for(sb, input_path="contacts.csv", send=FAST_SEND, extra=extra)
        make_contacts(rows).write_csv(job.with_name("contacts.csv"))
        assert batch_engage.run(job, credentials=sandbox_creds).exit_code == 0
        sb.end_all_runs()
        return sb, job

    return make


def collect_args(job: Path) -> list[str]:
    """``batch-engage collect JOB`` as a process of its own runs it, logging JSON."""
    return ["collect", str(job), "--log-format", "json", "-q"]


def fast_collect(job: Path) -> None:
    """Collect at the highest rate from now on (what a collect asks is unchanged, so stored lines stay final)."""
    text = job.read_text()
    start = text.index("[collect]\nrate = ") + len("[collect]\n")
    job.write_text(text[:start] + FAST + text[text.index("\n", start) :])


def stored(store: Path) -> int:
    """How many lines a collect has committed to its outcomes store so far."""
    if not store.exists():
        return 0
    try:
        with sqlite3.connect(store, timeout=1) as conn:
            return int(conn.execute("SELECT COUNT(*) FROM outcomes").fetchone()[0])
    except sqlite3.OperationalError:
        return 0


class TestFailures:
    def test_429s_on_reads_are_retried(
        self, sandbox_factory: Callable[..., Sandbox], job_for: Callable[..., Path], sandbox_creds: Credentials
    ) -> None:
        """A third of the run and Context GETs answered 429: every row still comes back ended, exit 0."""
        sb = sandbox_factory(rate_limit=None)
        job = job_for(sb, send=FAST_SEND, extra=COLLECT)
        batch_engage.run(job, credentials=sandbox_creds)
        sb.end_all_runs()
        sb.reconfigure(read_rate_limit_rate=0.3)
        result = batch_engage.collect(job, credentials=sandbox_creds, options=CollectOptions(sleep=no_wait))
        assert sb.stats().read_rate_limited > 0
        assert result.retries >= sb.stats().read_rate_limited
        assert result.exit_code == 0
        assert set(result.outcomes["run_status"]) == {"ended"}
        assert result.outcomes["intro"].null_count() == 0

    def test_an_unknown_sid_fails_that_row_alone(
        self, ran: Path, sandbox: Sandbox, sandbox_env: dict[str, str], capsys: pytest.CaptureFixture[str]
    ) -> None:
        """A SID Twilio does not know (404) is `failed` for its row; the others end; exit 1."""
        with sqlite3.connect(ran.with_name("job.checkpoint")) as conn:
            conn.execute("UPDATE journal SET sid = ? WHERE row = 3", ("FN" + "0" * 32,))
        sandbox.end_all_runs()
        code, _, _ = cli(["collect", str(ran)], capsys)
        assert code == 1
        table = read_outcomes(ran)
        failed = table.filter(pl.col("run_status") == "failed")
        assert failed["row"].to_list() == ["3"]
        assert "404" in failed["error_message"][0]
        assert table.filter(pl.col("run_status") == "ended").height == 29

    def test_active_wins_over_failed(
        self, ran: Path, sandbox: Sandbox, sandbox_env: dict[str, str], capsys: pytest.CaptureFixture[str]
    ) -> None:
        """A failed row and runs still active: exit 75, so cron comes back."""
        with sqlite3.connect(ran.with_name("job.checkpoint")) as conn:
            conn.execute("UPDATE journal SET sid = ? WHERE row = 3", ("FN" + "0" * 32,))
        assert cli(["collect", str(ran)], capsys)[0] == 75

    def test_a_missing_flow_aborts_with_exit_3(
        self, ran: Path, sandbox: Sandbox, sandbox_env: dict[str, str], capsys: pytest.CaptureFixture[str]
    ) -> None:
        """A 404 on the Flow is an abort (exit 3) after one request, not 30 failed rows."""
        sandbox.reconfigure(flows={})
        before = sandbox.stats()
        code, _, _ = cli(["collect", str(ran)], capsys)
        assert code == 3
        assert sandbox.stats().run_requests == before.run_requests

    def test_refused_credentials_abort_with_exit_3(
        self, ran: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """A refused token is exit 3."""
        monkeypatch.setenv("TWILIO_ACCOUNT_SID", SANDBOX_USERNAME)
        monkeypatch.setenv("TWILIO_AUTH_TOKEN", "wrong")
        assert cli(["collect", str(ran)], capsys)[0] == 3

    def test_a_job_that_never_ran_is_a_usage_error(self, job: Path, capsys: pytest.CaptureFixture[str]) -> None:
        """No checkpoint yet: exit 2 with one line naming it."""
        code, _, err = cli(["collect", str(job)], capsys)
        assert code == 2
        assert "job.checkpoint: no checkpoint yet" in err

    def test_a_second_collect_of_the_same_job_exits_75_at_once(
        self, ran: Path, sandbox: Sandbox, sandbox_env: dict[str, str], capsys: pytest.CaptureFixture[str]
    ) -> None:
        """While one collect holds the job's outcomes, another fetches nothing and exits 75."""
        before = sandbox.stats()
        with OutcomeStore.open(ran.with_name("job.checkpoint")):
            code, _, err = cli(["collect", str(ran)], capsys)
        assert code == 75
        assert "another collect of this job is running" in err
        assert sandbox.stats().run_requests == before.run_requests

    def test_collect_takes_no_run_lock(self, ran: Path, sandbox: Sandbox, sandbox_creds: Credentials) -> None:
        """A run holding the checkpoint does not stop collect from reading it."""
        fd = os.open(ran.with_name("job.checkpoint.lock"), os.O_RDWR)
        try:
            import fcntl

            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            result = batch_engage.collect(ran, credentials=sandbox_creds)
        finally:
            os.close(fd)
        assert result.counts["active"] == 30


class TestWaitAndSandbox:
    def test_wait_polls_until_every_run_has_ended(
        self, ran: Path, sandbox: Sandbox, sandbox_creds: Credentials
    ) -> None:
        """With wait, a collect that finds active runs polls again and ends with exit 0 once they have ended."""
        polls: list[float] = []

        async def poll(seconds: float) -> None:
            polls.append(seconds)
            sandbox.end_all_runs()

        result = batch_engage.collect(ran, credentials=sandbox_creds, options=CollectOptions(wait=True, sleep=poll))
        assert polls == [CollectOptions().poll_interval]
        assert result.exit_code == 0
        assert set(result.outcomes["run_status"]) == {"ended"}

    def test_max_duration_ends_the_wait_with_75_while_runs_are_active(
        self, ran: Path, sandbox: Sandbox, sandbox_creds: Credentials
    ) -> None:
        """With wait and max_duration, runs that never end stop the collect in time: exit 75, none `ended`."""
        options = CollectOptions(wait=True, max_duration=0.2, sleep=no_wait)
        result = batch_engage.collect(ran, credentials=sandbox_creds, options=options)
        assert result.exit_code == 75 and result.stopped_early
        assert result.counts["ended"] == 0
        assert result.counts["active"] + result.counts.get("not_collected", 0) == 30

    def test_collect_sandbox_finds_the_runs_of_run_sandbox(
        self,
        write_job: Callable[..., Path],
        contacts_csv: Path,
        sandbox_creds: Credentials,
        capsys: pytest.CaptureFixture[str],
    ) -> None:
        """`collect --sandbox` serves the rehearsal's runs from its state file: active at first, then ended."""
        job = write_job(input_path=contacts_csv, send=FAST_SEND, extra=COLLECT)
        assert batch_engage.run(job, options=RunOptions(sandbox=True)).exit_code == 0
        code, _, _ = cli(["collect", str(job), "--sandbox", "-q"], capsys)
        assert code == 75
        with Sandbox(api.sandbox_config(api.load_job(job, sandbox=True))) as sb:
            sb.end_all_runs()
        code, _, _ = cli(["collect", str(job), "--sandbox", "-q"], capsys)
        assert code == 0
        table = pl.read_csv(job.with_name("job.outcomes.sandbox.csv"), infer_schema_length=0)
        assert table.height == 30 and set(table["run_status"]) == {"ended"}
        assert not job.with_name("job.outcomes.csv").exists()

    def test_a_rehearsals_checkpoint_is_refused_without_sandbox(
        self,
        sandbox: Sandbox,
        job_for: Callable[..., Path],
        sandbox_creds: Credentials,
        capsys: pytest.CaptureFixture[str],
    ) -> None:
        """Runs made on the sandbox cannot be fetched from Twilio: exit 2, saying to add --sandbox."""
        job = job_for(sandbox, send=FAST_SEND)
        spec = api.load_job(job, sandbox=True)
        batch_engage.run(spec, credentials=sandbox_creds, options=RunOptions(sandbox=True))
        code, _, err = cli(["collect", str(job), "--checkpoint", spec.output.checkpoint], capsys)
        assert code == 2
        assert "made on the sandbox" in err and "add --sandbox" in err
        assert sandbox.stats().run_requests == 0


class TestJobFile:
    def test_outcomes_default_beside_the_job_and_follow_output_outcomes(self, tmp_path: Path) -> None:
        """Without output.outcomes the table is <id>.outcomes.csv beside the job; {id} works in the key."""
        raw = {"flow": {"sid": FLOW_SID}, "mapping": {"to": "phone", "from": "+15005550006"}}
        spec = batch_engage.load_spec(raw=raw)
        assert spec.output.outcomes == str(Path.cwd() / "job.outcomes.csv")
        raw["output"] = {"outcomes": str(tmp_path / "{id}-answers.parquet")}
        assert batch_engage.load_spec(raw=raw).output.outcomes == str(tmp_path / "job-answers.parquet")

    def test_outcomes_follow_the_period(self, tmp_path: Path) -> None:
        """A job with {date} in its id writes each period's outcomes to that period's file."""
        raw = {
            "job": {"id": "daily-{date}"},
            "flow": {"sid": FLOW_SID},
            "mapping": {"to": "phone", "from": "+15005550006"},
            "output": {
                "checkpoint": str(tmp_path / "{id}.checkpoint"),
                "outcomes": str(tmp_path / "{id}.outcomes.parquet"),
            },
        }
        spec = batch_engage.load_spec(raw=raw).for_period("2026-11-20")
        assert spec.output.outcomes == str(tmp_path / "daily-2026-11-20.outcomes.parquet")
        assert spec.rehearsal().output.outcomes == str(tmp_path / "daily-2026-11-20.outcomes.sandbox.parquet")

    @pytest.mark.parametrize(
        ("collect", "key"),
        [
            ({"fields": {"row": "widgets.a.inbound.Body"}}, "collect.fields.row"),
            ({"fields": {"answer": "widgets..Body"}}, "collect.fields.answer"),
            ({"fields": {"answer": 3}}, "collect.fields.answer"),
            ({"message_status": ["send intro"]}, "collect.message_status"),
            ({"rate": 0}, "collect.rate"),
            ({"colour": 1}, "collect.colour"),
        ],
    )
    def test_a_bad_collect_section_names_its_key(self, collect: dict[str, Any], key: str) -> None:
        """Each mistake in [collect] is refused by the key it is about."""
        raw = {"flow": {"sid": FLOW_SID}, "mapping": {"to": "phone", "from": "+15005550006"}, "collect": collect}
        with pytest.raises(batch_engage.BatchEngageError, match=f"^{key}"):
            batch_engage.load_spec(raw=raw)

    def test_the_sample_job_asks_for_the_sample_flows_answers(self) -> None:
        """The sample job's [collect] names the sandbox Flow's widgets."""
        spec = batch_engage.load_spec(REPO / "jobs" / "sample_campaign.toml")
        assert dict(spec.collect.fields)["answer"] == "widgets.ask.inbound.Body"
        assert spec.collect.message_status == ("send_intro",)
