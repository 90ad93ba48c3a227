"""What a spreadsheet does to a phone number (a float's `,0`, a decimal part, an exponent): the right person or none."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import phonenumbers
import polars as pl
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

import batch_engage
from batch_engage.plan import phone
from batch_engage.plan.twins import ZERO_TWIN_REASON

from conftest import FLOW_SID, cli

REGIONS = ["US", "GB", "DE", "FR", "IT", "ES", "BR", "IN", "AU", "JP"]
ZERO_FRACTIONS = [".0", ",0", ".00", ",00", ".000"]
OTHER_FRACTIONS = [".5", ",5", ",25", ".01", ",10"]
DECIMAL = "a number with a decimal part, not a phone number; export the column as text"


def _one(value: str, region: str | None) -> tuple[str | None, str | None]:
    address, reason = phone.normalize(pl.Series([value]), region).row(0)
    return address, reason


def _job(folder: Path, contacts: Path, region: str) -> Path:
    """A job in ``folder`` sending ``contacts``' ``phone`` column with ``default_region``."""
    job = folder / f"{region.lower()}.toml"
    job.write_text(
        f'[input]\npath = "{contacts}"\n\n[flow]\nsid = "{FLOW_SID}"\n\n'
        f'[mapping]\nto = "phone"\nfrom = "+15005550006"\ndefault_region = "{region}"\n'
    )
    return job


class TestTheGermanCases:
    @pytest.mark.parametrize(
        ("written", "sent"),
        [
            ("491712345684,0", "+491712345684"),
            ("+491712345678.0", "+491712345678"),
            ("4915112345678.00", "+4915112345678"),
            ("1,5E+11", None),
        ],
    )
    def test_german_spreadsheet_numbers_reach_the_right_person_or_are_invalid(
        self, written: str, sent: str | None
    ) -> None:
        """With default_region DE: a float's zeros never become digits (+49491712345684, +4917123456780 are gone)."""
        address, reason = _one(written, "DE")
        if sent is None:
            assert reason is not None
        else:
            assert (address, reason) == (sent, None)

    @pytest.mark.parametrize("fraction", [",0", ".0", ",00", ".00"])
    @pytest.mark.parametrize("number", ["491712345684", "+491712345684", "01712345684"])
    def test_a_zero_fraction_is_stripped_before_the_number_is_read(self, number: str, fraction: str) -> None:
        """`,0`, `.0`, `,00` after a number, with or without `+`, is dropped: the number as if written without it."""
        assert _one(number + fraction, "DE") == ("+491712345684", None)

    @pytest.mark.parametrize("written", ["491712345684,5", "+491712345678.25", "+491712345678,01", "4915112345678.10"])
    def test_any_other_fraction_is_invalid_with_that_reason(self, written: str) -> None:
        """A decimal part that is not all zeros is no phone number: `invalid`, the reason names the decimal part."""
        assert _one(written, "DE") == (written, f"To: {DECIMAL}: '{written}'")


class TestFormattedNumbers:
    @pytest.mark.parametrize(
        ("written", "sent"),
        [
            ("+49 1712345684.0", "+491712345684"),
            ("0171 2345685.0", "+491712345685"),
            ("(0171) 2345684.0", "+491712345684"),
            ("0171-2345684.0", "+491712345684"),
            ("0171/2345684.0", "+491712345684"),
            ("whatsapp:+49 1712345684.0", "whatsapp:+491712345684"),
        ],
    )
    def test_a_zero_fraction_after_spaces_or_punctuation_never_becomes_a_digit(self, written: str, sent: str) -> None:
        """With default_region DE, `0171 2345685.0` reaches +491712345685, never +4917123456850 (someone else)."""
        assert _one(written, "DE") == (sent, None)

    @pytest.mark.parametrize(
        ("written", "region"), [("030 1234 56.00", "DE"), ("+49 171 2345684,00", "DE"), ("06 1234 56.00", "IT")]
    )
    def test_a_spelled_number_ending_in_two_zeros_is_refused_not_guessed(self, written: str, region: str) -> None:
        """`030 1234 56.00` is 030 123456 or 030 12345600, both numbers, and no float writes spaces: refused."""
        address, reason = _one(written, region)
        assert address == written and reason is not None and "zeros after a decimal mark" in reason

    @pytest.mark.parametrize("written", ["(415) 555-0101.0", "+1 (415) 555-0101.0", "415-555-0101,0"])
    def test_a_us_number_with_a_zero_fraction_reaches_the_same_person(self, written: str) -> None:
        """With default_region US, `(415) 555-0101.0` is sent to +14155550101."""
        assert _one(written, "US") == ("+14155550101", None)

    @pytest.mark.parametrize(("written", "region"), [("06.12.34.56.00", "FR"), ("+33 6.12.34.56.00", "FR")])
    def test_a_number_grouped_with_dots_keeps_its_last_zeros(self, written: str, region: str) -> None:
        """`06.12.34.56.00` is dot-grouped, not a float: its `.00` are digits, and it is sent to +33612345600."""
        assert _one(written, region) == ("+33612345600", None)

    def test_a_formatted_number_that_may_have_dropped_its_leading_zero_is_invalid(self) -> None:
        """In GA, `603 12 34.0` is held to the rule `6031234.0` is: `06031234` or `6031234` is unknowable."""
        _, reason = _one("603 12 34.0", "GA")
        assert reason is not None and "leading zero" in reason


