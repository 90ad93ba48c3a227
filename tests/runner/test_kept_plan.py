"""A resumed run takes the plan its checkpoint keeps when nothing it was made from changed, and plans its input
again when anything did: the sandbox's ledger shows what was sent, never the tool's own opinion."""

from __future__ import annotations

import dataclasses
import importlib
import re
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import polars as pl
import pytest

import batch_engage
from batch_engage.checkpoint.store import plan_path
from batch_engage.job import load_spec
from batch_engage.plan import again, prepare
from batch_engage.plan.again import PLANNING_FLOW, PLANNING_SEND, keyed_input
from batch_engage.sandbox import Sandbox

from conftest import cli, make_contacts

PACKAGE = Path(batch_engage.__file__).parent
# The module, not the function the package's face names the same.
prepare_module = importlib.import_module("batch_engage.plan.prepare")


def _sent(sandbox: Sandbox) -> Counter[str]:
    return Counter(entry.to for entry in sandbox.ledger())


def _first_ten(job: Path, capsys: pytest.CaptureFixture[str]) -> Path:
    """Run ``job`` for ten contacts; the plan file it keeps beside its checkpoint."""
    code, _, _ = cli(["run", str(job), "--limit", "10", "--quiet"], capsys)
    assert code == 0
    spec = load_spec(job)
    kept = plan_path(spec.output.checkpoint)
    assert kept.exists()
    return kept


