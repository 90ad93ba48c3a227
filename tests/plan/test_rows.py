"""Planning: which rows are sent, with what To, From and Parameters, and why the others are not."""

from __future__ import annotations

import functools
import json
import math
from dataclasses import replace
from pathlib import Path
from typing import Any

import phonenumbers
import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from batch_engage.errors import ConfigError, InputFileError
from batch_engage.inputs.files import read_table
from batch_engage.job import InputSpec, Spec, load_spec
from batch_engage.plan import rows as rows_module
from batch_engage.plan.rows import plan, text_columns

from conftest import FLOW_SID


def make_spec(mapping: dict[str, Any] | None = None, **send: Any) -> Spec:
    """A job spec with ``to = "phone"``, a literal From, and the given mapping keys and send settings."""
    given = mapping or {}
    defaults = {"to": "phone", "default_region": "US"} | ({} if "from_column" in given else {"from": "+15005550006"})
    raw: dict[str, Any] = {
        "flow": {"sid": FLOW_SID},
        "mapping": defaults | given,
        "send": send,
        "output": {"results": "never-written.results.csv", "checkpoint": "never-written.checkpoint"},
    }
    return load_spec(raw=raw)


def planned(frame: pl.DataFrame | dict[str, list[Any]], **kwargs: Any) -> list[dict[str, Any]]:
    data = frame if isinstance(frame, pl.DataFrame) else pl.DataFrame(frame)
    return plan(data, make_spec(**kwargs)).to_dicts()


def sent_parameters(rows: list[dict[str, Any]]) -> list[Any]:
    return [None if r["parameters"] is None else json.loads(r["parameters"]) for r in rows]


