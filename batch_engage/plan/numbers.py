"""One address judged the slow way, and the rules the fast path shares with it.

Studio accepts phone numbers in E.164, ``whatsapp:+E164``, ``client:name`` and SIP
addresses (``name@company.com``) as To and From; a Messaging Service SID (``MG`` and
32 hex digits) as From only. :func:`normalize_one` parses anything else with ``phonenumbers``
(optionally with a default region) and either normalizes it to E.164 or gives a reason
naming the rule it broke. :func:`fast_path_pattern` is those rules as one regular expression,
its E.164 part built from phonenumbers' own metadata, so the fast path (``phone``) cannot
drift from this one.
"""

from __future__ import annotations

import functools
import re

import phonenumbers

__all__ = [
    "DECIMAL_REASON",
    "LETTERS_REASON",
    "MESSAGING_SERVICE_SID",
    "MORE_THAN_ONE_REASON",
    "NUMBER_TYPES",
    "PUNCTUATION",
    "SCIENTIFIC",
    "SCIENTIFIC_REASON",
    "SEPARATORS",
    "SID_AS_TO",
    "SPELLED_ZEROS",
    "SPELLED_ZEROS_REASON",
    "WHATSAPP",
    "WHOLE_FLOAT_TEXT",
    "ZERO_FRACTION",
    "fast_path_pattern",
    "normalize_one",
    "region_code",
    "valid_e164",
]

