"""Contact addresses: E.164 on a vectorized fast path, ``phonenumbers`` for the rest.

Studio accepts phone numbers in E.164, ``whatsapp:+E164``, ``client:name`` and SIP
addresses (``name@company.com``) as To and From; a Messaging Service SID (``MG`` and
32 hex digits) as From only. Anything else is parsed with ``phonenumbers``
(optionally with a default region) and either normalized to E.164 or given a reason
naming the rule it broke.

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
and with or without ``+`` (``491712345684,0``, ``+491712345678.0``): read with the
fraction, its zeros would become digits of another person's number.
"""

from __future__ import annotations

import functools
import re

import phonenumbers
import polars as pl
import structlog

from .masking import mask

__all__ = ["MESSAGING_SERVICE_SID", "fast_path_pattern", "mask", "normalize", "normalize_one", "region_code"]

log = structlog.get_logger(__name__)

# The descriptions is_valid_number tries; a number is valid when one of its region's matches.
_NUMBER_TYPES = (
    "fixed_line",
    "mobile",
    "toll_free",
    "premium_rate",
    "shared_cost",
    "personal_number",
    "voip",
    "pager",
    "uan",
    "voicemail",
)
_CLIENT = r"client:[A-Za-z0-9_.\-]+"
# A SIP address is ``sip:user@host`` or ``user@host`` (as Twilio writes SIP contacts): the user part in these
# characters and the host a host name, so that no formula (``=1+1@evil.example``) passes as an address.
_SIP_HOST = r"(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z][A-Za-z0-9-]{0,62}(?::[0-9]{1,5})?"
_SIP = rf"(?:sips?:)?[A-Za-z0-9._+\-]+@{_SIP_HOST}"
_OTHER_CHANNELS = f"{_CLIENT}|{_SIP}"
MESSAGING_SERVICE_SID = r"^MG[0-9a-fA-F]{32}$"
_LOOKS_LIKE_SID = re.compile(r"^MG[0-9A-Za-z]*$")
_WHATSAPP = "whatsapp:"
_SEPARATORS = r"[\s().\-]"
_NANP_NATIONAL = r"^1?([2-9][0-9]{9})$"  # phonenumbers reads these as +1 and the ten digits too
_E164_SHAPE = r"^\+[0-9]+$"
_CODE_SAMPLE = 4096  # values the first look takes its country codes from
# phonenumbers refuses a national number longer than this (its _MAX_LENGTH_FOR_NSN) as too long.
_MAX_NSN_DIGITS = 17
# Excel writes 14155550100 as 1.41555501E+10 (or 1,41555501E+10 with a decimal comma).
_SCIENTIFIC = re.compile(r"^[0-9]+(?:[.,][0-9]+)?[eE][+-]?[0-9]+$")
_WHOLE_FLOAT_TEXT = r"^\+?[0-9]+[.,]0+$"
_ZERO_FRACTION = r"[.,]0+$"
_FLOAT_DIGITS_LIMIT = 1e17  # beyond this a float's digits are not the ones written, and Int64 would overflow
_DECIMAL = re.compile(r"^\+?[0-9]+[.,][0-9]*[1-9][0-9]*$")
_SCIENTIFIC_REASON = "written in scientific notation: digits were lost; export the column as text"
_LEADING_ZERO_REASON = (
    "a number column may have dropped its leading zero, and both readings are numbers; export the column as text"
)
_DECIMAL_REASON = "a number with a decimal part, not a phone number; export the column as text"
_PARSE_REASONS = {
    phonenumbers.NumberParseException.INVALID_COUNTRY_CODE: "no country code (set mapping.default_region)",
    phonenumbers.NumberParseException.NOT_A_NUMBER: "not a phone number",
    phonenumbers.NumberParseException.TOO_SHORT_AFTER_IDD: "too short",
    phonenumbers.NumberParseException.TOO_SHORT_NSN: "too short",
    phonenumbers.NumberParseException.TOO_LONG: "too long",
}


