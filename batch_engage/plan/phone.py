"""Contact addresses: E.164 on a vectorized fast path, ``phonenumbers`` for the rest.

Studio accepts phone numbers in E.164, ``whatsapp:+E164``, ``client:name`` and SIP
addresses (``name@company.com``) as To and From; a Messaging Service SID (``MG`` and
32 hex digits) as From only. Anything else is parsed with ``phonenumbers``
(optionally with a default region) and either normalized to E.164 or given a reason
naming the rule it broke (one value the slow way, and the rules both ways share, are in ``numbers``).

The fast path is one regular expression polars runs over the whole column. Its E.164
part is built from phonenumbers' own metadata (every region's number-type patterns),
so an E.164 value passes it exactly when ``phonenumbers.is_valid_number`` would say
yes, at a fraction of phonenumbers' ~12 µs a number. A value already in E.164 shape
(``+`` and digits) that it rejects is invalid without asking phonenumbers: its reason
(unknown country code, too long, not valid) comes from whole-column expressions too.
Only the distinct values in other shapes are handed to ``phonenumbers``.

What a spreadsheet did to a number is never guessed back: ``1.41555501E+10`` lost
digits, so it is invalid; ``4155550123.0`` (a number column) is read as its digits,
and one ``input.float_column`` log line says so; ``4155550123.5`` is invalid. A zero
fraction is taken off before anything else reads the value, whatever its decimal mark
and with or without ``+`` (``491712345684,0``, ``+491712345678.0``, ``0171 2345684.0``): read with the
fraction, its zeros would become digits of another person's number.
"""

from __future__ import annotations

import functools

import phonenumbers
import polars as pl
import structlog

from .masking import mask
from .numbers import (
    DECIMAL_REASON,
    MESSAGING_SERVICE_SID,
    SCIENTIFIC,
    SCIENTIFIC_REASON,
    SEPARATORS,
    SID_AS_TO,
    SPELLED_ZEROS,
    SPELLED_ZEROS_REASON,
    WHATSAPP,
    WHOLE_FLOAT_TEXT,
    ZERO_FRACTION,
    fast_path_pattern,
    normalize_one,
    region_code,
)
from .twins import second_reading

__all__ = ["MESSAGING_SERVICE_SID", "fast_path_pattern", "mask", "normalize", "normalize_one", "region_code"]

log = structlog.get_logger(__name__)

_NANP_NATIONAL = r"^1?([2-9][0-9]{9})$"  # phonenumbers reads these as +1 and the ten digits too
_E164_SHAPE = r"^\+[0-9]+$"
# A comma only: a dot is also a separator a number is spelled with, so a decimal's digits would read as one number.
_TWO_LONG_PARTS = r"^\+?[0-9]{7,},\+?[0-9]{7,}$"
_CODE_SAMPLE = 4096  # values the first look takes its country codes from
# phonenumbers refuses a national number longer than this (its _MAX_LENGTH_FOR_NSN) as too long.
_MAX_NSN_DIGITS = 17
_FLOAT_DIGITS_LIMIT = 1e17  # beyond this a float's digits are not the ones written, and Int64 would overflow


def _country_codes(text: pl.Series) -> frozenset[int]:
    """The country codes the values start with (after ``+``, or ``whatsapp:+``): codes are prefix-free."""
    heads = text.str.head(4)
    if text.str.starts_with(WHATSAPP).any():
        heads = pl.concat([heads, text.str.strip_prefix(WHATSAPP).str.head(4)])
    codes = set()
    for head in heads.drop_nulls().unique().to_list():
        digits = head[1:] if head.startswith("+") else ""
        for n in range(1, len(digits) + 1):
            prefix = digits[:n]
            if prefix.isascii() and prefix.isdigit() and int(prefix) in phonenumbers.COUNTRY_CODE_TO_REGION_CODE:
                codes.add(int(prefix))
                break
    return frozenset(codes)


def _fast(text: pl.Series, *, sender: bool, codes: frozenset[int] | None = None) -> pl.Series:
    """Whether each value is sendable as written (null stays null): the fast path's one regular expression.

    ``codes``: the country codes to compile (default: every code the values start with).
    """
    fast = text.str.contains(fast_path_pattern(_country_codes(text) if codes is None else codes))
    return fast | text.str.contains(MESSAGING_SERVICE_SID) if sender else fast


@functools.cache
def _country_code_pattern() -> str:
    codes = sorted(phonenumbers.COUNTRY_CODE_TO_REGION_CODE, key=lambda c: -len(str(c)))
    return r"^\+(" + "|".join(str(c) for c in codes) + ")"


