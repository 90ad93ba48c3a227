"""The send window as a value: local hours on allowed weekdays, open or not in a time zone at a moment."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from ..errors import ConfigError

__all__ = ["DAYS", "SendWindow", "parse_window", "valid_zone"]

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_WINDOW = re.compile(r"^\s*(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})\s*$")


@lru_cache(maxsize=1024)
def _zone(name: str) -> ZoneInfo:
    return ZoneInfo(name)


def valid_zone(name: str) -> bool:
    """True for an IANA time-zone name this machine knows."""
    try:
        _zone(name)
    except (ZoneInfoNotFoundError, ValueError):
        return False
    return True


@dataclass(frozen=True)
class SendWindow:
    """Local hours (``start`` inclusive, ``end`` exclusive) on the allowed weekdays."""

    start: time
    end: time
    days: frozenset[int] = frozenset(range(7))

    def open_in(self, zone: str, moment: datetime) -> bool:
        """Is the window open in ``zone`` at ``moment``?"""
        local = moment.astimezone(_zone(zone))
        return local.weekday() in self.days and self.start <= local.time().replace(tzinfo=None) < self.end

    def is_open(self, zones: Iterable[str], moment: datetime) -> bool:
        """Open in every one of ``zones`` at ``moment``."""
        return all(self.open_in(z, moment) for z in zones)

    def _starts(self, zone: str, moment: datetime, days: int) -> list[datetime]:
        tz = _zone(zone)
        today = moment.astimezone(tz).date()
        starts = []
        for offset in range(-1, days + 1):
            day: date = today + timedelta(days=offset)
            if day.weekday() in self.days:
                starts.append(datetime.combine(day, self.start, tzinfo=tz).astimezone(UTC))
        return starts

    def next_open(self, zones: tuple[str, ...], moment: datetime, *, horizon_days: int = 8) -> datetime | None:
        """The first moment at or after ``moment`` when the window is open in every zone (None: never)."""
        if self.is_open(zones, moment):
            return moment
        # The intersection of the zones' windows opens when the last of them opens,
        # so the answer is always one of the zones' local opening instants.
        candidates = sorted({s for z in zones for s in self._starts(z, moment, horizon_days) if s > moment})
        for candidate in candidates:
            if self.is_open(zones, candidate):
                return candidate
        return None


def parse_window(text: str, days: Iterable[str] | None, *, key: str = "send.window") -> SendWindow:
    """``"09:00-20:00"`` and ``["mon", …]`` as a ``SendWindow``."""
    match = _WINDOW.match(text)
    if match is None:
        raise ConfigError(key, f"must look like '09:00-20:00', not {text!r}")
    h1, m1, h2, m2 = (int(g) for g in match.groups())
    if not (h1 < 24 and m1 < 60 and h2 <= 24 and m2 < 60):
        raise ConfigError(key, f"is not a valid time range: {text!r}")
    start = time(h1, m1)
    end = time(23, 59, 59, 999999) if (h2, m2) == (24, 0) else time(h2, m2)
    if end <= start:
        raise ConfigError(key, "must end after it starts on the same day (e.g. '09:00-20:00')")
    allowed = frozenset(range(7))
    if days is not None:
        wrong = [d for d in days if d.lower()[:3] not in DAYS]
        if wrong:
            raise ConfigError("send.days", f"unknown day {wrong[0]!r} (use {', '.join(DAYS)})")
        allowed = frozenset(DAYS.index(d.lower()[:3]) for d in days)
    return SendWindow(start=start, end=end, days=allowed)