def _national_patterns(code: int, regions: tuple[str, ...]) -> list[str]:
    patterns: list[str] = []
    for region in regions:
        metadata = (
            phonenumbers.PhoneMetadata.metadata_for_nongeo_region(code)
            if region == phonenumbers.REGION_CODE_FOR_NON_GEO_ENTITY
            else phonenumbers.PhoneMetadata.metadata_for_region(region)
        )
        for kind in _NUMBER_TYPES:
            desc = getattr(metadata, kind, None)
            if desc is not None and desc.national_number_pattern:
                # \d is any Unicode digit to polars' regex engine; Studio wants ASCII digits.
                patterns.append(desc.national_number_pattern.replace(r"\d", "[0-9]"))
    return list(dict.fromkeys(patterns))


@functools.cache
def fast_path_pattern(codes: frozenset[int] | None = None) -> str:
    """The fast path's regular expression (valid E.164, ``whatsapp:`` E.164, client and SIP), built once.

    ``codes``: only these country codes' numbers (every code when None). A number is judged by its
    own code's branch alone, so leaving out codes no value starts with changes no answer; it spares
    loading every region's metadata and compiling the whole world's patterns (a tenth of a second).
    """
    branches = []
    for code, regions in sorted(phonenumbers.COUNTRY_CODE_TO_REGION_CODE.items()):
        if codes is not None and code not in codes:
            continue
        patterns = _national_patterns(code, regions)
        if patterns:
            branches.append(f"{code}(?:" + "|".join(f"(?:{p})" for p in patterns) + ")")
    if not branches:
        return f"^(?:{_OTHER_CHANNELS})$"
    e164 = r"\+(?:" + "|".join(branches) + ")"
    return f"^(?:(?:{_WHATSAPP})?{e164}|{_OTHER_CHANNELS})$"


def _country_codes(text: pl.Series) -> frozenset[int]:
    """The country codes the values start with (after ``+``, or ``whatsapp:+``): codes are prefix-free."""
    heads = text.str.head(4)
    if text.str.starts_with(_WHATSAPP).any():
        heads = pl.concat([heads, text.str.strip_prefix(_WHATSAPP).str.head(4)])
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


def region_code(region: str | None) -> str | None:
    """A default region as phonenumbers wants it (``us`` -> ``US``); ValueError for one it does not know."""
    if region is None:
        return None
    code = region.strip().upper()
    if code not in phonenumbers.SUPPORTED_REGIONS:
        raise ValueError(f"unknown region {region!r} (use a two-letter code such as 'US' or 'GB')")
    return code


_SIP_REASON = (
    "SIP address: must be sip:user@host or user@host, the user letters, digits, '.', '_', '-' or '+', "
    "the host a host name"
)
_SID_AS_TO = "a Messaging Service SID (MG…) can only be the sender (From), not To"


def _channel_reason(text: str, *, sender: bool) -> str | None:
    """Why a SID, client or SIP address breaks its own rule, or None when it keeps it."""
    if _LOOKS_LIKE_SID.match(text):
        if not sender:
            return _SID_AS_TO
        rule, why = MESSAGING_SERVICE_SID, "Messaging Service SID: must be 'MG' and 32 hex digits"
    elif text.lower().startswith("client:"):
        rule, why = _CLIENT, "client: address: the name must be letters, digits, '_', '.' or '-'"
    else:
        rule, why = _SIP, _SIP_REASON
    return None if re.fullmatch(rule, text) else why


def _is_channel(text: str) -> bool:
    """A value meant as a Messaging Service SID, client or SIP address rather than a phone number."""
    return bool(_LOOKS_LIKE_SID.match(text)) or text.lower().startswith(("client:", "sip:", "sips:")) or "@" in text