@st.composite
def numbers(draw: st.DrawFn) -> tuple[str, phonenumbers.PhoneNumber]:
    """A valid number of one of ten regions (an example with its last digits changed), and the region."""
    region = draw(st.sampled_from(REGIONS))
    kind = draw(st.sampled_from([phonenumbers.PhoneNumberType.MOBILE, phonenumbers.PhoneNumberType.FIXED_LINE]))
    example = phonenumbers.example_number_for_type(region, kind)
    assume(example is not None)
    nsn = list(phonenumbers.national_significant_number(example))
    for place in draw(st.lists(st.integers(1, 3), max_size=3)):
        nsn[-place] = str(draw(st.integers(0, 9)))
    number = phonenumbers.parse(f"+{example.country_code}{''.join(nsn)}", None)
    assume(phonenumbers.is_valid_number(number))
    return region, number


def _written(number: phonenumbers.PhoneNumber, region: str, form: str) -> str:
    """The number as a spreadsheet cell holds it, before any damage: digits only, in one of four forms."""
    e164 = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
    national = "".join(
        c for c in phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.NATIONAL) if c.isdigit()
    )
    return {
        "e164": e164,
        "without_plus": e164[1:],
        "national": national,
        "significant": phonenumbers.national_significant_number(number),
    }[form]


FORMS = ["e164", "without_plus", "national", "significant"]


@given(
    drawn=numbers(),
    form=st.sampled_from(FORMS),
    damage=st.sampled_from(ZERO_FRACTIONS + OTHER_FRACTIONS + ["scientific"]),
)
def test_spreadsheet_damage_never_sends_to_another_number_in_ten_regions(
    drawn: tuple[str, phonenumbers.PhoneNumber], form: str, damage: str
) -> None:
    """Damage never changes who is reached: a zero fraction gives what the clean cell gives; the rest is invalid."""
    region, number = drawn
    clean = _written(number, region, form)
    if damage == "scientific":
        digits = clean.lstrip("+")
        damaged = f"{digits[0]},{digits[1:6]}E+{len(digits) - 1}"
    else:
        damaged = clean + damage
    address, reason = _one(damaged, region)
    if damage in ZERO_FRACTIONS:
        # The clean cell's reading, or refused where the float may have eaten a leading zero.
        assert reason is not None or (address, reason) == _one(clean, region)
    else:
        assert reason is not None, (damaged, address)
    if reason is None:
        assert address == phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164) or (
            address == _one(clean, region)[0]
        )


@given(
    drawn=numbers(),
    style=st.sampled_from([phonenumbers.PhoneNumberFormat.NATIONAL, phonenumbers.PhoneNumberFormat.INTERNATIONAL]),
    fraction=st.sampled_from(ZERO_FRACTIONS),
)
def test_a_zero_fraction_after_a_formatted_number_in_ten_regions_changes_nobody(
    drawn: tuple[str, phonenumbers.PhoneNumber], style: int, fraction: str
) -> None:
    """`(415) 555-0101.0`, `+49 171 2345684,00`: sent where the cell without its fraction is sent, or refused."""
    region, number = drawn
    clean = phonenumbers.format_number(number, style)
    assume(not any(mark in clean for mark in ".,"))
    address, reason = _one(clean + fraction, region)
    assert reason is not None or (address, reason) == _one(clean, region), (clean + fraction, address)


class TestAnExponentInAJsonFile:
    def test_a_json_number_with_an_exponent_is_invalid_as_in_a_csv(self, tmp_path: Path) -> None:
        """NDJSON `"phone": 1.41555501E+10` parses to 14155550100, someone else: the row is invalid, the rest sent."""
        contacts = tmp_path / "c.ndjson"
        contacts.write_text(
            '{"phone": "+14155550101"}\n\n{"phone": 1.41555501E+10}\n{"phone": 14155550103}\n{"phone": 1.5e3}\n'
        )
        job = _job(tmp_path, contacts, "US")
        found = batch_engage.validate(job)
        table = found.results.sort("row")
        assert table["status"].to_list() == ["pending", "invalid", "pending", "invalid"]
        # The results show the number as the file wrote it, not the float it parses to.
        assert table["to"].to_list()[:3] == ["+14155550101", "1.41555501E+10", "+14155550103"]
        said = "To: written in scientific notation: digits were lost; export the column as text: '1.41555501E+10'"
        assert table["error_message"][1] == said


