"""How a SQLite checkpoint writes and reads its journal's lines: a group of intents or outcomes, or the whole
journal, in one statement.

``executemany`` steps SQLite once per line, and lets go of the GIL and takes it back around each
step. While the run's event loop wants the GIL too, every line became a hand-over between the two
threads: a group of 800 outcomes cost ~16 us a line and context switches by the thousand, against
~4 us in one step. So a group goes to SQLite as one JSON array, unpacked by ``json_each`` inside a
single statement (SQLite 3.33 or later with JSON: the statements below fall back to ``executemany``
where that is missing). The order of a group is kept: intents are inserted in the array's order, and
outcomes of a group that names a contact twice are written one by one, in order. The run's results read
the whole journal back the same way: one JSON array per column instead of a Python tuple per line.
"""

from __future__ import annotations

import itertools
import json
import operator
import sqlite3
from collections.abc import Iterable, Sequence

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
# ?1: the lines as a JSON array of [contact, row, to, from, params_hash, marker, variant]; ?2-?4 the group's.
# "WHERE true": an upsert's SELECT needs one, or its ON is read as a join's.
_INTENTS = (
    f"INSERT INTO journal ({_INTENT_COLUMNS}) SELECT "  # noqa: S608 - constant column names
    + ", ".join(f"json_extract(value, '$[{i}]')" for i in range(6))
    + f", ?2, 'intent', ?3, ?4, json_extract(value, '$[6]') FROM json_each(?1) WHERE true {_ON_CONFLICT}"
)


def _at(i: int) -> str:
    return f"json_extract(o.value, '$[{i}]')"


# A pending or waiting_active outcome withdraws the intent (its request made no run): its stamps cleared, so a
# later send's intent is stamped anew, not with the time of a request weeks before.
_OUTCOME = (
    "UPDATE journal SET state = ?, sid = ?, http_status = ?, error_code = ?, "
    "error_message = ?, attempts = ?, completed_at = ?, ended_sid = COALESCE(?, ended_sid), "
    "intent_at = CASE WHEN ? IN ('pending', 'waiting_active') THEN NULL ELSE intent_at END, "
    "intent_twilio_at = CASE WHEN ? IN ('pending', 'waiting_active') THEN NULL ELSE intent_twilio_at END "
    "WHERE contact = ?"
)
_OUTCOMES = (
    f"UPDATE journal SET state = {_at(0)}, sid = {_at(1)}, http_status = {_at(2)}, error_code = {_at(3)}, "  # noqa: S608 - constants
    f"error_message = {_at(4)}, attempts = {_at(5)}, completed_at = {_at(6)}, "
    f"ended_sid = COALESCE({_at(7)}, journal.ended_sid), "
    f"intent_at = CASE WHEN {_at(0)} IN ('pending', 'waiting_active') THEN NULL ELSE journal.intent_at END, "
    f"intent_twilio_at = CASE WHEN {_at(0)} IN ('pending', 'waiting_active') THEN NULL "
    "ELSE journal.intent_twilio_at END "
    f"FROM json_each(?) AS o WHERE journal.contact = {_at(8)}"
)
# A sent outcome, nearly every line's: no withdrawal's cases.
_SENT = (
    f"UPDATE journal SET state = '{RowState.SENT.value}', sid = ?, http_status = ?, error_code = ?, "  # noqa: S608 - a constant
    "error_message = ?, attempts = ?, completed_at = ?, ended_sid = COALESCE(?, ended_sid) WHERE contact = ?"
)
_SENTS = (
    f"UPDATE journal SET state = '{RowState.SENT.value}', sid = {_at(0)}, http_status = {_at(1)}, "  # noqa: S608 - a constant
    f"error_code = {_at(2)}, error_message = {_at(3)}, attempts = {_at(4)}, completed_at = {_at(5)}, "
    f"ended_sid = COALESCE({_at(6)}, journal.ended_sid) FROM json_each(?) AS o WHERE journal.contact = {_at(7)}"
)
# A sent outcome with no error and no run ended before it: nearly every line's. Each json_extract parses the line
# again (~0.2 us), so a group of these sends only what varies: a third less SQLite time per line.
_PLAIN_SENTS = (
    f"UPDATE journal SET state = '{RowState.SENT.value}', sid = {_at(0)}, http_status = {_at(1)}, "  # noqa: S608 - a constant
    f"error_code = NULL, error_message = NULL, attempts = {_at(2)}, completed_at = {_at(3)} "
    f"FROM json_each(?) AS o WHERE journal.contact = {_at(4)}"
)

# An outcome's values for each statement, read in C (the state as itself: a StrEnum is its text, in SQL and JSON).
_OUTCOME_VALUES = operator.attrgetter(
    "state", "sid", "http_status", "error_code", "error_message", "attempts", "completed_at", "ended_sid", "contact"
)
_SENT_VALUES = operator.attrgetter(
    "sid", "http_status", "error_code", "error_message", "attempts", "completed_at", "ended_sid", "contact"
)


def writes_in_one_step(conn: sqlite3.Connection) -> bool:
    """Whether this SQLite takes a group in one statement: JSON (``json_each``) and ``UPDATE ... FROM`` (3.33)."""
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
        lines = [[i.contact, i.row, i.to, i.from_, i.params_hash, i.marker, i.variant] for i in intents]
        conn.execute(_INTENTS, (json.dumps(lines), input_digest, at, twilio_at))
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
        # UPDATE ... FROM takes one line of the array per contact, whichever: a contact named twice goes in order.
        if one_step and len({line[-1] for line in group}) == len(group):
            if sent and all(line[2] is None and line[3] is None and line[6] is None for line in group):
                # ended_sid = COALESCE(NULL, ended_sid) leaves it as it is: the plain statement does not touch it.
                plain = [(sid, status, attempts, at, contact) for sid, status, _, _, attempts, at, _, contact in group]
                conn.execute(_PLAIN_SENTS, (json.dumps(plain),))
            else:
                conn.execute(_SENTS if sent else _OUTCOMES, (json.dumps(group),))
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