def normalize_one(value: str, default_region: str | None, *, sender: bool = False) -> tuple[str | None, str | None]:
    """Normalize one address the slow way: ``(address, None)`` or ``(None, reason)``.

    ``sender``: the value is a From, which may also be a Messaging Service SID.
    """
    text = value.strip()
    if text.lower().startswith(_WHATSAPP):
        number, reason = normalize_one(text[len(_WHATSAPP) :], default_region)
        return (None, f"whatsapp: address: {reason}") if number is None else (_WHATSAPP + number, None)
    if _is_channel(text):
        reason = _channel_reason(text, sender=sender)
        return (text, None) if reason is None else (None, reason)
    if _SCIENTIFIC.match(text):
        return None, _SCIENTIFIC_REASON
    if _DECIMAL.match(text):
        return None, _DECIMAL_REASON
    return _phone_number(text, default_region)


def _phone_number(text: str, default_region: str | None) -> tuple[str | None, str | None]:
    """A phone number as written by people (no channel prefix): its E.164, or why not."""
    if re.fullmatch(_WHOLE_FLOAT_TEXT, text):
        text = re.sub(_ZERO_FRACTION, "", text)
    candidate = text
    if default_region is None and text.isdigit():
        # Without a region, a bare run of digits is most likely E.164 missing its '+'.
        candidate = "+" + text
    try:
        parsed = phonenumbers.parse(candidate, default_region)
    except phonenumbers.NumberParseException as exc:
        if exc.error_type == phonenumbers.NumberParseException.INVALID_COUNTRY_CODE and candidate.startswith("+"):
            return None, "unknown country code"
        return None, _PARSE_REASONS.get(exc.error_type, "not a phone number")
    address = _valid_e164(parsed, default_region)
    if default_region is not None and not candidate.startswith("+"):
        international = _international_reading(text, default_region, national=address)
        if international is not None:
            return international, None
    if address is not None:
        return address, None
    where = f" for region {default_region}" if default_region and not candidate.startswith("+") else ""
    return None, f"not a valid phone number{where}"


def _international_reading(text: str, region: str, *, national: str | None) -> str | None:
    """The E.164 a value means when it is the region's country code and a valid number without the ``+``.

    Taken only where the national reading fails: phonenumbers finds it invalid, or the
    region dials nationally with a trunk prefix (``0`` in DE) that the value lacks, so
    ``4915123456789`` in DE is +49 1512…, not +49 4915…. In North America the country
    code and the trunk prefix are both ``1``, and phonenumbers already reads both ways alike.
    """
    digits = re.sub(_SEPARATORS, "", text)
    code = str(phonenumbers.country_code_for_region(region))
    if not (digits.isascii() and digits.isdigit() and digits.startswith(code)):
        return None
    metadata = phonenumbers.PhoneMetadata.metadata_for_region(region)
    trunk = metadata.national_prefix if metadata is not None else None
    if national is not None and (not trunk or digits.startswith(trunk)):
        return None
    try:
        parsed = phonenumbers.parse("+" + digits, None)
    except phonenumbers.NumberParseException:
        return None
    if parsed.country_code != int(code):
        return None
    international = _valid_e164(parsed, region)
    return international if international != national else None


def _valid_e164(number: phonenumbers.PhoneNumber, region: str | None) -> str | None:
    """The number in E.164 when phonenumbers finds it valid, else None."""
    # Checking the default region first is half the cost of is_valid_number, which tries every region of the code.
    if (region is not None and phonenumbers.is_valid_number_for_region(number, region)) or phonenumbers.is_valid_number(
        number
    ):
        return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
    return None


@functools.cache
def _country_code_pattern() -> str:
    codes = sorted(phonenumbers.COUNTRY_CODE_TO_REGION_CODE, key=lambda c: -len(str(c)))
    return r"^\+(" + "|".join(str(c) for c in codes) + ")"


