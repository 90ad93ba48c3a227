"""People's mistakes end in the right send or a clear refusal: never a wrong send, never a silent "done".

A rehearsal followed by the real run, a list re-exported with new rows, a path pointing at the wrong
file, a number that is not a number, another Twilio, a status asked during a live run.
"""

from __future__ import annotations

import io
import json
import sqlite3
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import launch
import polars as pl
import pytest

import batch_engage
from batch_engage import status
from batch_engage.credentials import Credentials
from batch_engage.sandbox import Sandbox

from conftest import Rig, cli, make_contacts
from killing import cli_env, wait_until


class TestRehearsalThenRun:
    """A --sandbox rehearsal keeps its state apart, so the real run that follows sends to everyone."""

    def test_the_real_run_after_a_rehearsal_sends_every_row(
        self, sandbox: Sandbox, job_for: Callable[..., Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """Rehearse with --sandbox, then drop it: the real Studio gets all 6 runs, none are "done" already."""
        # Six contacts: the rehearsal's own sandbox has Twilio's default limit of 20 creates a second.
        history = tmp_path / "history.db"
        job = job_for(sandbox, contacts=6, extra=f'[history]\npath = "{history}"\n')
        assert cli(["run", str(job), "--sandbox", "--quiet"], capsys)[0] == 0
        assert sandbox.ledger() == []
        assert (
            not history.exists() or sqlite3.connect(history).execute("SELECT COUNT(*) FROM contacts").fetchone()[0] == 0
        )
        code, _, _ = cli(["run", str(job), "--quiet"], capsys)
        assert code == 0
        assert len({e.to for e in sandbox.ledger()}) == 6
        table = pl.read_csv(job.parent / "job.results.csv")
        assert dict(zip(table["to"], table["sid"])) == {e.to: e.sid for e in sandbox.ledger()}

    @pytest.mark.parametrize("command", ["report", "collect"])
    def test_a_rehearsal_never_writes_over_the_real_jobs_table(
        self,
        sandbox: Sandbox,
        job_for: Callable[..., Path],
        tmp_path: Path,
        capsys: pytest.CaptureFixture[str],
        command: str,
    ) -> None:
        """`report`/`collect --sandbox --output` naming the real job's results file: refused (exit 2, one line,
        naming it), the real table and its SIDs left as they were."""
        job = job_for(sandbox, contacts=3)
        real = tmp_path / "job.results.csv"
        assert cli(["run", str(job), "--quiet"], capsys)[0] == 0
        before = real.read_bytes()
        assert cli(["run", str(job), "--sandbox", "--quiet"], capsys)[0] == 0
        code, _, err = cli([command, str(job), "--sandbox", "--output", str(real)], capsys)
        assert code == 2 and len(err.strip().splitlines()) == 1
        assert "would overwrite the real job's output" in err
        assert real.read_bytes() == before


class TestTheListChanges:
    """A re-exported list continues: contacts reached are never sent again, new contacts are."""

    def test_a_list_reexported_with_new_rows_sends_only_the_new_contacts(
        self, job: Path, sandbox: Sandbox, contacts_csv: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """Day 2's export has 20 new rows at the top and the old rows moved and edited: 20 new runs, no re-send."""
        assert cli(["run", str(job), "--quiet"], capsys)[0] == 0
        first = {e.to: e.sid for e in sandbox.ledger()}
        sandbox.end_all_runs()
        old = make_contacts(30).with_columns(name=pl.lit("Renamed"))
        pl.concat([make_contacts(20, start=700), old]).write_csv(contacts_csv)
        code, out, _ = cli(["run", str(job)], capsys)
        assert code == 0
        assert Counter(e.to for e in sandbox.ledger()).most_common(1)[0][1] == 1
        assert len(sandbox.ledger()) == 50
        assert "reached by earlier runs: 30 (parameters changed since: 30)" in out
        assert "not in this list" not in out
        table = pl.read_csv(job.parent / "job.results.csv")
        earlier = table.filter(pl.col("error_message") == "reached by an earlier run")
        assert earlier.height == 30
        assert dict(zip(earlier["to"], earlier["sid"])) == first

    def test_a_list_reexported_without_some_reached_contacts_says_how_many(
        self, job: Path, sandbox: Sandbox, contacts_csv: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """10 of the 30 reached contacts left out of the new export: validate, the summary and its JSON say 10, the
        results table has the 20 rows of the list, and nobody is sent to again."""
        assert cli(["run", str(job), "--quiet"], capsys)[0] == 0
        make_contacts(30).slice(10).write_csv(contacts_csv)
        code, out, _ = cli(["validate", str(job)], capsys)
        assert code == 0 and "reached earlier, not in this list: 10 " in out
        summary = tmp_path / "s.json"
        code, out, _ = cli(["run", str(job), "--summary-json", str(summary)], capsys)
        assert code == 0
        assert "reached earlier, not in this list: 10 " in out
        assert json.loads(summary.read_text())["reached_not_in_list"] == 10
        assert pl.read_csv(job.parent / "job.results.csv").height == 20
        assert len(sandbox.ledger()) == 30

    def test_contacts_the_run_settles_then_finds_left_out_are_counted(
        self, job: Path, sandbox: Sandbox, contacts_csv: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """Killed with 5 requests out, then the list re-exported without those 5: the run finds their runs, and its
        summary says they are not in this list (it said nothing: they were not reached when it began)."""
        assert cli(["run", str(job), "--quiet"], capsys)[0] == 0
        checkpoint = job.parent / "job.checkpoint"
        with sqlite3.connect(checkpoint) as db:  # as if killed: 5 intents whose answers were never recorded
            db.execute("UPDATE journal SET state = 'intent', sid = NULL WHERE row <= 5")
        make_contacts(30).slice(5).write_csv(contacts_csv)
        code, out, _ = cli(["run", str(job)], capsys)
        assert code == 0
        assert "reached earlier, not in this list: 5 " in out
        assert len(sandbox.ledger()) == 30

    def test_rows_that_moved_never_take_another_contacts_sid(
        self, job: Path, sandbox: Sandbox, contacts_csv: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """Half sent, then the file is re-sorted: every row's SID is the run Studio made for that row's contact."""
        assert cli(["run", str(job), "--limit", "15", "--quiet"], capsys)[0] == 0
        make_contacts(30).reverse().write_csv(contacts_csv)
        assert cli(["run", str(job), "--quiet"], capsys)[0] == 0
        table = pl.read_csv(job.parent / "job.results.csv")
        assert dict(zip(table["to"], table["sid"])) == {e.to: e.sid for e in sandbox.ledger()}
        assert len(sandbox.ledger()) == 30

    def test_a_new_row_above_a_reached_one_never_takes_its_sid(
        self, job: Path, sandbox: Sandbox, contacts_csv: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """Re-exported with a new row for a reached person at the top (other Parameters): the row that was sent keeps
        its SID, and the new one reads ``duplicate`` naming it; nobody is sent again."""
        assert cli(["run", str(job), "--quiet"], capsys)[0] == 0
        old = make_contacts(30)
        again = old.slice(4, 1).with_columns(name=pl.lit("Someone else"))
        pl.concat([again, old]).write_csv(contacts_csv)
        assert cli(["run", str(job), "--quiet"], capsys)[0] == 0
        assert len(sandbox.ledger()) == 30
        table = pl.read_csv(job.parent / "job.results.csv")
        first, sent = table.row(0, named=True), table.row(5, named=True)
        assert first["to"] == sent["to"] == old["phone"][4]
        assert (first["status"], first["sid"], first["error_message"]) == ("duplicate", None, "same contact as row 6")
        assert (sent["status"], sent["sid"]) == ("sent", {e.to: e.sid for e in sandbox.ledger()}[sent["to"]])

    @pytest.mark.parametrize("command", ["report", "status"])
    def test_report_of_another_list_is_refused_not_answered_from_the_checkpoint(
        self, job: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], command: str
    ) -> None:
        """`report --input new.csv` (or status): exit 2, one line saying the checkpoint's own list is what they
        read; the results table of the list that was run is left as it was."""
        assert cli(["run", str(job), "--quiet"], capsys)[0] == 0
        table = job.parent / "job.results.csv"
        before = table.read_bytes()
        other = tmp_path / "new.csv"
        make_contacts(5, start=900).write_csv(other)
        with pytest.raises(SystemExit) as refused:
            cli([command, str(job), "--input", str(other)], capsys)
        err = capsys.readouterr().err
        assert refused.value.code == 2 and len(err.strip().splitlines()) == 1
        assert f"--input: {command} reads the contacts its checkpoint holds" in err
        assert table.read_bytes() == before


class TestRowsOfOnePerson:
    """`dedupe = "none"`: a row is its number's n-th row, so a list re-exported with rows moved is refused."""

    @staticmethod
    def _job(sandbox: Sandbox, job_for: Callable[..., Path], tmp_path: Path) -> tuple[Path, Path]:
        contacts = tmp_path / "orders.csv"
        send = 'rate = 500\nconcurrency = 8\nreconcile_delay = 0.0\ndedupe = "none"'
        return job_for(sandbox, input_path=contacts, send=send), contacts

    @staticmethod
    def _write(path: Path, rows: list[tuple[str, str]]) -> None:
        pl.DataFrame(
            {"phone": [r[0] for r in rows], "name": [r[1] for r in rows], "visits": [1] * len(rows)}
        ).write_csv(path)

    def test_a_row_inserted_above_a_persons_sent_row_is_refused_until_yes(
        self, sandbox: Sandbox, job_for: Callable[..., Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """Ann's order A sent; order C inserted above it: refused, nothing sent (A would go again, C never)."""
        job, orders = self._job(sandbox, job_for, tmp_path)
        ann, bob = "+13125550101", "+13125550202"
        self._write(orders, [(ann, "order A"), (ann, "order B"), (bob, "order X")])
        assert cli(["run", str(job), "--limit", "1", "--quiet"], capsys)[0] == 0
        self._write(orders, [(ann, "order C"), (ann, "order A"), (ann, "order B"), (bob, "order X")])
        code, _, err = cli(["run", str(job)], capsys)
        assert code == 2 and 'with send.dedupe = "none" a row is its number\'s n-th row' in err
        assert len(sandbox.ledger()) == 1
        assert cli(["run", str(job), "--yes", "--quiet"], capsys)[0] in (0, 1)

    def test_rows_added_below_or_other_people_moved_go_on(
        self, sandbox: Sandbox, job_for: Callable[..., Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """Another person's rows moved, an order added at the end: nothing refused, no order sent twice."""
        job, orders = self._job(sandbox, job_for, tmp_path)
        ann, bob = "+13125550101", "+13125550202"
        self._write(orders, [(ann, "order A"), (ann, "order B"), (bob, "order X")])
        assert cli(["run", str(job), "--limit", "2", "--quiet"], capsys)[0] == 0
        sandbox.end_all_runs()
        self._write(orders, [(bob, "order X"), (ann, "order A"), (ann, "order B"), (ann, "order D")])
        code, _, err = cli(["run", str(job), "--quiet"], capsys)
        assert code != 2 and "n-th row" not in err
        sent = Counter((e.to, e.parameters["name"]) for e in sandbox.ledger())
        assert max(sent.values()) == 1


class TestAnotherList:
    """A list sharing no contact with those the job reached is likely the wrong file: refused, unless meant."""

    @pytest.mark.parametrize("command", ["run", "validate"])
    def test_a_list_with_none_of_the_reached_contacts_is_refused(
        self, job: Path, sandbox: Sandbox, tmp_path: Path, capsys: pytest.CaptureFixture[str], command: str
    ) -> None:
        """Last month's list given by mistake: exit 2, one line naming the file and the counts, nothing sent."""
        assert cli(["run", str(job), "--quiet"], capsys)[0] == 0
        results = (job.parent / "job.results.csv").read_bytes()
        other = tmp_path / "other.csv"
        make_contacts(5, start=700).write_csv(other)
        code, _, err = cli([command, str(job), "--input", str(other)], capsys)
        assert code == 2 and len(err.strip().splitlines()) == 1
        assert str(other) in err and "none of its 5 contacts to send is among the 30" in err
        assert "--other-list" in err
        assert len(sandbox.ledger()) == 30
        assert (job.parent / "job.results.csv").read_bytes() == results

    def test_a_list_piped_in_is_held_to_the_rule_as_a_file_is(
        self,
        job: Path,
        sandbox: Sandbox,
        tmp_path: Path,
        capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        """`run --input - < other.csv`: refused naming <stdin>, nothing sent, as the same file by its path is."""
        assert cli(["run", str(job), "--quiet"], capsys)[0] == 0
        other = tmp_path / "other.csv"
        make_contacts(5, start=700).write_csv(other)
        monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(other.read_bytes())))
        code, _, err = cli(["run", str(job), "--input", "-"], capsys)
        assert code == 2 and "<stdin>" in err and "none of its 5 contacts to send is among the 30" in err
        assert len(sandbox.ledger()) == 30

    @pytest.mark.parametrize("meant", ["--other-list", "other_lists = true"])
    def test_a_list_meant_to_hold_only_new_contacts_is_sent(
        self, job: Path, sandbox: Sandbox, tmp_path: Path, capsys: pytest.CaptureFixture[str], meant: str
    ) -> None:
        """With --other-list (once) or `[input] other_lists = true` (always), the new list's 5 contacts are sent."""
        assert cli(["run", str(job), "--quiet"], capsys)[0] == 0
        other = tmp_path / "other.csv"
        make_contacts(5, start=700).write_csv(other)
        flags = [meant] if meant.startswith("--") else []
        if not flags:
            job.write_text(job.read_text().replace("[input]\n", "[input]\nother_lists = true\n", 1))
        assert cli(["run", str(job), "--input", str(other), "--quiet", *flags], capsys)[0] == 0
        assert len(sandbox.ledger()) == 35
        table = pl.read_csv(job.parent / "job.results.csv")
        assert table.height == 5 and set(table["status"]) == {"sent"}

    def test_a_list_whose_reached_numbers_a_spreadsheet_mangled_says_they_were_not_matched(
        self, job: Path, sandbox: Sandbox, contacts_csv: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """The 30 numbers saved as 1.4155552E+10 plus 5 new rows: refused, the line saying the invalid rows could
        not be matched and how to see why; nothing sent."""
        assert cli(["run", str(job), "--quiet"], capsys)[0] == 0
        mangled = make_contacts(30).with_columns(phone=pl.lit("1.4155552E+10"))
        pl.concat([mangled, make_contacts(5, start=700)]).write_csv(contacts_csv)
        code, _, err = cli(["run", str(job)], capsys)
        assert code == 2 and "30 invalid rows could not be matched: `validate --other-list` says why" in err
        assert len(sandbox.ledger()) == 30

    def test_a_frame_given_by_code_is_no_file_to_mistake(
        self, job: Path, sandbox: Sandbox, sandbox_creds: Credentials
    ) -> None:
        """A pipeline hands `run` a frame of new people each day: sent, as a query's rows are."""
        assert batch_engage.run(job, credentials=sandbox_creds).counts["sent"] == 30
        frame = make_contacts(5, start=700)
        assert batch_engage.run(job, credentials=sandbox_creds, frame=frame).counts["sent"] == 5
        assert len(sandbox.ledger()) == 35

    def test_a_list_keeping_one_reached_contact_continues(
        self, job: Path, sandbox: Sandbox, contacts_csv: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """One person of the earlier list is enough to make it the same list: the 5 new contacts are sent."""
        assert cli(["run", str(job), "--quiet"], capsys)[0] == 0
        pl.concat([make_contacts(5, start=700), make_contacts(1)]).write_csv(contacts_csv)
        assert cli(["run", str(job), "--quiet"], capsys)[0] == 0
        assert len(sandbox.ledger()) == 35


class TestRefusedBeforeSending:
    """Mistakes caught before the first request: exit 2, one line naming the key or file, nothing sent."""

    def test_results_path_pointing_at_the_contacts_file_is_refused(
        self, job: Path, sandbox: Sandbox, contacts_csv: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """--output at the input file: exit 2 naming output.results, the contacts untouched, nothing sent."""
        before = contacts_csv.read_bytes()
        code, _, err = cli(["run", str(job), "--output", str(contacts_csv)], capsys)
        assert code == 2 and "output.results" in err and "input.path" in err
        assert contacts_csv.read_bytes() == before
        assert sandbox.stats().create_requests == 0

    @pytest.mark.parametrize("rate", ["nan", "1e400", "inf", "20000"])
    def test_absurd_rates_are_refused_before_planning(
        self, rate: str, job: Path, sandbox: Sandbox, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """--rate nan, inf, 1e400 or above 10,000/s: exit 2 naming send.rate."""
        code, _, err = cli(["run", str(job), "--rate", rate], capsys)
        assert code == 2 and "send.rate" in err and len(err.strip().splitlines()) == 1
        assert sandbox.stats().create_requests == 0

    def test_summary_json_through_a_file_is_refused_before_sending(
        self, job: Path, sandbox: Sandbox, contacts_csv: Path, capsys: pytest.CaptureFixture[str], tmp_path: Path
    ) -> None:
        """Not after sending everything (which cron would read as "rows failed"): exit 2, nothing sent."""
        code, _, err = cli(["run", str(job), "--summary-json", str(contacts_csv / "s.json")], capsys)
        assert code == 2 and "--summary-json" in err and "is a file, not a folder" in err
        assert sandbox.stats().create_requests == 0
        assert cli(["run", str(job), "--quiet", "--summary-json", str(tmp_path / "s.json")], capsys)[0] == 0
        assert json.loads((tmp_path / "s.json").read_text())["exit_code"] == 0


class TestAnotherTwilio:
    """A checkpoint belongs to the Twilio it was made against; validate agrees with run."""

    def test_a_run_against_another_base_url_is_refused_naming_both(
        self, sandbox_factory: Callable[..., Sandbox], job_for: Callable[..., Path], capsys: pytest.CaptureFixture[str]
    ) -> None:
        """Sent 3 against one Studio, then pointed at another: exit 2 naming both URLs; validate says the same."""
        one, two = sandbox_factory(rate_limit=None), sandbox_factory(rate_limit=None)
        job = job_for(one)
        assert cli(["run", str(job), "--limit", "3", "--quiet"], capsys)[0] == 0
        job.write_text(job.read_text().replace(one.url, two.url))
        code, _, err = cli(["run", str(job)], capsys)
        assert code == 2 and one.url in err and two.url in err
        assert two.stats().create_requests == 0
        code, _, verr = cli(["validate", str(job)], capsys)
        assert code == 2 and verr == err

    def test_validate_refuses_a_changed_mapping_like_run(self, job: Path, capsys: pytest.CaptureFixture[str]) -> None:
        """validate no longer says "exit 0, already done: 3" for a job run refuses: same message, same exit."""
        cli(["run", str(job), "--limit", "3", "--quiet"], capsys)
        job.write_text(job.read_text().replace('visits = "visits"', 'count = "visits"'))
        run_code, _, run_err = cli(["run", str(job)], capsys)
        val_code, _, val_err = cli(["validate", str(job)], capsys)
        assert run_code == val_code == 2 and run_err == val_err and "the column mapping changed" in run_err


class TestStatusDuringARun:
    """`status` while a run holds the checkpoint shows requests out as in_flight, not uncertain."""

    def test_rows_in_flight_are_in_flight_while_the_run_is_going_on(
        self, sandbox_factory: Callable[..., Sandbox], job_for: Callable[..., Path], sandbox_env: dict[str, str]
    ) -> None:
        """A slow Studio keeps requests out; status during the run counts them in_flight and none uncertain."""
        sb = sandbox_factory(rate_limit=None, latency=2.0)
        job = job_for(sb)
        with launch.start(["run", str(job), "--quiet"], env=cli_env(sandbox_env)) as proc:
            wait_until(proc, lambda: sb.stats().create_requests >= 8, within=20)
            counts = status(job).counts
            # Seen: the rest of the rows need not wait on a slow Studio too.
            sb.reconfigure(latency=0.0)
            assert proc.wait(timeout=60) == 0
        assert counts.get("in_flight", 0) >= 8 and counts["uncertain"] == 0
        assert status(job).counts["sent"] == 30


class TestCredentials:
    """The target is the account, not the credential: a rotated key goes on, another account is refused."""

    def test_a_rotated_api_key_of_the_same_account_continues_the_job(self, rig: Rig) -> None:
        """Sent 5 with the Account SID, then with a new API key: the rest are sent, nobody twice."""
        from batch_engage import RunOptions, run

        key = Credentials("SK" + "1" * 32, "key-secret")
        sb, spec = _accepting_also(rig, key)
        run(spec, frame=make_contacts(12), credentials=rig.creds, options=RunOptions(limit=5))
        result = run(spec, frame=make_contacts(12), credentials=key)
        assert result.counts["sent"] == 12 and len(sb.ledger()) == 12

    def test_another_account_is_refused_before_sending(self, rig: Rig) -> None:
        """A checkpoint of account A run with account B's credentials: exit 2 naming both accounts."""
        from batch_engage import run
        from batch_engage.errors import CheckpointMismatch

        other = Credentials("AC" + "b" * 32, "other-token")
        sb, spec = _accepting_also(rig, other)
        run(spec, frame=make_contacts(3), credentials=rig.creds)
        with pytest.raises(CheckpointMismatch, match=other.username) as refused:
            run(spec, frame=make_contacts(3), credentials=other)
        assert rig.creds.username in str(refused.value)
        assert len(sb.ledger()) == 3


def _accepting_also(rig: Rig, second: Credentials) -> tuple[Sandbox, Any]:
    """A sandbox that accepts its own credentials and ``second``, and a Spec for a job against it."""
    sb = rig.sandbox(
        rate_limit=None, credentials=((rig.creds.username, rig.creds.password), (second.username, second.password))
    )
    return sb, rig.spec(sb.url)


class TestReportAfterCollect:
    """The report page alone (`report --html`) shows what `collect` brought back, as the page with a table does."""

    def test_the_page_alone_shows_the_collected_run_statuses(
        self, job: Path, sandbox: Sandbox, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """Sent, ended, collected: the page written alone charts the 30 runs' statuses, never "Nothing recorded"."""
        assert cli(["run", str(job), "--quiet"], capsys)[0] == 0
        sandbox.end_all_runs()
        assert cli(["collect", str(job), "--quiet"], capsys)[0] == 0
        page = tmp_path / "page.html"
        assert cli(["report", str(job), "--html", str(page)], capsys)[0] == 0
        html = page.read_text()
        assert 'id="chart-run-status"' in html and 'id="chart-run-status-empty"' not in html
