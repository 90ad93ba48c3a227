"""One CSV line's fields, as the csv module reads them: what the header checks and the stray-quote and
header-again checks split a line with."""

from __future__ import annotations

import csv
import io

__all__ = ["split_fields"]


def split_fields(line: str, separator: str) -> list[str]:
    """One line's fields, quotes honoured as the csv module reads them (a line break in a cell, which a column's
    name may hold, is no end of it)."""
    return next(csv.reader(io.StringIO(line, newline=""), delimiter=separator), [])