# The descriptions is_valid_number tries; a number is valid when one of its region's matches.
NUMBER_TYPES = (
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
# Also a whole SID in another case: a spreadsheet that lowered a column turns `MG…` into `mg…`, no number.
_LOOKS_LIKE_SID = re.compile(r"^(?:MG[0-9A-Za-z]*|(?i:mg[0-9a-f]{32}))$")
WHATSAPP = "whatsapp:"
SEPARATORS = r"[\s().\-]"
# Excel writes 14155550100 as 1.41555501E+10 (or 1,41555501E+10 with a decimal comma).
SCIENTIFIC = re.compile(r"^[0-9]+(?:[.,][0-9]+)?[eE][+-]?[0-9]+$")
# A zero fraction right after a digit: bare digits with any zeros (a number column's 4915112345678.00), or a number
# spelled with spaces, brackets, '-' or '/' and one zero ("+49 " + str(a float)). A spelled one with more zeros is
# no float's artefact: "030 1234 56.00" may be 030 123456 00, so its zeros are kept. A value with another '.' or
# ',' is grouped with dots (06.12.34.56.00), and one with letters or '@' is no bare number (whatsapp: and
# channels are judged without their prefix).
WHOLE_FLOAT_TEXT = r"^\+?(?:[0-9]+[.,]0+|[0-9\s()/\-]*[0-9][.,]0)$"
PUNCTUATION = re.compile(r"[\s()/\-]")
ZERO_FRACTION = r"[.,]0+$"
# Spelled with a separator and ending in two or more zeros after a decimal mark: decimals or the last digits.
SPELLED_ZEROS = r"^\+?[0-9]*[\s()/\-][0-9\s()/\-]*[0-9][.,]00+$"
SPELLED_ZEROS_REASON = (
    "ends in zeros after a decimal mark: a spreadsheet's decimals or the number's last digits? "
    "write it without them, or export the column as text"
)
_DECIMAL = re.compile(r"^\+?[0-9]+[.,][0-9]*[1-9][0-9]*$")
SCIENTIFIC_REASON = "written in scientific notation: digits were lost; export the column as text"
DECIMAL_REASON = "a number with a decimal part, not a phone number; export the column as text"
MORE_THAN_ONE_REASON = "holds more than one number (one number a row)"
LETTERS_REASON = (
    "holds letters among its digits: a letter typed for a digit (O for 0, I for 1) or a vanity number "
    "(1-800-FLOWERS)? write it in digits"
)
_LETTERS = re.compile(r"[A-Za-z]")
_NUMBER_START = re.compile(r"[+0-9]")
_NOT_DIGITS = re.compile(r"[^0-9]")
_MIN_DIGITS = 7  # the fewest digits of a number a list of them is told by (a few countries have shorter ones)
# What people put between two numbers in one cell: a slash, comma, bar or ampersand, "or"/"and", or a second '+'.
_BETWEEN_NUMBERS = re.compile(r"\s*(?:[/,|&]|\b(?:or|and)\b)\s*|\s+(?=\+)", re.IGNORECASE)
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
        for kind in NUMBER_TYPES:
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
    return f"^(?:(?:{WHATSAPP})?{e164}|{_OTHER_CHANNELS})$"


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
SID_AS_TO = "a Messaging Service SID (MG…) can only be the sender (From), not To"


def _channel_reason(text: str, *, sender: bool) -> str | None:
    """Why a SID, client or SIP address breaks its own rule, or None when it keeps it."""
    if _LOOKS_LIKE_SID.match(text):
        if not sender:
            return SID_AS_TO
        if not text.startswith("MG"):
            return "Messaging Service SID: must start with 'MG' in capitals"
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
    if text.lower().startswith(WHATSAPP):
        number, reason = normalize_one(text[len(WHATSAPP) :], default_region)
        return (None, f"whatsapp: address: {reason}") if number is None else (WHATSAPP + number, None)
    if _is_channel(text):
        reason = _channel_reason(text, sender=sender)
        return (text, None) if reason is None else (None, reason)
    for shape, why in _SHAPES:
        if shape.match(text):
            # `4155550100,4155550101` reads as a decimal too: two numbers is the truer reason.
            if why == DECIMAL_REASON and _more_than_one(text, default_region):
                return None, MORE_THAN_ONE_REASON
            return None, why
    return _phone_number(text, default_region)


_NATIONAL_DIGITS = 10
# phonenumbers reads what follows a ';' as a tel: URI's parameters, and drops it: a second number, say.
_SHAPES = (
    (SCIENTIFIC, SCIENTIFIC_REASON),
    (_DECIMAL, DECIMAL_REASON),
    (re.compile(r".*;", re.S), "holds ';' (two numbers in one cell?)"),
)


def _phone_number(text: str, default_region: str | None) -> tuple[str | None, str | None]:
    """A phone number as written by people (no channel prefix): its E.164, or why not."""
    address, reason = _single_number(text, default_region)
    if address is None and _more_than_one(text, default_region):
        # phonenumbers reads the digits of both as one number: "too long" would not say what is wrong.
        return None, MORE_THAN_ONE_REASON
    return address, reason


def _more_than_one(text: str, default_region: str | None) -> bool:
    """Whether ``text`` (not one number) is two or more numbers, each valid alone: split where people put a second
    one, else at spaces (which a single number may hold too, but then its parts are not numbers)."""
    parts = [p for p in _BETWEEN_NUMBERS.split(text) if p and p.strip()]
    if len(parts) < 2:
        parts = text.split()
    # Parsed only when every part has a whole number's digits: a value with a space in it is no list of numbers.
    if len(parts) < 2 or any(len(_NOT_DIGITS.sub("", p)) < _MIN_DIGITS for p in parts):
        return False
    return all(_single_number(p.strip(), default_region)[0] is not None for p in parts)


def _single_number(text: str, default_region: str | None) -> tuple[str | None, str | None]:
    if re.fullmatch(WHOLE_FLOAT_TEXT, text):
        text = re.sub(ZERO_FRACTION, "", text)
    candidate = text
    if default_region is None and text.isdigit() and len(text) > _NATIONAL_DIGITS:
        # Without a region, a long run of digits is most likely E.164 missing its '+'. Ten digits or fewer are
        # most likely a national number (North America's have ten): read with '+', 8 in 100 of them are valid
        # numbers of other countries (6062642190 is a Malaysian number), so they have no country code.
        candidate = "+" + text
    try:
        parsed = phonenumbers.parse(candidate, default_region)
    except phonenumbers.NumberParseException as exc:
        if exc.error_type == phonenumbers.NumberParseException.INVALID_COUNTRY_CODE and candidate.startswith("+"):
            return None, "unknown country code"
        return None, _PARSE_REASONS.get(exc.error_type, "not a phone number")
    wrong = _more_than_digits(parsed, text)
    if wrong is not None:
        return None, wrong
    address = valid_e164(parsed, default_region)
    if default_region is not None and not candidate.startswith("+"):
        international = _international_reading(text, default_region, national=address)
        if international is not None:
            return international, None
    if address is not None:
        return address, None
    where = f" for region {default_region}" if default_region and not candidate.startswith("+") else ""
    return None, f"not a valid phone number{where}"


def _more_than_digits(parsed: phonenumbers.PhoneNumber, text: str) -> str | None:
    """Why a number that parsed is still not one to send: an extension, or letters phonenumbers made digits of."""
    if parsed.extension:
        # Sent without it, the message would go to the switchboard, not to the person.
        return f"has an extension ({parsed.extension}), which a text message cannot reach"
    if _LETTERS.search(text, _first_digit(text)):
        # phonenumbers reads three or more letters as a phone keypad's digits: 415-555-O1OO became +14155556166.
        return LETTERS_REASON
    return None


def _first_digit(text: str) -> int:
    """Where the number itself starts: a label before it (``Mobile:``, ``tel:``, ``M 415…``) is no part of it, but a
    letter touching its first digit is (``O6031234``: a letter O for a zero), and is looked at with it."""
    found = _NUMBER_START.search(text)
    if found is None:
        return len(text)
    start = found.start()
    return start - 1 if start and text[start - 1].isalpha() else start


def _international_reading(text: str, region: str, *, national: str | None) -> str | None:
    """The E.164 a value means when it is the region's country code and a valid number without the ``+``.

    Taken only where the national reading fails: phonenumbers finds it invalid, or the
    region dials nationally with a trunk prefix (``0`` in DE) that the value lacks, so
    ``4915123456789`` in DE is +49 1512…, not +49 4915…. In North America the country
    code and the trunk prefix are both ``1``, and phonenumbers already reads both ways alike.
    """
    digits = re.sub(SEPARATORS, "", text)
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
    international = valid_e164(parsed, region)
    return international if international != national else None


def valid_e164(number: phonenumbers.PhoneNumber, region: str | None) -> str | None:
    """The number in E.164 when phonenumbers finds it valid, else None."""
    # Checking the default region first is half the cost of is_valid_number, which tries every region of the code.
    if (region is not None and phonenumbers.is_valid_number_for_region(number, region)) or phonenumbers.is_valid_number(
        number
    ):
        return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
    return None
