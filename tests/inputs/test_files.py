"""Reading the contacts file: one clear line for every bad file, and the good ones read exactly as written."""

from __future__ import annotations

import io
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import polars as pl
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from batch_engage.cli.main import main
from batch_engage.errors import ConfigError, InputFileError
from batch_engage.inputs import require_columns
from batch_engage.inputs.files import read_table
from batch_engage.job import InputSpec, load_spec
from batch_engage.sandbox import Sandbox

from conftest import FLOW_SID

HEADER = "phone,name,visits\n"
GOOD_ROWS = "+14155550100,Ana,1\n+14155550101,Zoë,2\n+14155550102,José,3\n"


@dataclass(frozen=True)
class BadFile:
    """One broken input: where it is (or ``-`` for stdin), what stdin holds, and the one line a user must see."""

    path: str
    message: str
    stdin: bytes | None = None


def _parquet_bytes() -> bytes:
    buffer = io.BytesIO()
    pl.DataFrame({"phone": ["+14155550100"] * 50, "name": ["Ana"] * 50, "visits": list(range(50))}).write_parquet(
        buffer
    )
    return buffer.getvalue()


def build_bad_files(folder: Path) -> dict[str, BadFile]:
    """The corpus: every file-level problem of issue 5, written into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    files: dict[str, bytes] = {
        "unknown_extension.txt": (HEADER + GOOD_ROWS).encode(),
        "workbook.xlsx": b"PK\x03\x04" + bytes(range(256)),
        # Another format given a CSV's name: the first bytes say which.
        "parquet_named.csv": _parquet_bytes(),
        "workbook_named.csv": b"PK\x03\x04" + bytes(range(256)),
        "old_workbook_named.csv": b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(range(256)),
        "empty.csv": b"",
        "blank.csv": b"\n \r\n\n",
        "header_only.csv": HEADER.encode(),
        "missing_column.csv": ("phone_number,name,visits\n" + GOOD_ROWS).encode(),
        "latin1.csv": (HEADER + "+14155550100,Ana,1\n+14155550101,Zoë,2\n").encode("latin-1"),
        "too_many_fields.csv": (HEADER + "+14155550100,Ana,1\n+14155550101,Zoë,2,extra\n").encode(),
        "too_few_fields.csv": (HEADER + "+14155550100,Ana,1\n+14155550101,Zoë,\n+14155550102,José\n").encode(),
        "too_few_after_a_quoted_line_break.csv": (
            HEADER + '+14155550100,"Ana\nMaria",1\n+14155550101,Zoë,2\n+14155550102\n'
        ).encode(),
        "unclosed_quote.csv": (HEADER + '+14155550100,Ana,1\n+14155550101,"Zoë,2\n+14155550102,José,3\n').encode(),
        "truncated.parquet": _parquet_bytes()[:-100],
        "not_parquet.parquet": (HEADER + GOOD_ROWS).encode(),
        "duplicate_header.csv": ("phone,name,phone\n" + GOOD_ROWS).encode(),
        # Two exports pasted together: the second's header, its columns swapped, is a row of the first.
        "header_again_reordered.csv": (HEADER + GOOD_ROWS + "name,phone,visits\nAna,+14155550103,4\n").encode(),
        "header_again.csv": (HEADER + "+14155550100,Ana,1\n\n" + HEADER + GOOD_ROWS).encode(),
        "header_again_after_sep.csv": (b"sep=;\nphone;name\n+14155550100;Ann\nname;phone\nBob;+14155550101\n"),
        "header_again_spaced.csv": (b"phone, name\n+14155550100, Ann\nname, phone\nBob, +14155550101\n"),
        # Two Excel "CSV UTF-8" exports joined with cat: each begins with a byte-order mark.
        "header_again_after_a_bom.csv": (
            "\ufeffphone,landline,name\r\n+14155550100,+14155550200,Ann\r\n"
            "\ufefflandline,phone,name\r\n+14155550302,+14155550102,Cy\r\n"
        ).encode(),
        # The second export's names in another case and spelling (Title Case, a space for "_").
        "header_again_respelled.csv": (
            b"phone,landline,first_name\n+14155550100,+14155550200,Ann\n"
            b"Landline,Phone,First Name\n+14155550302,+14155550102,Cy\n"
        ),
    }
    for name, data in files.items():
        (folder / name).write_bytes(data)

    def bad(name: str, said: str) -> BadFile:
        """The file ``name`` in ``folder``, and the line a user must see: its path, then ``said``."""
        return BadFile(str(folder / name), f"{folder / name}{said}")

    latin1_hint = 'if the file uses another encoding, set input.encoding (e.g. "latin-1")'
    return {
        "missing file": bad("nowhere.csv", ": no such file"),
        "unknown extension": bad(
            "unknown_extension.txt",
            ": unknown file type '.txt' (use .csv, .parquet, .ndjson or .jsonl, or set input.format)",
        ),
        "a workbook": bad(
            "workbook.xlsx", ": a spreadsheet workbook ('.xlsx') is not read: save the sheet as CSV UTF-8"
        ),
        "Parquet named .csv": bad(
            "parquet_named.csv", ': not text: it is a Parquet file: name it .parquet, or set input.format = "parquet"'
        ),
        "a workbook named .csv": bad(
            "workbook_named.csv",
            ": not text: it is a zip archive, as an Excel or OpenDocument workbook is: save the sheet as CSV UTF-8",
        ),
        "an old workbook named .csv": bad(
            "old_workbook_named.csv", ": not text: it is an Excel 97-2003 workbook: save the sheet as CSV UTF-8"
        ),
        "empty file": bad("empty.csv", ": the file is empty"),
        "only blank lines": bad("blank.csv", ": the file is empty"),
        "header only": bad("header_only.csv", ": has a header but no data rows"),
        "mapped column missing": bad(
            "missing_column.csv",
            ": column 'phone': mapping.to names a column the file does not have "
            "(it has: phone_number, name, visits); did you mean 'phone_number'?",
        ),
        "not UTF-8": bad("latin1.csv", f":3: not valid UTF-8 (byte 0xeb); {latin1_hint}"),
        "too many fields": bad("too_many_fields.csv", ":3: ragged row: 4 fields where the header has 3"),
        "too few fields": bad("too_few_fields.csv", ":4: ragged row: 2 fields where the header has 3"),
        "too few fields after a quoted line break": bad(
            "too_few_after_a_quoted_line_break.csv", ":5: ragged row: 1 field where the header has 3"
        ),
        "unclosed quote": bad(
            "unclosed_quote.csv", ":3: not a valid CSV file: a quote opened on this line is never closed"
        ),
        "truncated Parquet": bad(
            "truncated.parquet", ": not a valid Parquet file: it ends before its footer (cut short?)"
        ),
        "CSV named .parquet": bad(
            "not_parquet.parquet", ": not a Parquet file (it does not end with the Parquet footer)"
        ),
        "duplicate header": bad("duplicate_header.csv", ":1: column 'phone': appears twice in the header"),
        "the header again, reordered": bad(
            "header_again_reordered.csv",
            ":5: the header again, in another order ('name' where the first has 'phone'): two files pasted "
            "together? The rows under it would be read into the wrong columns; remove it, or give each file its own "
            "job",
        ),
        "the header again, after Excel's sep= line": bad(
            "header_again_after_sep.csv",
            ":4: the header again, in another order ('name' where the first has 'phone'): two files pasted "
            "together? The rows under it would be read into the wrong columns; remove it, or give each file its own "
            "job",
        ),
        "the header again, its names after spaces": bad(
            "header_again_spaced.csv",
            ":3: the header again, in another order ('name' where the first has 'phone'): two files pasted "
            "together? The rows under it would be read into the wrong columns; remove it, or give each file its own "
            "job",
        ),
        "the header again, after a byte-order mark": bad(
            "header_again_after_a_bom.csv",
            ":3: the header again, in another order ('landline' where the first has 'phone'): two files pasted "
            "together? The rows under it would be read into the wrong columns; remove it, or give each file its own "
            "job",
        ),
        "the header again, respelled": bad(
            "header_again_respelled.csv",
            ":3: the header again, in another order ('Landline' where the first has 'phone'): two files pasted "
            "together? The rows under it would be read into the wrong columns; remove it, or give each file its own "
            "job",
        ),
        "the header again": bad(
            "header_again.csv",
            ":4: the header again: two files pasted together? The rows under it would be read into the wrong "
            "columns; remove it, or give each file its own job",
        ),
        "empty stdin": BadFile("-", "<stdin>: the file is empty", stdin=b""),
        "ragged stdin": BadFile(
            "-", "<stdin>:3: ragged row: 2 fields where the header has 3", stdin=(HEADER + "+1415,A,1\n+1,B\n").encode()
        ),
    }


@pytest.fixture
def bad_files(tmp_path: Path) -> dict[str, BadFile]:
    """Every kind of broken input file, generated fresh in tmp_path."""
    return build_bad_files(tmp_path / "bad")


def _feed_stdin(monkeypatch: pytest.MonkeyPatch, data: bytes | None) -> None:
    if data is not None:
        monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(data)))


CASES = [
    "missing file",
    "unknown extension",
    "a workbook",
    "Parquet named .csv",
    "a workbook named .csv",
    "an old workbook named .csv",
    "empty file",
    "only blank lines",
    "header only",
    "mapped column missing",
    "not UTF-8",
    "too many fields",
    "too few fields",
    "too few fields after a quoted line break",
    "unclosed quote",
    "truncated Parquet",
    "CSV named .parquet",
    "duplicate header",
    "the header again, reordered",
    "the header again",
    "the header again, after Excel's sep= line",
    "the header again, its names after spaces",
    "the header again, after a byte-order mark",
    "the header again, respelled",
    "empty stdin",
    "ragged stdin",
]


class TestBadFilesGetOneLine:
    @pytest.mark.parametrize("case", CASES)
    def test_validate_prints_one_line_naming_the_file_and_exits_2(
        self,
        case: str,
        bad_files: dict[str, BadFile],
        write_job: Callable[..., Path],
        monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str],
    ) -> None:
        """`validate` on a broken file: exit 2, exactly one line on stderr naming file/line/column, no traceback."""
        bad = bad_files[case]
        _feed_stdin(monkeypatch, bad.stdin)
        job = write_job(input_path=bad.path)
        code = main(["validate", str(job)])
        out, err = capsys.readouterr()
        assert (code, err, out) == (2, f"batch-engage: {bad.message}\n", "")
        assert "Traceback" not in out + err

    @pytest.mark.parametrize("case", CASES)
    def test_run_stops_before_sending_anything(
        self,
        case: str,
        bad_files: dict[str, BadFile],
        sandbox: Sandbox,
        sandbox_env: dict[str, str],
        write_job: Callable[..., Path],
        tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str],
    ) -> None:
        """`run` on a broken file: the same line, exit 2, no request reaches Studio and no checkpoint is made."""
        bad = bad_files[case]
        _feed_stdin(monkeypatch, bad.stdin)
        job = write_job(input_path=bad.path, base_url=sandbox.url)
        code = main(["run", str(job), "--quiet"])
        out, err = capsys.readouterr()
        assert (code, err, out) == (2, f"batch-engage: {bad.message}\n", "")
        assert sandbox.ledger() == []
        assert not (tmp_path / "job.checkpoint").exists()

    def test_every_file_in_the_corpus_is_checked(self, bad_files: dict[str, BadFile]) -> None:
        """No broken file is built and then forgotten by the parametrized tests."""
        assert sorted(bad_files) == sorted(CASES)

    def test_two_unnamed_columns_are_reported_as_such(self, tmp_path: Path) -> None:
        """A header like `phone,,` says columns have no name, not that '' appears twice."""
        with pytest.raises(InputFileError) as caught:
            _read(tmp_path, "phone,,\n+14155550100,1,2\n")
        assert str(caught.value).endswith(":1: more than one column has no name in the header")

    def test_input_flag_dash_reads_csv_from_stdin(
        self,
        write_job: Callable[..., Path],
        contacts_csv: Path,
        monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str],
    ) -> None:
        """`--input -` validates the CSV piped in, whatever the job file's path says."""
        _feed_stdin(monkeypatch, contacts_csv.read_bytes())
        job = write_job(input_path="/nowhere/at/all.parquet")
        assert main(["validate", str(job), "--input", "-"]) == 0
        assert "rows: 30\nvalid: 30\n" in capsys.readouterr().out

    def test_named_encoding_reads_a_latin1_file(self, bad_files: dict[str, BadFile]) -> None:
        """`[input] encoding = "latin-1"` reads the file UTF-8 refused, accents intact."""
        table = read_table(InputSpec(path=bad_files["not UTF-8"].path, encoding="latin-1"), text_columns=["phone"])
        assert table.frame["name"].to_list() == ["Ana", "Zoë"]

    def test_a_wrong_named_encoding_names_the_line(self, tmp_path: Path) -> None:
        """A byte the named encoding lacks is reported with its line, in that encoding's name."""
        path = tmp_path / "c.csv"
        path.write_bytes(HEADER.encode() + b"+14155550100,Ana,1\n+14155550101,Zo\x81,2\n")
        with pytest.raises(InputFileError) as caught:
            read_table(InputSpec(path=str(path), encoding="cp1252"))
        assert str(caught.value) == f"{path}:3: not valid cp1252 (byte 0x81)"

    @pytest.mark.parametrize("end", ["\x1a", "\n\x1a", "\x1a\r\n", "\n\x1a\x1a\n"])
    def test_dos_end_of_file_mark_is_no_part_of_the_last_row(self, tmp_path: Path, end: str) -> None:
        """An old exporter's Ctrl-Z after the last field is not sent in a Parameter, nor a ragged row of its own."""
        frame = _read(tmp_path, HEADER + "+14155550100,Ana,1\n+14155550101,Bob,00501" + end)
        assert frame.rows() == [("+14155550100", "Ana", "1"), ("+14155550101", "Bob", "00501")]

    @pytest.mark.parametrize("alias", ["cp65001", "U8"])
    def test_utf8_by_another_name_reads_as_utf8(self, tmp_path: Path, alias: str) -> None:
        """`encoding = "cp65001"` is UTF-8 by Windows' name: the file is read, not refused as UTF-8 misnamed."""
        path = tmp_path / "c.csv"
        path.write_bytes((HEADER + "+14155550101,Renée,2\n").encode())
        assert read_table(InputSpec(path=str(path), encoding=alias)).frame["name"].to_list() == ["Renée"]

    @pytest.mark.parametrize("named", ["cp1252", "latin-1"])
    def test_a_utf8_file_named_a_one_byte_encoding_is_refused_never_garbled(self, tmp_path: Path, named: str) -> None:
        """Last month's cp1252 setting on this month's UTF-8 export: refused naming the word, never RenÃ©e sent."""
        path = tmp_path / "c.csv"
        path.write_bytes((HEADER + "+14155550100,Ana,1\n+14155550101,Renée,2\n").encode())
        with pytest.raises(InputFileError) as caught:
            read_table(InputSpec(path=str(path), encoding=named))
        assert str(caught.value) == (
            f"{path}:3: is UTF-8, not {named}: read as {named}, 'Renée' would be sent as 'RenÃ©e'; "
            "leave input.encoding out"
        )

    @pytest.mark.parametrize(
        ("written", "named", "advice"),
        [("utf-8", "utf-16", "leave input.encoding out"), ("latin-1", "utf-32-le", 'input.encoding = "latin-1"')],
    )
    def test_a_one_byte_file_named_utf16_or_utf32_is_refused_with_the_encoding_to_use(
        self, tmp_path: Path, written: str, named: str, advice: str
    ) -> None:
        """Named UTF-16 but written in a one-byte encoding: not "no data rows", but what it is and what to set."""
        path = tmp_path / "c.csv"
        path.write_bytes((HEADER + "+14155550100,Zoë,1\n").encode(written))
        with pytest.raises(InputFileError) as caught:
            read_table(InputSpec(path=str(path), encoding=named))
        assert str(caught.value).startswith(f"{path}: is not {named}: it has no zero byte")
        assert advice in str(caught.value)

    @pytest.mark.parametrize("codec", ["rot13", "base64", "zlib", "punycode", "undefined"])
    def test_a_codec_that_is_no_text_encoding_is_refused_by_name(self, codec: str) -> None:
        """`encoding = "rot13"` (base64, zlib, punycode) is a configuration error naming the key, never a traceback."""
        raw = {
            "input": {"path": "c.csv", "encoding": codec},
            "flow": {"sid": FLOW_SID},
            "mapping": {"to": "phone", "from": "+15005550006"},
        }
        with pytest.raises(ConfigError) as caught:
            load_spec(raw=raw)
        assert caught.value.key == "input.encoding" and "not a text encoding" in str(caught.value)

    @pytest.mark.parametrize(("codec", "cell"), [("unicode_escape", b"\\ud800"), ("utf-7", b"+2AA-")])
    def test_an_encoding_that_spells_a_lone_surrogate_is_one_line(
        self, tmp_path: Path, codec: str, cell: bytes
    ) -> None:
        """Read in an escaping encoding, a cell that spells half a character is no text: one line, no traceback."""
        path = tmp_path / "c.csv"
        path.write_bytes(b"phone,name\n+14155550100," + cell + b"\n")
        with pytest.raises(InputFileError) as caught:
            read_table(InputSpec(path=str(path), encoding=codec))
        assert str(caught.value) == f"{path}: read as {codec}, it is not text (surrogates not allowed)"

    @pytest.mark.parametrize("dtype", [pl.Float32, pl.Float16])
    def test_a_short_float_column_of_numbers_is_refused_naming_it(self, tmp_path: Path, dtype: type) -> None:
        """A 32-bit float keeps 7 digits: 4155550123 reads as 4155550200, another person; the file is refused."""
        path = tmp_path / "c.parquet"
        pl.DataFrame({"phone": pl.Series([4155550123.0, 6175550123.0], dtype=dtype)}).write_parquet(path)
        with pytest.raises(InputFileError) as caught:
            read_table(InputSpec(path=str(path)), text_columns=["phone"])
        assert caught.value.column == "phone" and "too few digits" in str(caught.value)
        wide = tmp_path / "w.parquet"
        pl.DataFrame({"phone": [4155550123.0, 6175550123.0]}).write_parquet(wide)
        assert read_table(InputSpec(path=str(wide)), text_columns=["phone"]).frame["phone"].to_list() == [
            "4155550123.0",
            "6175550123.0",
        ]

    def test_ndjson_syntax_error_names_the_line(self, tmp_path: Path) -> None:
        """A broken NDJSON line is named, since polars only gives a character offset."""
        path = tmp_path / "c.ndjson"
        path.write_text('{"phone": "+14155550100"}\n{"phone": "+14155550101",\n')
        with pytest.raises(InputFileError) as caught:
            read_table(InputSpec(path=str(path)))
        assert str(caught.value).startswith(f"{path}:2: not valid JSON (")


