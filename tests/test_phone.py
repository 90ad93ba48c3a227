"""Contact addresses: what a user writes in the To column, and what is sent or why it is refused."""

from __future__ import annotations

from typing import Any

import phonenumbers
import polars as pl
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from batch_engage import phone


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


def _examples() -> list[str]:
    """An example number of every type for every region phonenumbers knows, in E.164."""
    found: set[str] = set()
    for region in phonenumbers.SUPPORTED_REGIONS:
        for kind in range(11):
            number = phonenumbers.example_number_for_type(region, kind)
            if number is not None:
                found.add(phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164))
    return sorted(found)


EXAMPLES = _examples()


@st.composite
def near_valid_e164(draw: st.DrawFn) -> str:
    """An example number with a few digits changed, one added or one dropped: valid or invalid, always close."""
    digits = list(draw(st.sampled_from(EXAMPLES))[1:])
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
    @given(us_numbers)
    @settings(max_examples=150, suppress_health_check=[HealthCheck.filter_too_much])
    def test_any_spelling_of_a_us_number_becomes_the_same_e164(self, digits: str) -> None:
        """(415) 555-0100, 415.555.0100, 1 415 555 0100, +1-415-... all become +14155550100 with region US."""
        result = phone.normalize(pl.Series(_spellings(digits)), "US")
        assert result["reason"].to_list() == [None] * len(_spellings(digits))
        assert set(result["address"].to_list()) == {"+1" + digits}

    @given(near_valid_e164())
    @settings(max_examples=400)
    @example("+15555550100")
    @example("+390612345678")
    @example("+2600800012345")
    def test_the_fast_path_and_phonenumbers_agree_on_e164_input(self, value: str) -> None:
        """What the vectorized check accepts, phonenumbers finds valid and spells the same; the rest is its call."""
        fast = pl.Series([value]).str.contains(phone.fast_path_pattern()).item()
        reference = _phonenumbers_e164(value, None)
        if fast:
            assert reference == value
        address, reason = _one(value, None)
        if reference is None:
            assert reason is not None and reason.startswith("To: ")
        else:
            # Zambia's +260 0800... is valid to phonenumbers without its trunk 0: the slow path sends that.
            assert (address, reason) == (reference, None)

    @given(spelled(), st.sampled_from(["US", "CA", "GB", None]))
    @settings(max_examples=300)
    @example("(+1) 415 555 0100", "US")
    @example("+44 (0)20 7946 0000", "GB")
    def test_any_spelling_gives_what_phonenumbers_gives(self, value: str, region: str | None) -> None:
        """Spaces, dashes, dots and parentheses never change the answer: polars' shortcut and phonenumbers agree."""
        reference = _phonenumbers_e164(value, region)
        address, reason = _one(value, region)
        assert (address if reason is None else None) == reference

    @given(st.sampled_from(EXAMPLES), st.sampled_from(["US", "GB", "DE", None]))
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
            ("1.41555501E+10", "+14155550100"),
            ("+44 20 7946 0000", "+442079460000"),
            ("１４１５５５５０１００", "+14155550100"),
        ],
    )
    def test_other_spellings_are_sent_as_e164(self, value: str, sent: str) -> None:
        """WhatsApp numbers in any format, spreadsheet exponents and full-width digits become E.164."""
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
            ("whatsapp:+1555", "To: not a valid phone number: 'whatsapp:+1555'"),
        ],
    )
    def test_an_unusable_address_says_why_and_keeps_what_was_written(self, value: str, reason: str) -> None:
        """The reason names To, the problem and the value as written; the address column keeps the input."""
        address, why = _one(value)
        assert why == reason
        assert address == (value.strip() if value.strip() else value)

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

    def test_mask_hides_the_middle_of_an_address(self) -> None:
        """Logs show +1415***0100, never the whole number."""
        assert (phone.mask("+14155550100"), phone.mask("bob@company.com"), phone.mask(None)) == (
            "+1415***0100",
            "bo***@company.com",
            "",
        )
