"""No output overwrites what the job reads or keeps, every output is proven writable before the first request,
and no file is written through a link someone planted.
"""

from __future__ import annotations

import contextlib
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path

import polars as pl
import pytest

from batch_engage.sandbox import Sandbox

from conftest import cli


def _requests(sandbox: Sandbox) -> int:
    s = sandbox.stats()
    return s.create_requests + s.flow_requests + s.list_requests + s.run_requests + s.revision_requests


@pytest.fixture
def job_beside_its_state(job: Path) -> Path:
    """A job against the sandbox with a checkpoint file (and WAL) already there, as after an earlier run."""
    path = job
    (path.parent / "job.checkpoint").write_bytes(b"checkpoint bytes")
    (path.parent / "job.checkpoint-wal").write_bytes(b"wal bytes")
    (path.parent / "job.checkpoint.sandbox").write_bytes(b"rehearsal bytes")
    (path.parent / "elsewhere.json").write_bytes(b"another output")
    return path


# (command line after the job, the file named, by its name in tmp_path)
_OVERWRITES = [
    (["run", "{job}", "--summary-json", "{d}/contacts.csv"], "contacts.csv"),
    (["run", "{job}", "--summary-json", "{d}/job.toml"], "job.toml"),
    (["run", "{job}", "--report-html", "{d}/job.toml"], "job.toml"),
    (["run", "{job}", "--report-html", "{d}/job.checkpoint"], "job.checkpoint"),
    (["run", "{job}", "--summary-json", "{d}/job.checkpoint-wal"], "job.checkpoint-wal"),
    (["run", "{job}", "--summary-json", "{d}/job.checkpoint.lock"], None),
    (["run", "{job}", "--summary-json", "{d}/elsewhere.json", "--report-html", "{d}/elsewhere.json"], "elsewhere.json"),
    (["run", "{job}", "--summary-json", "{d}/job.results.csv"], None),
    (["run", "{job}", "--output", "{d}/contacts.csv"], "contacts.csv"),
    (["run", "{job}", "--sandbox", "--report-html", "{d}/job.checkpoint"], "job.checkpoint"),
    (["validate", "{job}", "--output", "{d}/contacts.csv"], "contacts.csv"),
    (["validate", "{job}", "--output", "{d}/job.toml"], "job.toml"),
    (["validate", "{job}", "--output", "{d}/job.checkpoint"], "job.checkpoint"),
    (["report", "{job}", "--output", "{d}/contacts.csv"], "contacts.csv"),
    (["report", "{job}", "--output", "{d}/job.checkpoint.sandbox"], "job.checkpoint.sandbox"),
    (["report", "{job}", "--html", "{d}/job.toml"], "job.toml"),
    (["report", "{job}", "--output", "{d}/elsewhere.json", "--html", "{d}/elsewhere.json"], "elsewhere.json"),
    (["collect", "{job}", "--output", "{d}/job.checkpoint"], "job.checkpoint"),
    (["collect", "{job}", "--output", "{d}/contacts.csv"], "contacts.csv"),
]


@pytest.mark.parametrize(("argv", "named"), _OVERWRITES, ids=lambda v: " ".join(v) if isinstance(v, list) else v)
def test_an_output_flag_pointed_at_the_input_job_checkpoint_or_another_output_exits_2_and_changes_nothing(
    job_beside_its_state: Path, sandbox: Sandbox, capsys: pytest.CaptureFixture[str], argv: list[str], named: str | None
) -> None:
    """Each output flag aimed at a file the job reads or keeps (or at another output): exit 2, one line, unchanged."""
    job = job_beside_its_state
    folder = job.parent
    before = {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()}
    code, _, err = cli([a.format(job=job, d=folder) for a in argv], capsys)
    assert code == 2, err
    assert len(err.strip().splitlines()) == 1, err
    assert "would overwrite" in err
    after = {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()}
    assert after == before
    if named:
        assert named in err
    assert _requests(sandbox) == 0


@contextlib.contextmanager
def _immutable(folder: Path) -> Iterator[None]:
    """``folder`` made unwritable even for root (chattr +i); skips where the file system cannot."""
    if subprocess.run(["chattr", "+i", str(folder)], capture_output=True, check=False).returncode != 0:
        pytest.skip("chattr +i is not supported here")
    try:
        yield
    finally:
        subprocess.run(["chattr", "-i", str(folder)], check=False)


def _refused_before_sending(job: Path, results: str, sandbox: Sandbox, capsys: pytest.CaptureFixture[str]) -> str:
    """``run JOB --output RESULTS`` exits 2 with one line on stderr and sends nothing; that line."""
    code, _, err = cli(["run", str(job), "--output", results], capsys)
    assert code == 2
    assert len(err.strip().splitlines()) == 1
    assert _requests(sandbox) == 0
    return err


