"""One contact on its way through dispatch: what is sent, the marker that proves the run is ours, its intent line."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime

from ..checkpoint import Intent
from ..plan import contact_hash, params_hash

__all__ = ["Item", "make_marker"]


@dataclass
class Item:
    """One contact on its way: what to send, and what happened to it so far."""

    row: int
    contact: str
    to: str
    from_: str
    parameters: str | None
    marker: str | None = None
    attempts: int = 0
    backoff: float = 0.0
    intent_at: str | None = None
    intent_twilio: datetime | None = None
    zones: str | None = None
    variant: str | None = None
    flow: str | None = None  # the variant's Flow SID (None: the job's)

    def body(self, marker_key: str) -> str | None:
        """The Parameters to send: the row's, with the marker added."""
        if not marker_key or self.marker is None:
            return self.parameters
        member = f"{json.dumps(marker_key)}:{json.dumps(self.marker)}"
        if not self.parameters or self.parameters == "{}":
            return "{" + member + "}"
        return self.parameters[:-1] + "," + member + "}"

    def intent(self) -> Intent:
        """The journal's intent line for this contact."""
        return Intent(
            self.contact, self.row, self.to, self.from_, params_hash(self.parameters), self.marker, self.variant
        )


def make_marker(token: str, contact: str) -> str:
    """``<checkpoint token>:<contact hash>``: names this job's checkpoint and the person, never a row number."""
    return f"{token}:{contact_hash(contact)}"
