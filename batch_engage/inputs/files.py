"""Reading the contacts file with polars, with one clear line for every way a file can be wrong.

Every file-level problem is an :class:`InputFileError` naming the file and, where it
applies, the line and the column. The common case stays vectorized: a CSV is read by
polars with every column as text, checked for short rows only when polars' null
pattern says a row may have been padded, and typed afterwards with whole-column rules.

What spreadsheets write is read as they meant it: the field separator (``,`` ``;``
tab ``|``) is taken from ``input.separator`` or detected from the header line; a byte
order mark (UTF-8, UTF-16, UTF-32) decides the encoding whatever ``input.encoding``
says; old Mac line endings (CR alone) end lines; rows whose cells are all empty
(Excel's trailing ``,,,``) are skipped like blank lines. No file, however broken,
gives anything but an :class:`InputFileError`.

The bytes become UTF-8 text in ``encoding``; the CSV details (separator, short and blank rows, typing) live in ``csv``.
A URL's bytes come from ``remote``, and are read from there on exactly as a local file's.
"""

from __future__ import annotations

import csv
import difflib
import hashlib
import io
import json
import re
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO
from urllib.parse import urlsplit

import polars as pl

from ..errors import InputFileError
from ..job import InputSpec
from .catalog import FILE_EXTENSIONS, FILE_FORMATS
from .csv import SEPARATORS, read_csv, split_fields
from .encoding import as_utf8, check_utf8, is_blank
from .remote import fetch, file_url_path, is_remote, shown_url

__all__ = [
    "SEPARATORS",
    "STDIN_NAME",
    "InputSpec",
    "Table",
    "frame_digest",
    "is_local_file",
    "read_table",
    "require_columns",
    "shown_name",
]

STDIN_NAME = "<stdin>"
_EXTENSIONS = FILE_EXTENSIONS
# Often handed over as they are: the refusal says what to do, not only that the type is unknown.
_WORKBOOKS = frozenset({".xlsx", ".xlsm", ".xlsb", ".xls", ".ods", ".numbers"})
_KINDS = {source.kind.split()[0].lower(): source.kind.split()[0] for source in FILE_FORMATS}  # {"csv": "CSV", ...}
_MAX_LISTED_COLUMNS = 30


@dataclass(frozen=True)
class Table:
    """The input rows, and a digest of exactly what was read (for the checkpoint's fingerprint; empty when not
    asked for)."""

    frame: pl.DataFrame
    digest: str
    name: str
    numbers: frozenset[str] = frozenset()
    """Text columns that held integers or exact decimals (Parquet, NDJSON, a query, where a decimal column need not
    be mapped), now their text: a leading zero may be gone."""


def _format_of(spec: InputSpec, name: str, shown: str) -> str:
    if spec.format:
        return spec.format
    if name == "-":
        return "csv"
    # A URL's own path: its query and fragment (a signature, a session) never become the "file type" shown.
    suffix = Path(urlsplit(name).path if is_remote(name) else name).suffix.lower()
    if suffix in _WORKBOOKS:
        raise InputFileError(shown, f"a spreadsheet workbook ({suffix!r}) is not read: save the sheet as CSV UTF-8")
    if suffix not in _EXTENSIONS:
        raise InputFileError(
            shown,
            f"unknown file type {suffix or '(no extension)'!r} (use .csv, .parquet, .ndjson or .jsonl, "
            "or set input.format)",
        )
    return _EXTENSIONS[suffix]


def is_local_file(name: str) -> bool:
    """Whether ``input.path`` names a file on this machine (not standard input, not a remote URL)."""
    return name != "-" and not is_remote(name)


def shown_name(name: str) -> str:
    """How messages, results and logs name the input ``name``: a URL without its secrets, stdin as ``<stdin>``."""
    if name == "-":
        return STDIN_NAME
    return shown_url(name) if is_remote(name) else name


def _read_bytes(name: str, shown: str, stdin: BinaryIO | None) -> bytes:
    if name == "-":
        return (stdin or sys.stdin.buffer).read()
    if is_remote(name):
        local = file_url_path(name)
        if local is None:
            return fetch(name, shown)
        name = local
    path = Path(name)
    if not path.exists():
        raise InputFileError(shown, "no such file")
    if path.is_dir():
        raise InputFileError(shown, "is a folder, not a file")
    try:
        return path.read_bytes()
    except OSError as exc:
        raise InputFileError(shown, f"cannot be read: {exc.strerror}") from None


def _ndjson_error(shown: str, data: bytes, exc: pl.exceptions.PolarsError) -> InputFileError:
    for number, line in enumerate(data.split(b"\n"), start=1):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError as err:
            return InputFileError(shown, f"not valid JSON ({err.msg})", line=number)
        if not isinstance(value, dict):
            return InputFileError(shown, "not a JSON object", line=number)
    return _not_valid(shown, "ndjson", exc)