def _read(tmp_path: Path, text: str | bytes, text_columns: tuple[str, ...] = ("phone",)) -> pl.DataFrame:
    path = tmp_path / "contacts.csv"
    path.write_bytes(text.encode() if isinstance(text, str) else text)
    return read_table(InputSpec(path=str(path)), text_columns=text_columns).frame


class TestShortRowsAndBlankLines:
    def test_an_empty_last_field_is_not_a_short_row(self, tmp_path: Path) -> None:
        """`a,b,` and `a,b,""` have every field (both empty); only a row missing one is ragged."""
        frame = _read(tmp_path, HEADER + '+14155550100,Ana,\n+14155550101,Zoë,""\n+14155550102,José,3\n')
        assert frame["visits"].to_list() == [None, None, 3]

    def test_a_one_column_file_holding_its_own_name_is_read_whole(self, tmp_path: Path) -> None:
        """A one-column list with its header pasted in again is read (that line a bad number), not refused whole:
        no row under it can land in another column."""
        frame = _read(tmp_path, "phone\n+14155550100\nphone\n+14155550101\n")
        assert frame["phone"].to_list() == ["+14155550100", "phone", "+14155550101"]

    def test_blank_lines_are_skipped_not_read_as_empty_contacts(self, tmp_path: Path) -> None:
        """Blank lines (middle, end, CRLF) are not rows: no `To is empty` for an editor's stray newline."""
        frame = _read(tmp_path, "\r\n" + HEADER + "+14155550100,Ana,1\r\n\r\n+14155550101,Zoë,2\n\n\n")
        assert frame["phone"].to_list() == ["+14155550100", "+14155550101"]

    def test_commas_inside_quotes_and_quotes_mid_field_are_not_miscounted(self, tmp_path: Path) -> None:
        """Quoted commas, doubled quotes and a literal quote mid-field: same row count, no false ragged row."""
        text = HEADER + '+14155550100,"Smith, Ana",\n+14155550101,"Zoë ""Z""",\n+14155550102,6" tall,\n'
        frame = _read(tmp_path, text)
        assert frame["name"].to_list() == ["Smith, Ana", 'Zoë "Z"', '6" tall']

    def test_a_quoted_looking_comma_mid_field_is_no_false_alarm(self, tmp_path: Path) -> None:
        """`ab"c,d"e,` is three fields to polars and csv alike; the fast count's suspicion is checked, not reported."""
        assert _read(tmp_path, 'x,y,z\nab"c,d"e,\n').rows() == [('ab"c', 'd"e', None)]
        with pytest.raises(InputFileError) as caught:
            _read(tmp_path, 'x,y,z\nab"c,d"e,\n1,2\n')
        assert (caught.value.line, str(caught.value).rsplit(": ", 1)[1]) == (3, "2 fields where the header has 3")

    @pytest.mark.parametrize(
        ("text", "line"),
        [
            # An opening quote, and an inch mark before a line end two rows down: a legal field over three lines.
            (HEADER + '+14155550100,"Ann,1\n+14155550101,Bob,2\n+14155550102,wants the 55",3\n', 2),
            # The stray quote in the number's own column.
            ('phone,name\n+14155550100,Ann\n"+14155550101,Bob\n+14155550102",Cy\n', 3),
            # A one-column list.
            ('phone\n+14155550100\n"+14155550101\n+14155550102\n+14155550103"\n', 3),
            # The swallowed row's text is also a row of its own earlier on, and the file ends its lines with CRLF.
            (
                HEADER.replace("\n", "\r\n")
                + '+14155550101,Bob,2\r\n+14155550100,"Ann,1\r\n+14155550101,Bob,2\r\nx",3\r\n',
                3,
            ),
        ],
    )
    def test_rows_swallowed_by_a_stray_quote_are_refused_naming_its_line(
        self, tmp_path: Path, text: str, line: int
    ) -> None:
        """The rows a stray quote reads into one field would have no result line: the file is refused, never short."""
        with pytest.raises(InputFileError) as caught:
            _read(tmp_path, text)
        assert caught.value.line == line
        assert "a quote opened on this line runs on over lines that read as rows of their own" in str(caught.value)

    @pytest.mark.parametrize(
        "text",
        [
            'phone,address\n+14155550100,"12 Main St\nSpringfield, IL 62701"\n',
            'phone,address\n+14155550100,"1 Main St, Apt 5\nSpringfield, 62704-1234"\n',
            'phone,name,notes\n+14155550100,Ann,"Emergency contact:\nJane Doe, 415-555-0101, sister"\n',
            'phone,name,notes\n+14155550100,Ann,"History:\nCalled, 2024-01-15, voicemail"\n',
            'phone,notes\n+14155550100,"Calls:\n12/03/2024, no answer"\n',
        ],
    )
    def test_a_field_over_lines_that_are_no_rows_is_read(self, tmp_path: Path, text: str) -> None:
        """An address or a note over lines, with commas and numbers where no To is, is one field as Excel writes it."""
        assert _read(tmp_path, text).height == 1

    def test_a_short_row_far_down_a_large_file_is_found_with_its_line(self, tmp_path: Path) -> None:
        """The vectorized check reports the exact line of a short row after 50,000 good ones."""
        rows = "".join(f"+1415555{i % 10000:04d},n{i},{'' if i % 3 else i}\n" for i in range(50_000))
        with pytest.raises(InputFileError) as caught:
            _read(tmp_path, HEADER + rows + "+14155550100,short\n" + rows[:200])
        assert caught.value.line == 50_002
        assert str(caught.value).endswith(":50002: ragged row: 2 fields where the header has 3")

    def test_a_byte_that_is_not_utf8_deep_in_a_large_file_is_named_by_its_line(self, tmp_path: Path) -> None:
        """UTF-8 is checked a few megabytes at a time; a bad byte 200,000 lines down still names its line."""
        rows = "".join(f"+1415555{i % 10000:04d},Zoë,{i}\n" for i in range(200_000)).encode()
        with pytest.raises(InputFileError) as caught:
            _read(tmp_path, HEADER.encode() + rows + b"+14155550100,Zo\xeb,1\n" + rows[:100])
        assert (caught.value.line, str(caught.value).split(": ", 1)[1].split(";")[0]) == (
            200_002,
            "not valid UTF-8 (byte 0xeb)",
        )

    def test_a_file_holding_the_unit_separator_is_still_checked(self, tmp_path: Path) -> None:
        """The rare byte the fast line split relies on falls back to the exact scan, with the same answer."""
        with pytest.raises(InputFileError) as caught:
            _read(tmp_path, HEADER + "+14155550100,A\x1fB,1\n+14155550101,C\n")
        assert (caught.value.line, str(caught.value).rsplit(": ", 1)[1]) == (3, "2 fields where the header has 3")

    def test_a_utf8_bom_is_not_part_of_the_first_column_name(self, tmp_path: Path) -> None:
        """Excel's byte order mark does not turn `phone` into `\\ufeffphone`."""
        frame = _read(tmp_path, b"\xef\xbb\xbf" + (HEADER + GOOD_ROWS).encode())
        assert frame.columns == ["phone", "name", "visits"]


