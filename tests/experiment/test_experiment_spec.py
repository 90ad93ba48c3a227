"""``[experiment]`` read, checked and bound: the salt's default, refusals naming their key, the fingerprint."""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

import polars as pl
import pytest

import batch_engage
from batch_engage.errors import ConfigError
from batch_engage.experiment import assign, assign_frame, difference, position, rate, split, wilson
from batch_engage.flow import reply_conflicts
from batch_engage.job import ExperimentSpec, VariantSpec, load_spec
from batch_engage.plan.prepare import fingerprint

FLOW = "FW0123456789abcdef0123456789abcdef"
FLOW_B = "FW" + "b" * 32
# What a job without [experiment] has always stored (taken from the release before experiments): a checkpoint
# made then must resume, so this must never change.
PINNED = (
    '{"api": "engagements", "flow_sid": "FW0123456789abcdef0123456789abcdef", "mapping": {"default_region": null, '
    '"from": "+15005550006", "from_column": null, "parameters": [["name", "name"], ["order.total", "total"]], '
    '"parameters_column": null, "static_parameters": {"campaign": "spring"}, "to": "phone"}, "planning": '
    '{"dedupe": "to", "marker_key": "_batch_engage", "max_parameters_bytes": 16384}}'
)


def raw(experiment: dict[str, Any] | None = None, **job: Any) -> dict[str, Any]:
    table: dict[str, Any] = {
        "flow": {"sid": FLOW},
        "mapping": {
            "to": "phone",
            "from": "+15005550006",
            "parameters": {"name": "name", "order.total": "total"},
            "static_parameters": {"campaign": "spring"},
        },
        "output": {"results": "r.csv", "checkpoint": "c.checkpoint"},
    }
    if job:
        table["job"] = job
    if experiment is not None:
        table["experiment"] = experiment
    return table


AB = {"variants": [{"name": "A"}, {"name": "B", "flow": FLOW_B, "parameters": {"variant": "B"}}]}


class TestSpec:
    def test_a_job_without_experiment_keeps_the_fingerprint_it_always_stored(self) -> None:
        """The stored fingerprint of a job with no [experiment] is byte for byte the one the last release stored."""
        spec = load_spec(raw=raw())
        assert spec.experiment is None
        assert json.dumps(fingerprint(spec), sort_keys=True) == PINNED

    def test_the_salt_defaults_to_the_job_id_as_written(self) -> None:
        """With ``{date}`` in the id, the salt is the id before the date is filled in: every period shares it."""
        spec = load_spec(
            raw=raw(AB, id="spring-{date}") | {"output": {"results": "{id}.csv", "checkpoint": "{id}.checkpoint"}}
        )
        assert spec.experiment is not None and spec.experiment.salt == "spring-{date}"
        assert load_spec(raw=raw(AB | {"salt": "s1"})).experiment.salt == "s1"  # type: ignore[union-attr]

    def test_the_salt_and_the_variants_flows_are_bound_the_weights_are_not(self) -> None:
        """Another salt or another variant Flow is another job (the checkpoint refuses); new weights are not."""
        base = fingerprint(load_spec(raw=raw(AB)))
        assert base["experiment"]["salt"] == "job"
        assert [v[1] for v in base["experiment"]["variants"]] == [FLOW, FLOW_B]
        assert fingerprint(load_spec(raw=raw(AB | {"salt": "other"}))) != base
        heavier = {"variants": [{"name": "A", "weight": 3}, AB["variants"][1]], "holdout": 0.2}
        assert fingerprint(load_spec(raw=raw(heavier))) == base

    @pytest.mark.parametrize(
        ("experiment", "key"),
        [
            ({"holdout": 1.0, "variants": [{"name": "A"}]}, "experiment.holdout"),
            ({"variants": []}, "experiment.variants"),
            ({"variants": [{"name": "A"}, {"name": "A"}]}, "experiment.variants"),
            ({"variants": [{"name": "holdout"}]}, "experiment.variants[0].name"),
            ({"variants": [{"name": "A", "weight": 0}]}, "experiment.variants[0].weight"),
            ({"variants": [{"name": "A", "flow": "FW12"}]}, "experiment.variants[0].flow"),
            ({"variants": [{"name": "A", "colour": "red"}]}, "experiment.variants[0].colour"),
            ({"variants": [{"name": "A", "parameters": {"name": "x"}}]}, "experiment.variants[0].parameters.name"),
            ({"variants": [{"name": "A"}], "seed": 1}, "experiment.seed"),
        ],
    )
    def test_a_bad_experiment_is_refused_naming_its_key(self, experiment: dict[str, Any], key: str) -> None:
        """Each mistake names the key it is about; a variant's Parameter may not repeat a mapped one."""
        with pytest.raises(ConfigError) as caught:
            load_spec(raw=raw(experiment))
        assert caught.value.key == key


EXPERIMENT = ExperimentSpec(salt="spring", variants=(VariantSpec(name="A"), VariantSpec(name="B")), holdout=0.1)


