"""Campaign hygiene: suppression lists never reached, and frequency caps across jobs and processes."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from pathlib import Path

import polars as pl
import pytest

from batch_engage.cli.main import main
from batch_engage.history.store import History
from batch_engage.sandbox import Sandbox

from conftest import FLOW_SID, make_contacts
from histories import OTHER_FLOW, import_stats_and_cap
from killing import cli_env, run_at_once


class TestSuppression:
    def test_suppressed_rows_never_reach_studio_and_validate_counts_them_per_list(
        self, sandbox: Sandbox, job_for: Callable[..., Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """Numbers on an opt-out CSV (any format) or a DNC Parquet are `suppressed`, never sent; exit stays 0."""
        (tmp_path / "optouts.csv").write_text("number,when\n(415) 555-0101,2026-01-01\n+14155550102,2026-02-01\n")
        pl.DataFrame({"phone": ["+14155550105"]}).write_parquet(tmp_path / "dnc.parquet")
        extra = '[suppress]\nfiles = ["optouts.csv", "dnc.parquet"]\n'
        job = job_for(
            sandbox,
            contacts=10,
            mapping='to = "phone"\nfrom = "+15005550006"\ndefault_region = "US"',
            extra=extra,
        )
        assert main(["validate", str(job)]) == 0
        out = capsys.readouterr().out
        assert "suppressed (optouts.csv): 2" in out and "suppressed (dnc.parquet): 1" in out
        assert main(["run", str(job)]) == 0
        table = pl.read_csv(tmp_path / "job.results.csv")
        suppressed = table.filter(pl.col("status") == "suppressed")
        assert suppressed["to"].to_list() == ["+14155550101", "+14155550102", "+14155550105"]
        assert suppressed["error_message"].to_list()[-1] == "on suppression list dnc.parquet"
        sent_to = {e.to for e in sandbox.ledger()}
        assert len(sent_to) == 7 and not sent_to & set(suppressed["to"].to_list())

    @pytest.mark.parametrize(
        ("written", "mapping", "first"),
        [
            # The first column is the date (suppress.column left out): not one number is read.
            (
                "opted_out_at,phone\n2026-01-01,+14155550101\n2026-02-01,+14155550102\n",
                'to = "phone"\nfrom = "+15005550006"\ndefault_region = "US"',
                "'2026-01-01'",
            ),
            # National numbers, and no default_region to read them with.
            (
                "phone\n(415) 555-0101\n\n415-555-0102\n",
                'to = "phone"\nfrom = "+15005550006"',
                "'(415) 555-0101'",
            ),
        ],
        ids=["wrong-column", "no-region"],
    )
    def test_a_list_with_entries_it_cannot_read_is_refused_and_nothing_is_sent(
        self,
        sandbox: Sandbox,
        job_for: Callable[..., Path],
        tmp_path: Path,
        capsys: pytest.CaptureFixture[str],
        written: str,
        mapping: str,
        first: str,
    ) -> None:
        """Exit 2, one line naming the list, its column and the first entry: never the opted-out people messaged."""
        (tmp_path / "optouts.csv").write_text(written)
        job = job_for(sandbox, contacts=3, mapping=mapping, extra='[suppress]\nfiles = ["optouts.csv"]\n')
        assert main(["run", str(job)]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "optouts.csv" in err[0] and "cannot be read as phone numbers" in err[0]
        assert first in err[0]
        assert sandbox.ledger() == []

    def test_a_number_on_a_list_holds_back_its_whatsapp_address_and_a_whatsapp_entry_only_whatsapp(
        self, sandbox: Sandbox, job_for: Callable[..., Path], tmp_path: Path
    ) -> None:
        """+1… on the list is the person on any channel; whatsapp:+1… on the list leaves their SMS alone."""
        contacts = tmp_path / "contacts.csv"
        pl.DataFrame(
            {
                "phone": [
                    "whatsapp:+14155550101",  # the list's plain number: held back
                    "WhatsApp:(415) 555-0102",  # the list's whatsapp entry, spelled otherwise: held back
                    "+14155550102",  # the same person by SMS: the whatsapp entry does not hold it
                    "whatsapp:+14155550103",  # on no list: sent
                ]
            }
        ).write_csv(contacts)
        (tmp_path / "optouts.csv").write_text("phone\n+14155550101\nwhatsapp:+14155550102\n")
        job = job_for(
            sandbox,
            input_path=contacts,
            mapping='to = "phone"\nfrom = "+15005550006"\ndefault_region = "US"',
            extra='[suppress]\nfiles = ["optouts.csv"]\n',
        )
        assert main(["run", str(job)]) == 0
        table = pl.read_csv(tmp_path / "job.results.csv")
        assert table["status"].to_list() == ["suppressed", "suppressed", "sent", "sent"]
        assert sorted(e.to for e in sandbox.ledger()) == ["+14155550102", "whatsapp:+14155550103"]

    def test_a_list_with_its_header_and_nobody_on_it_yet_sends_everyone(
        self, sandbox: Sandbox, job_for: Callable[..., Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """A nightly opt-out export with no entries yet is an empty list (exit 0); one without a header is refused."""
        (tmp_path / "optouts.csv").write_text("phone\n")
        job = job_for(
            sandbox,
            contacts=3,
            mapping='to = "phone"\nfrom = "+15005550006"\ndefault_region = "US"',
            extra='[suppress]\nfiles = ["optouts.csv"]\n',
        )
        assert main(["run", str(job)]) == 0
        assert len(sandbox.ledger()) == 3
        capsys.readouterr()
        (tmp_path / "optouts.csv").write_text("")
        assert main(["validate", str(job)]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "optouts.csv" in err[0] and "empty" in err[0]

    def test_a_list_of_empty_json_objects_is_one_line_not_a_traceback(self, tmp_path: Path) -> None:
        """An NDJSON list whose lines are all `{}` has no column to read: refused, naming it."""
        from batch_engage.errors import InputFileError
        from batch_engage.plan.hygiene import load_suppression

        path = tmp_path / "optouts.ndjson"
        path.write_text("{}\n{}\n")
        with pytest.raises(InputFileError, match="has no columns"):
            load_suppression([str(path)], None, "US")

    @pytest.mark.parametrize("dtype", [pl.Int64, pl.Float64])
    def test_a_number_column_that_may_have_lost_a_leading_zero_makes_the_list_unreadable(
        self, tmp_path: Path, dtype: type
    ) -> None:
        """In GA a list's 6031234, from a number column, may be 06031234: the list is refused, never misread."""
        from batch_engage.errors import InputFileError
        from batch_engage.plan.hygiene import load_suppression

        path = tmp_path / "optouts.parquet"
        pl.DataFrame({"phone": pl.Series([6031234], dtype=dtype)}).write_parquet(path)
        with pytest.raises(InputFileError, match="leading zero"):
            load_suppression([str(path)], None, "GA")

    def test_a_csv_entry_a_zero_away_from_another_mobile_makes_the_list_unreadable(self, tmp_path: Path) -> None:
        """In GA a CSV list's 6031234 may be 06031234 after Excel: the list is refused, naming the row, never misread."""
        from batch_engage.errors import InputFileError
        from batch_engage.plan.hygiene import load_suppression

        path = tmp_path / "optouts.csv"
        path.write_text("phone\n+24106031235\n6031234\n")
        with pytest.raises(InputFileError, match="row 2: entry: with a leading zero it is another number"):
            load_suppression([str(path)], None, "GA")

    def test_two_lists_of_one_name_both_hold_their_people_back(self, tmp_path: Path) -> None:
        """Two folders' `optout.csv` (or one URL with two queries): neither list replaces the other."""
        from batch_engage.plan.hygiene import load_suppression

        for folder, number in (("a", "+12125550191"), ("b", "+16175550194")):
            (tmp_path / folder).mkdir()
            (tmp_path / folder / "optout.csv").write_text(f"phone\n{number}\n")
        lists = load_suppression([str(tmp_path / "a" / "optout.csv"), str(tmp_path / "b" / "optout.csv")], None, "US")
        assert lists == {"optout.csv": {"+12125550191"}, "optout.csv (2)": {"+16175550194"}}


