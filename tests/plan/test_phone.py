"""Contact addresses: what a user writes in the To column, and what is sent or why it is refused."""

from __future__ import annotations

import functools
import re
from typing import Any

import phonenumbers
import polars as pl
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from structlog.testing import capture_logs

from batch_engage.plan import phone
from batch_engage.plan.numbers import DECIMAL_REASON, LETTERS_REASON, WHOLE_FLOAT_TEXT, normalize_one

SIP_RULE = (
    "SIP address: must be sip:user@host or user@host, the user letters, digits, '.', '_', '-' or '+', "
    "the host a host name"
)


def _one(value: Any, region: str | None = "US") -> tuple[str | None, str | None]:
    result = phone.normalize(pl.Series([value]), region).row(0)
    return result[0], result[1]


def _phonenumbers_e164(value: str, region: str | None) -> str | None:
    """What phonenumbers alone makes of a value: its E.164 when valid, else None."""
    try:
        parsed = phonenumbers.parse(value, region)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_valid_number(parsed):
        return None
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)


# Valid North American numbers: area code and exchange from phonenumbers' own US examples' shape.
us_numbers = (
    st.tuples(
        st.integers(200, 999),
        st.integers(200, 999),
        st.integers(0, 9999),
    )
    .map(lambda t: f"{t[0]:03d}{t[1]:03d}{t[2]:04d}")
    .filter(lambda d: _phonenumbers_e164("+1" + d, None) is not None)
)


def _spellings(d: str) -> list[str]:
    a, e, n = d[:3], d[3:6], d[6:]
    return [
        f"+1{d}",
        f"({a}) {e}-{n}",
        f"{a}-{e}-{n}",
        f"{a}.{e}.{n}",
        f"1 {a} {e} {n}",
        f"+1 ({a}) {e}-{n}",
        f"1{d}",
        d,
        f"  {a} {e} {n}  ",
        f"+1-{a}-{e}-{n}",
    ]


@functools.cache
def _examples() -> list[str]:
    """An example number of every type for every region phonenumbers knows, in E.164.

    Built when a test first draws from it, not at import: every worker imports this module to collect it,
    and only the one running these tests needs the list (a quarter second to build).
    """
    found: set[str] = set()
    for region in phonenumbers.SUPPORTED_REGIONS:
        for kind in range(11):
            number = phonenumbers.example_number_for_type(region, kind)
            if number is not None:
                found.add(phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164))
    return sorted(found)


@st.composite
def near_valid_e164(draw: st.DrawFn) -> str:
    """An example number with a few digits changed, one added or one dropped: valid or invalid, always close."""
    digits = list(draw(st.sampled_from(_examples()))[1:])
    for _ in range(draw(st.integers(0, 3))):
        digits[draw(st.integers(0, len(digits) - 1))] = str(draw(st.integers(0, 9)))
    change = draw(st.sampled_from(["keep", "keep", "add", "drop"]))
    if change == "add":
        digits.insert(draw(st.integers(1, len(digits))), str(draw(st.integers(0, 9))))
    elif change == "drop" and len(digits) > 2:
        del digits[draw(st.integers(1, len(digits) - 1))]
    return "+" + "".join(digits)


@st.composite
def spelled(draw: st.DrawFn) -> str:
    """A close-to-valid number written as people write it: separators anywhere, maybe as a US national number."""
    number = draw(near_valid_e164())
    if number.startswith("+1") and draw(st.booleans()):
        number = draw(st.sampled_from(["", "1"])) + number[2:]
    out = ""
    for char in number:
        out += draw(st.sampled_from(["", "", "", " ", "-", ".", "(", ")"])) + char
    return out


