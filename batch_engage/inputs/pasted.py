"""Two exports pasted one under the other: the second's header is a row of the first, and every row under it would
be read into the first's columns, someone else's number as To. Found by its names, however the second file
writes them."""

from __future__ import annotations

import re

import polars as pl

from ..errors import InputFileError
from .fields import split_fields

__all__ = ["check_repeated_header"]

_NAME_SPACING = re.compile(r"[\s_-]+")


def _name_key(name: str) -> str:
    """A column name as a person tells it apart: Excel's byte-order mark, case, and spaces, ``_`` or ``-`` between
    words do not make another name (a second export's ``\ufeffPhone`` or ``first name`` is the header again)."""
    return _NAME_SPACING.sub(" ", name.replace("\ufeff", "")).strip().casefold()


def _spellings(names: list[str]) -> set[str]:
    """The ways a column's name may be written again, for a first, cheap look at the first column."""
    out: set[str] = set()
    for name in names:
        bases = {name, name.strip()} | {_NAME_SPACING.sub(sep, name.strip()) for sep in (" ", "_", "-")}
        for base in bases:
            for form in {base, base.lower(), base.upper(), base.title(), base.capitalize()}:
                out.update((form, "\ufeff" + form))
    return out


def check_repeated_header(shown: str, data: bytes, frame: pl.DataFrame, separator: str) -> None:
    """Refuse a row that is the header again (two exports pasted one under the other): its columns may come in
    another order, and every row under it would be read into the wrong ones (someone else's number as To)."""
    names = frame.columns
    if len(names) == 1:
        # Under a one-column header the rows land in the one column whatever: the header again is a bad row.
        return
    keys = sorted(map(_name_key, names))
    # One column first, as written (3 ms a million rows, a seventh of normalizing it first): only a row whose first
    # cell is a column's name can be the header again.
    maybe = frame.get_column(names[0]).is_in(sorted(_spellings(names))).fill_null(False)
    if not maybe.any():
        return
    rows = frame[maybe.arg_true()].select(pl.concat_list(names).alias("cells")).get_column("cells").to_list()
    if not any(sorted(map(_name_key, row)) == keys for row in rows if None not in row):
        return
    line, moved, header = None, None, False
    # The line, read again on this rare path (the first such line is the header itself, wherever blank lines or a
    # sep= line put it); a quoted line break above it would only leave the line unnamed.
    for number, text in enumerate(data.decode("utf-8", errors="replace").splitlines(), start=1):
        fields = [f.strip() for f in split_fields(text, separator)]
        if sorted(map(_name_key, fields)) != keys:
            continue
        if not header:
            header = True
            continue
        line = number
        pairs = zip(names, fields, strict=True)
        moved = next(((n.strip(), f.lstrip("\ufeff")) for n, f in pairs if _name_key(n) != _name_key(f)), None)
        break
    order = f", in another order ({moved[1]!r} where the first has {moved[0]!r})" if moved else ""
    raise InputFileError(
        shown,
        f"the header again{order}: two files pasted together? The rows under it would be read into the wrong "
        "columns; remove it, or give each file its own job",
        line=line,
    )
