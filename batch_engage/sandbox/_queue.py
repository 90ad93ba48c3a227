"""Twilio's per-sender message queue, opt-outs and segments, as the sandbox models them.

Each sender (a From number or a Messaging Service) sends ``pace`` segments a second; what it
cannot send yet waits in its queue. A message that would wait longer than its validity period
is not sent and fails with 30036. A queue already holding more than ``limit`` seconds' worth
refuses a number's message (21611) or fails a service's (30001). A contact who opted out gets
21610. Sources: docs/api/errors/21611, 30001, 30036, 21610; support article 115002943027.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final

_GSM: Final = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
_GSM_EXT: Final = frozenset("\f^{}\\[~]|€")


def segments(body: str) -> int:
    """SMS segments of a body: GSM-7 160/153 (extension characters count 2), else UCS-2 70/67 UTF-16 units."""
    if all(c in _GSM or c in _GSM_EXT for c in body):
        units, single, part = sum(2 if c in _GSM_EXT else 1 for c in body), 160, 153
    else:
        units, single, part = sum(2 if ord(c) > 0xFFFF else 1 for c in body), 70, 67
    return 1 if units <= single else math.ceil(units / part)


@dataclass(frozen=True, slots=True)
class Fate:
    """What became of one outbound message: sent when, or failed with which code."""

    status: str
    error_code: int | None
    date_sent: datetime | None
    segments: int


ERROR_MESSAGES: Final = {
    21610: "Attempt to send to unsubscribed recipient",
    21611: "This 'From' number has exceeded the maximum number of queued messages",
    30001: "Queue overflow",
    30036: "Validity Period Expired",
}
"""The messages Twilio's error pages give these codes."""


class SenderQueues:
    """Every sender's queue: when it is next free, on Twilio's clock."""

    def __init__(self) -> None:
        """Start with every queue empty."""
        self._free_at: dict[str, datetime] = {}

    def enqueue(
        self, sender: str, created: datetime, units: int, *, pace: float, validity: float, limit: float
    ) -> Fate:
        """Queue one message of ``units`` segments created at ``created``; its fate."""
        free = max(self._free_at.get(sender, created), created)
        wait = (free - created).total_seconds()
        if wait > limit:
            code = 30001 if sender.startswith("MG") else 21611
            return Fate("failed", code, None, units)
        if wait > validity:
            return Fate("failed", 30036, None, units)
        self._free_at[sender] = free + timedelta(seconds=units / pace)
        return Fate("sent", None, free, units)
