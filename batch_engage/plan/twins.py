"""Bare digits that may be two numbers: nothing in the cell tells which was meant, so neither is sent.

A number column that dropped a leading zero, a number a zero away from another of its kind, and another country's
number missing its ``+`` where the region dials nationally with a ``0``. Each is ``invalid`` with both readings'
reason; the cell's own reading is :mod:`.numbers`'.
"""

from __future__ import annotations

import functools
import re

import phonenumbers

from .numbers import NUMBER_TYPES, PUNCTUATION, valid_e164

__all__ = ["LEADING_ZERO_REASON", "ZERO_TWIN_REASON", "second_reading"]

LEADING_ZERO_REASON = (
    "a number column may have dropped its leading zero, and both readings are numbers; export the column as text"
)
ZERO_TWIN_REASON = (
    "with a leading zero it is another number of the same kind, and a spreadsheet that read the column as numbers "
    "drops that zero; write it with its 0, or with its country code"
)

_BARE = re.compile(r"[0-9][0-9 ]*")
_MOBILE_KINDS = (phonenumbers.PhoneNumberType.MOBILE, phonenumbers.PhoneNumberType.FIXED_LINE_OR_MOBILE)


def second_reading(value: str, region: str | None, address: str, *, whole: bool) -> str | None:
    """Why ``value``, read as ``address``, is not sent: it may be another number too (None: it may not).

    ``whole``: the value came from a number column (or reads as one: ``4155550123.0``).
    """
    if whole and _lost_leading_zero(value, region, address):
        return LEADING_ZERO_REASON
    if _zero_twin(value, region, address):
        return ZERO_TWIN_REASON
    other = _foreign_reading(value, region, address)
    return None if other is None or region is None else _foreign_reason(region, address, other)


def _lost_leading_zero(digits: str, region: str | None, address: str) -> bool:
    """Whether a number column may have eaten a leading zero that made it another person's number.

    Where a national number keeps its leading zero (``06031234`` in GA is +241 06031234), a
    number column stores ``6031234``, which is also a valid number there: +241 6031234, someone else.
    """
    # A spaced or punctuated whole float (``603 12 34.0``) is held to the same rule as its digits.
    digits = PUNCTUATION.sub("", digits)
    if region is None or not digits.isdigit() or digits.startswith("0") or address == "+" + digits:
        # Read with its country code, every digit was there: no zero can have been dropped in front.
        return False
    with_zero = _with_zero(digits, region)
    return with_zero is not None and with_zero != address


def _with_zero(digits: str, region: str) -> str | None:
    """``0`` and ``digits`` read in ``region``, in E.164 when valid."""
    try:
        return valid_e164(phonenumbers.parse("0" + digits, region), region)
    except phonenumbers.NumberParseException:
        return None


@functools.lru_cache(maxsize=64)
def _kinds_keeping_zeros(region: str) -> tuple[re.Pattern[str], ...]:
    """``region``'s number patterns, each kind's, where a leading zero is part of the number (no trunk prefix
    strips it); none elsewhere, where ``0`` and the digits are one number."""
    metadata = phonenumbers.PhoneMetadata.metadata_for_region(region)
    if metadata is None or metadata.national_prefix is not None:
        return ()
    descs = (getattr(metadata, kind, None) for kind in NUMBER_TYPES)
    return tuple(re.compile(d.national_number_pattern) for d in descs if d is not None and d.national_number_pattern)


def _foreign_reading(text: str, region: str | None, address: str) -> str | None:
    """The other country's number bare digits also are, missing their ``+``, where ``region`` dials with a ``0``
    that they lack; None when they are no such number.

    In DE ``447911123456`` is +49 447911123456 read nationally (a landline), and +44 7911 123456 (a British mobile)
    read with its ``+`` put back: a list may hold both, and nothing in the cell tells which. Not in North America,
    whose national numbers are written without their ``1`` every day (``4155550100`` would read as Swiss).
    """
    metadata = phonenumbers.PhoneMetadata.metadata_for_region(region) if region else None
    if metadata is None or metadata.national_prefix != "0":
        return None
    # Digits (and spaces) only: "(45) 4724-4496" is spelled as its country writes it at home (in BR, with no 0).
    if not _BARE.fullmatch(text) or text.startswith("0") or address == "+" + (digits := text.replace(" ", "")):
        return None
    # Kinds apart: a list to message holds mobiles. A German mobile without its 0 (17472678374) stays German, though
    # +1 747… is a number too (refusing those refused a quarter of them); a landline read so, a mobile abroad, not.
    # Asked first: most numbers in a list are mobiles, and then nothing else is parsed.
    if _mobile(phonenumbers.parse(address, None)):
        return None
    try:
        other = phonenumbers.parse("+" + digits, None)
    except phonenumbers.NumberParseException:
        return None
    if other.country_code == metadata.country_code or not phonenumbers.is_valid_number(other) or not _mobile(other):
        return None
    return phonenumbers.format_number(other, phonenumbers.PhoneNumberFormat.E164)


def _mobile(number: phonenumbers.PhoneNumber) -> bool:
    """Whether a text message may reach ``number``: a mobile, or one its country does not tell from a landline."""
    return phonenumbers.number_type(number) in _MOBILE_KINDS


def _foreign_reason(region: str, address: str, other: str) -> str:
    """Why bare digits that :func:`_foreign_reading` reads two ways are not sent."""
    where = phonenumbers.region_code_for_country_code(phonenumbers.parse(other, None).country_code or 0)
    return (
        f"reads as {address} ({region}, its 0 dropped) and as {other} ({where}, its '+' dropped); "
        "write it with its 0, or with '+'"
    )


def _zero_twin(text: str, region: str | None, address: str) -> bool:
    """Whether bare digits, read as ``address``, are a leading zero away from another number of the same kind.

    In GA ``6031234`` and ``06031234`` are both mobiles: a CSV cell of the first may be the second after Excel read
    the column as numbers, and nothing in the cell tells which. Kinds apart (an Italian mobile ``3471234567``,
    a landline ``03471234567``), a list of one kind is taken as written. A pattern match per kind first; a parse
    only after one matches.
    """
    if region is None or not text.isdigit() or text.startswith("0"):
        return False
    patterns = _kinds_keeping_zeros(region)
    if not patterns or address != f"+{phonenumbers.country_code_for_region(region)}{text}":
        return False
    if not any(p.fullmatch(text) and p.fullmatch("0" + text) for p in patterns):
        return False
    twin = _with_zero(text, region)
    return twin is not None and twin != address
