"""`batch-engage validate` (and `run --dry-run`): the report a user reads before sending anything."""

from __future__ import annotations

import gc
import io
import json
import os
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from batch_engage.sandbox import Sandbox

from conftest import REPO, cli

MAPPING = (
    'to = "phone"\nfrom = "+15005550006"\ndefault_region = "US"\n\n'
    '[mapping.parameters]\nname = "name"\nvisits = "visits"'
)
CONTACTS = """phone,name,visits
+14155550100,Ana,1
(415) 555-0101,Zoë,2
+14155550100,Ana again,3
nope,Bob,4
+15555550100,Eve,5
,Nobody,6
n/a,Carl,7
+14155550102,José,
"""
REPORT = """rows: 8
valid: 3
invalid: 4
       2  To: not a phone number
       1  To: not a valid phone number
       1  To is empty
numbers rewritten (one example of each way, as written → as sent):
  (415) 555-0101 → +14155550101  (national number: country code of mapping.default_region)
duplicate: 1
already done (checkpoint): 0
estimated duration at 500/s: 0s
sample requests:
  {"row": 1, "To": "+14155550100", "From": "+15005550006", "Parameters": "{\\"name\\":\\"Ana\\",\\"visits\\":1,\\"_batch_engage\\":\\"<token of the new checkpoint>:74f21c74db99edf7\\"}"}
  {"row": 2, "To": "+14155550101", "From": "+15005550006", "Parameters": "{\\"name\\":\\"Zoë\\",\\"visits\\":2,\\"_batch_engage\\":\\"<token of the new checkpoint>:3aec5bbba8314dec\\"}"}
  {"row": 8, "To": "+14155550102", "From": "+15005550006", "Parameters": "{\\"name\\":\\"José\\",\\"_batch_engage\\":\\"<token of the new checkpoint>:c7ffb335a51d4c75\\"}"}
"""


@pytest.fixture
def mixed_job(tmp_path: Path, write_job: Callable[..., Path]) -> Callable[..., Path]:
    """A job over eight rows: three sendable, one duplicate, four invalid for three reasons."""
    path = tmp_path / "mixed.csv"
    path.write_text(CONTACTS)

    def make(**kwargs: Any) -> Path:
        return write_job(input_path=path, mapping=MAPPING, **kwargs)

    return make