def _shape_reasons(text: pl.Expr, *, sender: bool) -> pl.Expr:
    """The reason for a value the fast path rejected, where its shape alone tells (else null).

    E.164-shaped values (``+`` and ASCII digits, maybe after ``whatsapp:``) get the reason
    phonenumbers would give: country codes are prefix-free, so the code is found by a regex.
    """
    number = text.str.strip_prefix(WHATSAPP)
    code = number.str.extract(_country_code_pattern(), 1)
    national_digits = number.str.len_bytes() - 1 - code.str.len_bytes()
    e164 = (
        pl.when(code.is_null())
        .then(pl.lit("unknown country code"))
        .when(national_digits > _MAX_NSN_DIGITS)
        .then(pl.lit("too long"))
        .when(national_digits < 2)
        .then(pl.lit("too short"))
        .otherwise(pl.lit("not a valid phone number"))
    )
    e164 = (
        pl.when(text.str.starts_with(WHATSAPP)).then(pl.concat_str(pl.lit("whatsapp: address: "), e164)).otherwise(e164)
    )
    reason = (
        pl.when(number.str.contains(_E164_SHAPE))
        .then(e164)
        # Two whole numbers' digits on either side of a comma may be two numbers: the slow path tells.
        .when(text.str.contains(r"^\+?[0-9]+[.,][0-9]+$") & ~text.str.contains(_TWO_LONG_PARTS))
        .then(pl.lit(DECIMAL_REASON))
        .when(text.str.contains(SCIENTIFIC.pattern))
        .then(pl.lit(SCIENTIFIC_REASON))
        .when(number.str.contains(SPELLED_ZEROS))
        .then(pl.lit(SPELLED_ZEROS_REASON))
    )
    if not sender:
        reason = reason.when(text.str.contains(MESSAGING_SERVICE_SID)).then(pl.lit(SID_AS_TO))
    return reason


def _respelled(frame: pl.LazyFrame, region: str | None) -> pl.LazyFrame:
    """``frame`` with ``spelled``, each ``value`` as the E.164 it spells when that is plain to see (else null),
    and ``nationally``, whether it did so nationally.

    ``+44 20 7946 0000`` loses its spaces; with a North American default region,
    ``(415) 555-0100`` and ``1-415-555-0100`` gain ``+1``. Whether the result is a
    valid number is still phonenumbers' metadata's call (the fast path's pattern).
    """
    text = pl.col("value")
    # In steps, so that each intermediate column is computed once.
    frame = frame.with_columns(_digits=text.str.replace_all(SEPARATORS, ""))
    national = pl.lit(None, pl.String)
    if region is not None and phonenumbers.country_code_for_region(region) == 1:
        # Printable separators only: the reason quotes the value by hand, and a tab would need repr's escape.
        plain = text.str.contains(r"^[0-9 ().\-]+$")
        national = pl.when(plain).then(pl.concat_str([pl.lit("+1"), pl.col("_digits").str.extract(_NANP_NATIONAL, 1)]))
    frame = frame.with_columns(_national=national)
    digits = pl.col("_digits")
    return frame.with_columns(
        spelled=pl.when(digits.str.starts_with("+")).then(digits).otherwise("_national"),
        nationally=pl.col("_national").is_not_null(),
    ).drop("_digits", "_national")


def _as_text(values: pl.Series) -> pl.Series:
    """Addresses as text; whole numbers in a float column as ``<digits>.0``.

    A number column (Parquet, NDJSON) gives its digits, never ``4.155550123e9``; a
    value with a real decimal part is written out as it is, to be refused.
    """
    if not values.dtype.is_float():
        return values.cast(pl.String)
    whole = values.is_finite() & (values == values.round(0)) & (values.abs() < _FLOAT_DIGITS_LIMIT)
    # Written as a spreadsheet shows it (``4155550123.0``): the look-up reads it as its digits and counts
    # it, and knows a leading zero may have been lost on the way (see twins._lost_leading_zero).
    digits = values.cast(pl.Int64, strict=False).cast(pl.String) + ".0"
    return pl.select(pl.when(whole).then(digits).otherwise(values.cast(pl.String))).to_series()