class TestLeadingZeros:
    @pytest.mark.parametrize("cell", ["6031234.0", 6031234.0, 6031234])
    def test_a_number_column_that_may_have_dropped_a_leading_zero_is_invalid(self, cell: str | float) -> None:
        """In GA `06031234` is a number and so is `6031234`: from a number column, which one is unknowable."""
        _, reason = phone.normalize(pl.Series([cell]), "GA").row(0)
        assert reason is not None and "leading zero" in reason

    @pytest.mark.parametrize("suffix", ["parquet", "ndjson"])
    def test_an_integer_column_of_a_file_is_held_to_the_same_rule(self, tmp_path: Path, suffix: str) -> None:
        """A Parquet or NDJSON column of integers lost its zeros as a float column does: both rows invalid, none sent."""
        contacts = tmp_path / f"c.{suffix}"
        frame = pl.DataFrame({"phone": [6031234, 7012345]})
        frame.write_parquet(contacts) if suffix == "parquet" else frame.write_ndjson(contacts)
        job = _job(tmp_path, contacts, "GA")
        found = batch_engage.validate(job)
        assert (found.valid, found.invalid) == (0, 2)
        assert all("leading zero" in m for m in found.results["error_message"])

    @pytest.mark.parametrize(
        ("cell", "region", "sent"), [(1712345684.0, "DE", "+491712345684"), ("06031234", "GA", "+24106031234")]
    )
    def test_a_trunk_zero_or_a_zero_written_as_text_is_no_doubt(
        self, cell: str | float, region: str, sent: str
    ) -> None:
        """Where 0 is only the trunk prefix (DE), or the cell is text that kept its zero, the number is sent."""
        assert phone.normalize(pl.Series([cell]), region).row(0) == (sent, None)


class TestZeroTwinsInText:
    def test_bare_digits_a_zero_away_from_a_number_of_the_same_kind_are_invalid(self, tmp_path: Path) -> None:
        """GA, from a CSV: `6031234` may be `06031234` after Excel (both mobiles), so it is refused, named; the
        same person written with its 0 or its country code is sent."""
        contacts = tmp_path / "ga.csv"
        contacts.write_text("phone\n6031234\n06031234\n+2416031235\n")
        job = _job(tmp_path, contacts, "GA")
        table = batch_engage.validate(job).results.sort("row")
        assert table["status"].to_list() == ["invalid", "pending", "pending"]
        assert table["error_message"][0] == f"To: {ZERO_TWIN_REASON}: '6031234'"
        assert table["to"].to_list()[1:] == ["+24106031234", "+2416031235"]

    # Italy's mobile ranges as its metadata has them (3[2-9] and 7 digits, 3 and 9 digits): every number a mobile.
    @given(st.integers(320_000_000, 399_999_999) | st.integers(3_100_000_000, 3_999_999_999))
    def test_an_italian_mobile_written_bare_is_sent_as_written(self, digits: int) -> None:
        """An Italian mobile (3…) is no landline's zero-less twin by kind: a list of mobiles is never refused for it."""
        text = str(digits)
        number = phonenumbers.parse(text, "IT")
        assert phonenumbers.number_type(number) == phonenumbers.PhoneNumberType.MOBILE
        assert _one(text, "IT") == (f"+39{text}", None)

    @pytest.mark.parametrize("region", sorted(phonenumbers.SUPPORTED_REGIONS))
    def test_example_numbers_of_every_region_are_sent_as_written(self, region: str) -> None:
        """No region's example numbers, written nationally (spaced or bare), are taken for a zero-less twin."""
        metadata = phonenumbers.PhoneMetadata.metadata_for_region(region)
        for kind in ("mobile", "fixed_line"):
            desc = getattr(metadata, kind)
            if desc is None or not desc.example_number:
                continue
            number = phonenumbers.parse(desc.example_number, region)
            national = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.NATIONAL)
            # As formatted, and as bare digits: a spreadsheet's cell, the only kind the rule judges.
            for written in (national, "".join(c for c in national if c.isdigit())):
                _, reason = _one(written, region)
                assert ZERO_TWIN_REASON not in (reason or ""), (region, written)


