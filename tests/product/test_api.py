"""The Python API as a library user calls it: run, validate, status, report against the sandbox; exit codes."""

from __future__ import annotations

import asyncio
import inspect
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import polars as pl
import pytest

import batch_engage
from batch_engage import api
from batch_engage.credentials import Credentials
from batch_engage.errors import AuthFailed, CheckpointLocked, ConfigError, PeriodUnsettled, UsageError
from batch_engage.sandbox import Sandbox

from conftest import make_contacts


class TestRun:
    """``run`` and ``run_async``: the same job, from plain code or from inside an event loop."""

    def test_run_async_sends_every_row_from_inside_an_event_loop(
        self, sandbox: Sandbox, make_spec: Callable[..., Any], sandbox_creds: Credentials
    ) -> None:
        """Awaited in a caller's loop, every row becomes one run and the exit code is 0."""
        spec = make_spec(sandbox.url)

        async def caller() -> api.RunResult:
            return await api.run_async(spec, frame=make_contacts(6), credentials=sandbox_creds)

        result = asyncio.run(caller())
        assert (result.exit_code, result.counts["sent"], len(sandbox.ledger())) == (0, 6, 6)

    @pytest.mark.parametrize(("blocking", "awaitable"), [("run", "run_async"), ("collect", "collect_async")])
    def test_the_blocking_form_takes_the_same_arguments_and_has_its_own_help(
        self, blocking: str, awaitable: str
    ) -> None:
        """``help(batch_engage.run)`` shows run_async's parameters, under its own name and docstring."""
        sync, async_ = getattr(api, blocking), getattr(api, awaitable)
        assert inspect.signature(sync).parameters == inspect.signature(async_).parameters
        assert sync.__name__ == blocking
        assert sync.__doc__ and sync.__doc__ != async_.__doc__
        assert getattr(batch_engage, blocking) is sync


class TestValidate:
    """``validate``: what a run would send, without sending anything."""

    def test_a_frame_with_a_bad_number_counts_it_and_exits_1(
        self, make_spec: Callable[..., Any], tmp_path: Path
    ) -> None:
        """An unparseable number is counted invalid with its reason, the rest valid; exit code 1, nothing sent."""
        frame = pl.concat([make_contacts(3), pl.DataFrame({"phone": ["nope"], "name": ["X"], "visits": [9]})])
        spec = make_spec("http://127.0.0.1:9")
        found = api.validate(spec, frame=frame, output=tmp_path / "dry.csv")
        assert (found.total, found.valid, found.invalid, found.exit_code) == (4, 3, 1, 1)
        assert list(found.invalid_reasons.values()) == [1]
        assert len(found.samples) == 3
        assert json.loads(json.dumps(found.as_dict()))["rows"] == 4
        assert pl.read_csv(tmp_path / "dry.csv")["status"].to_list() == ["pending"] * 3 + ["invalid"]
        assert not Path(spec.output.checkpoint).exists()

    def test_invalid_rows_are_counted_by_kind_of_problem_most_common_first_without_the_values(
        self, make_spec: Callable[..., Any]
    ) -> None:
        """Rows refused for the same reason count together whatever value each quotes; the commonest kind leads."""
        bad = ["nope", "abc", 'no\'pe: "x"', "+1", "+12", "+123", "", "1.5"]
        frame = pl.concat(
            [make_contacts(2), pl.DataFrame({"phone": bad, "name": ["X"] * len(bad), "visits": [1] * len(bad)})]
        )
        found = api.validate(make_spec("http://127.0.0.1:9"), frame=frame)
        assert list(found.invalid_reasons.items()) == [
            ("To: not a phone number", 3),
            ("To: too short", 2),
            # Ties in the order their first row came.
            ("To: not a valid phone number", 1),
            ("To is empty", 1),
            ("To: a number with a decimal part, not a phone number; export the column as text", 1),
        ]

    def test_the_results_table_is_the_one_written_to_output(
        self, make_spec: Callable[..., Any], tmp_path: Path
    ) -> None:
        """``Validation.results`` (built when first read) is the table ``output`` receives, row for row."""
        frame = pl.concat([make_contacts(3), pl.DataFrame({"phone": ["nope"], "name": ["X"], "visits": [9]})])
        found = api.validate(make_spec("http://127.0.0.1:9"), frame=frame, output=tmp_path / "dry.parquet")
        assert found.results.equals(pl.read_parquet(tmp_path / "dry.parquet"))
        assert found.results["status"].to_list() == ["pending"] * 3 + ["invalid"]

    def test_every_row_sendable_exits_0(self, make_spec: Callable[..., Any]) -> None:
        """No invalid row: the exit code the CLI would give is 0."""
        assert api.validate(make_spec("http://127.0.0.1:9"), frame=make_contacts(2)).exit_code == 0

    def test_overrides_apply_to_job_files_only(self, make_spec: Callable[..., Any]) -> None:
        """A Spec with overrides is refused with a usage error saying how to do it instead."""
        with pytest.raises(UsageError, match="overrides apply to job files"):
            api.validate(make_spec("http://127.0.0.1:9"), overrides={"send.rate": 5}, frame=make_contacts(1))


