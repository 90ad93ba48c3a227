"""The statements a SQLite checkpoint writes its journal's lines with, and how an outcome's values are read for them."""

from __future__ import annotations

import operator

from ..states import RowState
from .model import Outcome

__all__ = ["INTENT", "OUTCOME", "OUTCOME_VALUES", "SENT", "SENT_VALUES", "is_sent"]

INTENT = (
    "INSERT INTO journal (contact, row, to_addr, from_addr, params_hash, marker, input, state, "
    "intent_at, intent_twilio_at, variant) VALUES (?, ?, ?, ?, ?, ?, ?, 'intent', ?, ?, ?) "
    "ON CONFLICT(contact) DO UPDATE SET state = 'intent', row = excluded.row, "
    "to_addr = excluded.to_addr, from_addr = excluded.from_addr, params_hash = excluded.params_hash, "
    "marker = excluded.marker, input = excluded.input, variant = excluded.variant, "
    "intent_at = COALESCE(journal.intent_at, excluded.intent_at), "
    "intent_twilio_at = COALESCE(journal.intent_twilio_at, excluded.intent_twilio_at)"
)
"""An intent line: a new contact's, or a line written again (its first intent stamps kept)."""

OUTCOME = (
    "UPDATE journal SET state = ?, sid = ?, http_status = ?, error_code = ?, "
    "error_message = ?, attempts = ?, completed_at = ?, ended_sid = COALESCE(?, ended_sid), "
    "intent_at = CASE WHEN ? = 'pending' THEN NULL ELSE intent_at END, "
    "intent_twilio_at = CASE WHEN ? = 'pending' THEN NULL ELSE intent_twilio_at END "
    "WHERE contact = ?"
)
"""Any outcome (a ``pending`` one withdraws the intent: its stamps cleared)."""

SENT = (
    f"UPDATE journal SET state = '{RowState.SENT.value}', sid = ?, http_status = ?, error_code = ?, "  # noqa: S608 - a constant
    "error_message = ?, attempts = ?, completed_at = ?, ended_sid = COALESCE(?, ended_sid) WHERE contact = ?"
)
"""A ``sent`` outcome, nearly every line's: :data:`OUTCOME` without the withdrawal's cases."""

# An outcome's parameters for each statement, read in C (the state as itself: a StrEnum binds as its text).
OUTCOME_VALUES = operator.attrgetter(
    "state", "sid", "http_status", "error_code", "error_message", "attempts", "completed_at", "ended_sid", "state",
    "state", "contact",
)  # fmt: skip
SENT_VALUES = operator.attrgetter(
    "sid", "http_status", "error_code", "error_message", "attempts", "completed_at", "ended_sid", "contact"
)


def is_sent(outcome: Outcome) -> bool:
    """Whether ``outcome`` is a ``sent`` line's (written with :data:`SENT`)."""
    return outcome.state == RowState.SENT