class TestValidateShowsRewrites:
    @pytest.fixture
    def job(self, tmp_path: Path) -> Path:
        contacts = tmp_path / "de.csv"
        contacts.write_text(
            "phone\n"
            '"491712345684,0"\n+491712345678.0\n4915112345678.00\n"1,5E+11"\n'
            "0171 2345679\n01712345670\n+49 171 2345671\n4915112345679\n+491712345672\n"
        )
        path = tmp_path / "de.toml"
        path.write_text(
            f'[input]\npath = "{contacts}"\n\n[flow]\nsid = "{FLOW_SID}"\n\n'
            '[mapping]\nto = "phone"\nfrom = "+15005550006"\ndefault_region = "DE"\n'
        )
        return path

    def test_validate_shows_one_example_of_each_way_a_number_was_rewritten(self, job: Path) -> None:
        """Each distinct way (zeros dropped, country code added, punctuation dropped) once: as written → as sent."""
        found = batch_engage.validate(job)
        shown = [(r.written, r.sent) for r in found.rewrites]
        assert shown == [
            ("491712345684,0", "+491712345684"),
            ("+491712345678.0", "+491712345678"),
            ("0171 2345679", "+491712345679"),
            ("+49 171 2345671", "+491712345671"),
            ("4915112345679", "+4915112345679"),
        ]
        assert len({r.way for r in found.rewrites}) == len(found.rewrites)
        assert found.as_dict()["rewritten"][0] == {
            "way": "a spreadsheet's decimal zeros dropped, country code written without '+'",
            "written": "491712345684,0",
            "sent": "+491712345684",
        }

    def test_a_dropped_trunk_zero_and_a_dialled_00_are_named_for_what_they_are(self) -> None:
        """`+49 (0)171…` and `0044 7911…` each get their own way, never none and never "national number"."""
        from batch_engage.plan.rewrites import rewrite_examples

        written = pl.Series(
            ["+49 (0)171 1234567", "0044 7911 123456", "0011 44 7911 123459", "0049 (0)171 1234568", "07911 123457"]
        )
        sent = ["+491711234567", "+447911123456", "+447911123459", "+491711234568", "+447911123457"]
        plan = pl.DataFrame({"to": sent, "status": ["pending"] * 5})
        ways = {r.written: r.way for r in rewrite_examples(written, plan)}
        assert ways == {
            "+49 (0)171 1234567": "trunk prefix (0) after the country code dropped",
            "0044 7911 123456": "international prefix (00, 011, 0011…) written for '+'",
            "07911 123457": "national number: country code of mapping.default_region",
        }
        # Australia dials out with 0011: the same way as 00, so it is not shown again.
        assert len(ways) == 3

    def test_a_formatted_number_s_dropped_zeros_are_named_as_such(self) -> None:
        """`+49 1712345684.0` → +491712345684 is shown as zeros dropped, never as digits the country's rules changed."""
        from batch_engage.plan.rewrites import rewrite_examples

        written = pl.Series(["+49 1712345684.0", "0171 2345685.0"])
        plan = pl.DataFrame({"to": ["+491712345684", "+491712345685"], "status": ["pending"] * 2})
        assert [r.way for r in rewrite_examples(written, plan)] == [
            "a spreadsheet's decimal zeros dropped, spaces and punctuation dropped",
            "a spreadsheet's decimal zeros dropped, national number: country code of mapping.default_region",
        ]

    def test_validate_prints_the_rewrites_as_written_and_as_sent(
        self, job: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """The CLI shows each example on its own line, `as written → as sent`, with the way in brackets."""
        code, out, _ = cli(["validate", str(job)], capsys)
        assert code == 1  # the scientific one is invalid
        assert "  +491712345678.0 → +491712345678  (a spreadsheet's decimal zeros dropped)" in out

    def test_validate_shows_no_rewrites_when_every_number_is_sent_as_written(
        self, write_job: Callable[..., Path], contacts_csv: Path
    ) -> None:
        """A list already in E.164 shows no rewrite at all."""
        assert batch_engage.validate(write_job(input_path=contacts_csv)).rewrites == ()


def test_a_nested_key_named_like_the_address_column_leaves_the_address_alone(tmp_path: Path) -> None:
    """NDJSON `{"phone": "+1415…", "prev": {"phone": 1.41555501E+10}}`: the top-level text address is sent."""
    contacts = tmp_path / "c.ndjson"
    contacts.write_text('{"phone": "+14155550100", "prev": {"phone": 1.41555501E+10}}\n{"phone": "+14155550101"}\n')
    job = _job(tmp_path, contacts, "US")
    table = batch_engage.validate(job).results.sort("row")
    assert table["status"].to_list() == ["pending", "pending"]
    assert table["to"].to_list() == ["+14155550100", "+14155550101"]
