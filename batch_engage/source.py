"""Reading the contacts file with polars, with one clear line for every way a file can be wrong."""

from __future__ import annotations

import csv
import difflib
import hashlib
import io
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import polars as pl

from .errors import InputFileError
from .spec import InputSpec

__all__ = ["Table", "frame_digest", "read_table", "require_columns"]

_EXTENSIONS = {".csv": "csv", ".parquet": "parquet", ".pq": "parquet", ".ndjson": "ndjson", ".jsonl": "ndjson"}


@dataclass(frozen=True)
class Table:
    """The input rows, and a digest of exactly what was read (for the checkpoint's fingerprint)."""

    frame: pl.DataFrame
    digest: str
    name: str


def _format_of(spec: InputSpec, name: str) -> str:
    if spec.format:
        return spec.format
    if name == "-":
        return "csv"
    suffix = Path(name.split("?")[0]).suffix.lower()
    if suffix not in _EXTENSIONS:
        raise InputFileError(
            name,
            f"unknown file type {suffix or '(none)'!r}: use .csv, .parquet, .ndjson or .jsonl, or set input.format",
        )
    return _EXTENSIONS[suffix]


def _read_bytes(name: str, stdin: BinaryIO | None) -> bytes:
    if name == "-":
        return (stdin or sys.stdin.buffer).read()
    path = Path(name)
    if not path.exists():
        raise InputFileError(name, "no such file")
    if path.is_dir():
        raise InputFileError(name, "is a folder, not a file")
    try:
        return path.read_bytes()
    except OSError as exc:
        raise InputFileError(name, f"cannot be read: {exc.strerror}") from None


def _decode(name: str, data: bytes, encoding: str) -> bytes:
    """Return the bytes as UTF-8, or name the line that is not in ``encoding``."""
    try:
        text = data.decode(encoding)
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        hint = " (set input.encoding, e.g. \"latin-1\")" if encoding.lower().replace("-", "") == "utf8" else ""
        raise InputFileError(name, f"bytes that are not {encoding}{hint}", line=line) from None
    if text.startswith("\ufeff"):
        text = text[1:]
    return data if encoding.lower().replace("-", "") == "utf8" and not data.startswith(b"\xef\xbb\xbf") else text.encode()


def _check_csv_shape(name: str, data: bytes) -> None:
    """Find the first ragged row or duplicate header; polars reports neither with a line number."""
    reader = csv.reader(io.StringIO(data.decode("utf-8", errors="replace"), newline=""))
    try:
        header = next(reader)
    except StopIteration:
        raise InputFileError(name, "the file is empty") from None
    seen: set[str] = set()
    for column in header:
        if column in seen:
            raise InputFileError(name, "duplicate column name in the header", line=1, column=column)
        seen.add(column)
    width = len(header)
    for row in reader:
        if row and len(row) != width:
            raise InputFileError(
                name,
                f"ragged row: {len(row)} fields where the header has {width}",
                line=reader.line_num,
            )


def _header(name: str, data: bytes) -> list[str]:
    first = data.split(b"\n", 1)[0].decode("utf-8", errors="replace").rstrip("\r")
    return next(csv.reader([first]), [])


def read_table(
    spec: InputSpec,
    *,
    text_columns: Iterable[str] = (),
    stdin: BinaryIO | None = None,
) -> Table:
    """Read the input file; ``text_columns`` are read as strings, whatever they look like."""
    name = spec.path
    if name is None:
        raise InputFileError("(no input)", "no input file: set input.path or give a frame")
    fmt = _format_of(spec, name)
    remote = "://" in name
    data = b"" if remote else _read_bytes(name, stdin)
    if not remote and not data.strip():
        raise InputFileError(name, "the file is empty")
    wanted_text = list(dict.fromkeys(text_columns))
    try:
        if fmt == "csv":
            if not remote:
                data = _decode(name, data, spec.encoding)
                header = _header(name, data)
                if len(set(header)) != len(header):
                    _check_csv_shape(name, data)
                overrides = {c: pl.String for c in wanted_text if c in header}
            else:
                overrides = {c: pl.String for c in wanted_text}
            frame = pl.read_csv(
                data if not remote else name,
                schema_overrides=overrides,
                infer_schema_length=10_000,
            )
        elif fmt == "parquet":
            frame = pl.read_parquet(io.BytesIO(data) if not remote else name)
        else:
            if not remote:
                data = _decode(name, data, spec.encoding)
            frame = pl.read_ndjson(io.BytesIO(data) if not remote else name, infer_schema_length=10_000)
    except InputFileError:
        raise
    except pl.exceptions.PolarsError as exc:
        if fmt == "csv" and not remote:
            _check_csv_shape(name, data)
        kind = {"csv": "CSV", "parquet": "Parquet", "ndjson": "NDJSON"}[fmt]
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InputFileError(name, f"not a valid {kind} file: {first}") from None
    except OSError as exc:
        raise InputFileError(name, f"cannot be read: {exc}") from None
    if fmt == "csv" and not remote and len(data) < 256 * 1024 * 1024:
        # Short rows are silently padded by polars; a file that large is checked only on error.
        _check_csv_shape(name, data)
    if frame.height == 0:
        raise InputFileError(name, "has a header but no data rows" if frame.width else "the file is empty")
    frame = frame.with_columns(pl.col(c).cast(pl.String) for c in wanted_text if c in frame.columns)
    digest = hashlib.blake2b(data, digest_size=16).hexdigest() if not remote else frame_digest(frame)
    return Table(frame=frame, digest=digest, name=name)


def frame_digest(frame: pl.DataFrame) -> str:
    """A content digest of an in-memory frame (for jobs fed a DataFrame instead of a file)."""
    buffer = io.BytesIO()
    frame.write_ipc(buffer, compression="uncompressed")
    return hashlib.blake2b(buffer.getvalue(), digest_size=16).hexdigest()


def require_columns(name: str, frame: pl.DataFrame, columns: Iterable[tuple[str, str]]) -> None:
    """Refuse a mapping that names a column the file does not have, suggesting a close one."""
    for key, column in columns:
        if column not in frame.columns:
            close = difflib.get_close_matches(column, frame.columns, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise InputFileError(
                name,
                f"{key} names a column that does not exist (columns: {', '.join(frame.columns)}){hint}",
                column=column,
            )