class TestNormalization:
    # Each example judges the spellings of a list of distinct numbers in one call (each row as if it stood
    # alone: TestReasons); 30 examples of about five numbers judge as many numbers as 150 of one did.
    @given(st.lists(us_numbers, min_size=3, max_size=7, unique=True))
    @settings(max_examples=30, suppress_health_check=[HealthCheck.filter_too_much])
    def test_any_spelling_of_a_us_number_becomes_the_same_e164(self, numbers: list[str]) -> None:
        """(415) 555-0100, 415.555.0100, 1 415 555 0100, +1-415-... all become +14155550100 with region US."""
        spellings = [(digits, spelling) for digits in numbers for spelling in _spellings(digits)]
        result = phone.normalize(pl.Series([spelling for _, spelling in spellings]), "US").rows()
        for (digits, spelling), (address, reason) in zip(spellings, result, strict=True):
            assert (address, reason) == ("+1" + digits, None), spelling

    # Each example judges a list of distinct values in one call, as a column is judged (each row as if it
    # stood alone: TestReasons); 40 examples of about ten judge as many distinct values as 400 of one did.
    @given(st.lists(near_valid_e164(), min_size=5, max_size=15, unique=True))
    @settings(max_examples=40)
    @example(["+15555550100", "+390612345678", "+2600800012345"])
    def test_e164_input_is_sent_as_written_or_refused_never_rewritten(self, values: list[str]) -> None:
        """E.164 that phonenumbers finds valid is sent as written; any other is refused, never sent to another number."""
        fast = pl.Series(values).str.contains(phone.fast_path_pattern()).to_list()
        judged = phone.normalize(pl.Series(values), None).rows()
        for value, took_fast, (address, reason) in zip(values, fast, judged, strict=True):
            if _phonenumbers_e164(value, None) == value:
                assert took_fast, value
                assert (address, reason) == (value, None)
            else:
                # Zambia's +260 0800... is valid to phonenumbers without its trunk 0: still not what was written.
                assert not took_fast, value
                assert reason is not None and reason.startswith("To: "), value

    # A list of values an example, judged in one call (see above): 30 examples of about ten judge as many
    # distinct values as 300 of one did.
    @given(st.lists(spelled(), min_size=5, max_size=15, unique=True), st.sampled_from(["US", "CA", "GB", None]))
    @settings(max_examples=30)
    @example(["(+1) 415 555 0100"], "US")
    @example(["+44 (0)20 7946 0000"], "GB")
    @example(["+2046011234 5.0"], None)
    def test_any_spelling_gives_what_phonenumbers_gives(self, values: list[str], region: str | None) -> None:
        """Spaces, dashes, dots and parentheses never change the answer: polars' shortcut and phonenumbers agree.

        One dot or comma between digits and nothing else (`+1201555012.3`) reads as a spreadsheet's
        decimal: refused, where phonenumbers would take the dot for a separator. A zero fraction after digits,
        spaced or not (`0171 2345684.0`), is a spreadsheet's and comes off first, whatever phonenumbers makes of it.
        """
        judged = phone.normalize(pl.Series(values), region).rows()
        for value, (address, reason) in zip(values, judged, strict=True):
            written = value.strip()
            if re.fullmatch(WHOLE_FLOAT_TEXT, written):
                clean, why = _one(re.sub(r"[.,]0+$", "", written), region)
                assert reason is not None or (address, why) == (clean, None), value
            elif re.fullmatch(r"\+?[0-9]+[.,][0-9]+", written):
                assert reason is not None and "decimal part" in reason, value
            else:
                assert (address if reason is None else None) == _phonenumbers_e164(value, region), value

    @given(st.deferred(lambda: st.sampled_from(_examples())), st.sampled_from(["US", "GB", "DE", None]))
    @settings(max_examples=100)
    def test_whatsapp_addresses_of_valid_numbers_pass_unchanged(self, number: str, region: str | None) -> None:
        """`whatsapp:+E164` is a channel address: it passes as written whatever the default region."""
        assert _one(f"whatsapp:{number}", region) == (f"whatsapp:{number}", None)

    @pytest.mark.parametrize(
        "value",
        ["client:agent_7", "client:bob.smith", "bob@company.com", "sip:alice@pbx.example.com:5060"],
    )
    def test_client_and_sip_addresses_pass_unchanged(self, value: str) -> None:
        """Client names and SIP addresses are sent as written; phonenumbers never sees them."""
        assert _one(value) == (value, None)

    @pytest.mark.parametrize(
        ("value", "sent"),
        [
            ("whatsapp:(415) 555-0100", "whatsapp:+14155550100"),
            ("WhatsApp:+1 415 555 0100", "whatsapp:+14155550100"),
            ("+44 20 7946 0000", "+442079460000"),
            ("１４１５５５５０１００", "+14155550100"),
        ],
    )
    def test_other_spellings_are_sent_as_e164(self, value: str, sent: str) -> None:
        """WhatsApp numbers in any format and full-width digits become E.164."""
        assert _one(value) == (sent, None)

    def test_a_national_number_uses_the_default_region(self) -> None:
        """`020 7946 0000` is London with region GB; without any region the reason says to set one."""
        assert _one("020 7946 0000", "GB") == ("+442079460000", None)
        assert _one("(415) 555-0100", None) == (
            "(415) 555-0100",
            "To: no country code (set mapping.default_region): '(415) 555-0100'",
        )

    def test_digits_without_a_plus_are_e164_when_there_is_no_region(self) -> None:
        """Without a default region, 14155550100 is read as +14155550100 (E.164 that lost its +)."""
        assert _one("14155550100", None) == ("+14155550100", None)

    @pytest.mark.parametrize("digits", ["6062642190", "5164845567", "4155550100"])
    def test_ten_digits_without_a_region_have_no_country_code(self, digits: str) -> None:
        """Ten digits are most likely a North American number without its region: never read as another country's
        (+60 6264 2190 is Malaysian, +51 6484 5567 Peruvian), the reason says to set one."""
        assert _one(digits, None) == (digits, f"To: no country code (set mapping.default_region): '{digits}'")

    @pytest.mark.parametrize("dtype", [pl.Int64, pl.Float64])
    def test_a_numeric_column_gives_its_digits(self, dtype: pl.DataType) -> None:
        """A Parquet/NDJSON column of numbers (int or float) still gives +14155550100, never 1.41e10."""
        result = phone.normalize(pl.Series([14155550100, None], dtype=dtype), None)
        assert result.rows() == [("+14155550100", None), (None, "To is empty")]


