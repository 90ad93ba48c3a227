"""Bytes to UTF-8 text: byte order marks, the encoding a job names, and the line that is not in it.

Private to :mod:`batch_engage.inputs.files`: a byte order mark decides the encoding whatever
``input.encoding`` says, UTF-16 without one is recognised by its zero bytes, a zero byte is
refused as not text, and old Mac line ends (CR alone) become LF. A file that is not in its
encoding is one :class:`InputFileError` naming the line and the byte, with the encoding worth trying.
"""

from __future__ import annotations

import codecs
import re

import polars as pl

from ..errors import InputFileError

__all__ = ["as_utf8", "check_utf8", "is_blank"]

_BOM = codecs.BOM_UTF8
_DOS_EOF = b"\x1a"
# Longest first: a UTF-32 LE mark starts with the UTF-16 LE one.
_BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32-le"),
    (codecs.BOM_UTF32_BE, "utf-32-be"),
    (codecs.BOM_UTF8, "utf-8"),
    (codecs.BOM_UTF16_LE, "utf-16-le"),
    (codecs.BOM_UTF16_BE, "utf-16-be"),
)
_SNIFF_BYTES = 4096  # enough of a file to tell UTF-16 without a byte order mark by its zero bytes
_PEEK_BYTES = 64 * 1024
_UTF8_SLICE_BYTES = 4 * 1024 * 1024


def is_blank(data: bytes) -> bool:
    """Nothing but whitespace (and maybe a BOM); a large file is not copied to find out."""
    if data[:_PEEK_BYTES].removeprefix(_BOM).strip():
        return False
    return not data.removeprefix(_BOM).strip()


def _is_utf8(encoding: str) -> bool:
    return encoding.lower().replace("-", "").replace("_", "") in ("utf8", "utf8sig")


def _line_of(data: bytes, encoding: str, offset: int) -> int:
    """The line (CR, LF or CRLF ended) holding byte ``offset`` of text in ``encoding``."""
    before = data[:offset].decode(encoding, errors="replace")
    return before.count("\n") + before.count("\r") - before.count("\r\n") + 1


def _encoding_hint(data: bytes) -> str:
    """The encoding worth suggesting for bytes that are not UTF-8, or '' when none would be right."""
    if b"\x00" in data:
        return ""  # not a single-byte text encoding: suggesting one would only make a mess of it
    if not re.search(rb"[\x80-\x9f]", data):
        return "latin-1"  # latin-1 and cp1252 agree on every byte here
    try:
        data.decode("cp1252")
    except UnicodeDecodeError:
        return ""
    return "cp1252"


