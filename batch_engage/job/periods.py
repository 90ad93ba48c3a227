"""A campaign per period: ``[job] id = "reminders-{date}"`` gives each day (week, month) its own checkpoint.

The period is read from the clock once, when the job is loaded, in ``send.default_timezone``
(or UTC), so a run that starts before midnight finishes in the period it started in.
"""

from __future__ import annotations

import re
from datetime import date, datetime, timedelta
from typing import Literal
from zoneinfo import ZoneInfo

__all__ = ["PLACEHOLDERS", "PeriodKind", "current_period", "period_kind", "previous_period", "render"]

PeriodKind = Literal["date", "week", "month"]
PLACEHOLDERS: tuple[PeriodKind, ...] = ("date", "week", "month")
_ANY = re.compile(r"\{([^{}]*)\}")
_SHAPES = {
    "date": re.compile(r"^\d{4}-\d{2}-\d{2}$"),
    "week": re.compile(r"^\d{4}-W\d{2}$"),
    "month": re.compile(r"^\d{4}-\d{2}$"),
}


def placeholders(template: str) -> list[str]:
    """The ``{name}`` placeholders a template holds, in order."""
    return _ANY.findall(template)


def period_kind(template: str) -> PeriodKind | None:
    """Which period a template names (at most one kind; the caller checks the names first)."""
    kinds = [name for name in PLACEHOLDERS if name in placeholders(template)]
    return kinds[0] if kinds else None


def current_period(kind: PeriodKind, now: datetime, timezone: str | None) -> str:
    """The period ``now`` falls in, as text: ``2026-11-25``, ``2026-W48`` or ``2026-11``."""
    local = now.astimezone(ZoneInfo(timezone)) if timezone else now
    return _format(kind, local.date())


def _format(kind: PeriodKind, day: date) -> str:
    if kind == "date":
        return day.isoformat()
    if kind == "week":
        year, week, _ = day.isocalendar()
        return f"{year}-W{week:02d}"
    return f"{day.year}-{day.month:02d}"


def is_future(kind: PeriodKind, period: str, now: datetime, timezone: str | None) -> bool:
    """Whether ``period`` comes after the one ``now`` falls in (the texts of one kind sort as time does)."""
    return period > current_period(kind, now, timezone)


def is_period(kind: PeriodKind, text: str) -> bool:
    """Whether ``text`` is a period of that kind (for ``--period``)."""
    return bool(_SHAPES[kind].match(text))


def previous_period(kind: PeriodKind, period: str) -> str:
    """The period before ``period``."""
    if kind == "date":
        return (date.fromisoformat(period) - timedelta(days=1)).isoformat()
    if kind == "week":
        year, week = int(period[:4]), int(period[6:])
        return _format("week", date.fromisocalendar(year, week, 1) - timedelta(days=7))
    year, month = int(period[:4]), int(period[5:])
    return f"{year - 1}-12" if month == 1 else f"{year}-{month - 1:02d}"


def render(template: str, values: dict[str, str]) -> str:
    """Fill ``{name}`` placeholders from ``values`` (names it lacks are left as they are)."""
    return _ANY.sub(lambda m: values.get(m.group(1), m.group(0)), template)