class TestWritableBeforeTheFirstRequest:
    """An output that cannot be written is found before anything is sent: exit 2, one line."""

    def test_a_results_path_through_a_file_exits_2_before_any_request(
        self, job: Path, sandbox: Sandbox, contacts_csv: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """``results = "contacts.csv/x.results.csv"``: refused before the preflight, naming the file in the way."""
        err = _refused_before_sending(job, f"{contacts_csv}/x.results.csv", sandbox, capsys)
        assert "is a file, not a folder" in err

    def test_a_read_only_output_folder_exits_2_before_any_request(
        self, job: Path, sandbox: Sandbox, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """Results into a folder nobody may write: exit 2 and one line, nothing sent."""
        locked = tmp_path / "locked"
        locked.mkdir()
        with _immutable(locked):
            err = _refused_before_sending(job, str(locked / "r.csv"), sandbox, capsys)
        assert "cannot write there" in err

    def test_a_dangling_link_at_the_results_path_exits_2_before_any_request(
        self, job: Path, sandbox: Sandbox, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """A link at the results path pointing nowhere: refused, the link left alone, nothing sent."""
        link = tmp_path / "r.csv"
        link.symlink_to(tmp_path / "nowhere" / "r.csv")
        err = _refused_before_sending(job, str(link), sandbox, capsys)
        assert "symbolic link" in err
        assert link.is_symlink()

    def test_a_summary_in_a_missing_folder_creates_it_and_says_so(
        self, job: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """One rule for output folders: missing ones are created, for every output, and the path is printed."""
        summary = tmp_path / "new" / "deeper" / "s.json"
        report = tmp_path / "pages" / "r.html"
        code, _, err = cli(
            ["run", str(job), "--quiet", "--summary-json", str(summary), "--report-html", str(report)], capsys
        )
        assert code == 0
        assert summary.is_file() and report.is_file()
        assert f"created the folder {tmp_path / 'new'}" in err
        assert f"created the folder {tmp_path / 'pages'}" in err

    def test_the_summary_json_is_readable_by_its_owner_only(
        self, job: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """``--summary-json`` is written 0600, like every file batch-engage writes."""
        summary = tmp_path / "s.json"
        assert cli(["run", str(job), "--quiet", "--summary-json", str(summary)], capsys)[0] == 0
        assert stat.S_IMODE(summary.stat().st_mode) == 0o600


class TestAFullDiskAfterSending:
    """Results that cannot be written after sending: nothing sent is lost, the way back is said, exit 74."""

    def test_a_results_write_failing_after_sending_exits_74_and_report_writes_the_table_again(
        self, job: Path, sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """ENOSPC while writing results: exit 74, one line naming the journal and `report`; then report recovers."""
        import batch_engage.runner.job as runner_job

        def full(*_: object, **__: object) -> None:
            raise OSError(28, "No space left on device")

        monkeypatch.setattr(runner_job, "write_output", full)
        code, _, err = cli(["run", str(job), "--quiet"], capsys)
        assert code == 74
        last = err.strip().splitlines()[-1]
        assert last.startswith("batch-engage: ")
        assert "No space left on device" in last and "job.checkpoint" in last and "report" in last
        assert len(sandbox.ledger()) == 30
        monkeypatch.undo()
        assert cli(["report", str(job)], capsys)[0] == 0
        table = pl.read_csv(job.parent / "job.results.csv")
        assert table["status"].to_list() == ["sent"] * 30


def _plant_link(at: Path) -> Path:
    """A precious file (mode 0644, "keep me") beside ``at``, and a symbolic link to it planted at ``at``."""
    precious = at.with_name("precious.txt")
    precious.write_text("keep me")
    precious.chmod(0o644)
    at.symlink_to(precious)
    return precious


def _assert_untouched(precious: Path, link: Path) -> None:
    """The precious file keeps its bytes and mode, and the planted link is still a link."""
    assert precious.read_text() == "keep me"
    assert stat.S_IMODE(precious.stat().st_mode) == 0o644
    assert link.is_symlink()


class TestPlantedLinks:
    """A link someone placed at a temporary or lock path is never followed: its target stays as it was."""

    @pytest.mark.parametrize(
        "planted", ["job.results.csv.tmp", "r.html.tmp", "s.json.tmp", "job.checkpoint.plan.parquet.tmp"]
    )
    def test_a_link_at_a_tmp_path_leaves_its_target_unchanged(
        self, job: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], planted: str
    ) -> None:
        """``<output>.tmp`` -> a precious file: the run writes its outputs, the precious file is untouched."""
        precious = _plant_link(tmp_path / planted)
        argv = ["run", str(job), "--quiet", "--summary-json", str(tmp_path / "s.json")]
        assert cli([*argv, "--report-html", str(tmp_path / "r.html")], capsys)[0] == 0
        _assert_untouched(precious, tmp_path / planted)

    @pytest.mark.parametrize(
        "planted", ["job.checkpoint.lock", "job.checkpoint.outcomes.lock", "job.checkpoint-wal", "job.checkpoint-shm"]
    )
    def test_a_link_at_a_lock_path_is_refused_and_its_target_unchanged(
        self, job: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], planted: str
    ) -> None:
        """``<checkpoint>.lock`` -> a file: the run or collect refuses in one line; the file's mode and bytes stay."""
        if planted.endswith("outcomes.lock"):
            assert cli(["run", str(job), "--quiet"], capsys)[0] == 0
        precious = _plant_link(tmp_path / planted)
        command = "collect" if planted.endswith("outcomes.lock") else "run"
        code, _, err = cli([command, str(job), "--quiet"], capsys)
        assert code == 2
        assert len(err.strip().splitlines()) == 1 and "symbolic link" in err
        _assert_untouched(precious, tmp_path / planted)


def test_report_may_write_the_results_table_to_its_own_path_given_as_output(
    job: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``report --output <output.results>`` rewrites the job's own results: that is what report is for."""
    assert cli(["run", str(job), "--quiet"], capsys)[0] == 0
    assert cli(["report", str(job), "--output", str(job.parent / "job.results.csv")], capsys)[0] == 0


def test_a_summary_that_cannot_be_written_after_sending_is_one_line_exit_74(
    job: Path, sandbox: Sandbox, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The disk fills between the check and the end of the run: exit 74 and one line, never a traceback."""
    from batch_engage.commands import written

    def full(*_: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(written, "write_text_atomically", full)
    code, _, err = cli(["run", str(job), "--quiet", "--summary-json", str(tmp_path / "s.json")], capsys)
    assert code == 74
    assert err.strip().splitlines()[-1].startswith("batch-engage: ")
    assert "No space left on device" in err
    assert len(sandbox.ledger()) == 30