class TestDedupe:
    CONTACTS = {  # noqa: RUF012
        "phone": ["+14155550100", "(415) 555-0100", "+14155550101", "415.555.0100"],
        "sender": ["+15005550006", "+15005550007", "+15005550006", "+15005550006"],
    }

    def test_default_marks_a_later_row_with_the_same_contact_duplicate(self) -> None:
        """Dedupe on To (the default): (415) 555-0100 repeats +14155550100, and says which row it repeats."""
        rows = planned(self.CONTACTS, mapping={"from_column": "sender"})
        assert [(r["status"], r["error_message"]) for r in rows] == [
            ("pending", None),
            ("duplicate", "same contact as row 1"),
            ("pending", None),
            ("duplicate", "same contact as row 1"),
        ]

    def test_to_from_only_repeats_when_the_sender_is_the_same_too(self) -> None:
        """`dedupe = "to_from"`: the same contact from another sender is sent; from the same sender it is not."""
        rows = planned(self.CONTACTS, mapping={"from_column": "sender"}, dedupe="to_from")
        assert [(r["status"], r["error_message"]) for r in rows] == [
            ("pending", None),
            ("pending", None),
            ("pending", None),
            ("duplicate", "same contact and sender as row 1"),
        ]

    def test_none_sends_every_row(self) -> None:
        """`dedupe = "none"`: repeats are all pending."""
        rows = planned(self.CONTACTS, mapping={"from_column": "sender"}, dedupe="none")
        assert [r["status"] for r in rows] == ["pending"] * 4

    def test_an_invalid_row_never_shadows_a_valid_one(self) -> None:
        """A first row with a bad sender is invalid; the next row for that contact is sent, not a duplicate."""
        rows = planned(
            {"phone": ["+14155550100", "+14155550100"], "sender": ["nope", "+15005550006"]},
            mapping={"from_column": "sender"},
        )
        assert [(r["status"], r["error_message"]) for r in rows] == [
            ("invalid", "From: not a phone number: 'nope'"),
            ("pending", None),
        ]

    def test_two_contacts_sharing_a_hash_are_still_told_apart(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """Rows are grouped by a hash of the contact; should two numbers share one, neither is taken for a
        repeat of the other: each row's first row is checked, and the numbers themselves decide."""
        grouped_min = rows_module._grouped_min
        calls: list[str] = []

        def sharing(out: pl.DataFrame, key: pl.Expr) -> pl.Series:
            calls.append(str(key))
            # A shared hash, taken to the extreme: every valid row in one group.
            return grouped_min(out, pl.lit(0) if len(calls) == 1 else key)

        monkeypatch.setattr(rows_module, "_grouped_min", sharing)
        rows = planned({"phone": ["+14155550100", "+14155550101", "(415) 555-0100", "+14155550101"]})
        assert [(r["status"], r["error_message"]) for r in rows] == [
            ("pending", None),
            ("pending", None),
            ("duplicate", "same contact as row 1"),
            ("duplicate", "same contact as row 2"),
        ]
        assert len(calls) == 2


class TestAddresses:
    def test_the_plan_holds_the_address_as_sent(self) -> None:
        """A formatted number is planned (and shown in results) as the E.164 that will be sent."""
        rows = planned({"phone": ["(415) 555-0100", "whatsapp:+14155550101"]})
        assert [(r["to"], r["from"]) for r in rows] == [
            ("+14155550100", "+15005550006"),
            ("whatsapp:+14155550101", "+15005550006"),
        ]

    def test_to_and_from_over_300_bytes_together_are_invalid(self) -> None:
        """Twilio's 81023: an address pair of 301 bytes is refused before sending; 300 bytes is fine."""
        ok = "a" * (300 - len("+15005550006") - len("@x.io")) + "@x.io"
        rows = planned({"phone": [ok, "b" + ok]})
        assert [(r["status"], r["error_message"]) for r in rows] == [
            ("pending", None),
            ("invalid", "To and From together are over 300 bytes (Twilio error 81023)"),
        ]

    def test_a_bad_literal_from_is_a_configuration_error(self) -> None:
        """`from = "+1555"` stops the job with the key named, before any row is looked at."""
        with pytest.raises(ConfigError) as caught:
            planned({"phone": ["+14155550100"]}, mapping={"from": "+1555"})
        assert str(caught.value) == "mapping.from: not a valid phone number: '+1555'"

    def test_an_unknown_default_region_is_a_configuration_error(self) -> None:
        """`default_region = "USA"` is named as the wrong key, not blamed on every row."""
        with pytest.raises(ConfigError) as caught:
            planned({"phone": ["(415) 555-0100"]}, mapping={"default_region": "USA"})
        assert caught.value.key == "mapping.default_region"

    def test_a_mapped_column_that_is_missing_is_named_with_a_suggestion(self) -> None:
        """A typo in a parameter's column: the error names the key, the column, and the close match."""
        with pytest.raises(InputFileError) as caught:
            planned({"phone": ["+14155550100"], "first_name": ["Ana"]}, mapping={"parameters": {"name": "firstname"}})
        assert str(caught.value) == (
            "input: column 'firstname': mapping.parameters.name names a column the file does not have "
            "(it has: phone, first_name); did you mean 'first_name'?"
        )


class TestSenders:
    SID = "MG" + "0123456789abcdef" * 2

    def test_every_kind_of_sender_studio_accepts_is_sent_as_such(self) -> None:
        """From may be E.164 (after normalizing), whatsapp:, client:, sip: or a Messaging Service SID."""
        senders = ["(415) 555-0199", "whatsapp:+14155550199", "client:agent_7", "sip:desk@pbx.example.com", self.SID]
        rows = planned(
            {"phone": [f"+1415555010{i}" for i in range(len(senders))], "sender": senders},
            mapping={"from_column": "sender"},
        )
        assert [(r["from"], r["status"]) for r in rows] == [
            ("+14155550199", "pending"),
            ("whatsapp:+14155550199", "pending"),
            ("client:agent_7", "pending"),
            ("sip:desk@pbx.example.com", "pending"),
            (self.SID, "pending"),
        ]

    def test_a_messaging_service_sid_as_the_literal_from_is_accepted(self) -> None:
        """`from = "MG…"` is a sender, not a phone number that is "too long"."""
        rows = planned({"phone": ["+14155550100"]}, mapping={"from": self.SID})
        assert (rows[0]["from"], rows[0]["status"]) == (self.SID, "pending")

    def test_a_bad_sender_names_the_rule_it_broke(self) -> None:
        """A short MG SID, a client name with a space: each reason says which sender rule failed."""
        rows = planned(
            {"phone": ["+14155550100", "+14155550101"], "sender": ["MG123", "client:ana maria"]},
            mapping={"from_column": "sender"},
        )
        assert [(r["status"], r["error_message"]) for r in rows] == [
            ("invalid", "From: Messaging Service SID: must be 'MG' and 32 hex digits: 'MG123'"),
            ("invalid", "From: client: address: the name must be letters, digits, '_', '.' or '-': 'client:ana maria'"),
        ]

    def test_a_messaging_service_sid_is_never_a_contact(self) -> None:
        """An MG SID in the To column is invalid: Studio takes it as a sender only."""
        rows = planned({"phone": [self.SID]})
        assert rows[0]["status"] == "invalid"
        assert rows[0]["error_message"].startswith("To: a Messaging Service SID (MG…) can only be the sender (From)")


class TestParameters:
    def test_dotted_keys_nest_and_statics_join_them(self) -> None:
        """`order.id` and `order.total` become {"order": {...}}; static values sit next to mapped ones."""
        rows = planned(
            {"phone": ["+14155550100"], "oid": ["A-1"], "total": [12.5]},
            mapping={
                "parameters": {"order.id": "oid", "order": {"total": "total"}},
                "static_parameters": {"campaign": "spring", "launch": {"day": 3}},
            },
        )
        assert rows[0]["parameters"] == '{"order":{"id":"A-1","total":12.5},"campaign":"spring","launch":{"day":3}}'

    def test_nulls_are_left_out_and_an_object_of_nulls_disappears(self) -> None:
        """A null value is not sent as null: its key is left out, and so is an object left empty."""
        rows = planned(
            {"phone": ["+14155550100", "+14155550101"], "oid": ["A-1", None], "n": [None, None]},
            mapping={"parameters": {"order.id": "oid", "n": "n"}},
        )
        assert [r["parameters"] for r in rows] == ['{"order":{"id":"A-1"}}', None]

    def test_non_ascii_text_is_sent_byte_for_byte(self) -> None:
        """Zoë stays Zoë in the JSON (UTF-8, not \\u00eb), and quotes/newlines are escaped correctly."""
        rows = planned(
            {"phone": ["+14155550100"], "name": ['Zoë "Z"\n李'], "visits": [3]},
            mapping={"parameters": {"name": "name", "visits": "visits"}},
        )
        assert rows[0]["parameters"] == '{"name":"Zoë \\"Z\\"\\n李","visits":3}'

    def test_parameters_over_the_bound_are_invalid(self) -> None:
        """A row whose Parameters is over send.max_parameters_bytes is invalid; the default bound is 16 KiB."""
        frame = {"phone": ["+14155550100", "+14155550101"], "note": ["x" * 100, "x" * 16_384]}
        rows = planned(frame, mapping={"parameters": {"note": "note"}})
        assert [r["status"] for r in rows] == ["pending", "invalid"]
        assert rows[1]["error_message"] == "Parameters is over 16384 bytes (send.max_parameters_bytes)"
        rows = planned(frame, mapping={"parameters": {"note": "note"}}, max_parameters_bytes=50)
        assert [r["error_message"] for r in rows] == ["Parameters is over 50 bytes (send.max_parameters_bytes)"] * 2

    def test_a_json_column_is_merged_under_the_mapped_keys(self) -> None:
        """`parameters_column` objects are merged: mapped keys win, nested keys merge, a null mapping hides nothing."""
        rows = planned(
            {
                "phone": ["+14155550100", "+14155550101", "+14155550102"],
                "name": ["Ana", None, "Zoë"],
                "extra": ['{"name": "old", "order": {"note": "gift"}, "tier": 2}', '{"name": "kept"}', None],
            },
            mapping={"parameters": {"name": "name", "order.id": "name"}, "parameters_column": "extra"},
        )
        assert sent_parameters(rows) == [
            {"name": "Ana", "order": {"note": "gift", "id": "Ana"}, "tier": 2},
            {"name": "kept"},
            {"name": "Zoë", "order": {"id": "Zoë"}},
        ]

    @pytest.mark.parametrize(
        ("cell", "reason"),
        [
            ("[1, 2]", "extra: not a JSON object: '[1, 2]'"),
            ('"text"', "extra: not a JSON object: '\"text\"'"),
            ("{oops", "extra: not valid JSON: '{oops'"),
            ('{"a": NaN}', "extra: not valid JSON: '{\"a\": NaN}'"),
            ('{"a": -Infinity}', "extra: not valid JSON: '{\"a\": -Infinity}'"),
            ('{"a": 1e400}', "extra: not valid JSON: '{\"a\": 1e400}'"),
        ],
    )
    def test_a_json_cell_that_is_not_an_object_makes_its_row_invalid(self, cell: str, reason: str) -> None:
        """Only that row is refused, with the column and the value in the reason; its neighbours are sent."""
        rows = planned(
            {"phone": ["+14155550100", "+14155550101"], "extra": [cell, '{"a": 1}']},
            mapping={"parameters_column": "extra"},
        )
        assert [(r["status"], r["error_message"]) for r in rows] == [("invalid", reason), ("pending", None)]

    def test_a_nan_or_infinite_float_parameter_makes_its_row_invalid(self) -> None:
        """A float column's NaN or infinity (a Parquet file, a query's float8) is refused as inside a JSON column,
        not sent as a message without its amount; the finite row beside it is sent."""
        frame = pl.DataFrame(
            {"phone": ["+14155550100", "+14155550101", "+14155550102"], "total": [float("nan"), -math.inf, 12.5]}
        )
        rows = planned(frame, mapping={"parameters": {"total": "total"}})
        assert [(r["status"], r["error_message"]) for r in rows] == [
            ("invalid", "total: NaN is no JSON number (NaN and infinities have none)"),
            ("invalid", "total: -inf is no JSON number (NaN and infinities have none)"),
            ("pending", None),
        ]
        assert json.loads(rows[2]["parameters"]) == {"total": 12.5}

    @pytest.mark.parametrize(
        ("mapping", "key"),
        [
            ({"parameters": {"order.id": "a", "order": {"id": "b"}}}, "mapping.parameters.order.id"),
            ({"parameters": {"campaign": "a"}, "static_parameters": {"campaign": "x"}}, "mapping.parameters.campaign"),
            ({"parameters": {"order": "a", "order.id": "b"}}, "mapping.parameters.order.id"),
        ],
    )
    def test_a_key_mapped_twice_is_a_configuration_error_naming_it(self, mapping: dict[str, Any], key: str) -> None:
        """The same Parameters key from two places (dotted and nested, mapped and static, value and parent) is refused."""
        with pytest.raises(ConfigError) as caught:
            make_spec(mapping)
        assert caught.value.key == key


KEYS = st.lists(
    st.lists(st.sampled_from(["a", "b", "c", "ü"]), min_size=1, max_size=3).map(".".join),
    min_size=1,
    max_size=5,
    unique=True,
).filter(lambda keys: not any(k.startswith(o + ".") for k in keys for o in keys))
VALUES = st.one_of(
    st.lists(st.one_of(st.none(), st.integers(-(2**62), 2**62)), min_size=3, max_size=3),
    st.lists(st.one_of(st.none(), st.floats(allow_nan=False, allow_infinity=False)), min_size=3, max_size=3),
    st.lists(st.one_of(st.none(), st.text(max_size=20)), min_size=3, max_size=3),
    st.lists(st.one_of(st.none(), st.booleans()), min_size=3, max_size=3),
)


def _expected(keys: list[str], columns: list[list[Any]], row: int) -> dict[str, Any]:
    tree: dict[str, Any] = {}
    for key, values in zip(keys, columns):
        if values[row] is None:
            continue
        node = tree
        *parents, leaf = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = values[row]
    return tree


class TestParametersRoundTrip:
    @given(
        KEYS.flatmap(lambda keys: st.tuples(st.just(keys), st.lists(VALUES, min_size=len(keys), max_size=len(keys))))
    )
    @settings(max_examples=150, deadline=None)
    def test_what_is_sent_decodes_to_the_mapped_values(self, case: tuple[list[str], list[list[Any]]]) -> None:
        """Ints, floats, booleans and any text (non-ASCII, quotes, control characters) come back equal, typed,
        nested by their dotted keys, with nulls left out."""
        keys, columns = case
        data = {"phone": ["+14155550100", "+14155550101", "+14155550102"]}
        data |= {f"c{i}": values for i, values in enumerate(columns)}
        frame = pl.DataFrame(data, strict=False)
        rows = planned(frame, mapping={"parameters": {k: f"c{i}" for i, k in enumerate(keys)}}, dedupe="none")
        for i, row in enumerate(rows):
            want = _expected(keys, columns, i)
            got = {} if row["parameters"] is None else json.loads(row["parameters"])
            assert got == want
            assert _same_types(got, want)
            for char in "".join(_texts(want)):
                if ord(char) > 127:
                    assert char in row["parameters"]  # sent as itself, never as a \u escape


def _same_types(got: Any, want: Any) -> bool:
    if isinstance(want, dict):
        return isinstance(got, dict) and all(_same_types(got[k], v) for k, v in want.items())
    if isinstance(want, float):
        return isinstance(got, float) and (got == want or math.isclose(got, want))
    return type(got) is type(want)


def _texts(value: Any) -> list[str]:
    if isinstance(value, dict):
        return [t for v in value.values() for t in _texts(v)]
    return [value] if isinstance(value, str) else []


@functools.cache
def _example_numbers() -> list[tuple[str, str]]:
    """(region, E.164) of an example number of every type for every region phonenumbers knows.

    Built when a test first draws from it, not at import: every worker imports this module to collect it.
    """
    found: dict[str, str] = {}
    for region in sorted(phonenumbers.SUPPORTED_REGIONS):
        for kind in range(11):
            number = phonenumbers.example_number_for_type(region, kind)
            if number is not None:
                found.setdefault(phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164), region)
    return sorted((region, e164) for e164, region in found.items())