class TestAssignment:
    def test_assignment_is_a_pure_function_of_salt_and_contact(self) -> None:
        """The same contact gets the same variant in any order and any frame; another salt reshuffles."""
        contacts = [f"+1415555{i:04d}" for i in range(2000)]
        first = {c: assign(EXPERIMENT, c) for c in contacts}
        frame = assign_frame(pl.DataFrame({"contact": list(reversed(contacts))}), EXPERIMENT)
        assert dict(zip(frame["contact"], frame["variant"], strict=True)) == first
        other = ExperimentSpec(salt="autumn", variants=EXPERIMENT.variants, holdout=0.1)
        assert sum(assign(other, c) != first[c] for c in contacts) > 500

    def test_a_known_contact_lands_where_it_always_has(self) -> None:
        """Pinned: another machine, Python or release places a contact exactly here (blake2b, not hash())."""
        assert position("spring", "+14155550100") == pytest.approx(0.1965042281, abs=1e-9)

    def test_shares_follow_the_weights_after_the_holdout(self) -> None:
        """Weights 3:1 with holdout 0.2: about 20% held out, then 60% and 20% of everyone."""
        weighted = ExperimentSpec(
            salt="w", variants=(VariantSpec(name="A", weight=3), VariantSpec(name="B", weight=1)), holdout=0.2
        )
        counts = Counter(assign(weighted, f"c{i}") for i in range(20_000))
        assert abs(counts["holdout"] / 20_000 - 0.2) < 0.015
        assert abs(counts["A"] / 20_000 - 0.6) < 0.015 and abs(counts["B"] / 20_000 - 0.2) < 0.015

    def test_kept_contacts_keep_the_variant_they_were_sent(self) -> None:
        """A contact the checkpoint shows sent with B stays B, whatever the function says now."""
        contact = next(f"c{i}" for i in range(100) if assign(EXPERIMENT, f"c{i}") == "A")
        frame = assign_frame(pl.DataFrame({"contact": [contact]}), EXPERIMENT, kept={contact: "B"})
        assert frame["variant"].to_list() == ["B"]

    def test_the_split_lists_the_holdout_last(self) -> None:
        """Counts per variant in name order, the holdout after them."""
        assert list(split(["B", "holdout", "A", "B", None])) == ["A", "B", "holdout"]

    def test_assign_variants_shows_the_split_of_a_frame_before_any_send(self) -> None:
        """The public API plans a frame as a run would and adds ``variant`` to it, row for row."""
        spec = load_spec(raw=raw(AB | {"holdout": 0.1}))
        frame = pl.DataFrame({"phone": [f"+1415555{i:04d}" for i in range(300)] + ["nope"], "name": "x", "total": 1.0})
        shown = batch_engage.assign_variants(frame, spec)
        assert shown.columns == [*frame.columns, "variant"] and shown.height == 301
        assert shown["variant"][-1] is None
        assert set(shown["variant"].drop_nulls()) == {"A", "B", "holdout"}
        by_hand = batch_engage.assign_variants(shown.select(contact=pl.col("phone")).head(300), spec.experiment)  # type: ignore[arg-type]
        assert by_hand["variant"].to_list() == shown["variant"].head(300).to_list()


class TestStatistics:
    def test_wilson_matches_the_textbook_values(self) -> None:
        """10 of 100: 5.5% to 17.4% (Newcombe 1998, table I's method 3); 0 of 10 starts at 0."""
        low, high = wilson(10, 100)
        assert low == pytest.approx(0.0552, abs=1e-4) and high == pytest.approx(0.1744, abs=1e-4)
        assert wilson(0, 10)[0] == 0.0

    def test_newcombes_difference_interval(self) -> None:
        """56/70 vs 48/80: difference 0.2, interval 0.0524 to 0.3339 (Newcombe 1998, table II, example (a))."""
        d = difference(rate(48, 80), rate(56, 70))
        assert d is not None
        assert d.value == pytest.approx(0.2) and d.excludes_zero
        assert d.low == pytest.approx(0.0524, abs=1e-4) and d.high == pytest.approx(0.3339, abs=1e-4)

    def test_no_contacts_means_no_rate_and_no_difference(self) -> None:
        """A variant nobody was sent has no rate, and nothing to compare."""
        assert rate(0, 0).value is None and difference(rate(0, 0), rate(1, 2)) is None


class TestReplies:
    def test_one_sender_for_two_waiting_variant_flows_names_the_variant_whose_replies_go_elsewhere(self) -> None:
        """Both Flows wait for replies from the one sender: B (not on the job's Flow) is named; if B's Flow
        does not wait for replies, nothing is said."""
        spec = load_spec(raw=raw(AB))
        [warning] = reply_conflicts(spec, {FLOW: True, FLOW_B: True})
        assert "variant B's replies go elsewhere" in warning and "+15005550006" in warning
        assert reply_conflicts(spec, {FLOW: True, FLOW_B: False}) == []
        assert reply_conflicts(load_spec(raw=raw()), {FLOW: True}) == []
