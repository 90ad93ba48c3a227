"""SMS segments by Twilio's rules: GSM-7 (160, 153 per part) or UCS-2 in UTF-16 code units (70, 67 per part).

Pure: a body in, a count out. What it relies on (twilio.com/docs/glossary/what-is-gsm-7-character-encoding,
.../what-is-ucs-2-character-encoding, 3GPP TS 23.038 for the tables):

* a body made only of GSM-7's basic table (1 each) and extension table (escape + character, 2 each)
  is sent as GSM-7: one segment up to 160 septets, else 153 per segment;
* any other character makes the whole body UCS-2: one segment up to 70 UTF-16 code units, else 67
  per segment; a character outside the Basic Multilingual Plane (most emoji) is 2 units.

Encoders never split an escape pair or a surrogate pair across two segments, so a part may hold
one unit less; counted that way here. Smart Encoding (a Messaging Service option that swaps curly
quotes and the like for GSM-7 ones) is not assumed: the count is then an upper bound, safe for pacing.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Final, Literal

__all__ = ["GSM_BASIC", "GSM_EXTENDED", "Encoding", "Segments", "count_segments"]

GSM_BASIC: Final = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
"""GSM-7's basic table: each character is one septet."""
GSM_EXTENDED: Final = frozenset("\f^{}\\[~]|€")
"""GSM-7's extension table: each character is an escape plus itself, two septets."""

Encoding = Literal["GSM-7", "UCS-2"]

_GSM_SINGLE, _GSM_PART = 160, 153
_UCS_SINGLE, _UCS_PART = 70, 67
# The arrival check counts a body per contact: one regular expression a question, not a Python step a character.
_NOT_GSM = re.compile("[^" + re.escape("".join(sorted(GSM_BASIC | GSM_EXTENDED))) + "]")
_EXTENDED = re.compile("[" + re.escape("".join(sorted(GSM_EXTENDED))) + "]")
_ASTRAL = re.compile("[\U00010000-\U0010ffff]")


@dataclass(frozen=True, slots=True)
class Segments:
    """A body's encoding, its length in that encoding's units, and the segments it takes."""

    encoding: Encoding
    units: int
    segments: int


def _split(sizes: list[int], single: int, part: int) -> int:
    """Segments for characters of these unit sizes: one if all fit, else parts never splitting a character."""
    total = sum(sizes)
    if total == 0:
        return 1 if sizes else 0
    if total <= single:
        return 1
    segments, used = 1, 0
    for size in sizes:
        if used + size > part:
            segments += 1
            used = 0
        used += size
    return segments


def count_segments(body: str) -> Segments:
    """The segments Twilio sends ``body`` in (an empty body: 0)."""
    if not body:
        return Segments("GSM-7", 0, 0)
    if _NOT_GSM.search(body) is None:
        encoding: Encoding = "GSM-7"
        wide, single, part = _EXTENDED, _GSM_SINGLE, _GSM_PART
    else:
        encoding, wide, single, part = "UCS-2", _ASTRAL, _UCS_SINGLE, _UCS_PART
    doubled = len(wide.findall(body))
    units = len(body) + doubled
    if units <= single:
        return Segments(encoding, units, 1)
    if not doubled:
        return Segments(encoding, units, math.ceil(units / part))
    # A two-unit character may not fit at the end of a part: only then do the parts need counting out.
    sizes = [2 if wide.match(c) else 1 for c in body]
    return Segments(encoding, units, _split(sizes, single, part))