STYLES = (
    "e164",
    "international",
    "national",
    "separators",
    "apostrophe",
    "float",
    "float column",
    "scientific",
    "truncated",
)


@st.composite
def spreadsheet_numbers(draw: st.DrawFn) -> tuple[str | float, str | None, str, str]:
    """A valid number (an example, maybe with its last digits changed) and how a spreadsheet wrote it.

    Returns ``(cell, default_region, e164, style)``.
    """
    region, e164 = draw(st.sampled_from(_example_numbers()))
    tail = draw(st.integers(0, 3))
    if tail:
        varied = e164[:-tail] + "".join(str(draw(st.integers(0, 9))) for _ in range(tail))
        if phonenumbers.is_valid_number(phonenumbers.parse(varied, None)):
            e164 = varied
    number = phonenumbers.parse(e164, None)
    style = draw(st.sampled_from(STYLES))
    fmt = phonenumbers.PhoneNumberFormat
    default = draw(st.sampled_from([None, region, "US"] if style == "e164" else [None, region]))
    cell: str | float = e164
    if style == "international":
        cell = phonenumbers.format_number(number, fmt.INTERNATIONAL)
    elif style == "national":
        cell, default = phonenumbers.format_number(number, fmt.NATIONAL), region
    elif style == "separators":
        cell = "".join(draw(st.sampled_from(["", "", " ", "-", "(", ")", "."])) + c for c in e164)
    elif style == "apostrophe":
        cell = "'" + e164
    elif style in ("float", "float column"):
        # E.164 without its '+' and no region, or the national number (its leading 0 lost) with its region.
        digits, default = draw(st.sampled_from([(e164[1:], None), (str(number.national_number), region)]))
        cell = digits + ".0" if style == "float" else float(digits)
    elif style == "scientific":
        cell = f"{int(e164[1:]):.{draw(st.integers(1, 8))}E}"
    elif style == "truncated":
        cell = e164[: -draw(st.integers(1, 3))]
    return cell, default, e164, style


