"""CSV outputs are safe to open in a spreadsheet: text a spreadsheet would run as a formula opens as text."""

from __future__ import annotations

import csv
import sqlite3
from collections.abc import Callable
from pathlib import Path

import polars as pl
import pytest

import batch_engage
from batch_engage.credentials import Credentials
from batch_engage.plan import fingerprint
from batch_engage.results import guard_formulas, write_results
from batch_engage.sandbox import Sandbox

from conftest import FLOW_SID

HOSTILE = ['=HYPERLINK("http://evil.example";"click")', "+cmd|' /C calc'!A0", "@SUM(1)", "-2+3", "\tx", "\rx"]
# A carriage return inside a CSV cell is read back as a line feed by any CSV reader: the input keeps the rest.
NAMES = HOSTILE[:5]
FIELDS = """
[collect.fields]
answer = "widgets.ask.inbound.Body"
name = "flow.data.name"
"""


def _cells(path: Path) -> list[dict[str, str]]:
    """The CSV as a spreadsheet reads it: every cell's text exactly as written."""
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


class TestGuardRule:
    @pytest.mark.parametrize("text", HOSTILE)
    def test_a_text_cell_starting_like_a_formula_gets_a_leading_quote(self, text: str) -> None:
        """`=`, `+`, `-`, `@`, tab and carriage return at the start: the cell becomes `'` + the text (OWASP)."""
        table = guard_formulas(pl.DataFrame({"cell": [text]}))
        assert table["cell"].to_list() == ["'" + text]

    @pytest.mark.parametrize("text", [" =1+1", "  @SUM(1)", "\n=1", "\x00=1", "\u00a0=1"])
    def test_a_formula_behind_spaces_a_line_feed_or_nul_is_guarded_too(self, text: str) -> None:
        """A reply of `" =HYPERLINK(…)"`: some spreadsheets trim the spaces on import and run it; it is guarded (a NUL
        itself then shown as U+FFFD)."""
        assert guard_formulas(pl.DataFrame({"cell": [text]}))["cell"].to_list() == [
            "'" + text.replace("\x00", "\ufffd")
        ]

    @pytest.mark.parametrize("text", ["+14155550100", "whatsapp:+14155550100", "Ada", "", "a=b", "name@x.com", " a"])
    def test_numbers_as_sent_and_ordinary_text_are_left_alone(self, text: str) -> None:
        """Only a cell of exactly `+` and digits (maybe after `whatsapp:`) is exempt; plain text was never at risk."""
        assert guard_formulas(pl.DataFrame({"cell": [text]}))["cell"].to_list() == [text]

    @pytest.mark.parametrize("text", ["+1 415 555 0100", "+1415555010O", "+", "-14155550100"])
    def test_anything_else_that_starts_with_plus_or_minus_is_guarded(self, text: str) -> None:
        """A `+` cell that is not only digits, or a `-` number, is guarded too: every cell in any column."""
        assert guard_formulas(pl.DataFrame({"cell": [text]}))["cell"].to_list() == ["'" + text]

    def test_a_control_character_in_a_cell_is_never_written_raw(self) -> None:
        """An input cell's ESC [2J (or a reply's BEL) would clear the terminal of whoever cats the CSV: U+FFFD;
        tabs and line breaks, which a quoted CSV cell holds, stay."""
        table = guard_formulas(pl.DataFrame({"cell": ["\x1b[2J+1415", "ring\x07", "a\tb\nc"]}))
        assert table["cell"].to_list() == ["\ufffd[2J+1415", "ring\ufffd", "a\tb\nc"]

    def test_numbers_and_nulls_are_not_text_and_stay_as_they_are(self) -> None:
        """A negative count is a number, not a formula; an empty cell stays empty."""
        table = pl.DataFrame({"n": [-1, 2], "t": [None, "=1"]})
        assert guard_formulas(table).rows() == [(-1, None), (2, "'=1")]


@pytest.fixture
def hostile_job(tmp_path: Path, write_job: Callable[..., Path]) -> Callable[..., Path]:
    """A job over contacts whose names are formulas, plus one `To` that is a formula dressed as a SIP address."""
    contacts = tmp_path / "contacts.csv"
    rows = [{"phone": f"+1415555{100 + i:04d}", "name": name} for i, name in enumerate(NAMES)]
    rows.append({"phone": "=1+1@evil.example", "name": "Eve"})
    pl.DataFrame(rows).write_csv(contacts)

    def make(base_url: str) -> Path:
        return write_job(
            input_path=contacts,
            base_url=base_url,
            send="rate = 500\nconcurrency = 4\nreconcile_delay = 0.0",
            mapping='to = "phone"\nfrom = "+15005550006"\n\n[mapping.parameters]\nname = "name"',
            extra=FIELDS,
        )

    return make