class TestTakenAgain:
    def test_an_unchanged_job_resumes_on_its_kept_plan_and_sends_each_contact_once(
        self, sandbox: Sandbox, job: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """The input is not parsed again nor the plan file written again (it is the plan); the rest go, each once."""
        kept = _first_ten(job, capsys)
        written = kept.stat().st_mtime_ns

        def not_again(*args: object, **kwargs: object) -> None:
            raise AssertionError("the input was parsed again")

        monkeypatch.setattr(prepare_module, "read_table", not_again)
        code, out, _ = cli(["run", str(job)], capsys)
        assert code == 0 and "sent 30" in out
        assert len(sandbox.ledger()) == 30 and max(_sent(sandbox).values()) == 1
        assert kept.stat().st_mtime_ns == written

    def test_flags_that_change_no_row_keep_the_plan(self, job: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        """The pace and the preflight are not planning: the key stays; a mapping's default region, or another
        release's code, changes it."""
        spec = load_spec(job)
        faster = spec.replace(send=dataclasses.replace(spec.send, rate=7.0, preflight=False))
        first, paced = keyed_input(spec), keyed_input(faster)
        assert first is not None and paced is not None and first.key == paced.key
        regional = spec.replace(mapping=dataclasses.replace(spec.mapping, default_region="GB"))
        other = keyed_input(regional)
        assert other is not None and other.key != first.key
        monkeypatch.setattr(again, "_source_digest", lambda: "another release")
        upgraded = keyed_input(spec)
        assert upgraded is not None and upgraded.key != first.key


class TestPlannedAgain:
    def test_an_input_changed_in_place_is_planned_again(
        self, sandbox: Sandbox, job: Path, contacts_csv: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """Same file, new rows: a contact taken off the list is not sent, a changed one goes with its new
        Parameters, a new one goes; the ten sent before are not sent again."""
        _first_ten(job, capsys)
        rows = make_contacts(30)
        gone, changed = rows["phone"][15], rows["phone"][20]
        rows = rows.filter(pl.col("phone") != gone).with_columns(
            name=pl.when(pl.col("phone") == changed).then(pl.lit("Renamed")).otherwise(pl.col("name"))
        )
        pl.concat([rows, make_contacts(1, start=900)]).write_csv(contacts_csv)
        code, _, _ = cli(["run", str(job), "--quiet"], capsys)
        assert code == 0
        sent = _sent(sandbox)
        assert max(sent.values()) == 1 and len(sent) == 30
        assert gone not in sent and make_contacts(1, start=900)["phone"][0] in sent
        assert {e.to: e.parameters for e in sandbox.ledger()}[changed]["name"] == "Renamed"

    def test_a_suppression_list_added_later_is_honoured(
        self, sandbox: Sandbox, job: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """A job that reads a suppression list is always planned again: a contact listed since is not sent."""
        _first_ten(job, capsys)
        listed = make_contacts(30)["phone"][25]
        (tmp_path / "stop.csv").write_text(f"phone\n{listed}\n")
        job.write_text(job.read_text() + f'\n[suppress]\nfiles = ["{tmp_path / "stop.csv"}"]\n')
        code, _, _ = cli(["run", str(job), "--quiet"], capsys)
        assert code == 0
        sent = _sent(sandbox)
        assert listed not in sent and len(sent) == 29 and max(sent.values()) == 1

    def test_a_damaged_plan_file_is_planned_again(
        self, sandbox: Sandbox, job: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """The kept plan cut short: the input is planned again, the rest go once, and the file is whole again."""
        kept = _first_ten(job, capsys)
        kept.write_bytes(kept.read_bytes()[: kept.stat().st_size // 2])
        code, out, _ = cli(["run", str(job)], capsys)
        assert code == 0 and "sent 30" in out
        assert len(sandbox.ledger()) == 30 and max(_sent(sandbox).values()) == 1
        assert pl.read_parquet(kept).height == 30

    def test_a_plan_kept_under_another_key_is_not_taken(self, job: Path) -> None:
        """``prepare`` asks for the kept plan by this plan's key: a plan kept under any other is never handed back."""
        spec = load_spec(job)
        asked: list[str] = []

        def stored(key: str) -> pl.DataFrame | None:
            asked.append(key)
            return None

        prepared = prepare(spec, stored=stored)
        keyed = keyed_input(spec)
        assert keyed is not None and asked == [keyed.key] == [prepared.key] and not prepared.kept


def test_every_setting_planning_reads_is_in_the_key() -> None:
    """The ``[send]`` and ``[flow]`` settings the planning code reads are all in the plan's key."""
    code = "\n".join(p.read_text() for folder in ("plan", "inputs") for p in (PACKAGE / folder).glob("*.py"))
    send = set(re.findall(r"spec\.send\.(\w+)", code)) - {"send_window"}
    flow = set(re.findall(r"spec\.flow\.(\w+)", code))
    assert send <= set(PLANNING_SEND), send - set(PLANNING_SEND)
    assert flow <= set(PLANNING_FLOW), flow - set(PLANNING_FLOW)


def test_jobs_whose_plan_reads_a_changing_store_have_no_key(
    write_job: Callable[..., Path], contacts_csv: Path, tmp_path: Path
) -> None:
    """Suppression lists, a history, or the opt-outs learnt beside the checkpoint: planned every time."""
    plain = load_spec(write_job(input_path=contacts_csv))
    assert keyed_input(plain) is not None
    Path(plain.output.checkpoint + ".opt-outs").write_bytes(b"")
    assert keyed_input(plain) is None
    suppressed = load_spec(write_job(input_path=contacts_csv, extra=f'[suppress]\nfiles = ["{contacts_csv}"]\n'))
    assert keyed_input(suppressed) is None
    remembered = load_spec(write_job(input_path=contacts_csv, extra=f'[history]\npath = "{tmp_path / "h.db"}"\n'))
    assert keyed_input(remembered) is None


def test_without_its_own_source_to_read_no_plan_has_a_key(
    job: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Installed with compiled files only (or zipped), the code cannot be told from another release's: planned
    every time."""
    spec = load_spec(job)
    monkeypatch.setattr(again, "_PACKAGE", tmp_path / "no-source")
    again._source_digest.cache_clear()
    try:
        assert keyed_input(spec) is None
    finally:
        monkeypatch.undo()
        again._source_digest.cache_clear()


def test_a_windowed_jobs_key_follows_the_time_zone_database(job: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Zone names are checked against this machine's database: another one keys another plan, and a machine
    whose database cannot be told plans every time; a job without a window does not care."""
    spec = load_spec(job)
    windowed = spec.replace(send=dataclasses.replace(spec.send, window="09:00-20:00"))
    first, plain = keyed_input(windowed), keyed_input(spec)
    assert first is not None and plain is not None
    monkeypatch.setattr(again, "_zones_version", lambda: "tzdata:2099z")
    updated = keyed_input(windowed)
    assert updated is not None and updated.key != first.key
    assert keyed_input(spec) == plain
    monkeypatch.setattr(again, "_zones_version", lambda: "")
    assert keyed_input(windowed) is None
