"""What both contact-history stores share: a claim's owner, the contact a cap counts against, and their interface.

:mod:`.store` (SQLite) and :mod:`.postgres` (PostgreSQL) both build on
this, so neither imports the other.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

import polars as pl

from ..job import Cap

__all__ = ["OPT_OUT_REASON", "OPT_OUT_SCHEMA", "HistoryStore", "Reached", "is_database_url", "job_of", "owner"]

OPT_OUT_SCHEMA = {"to": pl.String, "sender": pl.String, "at": pl.Float64}
"""The columns of a history's opt-outs: the contact, the sender (number or Messaging Service), when."""

OPT_OUT_REASON = "opted out (21610)"
"""The ``error_message`` of a row planned ``suppressed`` because its contact opted out of its sender."""

_SEPARATOR = "#"


def owner(job: str, item: str) -> str:
    """A claim's owner, ``<job>#<item>``: the job may hold ``#`` (a path), the item may not."""
    if _SEPARATOR in item:
        raise ValueError(f"a history item may not hold {_SEPARATOR!r}: {item!r}")
    return f"{job}{_SEPARATOR}{item}"


def job_of(claim_owner: str) -> str:
    """The job part of an owner made by :func:`owner` (everything before its last ``#``)."""
    return claim_owner.rpartition(_SEPARATOR)[0]


def is_database_url(path: str | Path) -> bool:
    """Whether a ``history.path`` names a PostgreSQL database rather than a SQLite file."""
    return str(path).startswith(("postgresql://", "postgres://", "env:"))


@dataclass(frozen=True)
class Reached:
    """The earlier contact that a cap counts against."""

    at: float
    sid: str | None
    flow_sid: str

    def describe(self, cap: Cap) -> str:
        """The reason a row is capped, for ``error_message``."""
        when = datetime.fromtimestamp(self.at, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
        return f"contacted at {when} ({self.sid or 'run in progress'}) within the cap {cap.text}"


class HistoryStore(Protocol):
    """What the runner and the API need from a contact history, whichever database holds it."""

    def check(
        self, to: str, flow_sid: str, cap: Cap | None, flow_cap: Cap | None, *, job: str | None = None
    ) -> tuple[Reached, Cap] | None:
        """The contact that blocks ``to`` under the caps, if any (read only); ``job``'s own contacts don't count."""

    def claim(
        self, to: str, flow_sid: str, owner: str, cap: Cap | None, flow_cap: Cap | None, *, refresh: bool = True
    ) -> tuple[Reached, Cap] | None:
        """Atomically check the caps and record an intent to contact ``to``; return the blocker if capped.

        An owner's claim already there moves to now, unless ``refresh`` is False (then it stays as first made).
        """

    def settle(self, owner: str, sid: str | None) -> None:
        """The claim's answer: a SID makes it a contact; None withdraws it (nothing was sent)."""

    def recent_addresses(self, seconds: float) -> set[str]:
        """Every address contacted (or claimed) within the last ``seconds``."""

    def record(self, rows: Iterable[tuple[str, str, str | None, float]]) -> int:
        """Add past contacts ``(to, flow_sid, sid, at)`` not already there (the same run's SID); return how many."""

    def stats(self) -> pl.DataFrame:
        """Contacts reached per flow per day."""

    def add_opt_outs(self, rows: Iterable[tuple[str, str, float]]) -> int:
        """Record contacts who opted out ``(to, sender, at)``; return how many."""

    def opt_outs(self) -> pl.DataFrame:
        """Every recorded opt-out: ``to``, ``sender``, ``at``."""

    def forget(self, to: str) -> int:
        """Remove every opt-out of ``to``; return how many were removed."""

    def close(self) -> None:
        """Release the database."""

    def __enter__(self) -> HistoryStore: ...

    def __exit__(self, *exc: object) -> None: ...
