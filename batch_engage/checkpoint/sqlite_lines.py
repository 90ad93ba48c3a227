"""How a SQLite checkpoint writes and reads its journal's lines: a group of intents or outcomes in a few
statements, the whole journal in one.

``executemany`` steps SQLite once per line, and lets go of the GIL and takes it back around each
step. While the run's event loop wants the GIL too, every line became a hand-over between the two
threads: a group of 800 outcomes cost ~16 us a line and context switches by the thousand. So a group
goes to SQLite as multi-row ``VALUES`` lists of up to 128 lines a statement (SQLite 3.33 or later, for
``UPDATE ... FROM``; the statements below fall back to ``executemany`` where that is missing): a handful
of steps a group, and no line parsed back out of text (a JSON array unpacked by ``json_each`` cost
SQLite a parse of the line for every column, a third of its time a line). The order of a group is
kept: intents are inserted in the group's order, and outcomes of a group that names a contact twice
are written one by one, in order. The run's results read the whole journal back in one statement: one
JSON array per column instead of a Python tuple per line.
"""

from __future__ import annotations

import functools
import itertools
import json
import operator
import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import polars as pl

from ..states import RowState
from .model import Intent, Outcome
from .schema import JOURNAL_COLUMNS

__all__ = [
    "RESULT_LINE_COLUMNS",
    "journal_in_one_step",
    "write_intent_lines",
    "write_outcome_lines",
    "writes_in_one_step",
]

_INTENT_COLUMNS = (
    "contact, row, to_addr, from_addr, params_hash, marker, input, state, intent_at, intent_twilio_at, variant"
)
# A line written again keeps its first intent stamps.
_ON_CONFLICT = (
    "ON CONFLICT(contact) DO UPDATE SET state = 'intent', row = excluded.row, "
    "to_addr = excluded.to_addr, from_addr = excluded.from_addr, params_hash = excluded.params_hash, "
    "marker = excluded.marker, input = excluded.input, variant = excluded.variant, "
    "intent_at = COALESCE(journal.intent_at, excluded.intent_at), "
    "intent_twilio_at = COALESCE(journal.intent_twilio_at, excluded.intent_twilio_at)"
)
_INTENT = f"INSERT INTO journal ({_INTENT_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, 'intent', ?, ?, ?) {_ON_CONFLICT}"  # noqa: S608 - constants


def _chunks(n: int) -> Iterator[tuple[int, int]]:
    """``(start, size)`` of the statements a group of ``n`` lines is written in: a few sizes only, so each size's
    statement is prepared once a connection (``sqlite3`` keeps them by text) and every group reuses it."""
    start = 0
    for size in _CHUNK_SIZES:
        while n - start >= size:
            yield start, size
            start += size


_CHUNK_SIZES = (128, 32, 8, 2, 1)


@functools.lru_cache(maxsize=len(_CHUNK_SIZES))
def _intents_sql(size: int) -> str:
    """Insert ``size`` intent lines: ?1-?3 the group's input digest and stamps, then each line's seven values."""
    rows = ", ".join(
        "({}, {}, {}, {}, {}, {}, ?1, 'intent', ?2, ?3, {})".format(*(f"?{4 + 7 * k + i}" for i in range(7)))
        for k in range(size)
    )
    return f"INSERT INTO journal ({_INTENT_COLUMNS}) VALUES {rows} {_ON_CONFLICT}"  # noqa: S608 - constants