class TestCaps:
    def test_two_concurrent_processes_reach_each_shared_contact_once(
        self,
        sandbox_factory: Callable[..., Sandbox],
        job_for: Callable[..., Path],
        tmp_path: Path,
        sandbox_env: dict[str, str],
    ) -> None:
        """Two jobs on two flows, overlapping lists, one history with `cap = "1 per 7d"`, run at once: nobody twice."""
        sb = sandbox_factory(rate_limit=None, latency=0.01, active_rule=False)
        history = tmp_path / "contact-history.sqlite"
        extra = f'[history]\npath = "{history}"\ncap = "1 per 7d"\n'
        jobs = []
        for name, start, flow in (("a", 100, FLOW_SID), ("b", 120, OTHER_FLOW)):
            path = tmp_path / f"{name}.csv"
            make_contacts(40, start=start).write_csv(path)
            job = job_for(sb, input_path=path, name=name, extra=extra, send="rate = 100\nconcurrency = 4")
            job.write_text(job.read_text().replace(FLOW_SID, flow))
            jobs.append(job)
        run_at_once(jobs, cli_env(sandbox_env))
        per_contact = Counter(e.to for e in sb.ledger())
        assert len(per_contact) == 60
        assert max(per_contact.values()) == 1
        tables = [pl.read_csv(tmp_path / f"{n}.results.csv") for n in ("a", "b")]
        capped = sum(t.filter(pl.col("status") == "capped").height for t in tables)
        assert capped == 20
        assert all(
            m.startswith("contacted at ")
            for t in tables
            for m in t.filter(pl.col("status") == "capped")["error_message"]
        )

    def test_resuming_a_job_is_not_capped_by_its_own_contacts(
        self, sandbox: Sandbox, job_for: Callable[..., Path], tmp_path: Path
    ) -> None:
        """A job resumed after --limit keeps its sent rows `sent` and sends the rest; its own contacts don't cap it."""
        extra = f'[history]\npath = "{tmp_path / "h.sqlite"}"\ncap = "1 per 7d"\n'
        job = job_for(sandbox, extra=extra)
        assert main(["run", str(job), "--limit", "10"]) == 0
        assert main(["run", str(job)]) == 0
        table = pl.read_csv(tmp_path / "job.results.csv")
        assert table["status"].to_list() == ["sent"] * 30
        assert len(sandbox.ledger()) == 30


class TestHistoryFile:
    def test_the_history_file_is_readable_by_its_owner_only(self, tmp_path: Path) -> None:
        """It holds phone numbers: created 0600 (its WAL too), and an older 0644 file is tightened on opening."""
        path = tmp_path / "h.sqlite"
        with History(path) as history:
            history.record([("+14155550100", FLOW_SID, "FN1", 1_800_000_000.0)])
            modes = {p.name: p.stat().st_mode & 0o777 for p in tmp_path.iterdir()}
        assert modes["h.sqlite"] == 0o600
        assert modes.get("h.sqlite-wal", 0o600) == 0o600
        path.chmod(0o644)
        History(path).close()
        assert path.stat().st_mode & 0o777 == 0o600


class TestHistoryCommands:
    def test_import_and_stats(
        self, sandbox: Sandbox, job_for: Callable[..., Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """`history import` seeds the history from a past results table; `history stats` counts per flow per day;
        a job with a cap then skips the imported contacts."""
        import_stats_and_cap(str(tmp_path / "h.sqlite"), sandbox, job_for, capsys)
