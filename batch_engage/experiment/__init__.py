"""Variants and holdouts: who gets which variant (a pure function of salt and contact), and the statistics to compare.

It sits beside the job: it imports only the job and the ground modules, so planning, the run
and the report can all use it.
"""

from .assign import VARIANT_COLUMN, assign, assign_frame, position, split
from .stats import Z95, Difference, Rate, difference, rate, wilson

__all__ = [
    "VARIANT_COLUMN",
    "Z95",
    "Difference",
    "Rate",
    "assign",
    "assign_frame",
    "difference",
    "position",
    "rate",
    "split",
    "wilson",
]