class TestOutputs:
    def test_the_results_csv_guards_an_invalid_to_it_echoes(
        self, sandbox: Sandbox, hostile_job: Callable[..., Path], sandbox_creds: Credentials
    ) -> None:
        """`=1+1@evil.example` is refused, never sent, and its results line opens as text."""
        job = hostile_job(sandbox.url)
        result = batch_engage.run(job, credentials=sandbox_creds)
        assert result.counts["sent"] == len(NAMES) and result.counts["invalid"] == 1
        assert all(entry.to != "=1+1@evil.example" for entry in sandbox.ledger())
        line = _cells(job.with_name("job.results.csv"))[-1]
        assert line["to"] == "'=1+1@evil.example"
        assert line["status"] == "invalid" and "SIP address" in line["error_message"]
        assert _cells(job.with_name("job.results.csv"))[0]["to"] == "+14155550100"

    def test_replies_and_names_that_begin_like_formulas_open_as_text_in_the_outcomes_csv(
        self, sandbox_factory: Callable[..., Sandbox], hostile_job: Callable[..., Path], sandbox_creds: Credentials
    ) -> None:
        """An inbound reply `=HYPERLINK(…)` and an input name `@SUM(1)` start with `'` in the outcomes CSV."""
        sb = sandbox_factory(rate_limit=None, replies=(HOSTILE[0],))
        job = hostile_job(sb.url)
        batch_engage.run(job, credentials=sandbox_creds)
        sb.end_all_runs()
        batch_engage.collect(job, credentials=sandbox_creds)
        lines = _cells(job.with_name("job.outcomes.csv"))
        # A contact may not answer (the simulator's "no reply"); every answer that came is guarded.
        assert {line["answer"] for line in lines} - {""} == {"'" + HOSTILE[0]}
        assert [line["name"] for line in lines] == ["'" + name for name in NAMES]
        assert all(line["to"].startswith("+1") for line in lines)

    def test_csv_guard_false_writes_the_raw_text(
        self, sandbox_factory: Callable[..., Sandbox], hostile_job: Callable[..., Path], sandbox_creds: Credentials
    ) -> None:
        """`[output] csv_guard = false`: both CSVs hold exactly what was received, for code that reads them."""
        sb = sandbox_factory(rate_limit=None, replies=(HOSTILE[0],))
        job = hostile_job(sb.url)
        job.write_text(job.read_text().replace("[output]\n", "[output]\ncsv_guard = false\n", 1))
        batch_engage.run(job, credentials=sandbox_creds)
        sb.end_all_runs()
        batch_engage.collect(job, credentials=sandbox_creds)
        assert _cells(job.with_name("job.results.csv"))[-1]["to"] == "=1+1@evil.example"
        lines = _cells(job.with_name("job.outcomes.csv"))
        assert {line["answer"] for line in lines} - {""} == {HOSTILE[0]}
        assert [line["name"] for line in lines] == NAMES

    def test_parquet_outputs_keep_the_raw_text(
        self, sandbox_factory: Callable[..., Sandbox], hostile_job: Callable[..., Path], sandbox_creds: Credentials
    ) -> None:
        """A Parquet results or outcomes table is read by code, not a spreadsheet: no quote is added."""
        sb = sandbox_factory(rate_limit=None, replies=(HOSTILE[0],))
        job = hostile_job(sb.url)
        results = job.with_name("r.parquet")
        batch_engage.run(job, credentials=sandbox_creds, overrides={"output.results": str(results)})
        sb.end_all_runs()
        outcomes = job.with_name("o.parquet")
        batch_engage.collect(job, credentials=sandbox_creds, options=batch_engage.CollectOptions(output=str(outcomes)))
        assert pl.read_parquet(results)["to"].to_list()[-1] == "=1+1@evil.example"
        assert pl.read_parquet(outcomes)["name"].to_list() == NAMES


def test_csv_guard_leaves_the_fingerprint_of_a_job_as_it_was(tmp_path: Path) -> None:
    """Turning the guard off or on never binds the checkpoint to a new job: the fingerprint has no output key."""
    raw = {"flow": {"sid": FLOW_SID}, "mapping": {"to": "phone", "from": "+15005550006"}}
    plain = batch_engage.load_spec(raw=raw)
    off = batch_engage.load_spec(raw=raw | {"output": {"csv_guard": False}})
    assert plain.output.csv_guard is True and off.output.csv_guard is False
    assert fingerprint(plain) == fingerprint(off)
    assert "csv_guard" not in repr(fingerprint(plain))


@pytest.mark.parametrize(
    "to", ["=1+1@evil.example", "@evil.example", "a b@evil.example", "ana@localhost", "sip:=cmd@pbx.example.com"]
)
def test_a_to_that_is_not_a_phone_number_is_a_sip_address_only_when_it_is_one(to: str) -> None:
    """`user@host` with a user of letters, digits, `.`, `_`, `-`, `+` and a host name; else invalid, saying so."""
    frame = pl.DataFrame({"phone": [to, "name@company.com", "sip:alice@pbx.example.com"]})
    raw = {"flow": {"sid": FLOW_SID}, "mapping": {"to": "phone", "from": "+15005550006"}}
    checked = batch_engage.validate(batch_engage.load_spec(raw=raw), frame=frame)
    assert checked.invalid == 1
    (reason,) = checked.invalid_reasons
    assert reason.startswith("To: SIP address: must be sip:user@host or user@host")
    assert checked.valid == 2


def test_history_import_reads_a_guarded_results_csv_back_as_written(tmp_path: Path) -> None:
    """`history import` of a results CSV takes the guard's `'` off again: the history holds the address as sent."""
    results = tmp_path / "r.csv"
    table = pl.DataFrame(
        {
            "to": ["-ana@pbx.example.com", "+14155550100"],
            "status": ["sent", "sent"],
            "sid": ["FN" + "1" * 32, "FN" + "2" * 32],
            "completed_at": ["2026-03-01T10:00:00Z", "2026-03-01T10:00:01Z"],
        }
    )
    write_results(table, results)
    assert _cells(results)[0]["to"] == "'-ana@pbx.example.com"
    history = tmp_path / "h.sqlite"
    assert batch_engage.import_history(results, history=history, flow_sid=FLOW_SID) == 2
    with sqlite3.connect(history) as conn:
        assert sorted(r[0] for r in conn.execute("SELECT to_addr FROM contacts")) == [
            "+14155550100",
            "-ana@pbx.example.com",
        ]
