"""Time as the journal and results write it: ISO 8601, UTC, milliseconds, a trailing ``Z``."""

from __future__ import annotations

from datetime import UTC, datetime

__all__ = ["iso_ms", "parse_iso"]


def iso_ms(moment: datetime) -> str:
    """``2026-11-25T17:10:02.123Z``."""
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse_iso(text: str) -> datetime:
    """The inverse of :func:`iso_ms` (any ISO 8601 with an offset or ``Z``), as aware UTC."""
    parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).astimezone(UTC)
