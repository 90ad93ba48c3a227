"""What every database reader refuses alike: a column it cannot hold, a name used twice, a Rust panic.

A query's result reaches polars through Rust libraries (the ADBC driver's Arrow, connectorx, polars itself)
that panic on values they cannot convert (PostgreSQL's ``'infinity'`` date, MariaDB's ``'0000-00-00'``).
Such a column is refused by its name before it is converted where the reader can see it coming; a panic
that still happens is caught and becomes one line too, its Rust message and backtrace kept off stderr.
"""

from __future__ import annotations

import os
import re
import sys
import tempfile
import threading
from collections import Counter
from collections.abc import Iterable, Iterator
from contextlib import contextmanager

import polars as pl

from ..errors import InputFileError

__all__ = ["QUERY_NAME", "TEXT_FIX", "decimals_as_text", "duplicated", "is_panic", "quiet_panics", "unreadable"]

QUERY_NAME = "input.query"
TEXT_FIX = "cast it to text in the query (or leave it out)"
_PANIC_START = re.compile(rb"\nthread '[^']*'(?: \(\d+\))? panicked at ")


def unreadable(column: str, what: str, fix: str = TEXT_FIX) -> InputFileError:
    """The one line for a result column that cannot be read as it is: what it holds, and what to do."""
    return InputFileError(QUERY_NAME, f"{what}; {fix}", column=column)


def duplicated(names: Iterable[str]) -> InputFileError | None:
    """The one line for a result with two columns of one name (neither could be told from the other), or None."""
    twice = [name for name, count in Counter(names).items() if count > 1]
    if not twice:
        return None
    return unreadable(
        twice[0],
        "the query returns two columns of this name, so a mapping could not tell which one it names",
        "give each its own name in the query (`select t.phone, u.phone as other_phone …`)",
    )


def is_panic(exc: BaseException) -> bool:
    """Whether ``exc`` is a Rust panic surfacing through pyo3 (``PanicException`` derives from BaseException)."""
    return type(exc).__name__ == "PanicException"


@contextmanager
def quiet_panics() -> Iterator[None]:
    """Run the body with file descriptor 2 caught, then write back what it printed, less a Rust panic's report.

    Rust's default panic hook writes its message (and, under ``RUST_BACKTRACE``, a backtrace) straight to
    the descriptor, where no Python handler can reach it; the panic itself becomes a Python exception the
    caller turns into one line, which those lines would otherwise bury.
    """
    global _catching  # noqa: PLW0603 - one descriptor 2 per process, so one catch at a time
    with _catch_lock:
        first, _catching = _catching == 0, _catching + 1
    try:
        if first:
            with _caught():
                yield
        else:
            # Another thread's read is catching descriptor 2 already: two catches left in the wrong order would
            # leave descriptor 2 on a deleted file, and every later error unseen.
            yield
    finally:
        with _catch_lock:
            _catching -= 1


_catch_lock = threading.Lock()
_catching = 0


@contextmanager
def _caught() -> Iterator[None]:
    """Descriptor 2 caught for the body, then what it printed written back, less a Rust panic's report."""
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):
        yield  # no descriptor 2 to catch (a closed stderr): nothing would show anyway
        return
    with tempfile.TemporaryFile() as caught:
        os.dup2(caught.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            caught.seek(0)
            printed = b"\n" + caught.read()
            kept = _PANIC_START.split(printed, maxsplit=1)[0][1:]
            if kept:
                os.write(2, kept)


def decimals_as_text(frame: pl.DataFrame) -> tuple[pl.DataFrame, frozenset[str]]:
    """Decimal columns as their exact text (``12.50``, as a file would hold it), and which they were."""
    decimals = [c for c, dtype in frame.schema.items() if isinstance(dtype, pl.Decimal)]
    return frame.with_columns(pl.col(c).cast(pl.String) for c in decimals), frozenset(decimals)