class TestStatusAndReport:
    """``status`` and ``report`` read what a run left in the checkpoint, and send nothing."""

    def test_status_and_report_agree_with_the_run(
        self, sandbox: Sandbox, make_spec: Callable[..., Any], sandbox_creds: Credentials, tmp_path: Path
    ) -> None:
        """After a run, status counts what it sent; report rewrites the table and the HTML page from the checkpoint."""
        spec = make_spec(sandbox.url)
        result = api.run(spec, frame=make_contacts(5), credentials=sandbox_creds)
        sends = len(sandbox.ledger())
        state = api.status(spec)
        assert state.counts == result.counts and state.waiting_for_window == 0
        path, counts = api.report(spec, output=tmp_path / "again.parquet", html=tmp_path / "report.html")
        assert counts == result.counts
        assert pl.read_parquet(path)["status"].to_list() == ["sent"] * 5
        assert (tmp_path / "report.html").read_text().lstrip().lower().startswith("<!doctype html")
        assert len(sandbox.ledger()) == sends

    def test_a_job_that_never_ran_has_no_status(self, make_spec: Callable[..., Any]) -> None:
        """Status of a job without a checkpoint is a usage error, not an empty table."""
        with pytest.raises(UsageError):
            api.status(make_spec("http://127.0.0.1:9"))


class TestExitCodes:
    """Every exit code comes from ``api``'s mappings: the CLI and a Python caller agree."""

    @pytest.mark.parametrize(
        ("error", "code"),
        [
            (ConfigError("send.rate", "must be positive"), api.EXIT_USAGE),
            (CheckpointLocked("busy"), api.EXIT_TEMPFAIL),
            (PeriodUnsettled("later"), api.EXIT_TEMPFAIL),
            (AuthFailed("refused"), api.EXIT_ABORTED),
            (KeyboardInterrupt(), api.EXIT_TEMPFAIL),
        ],
    )
    def test_an_error_maps_to_its_documented_code(self, error: BaseException, code: int) -> None:
        """Usage errors 2, try-later and Ctrl-C 75, anything else of ours 3."""
        assert isinstance(error, batch_engage.BatchEngageError | KeyboardInterrupt)
        assert api.exit_code_for_error(error) == code

    @pytest.mark.parametrize(
        ("counts", "flags", "run_code", "collect_code"),
        [
            ({"sent": 3}, {}, 0, 0),
            ({"sent": 3, "failed": 1}, {}, 1, 1),
            ({"sent": 3, "uncertain": 1}, {}, 1, 0),
            ({"ended": 3, "active": 1}, {}, 0, 75),
            ({"sent": 3}, {"stopped_early": True}, 75, 75),
            ({"failed": 3}, {"aborted": True}, 3, 3),
        ],
    )
    def test_run_and_collect_map_counts_to_codes(
        self, counts: dict[str, int], flags: dict[str, bool], run_code: int, collect_code: int
    ) -> None:
        """A run fails on failed/invalid/uncertain rows; a collect waits (75) while runs are active."""
        assert api.exit_code_for(counts, **flags) == run_code
        assert api.collect_exit_code(counts, **flags) == collect_code