# A CSV without a quote is checked as UTF-8 by its reading (polars, or a strict decode), not in a pass of its own: a
# bad byte anywhere must still be named by its line, before whatever else is wrong with the file.
NOT_UTF8 = {
    "the sep line": (b"sep=\xff\nphone,name\n+14155550100,Ana\n", 1),
    "the header": (b"phone,n\xffame\n+14155550100,Ana\n", 1),
    "a field": (b"phone,name\n+14155550100,An\xffa\n", 2),
    "a quoted field": (b'phone,name\n+14155550100,"An\xffa"\n', 2),
    "a file with a ragged row before it": (b"phone,name\n+14155550100,Ana,x\n+14155550101,B\xffo\n", 3),
    "a file with a short row before it": (b"phone,name\n+14155550100\n+14155550101,B\xffo\n", 3),
    "a file with a zero byte before it": (b"phone,name\n+14155550100,A\x00na\n+14155550101,B\xffo\n", 3),
    "a line of its own": (b"phone,name\n+14155550100,Ana\n\xff\n", 3),
    "a file with its header again": (b"phone,name\n+14155550100,Ana\nphone,name\n+14155550101,B\xffo\n", 4),
    "a one-column file": (b"phone\n+14155550100\n\xff\n", 3),
    "a file after a good sep line": (b"sep=;\nphone;name\n+14155550100;An\xffa\n", 3),
    # Polars reads a header's names loosely, and the strict decode of the header sees its first line only.
    "a header's name after its quoted line break": (b'phone,"Name\n(pr\xe9nom)"\n+14155550100,Ana\n', 2),
}


