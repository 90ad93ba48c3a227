"""What the people who run it see: JSON logs, the summary, masking, secrets, file safety, stdin, progress."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import launch
import polars as pl
import pytest
from launch import Running

from batch_engage.cli.main import main
from batch_engage.credentials import Credentials, credentials_from_env
from batch_engage.errors import CredentialsError
from batch_engage.plan.phone import mask
from batch_engage.sandbox import SANDBOX_USERNAME, Sandbox

from conftest import REPO, cli, make_contacts
from killing import cli_env

SECRET = "s3cr3t-TOKEN-8b1f0c9e"


def _start(args: list[str], env: dict[str, str]) -> Running:
    return launch.start(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=REPO)


def _cli(args: list[str], env: dict[str, str], stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    return launch.run(args, env=env, input=stdin, capture_output=True, cwd=REPO, timeout=120)


class TestLogs:
    def test_json_logs_parse_line_by_line_and_end_with_the_summary_event(
        self, job: Path, sandbox_env: dict[str, str], tmp_path: Path
    ) -> None:
        """Off a terminal, stderr is JSON lines (one object each) with one run.summary event; --summary-json matches."""
        summary_path = tmp_path / "summary.json"
        done = _cli(
            ["run", str(job), "--log-level", "debug", "--summary-json", str(summary_path)], cli_env(sandbox_env)
        )
        assert done.returncode == 0
        events = [json.loads(line) for line in done.stderr.decode().splitlines()]
        summaries = [e for e in events if e["event"] == "run.summary"]
        assert len(summaries) == 1 and summaries[0]["level"] == "info"
        assert summaries[0]["counts"]["sent"] == 30
        assert sum(1 for e in events if e["event"] == "row.outcome" and e["level"] == "debug") == 30
        written = json.loads(summary_path.read_text())
        assert written["counts"] == summaries[0]["counts"] and written["exit_code"] == 0

    def test_phone_numbers_are_masked_in_logs_and_whole_in_results(
        self, job: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """Logs show +1415***0100; the results table keeps the full number."""
        code, _, logs = cli(["run", str(job), "--log-level", "debug"], capsys)
        assert code == 0 and '"event": "row.outcome"' in logs
        assert "+1415***0100" in logs
        assert "+14155550100" not in logs
        assert "+14155550100" in (job.parent / "job.results.csv").read_text()

    @pytest.mark.parametrize(
        ("address", "masked"),
        [
            ("+14155550100", "+1415***0100"),
            ("whatsapp:+14155550100", "whatsapp:+1415***0100"),
            ("alice@example.com", "al***@example.com"),
            ("", ""),
        ],
    )
    def test_mask_hides_the_middle_of_every_kind_of_address(self, address: str, masked: str) -> None:
        """Every kind of address is masked, keeping only enough to recognize it."""
        assert mask(address) == masked


class TestSecrets:
    def test_the_token_appears_in_no_output_file_or_error(
        self,
        sandbox_factory: Callable[..., Sandbox],
        job_for: Callable[..., Path],
        tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str],
    ) -> None:
        """A recognizable secret, on success and on refusal, is in no log, result, checkpoint, error or --help."""
        sb = sandbox_factory(rate_limit=None, credentials=((SANDBOX_USERNAME, SECRET),))
        job = job_for(sb)
        env = cli_env({"TWILIO_ACCOUNT_SID": SANDBOX_USERNAME, "TWILIO_AUTH_TOKEN": SECRET})
        wrong = cli_env({"TWILIO_ACCOUNT_SID": SANDBOX_USERNAME, "TWILIO_AUTH_TOKEN": SECRET + "x"})
        job2 = job_for(sb, name="refused")
        # Two separate jobs: the accepted and the refused run go at the same time.
        runs = [
            _start(["run", str(job), "--log-level", "debug"], env),
            _start(["run", str(job2), "--log-level", "debug"], wrong),
        ]
        outputs = [run.communicate(timeout=120) for run in runs]
        assert [run.returncode for run in runs] == [0, 3]
        # --help is argparse's text whatever the process: read in this one, with the secret in its environment.
        monkeypatch.setenv("TWILIO_ACCOUNT_SID", SANDBOX_USERNAME)
        monkeypatch.setenv("TWILIO_AUTH_TOKEN", SECRET)
        for command in ("run", "validate", "status", "report", "sandbox", None):
            with pytest.raises(SystemExit):
                main([command, "--help"] if command else ["--help"])
            help_out, help_err = capsys.readouterr()
            outputs.append((help_out.encode(), help_err.encode()))
        for stdout, stderr in outputs:
            assert SECRET.encode() not in stdout + stderr
        for path in tmp_path.iterdir():
            if path.is_file():
                assert SECRET.encode() not in path.read_bytes(), path.name
        creds = Credentials("AC1", SECRET)
        assert SECRET not in repr(creds) and SECRET not in str(creds)

    @pytest.mark.parametrize(
        "typed",
        [
            ["--outptu", f"postgresql://crm:{SECRET}@db.example.com/crm"],
            ["--output", "results.csv", f"https://AC123:{SECRET}@studio.example.com"],
            ["--base-url", "https://studio.example.com", f"host=db password={SECRET}"],
            ["--limit", "10", "Zx8Kq2Lm9Pw4Rt7Yb3Nc6Vd1Hf5Gj0Sa"],
            [f"--password={SECRET}"],
            [f"PGPASSWORD={SECRET}"],
            ["--auth-token", SECRET],
            ["--log-format", f"password={SECRET}"],
            [f"postgresql://crm:{SECRET}@x@db.example.com/crm"],
            ["ZxKqLmPwRtYbNcVdHfGjSaQeUiOpAsDf"],
        ],
    )
    def test_a_secret_typed_into_a_wrong_place_is_not_echoed_by_the_usage_error(
        self, job: Path, typed: list[str], capsys: pytest.CaptureFixture[str]
    ) -> None:
        """A password or token in a mistyped flag, a stray argument or a bad value: exit 2, the error names no secret."""
        with pytest.raises(SystemExit) as stopped:
            main(["run", str(job), *typed])
        err = capsys.readouterr().err
        assert stopped.value.code == 2
        assert err.startswith("batch-engage: ") and err.count("\n") == 1
        assert SECRET not in err and "8b1f0c9e" not in err
        assert "Zx8Kq2Lm9Pw4Rt7Yb3Nc6Vd1Hf5Gj0Sa" not in err and "ZxKqLmPwRtYbNcVdHfGjSaQeUiOpAsDf" not in err

    def test_a_token_shaped_argument_is_hidden_but_a_flow_sid_is_shown(
        self, job: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """32 hex digits alone (an Auth Token's shape) become ***; a SID's own 32 hex digits stay, so it can be named."""
        token = "0123456789abcdef0123456789ABCDEF"
        sid = "FW0123456789abcdef0123456789abcdef"
        with pytest.raises(SystemExit):
            main(["run", str(job), token, sid])
        err = capsys.readouterr().err
        assert token not in err and "***" in err
        assert sid in err

    def test_plain_http_is_refused_except_to_loopback(
        self, job_for: Callable[..., Path], capsys: pytest.CaptureFixture[str]
    ) -> None:
        """http:// to a non-loopback host is refused before anything is sent, so credentials never travel in clear."""
        job = job_for("http://studio.example.com")
        code = main(["run", str(job)])
        err = capsys.readouterr().err
        assert code == 2
        assert "refusing plain http:// to studio.example.com" in err

    def test_credentials_come_from_twilios_variable_names(self) -> None:
        """API key + secret is preferred over Account SID + token; a half-set pair names what is missing."""
        both = {
            "TWILIO_API_KEY": "SK" + "1" * 32,
            "TWILIO_API_SECRET": "k",
            "TWILIO_ACCOUNT_SID": "AC" + "1" * 32,
            "TWILIO_AUTH_TOKEN": "t",
            "TWILIO_REGION": "ie1",
            "TWILIO_EDGE": "dublin",
        }
        creds = credentials_from_env(both)
        assert (creds.username, creds.region, creds.edge) == ("SK" + "1" * 32, "ie1", "dublin")
        assert (
            credentials_from_env({"TWILIO_ACCOUNT_SID": "AC" + "1" * 32, "TWILIO_AUTH_TOKEN": "t"}).username
            == "AC" + "1" * 32
        )
        with pytest.raises(CredentialsError, match="TWILIO_API_SECRET is not set"):
            credentials_from_env({"TWILIO_API_KEY": "SK1"})


class TestRegions:
    def test_region_and_edge_build_the_studio_host_like_twilios_sdks(self) -> None:
        """studio.{edge}.{region}.twilio.com; an edge alone implies us1; base_url wins over both."""
        from batch_engage.job import FlowSpec
        from batch_engage.twilio import studio_base_url

        flow = FlowSpec(sid="FW" + "0" * 32)
        assert studio_base_url(flow) == "https://studio.twilio.com"
        assert studio_base_url(flow, region="ie1", edge="dublin") == "https://studio.dublin.ie1.twilio.com"
        assert studio_base_url(flow, edge="sydney") == "https://studio.sydney.us1.twilio.com"
        assert studio_base_url(flow, region="au1") == "https://studio.sydney.au1.twilio.com"
        own = FlowSpec(sid="FW" + "0" * 32, base_url="http://127.0.0.1:8080/")
        assert studio_base_url(own, region="ie1") == "http://127.0.0.1:8080"


class TestInputs:
    def test_csv_from_stdin(
        self, sandbox: Sandbox, write_job: Callable[..., Path], sandbox_env: dict[str, str]
    ) -> None:
        """--input - reads the CSV from standard input, for pipelines that pipe rows in."""
        job = write_job(input_path="unused.csv", base_url=sandbox.url)
        data = make_contacts(7).write_csv().encode()
        done = _cli(["run", str(job), "--input", "-"], cli_env(sandbox_env), stdin=data)
        assert done.returncode == 0, done.stderr.decode()[-1500:]
        assert len(sandbox.ledger()) == 7

    def test_python_api_takes_a_dataframe_and_returns_one(
        self, sandbox: Sandbox, make_spec: Callable[..., object], sandbox_creds: Credentials
    ) -> None:
        """batch_engage.run(spec, frame=LazyFrame) returns the results as a polars DataFrame and the exit code."""
        import batch_engage

        result = batch_engage.run(make_spec(sandbox.url), frame=make_contacts(4).lazy(), credentials=sandbox_creds)
        assert isinstance(result.results, pl.DataFrame)
        assert result.results["status"].to_list() == ["sent"] * 4
        assert (result.exit_code, result.counts["sent"]) == (0, 4)


def test_progress_bar_shows_in_a_real_terminal(job: Path, sandbox_env: dict[str, str]) -> None:
    """In a pseudo-terminal, a live bar shows rows done of total and the sent count; the summary follows."""
    pexpect = pytest.importorskip("pexpect")
    child = pexpect.spawn(
        sys.executable,
        ["-m", "batch_engage", "run", str(job)],
        env=cli_env(sandbox_env),
        cwd=str(REPO),
        dimensions=(24, 160),
        timeout=60,
    )
    child.expect(r"30/30")
    child.expect(r"sent 30")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0


def _structlog_in_a_fresh_process(argv0: str) -> list[str]:
    """Import the package in a new interpreter whose ``sys.argv[0]`` is ``argv0``: structlog's exception
    renderer, whether rich is loaded, and whether rich still loads afterwards."""
    code = (
        "import sys; sys.argv = [sys.argv[1]]\n"
        "import batch_engage, structlog.dev as dev\n"
        "print(dev.default_exception_formatter.__class__.__name__, 'rich' in sys.modules)\n"
        "import rich.progress\n"
        "print('rich.progress loads')\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, argv0], capture_output=True, text=True, cwd=REPO, timeout=60, check=True
    )
    return done.stdout.splitlines()


def test_the_command_loads_no_rich_for_structlog_yet_draws_its_bar_with_rich() -> None:
    """The command never shows a traceback, so structlog renders exceptions plainly there; rich loads later."""
    assert _structlog_in_a_fresh_process("/usr/bin/batch-engage") == ["function False", "rich.progress loads"]


def test_a_program_importing_the_library_keeps_structlogs_rich_exception_renderer() -> None:
    """Only the command changes how structlog imports: a program's structlog still renders with rich."""
    assert _structlog_in_a_fresh_process("my_pipeline.py") == ["RichTracebackFormatter True", "rich.progress loads"]
