"""CSV as spreadsheets write it: the field separator, short and blank rows, columns typed from every value.

Private to :mod:`batch_engage.inputs.files`, which reads every format; this module turns the UTF-8
bytes of a CSV file (:mod:`.encoding` makes them so) into a frame of typed columns, or one
:class:`InputFileError` naming the line.
The common case stays vectorized: polars reads every column as text, short rows are looked
for only where polars' null pattern says a row may have been padded, and columns are typed
afterwards with whole-column rules.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterable

import polars as pl

from ..errors import InputFileError
from .fields import split_fields
from .pasted import check_repeated_header
from .quotes import check_swallowed_rows

__all__ = ["SEPARATORS", "read_csv", "split_fields"]

SEPARATORS = (",", ";", "\t", "|")
"""The field separators a CSV may use, in the order detection prefers them among equals."""
# A CSV value becomes a number only when writing the number back gives the same text:
# "02139", "+5", " 7" and "1.0000000000000000001" stay text, so zip codes keep their zeros,
# and so do "12.50" and "1E3", which a message would show as 12.5 and 1000.0.
_INT_TEXT = r"^(?:0|-?[1-9][0-9]{0,17})$"  # "-0" would be written back as 0
# A fraction of one zero or ending in a digit that is not; no exponent.
_FLOAT_TEXT = r"^(?:0|-?0\.(?:0|[0-9]*[1-9])|-?[1-9][0-9]*(?:\.(?:0|[0-9]*[1-9]))?)$"
_BOOL_TEXT = r"^(?:true|false)$"
_FLOAT_DIGITS = 15  # a double holds any 15 significant digits exactly
_FLOAT_CHARS = 17  # "-", a point and 15 digits
_QUOTED = r'"[^"]*"'
_UNIT_SEPARATOR = "\x1f"  # a byte no contacts file has, used to read whole lines
_SAMPLE_ROWS = 1000
_MAX_SUSPECTS = 1000  # false alarms looked at one by one before the exact scan is cheaper
_KINDS_OF_TEXT = ((_INT_TEXT, pl.Int64), (_FLOAT_TEXT, pl.Float64), (_BOOL_TEXT, pl.Boolean))


def _header_line(data: bytes) -> str:
    start = 0
    while data[start : start + 1] in (b"\r", b"\n"):
        start += 1  # blank lines before the header, which polars skips too
    end = data.find(b"\n", start)
    return data[start : end if end >= 0 else len(data)].decode("utf-8").rstrip("\r")


_SEP_LINE = re.compile(rb'(?i)"?sep=([^\r\n"])\1*"?[ \t]*')


def _without_sep_line(data: bytes) -> tuple[bytes, str | None]:
    """Excel's ``sep=;`` first line (``"sep=;"``, ``sep=;;;`` too) and the separator it names, the line left blank
    so that every later line keeps its number. ``input.separator``, when set, still wins over it."""
    end = data.find(b"\n")
    first = data[: end if end >= 0 else len(data)].rstrip(b"\r")
    found = _SEP_LINE.fullmatch(first)
    if found is None:
        return data, None
    # Strict: a lone byte over 0x7f is no UTF-8, and the reader's caller names its line.
    return (b"" if end < 0 else b"\n" + data[end + 1 :]), found[1].decode("utf-8")


def _detect_separator(header: str, wanted: Iterable[str] = ()) -> str:
    """The field separator a header line uses, of ``,`` ``;`` tab ``|`` (``,`` when none splits it).

    The separator that makes every ``wanted`` column exist wins; among equals, the one
    that splits the header into the most fields; then the earlier in that list.
    """
    needed = set(wanted)
    best, best_rank = ",", (False, 1)
    for separator in SEPARATORS:
        fields = split_fields(header, separator)
        rank = (needed <= set(fields) and bool(needed), len(fields))
        if rank > best_rank:
            best, best_rank = separator, rank
    return best


def _check_header(shown: str, header: list[str]) -> None:
    seen: set[str] = set()
    for column in header:
        if column in seen:
            if not column:
                raise InputFileError(shown, "more than one column has no name in the header", line=1)
            raise InputFileError(shown, "appears twice in the header", line=1, column=column)
        seen.add(column)


def _lone_quote(line: str, separator: str) -> str | None:
    """The first column name not quoted itself that holds an odd number of quotes (``height 5'11"``), if any.

    Polars takes such a quote in a header for the start of a quoted field and reads the data lines up to the next
    quote as part of the header: those rows were lost without a word. A quoted name may run past the line (a
    line break in it, as Excel writes one): that is no lone quote.
    """
    at = 0
    while True:
        start = at + len(line[at:]) - len(line[at:].lstrip(" "))
        if line.startswith('"', start):
            # An escaped quote ("") is no closing one: blanked out, two characters for two, so places hold.
            closing = line[start + 1 :].replace('""', "\0\0").find('"')
            if closing < 0:
                return None
            end = line.find(separator, start + closing + 2)
        else:
            end = line.find(separator, at)
            name = line[at : end if end >= 0 else len(line)]
            if name.count('"') % 2:
                return name
        if end < 0:
            return None
        at = end + len(separator)


def _ragged(shown: str, line: int, fields: int, width: int) -> InputFileError:
    noun = "field" if fields == 1 else "fields"
    return InputFileError(shown, f"ragged row: {fields} {noun} where the header has {width}", line=line)


def _scan_records(shown: str, data: bytes, separator: str, *, keep: list[list[str]] | None = None) -> list[int]:
    """The exact, slow check (Python's csv module): raise on the first ragged row, else return blank records.

    Used only when the vectorized check cannot decide (a quoted field spanning lines)
    or when polars has failed; then ``keep`` collects the header and the rows.
    """
    # Strict only when polars has failed: then a quote never closed is the likely reason, and worth naming.
    reader = csv.reader(io.StringIO(data.decode("utf-8"), newline=""), delimiter=separator, strict=keep is not None)
    start = 1
    try:
        header = next(reader, None)
        while header == []:
            header = next(reader, None)  # blank lines before the header, which polars skips too
        if header is None:
            return []
        width = len(header)
        blanks: list[int] = []
        start = reader.line_num + 1
        if keep is not None:
            keep.append(header)
        for record, row in enumerate(reader):
            if not row or (len(row) == 1 and not row[0].strip()):
                blanks.append(record)
            elif len(row) != width:
                raise _ragged(shown, start, len(row), width)
            elif keep is not None:
                keep.append(row)
            start = reader.line_num + 1
    except csv.Error as exc:
        what = "a quote opened on this line is never closed" if "end of data" in str(exc) else str(exc)
        raise InputFileError(shown, f"not a valid CSV file: {what}", line=start) from None
    return blanks


def _read_with_csv_module(shown: str, data: bytes, separator: str) -> pl.DataFrame:
    """Read what polars refused but Python's csv module accepts (a stray quote mid-field, as in ``6" tall``)."""
    rows: list[list[str]] = []
    _scan_records(shown, data, separator, keep=rows)
    if not rows:
        raise InputFileError(shown, "the file is empty")
    header, body = rows[0], rows[1:]
    frame = pl.DataFrame(body, schema=dict.fromkeys(header, pl.String), orient="row")
    # Empty fields are null, as when polars reads them.
    return frame.with_columns(pl.all().replace("", None))


def _lines(data: bytes) -> pl.Series | None:
    """Every physical line without its line ending, blank ones as null (polars splits them in parallel).

    Reads the file as CSV with a separator that does not occur in it and no quoting;
    None when the file holds that separator byte.
    """
    if _UNIT_SEPARATOR.encode() in data:
        return None
    return pl.read_csv(
        data, has_header=False, separator=_UNIT_SEPARATOR, quote_char=None, infer_schema=False, new_columns=["line"]
    ).to_series()


def _field_counts(lines: pl.Series, separator: str) -> pl.Series:
    """Fields per line, separators inside quotes not counted (a line holding no quoted line break)."""
    counts = lines.str.count_matches(separator, literal=True) + 1
    quoted = lines.str.contains('"', literal=True).fill_null(False)
    if quoted.any():
        where = quoted.arg_true()
        unquoted = lines.gather(where).str.replace_all(_QUOTED, "").str.count_matches(separator, literal=True) + 1
        counts = counts.scatter(where, unquoted)
    return counts


def _check_rows(shown: str, data: bytes, frame: pl.DataFrame, separator: str) -> pl.DataFrame:
    """Raise on the first short row polars padded with nulls; drop blank lines (polars reads them as null rows).

    Only rows whose last column is null can be short, so only their lines are looked
    at. When a quoted field spans lines, lines are no longer records, and the exact
    scan decides; a suspect is confirmed with the csv module before it is reported.
    """
    lines = _lines(data)
    first = 0
    if lines is not None:
        first = lines.is_not_null().arg_true()[0]  # polars skips blank lines before the header
    if lines is None or lines.len() - first - 1 != frame.height:
        return _without_blank_records(shown, data, frame, separator)
    records = lines.slice(first + 1)
    where = frame.get_column(frame.columns[-1]).is_null().arg_true()
    picked = records.gather(where)
    # A line of spaces is blank as an empty one is (Excel keeps them from cells once typed into).
    blank = picked.is_null() | picked.str.contains(r"^\s*$").fill_null(True)
    fields = _field_counts(picked, separator)
    # Removing quoted sections only ever hides commas, so every short row is a suspect;
    # a suspect is a false alarm when a quote mid-field (literal to polars and csv alike) fooled the count.
    suspects = where.filter(~blank & (fields != frame.width))
    for index in suspects.head(_MAX_SUSPECTS).to_list():
        row = split_fields(records[index], separator)
        if len(row) != frame.width:
            raise _ragged(shown, first + 2 + index, len(row), frame.width)
    if len(suspects) > _MAX_SUSPECTS:
        return _without_blank_records(shown, data, frame, separator)
    if not blank.any():
        return frame
    return frame.filter(_blank_mask(where.filter(blank).to_list(), frame.height))


def _without_blank_records(shown: str, data: bytes, frame: pl.DataFrame, separator: str) -> pl.DataFrame:
    """The exact scan's verdict: raise on a ragged row, else drop the blank records."""
    blanks = _scan_records(shown, data, separator)
    if blanks and blanks[-1] >= frame.height:
        # A stray quote made polars and the csv module see different records: the csv module's reading stands.
        return _read_with_csv_module(shown, data, separator)
    return frame.filter(_blank_mask(blanks, frame.height)) if blanks else frame


def _blank_mask(blanks: list[int], height: int) -> pl.Series:
    """True for the rows to keep."""
    return pl.repeat(True, height, eager=True).scatter(blanks, False)


def _infer_types(frame: pl.DataFrame, keep_text: set[str]) -> pl.DataFrame:
    """Type each CSV column from all of its values (polars would look at the first rows only).

    A sample of each column picks the one type worth checking; only then is the whole
    column checked, so text columns cost next to nothing. Every column's check is in one
    ``select``, so polars runs them side by side.
    """
    sample = frame.head(_SAMPLE_ROWS)
    columns = [
        column
        for column, dtype in frame.schema.items()
        if dtype == pl.String and column not in keep_text and sample[column].null_count() != sample.height
    ]
    if not columns:
        return frame
    checks = [(c, kind) for c in columns for kind in _KINDS_OF_TEXT]
    allowed = sample.select(pl.col(c).str.contains(kind[0]).all().alias(str(i)) for i, (c, kind) in enumerate(checks))
    candidates: dict[str, list[tuple[str, type[pl.DataType]]]] = {}
    for (column, kind), fit in zip(checks, allowed.row(0), strict=True):
        if fit:
            candidates.setdefault(column, []).append(kind)
    casts: list[pl.Expr] = []
    while candidates:
        # Each column's first kind its sample allows, checked on the whole column; the next kind if it fails.
        tried = [(c, *left[0]) for c, left in candidates.items()]
        fits = frame.select(_fits(pl.col(c), pattern, cast).alias(c) for c, pattern, cast in tried).row(0)
        for (column, _, cast), fit in zip(tried, fits, strict=True):
            if fit and (cast != pl.Float64 or _held_by_a_double(frame.get_column(column))):
                col = pl.col(column)
                casts.append(col == "true" if cast == pl.Boolean else col.cast(cast))
                del candidates[column]
            elif len(candidates[column]) > 1:
                candidates[column] = candidates[column][1:]
            else:
                del candidates[column]
    return frame.with_columns(casts) if casts else frame


def _held_by_a_double(values: pl.Series) -> bool:
    """No value has more significant digits than a double keeps exactly (15): only the few long values are read."""
    long = values.filter(values.str.len_bytes() > _FLOAT_DIGITS).drop_nulls().to_list()
    return all(len(re.sub(r"[eE].*$|[^0-9]", "", v).lstrip("0")) <= _FLOAT_DIGITS for v in long)


def _fits(col: pl.Expr, pattern: str, cast: type[pl.DataType]) -> pl.Expr:
    """Whether every value of ``col`` reads as ``cast`` and writes back as the same text."""
    fits = col.str.contains(pattern).all()
    if cast == pl.Float64:
        fits = fits & (col.str.len_bytes().max() <= _FLOAT_CHARS)
    return fits


def _without_empty_rows(frame: pl.DataFrame) -> pl.DataFrame:
    """Drop rows whose every cell is empty or blank: Excel writes ``,,,`` for rows it once formatted.

    Only rows whose first cell is empty can be such rows, so only they are looked at whole.
    """
    first = frame.get_column(frame.columns[0])
    maybe = (first.is_null() | first.str.contains(r"^\s*$")).fill_null(True)
    if not maybe.any():
        return frame
    where = maybe.arg_true()
    cells = [pl.col(c).is_null() | pl.col(c).str.contains(r"^\s*$") for c in frame.columns]
    empty = frame[where].select(pl.all_horizontal(cells).fill_null(True)).to_series()
    if not empty.any():
        return frame
    return frame.filter(_blank_mask(where.filter(empty).to_list(), frame.height))


def read_csv(
    shown: str, data: bytes, keep_text: set[str], separator: str | None, *, header_only: bool = False
) -> pl.DataFrame:
    """A CSV file's rows as a frame: the header checked, short rows refused, blank rows dropped, columns typed.

    ``keep_text`` columns stay text; ``separator`` None means detect it from the header; ``header_only``: a header
    without rows is an empty table, not an error.
    """
    data, named = _without_sep_line(data)
    line = _header_line(data)
    separator = separator or named or _detect_separator(line, keep_text)
    _check_header(shown, split_fields(line, separator))
    lone = _lone_quote(line, separator)
    if lone is not None:
        where = data[: len(data) - len(data.lstrip(b"\r\n"))].count(b"\n") + 1
        raise InputFileError(
            shown,
            "holds a lone quote ('\"') in a column name, which would read the next lines into the header; "
            "remove it, or quote the whole name",
            line=where,
            column=lone,
        )
    try:
        # A quoted empty field ("") is empty as an unquoted one is, and as the csv module's reading has it:
        # null, so a column's type and a row's Parameters never depend on how the cell was quoted.
        frame = pl.read_csv(data, infer_schema=False, raise_if_empty=True, separator=separator, null_values=[""])
    except pl.exceptions.NoDataError:
        raise InputFileError(shown, "the file is empty") from None
    except pl.exceptions.PolarsError:
        # Polars says "more fields than defined", never where: the exact scan finds the line,
        # or, when no row is ragged, reads the file polars could not.
        frame = _read_with_csv_module(shown, data, separator)
    else:
        if frame.width and frame.height and frame.get_column(frame.columns[-1]).null_count():
            # A short row is padded with nulls, so it always leaves one in the last column.
            frame = _check_rows(shown, data, frame, separator)
    if frame.width and frame.height:
        frame = _without_empty_rows(frame)
        check_repeated_header(shown, data, frame, separator)
        check_swallowed_rows(shown, data, frame, separator, keep_text)
    if frame.height == 0 and not header_only:
        raise InputFileError(shown, "has a header but no data rows")
    return _infer_types(frame, keep_text)
