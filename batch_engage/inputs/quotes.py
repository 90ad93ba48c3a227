"""A stray quote: a field opened with one and closed by a later inch mark (``"gift for mom`` … ``the 55"``) is a
legal field over several lines, and the rows between are read into it. Their contacts would have no result line,
and their numbers would go into another person's Parameters. Refused when a line inside a quoted field reads as a
row of its own: as many fields as the header, one of them a phone number."""

from __future__ import annotations

import re

import polars as pl

from ..errors import InputFileError
from .fields import split_fields

__all__ = ["check_swallowed_rows"]

# A cell that is a phone number and nothing else (not a date, 2024-01-15 or 12/03/2024): a row's To.
_PHONE_CELL = re.compile(
    r"\s*(?![0-9]{4}-[0-9]{2}-[0-9]{2}\s*$|[0-9]{1,2}/[0-9]{1,2}/[0-9]{2,4}\s*$)\+?[0-9][0-9 ().\-/]{5,}[0-9]\s*"
)


def check_swallowed_rows(shown: str, data: bytes, frame: pl.DataFrame, separator: str, numbers: set[str]) -> None:
    """Raise, naming the line the quote opens on, when a quoted field holds lines that read as rows of their own: as
    many fields as the header, and a phone number where a ``numbers`` column (To, From) has its cells."""
    lines = data.count(b"\n") + (not data.endswith(b"\n"))
    if b'"' not in data or lines <= frame.height + 1:
        # No quote, or no more lines than records (the header's included): no field spans lines.
        return
    places = [i for i, c in enumerate(frame.columns) if c in numbers]
    if not places:
        return
    texts = [c for c, dtype in frame.schema.items() if dtype == pl.String]
    spanning = frame.select(pl.col(texts).str.contains("\n", literal=True).fill_null(False).any())
    for column, spans in zip(texts, spanning.row(0), strict=True):
        if not spans:
            continue
        values = frame.get_column(column)
        for value in values.filter(values.str.contains("\n", literal=True)).to_list():
            parts = [p.rstrip("\r") for p in value.split("\n")]
            # The first part too: a quote opened at a line's start (in its first column) takes a whole row in.
            if any(_reads_as_a_row(part, separator, frame.width, places) for part in parts):
                raise _swallowed(shown, data, parts)


def _reads_as_a_row(line: str, separator: str, width: int, places: list[int]) -> bool:
    """Whether ``line`` has the header's ``width`` and a phone number at one of ``places``."""
    fields = split_fields(line, separator)
    return len(fields) == width and any(_PHONE_CELL.fullmatch(fields[i]) for i in places)


def _swallowed(shown: str, data: bytes, parts: list[str]) -> InputFileError:
    """The refusal, naming the line the quote opened on: where the field's own lines (``parts``), after their
    opening quote, stand in the file (a line that holds a doubled quote is written otherwise: then no line)."""
    text = data.decode("utf-8", errors="replace")
    found = re.search('"' + r"\r?\n".join(map(re.escape, parts)), text)
    line = text.count("\n", 0, found.start()) + 1 if found else None
    where = "a quote opened on this line" if line is not None else "a quote"
    return InputFileError(
        shown,
        f"{where} runs on over lines that read as rows of their own (a stray quote?): their "
        'contacts would be lost; remove the quote, or double it ("")',
        line=line,
    )