def _shape_reasons(text: pl.Expr, *, sender: bool) -> pl.Expr:
    """The reason for a value the fast path rejected, where its shape alone tells (else null).

    E.164-shaped values (``+`` and ASCII digits, maybe after ``whatsapp:``) get the reason
    phonenumbers would give: country codes are prefix-free, so the code is found by a regex.
    """
    number = text.str.strip_prefix(_WHATSAPP)
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
        pl.when(text.str.starts_with(_WHATSAPP))
        .then(pl.concat_str(pl.lit("whatsapp: address: "), e164))
        .otherwise(e164)
    )
    reason = (
        pl.when(number.str.contains(_E164_SHAPE))
        .then(e164)
        .when(text.str.contains(r"^\+?[0-9]+[.,][0-9]+$"))
        .then(pl.lit(_DECIMAL_REASON))
        .when(text.str.contains(_SCIENTIFIC.pattern))
        .then(pl.lit(_SCIENTIFIC_REASON))
    )
    if not sender:
        reason = reason.when(text.str.contains(MESSAGING_SERVICE_SID)).then(pl.lit(_SID_AS_TO))
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
    frame = frame.with_columns(_digits=text.str.replace_all(_SEPARATORS, ""))
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
    # it, and knows a leading zero may have been lost on the way (see _lost_leading_zero).
    digits = values.cast(pl.Int64, strict=False).cast(pl.String) + ".0"
    return pl.select(pl.when(whole).then(digits).otherwise(values.cast(pl.String))).to_series()


def _lost_leading_zero(digits: str, region: str | None, address: str) -> bool:
    """Whether a number column may have eaten a leading zero that made it another person's number.

    Where a national number keeps its leading zero (``06031234`` in GA is +241 06031234), a
    number column stores ``6031234``, which is also a valid number there: +241 6031234, someone else.
    """
    if region is None or not digits.isdigit() or digits.startswith("0") or address == "+" + digits:
        # Read with its country code, every digit was there: no zero can have been dropped in front.
        return False
    try:
        with_zero = _valid_e164(phonenumbers.parse("0" + digits, region), region)
    except phonenumbers.NumberParseException:
        return False
    return with_zero is not None and with_zero != address


def _look_up(texts: pl.Series, region: str | None, what: str) -> pl.DataFrame:
    """``address``, ``reason`` and ``whole`` (read from ``4155550123.0``) for values the fast path rejected.

    Each value is judged by its shape and by its plain respelling, column-wise; only the distinct
    values neither tells about are handed to phonenumbers, each once.
    """
    sender = what == "From"
    whole = pl.col("text").str.contains(_WHOLE_FLOAT_TEXT)
    judged = (
        texts.alias("text")
        .to_frame()
        .lazy()
        .with_columns(whole=whole)
        .with_columns(value=pl.when("whole").then(pl.col("text").str.replace(_ZERO_FRACTION, "")).otherwise("text"))
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
        if whole_number and address is not None and _lost_leading_zero(value, region, address):
            address, why = None, _LEADING_ZERO_REASON
        normalized.append(address)
        # The value goes last, quoted: the report groups reasons by what precedes it.
        reasons.append(None if why is None else f"{what}: {why}: {text!r}")
    looked_up = distinct.with_columns(
        normalized=pl.Series(normalized, dtype=pl.String), reason=pl.Series(reasons, dtype=pl.String)
    )
    return frame.join(looked_up, on=["text", "value", "whole"], how="left", maintain_order="left").select(
        address=pl.coalesce("normalized", "text"), reason="reason"
    )


def normalize(values: pl.Series, default_region: str | None, *, what: str = "To") -> pl.DataFrame:
    """Normalize a column of addresses (``what`` is ``To`` or ``From``; only a From may be an ``MG`` SID).

    Returns a frame with ``address`` (the value to send, or the input as given when
    it cannot be used) and ``reason`` (null when the address is usable). Only the
    distinct values that are neither E.164 nor a plain spelling of it reach ``phonenumbers``.
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
        looked = _look_up(text.gather(judge), region, what)
        shown = shown.scatter(judge, looked["address"])
        why = why.scatter(judge, looked["reason"])
        from_floats = int(looked["whole"].sum())
        if from_floats:
            log.info("input.float_column", column=values.name, what=what, rows=from_floats)
    return pl.DataFrame({"address": raw.clone().scatter(rejected, shown), "reason": reason.scatter(rejected, why)})