# What a file that is no text at all most often is, by its first (and last) bytes: another format given a text's
# name. Told before any decoding: read as latin-1, say, every byte is some character.
_BINARY_KINDS = (
    (b"PAR1", b"PAR1", 'it is a Parquet file: name it .parquet, or set input.format = "parquet"'),
    (b"PK\x03\x04", b"", "it is a zip archive, as an Excel or OpenDocument workbook is: save the sheet as CSV UTF-8"),
    (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", b"", "it is an Excel 97-2003 workbook: save the sheet as CSV UTF-8"),
)


def _refuse_other_formats(shown: str, data: bytes) -> None:
    for head, tail, what in _BINARY_KINDS:
        if data.startswith(head) and data.endswith(tail):
            raise InputFileError(shown, f"not text: {what}")


def _decode_error(shown: str, data: bytes, encoding: str, exc: UnicodeDecodeError) -> InputFileError:
    line = _line_of(data, encoding, exc.start)
    byte = data[exc.start : exc.start + 1].hex()
    if _is_utf8(encoding):
        hint = _encoding_hint(data)
        if hint:
            advice = f'if the file uses another encoding, set input.encoding (e.g. "{hint}")'
        else:
            advice = "it is not text in any one-byte encoding either (a workbook or another binary file?)"
        return InputFileError(shown, f"not valid UTF-8 (byte 0x{byte}); {advice}", line=line)
    return InputFileError(shown, f"not valid {encoding} (byte 0x{byte})", line=line)


def _utf16_without_bom(data: bytes) -> str | None:
    """``utf-16-le``/``-be`` when the start of the file is ASCII text with a zero byte after/before each character."""
    sample = data[:_SNIFF_BYTES]
    if len(sample) < 4 or b"\x00" not in sample:
        return None
    even, odd = sample[0::2], sample[1::2]
    if odd.count(0) > 0.9 * len(odd) and even.count(0) < 0.1 * len(even):
        return "utf-16-le"
    if even.count(0) > 0.9 * len(even) and odd.count(0) < 0.1 * len(odd):
        return "utf-16-be"
    return None


def check_utf8(shown: str, data: bytes) -> None:
    """Raise the line that is not UTF-8, if one is not.

    Polars checks UTF-8 faster than Python and without a copy of the text as str; a few megabytes at a
    time, cut after a line end (never inside a character), so no second copy of a large file is held.
    """
    start = 0
    while start < len(data):
        end = data.find(b"\n", start + _UTF8_SLICE_BYTES)
        end = len(data) if end < 0 else end + 1
        try:
            pl.Series([data[start:end]], dtype=pl.Binary).cast(pl.String)
        except pl.exceptions.PolarsError:
            try:
                data.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise _decode_error(shown, data, "utf-8", exc) from None
            raise
        start = end


def _check_wide(shown: str, data: bytes, encoding: str) -> None:
    """A file named UTF-16 or UTF-32 holds zero bytes: a line end is an ASCII character, two or four bytes wide
    there. One without any was written in a one-byte encoding and would read as one line of nonsense."""
    if not codecs.lookup(encoding).name.startswith(("utf-16", "utf-32")) or b"\x00" in data:
        return
    try:
        data.decode("utf-8")
        advice = "it reads as UTF-8: leave input.encoding out"
    except UnicodeDecodeError:
        hint = _encoding_hint(data)
        advice = f'try input.encoding = "{hint}"' if hint else "which encoding wrote it?"
    raise InputFileError(shown, f"is not {encoding}: it has no zero byte, which every line end there has; {advice}")


# A word holding a byte over 0x7f: what a person would recognise, shown both ways.
_HIGH_WORD = re.compile(rb"[^\s,;|\"']*[\x80-\xff][^\s,;|\"']*")


def _check_not_utf8(shown: str, data: bytes, encoding: str) -> None:
    """Refuse UTF-8 text a job names another encoding for (last month's export was cp1252, this one is not): read
    so, every accented name would be sent garbled (Renée as RenÃ©e). Text in a one-byte encoding whose every high
    byte happens to make UTF-8 is next to unheard of in a contacts list."""
    if codecs.lookup(encoding).name.startswith(("utf-8", "utf-16", "utf-32")):
        return  # UTF-8 by another name (cp65001, U8) is right; a wide encoding has its own check
    word = _HIGH_WORD.search(data)
    if word is None or not _reads_as_utf8(data):
        return
    written, garbled = word[0].decode("utf-8", errors="replace"), word[0].decode(encoding, errors="replace")
    raise InputFileError(
        shown,
        f"is UTF-8, not {encoding}: read as {encoding}, {written!r} would be sent as {garbled!r}; "
        "leave input.encoding out",
        line=_line_of(data, "utf-8", word.start()),
    )


def _reads_as_utf8(data: bytes) -> bool:
    """Whether ``data`` is valid UTF-8, checked by polars (no decoded copy of the file is kept)."""
    try:
        pl.Series([data], dtype=pl.Binary).cast(pl.String)
    except pl.exceptions.PolarsError:
        return False
    return True


def as_utf8(shown: str, data: bytes, encoding: str, *, checked_later: bool = False) -> bytes:
    """The text as UTF-8 bytes without a BOM and with LF or CRLF line ends, or the line that is not in ``encoding``.

    A byte order mark decides the encoding: no other encoding's text starts with one. ``checked_later``: the
    caller's reader refuses what is not UTF-8 and then calls :func:`check_utf8` to name the line, so bytes that
    came as UTF-8 are not checked here too (a million-row file's second pass over every byte).
    """
    _refuse_other_formats(shown, data)
    for bom, marked in _BOMS:
        if data.startswith(bom):
            encoding, data = marked, data[len(bom) :]
            break
    else:
        if _is_utf8(encoding):
            encoding = _utf16_without_bom(data) or encoding
    if not _is_utf8(encoding):
        _check_wide(shown, data, encoding)
        _check_not_utf8(shown, data, encoding)
        try:
            data = data.decode(encoding).encode("utf-8")
        except UnicodeDecodeError as exc:
            raise _decode_error(shown, data, encoding, exc) from None
        except UnicodeEncodeError as exc:
            # raw_unicode_escape, unicode_escape and utf-7 can spell a lone surrogate, which is no character.
            raise InputFileError(shown, f"read as {encoding}, it is not text ({exc.reason})") from None
        data = data.removeprefix(_BOM)  # "utf-16" and the like keep no mark, but "utf-8-sig"-like names might
    elif not checked_later:
        # Text decoded from another encoding is UTF-8 by construction: only bytes that came as UTF-8 are checked.
        check_utf8(shown, data)
    nul = data.find(b"\x00")
    if nul >= 0:
        if checked_later:
            check_utf8(shown, data)  # what is not UTF-8 is named first, as when it is checked here
        raise InputFileError(
            shown,
            "holds a zero byte, so it is not a text file (a workbook? export it as CSV)",
            line=_line_of(data, "utf-8", nul),
        )
    if data[-64:].rstrip(b"\r\n").endswith(_DOS_EOF):  # the tail only: a million-row file is not copied to look
        # DOS's end-of-file mark, which old exporters still write last: no character of the last cell or line.
        data = data.rstrip(b"\r\n").rstrip(_DOS_EOF) + b"\n"
    if b"\r" in data and data.count(b"\r") != data.count(b"\r\n"):
        # A CR alone ends a line (old Mac, some Excel exports); polars and csv only know LF and CRLF.
        data = re.sub(rb"\r(?!\n)", b"\n", data)
    return data