def _not_valid(shown: str, fmt: str, exc: Exception) -> InputFileError:
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    first = first.removeprefix("parquet: ")
    return InputFileError(shown, f"not a valid {_KINDS[fmt]} file: {first}")


def _read_parquet(shown: str, data: bytes) -> pl.DataFrame:
    if not data.endswith(b"PAR1"):
        if data.startswith(b"PAR1"):
            raise InputFileError(shown, "not a valid Parquet file: it ends before its footer (cut short?)")
        raise InputFileError(shown, "not a Parquet file (it does not end with the Parquet footer)")
    try:
        return pl.read_parquet(io.BytesIO(data))
    except pl.exceptions.PolarsError as exc:
        raise _not_valid(shown, "parquet", exc) from None


def read_table(
    spec: InputSpec,
    *,
    text_columns: Iterable[str] = (),
    stdin: BinaryIO | None = None,
    digest: bool = True,
    raw: tuple[bytes, str] | None = None,
    header_only: bool = False,
) -> Table:
    """Read the input file; ``text_columns`` are read as strings, whatever they look like.

    ``digest``: take the digest of what was read (a run keeps it; a dry run or a suppression list does not need
    it, and on a million rows it is a fifth of the read). ``raw``: the local file's bytes and their digest,
    read already (by a resumed run looking for its kept plan). ``header_only``: a header with no rows is a
    table of none (a suppression list nobody is on yet); a file with no header at all is still refused.
    """
    name = spec.path
    if name is None:
        raise InputFileError("(no input)", "no input file: set input.path or give a frame")
    shown = shown_name(name)
    fmt = _format_of(spec, name, shown)
    keep_text = set(text_columns)
    # A URL's bytes are read whole, as a local file's: every check and typing rule is the local reader's.
    data, taken = raw if raw is not None else (_read_bytes(name, shown, stdin), "")
    if is_blank(data):
        raise InputFileError(shown, "the file is empty")
    if digest and not taken:
        taken = hashlib.blake2b(data, digest_size=16).hexdigest()
    frame, numbers = _parsed(spec, fmt, shown, data, keep_text, header_only)
    return Table(frame=frame, digest=taken if digest else "", name=shown, numbers=numbers)


def _parsed(
    spec: InputSpec, fmt: str, shown: str, raw: bytes, keep_text: set[str], header_only: bool
) -> tuple[pl.DataFrame, frozenset[str]]:
    """A local file's bytes as rows, in its format; the ``keep_text`` columns as strings, and which held integers."""
    if fmt == "parquet":
        frame = _read_parquet(shown, raw)
        if frame.height == 0 and not (header_only and frame.width):
            raise InputFileError(shown, "has no data rows")
    else:
        # Without a quote in it, every byte of a CSV lands in a field polars refuses unless it is UTF-8 (or in the
        # header and sep line, decoded strictly): then the bytes are looked through only when reading failed, to
        # name the line. A quote can hide bytes from polars (a stray one swallows the rest of its line unread).
        data = as_utf8(shown, raw, spec.encoding, checked_later=fmt == "csv" and b'"' not in raw)
        if fmt == "csv":
            try:
                frame = read_csv(shown, data, keep_text, spec.separator, header_only=header_only)
            except InputFileError:
                check_utf8(shown, data)  # bytes that are not UTF-8 are named first, whatever else is wrong
                raise
            except (pl.exceptions.PolarsError, csv.Error, UnicodeDecodeError) as exc:
                check_utf8(shown, data)
                # The checks above name the usual problems; whatever is left is still one line, never a traceback.
                raise _not_valid(shown, fmt, exc) from None
            if frame.height == 0 or any("\ufffd" in name for name in frame.columns):
                # Polars decodes the header's names loosely (U+FFFD for a bad byte), and may take another line for
                # the header than the one decoded strictly (after a second BOM, say).
                check_utf8(shown, data)
        else:
            try:
                frame = pl.read_ndjson(io.BytesIO(data), infer_schema_length=None)
            except pl.exceptions.PolarsError as exc:
                raise _ndjson_error(shown, data, exc) from None
            except (ValueError, TypeError) as exc:
                # Polars raises these too for some malformed lines (a value of a type it cannot hold).
                raise _not_valid(shown, "ndjson", exc) from None
            if frame.height == 0:
                raise InputFileError(shown, "has no data rows")
            return _as_written(as_text(frame, keep_text, shown), data, keep_text), integer_columns(frame, keep_text)
    return as_text(frame, keep_text, shown), integer_columns(frame, keep_text)