def _look_up(texts: pl.Series, region: str | None, what: str, *, numbers: bool = False) -> pl.DataFrame:
    """``address``, ``reason`` and ``whole`` (read from ``4155550123.0``) for values the fast path rejected.

    Each value is judged by its shape and by its plain respelling, column-wise; only the distinct
    values neither tells about are handed to phonenumbers, each once.
    """
    sender = what == "From"
    whole = pl.lit(True) if numbers else pl.col("text").str.contains(WHOLE_FLOAT_TEXT)
    judged = (
        texts.alias("text")
        .to_frame()
        .lazy()
        .with_columns(whole=whole)
        .with_columns(value=pl.when("whole").then(pl.col("text").str.replace(ZERO_FRACTION, "")).otherwise("text"))
        .pipe(_respelled, region)
        .collect()
    )
    pattern = fast_path_pattern(_country_codes(judged.get_column("spelled")))
    valid = pl.col("spelled").str.contains(pattern).fill_null(False)
    # A value valid once its zero fraction is off (``+491712345678.0``) has no shape to blame.
    shape = pl.when(~(pl.col("whole") & pl.col("valid"))).then(_shape_reasons(pl.col("value"), sender=sender))
    # A North American number spelled nationally is +1 and its ten digits to phonenumbers too,
    # so when the fast path finds that invalid, phonenumbers would only say the same.
    national = pl.when(pl.col("nationally") & ~pl.col("valid")).then(
        pl.lit(f"not a valid phone number for region {region}")
    )
    judged = (
        judged.lazy()
        .with_columns(valid=valid)
        .with_columns(shape=pl.coalesce(shape, national))
        .select(
            # Shape reasons quote values of '+', digits, '.', ',', 'e', spaces and brackets: by hand, their repr.
            address=pl.when(pl.col("shape").is_null() & pl.col("valid")).then("spelled").otherwise("text"),
            reason=pl.when(pl.col("shape").is_not_null()).then(
                pl.format("{}: {}: '{}'", pl.lit(what), pl.col("shape"), pl.col("text"))
            ),
            whole="whole",
            slow=pl.col("shape").is_null() & ~pl.col("valid"),
            value="value",
        )
        .collect()
    )
    slow = judged.get_column("slow").arg_true()
    if not len(slow):
        return judged.select("address", "reason", "whole")
    looked_up = _by_phonenumbers(
        texts.gather(slow), judged.get_column("value").gather(slow), judged["whole"].gather(slow), region, what
    )
    return judged.select(
        address=judged.get_column("address").scatter(slow, looked_up["address"]),
        reason=judged.get_column("reason").scatter(slow, looked_up["reason"]),
        whole="whole",
    )


def _by_phonenumbers(
    texts: pl.Series, values: pl.Series, whole: pl.Series, region: str | None, what: str
) -> pl.DataFrame:
    """``address`` (the text as given where unusable) and ``reason`` by phonenumbers, each distinct value once."""
    sender = what == "From"
    frame = pl.DataFrame({"text": texts, "value": values, "whole": whole})
    distinct = frame.unique(maintain_order=True)
    normalized: list[str | None] = []
    reasons: list[str | None] = []
    for text, value, whole_number in distinct.iter_rows():
        address, why = normalize_one(value, region, sender=sender)
        if address is not None:
            second = second_reading(value, region, address, whole=whole_number)
            if second is not None:
                address, why = None, second
        normalized.append(address)
        # The value goes last, quoted: the report groups reasons by what precedes it.
        reasons.append(None if why is None else f"{what}: {why}: {text!r}")
    looked_up = distinct.with_columns(
        normalized=pl.Series(normalized, dtype=pl.String), reason=pl.Series(reasons, dtype=pl.String)
    )
    return frame.join(looked_up, on=["text", "value", "whole"], how="left", maintain_order="left").select(
        address=pl.coalesce("normalized", "text"), reason="reason"
    )


def normalize(
    values: pl.Series, default_region: str | None, *, what: str = "To", numbers: bool = False
) -> pl.DataFrame:
    """Normalize a column of addresses (``what`` is ``To`` or ``From``; only a From may be an ``MG`` SID).

    Returns a frame with ``address`` (the value to send, or the input as given when
    it cannot be used) and ``reason`` (null when the address is usable). Only the
    distinct values that are neither E.164 nor a plain spelling of it reach ``phonenumbers``.
    ``numbers``: the values are an integer column's digits, whole numbers as ``4155550123.0`` is.
    """
    region = default_region.strip().upper() if default_region else None
    sender = what == "From"
    raw = _as_text(values)
    # No value the fast path accepts has a space at either end, so what it accepts as written needs no
    # stripping: only the rest (a few in a hundred) is stripped, then judged as before. Its country codes
    # are a spread sample's: a code the sample missed only sends its numbers on to that second look,
    # which compiles every code among them.
    sample = raw.gather_every(max(1, raw.len() // _CODE_SAMPLE))
    rejected = (~_fast(raw, sender=sender, codes=_country_codes(sample))).fill_null(True).arg_true()
    reason = pl.repeat(None, raw.len(), eager=True, dtype=pl.String)
    if not len(rejected):
        return pl.DataFrame({"address": raw, "reason": reason})
    given = raw.gather(rejected)
    text = given.str.strip_chars()
    empty = text.is_null() | (text == "")
    shown = pl.select(pl.when(empty).then(given).otherwise(text)).to_series()
    why = pl.select(pl.when(empty).then(pl.lit(f"{what} is empty", pl.String))).to_series()
    judge = (~_fast(text, sender=sender).fill_null(False) & ~empty).arg_true()
    if len(judge):
        # An integer column's values are whole numbers too: where a leading zero matters, it may be gone.
        integers = numbers or values.dtype.is_integer()
        looked = _look_up(text.gather(judge), region, what, numbers=integers)
        shown = shown.scatter(judge, looked["address"])
        why = why.scatter(judge, looked["reason"])
        from_floats = int(looked["whole"].sum())
        if from_floats and not integers:
            log.info("input.float_column", column=values.name, what=what, rows=from_floats)
    return pl.DataFrame({"address": raw.clone().scatter(rejected, shown), "reason": reason.scatter(rejected, why)})