class TestReport:
    def test_the_report_counts_explains_and_shows_three_requests_as_sent(
        self, mixed_job: Callable[..., Path], capsys: pytest.CaptureFixture[str]
    ) -> None:
        """Rows, valid, invalid grouped by reason, duplicates, checkpoint rows, duration and 3 sample requests."""
        code, out, err = cli(["validate", str(mixed_job())], capsys)
        assert (code, out, err) == (1, REPORT, "")

    def test_run_dry_run_is_the_same_report(
        self, mixed_job: Callable[..., Path], capsys: pytest.CaptureFixture[str]
    ) -> None:
        """`run --dry-run` prints exactly what `validate` prints, with the same exit code."""
        assert cli(["run", str(mixed_job()), "--dry-run"], capsys) == (1, REPORT, "")

    def test_validate_opens_no_connection(
        self, mixed_job: Callable[..., Path], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """No network at all: with every socket connection refused and no credentials, validate still answers."""

        def refuse(*_: Any) -> None:
            raise AssertionError("validate tried to connect")

        monkeypatch.setattr(socket.socket, "connect", refuse)
        monkeypatch.setattr(socket.socket, "connect_ex", refuse)
        assert cli(["validate", str(mixed_job())], capsys)[0] == 1

    def test_validate_loads_no_http_client_or_simulator(self, mixed_job: Callable[..., Path]) -> None:
        """A dry run starts without loading the HTTP client (httpx, aiohttp, tenacity's retries), the simulator's
        server, the runner or pyarrow (35 MB, which the PostgreSQL query reader brought to every CSV's validate):
        its process is done in the time of reading the file and judging its rows."""
        heavy = (
            "aiohttp",
            "httpx_aiohttp",
            "httpx",
            "tenacity",
            "batch_engage.runner.job",
            "batch_engage.collector",
            "pyarrow",
        )
        probe = (
            "import sys\nfrom batch_engage.cli import main\n"
            f"code = main(['validate', {str(mixed_job())!r}])\n"
            f"print(code, sorted(m for m in {heavy!r} if m in sys.modules))"
        )
        ran = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True, cwd=REPO)
        assert ran.stdout.splitlines()[-1] == "1 []"

    def test_what_a_dry_run_leaves_unloaded_loads_when_asked_for(self) -> None:
        """The names a dry run leaves unloaded are still there for the commands that need them."""
        probe = (
            "import sys\nimport batch_engage\nfrom batch_engage import api\n"
            "assert 'aiohttp' not in sys.modules\n"
            "print(api.RunOptions.__name__, batch_engage.RunResult.__name__, callable(api.serve_sandbox), "
            "'aiohttp' in sys.modules)"
        )
        ran = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True, cwd=REPO)
        assert ran.stdout.split() == ["RunOptions", "RunResult", "True", "True"]

    @pytest.mark.parametrize("unbuffered", [False, True], ids=["written at the end", "PYTHONUNBUFFERED"])
    def test_output_that_cannot_be_written_is_said_and_the_exit_is_74(
        self, mixed_job: Callable[..., Path], unbuffered: bool
    ) -> None:
        """A command whose output goes to a full disk (``/dev/full``) says so in one line and exits 74: never 0,
        never a traceback, whether its output is written as it goes (PYTHONUNBUFFERED) or when it ends."""
        env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}
        if unbuffered:
            env["PYTHONUNBUFFERED"] = "1"
        with open("/dev/full", "w") as full:
            ran = subprocess.run(
                [sys.executable, "-m", "batch_engage", "validate", str(mixed_job())],
                env=env,
                stdout=full,
                stderr=subprocess.PIPE,
                text=True,
                cwd=REPO,
                timeout=60,
            )
        assert ran.returncode == 74
        assert "the output could not be written" in ran.stderr and "Traceback" not in ran.stderr

    def test_a_profiled_command_still_writes_its_profile(self, mixed_job: Callable[..., Path], tmp_path: Path) -> None:
        """``python -m cProfile -o FILE -m batch_engage ...`` leaves its profile: the quick exit waits for it."""
        profile = tmp_path / "validate.prof"
        ran = subprocess.run(
            [sys.executable, "-m", "cProfile", "-o", str(profile), "-m", "batch_engage", "validate", str(mixed_job())],
            capture_output=True,
            text=True,
            cwd=REPO,
            timeout=60,
        )
        # cProfile's own exit status is 0 whatever the command's: what matters is that the profile was written.
        assert "rows:" in ran.stdout, ran.stderr
        assert profile.stat().st_size > 0

    def test_a_program_calling_the_cli_keeps_its_garbage_collector_as_it_was(
        self, mixed_job: Callable[..., Path], capsys: pytest.CaptureFixture[str]
    ) -> None:
        """Only the command's own process freezes what its imports made; a program calling ``main`` is left alone."""
        before = gc.get_freeze_count()
        cli(["validate", str(mixed_job())], capsys)
        assert gc.get_freeze_count() == before

    def test_the_duration_is_estimated_at_the_configured_rate(
        self, mixed_job: Callable[..., Path], capsys: pytest.CaptureFixture[str]
    ) -> None:
        """Three sendable rows at 0.1/s: 30 s."""
        _, out, _ = cli(["validate", str(mixed_job(send="rate = 0.1"))], capsys)
        assert "estimated duration at 0.1/s: 30s\n" in out

    def test_rows_already_done_come_from_the_checkpoint(
        self,
        mixed_job: Callable[..., Path],
        sandbox: Sandbox,
        sandbox_env: dict[str, str],
        capsys: pytest.CaptureFixture[str],
    ) -> None:
        """After a run that sent 2 rows, validate counts 2 done; its samples are the next requests, never the 2 sent
        (they will not leave again), and the run that follows sends exactly them."""
        job = mixed_job(base_url=sandbox.url)
        assert cli(["run", str(job), "--limit", "2", "--quiet"], capsys)[0] in (0, 1)
        sent = {e.to for e in sandbox.ledger()}
        code, out, _ = cli(["validate", str(job)], capsys)
        assert code == 1
        assert "already done (checkpoint): 2\n" in out
        samples = [json.loads(line) for line in out.splitlines() if line.startswith('  {"row"')]
        assert samples and not {s["To"] for s in samples} & sent
        assert cli(["run", str(job), "--quiet"], capsys)[0] in (0, 1)
        received = {e.to: (e.from_, e.parameters) for e in sandbox.ledger()}
        for sample in samples:
            assert received[sample["To"]] == (sample["From"], json.loads(sample["Parameters"]))


