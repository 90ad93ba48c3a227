"""What the history tests share: a wall clock they move by hand, a day in seconds, and a second Flow."""

from __future__ import annotations

__all__ = ["DAY", "OTHER_FLOW", "Clock"]

OTHER_FLOW = "FW" + "f" * 32
DAY = 86400.0


class Clock:
    """A wall clock the test moves by hand."""

    def __init__(self) -> None:
        """Start at a fixed moment (2027-01-15), whatever today is."""
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        """The moment the test has set."""
        return self.now
