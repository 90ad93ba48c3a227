"""One contact on its way through dispatch: what is sent, the marker that proves the run is ours, its intent line."""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from datetime import datetime
from json.encoder import encode_basestring_ascii  # json.dumps of a str, without its checks

from ..checkpoint import Intent
from ..plan import contact_hash, params_hash

__all__ = ["Item", "make_marker"]

# One marker key per job, quoted for every row's body: once is enough.
_quoted = functools.lru_cache(maxsize=8)(json.dumps)


@dataclass(slots=True)
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
    ended_sid: str | None = None  # this job's earlier run, ended so that this contact could be sent
    note: str | None = None  # what its sent line says (why an earlier run was ended)
    waits: int = 0  # requests answered 429 or "an earlier run is active": they do not count against max_attempts
    unconnected: int = 0  # requests that never connected: they count here, never in a later run
    left: float | None = None  # when its latest possibly-sent request was answered (the run's monotonic clock)
    reintent: bool = False  # set aside after a 409: a new intent must be written before it is sent again
    variant: str | None = None
    flow: str | None = None  # the variant's Flow SID (None: the job's)

    def body(self, marker_key: str) -> str | None:
        """The Parameters to send: the row's, with the marker added."""
        if not marker_key or self.marker is None:
            return self.parameters
        member = f"{_quoted(marker_key)}:{encode_basestring_ascii(self.marker)}"
        if not self.parameters or self.parameters == "{}":
            return "{" + member + "}"
        return self.parameters[:-1] + "," + member + "}"

    @property
    def tries(self) -> int:
        """Attempts that count against ``max_attempts``: those not refused for the pace or for an earlier active run."""
        return self.attempts - self.waits

    def intent(self) -> Intent:
        """The journal's intent line for this contact."""
        return Intent(
            self.contact, self.row, self.to, self.from_, params_hash(self.parameters), self.marker, self.variant
        )


def make_marker(token: str, contact: str) -> str:
    """``<checkpoint token>:<contact hash>``: names this job's checkpoint and the person, never a row number."""
    return f"{token}:{contact_hash(contact)}"
