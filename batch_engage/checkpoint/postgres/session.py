"""A PostgreSQL checkpoint's one connection: statements in transactions, a lost session as one line, and the
journal's read queries on top of it."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from typing import Any

import polars as pl
import psycopg

from ...errors import TryLater
from ...postgres import PgLocation
from ...states import BLOCKED, OPEN, REACHED, RowState, sql_list
from ..model import contacts_from_text, journal_frame, reached_frame, states_from_text
from .tables import Connection, journal_sql

__all__ = ["PgSession"]


class PgSession:
    """The connection a checkpoint holds, and what reads its journal through it."""

    location: PgLocation
    path: str
    meta: dict[str, str]
    _conn: Connection
    _db_lock: threading.Lock

    @contextlib.contextmanager
    def _db(self) -> Iterator[None]:
        """Hold the connection; a lost session is a one-line ``TryLater`` (exit 75): its lock is gone too."""
        with self._db_lock:
            try:
                yield
            except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
                reason = " ".join(str(exc).split()) or type(exc).__name__
                raise TryLater(
                    f"{self.path}: lost the connection to the checkpoint's database ({reason}); this run stops "
                    "and holds the job no more. Run the same command again: it settles what was in flight."
                ) from None

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[psycopg.Cursor[tuple[Any, ...]]]:
        with self._db(), self._conn.transaction(), self._conn.cursor() as cur:
            cur.execute("SET LOCAL synchronous_commit = on")
            yield cur

    def _statement(self, sql: str, params: tuple[Any, ...], *, durable: bool = True) -> list[tuple[Any, ...]]:
        """One statement in its own transaction.

        ``durable=False`` returns before the server has flushed its WAL to disk
        (``synchronous_commit = off``): only a *server* crash in the next fraction of a
        second can lose the write. That is for outcomes, which a crash may lose anyway
        (they are grouped) and reconciliation recovers; intents are always durable.
        """
        with self._db(), self._conn.cursor(binary=True) as cur:
            if durable:
                with self._conn.transaction():
                    cur.execute("SET LOCAL synchronous_commit = on")
                    cur.execute(sql, params)
            else:
                cur.execute(sql, params)  # the session's default: synchronous_commit = off
            return cur.fetchall() if cur.description else []

    def _sql(self, text: str) -> str:
        return self.location.sql(text)

    # -- reading the journal ---------------------------------------------------------

    def _select(self, condition: str = "") -> pl.DataFrame:
        with self._db():
            rows = self._conn.execute(journal_sql(self.location, condition), (self.location.key,)).fetchall()
        return journal_frame(rows)

    def journal(self) -> pl.DataFrame:
        """Every journal line as a frame (contacts never sent are absent)."""
        return self._select()

    def result_lines(self) -> pl.DataFrame:
        """The journal's lines for the run's results table: the whole journal, as :meth:`journal` reads it."""
        return self._select()

    def open_lines(self) -> pl.DataFrame:
        """The lines a run still has to act on (``intent``, ``uncertain``, ``pending``), in full."""
        return self._select(f"AND state IN {sql_list(OPEN)}")

    def contacts_in(self, states: frozenset[RowState]) -> pl.Series:
        """Contacts whose line is in one of ``states``, as one text value polars splits (fast for millions)."""
        sql = self._sql(
            "SELECT string_agg(contact, chr(10)) FROM {s}.journal WHERE job = %s AND state = ANY(%s::text[])"
        )
        with self._db():
            row = self._conn.execute(sql, (self.location.key, sorted(s.value for s in states))).fetchone()
        return contacts_from_text(row[0] if row else None)

    def states(self) -> pl.DataFrame:
        """Every line's contact, state and input digest: texts polars splits (one ordering for contact and state,
        so their lines stay together; the few lines of another input than the last run's apart, with theirs)."""
        sql = self._sql(
            "SELECT string_agg(contact, chr(10) ORDER BY contact), string_agg(state, chr(10) ORDER BY contact), "
            "(SELECT string_agg(contact || chr(9) || coalesce(input, ''), chr(10)) FROM {s}.journal "
            "WHERE job = %s AND input IS DISTINCT FROM %s::text) FROM {s}.journal WHERE job = %s"
        )
        usual = self.meta.get("input")
        with self._db():
            row = self._conn.execute(sql, (self.location.key, usual, self.location.key)).fetchone()
        contacts, states, others = row or (None, None, None)
        return states_from_text(contacts, states, others, usual)

    def reached_for_other_input(self, input_digest: str) -> pl.DataFrame:
        """Contacts reached by runs for another input (an earlier export): contact, params_hash."""
        sql = self._sql(
            f"SELECT contact, params_hash FROM {{s}}.journal WHERE job = %s AND state IN {sql_list(REACHED)} "  # noqa: S608
            "AND input IS DISTINCT FROM %s"
        )
        with self._db():
            rows = self._conn.execute(sql, (self.location.key, input_digest)).fetchall()
        return reached_frame(rows)

    def sids_since(self, since_iso: str) -> set[str]:
        """SIDs of the runs contacts' requests made, whose intent or answer is at or after ``since_iso``.

        A line waiting for, or stopped by, an active run names that run, not one its request made: left out.
        """
        with self._db():
            rows = self._conn.execute(
                self._sql(
                    "SELECT sid FROM {s}.journal WHERE job = %s AND sid IS NOT NULL "  # noqa: S608 - constants
                    f"AND (completed_at >= %s OR intent_at >= %s) AND state NOT IN {sql_list(BLOCKED)}"
                ),
                (self.location.key, since_iso, since_iso),
            ).fetchall()
        return {str(r[0]) for r in rows}
