"""Contact addresses: E.164 on a vectorized fast path, ``phonenumbers`` for the rest.

Studio accepts phone numbers in E.164, ``whatsapp:+E164``, ``client:name`` and SIP
addresses (``name@company.com``). Anything else is parsed with ``phonenumbers``
(optionally with a default region) and either normalized to E.164 or given a reason.
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation

import phonenumbers
import polars as pl

__all__ = ["E164", "mask", "normalize", "normalize_one"]

E164 = r"^\+(?:1[2-9][0-9]{2}[2-9][0-9]{6}|[2-9][0-9]{7,14})$"
_CHANNEL = r"^(?:whatsapp:\+[1-9][0-9]{6,14}|client:[A-Za-z0-9_.\-]+|(?:sip:)?[^@\s:]+@[^@\s]+)$"
_SCIENTIFIC = re.compile(r"^[0-9](?:\.[0-9]+)?[eE]\+?[0-9]+$")
_PARSE_REASONS = {
    phonenumbers.NumberParseException.INVALID_COUNTRY_CODE: "no country code (set mapping.default_region)",
    phonenumbers.NumberParseException.NOT_A_NUMBER: "not a phone number",
    phonenumbers.NumberParseException.TOO_SHORT_AFTER_IDD: "too short",
    phonenumbers.NumberParseException.TOO_SHORT_NSN: "too short",
    phonenumbers.NumberParseException.TOO_LONG: "too long",
}


def normalize_one(value: str, default_region: str | None) -> tuple[str | None, str | None]:
    """Normalize one address the slow way: ``(address, None)`` or ``(None, reason)``."""
    text = value.strip()
    if _SCIENTIFIC.match(text):
        # Spreadsheets turn 14155550100 into 1.41555501E10; recover the digits when exact.
        try:
            number = Decimal(text)
        except InvalidOperation:
            number = Decimal(0)
        if number == number.to_integral_value() and number > 0:
            text = str(int(number))
    candidates = [text]
    if default_region is None and text.isdigit():
        # Without a region, a bare run of digits is most likely E.164 missing its '+'.
        candidates = ["+" + text]
    reason = "not a valid phone number"
    for candidate in candidates:
        try:
            parsed = phonenumbers.parse(candidate, default_region)
        except phonenumbers.NumberParseException as exc:
            reason = _PARSE_REASONS.get(exc.error_type, "not a phone number")
            continue
        if phonenumbers.is_valid_number(parsed):
            return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164), None
        reason = "not a valid phone number" + (
            f" for region {default_region}" if default_region and not candidate.startswith("+") else ""
        )
    return None, reason


def normalize(values: pl.Series, default_region: str | None, *, what: str = "To") -> pl.DataFrame:
    """Normalize a column of addresses.

    Returns a frame with ``address`` (the value to send, or the input as given when
    it cannot be used) and ``reason`` (null when the address is usable).
    """
    text = values.cast(pl.String).str.strip_chars()
    frame = pl.DataFrame({"raw": values.cast(pl.String), "text": text})
    frame = frame.with_columns(
        fast=pl.col("text").str.contains(E164) | pl.col("text").str.contains(_CHANNEL),
        empty=pl.col("text").is_null() | (pl.col("text") == ""),
    )
    slow_mask = ~frame["fast"] & ~frame["empty"]
    address = frame["text"].to_list() if slow_mask.any() else None
    reasons: list[str | None] = [None] * frame.height
    if address is not None:
        cache: dict[str, tuple[str | None, str | None]] = {}
        for i in slow_mask.arg_true().to_list():
            raw = address[i]
            assert raw is not None
            if raw not in cache:
                cache[raw] = normalize_one(raw, default_region)
            normalized, reason = cache[raw]
            if normalized is None:
                reasons[i] = f"{what}: {reason}: {raw!r}"
            else:
                address[i] = normalized
        frame = frame.with_columns(text=pl.Series(address, dtype=pl.String))
    return frame.select(
        address=pl.when(pl.col("empty")).then(pl.col("raw")).otherwise(pl.col("text")),
        reason=pl.when(pl.col("empty"))
        .then(pl.lit(f"{what} is empty"))
        .otherwise(pl.Series("reason", reasons, dtype=pl.String)),
    )


def mask(address: str | None) -> str:
    """Hide the middle of an address for logs: ``+14155550100`` -> ``+1415***0100``."""
    if not address:
        return ""
    if "@" in address:
        name, _, host = address.partition("@")
        return f"{name[:2]}***@{host}"
    prefix = address[: address.find("+") + 1] if "+" in address else ""
    digits = address[len(prefix) :]
    if len(digits) <= 6:
        return prefix + "***"
    return f"{prefix}{digits[:4]}***{digits[-4:]}"