def _as_written(frame: pl.DataFrame, data: bytes, columns: Iterable[str]) -> pl.DataFrame:
    """An address written as a JSON number with an exponent (``1.41555501E+10``, Excel's) keeps that text.

    Parsed, it is a whole float whose lost digits nothing shows (``14155550100``, someone else): as written, the
    plan refuses the row, as it refuses that notation in a CSV.
    """
    keys = {c: re.escape(json.dumps(c).encode()) for c in columns if c in frame.columns}
    patterns = {c: re.compile(key + rb"\s*:\s*-?[0-9]+(?:\.[0-9]+)?[eE]") for c, key in keys.items()}
    found = {c: p for c, p in patterns.items() if p.search(data)}
    if not found:
        return frame
    written: dict[str, tuple[list[int], list[str]]] = {c: ([], []) for c in found}
    # Rows are the lines that are not blank, as polars read them; only a file holding such a number gets here, and
    # only its matching lines are parsed again, numbers as their text, so a nested object's "phone" is not taken.
    for row, line in enumerate(line for line in data.split(b"\n") if line.strip()):
        matching = [c for c, pattern in found.items() if pattern.search(line)]
        try:
            top = json.loads(line, parse_float=str) if matching else None
        except ValueError:
            continue
        for column in matching:
            text = top.get(column) if isinstance(top, dict) else None
            if isinstance(text, str) and re.search(r"[eE]", text):
                written[column][0].append(row)
                written[column][1].append(text)
    return frame.with_columns(
        frame.get_column(c).scatter(rows, pl.Series(texts, dtype=pl.String)) for c, (rows, texts) in written.items()
    )


_SHORT_FLOATS = (pl.Float16, pl.Float32)  # 3 and 7 significant digits: fewer than any phone number has


def integer_columns(frame: pl.DataFrame, columns: Iterable[str]) -> frozenset[str]:
    """Which of ``columns`` hold integers or decimals (before :func:`as_text` makes them text)."""
    return frozenset(
        c for c in columns if c in frame.columns and (frame.schema[c].is_integer() or frame.schema[c].is_decimal())
    )


def as_text(frame: pl.DataFrame, columns: Iterable[str], shown: str) -> pl.DataFrame:
    """The ``columns`` (addresses, Parameters JSON) as strings, whatever their type.

    A 16- or 32-bit float column is refused (``InputFileError``): its numbers are already rounded to a few
    digits, so ``4155550123`` reads as ``4155550200.0``, another person's number.
    """
    present = [c for c in dict.fromkeys(columns) if c in frame.columns]
    for column in present:
        if frame.schema[column] in _SHORT_FLOATS:
            raise InputFileError(
                shown,
                f"is a {frame.schema[column]} column: it keeps too few digits for a phone number, so its "
                "numbers are other people's; write it as text (or as 64-bit numbers)",
                column=column,
            )
    return frame.with_columns(pl.col(c).cast(pl.String) for c in present)


def frame_digest(frame: pl.DataFrame) -> str:
    """A content digest of an in-memory frame (for jobs fed a DataFrame instead of a file)."""
    buffer = io.BytesIO()
    frame.write_ipc(buffer, compression="uncompressed")
    return hashlib.blake2b(buffer.getvalue(), digest_size=16).hexdigest()


def _closest(column: str, columns: list[str]) -> str | None:
    """The column a user most likely meant: same name in another case, a near spelling, or one containing it."""
    folded = column.strip().casefold()
    for candidate in columns:
        if candidate.strip().casefold() == folded:
            return candidate
    close = difflib.get_close_matches(column, columns, n=1)
    if close:
        return close[0]
    containing = [c for c in columns if folded and (folded in c.casefold() or c.casefold() in folded)]
    return min(containing, key=len) if containing else None


def _separator_hint(column: str, columns: list[str]) -> str:
    """Advice to set ``input.separator`` when the header was split by the wrong one (``phone;first_name``).

    Given when splitting a header cell by another separator yields the missing column,
    or when the whole header is one cell holding a separator.
    """
    for separator in SEPARATORS:
        holding = [name for name in columns if separator in name]
        if any(column in split_fields(name, separator) for name in holding) or (holding and len(columns) == 1):
            return f"; the header holds {separator!r}: if it separates the columns, set input.separator = {separator!r}"
    return ""


def require_columns(name: str, frame: pl.DataFrame, columns: Iterable[tuple[str, str]]) -> None:
    """Refuse a mapping that names a column the file does not have, listing those it has and the closest."""
    for key, column in columns:
        if column in frame.columns:
            continue
        listed = ", ".join(frame.columns[:_MAX_LISTED_COLUMNS])
        if frame.width > _MAX_LISTED_COLUMNS:
            listed += f", ... ({frame.width} in all)"
        hint = _separator_hint(column, frame.columns)
        if not hint:
            close = _closest(column, frame.columns)
            hint = f"; did you mean {close!r}?" if close else ""
        raise InputFileError(
            name,
            f"{key} names a column the file does not have (it has: {listed}){hint}",
            column=column,
        )
