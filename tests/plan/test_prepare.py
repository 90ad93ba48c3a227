"""Planning before the network: contact keys, and the marker counted in the Parameters size limit."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

import polars as pl

from batch_engage.plan.prepare import marker_overhead, prepare


class TestContactKeys:
    """Each row's contact is the key dedupe uses; outcomes follow it, never the row number."""

    def test_the_contact_is_the_normalized_to_or_the_pair(self, make_spec: Callable[..., Any]) -> None:
        """dedupe "to": the E.164 To; "to_from": To and From; invalid rows have none."""
        frame = pl.DataFrame({"phone": ["(415) 555-0100", "not a number"], "name": ["a", "b"], "visits": [1, 2]})
        spec = make_spec("http://127.0.0.1:9")
        spec = spec.replace(mapping=replace(spec.mapping, default_region="US"))
        assert prepare(spec, frame=frame).plan["contact"].to_list() == ["+14155550100", None]
        spec = spec.replace(send=replace(spec.send, dedupe="to_from"))
        assert prepare(spec, frame=frame).plan["contact"].to_list() == ["+14155550100 +15005550006", None]


class TestMarkerSize:
    """The marker every request carries counts in send.max_parameters_bytes."""

    def test_a_row_that_fits_only_without_the_marker_is_invalid_with_the_reason(
        self, make_spec: Callable[..., Any]
    ) -> None:
        """Parameters of 40 bytes under a 60-byte limit: invalid with the marker (~50 bytes), valid without it."""
        frame = pl.DataFrame({"phone": ["+14155550100"], "name": ["x" * 20], "visits": [1]})
        spec = make_spec("http://127.0.0.1:9")
        spec = spec.replace(send=replace(spec.send, max_parameters_bytes=60))
        planned = prepare(spec, frame=frame).plan
        assert planned["status"].to_list() == ["invalid"]
        assert "with the marker" in planned["error_message"][0]
        spec = spec.replace(send=replace(spec.send, marker_key=""))
        assert prepare(spec, frame=frame).plan["status"].to_list() == ["pending"]
        assert marker_overhead("") == 0 < marker_overhead("_batch_engage")


class TestMarkerKeyInTheInput:
    """A ``parameters_column`` object that already holds the marker's key is refused: the body would carry it twice."""

    def test_a_row_whose_json_holds_the_marker_key_is_invalid_and_the_others_are_sent(
        self, make_spec: Callable[..., Any]
    ) -> None:
        """An old run's flow.data pasted back (a stale marker) is invalid, named; the key inside a text is not."""
        extra = [
            '{"a":1}',
            '{"_batch_engage":"0f1e2d3c:aa","a":2}',
            '{"note":"x,\\"_batch_engage\\":1"}',
            '{"a":3, "_batch_engage" : "0f1e2d3c:bb"}',
        ]
        frame = pl.DataFrame({"phone": [f"+1415555010{i}" for i in range(4)], "extra": extra})
        spec = make_spec("http://127.0.0.1:9")
        spec = spec.replace(mapping=replace(spec.mapping, parameters=(), parameters_column="extra"))
        plan = prepare(spec, frame=frame).plan
        assert plan["status"].to_list() == ["pending", "invalid", "pending", "invalid"]
        held = "extra: holds '_batch_engage', the key batch-engage adds to prove a run is this job's (send.marker_key)"
        assert plan["error_message"].to_list() == [None, held, None, held]
        # With the marker off (or renamed), the key is the row's own.
        spec = spec.replace(send=replace(spec.send, marker_key=""))
        assert prepare(spec, frame=frame).plan["status"].to_list() == ["pending"] * 4

    def test_a_marker_key_of_any_alphabet_is_found(self, make_spec: Callable[..., Any]) -> None:
        """`marker_key = "marqué"`: an object holding "marqué" (as written, or escaped) is invalid too."""
        extra = ['{"marqué":"0f1e2d3c:aa"}', '{"marqu\\u00e9":"0f1e2d3c:bb"}', '{"marque":1}']
        frame = pl.DataFrame({"phone": [f"+1415555010{i}" for i in range(3)], "extra": extra})
        spec = make_spec("http://127.0.0.1:9")
        spec = spec.replace(
            mapping=replace(spec.mapping, parameters=(), parameters_column="extra"),
            send=replace(spec.send, marker_key="marqué"),
        )
        assert prepare(spec, frame=frame).plan["status"].to_list() == ["invalid", "invalid", "pending"]