@pytest.mark.parametrize("where", NOT_UTF8)
def test_a_byte_that_is_not_utf8_is_named_by_its_line_wherever_it_is(tmp_path: Path, where: str) -> None:
    """Never a table, a traceback or another complaint first: the line and the byte that are not UTF-8."""
    data, line = NOT_UTF8[where]
    with pytest.raises(InputFileError) as caught:
        _read(tmp_path, data)
    assert caught.value.line == line
    assert re.search(r": not valid UTF-8 \(byte 0x(ff|e9)\); ", str(caught.value))


@pytest.mark.parametrize(
    ("data", "line"),
    [
        (b'phone,"na\nm\xffe"\n', 2),  # a quoted name's line break: polars reads the name as U+FFFD
        (b';+14155550100"\n\xff\n', 2),  # a stray quote: polars reads a header and no row, the bad byte unseen
    ],
)
def test_a_header_read_alone_is_checked_as_utf8_too(tmp_path: Path, data: bytes, line: int) -> None:
    """A suppression list is read for its header first: its bad bytes are named, never an empty list taken."""
    path = tmp_path / "suppress.csv"
    path.write_bytes(data)
    with pytest.raises(InputFileError, match=rf":{line}: not valid UTF-8 \(byte 0xff\)"):
        read_table(InputSpec(path=str(path)), text_columns=["phone"], header_only=True)


