"""Rates with their 95% intervals (Wilson), and the difference of two rates with its interval (Newcombe).

Wilson's score interval stays inside [0, 1] and behaves with small counts and rates near 0
or 1, where the textbook ``p ± 1.96·√(p(1-p)/n)`` does not. Newcombe's hybrid score method
(his method 10, 1998) builds the difference's interval from the two Wilson intervals.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = ["Z95", "Difference", "Rate", "difference", "rate", "wilson"]

Z95 = 1.959963984540054


@dataclass(frozen=True)
class Rate:
    """``count`` of ``total``, the share, and its 95% interval (None: no contacts to rate)."""

    count: int
    total: int
    value: float | None
    low: float | None
    high: float | None


@dataclass(frozen=True)
class Difference:
    """``second`` minus ``first``'s rate, with its 95% interval; ``excludes_zero`` when the two really differ."""

    value: float
    low: float
    high: float

    @property
    def excludes_zero(self) -> bool:
        """Whether the interval lies wholly above or wholly below zero."""
        return self.low > 0 or self.high < 0


def wilson(count: int, total: int, z: float = Z95) -> tuple[float, float]:
    """Wilson's score interval for ``count`` successes in ``total`` trials (``total`` > 0)."""
    p = count / total
    denominator = 1 + z * z / total
    centre = (p + z * z / (2 * total)) / denominator
    half = z * math.sqrt(p * (1 - p) / total + z * z / (4 * total * total)) / denominator
    return max(0.0, centre - half), min(1.0, centre + half)


def rate(count: int, total: int) -> Rate:
    """``count`` of ``total`` as a :class:`Rate` with its Wilson interval."""
    if total <= 0:
        return Rate(count, total, None, None, None)
    low, high = wilson(count, total)
    return Rate(count, total, count / total, low, high)


def difference(first: Rate, second: Rate) -> Difference | None:
    """``second - first`` with Newcombe's interval from the two Wilson intervals (None: a rate has no contacts)."""
    if first.value is None or second.value is None:
        return None
    assert first.low is not None and first.high is not None and second.low is not None and second.high is not None
    d = second.value - first.value
    low = d - math.sqrt((second.value - second.low) ** 2 + (first.high - first.value) ** 2)
    high = d + math.sqrt((second.high - second.value) ** 2 + (first.value - first.low) ** 2)
    return Difference(d, low, high)