# A pending or waiting_active outcome withdraws the intent (its request made no run): its stamps cleared, so a
# later send's intent is stamped anew, not with the time of a request weeks before.
_OUTCOME = (
    "UPDATE journal SET state = ?, sid = ?, http_status = ?, error_code = ?, "
    "error_message = ?, attempts = ?, completed_at = ?, ended_sid = COALESCE(?, ended_sid), "
    "intent_at = CASE WHEN ? IN ('pending', 'waiting_active') THEN NULL ELSE intent_at END, "
    "intent_twilio_at = CASE WHEN ? IN ('pending', 'waiting_active') THEN NULL ELSE intent_twilio_at END "
    "WHERE contact = ?"
)
# The same for a group, from its VALUES list ``o`` (column1 ... column9: _OUTCOME_VALUES' order).
_OUTCOMES = (
    "UPDATE journal SET state = o.column1, sid = o.column2, http_status = o.column3, error_code = o.column4, "
    "error_message = o.column5, attempts = o.column6, completed_at = o.column7, "
    "ended_sid = COALESCE(o.column8, journal.ended_sid), "
    "intent_at = CASE WHEN o.column1 IN ('pending', 'waiting_active') THEN NULL ELSE journal.intent_at END, "
    "intent_twilio_at = CASE WHEN o.column1 IN ('pending', 'waiting_active') THEN NULL "
    "ELSE journal.intent_twilio_at END "
    "FROM ({values}) AS o WHERE journal.contact = o.column9"
)
# A sent outcome, nearly every line's: no withdrawal's cases.
_SENT = (
    f"UPDATE journal SET state = '{RowState.SENT.value}', sid = ?, http_status = ?, error_code = ?, "  # noqa: S608 - a constant
    "error_message = ?, attempts = ?, completed_at = ?, ended_sid = COALESCE(?, ended_sid) WHERE contact = ?"
)
_SENTS = (
    f"UPDATE journal SET state = '{RowState.SENT.value}', sid = o.column1, http_status = o.column2, "  # noqa: S608 - a constant
    "error_code = o.column3, error_message = o.column4, attempts = o.column5, completed_at = o.column6, "
    "ended_sid = COALESCE(o.column7, journal.ended_sid) FROM ({values}) AS o WHERE journal.contact = o.column8"
)
# A sent outcome with no error and no run ended before it: nearly every line's. Only what varies is sent.
_PLAIN_SENTS = (
    f"UPDATE journal SET state = '{RowState.SENT.value}', sid = o.column1, http_status = o.column2, "  # noqa: S608 - a constant
    "error_code = NULL, error_message = NULL, attempts = o.column3, completed_at = o.column4 "
    "FROM ({values}) AS o WHERE journal.contact = o.column5"
)


@functools.lru_cache(maxsize=3 * len(_CHUNK_SIZES))
def _group_sql(statement: str, width: int, size: int) -> str:
    """``statement`` over a VALUES list of ``size`` lines of ``width`` values each."""
    line = "(" + ", ".join("?" * width) + ")"
    return statement.format(values="VALUES " + ", ".join([line] * size))


def _write_group(conn: sqlite3.Connection, statement: str, lines: Sequence[tuple[Any, ...]]) -> None:
    width = len(lines[0])
    for start, size in _chunks(len(lines)):
        values = list(itertools.chain.from_iterable(lines[start : start + size]))
        conn.execute(_group_sql(statement, width, size), values)


# An outcome's values for each statement, read in C (the state as itself: a StrEnum is its text in SQL).
_OUTCOME_VALUES = operator.attrgetter(
    "state", "sid", "http_status", "error_code", "error_message", "attempts", "completed_at", "ended_sid", "contact"
)
_SENT_VALUES = operator.attrgetter(
    "sid", "http_status", "error_code", "error_message", "attempts", "completed_at", "ended_sid", "contact"
)
_INTENT_VALUES = operator.attrgetter("contact", "row", "to", "from_", "params_hash", "marker", "variant")


def writes_in_one_step(conn: sqlite3.Connection) -> bool:
    """Whether this SQLite takes a group in a few statements (``UPDATE ... FROM``, 3.33) and reads the journal in
    one (JSON)."""
    if sqlite3.sqlite_version_info < (3, 33, 0):
        return False
    try:
        conn.execute("SELECT json_extract(value, '$[0]') FROM json_each('[[1]]')").fetchall()
    except sqlite3.Error:
        return False
    return True


