"""Durations in a job file: ``"2m"``, ``"1h30m"``, ``"20s"``, or a plain number of seconds."""

from __future__ import annotations

import math
import re
from typing import Any

from ..errors import ConfigError

__all__ = ["duration", "timing_fields"]

_DURATION = re.compile(r"^\s*(?:(\d+(?:\.\d+)?)h)?\s*(?:(\d+(?:\.\d+)?)m)?\s*(?:(\d+(?:\.\d+)?)s?)?\s*$")
# Beyond a week a wait is a typo, not a choice.
_LONGEST = 7 * 86_400.0


def duration(key: str, value: Any, *, lowest: float = 0.0) -> float:
    """``value`` (a number of seconds, or text such as ``"2m"``) as seconds; a ``ConfigError`` naming ``key``."""
    if isinstance(value, bool):
        seconds = math.nan
    elif isinstance(value, int | float):
        seconds = float(value)
    else:
        match = _DURATION.match(str(value))
        if match is None or not any(match.groups()):
            raise ConfigError(key, f"must be a duration such as '60s', '2m' or '1h30m', not {value!r}")
        hours, minutes, secs = (float(g) if g else 0.0 for g in match.groups())
        seconds = hours * 3600 + minutes * 60 + secs
    if not math.isfinite(seconds) or seconds < lowest or seconds > _LONGEST:
        raise ConfigError(key, f"must be a duration from {lowest:g}s to 7 days, not {value!r}")
    return seconds


def timing_fields(section: dict[str, Any], name: str, keys: tuple[str, ...]) -> dict[str, float]:
    """The duration ``keys`` of ``[name]`` that the job file sets, as seconds (the rest keep their defaults)."""
    return {key: duration(f"{name}.{key}", section[key]) for key in keys if key in section}