class TestQuotesInTheHeader:
    """Polars takes a lone quote in a header for an opening one and reads the next lines into the header."""

    @pytest.mark.parametrize(
        ("data", "line", "column"),
        [
            # Before: the first row went into the header, and the other two were read as if it never was.
            (b'phone,na"me\n+14155550100,A"na\n+14155550101,Bob\n+14155550102,Cy\n', 1, 'na"me'),
            (b"phone,name,height 5'11\"\n+14155550100,Ana,170\n+14155550101,Bob,180\n", 1, "height 5'11\""),
            (b'sep=,\nphone,na"me\n+14155550100,Ana\n', 2, 'na"me'),
        ],
    )
    def test_a_lone_quote_in_a_column_name_is_refused_not_a_row_lost(
        self, tmp_path: Path, data: bytes, line: int, column: str
    ) -> None:
        """The file is refused, naming the line and the column: never a contact silently read into the header."""
        with pytest.raises(InputFileError) as caught:
            _read(tmp_path, data)
        assert (caught.value.line, caught.value.column) == (line, column)
        assert "holds a lone quote" in str(caught.value)

    @pytest.mark.parametrize(
        ("data", "columns"),
        [
            (b'phone,nickname "a"\n+14155550100,Ana\n+14155550101,Bob\n', ["phone", 'nickname "a"']),
            (b'phone,"name, given"\n+14155550100,Ana\n+14155550101,Bob\n', ["phone", "name, given"]),
            (b'phone,"Name\n(pr\xc3\xa9nom)"\n+14155550100,Ana\n+14155550101,Bob\n', ["phone", "Name\n(prénom)"]),
        ],
    )
    def test_quotes_that_read_one_way_keep_every_row(self, tmp_path: Path, data: bytes, columns: list[str]) -> None:
        """A pair of quotes in a name, a quoted name with the separator or a line break in it: every row is read."""
        frame = _read(tmp_path, data)
        assert frame.columns == columns
        assert frame.get_column("phone").to_list() == ["+14155550100", "+14155550101"]