def write_intent_lines(
    conn: sqlite3.Connection,
    intents: Sequence[Intent],
    *,
    input_digest: str | None,
    at: str,
    twilio_at: str | None,
    one_step: bool,
) -> None:
    """Write these intent lines (in the transaction the caller holds)."""
    if one_step:
        lines = list(map(_INTENT_VALUES, intents))
        for start, size in _chunks(len(lines)):
            values = [input_digest, at, twilio_at, *itertools.chain.from_iterable(lines[start : start + size])]
            conn.execute(_intents_sql(size), values)
        return
    rows = [
        (i.contact, i.row, i.to, i.from_, i.params_hash, i.marker, input_digest, at, twilio_at, i.variant)
        for i in intents
    ]
    conn.executemany(_INTENT, rows)


def write_outcome_lines(conn: sqlite3.Connection, outcomes: Iterable[Outcome], *, one_step: bool) -> None:
    """Write these outcomes, in order (in the transaction the caller holds)."""
    for sent, run in itertools.groupby(outcomes, key=_is_sent):
        values = _SENT_VALUES if sent else _OUTCOME_VALUES
        group = list(map(values, run))
        # UPDATE ... FROM takes one line of the list per contact, whichever: a contact named twice goes in order.
        if one_step and len({line[-1] for line in group}) == len(group):
            if sent and all(line[2] is None and line[3] is None and line[6] is None for line in group):
                # ended_sid = COALESCE(NULL, ended_sid) leaves it as it is: the plain statement does not touch it.
                plain = [(sid, status, attempts, at, contact) for sid, status, _, _, attempts, at, _, contact in group]
                _write_group(conn, _PLAIN_SENTS, plain)
            else:
                _write_group(conn, _SENTS if sent else _OUTCOMES, group)
        elif sent:
            conn.executemany(_SENT, group)
        else:
            conn.executemany(_OUTCOME, [(*line[:-1], line[0], line[0], line[-1]) for line in group])


RESULT_LINE_COLUMNS = (
    "contact",
    "state",
    "sid",
    "http_status",
    "error_code",
    "error_message",
    "attempts",
    "completed_at",
    "ended_sid",
    "input",
    "variant",
    "params_hash",
)
"""The journal columns a results table is built from (``results.build_results``): not the addresses, marker or
intent stamps, which are most of a line's bytes (``params_hash`` tells which of a contact's rows was sent)."""


def _column_arrays(names: Sequence[str]) -> str:
    # Every column aggregated alike, so the arrays line up whatever order SQLite reads the lines in.
    return f"SELECT {', '.join(f'json_group_array({name})' for name in names)} FROM journal"  # noqa: S608 - constants


_COLUMN_ARRAYS = _column_arrays(tuple(JOURNAL_COLUMNS))
_RESULT_ARRAYS = _column_arrays(RESULT_LINE_COLUMNS)


def journal_in_one_step(conn: sqlite3.Connection, *, for_results: bool = False) -> pl.DataFrame:
    """Every journal line as a frame, in row order (where :func:`writes_in_one_step` is true).

    ``for_results``: only :data:`RESULT_LINE_COLUMNS`, in no particular order (the results join them to the plan).
    """
    if for_results:
        arrays = conn.execute(_RESULT_ARRAYS).fetchone()
        named = zip(RESULT_LINE_COLUMNS, arrays, strict=True)
        return pl.DataFrame([pl.Series(n, json.loads(a), dtype=JOURNAL_COLUMNS[n]) for n, a in named])
    arrays = conn.execute(_COLUMN_ARRAYS).fetchone()
    columns = zip(JOURNAL_COLUMNS.items(), arrays, strict=True)
    return pl.DataFrame([pl.Series(name, json.loads(array), dtype=dtype) for (name, dtype), array in columns]).sort(
        "row", maintain_order=True
    )


def _is_sent(outcome: Outcome) -> bool:
    return outcome.state == RowState.SENT
