"""What the journal already says of the plan's contacts, read once as columns when a run starts.

A resumed million-row job reads its journal's contacts and states in one go (a fraction of a second)
and answers every question of the start from that one frame: how many are done, sent, failed, reached
for an earlier input, and which are still to send.
"""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

from ..checkpoint import CheckpointStore, reached_by_another_list
from ..plan import params_hash
from ..states import REACHED, RowState
from .schedule import with_states

__all__ = ["Known"]


def _values(states: frozenset[RowState]) -> list[str]:
    return sorted(s.value for s in states)


@dataclass(frozen=True)
class Known:
    """The plan's sendable rows with their contact's journal line (``state``, ``input``; null: no line), as read
    at one moment."""

    sendable: pl.DataFrame

    @classmethod
    def read(cls, cp: CheckpointStore, plan: pl.DataFrame, lines: pl.DataFrame | None = None) -> Known:
        """The journal's states (``lines``, if read since the run opened it: only the run writes to it) joined
        to the plan."""
        return cls(with_states(plan, cp.states() if lines is None else lines))

    def count(self, states: frozenset[RowState]) -> int:
        """Sendable rows whose contact's line is in one of ``states``."""
        return int(self.sendable.get_column("state").is_in(_values(states)).sum())

    def unrelated(self, plan: pl.DataFrame, lines: pl.DataFrame) -> int:
        """The checkpoint's ``reached_by_another_list`` of ``plan`` and ``lines`` (its journal's contacts and
        states), asked only when no contact to send has a line: 0 at once for nearly every run."""
        states = self.sendable.get_column("state")
        if states.len() == 0 or states.is_not_null().any():
            return 0
        return reached_by_another_list(plan, lines)

    def reached_for_another_input(self, input_digest: str) -> bool:
        """Whether a sendable row's contact was reached by a run for another input (a re-exported list)."""
        # ``input IS NOT digest``: a line with no digest (an older release's) counts as another input's.
        other = pl.col("input").cast(pl.String).ne_missing(input_digest)
        return bool(self.sendable.select((pl.col("state").is_in(_values(REACHED)) & other).any()).item())

    @staticmethod
    def changed_since(plan: pl.DataFrame, finals: pl.DataFrame) -> tuple[int, list[str]]:
        """Rows to send whose contact a run for another input reached (``finals``: contact, params_hash): how many,
        and the addresses of those that now carry other Parameters."""
        rows = plan.filter(pl.col("status") == "pending").join(
            finals.select("contact", pl.col("params_hash").alias("was")), on="contact", how="inner"
        )
        changed = [to for to, p, was in rows.select("to", "parameters", "was").iter_rows() if params_hash(p) != was]
        return rows.height, changed

    def earlier(self, cp: CheckpointStore, plan: pl.DataFrame, input_digest: str) -> tuple[int, int]:
        """Sendable rows whose contact a run for an earlier input reached, and how many now carry other Parameters."""
        if not self.reached_for_another_input(input_digest):
            return 0, 0
        # Rare (a re-exported list): only then are the Parameters' hashes read.
        reached, changed = self.changed_since(plan, cp.reached_for_other_input(input_digest))
        return reached, len(changed)