_PIECES = [b"phone", b"name", b",", b";", b"\t", b"|", b"\n", b"\r\n", b"\r", b'"', b"+14155550100", b"Ana", b" "]
_PIECES += [b"sep=;\n", b"\xff", b"\xc3", b"\xc3\xa9", b"\xef\xbb\xbf", b"\x1f"]


@given(
    st.lists(st.sampled_from(_PIECES), min_size=1, max_size=60).map(b"".join),
    st.booleans(),
    st.booleans(),
)
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
# Found by fuzzing: polars took the line after a second BOM for the header; a stray quote hid the rest unread.
@example(b"\xef\xbb\xbf\xef\xbb\xbf\n\xff\xc3,", False, True)
@example(b'name"\xc3\xa9\x1f+14155550100\n\xc3Ana"name\rname+14155550100', False, False)
def test_bytes_that_are_not_utf8_never_read_as_a_table(
    tmp_path: Path, data: bytes, with_header: bool, header_only: bool
) -> None:
    """Whatever else is in the file (stray quotes, a second BOM, CRs, a sep line), bytes that are not UTF-8 are
    named as such: never a table polars read around them, never another complaint first."""
    data = b"phone,name\n" + data if with_header else data
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        pass
    else:
        return  # valid UTF-8: other tests judge what is read
    path = tmp_path / "c.csv"
    path.write_bytes(data)
    with pytest.raises(InputFileError, match="not valid UTF-8"):
        read_table(InputSpec(path=str(path)), text_columns=["phone"], header_only=header_only)


class TestColumnsKeepTheirText:
    def test_address_columns_stay_text(self, tmp_path: Path) -> None:
        """To/From read as text: 14155550100 is not an integer, leading + and 0 survive."""
        frame = _read(tmp_path, "phone,sender\n14155550100,+15005550006\n0044207946000,00441\n", ("phone", "sender"))
        assert frame.rows() == [("14155550100", "+15005550006"), ("0044207946000", "00441")]

    def test_numbers_are_typed_from_the_whole_column(self, tmp_path: Path) -> None:
        """Integers, decimals and booleans become numbers and booleans even when text appears after row 10,000."""
        rows = "".join(f"+1415555{i % 10000:04d},{i},{i}.5,true,{i}\n" for i in range(10_050))
        frame = _read(tmp_path, "phone,visits,score,vip,late\n" + rows + "+14155550100,1,2.5,false,n/a\n")
        assert frame.schema == pl.Schema(
            {"phone": pl.String, "visits": pl.Int64, "score": pl.Float64, "vip": pl.Boolean, "late": pl.String}
        )
        assert frame["late"][-1] == "n/a"

    def test_values_a_number_would_change_stay_text(self, tmp_path: Path) -> None:
        """Zip codes keep their leading zero; `+5`, ` 7`, 20-digit ids and NaN are not turned into numbers."""
        frame = _read(
            tmp_path,
            "phone,zip,plus,spaced,big,nan,precise\n+14155550100,02139,+5, 7,12345678901234567890,NaN,0.10000000000000001\n",
        )
        assert frame.row(0)[1:] == ("02139", "+5", " 7", "12345678901234567890", "NaN", "0.10000000000000001")

    def test_minus_zero_stays_text(self, tmp_path: Path) -> None:
        """`-0` would be written back as 0 (or -0.0): its column keeps its text; `-0.5` and `-3` are still numbers."""
        frame = _read(tmp_path, "phone,a,b,c\n+14155550100,-0,-0,-0.5\n+14155550101,3,1.5,-3\n")
        assert frame.schema["a"] == pl.String and frame["a"].to_list() == ["-0", "3"]
        assert frame.schema["b"] == pl.String and frame["b"].to_list() == ["-0", "1.5"]
        assert frame["c"].to_list() == [-0.5, -3.0]

    def test_a_quoted_empty_cell_is_empty_as_an_unquoted_one(self, tmp_path: Path) -> None:
        """`""` is null like an empty field, so the column is still typed from its values: visits stays a number."""
        quoted = _read(tmp_path, '"phone","name","visits"\n"+14155550100","Ann","1"\n"+14155550101","",""\n')
        plain = _read(tmp_path, "phone,name,visits\n+14155550100,Ann,1\n+14155550101,,\n")
        assert quoted.equals(plain) and quoted.schema["visits"] == pl.Int64
        assert quoted.row(1) == ("+14155550101", None, None)

    def test_a_column_a_double_would_round_or_overflow_stays_text(self, tmp_path: Path) -> None:
        """17 digits beside decimals (a double keeps 15) and 1e400 (infinite) keep their text; 15 digits do not."""
        frame = _read(
            tmp_path,
            "phone,big,huge,fine,long_fine\n"
            "+14155550100,12345678901234567,1e400,2.0,-1234567890.12345\n"
            "+14155550101,8.5,5,1.5,0.000001234567891\n",
        )
        assert frame.schema["big"] == pl.String and frame["big"].to_list() == ["12345678901234567", "8.5"]
        assert frame.schema["huge"] == pl.String and frame["huge"].to_list() == ["1e400", "5"]
        assert frame["fine"].to_list() == [2.0, 1.5]
        assert frame["long_fine"].to_list() == [-1234567890.12345, 0.000001234567891]

    def test_a_price_or_a_code_a_number_would_rewrite_keeps_its_text(self, tmp_path: Path) -> None:
        """`12.50` would reach the message as 12.5 and `1E3` as 1000.0: such columns stay as typed, every row."""
        frame = _read(tmp_path, "phone,price,code,score\n+14155550100,12.50,1E3,2.5\n+14155550101,3.1,2E10,3.0\n")
        assert frame.schema["price"] == pl.String and frame["price"].to_list() == ["12.50", "3.1"]
        assert frame.schema["code"] == pl.String and frame["code"].to_list() == ["1E3", "2E10"]
        assert frame["score"].to_list() == [2.5, 3.0]