class TestExitCodes:
    def test_exit_0_when_every_row_is_sendable(
        self, write_job: Callable[..., Path], contacts_csv: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """A clean list: exit 0, everything valid, nothing invalid."""
        code, out, _ = cli(["validate", str(write_job(input_path=contacts_csv))], capsys)
        assert code == 0
        assert out.startswith("rows: 30\nvalid: 30\ninvalid: 0\nduplicate: 0\n")

    def test_duplicates_alone_do_not_make_it_fail(
        self, tmp_path: Path, write_job: Callable[..., Path], capsys: pytest.CaptureFixture[str]
    ) -> None:
        """A repeated contact is skipped by design (as `run` does): still exit 0."""
        path = tmp_path / "c.csv"
        path.write_text("phone,name,visits\n+14155550100,A,1\n+14155550100,A,1\n")
        code, out, _ = cli(["validate", str(write_job(input_path=path))], capsys)
        assert (code, "duplicate: 1\n" in out) == (0, True)

    def test_exit_1_when_some_rows_are_not_sendable(
        self, mixed_job: Callable[..., Path], capsys: pytest.CaptureFixture[str]
    ) -> None:
        """Any invalid row: exit 1."""
        assert cli(["validate", str(mixed_job())], capsys)[0] == 1

    def test_exit_2_on_a_file_level_error(
        self, tmp_path: Path, write_job: Callable[..., Path], capsys: pytest.CaptureFixture[str]
    ) -> None:
        """A file that cannot be read at all: exit 2, one line on stderr, nothing on stdout."""
        path = tmp_path / "c.csv"
        path.write_text("phone,name,visits\n")
        code, out, err = cli(["validate", str(write_job(input_path=path))], capsys)
        assert (code, out, err) == (2, "", f"batch-engage: {path}: has a header but no data rows\n")

    def test_exit_2_on_a_configuration_error(
        self, contacts_csv: Path, write_job: Callable[..., Path], capsys: pytest.CaptureFixture[str]
    ) -> None:
        """A key mapped twice is one line naming the key."""
        mapping = 'to = "phone"\nfrom = "+15005550006"\n\n[mapping.parameters]\n"order.id" = "name"\n\n[mapping.parameters.order]\nid = "visits"'
        code, out, err = cli(["validate", str(write_job(input_path=contacts_csv, mapping=mapping))], capsys)
        assert (code, out, err) == (2, "", "batch-engage: mapping.parameters.order.id: is mapped twice\n")


class TestOutputTable:
    def test_output_writes_every_row_with_its_status_and_reason(
        self, mixed_job: Callable[..., Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """`--output` writes the results table: pending, duplicate and invalid rows, addresses as they would be sent."""
        target = tmp_path / "check.csv"
        code, out, _ = cli(["validate", str(mixed_job()), "--output", str(target)], capsys)
        assert code == 1
        assert out.endswith(f"results: {target}\n")
        table = pl.read_csv(target, infer_schema=False)
        assert table.select("row", "to", "status", "error_message").rows() == [
            ("1", "+14155550100", "pending", None),
            ("2", "+14155550101", "pending", None),
            ("3", "+14155550100", "duplicate", "same contact as row 1"),
            ("4", "nope", "invalid", "To: not a phone number: 'nope'"),
            ("5", "+15555550100", "invalid", "To: not a valid phone number: '+15555550100'"),
            ("6", None, "invalid", "To is empty"),
            ("7", "n/a", "invalid", "To: not a phone number: 'n/a'"),
            ("8", "+14155550102", "pending", None),
        ]

    def test_output_can_be_parquet(
        self, mixed_job: Callable[..., Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """A .parquet --output holds the same statuses."""
        target = tmp_path / "check.parquet"
        cli(["validate", str(mixed_job()), "--output", str(target)], capsys)
        assert pl.read_parquet(target)["status"].value_counts(sort=True).rows() == [
            ("invalid", 4),
            ("pending", 3),
            ("duplicate", 1),
        ]


class TestStdin:
    def test_a_job_whose_path_is_dash_reads_stdin(
        self,
        write_job: Callable[..., Path],
        monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str],
    ) -> None:
        """`[input] path = "-"` validates the CSV piped in."""
        monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(CONTACTS.encode())))
        code, out, _ = cli(["validate", str(write_job(input_path="-", mapping=MAPPING))], capsys)
        assert (code, out) == (1, REPORT)