class TestReasons:
    @pytest.mark.parametrize(
        ("value", "reason"),
        [
            ("", "To is empty"),
            ("   ", "To is empty"),
            ("not a number", "To: not a phone number: 'not a number'"),
            ("+15555550100", "To: not a valid phone number: '+15555550100'"),
            ("(555) 555-0100", "To: not a valid phone number for region US: '(555) 555-0100'"),
            ("415-555-01", "To: not a valid phone number for region US: '415-555-01'"),
            ("+999123456789", "To: unknown country code: '+999123456789'"),
            ("1" * 300, f"To: too long: '{'1' * 300}'"),
            ("whatsapp:+1555", "To: whatsapp: address: not a valid phone number: 'whatsapp:+1555'"),
            # Never the switchboard, never the first of two numbers only.
            (
                "+1 415 555 0123 ext. 45",
                "To: has an extension (45), which a text message cannot reach: '+1 415 555 0123 ext. 45'",
            ),
            (
                "(415) 555-0126 x 12",
                "To: has an extension (12), which a text message cannot reach: '(415) 555-0126 x 12'",
            ),
            ("4155550124;4155550199", "To: holds ';' (two numbers in one cell?): '4155550124;4155550199'"),
        ],
    )
    def test_an_unusable_address_says_why_and_keeps_what_was_written(self, value: str, reason: str) -> None:
        """The reason names To, the problem and the value as written; the address column keeps the input."""
        address, why = _one(value)
        assert why == reason
        assert address == (value.strip() if value.strip() else value)

    @pytest.mark.parametrize(
        ("value", "region"),
        [
            ("4155550100 / 4155550101", "US"),
            ("(415) 555-0100, (415) 555-0101", "US"),
            ("4155550100 or 4155550101", "US"),
            ("4155550100 & 4155550101", "US"),
            ("4155550100|4155550101", "US"),
            ("4155550100 4155550101", "US"),
            ("+14155550100 +14155550101", None),
            ("whatsapp:+14155550100 +14155550101", None),
            ("+49 171 2345678 / +49 171 2345679", "DE"),
            ("0171 2345678 / 0171 2345679", "DE"),
            # A comma and no space: the shape of a decimal, yet two numbers.
            ("4155550100,4155550101", "US"),
            ("+14155550100,+14155550101", None),
        ],
    )
    def test_two_numbers_in_one_cell_are_named_as_such_not_as_one_too_long(self, value: str, region: str) -> None:
        """Read as one, their digits are "too long" or "not a phone number": the reason says what a person did."""
        address, why = _one(value, region)
        assert (address, why) == (
            value,
            f"To: {'whatsapp: address: ' * value.startswith('whatsapp:')}"
            f"holds more than one number (one number a row): {value!r}",
        )

    @pytest.mark.parametrize(
        "value",
        [
            "415-555-O1OO",  # letter O typed for a zero: was sent to +14155556166
            "+1 415 555 0IOI",  # I and O: was sent to +14155550464
            "1-800-FLOWERS",
            "whatsapp:+1415555O1OO",
            "O4155550100",  # touching the first digit: no label before the number
        ],
    )
    def test_letters_among_the_digits_are_refused_never_read_as_a_keypad(self, value: str) -> None:
        """phonenumbers turns three or more letters into a keypad's digits: another person's number, never sent."""
        address, why = _one(value)
        assert address == value
        assert why is not None and why.startswith("To: ") and LETTERS_REASON in why

    @pytest.mark.parametrize(
        ("value", "sent"),
        [
            ("Mobile: 415-555-0114", "+14155550114"),
            ("tel:+1-415-555-0100", "+14155550100"),
            ("M 415 555 0114", "+14155550114"),
        ],
    )
    def test_words_before_the_number_are_no_letters_in_it(self, value: str, sent: str) -> None:
        """A label or a tel: in front of the number is not part of it: the number is sent."""
        assert _one(value) == (sent, None)

    @pytest.mark.parametrize(
        ("value", "region"),
        [
            # Joined, the digits would be valid numbers: a decimal must never be sent as one.
            ("+4962029.5083738", "DE"),
            ("+3932336.5022208", "IT"),
            ("+4962029,5083738", "DE"),
            ("4155550.1000000", "US"),
        ],
    )
    def test_a_decimal_with_long_parts_is_never_sent(self, value: str, region: str) -> None:
        """`+4962029.5083738` (a spreadsheet's decimal) is refused by the whole-column path, not sent as one number."""
        address, why = _one(value, region)
        assert why is not None and why.startswith("To: ")
        assert address == value

    @pytest.mark.parametrize(
        ("value", "region", "expected"),
        [
            # A number and something else keeps its reason; one number spelled with a slash is still one number.
            ("4155550100 / 12", "US", (None, "not a valid phone number for region US")),
            ("415 555 0100 99", "US", (None, "not a valid phone number for region US")),
            ("071 234 5678 / 9", "DE", ("+497123456789", None)),
            ("030 / 901820", "DE", ("+4930901820", None)),
            # A decimal stays a decimal: a dot is no list, and parts that are not numbers are no two numbers.
            ("4155550100.4155550101", "US", (None, DECIMAL_REASON)),
            ("1234567,1234567", "US", (None, DECIMAL_REASON)),
        ],
    )
    def test_a_value_that_is_not_two_numbers_keeps_its_answer(
        self, value: str, region: str, expected: tuple[str | None, str | None]
    ) -> None:
        """Only a value that is not one number, and whose every part is one, gets the reason."""
        assert normalize_one(value, region) == expected

    def test_phonenumbers_sees_only_distinct_values_the_fast_path_rejects(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """10,000 E.164 rows cost phonenumbers nothing; a spelling repeated 500 times is looked at once."""
        seen: list[Any] = []
        for name in ("parse", "is_valid_number", "is_valid_number_for_region"):
            original = getattr(phonenumbers, name)

            def spy(*args: Any, _original: Any = original, **kwargs: Any) -> Any:
                seen.append(args[0])
                return _original(*args, **kwargs)

            monkeypatch.setattr(phonenumbers, name, spy)
        values = [f"+1415555{i % 10000:04d}" for i in range(10_000)] + ["(415) 555-0100"] * 500 + ["nope"] * 500
        result = phone.normalize(pl.Series(values), "US")
        assert result["reason"].null_count() == 10_500
        assert len(seen) <= 2

    def test_a_country_only_a_few_rows_have_is_judged_as_if_each_row_stood_alone(self) -> None:
        """20,000 US rows and a few British, German and WhatsApp ones (too few to be in the first look's sample
        of country codes): every row is sent or refused exactly as it would be on a list of its own."""
        rare = ["+442079460000", " +4915123456789", "whatsapp:+442079460001", "+44207946000", "+4930 901820"]
        values = [f"+1415555{i % 10_000:04d}" for i in range(20_000)]
        for at, value in zip((3_001, 9_999, 12_345, 17_777, 19_998), rare, strict=True):
            values[at] = value
        result = phone.normalize(pl.Series(values), "US")
        assert [result.row(at) for at in (3_001, 9_999, 12_345, 17_777, 19_998)] == [_one(v) for v in rare]
        assert result["reason"].null_count() == 20_000 - 1

    def test_mask_hides_the_middle_of_an_address(self) -> None:
        """Logs show +1415***0100, never the whole number."""
        assert (phone.mask("+14155550100"), phone.mask("bob@company.com"), phone.mask(None)) == (
            "+1415***0100",
            "bo***@company.com",
            "",
        )


SCIENTIFIC = "written in scientific notation: digits were lost; export the column as text"
DECIMAL = "a number with a decimal part, not a phone number; export the column as text"


class TestWhatASpreadsheetDid:
    @pytest.mark.parametrize("value", ["1.41555501E+10", "1,41555501E+10", "1.4155550100e10", "4.15555E9"])
    def test_scientific_notation_is_invalid_never_guessed_back(self, value: str) -> None:
        """`1.41555501E+10` lost its last digits: refused with the reason, never sent to +14155550100 (someone else)."""
        assert _one(value) == (value, f"To: {SCIENTIFIC}: '{value}'")

    def test_whole_numbers_in_a_float_column_are_read_as_digits_and_logged_once(self) -> None:
        """`4155550123.0` (Parquet, NDJSON, a CSV column typed float) is +14155550123; one log line says so."""
        floats = pl.Series("phone", [4155550123.0, 4155550124.0, None])
        texts = pl.Series("mobile", ["4155550123.0", "+14155550124", " 4155550125.00 "])
        with capture_logs() as events:
            from_floats = phone.normalize(floats, "US").rows()
            from_texts = phone.normalize(texts, "US").rows()
        assert from_floats == [("+14155550123", None), ("+14155550124", None), (None, "To is empty")]
        assert from_texts == [("+14155550123", None), ("+14155550124", None), ("+14155550125", None)]
        logged = [(e["event"], e["column"], e["rows"]) for e in events if e["event"] == "input.float_column"]
        assert logged == [("input.float_column", "phone", 2), ("input.float_column", "mobile", 2)]

    @pytest.mark.parametrize(
        ("value", "region", "national", "foreign"),
        [
            ("447911123456", "DE", "+49447911123456", "+447911123456 (GB"),
            ("33612345678", "DE", "+4933612345678", "+33612345678 (FR"),
            ("14155550100", "AT", "+4314155550100", "+14155550100 (US"),
            ("291 712 3456", "GB", "+442917123456", "+2917123456 (ER"),
        ],
    )
    def test_a_foreign_number_missing_its_plus_is_refused_where_a_zero_dials_nationally(
        self, value: str, region: str, national: str, foreign: str
    ) -> None:
        """In DE `447911123456` is a German number without its 0 and a British one without its '+': never guessed."""
        address, reason = _one(value, region)
        assert address == value
        assert reason is not None and f"reads as {national} ({region}, its 0 dropped) and as {foreign}" in reason

    @pytest.mark.parametrize(
        ("value", "region", "sent"),
        [
            ("1701234567", "DE", "+491701234567"),  # read with '+', no number
            ("4915112345678", "DE", "+4915112345678"),  # the region's own code
            ("7911123450", "GB", "+447911123450"),  # Excel's dropped zero, no foreign number
            ("17472678374", "DE", "+4917472678374"),  # a German mobile; +1 747… is a number too, of another kind
            ("4155550100", "US", "+14155550100"),  # North America writes its numbers so
            ("(45) 4724-4496", "BR", "+554547244496"),  # as Brazil writes a landline at home: no bare digits
        ],
    )
    def test_bare_digits_that_are_no_foreign_number_are_sent(self, value: str, region: str, sent: str) -> None:
        """Only digits that are a valid number of another country with their '+' back are refused."""
        assert _one(value, region) == (sent, None)

    @pytest.mark.parametrize("value", [4155550123.5, "4155550123.5", "415555012.3"])
    def test_a_number_with_a_decimal_part_is_invalid_naming_the_decimal(self, value: float | str) -> None:
        """`415555012.3` is not (415) 555-0123: the row is refused and the reason mentions the decimal part."""
        address, reason = _one(value)
        assert reason == f"To: {DECIMAL}: '{value}'"
        assert address == str(value)

    @pytest.mark.parametrize(
        ("value", "region", "sent"),
        [
            ("4915123456789", "DE", "+4915123456789"),
            ("49 151 23456789", "DE", "+4915123456789"),
            ("015123456789", "DE", "+4915123456789"),
            ("447911123456", "GB", "+447911123456"),
            ("07911 123456", "GB", "+447911123456"),
            ("14155550100", "US", "+14155550100"),
        ],
    )
    def test_the_regions_country_code_without_a_plus_is_read_internationally(
        self, value: str, region: str, sent: str
    ) -> None:
        """`4915123456789` in DE is +49 1512 3456789, not +49 4915123456789; national spellings still work."""
        assert _one(value, region) == (sent, None)


class TestE164ShapedValuesAreJudgedInBulk:
    def test_e164_shaped_values_the_fast_path_rejects_never_reach_phonenumbers(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """20,000 distinct wrong E.164 numbers are refused with phonenumbers' reasons without one call to it."""

        def refuse(*args: Any, **kwargs: Any) -> Any:
            raise AssertionError("phonenumbers was asked")

        for name in ("parse", "is_valid_number", "is_valid_number_for_region"):
            monkeypatch.setattr(phonenumbers, name, refuse)
        wrong = [f"+1555{i:07d}" for i in range(20_000)]
        odd = ["+999123456789", "+44" + "1" * 18, "+441", "whatsapp:+1555", "4155550123.5", "1.41555501E+10"]
        result = phone.normalize(pl.Series(wrong + odd + ["+14155550100"]), "US")
        reasons = result["reason"].to_list()
        assert reasons[0] == "To: not a valid phone number: '+15550000000'"
        assert reasons[20_000:] == [
            "To: unknown country code: '+999123456789'",
            f"To: too long: '+44{'1' * 18}'",
            "To: too short: '+441'",
            "To: whatsapp: address: not a valid phone number: 'whatsapp:+1555'",
            f"To: {DECIMAL}: '4155550123.5'",
            f"To: {SCIENTIFIC}: '1.41555501E+10'",
            None,
        ]

    # A list of values an example, judged in one call (see TestNormalization): 30 examples of about ten judge
    # as many distinct values as 300 of one did.
    @given(st.lists(near_valid_e164(), min_size=5, max_size=15, unique=True))
    @settings(max_examples=30)
    def test_the_bulk_reason_is_the_one_phonenumbers_gives_where_it_has_one(self, values: list[str]) -> None:
        """Unknown country code, too long and too short are worded as the slow path words them."""
        fast_reasons = phone.normalize(pl.Series(values), None)["reason"].to_list()
        for value, fast_reason in zip(values, fast_reasons, strict=True):
            slow_reason = phone.normalize_one(value, None)[1]
            if fast_reason is not None and slow_reason is not None and slow_reason != "not a valid phone number":
                assert fast_reason == f"To: {slow_reason}: {value!r}"


class TestChannels:
    SID = "MG" + "0123456789abcdef" * 2

    def test_a_messaging_service_sid_is_a_sender_only(self) -> None:
        """`MG…` (32 hex) is a fine From, but as To it is refused saying it can only be the sender."""
        assert phone.normalize(pl.Series([self.SID]), "US", what="From").row(0) == (self.SID, None)
        assert _one(self.SID) == (
            self.SID,
            f"To: a Messaging Service SID (MG…) can only be the sender (From), not To: '{self.SID}'",
        )

    def test_a_lowered_sid_as_to_is_refused_as_a_sid(self) -> None:
        """`mg…` as To is refused as a SID that can only be the sender, as `MG…` is, not as a number "too long"."""
        lowered = self.SID.lower()
        assert _one(lowered) == (
            lowered,
            f"To: a Messaging Service SID (MG…) can only be the sender (From), not To: '{lowered}'",
        )

    @pytest.mark.parametrize(
        ("value", "reason"),
        [
            ("MG123", "Messaging Service SID: must be 'MG' and 32 hex digits"),
            ("MG" + "g" * 32, "Messaging Service SID: must be 'MG' and 32 hex digits"),
            # A column lowered by a spreadsheet: said as such, never "too long" as if it were a number.
            ("mg" + "0123456789abcdef" * 2, "Messaging Service SID: must start with 'MG' in capitals"),
            ("Mg" + "0123456789abcdef" * 2, "Messaging Service SID: must start with 'MG' in capitals"),
            ("client:ana maria", "client: address: the name must be letters, digits, '_', '.' or '-'"),
            ("client:", "client: address: the name must be letters, digits, '_', '.' or '-'"),
            ("sip:ana maria@pbx.example.com", SIP_RULE),
            ("sip:pbx.example.com", SIP_RULE),
            ("whatsapp:+1555", "whatsapp: address: not a valid phone number"),
            ("whatsapp:(555) 555-0100", "whatsapp: address: not a valid phone number for region US"),
        ],
    )
    def test_a_sender_that_breaks_its_channels_rule_names_the_rule(self, value: str, reason: str) -> None:
        """A From is checked by the rule of what it looks like, and the reason says which rule failed."""
        assert phone.normalize(pl.Series([value]), "US", what="From").row(0) == (value, f"From: {reason}: {value!r}")