class TestWhatSpreadsheetsWrite:
    def test_a_european_excel_export_reads_correctly(self, tmp_path: Path) -> None:
        """Semicolons, a UTF-8 BOM, CR-only line ends and trailing `;;` rows: the contacts, nothing else."""
        text = "phone;first_name;city\r+14155550100;Zoë;Köln\r+14155550101;Ana, Maria;Paris\r;;\r;;\r"
        frame = _read(tmp_path, b"\xef\xbb\xbf" + text.encode())
        assert frame.columns == ["phone", "first_name", "city"]
        assert frame.rows() == [("+14155550100", "Zoë", "Köln"), ("+14155550101", "Ana, Maria", "Paris")]

    def test_cr_only_line_ends_end_lines_and_name_the_right_line(self, tmp_path: Path) -> None:
        """An old Mac file (CR alone) reads row by row; a short row in it is reported on its own line."""
        assert _read(tmp_path, HEADER.replace("\n", "\r") + GOOD_ROWS.replace("\n", "\r"))["name"].to_list() == [
            "Ana",
            "Zoë",
            "José",
        ]
        with pytest.raises(InputFileError) as caught:
            _read(tmp_path, "phone,name,visits\r+14155550100,Ana,1\r+14155550101,Zoë\r")
        assert str(caught.value).endswith(":3: ragged row: 2 fields where the header has 3")

    @pytest.mark.parametrize("codec", ["utf-16", "utf-16-le-bom", "utf-16-be-bom", "utf-32"])
    @pytest.mark.parametrize("named", ["utf-8", "latin-1", "utf-16"])
    def test_a_byte_order_mark_decides_the_encoding(self, tmp_path: Path, codec: str, named: str) -> None:
        """A UTF-16/32 file with its BOM reads the same whatever input.encoding says (Excel's "Unicode text")."""
        text = HEADER + GOOD_ROWS
        data = {
            "utf-16": text.encode("utf-16"),
            "utf-16-le-bom": b"\xff\xfe" + text.encode("utf-16-le"),
            "utf-16-be-bom": b"\xfe\xff" + text.encode("utf-16-be"),
            "utf-32": text.encode("utf-32"),
        }[codec]
        path = tmp_path / "c.csv"
        path.write_bytes(data)
        frame = read_table(InputSpec(path=str(path), encoding=named), text_columns=["phone"]).frame
        assert frame["name"].to_list() == ["Ana", "Zoë", "José"]

    def test_utf16_without_a_byte_order_mark_is_recognised(self, tmp_path: Path) -> None:
        """UTF-16 LE text with no BOM is read as UTF-16, not refused with a hint to try latin-1."""
        assert _read(tmp_path, (HEADER + GOOD_ROWS).encode("utf-16-le"))["name"].to_list() == ["Ana", "Zoë", "José"]

    @pytest.mark.parametrize("encoding", ["utf-8", "latin-1", "cp1252"])
    @pytest.mark.parametrize(
        ("data", "what"),
        [
            (b"PAR1" + bytes(range(256)) + b"PAR1", "it is a Parquet file"),
            (b"PK\x03\x04" + bytes(range(256)), "it is a zip archive"),
            (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(range(256)), "it is an Excel 97-2003 workbook"),
        ],
    )
    def test_another_format_under_a_csv_name_is_named_whatever_the_encoding(
        self, tmp_path: Path, data: bytes, what: str, encoding: str
    ) -> None:
        """Read as latin-1 every byte is a character: the file is still told by its first bytes, before decoding."""
        path = tmp_path / "c.csv"
        path.write_bytes(data)
        with pytest.raises(InputFileError, match=f"not text: {what}"):
            read_table(InputSpec(path=str(path), encoding=encoding), text_columns=["phone"])

    def test_a_header_that_starts_with_par1_is_still_text(self, tmp_path: Path) -> None:
        """A column named `PAR1` is no Parquet file: the file must end with the magic too."""
        assert _read(tmp_path, b"PAR1,phone\nx,+14155550100\n")["phone"].to_list() == ["+14155550100"]

    @pytest.mark.parametrize(
        ("data", "advice"),
        [
            (HEADER.encode() + b"+14155550100,Zo\x93,1\n", 'set input.encoding (e.g. "cp1252")'),
            (HEADER.encode() + b"+14155550100,Zo\xeb,1\n", 'set input.encoding (e.g. "latin-1")'),
            (b"PK\x03\x04\x14\x00\x06\x00\x08\x00\x00\x00!\x00\xb7\xe6", "save the sheet as CSV UTF-8"),
            (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x01\x00\x9b\xe6", "not text in any one-byte encoding"),
        ],
    )
    def test_only_an_encoding_that_fits_is_suggested(self, tmp_path: Path, data: bytes, advice: str) -> None:
        """A smart quote suggests cp1252, an `ë` latin-1; a workbook or an image gets no encoding hint at all."""
        with pytest.raises(InputFileError) as caught:
            _read(tmp_path, data)
        assert advice in str(caught.value)
        assert "\n" not in str(caught.value)
        assert ("input.encoding" in str(caught.value)) == ("set input.encoding" in advice)

    @pytest.mark.parametrize("separator", [",", ";", "\t", "|"])
    def test_the_separator_is_detected_from_the_header(self, tmp_path: Path, separator: str) -> None:
        """`;`, tab and `|` files read without configuration, even with the other separators inside values."""
        values = ['"+14155550100"', '"Smith; Ana"', '"a,b|c\td"']
        text = separator.join(["phone", "name", "note"]) + "\n" + separator.join(values) + "\n"
        frame = _read(tmp_path, text)
        assert frame.rows() == [("+14155550100", "Smith; Ana", "a,b|c\td")]

    def test_detection_picks_the_separator_that_makes_the_mapped_column_exist(self, tmp_path: Path) -> None:
        """`id,x;phone`: ',' and ';' both split it in two, but only ';' gives the mapped column `phone`."""
        frame = _read(tmp_path, "id,x;phone\n1,2;+14155550100\n")
        assert frame.columns == ["id,x", "phone"]

    def test_a_named_separator_is_used_as_given(self, tmp_path: Path) -> None:
        """`separator = "|"` reads a pipe file whose header also holds commas and semicolons."""
        path = tmp_path / "c.csv"
        path.write_text("phone|a,b,c|d;e\n+14155550100|1|2\n")
        frame = read_table(InputSpec(path=str(path), separator="|"), text_columns=["phone"]).frame
        assert frame.columns == ["phone", "a,b,c", "d;e"]

    def test_a_header_split_by_the_wrong_separator_says_to_set_it(
        self,
        tmp_path: Path,
        write_job: Callable[..., Path],
        capsys: pytest.CaptureFixture[str],
    ) -> None:
        """`--separator ,` on a semicolon file: the one line names input.separator, not 'did you mean phone;name'."""
        path = tmp_path / "c.csv"
        path.write_text("phone;first_name\n+14155550100;Ana\n")
        job = write_job(input_path=str(path))
        assert main(["validate", str(job), "--separator", ","]) == 2
        err = capsys.readouterr().err
        assert err.endswith(
            "(it has: phone;first_name); the header holds ';': if it separates the columns, set input.separator = ';'\n"
        )
        assert "did you mean" not in err

    def test_rows_whose_cells_are_all_empty_are_skipped_like_blank_lines(self, tmp_path: Path) -> None:
        """Excel's trailing `,,` rows (and `"",""`) are not contacts, so not `To is empty` either."""
        frame = _read(tmp_path, HEADER + '+14155550100,Ana,1\n,,\n+14155550101,,\n"","", \n,,\n')
        assert frame["phone"].to_list() == ["+14155550100", "+14155550101"]

    def test_a_line_of_spaces_is_blank_not_a_ragged_row(self, tmp_path: Path) -> None:
        """A line holding only spaces (a cell once typed into) is skipped as a blank line is, wherever it is."""
        frame = _read(tmp_path, HEADER + "+14155550100,Ana,1\n   \n+14155550101,Zoë,2\n \t \r\n")
        assert frame["phone"].to_list() == ["+14155550100", "+14155550101"]
        # The exact scan (a quoted line break) skips it too.
        frame = _read(tmp_path, HEADER + '+14155550100,"Ana\nMaria",1\n  \n+14155550101,Zoë,2\n')
        assert frame["phone"].to_list() == ["+14155550100", "+14155550101"]

    def test_excels_sep_line_names_the_separator_and_keeps_every_line_number(self, tmp_path: Path) -> None:
        """`sep=;` on line 1 (as Excel writes and reads it): `;` separates, and a short row is named by its own line."""
        frame = _read(tmp_path, 'sep=;\r\nphone;name\r\n+14155550100;Smith, Ana\r\n"sep=;";x\r\n')
        assert frame.rows() == [("+14155550100", "Smith, Ana"), ("sep=;", "x")]
        with pytest.raises(InputFileError) as caught:
            _read(tmp_path, '"sep=;"\nphone;name\n+14155550100;Ana\n+14155550101\n')
        assert caught.value.line == 4

    def test_input_separator_wins_over_a_wrong_sep_line_as_the_error_advises(self, tmp_path: Path) -> None:
        """`sep=,` over `;` rows: the missing column's error says to set input.separator = ';', and that works."""
        path = tmp_path / "contacts.csv"
        path.write_text("sep=,\nphone;name\n+14155550100;Ana\n")
        with pytest.raises(InputFileError, match=r"set input\.separator = ';'"):
            require_columns(str(path), read_table(InputSpec(path=str(path))).frame, [("mapping.to", "phone")])
        assert read_table(InputSpec(path=str(path), separator=";")).frame.rows() == [("+14155550100", "Ana")]

    @pytest.mark.parametrize("line", ["sep=;;;", "sep=; ", "SEP=;", '"sep=;"'])
    def test_the_sep_line_as_spreadsheets_also_write_it(self, tmp_path: Path, line: str) -> None:
        """Trailing empty cells, a trailing space, upper case, quotes: still Excel's line, still honoured."""
        assert _read(tmp_path, f"{line}\r\nphone;name\r\n+14155550100;Ana\r\n").rows() == [("+14155550100", "Ana")]


ENCODINGS = ["utf-8", "latin-1", "cp1252", "utf-16", "utf-16-le", "utf-32", "shift_jis", "ascii"]


class TestNoFileGivesATraceback:
    @given(
        st.one_of(
            st.binary(max_size=400),
            st.lists(
                st.lists(
                    st.sampled_from(["+14155550100", "", '"', "a,b", ";", "\t", "|", "\r", "é", "\x00", "1e5"]),
                    max_size=5,
                ),
                max_size=6,
            ).map(lambda rows: "\n".join("".join(r) for r in rows).encode("utf-8")),
        ),
        st.sampled_from(ENCODINGS),
        st.sampled_from(["csv", "ndjson"]),
        st.sampled_from([None, ",", ";", "\t", "|"]),
        st.sampled_from([b"", b"\xef\xbb\xbf", b"\xff\xfe", b"\xfe\xff", b"phone,name\n"]),
    )
    @settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
    def test_random_bytes_give_a_table_or_one_input_file_error(
        self, tmp_path: Path, data: bytes, encoding: str, fmt: str, separator: str | None, prefix: bytes
    ) -> None:
        """Whatever the bytes, encoding and separator, read_table returns a table or raises InputFileError."""
        path = tmp_path / "c.any"
        path.write_bytes(prefix + data)
        try:
            read_table(
                InputSpec(path=str(path), format=fmt, encoding=encoding, separator=separator), text_columns=["phone"]
            )
        except InputFileError as exc:
            message = str(exc)
        else:
            message = ""
        assert "\n" not in message.strip()
