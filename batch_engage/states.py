"""The states a contact's line in the journal can be in, named once.

::

    (no line) --intent committed--> intent --2xx---------------------> sent
                                        |----409 20409 / v1 hand-back--> already_active
                                        |----other 4xx-----------------> failed
                                        |----cap reached at send time--> capped
    (no line; the plan holds the experiment's holdout out) -----------> holdout
                                        |----never left (stop, 429)----> pending
                                        '----5xx / timeout / drop------> uncertain
    uncertain --run found, marker proven--> sent;  --not found--> pending
    (409 with [send] on_active = "wait" or "end") --> waiting_active --retried later--> intent ...

``waiting_active``: the contact sits in an earlier active run; nothing was created for it,
and a later try (this run's, or a resumed one's) sends it once that run has ended.

``intent`` and ``uncertain`` are *possibly sent*: nothing may send to that contact again
until reconciliation has looked for the run. ``pending`` lines are safe to send.
"""

from __future__ import annotations

from enum import StrEnum

__all__ = ["BLOCKED", "FINAL", "OPEN", "POSSIBLY_SENT", "REACHED", "RowState", "sql_list"]


class RowState(StrEnum):
    """A journal line's state (the results table shows the same words)."""

    INTENT = "intent"
    UNCERTAIN = "uncertain"
    PENDING = "pending"
    SENT = "sent"
    ALREADY_ACTIVE = "already_active"
    FAILED = "failed"
    CAPPED = "capped"
    WAITING_ACTIVE = "waiting_active"
    HOLDOUT = "holdout"


FINAL = frozenset({RowState.SENT, RowState.ALREADY_ACTIVE, RowState.FAILED, RowState.CAPPED, RowState.HOLDOUT})
"""States a run never acts on again (``holdout`` is the plan's: such a contact never gets a journal line)."""

OPEN = frozenset({RowState.INTENT, RowState.UNCERTAIN, RowState.PENDING, RowState.WAITING_ACTIVE})
"""States a run still has to act on."""

POSSIBLY_SENT = frozenset({RowState.INTENT, RowState.UNCERTAIN})
"""States whose request may have reached Twilio: reconcile before anything else."""

REACHED = frozenset({RowState.SENT, RowState.ALREADY_ACTIVE})
"""States in which the contact has a run: a re-exported list never sends to them again."""

BLOCKED = frozenset({RowState.ALREADY_ACTIVE, RowState.WAITING_ACTIVE})
"""States whose line's SID is the active run that stopped the request, not a run the request made."""


def sql_list(states: frozenset[RowState]) -> str:
    """The states as a SQL ``IN (...)`` list, in a stable order (they are constants, never input)."""
    return "(" + ", ".join(f"'{s.value}'" for s in sorted(states)) + ")"