class TestNeverADifferentNumber:
    # Each example plans a row read from its own CSV (~10 ms): 200 still give every style about twenty tries.
    @pytest.mark.slow
    @given(spreadsheet_numbers())
    @settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
    def test_a_number_as_a_spreadsheet_wrote_it_is_sent_to_that_number_or_refused(
        self, tmp_path: Path, case: tuple[str | float, str | None, str, str]
    ) -> None:
        """National, international, separators, an apostrophe, `.0`, scientific, truncated: right number or invalid."""
        cell, region, e164, style = case
        mapping: dict[str, Any] = {"default_region": region} if region else {}
        spec = make_spec(mapping)
        if region is None:
            spec = replace(spec, mapping=replace(spec.mapping, default_region=None))
        if isinstance(cell, float):
            frame = pl.DataFrame({"phone": [cell]})
        else:
            path = tmp_path / "contacts.csv"
            pl.DataFrame({"phone": [cell], "name": ["Ana"]}).write_csv(path)
            frame = read_table(InputSpec(path=str(path)), text_columns=text_columns(spec.mapping)).frame
        row = plan(frame, spec).row(0, named=True)
        written = e164[: len(str(cell))] if style == "truncated" else e164
        if row["status"] == "pending":
            assert row["to"] == written, (style, cell, region)
        else:
            assert row["status"] == "invalid"
            assert row["error_message"].startswith("To: ")
        if style == "scientific":
            assert row["status"] == "invalid"
