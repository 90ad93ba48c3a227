"""Checking a job against its Flow: what the Flow reads, whether the job supplies it, where runs go, what a contact sees."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from batch_engage.flow import check as flowcheck
from batch_engage.flow import data_keys
from batch_engage.flow.check import FlowVariable, FlowWiringError, compare, first_message, flow_variables, render

FLOWS = Path(__file__).parents[1] / "flows"
MARKER = "_batch_engage"

# Fragments of Liquid, joined in any order: templates no one would write, which every reader must still survive.
_LIQUID_LIKE = st.lists(
    st.sampled_from(
        [
            "{{",
            "}}",
            "{%",
            "%}",
            "-",
            "|",
            ":",
            ",",
            "'",
            '"',
            "[",
            "]",
            "(",
            ")",
            "..",
            ".",
            " ",
            "if",
            "elsif",
            "else",
            "endif",
            "unless",
            "endunless",
            "case",
            "when",
            "endcase",
            "for",
            "in",
            "endfor",
            "assign",
            "=",
            "capture",
            "endcapture",
            "raw",
            "endraw",
            "comment",
            "endcomment",
            "and",
            "or",
            "contains",
            "==",
            "!=",
            ">",
            "<=",
            "empty",
            "blank",
            "nil",
            "true",
            "0",
            "-3",
            "1.5",
            "flow",
            "data",
            "x",
            "items",
            "default",
            "upcase",
            "size",
            "reversed",
            "widgets",
        ]
    ),
    max_size=60,
).map("".join)


def _flow(name: str) -> dict[str, Any]:
    """A fixture Flow definition, as Studio exports it."""
    definition: dict[str, Any] = json.loads((FLOWS / f"{name}.json").read_text(encoding="utf-8"))
    return definition


def _one_widget(body: str, widget_type: str = "send-message", name: str = "send_1") -> dict[str, Any]:
    """A Flow whose REST API trigger leads to one widget with this body."""
    return {
        "initial_state": "Trigger",
        "states": [
            {
                "name": "Trigger",
                "type": "trigger",
                "properties": {},
                "transitions": [{"event": "incomingRequest", "next": name}],
            },
            {"name": name, "type": widget_type, "properties": {"body": body}, "transitions": [{"event": "sent"}]},
        ],
    }


def _reads(body: str) -> dict[str, bool]:
    """path -> required, for one message body."""
    return {v.path: v.required for v in flow_variables(_one_widget(body))}


class TestVariablesTheFlowPrints:
    """A path printed without a fallback is required, and named with the widgets that read it."""

    def test_realistic_flow_lists_each_path_with_its_widgets(self) -> None:
        """The order Flow reads first_name and order.id unguarded, city with a default and visits inside its own if."""
        assert flow_variables(_flow("order_update")) == [
            FlowVariable("first_name", True, ("send_intro", "thanks")),
            FlowVariable("order.id", True, ("send_intro", "notify_crm")),
            FlowVariable("city", False, ("send_intro",)),
            FlowVariable("visits", False, ("ask",)),
        ]

    def test_values_nested_in_properties_and_conditions_are_read(self) -> None:
        """Run Function parameters, a split's input and condition arguments, and a say are all read."""
        variables = {v.path: v for v in flow_variables(_flow("loyalty"))}
        assert variables["customer_id"] == FlowVariable("customer_id", True, ("log_offer",))
        assert variables["prefers_call"].widgets == ("route_by_channel",)
        assert variables["first name"] == FlowVariable("first name", True, ("call_owner", "offer"))

    def test_other_context_and_plain_text_are_not_flow_variables(self) -> None:
        """flow.variables, widgets, contact and text outside tags never count as flow.data reads."""
        body = "flow.data.x {{flow.variables.y}} {{widgets.ask.inbound.Body}} {{contact.channel.address}} {{flow.data}}"
        assert _reads(body) == {}

    def test_comment_and_raw_blocks_are_not_read(self) -> None:
        """Text inside comment and raw is not Liquid the Flow evaluates."""
        body = "{% comment %}{{flow.data.a}}{% endcomment %}{% raw %}{{flow.data.b}}{% endraw %}{{flow.data.c}}"
        assert _reads(body) == {"c": True}

    @pytest.mark.parametrize(
        ("body", "path"),
        [
            ("{{flow.data.order.id}}", "order.id"),
            ("{{ flow.data.order.shipping.city }}", "order.shipping.city"),
            ("{{flow.data['first name']}}", "first name"),
            ('{{flow.data["order"]["id"]}}', "order.id"),
            ("{{flow.data.items[0]}}", "items"),
            ("{{flow.data.items[0].sku}}", "items"),
            ("{{flow.data.items.size}}", "items"),
            ("{{-flow.data.tight-}}", "tight"),
        ],
    )
    def test_nested_and_bracket_paths(self, body: str, path: str) -> None:
        """Dots and quoted brackets extend a path; a numeric index ends it at the list."""
        assert _reads(body) == {path: True}

    def test_variable_used_as_an_index_is_read(self) -> None:
        """flow.data.prices[flow.data.plan] reads plan as well as prices."""
        assert _reads("{{flow.data.prices[flow.data.plan]}}") == {"prices": True, "plan": True}

    @pytest.mark.parametrize(
        "body",
        [
            "{% for item in flow.data.items %}{{ item.name }} {% endfor %}",
            "{% assign who = flow.data.first_name %}Hi {{ who }}",
            "{{ 'Hi ' | append: flow.data.first_name }}",
        ],
    )
    def test_reads_in_loops_assignments_and_filter_arguments_are_required(self, body: str) -> None:
        """A value looped over, assigned or appended without a guard vanishes silently when missing."""
        assert all(_reads(body).values())


class TestOptionalVariables:
    """A path is optional only when every use of it has a fallback or a guard of its own."""

    @pytest.mark.parametrize(
        "body",
        [
            "Hi {{flow.data.x | default: 'friend'}}",
            'Hi {{ flow.data.x | default: "friend" }}',
            "Hi {{ flow.data.x | strip | default: 'friend' }}",
        ],
    )
    def test_default_filter_makes_a_variable_optional(self, body: str) -> None:
        """A default (single or double quotes, anywhere in the chain) means a missing value still reads well."""
        assert _reads(body) == {"x": False}

    @pytest.mark.parametrize(
        "body",
        [
            "{% if flow.data.x %}({{flow.data.x}}){% endif %}",
            "{% if flow.data.x != empty %}({{flow.data.x}}){% endif %}",
            "{% if flow.data.x != blank %}({{flow.data.x}}){% endif %}",
            "{% unless flow.data.x == blank %}({{flow.data.x}}){% endunless %}",
            "{% unless flow.data.x == empty %}({{flow.data.x}}){% endunless %}",
            "{% if flow.data.x == blank %}none{% else %}({{flow.data.x}}){% endif %}",
            "{% unless flow.data.x %}none{% else %}({{flow.data.x}}){% endunless %}",
            "{% if flow.data.x == empty %}none{% elsif flow.data.y %}{{flow.data.x}}{% endif %}",
            "{% if flow.data.x and flow.data.other %}({{flow.data.x}}){% endif %}",
            "{% if flow.data.x == 'gold' %}({{flow.data.x}}){% endif %}",
            "{% if flow.data.x > 3 %}({{flow.data.x}}){% endif %}",
            "{% case flow.data.x %}{% when 'a', 'b' %}({{flow.data.x}}){% endcase %}",
        ],
    )
    def test_printed_only_inside_a_block_that_tests_it_is_optional(self, body: str) -> None:
        """A value shown only when the block's condition proves it present cannot print as a blank."""
        assert _reads(body)["x"] is False

    def test_tested_only_in_a_condition_is_optional(self) -> None:
        """A path the Flow only tests (never prints) is optional: missing just takes the other branch."""
        assert _reads("{% if flow.data.vip == 'yes' %}VIP{% endif %}") == {"vip": False}

    def test_guard_of_a_parent_covers_a_child_only_if_it_tests_the_child(self) -> None:
        """Testing order.id proves order present; testing order does not prove order.id."""
        assert _reads("{% if flow.data.order.id %}{{flow.data.order}}{% endif %}")["order"] is False
        assert _reads("{% if flow.data.order %}{{flow.data.order.id}}{% endif %}")["order.id"] is True

    @pytest.mark.parametrize(
        "body",
        [
            "{% if flow.data.other %}({{flow.data.x}}){% endif %}",
            "{% if flow.data.x or flow.data.other %}({{flow.data.x}}){% endif %}",
            "{% if flow.data.x %}yes{% else %}({{flow.data.x}}){% endif %}",
            "{% if flow.data.x != 'no' %}({{flow.data.x}}){% endif %}",
            "{% if flow.data.x == empty %}({{flow.data.x}}){% endif %}",
            "{% if flow.data.x %}({{flow.data.x}}){% endif %} and again {{flow.data.x}}",
        ],
    )
    def test_a_guard_that_does_not_prove_it_present_leaves_it_required(self, body: str) -> None:
        """Another variable's test, an or, an else of its own test, or one unguarded print keeps it required."""
        assert _reads(body)["x"] is True

    def test_required_anywhere_in_the_flow_is_required(self) -> None:
        """One widget's default does not excuse another widget that prints the value bare."""
        definition = _one_widget("{{flow.data.x | default: 'a'}}")
        definition["states"].append(
            {"name": "later", "type": "send-message", "properties": {"body": "{{flow.data.x}}"}, "transitions": []}
        )
        assert flow_variables(definition) == [FlowVariable("x", True, ("send_1", "later"))]


class TestCompare:
    """The job's supplied keys against what the Flow reads."""

    def test_missing_variable_is_named_with_its_widget(self) -> None:
        """A job mapping name where the Flow prints first_name reports first_name and send_intro."""
        check = compare(flow_variables(_flow("order_update")), ["name", "order.id"], marker_key=MARKER)
        assert check.missing == (FlowVariable("first_name", True, ("send_intro", "thanks")),)
        assert not check.ok

    def test_optional_variables_are_never_missing(self) -> None:
        """city (default) and visits (guarded) need no mapping."""
        check = compare(flow_variables(_flow("order_update")), ["first_name", "order.id"], marker_key=MARKER)
        assert check.missing == ()
        assert check.ok

    @pytest.mark.parametrize(
        ("read", "supplied"),
        [("order.id", "order.id"), ("order.id", "order"), ("order", "order.id"), ("order.shipping.city", "order")],
    )
    def test_a_key_covers_its_children_and_its_parents(self, read: str, supplied: str) -> None:
        """order supplies order.id; order.id proves order exists."""
        check = compare([FlowVariable(read, True, ("w",))], [supplied], marker_key=None)
        assert check.missing == ()

    def test_sibling_with_a_common_prefix_does_not_cover(self) -> None:
        """order_id is not order, nor order.id."""
        check = compare([FlowVariable("order.id", True, ("w",))], ["order_id"], marker_key=None)
        assert [v.path for v in check.missing] == ["order.id"]

    def test_unused_keys_are_top_level_and_listed_once(self) -> None:
        """Keys the Flow never reads are reported by their top-level name, once."""
        variables = flow_variables(_flow("order_update"))
        supplied = ["first_name", "order.id", "order.total", "coupon.code", "coupon.expiry", "segment"]
        assert compare(variables, supplied, marker_key=MARKER).unused == ("coupon", "segment")

    def test_optional_reads_count_as_used(self) -> None:
        """A key the Flow reads only with a default is used, not unused."""
        variables = flow_variables(_flow("order_update"))
        assert compare(variables, ["first_name", "order.id", "city", "visits"], marker_key=MARKER).unused == ()

    def test_marker_key_is_never_listed(self) -> None:
        """The tool's own per-run key is neither unused nor, if the Flow prints it, missing."""
        variables = [*flow_variables(_flow("order_update")), FlowVariable(MARKER, True, ("debug",))]
        check = compare(variables, ["first_name", "order.id", MARKER], marker_key=MARKER)
        assert (check.missing, check.unused) == ((), ())


class TestRestTrigger:
    """Where a REST API run starts, and a one-line fix when it starts nowhere."""

    def test_wired_trigger_names_the_first_widget(self) -> None:
        """The order Flow's REST API transition leads to send_intro."""
        assert flowcheck.rest_trigger(_flow("order_update")) == "send_intro"

    def test_unwired_rest_trigger_says_what_to_connect(self) -> None:
        """A Trigger whose REST API transition leads nowhere raises one line naming the widget and the fix."""
        with pytest.raises(FlowWiringError) as caught:
            flowcheck.rest_trigger(_flow("unwired"))
        message = str(caught.value)
        assert "\n" not in message
        assert "Trigger" in message
        assert "REST API" in message
        assert "Studio editor" in message

    def test_no_trigger_state_raises(self) -> None:
        """A definition without a state of type trigger cannot start a run."""
        definition = _one_widget("Hi")
        definition["states"] = definition["states"][1:]
        with pytest.raises(FlowWiringError, match="no Trigger widget"):
            flowcheck.rest_trigger(definition)

    @pytest.mark.parametrize("definition", [{}, {"states": []}, {"states": None}])
    def test_no_states_raises(self, definition: dict[str, Any]) -> None:
        """An empty or unpublished definition is reported, not mistaken for a wired one."""
        with pytest.raises(FlowWiringError, match="no widgets"):
            flowcheck.rest_trigger(definition)


class TestFirstMessage:
    """The first text a REST API run sends."""

    def test_follows_transitions_past_widgets_that_send_nothing(self) -> None:
        """The loyalty Flow sets variables and splits before its first message."""
        widget, body = first_message(_flow("loyalty")) or ("", "")
        assert widget == "offer"
        assert body.startswith("{{ flow.data['first name']")

    def test_send_and_wait_counts_as_a_message(self) -> None:
        """A send-and-wait-for-reply widget sends a message too."""
        assert first_message(_one_widget("Reply YES", "send-and-wait-for-reply", "ask")) == ("ask", "Reply YES")

    def test_nearest_message_wins(self) -> None:
        """Breadth first: a message two steps away is found before one three steps down an earlier branch."""
        definition = {
            "states": [
                {"name": "Trigger", "type": "trigger", "transitions": [{"event": "incomingRequest", "next": "split"}]},
                {
                    "name": "split",
                    "type": "split-based-on",
                    "transitions": [{"event": "noMatch", "next": "detour"}, {"event": "match", "next": "near"}],
                },
                {"name": "detour", "type": "set-variables", "transitions": [{"event": "next", "next": "far"}]},
                {"name": "far", "type": "send-message", "properties": {"body": "far"}, "transitions": []},
                {"name": "near", "type": "send-message", "properties": {"body": "near"}, "transitions": []},
            ]
        }
        assert first_message(definition) == ("near", "near")

    def test_no_message_reachable_is_none_even_through_a_loop(self) -> None:
        """A Flow that only calls a function (and loops back) has no first message; the walk ends."""
        definition = {
            "states": [
                {"name": "Trigger", "type": "trigger", "transitions": [{"event": "incomingRequest", "next": "fn"}]},
                {"name": "fn", "type": "run-function", "transitions": [{"event": "fail", "next": "retry"}]},
                {"name": "retry", "type": "set-variables", "transitions": [{"event": "next", "next": "wait"}]},
                {"name": "wait", "type": "run-function", "transitions": [{"event": "success", "next": "retry"}]},
                {"name": "other", "type": "send-message", "properties": {"body": "unreached"}, "transitions": []},
            ]
        }
        assert first_message(definition) is None

    def test_unwired_flow_raises_like_rest_trigger(self) -> None:
        """No preview for a Flow whose REST API runs end at once; the wiring error explains why."""
        with pytest.raises(FlowWiringError):
            first_message(_flow("unwired"))


def _message(flow: str) -> str:
    found = first_message(_flow(flow))
    assert found is not None
    return found[1]


def _ask_body() -> str:
    states = {s["name"]: s for s in _flow("order_update")["states"]}
    body: str = states["ask"]["properties"]["body"]
    return body


class TestRenderFixtureFlows:
    """The preview of a fixture Flow's messages equals the text written out by hand."""

    @pytest.mark.parametrize(
        ("data", "expected"),
        [
            (
                {"first_name": "Ada", "order": {"id": "A-1001"}, "city": "Leeds"},
                "Hi Ada, your order A-1001 ships soon from Leeds.",
            ),
            ({"first_name": "Ada", "order": {"id": "A-1001"}}, "Hi Ada, your order A-1001 ships soon from our store."),
            (
                {"first_name": "Ada", "order": {"id": "A-1001"}, "city": ""},
                "Hi Ada, your order A-1001 ships soon from our store.",
            ),
            ({}, "Hi , your order  ships soon from our store."),
        ],
    )
    def test_order_update_intro(self, data: dict[str, Any], expected: str) -> None:
        """Output tags, a nested path and a default; missing values print as "" as Studio does."""
        assert render(_message("order_update"), data) == expected

    @pytest.mark.parametrize(
        ("data", "expected"),
        [({"visits": "3"}, "Reply YES to confirm (visit 3)"), ({}, "Reply YES to confirm")],
    )
    def test_order_update_question(self, data: dict[str, Any], expected: str) -> None:
        """The guarded part appears only when visits is supplied."""
        assert render(_ask_body(), data) == expected

    @pytest.mark.parametrize(
        ("data", "expected"),
        [
            (
                {
                    "first name": "  ada ",
                    "points": "1500",
                    "tier": "gold plus",
                    "items": [{"name": "Running Shoes"}],
                    "expires": "2026-12-01",
                },
                "Ada, as a GOLD PLUS member: running shoes are 20% off until 2026-12-01. "
                "Text STOP to [flow.channel.address] to opt out ([contact.channel.address]).",
            ),
            (
                {"first name": "bo", "points": "0", "tier": "silver", "expires": ""},
                "Bo, with 0 points: your favourites are 20% off. "
                "Text STOP to [flow.channel.address] to opt out ([contact.channel.address]).",
            ),
            (
                {"first name": "cy", "points": 12},
                "Cy, with 12 points: your favourites are 20% off. "
                "Text STOP to [flow.channel.address] to opt out ([contact.channel.address]).",
            ),
            (
                {"first name": "di"},
                "Di, welcome: your favourites are 20% off. "
                "Text STOP to [flow.channel.address] to opt out ([contact.channel.address]).",
            ),
        ],
    )
    def test_loyalty_offer(self, data: dict[str, Any], expected: str) -> None:
        """Bracket paths, filters (known and unknown), if/elsif/else with and/or/contains/>=, unless == blank, placeholders."""
        assert render(_message("loyalty"), data) == expected


class TestRender:
    """The Liquid subset, one behaviour at a time."""

    @pytest.mark.parametrize(
        ("value", "expected"),
        [(None, "friend"), (False, "friend"), ("", "friend"), ("0", "0"), (0, "0"), (" ", " "), ("Ada", "Ada")],
    )
    def test_default_applies_to_nil_false_and_empty_only(self, value: Any, expected: str) -> None:
        """Liquid's default replaces nil, false and "" but keeps 0 and whitespace."""
        assert render("{{ flow.data.x | default: 'friend' }}", {"x": value}) == expected

    @pytest.mark.parametrize(
        ("template", "expected"),
        [
            ("{{ flow.data.x | upcase }}", " ADA LOVELACE "),
            ("{{ flow.data.x | downcase }}", " ada lovelace "),
            ("{{ flow.data.x | strip | capitalize }}", "Ada lovelace"),
            ("{{ flow.data.x | lstrip }}|", "ada LOVELACE |"),
            ("{{ flow.data.x | strip | append: '!' | prepend: '> ' }}", "> ada LOVELACE!"),
            ("{{ flow.data.x | truncatewords: 1 }}", " ada LOVELACE "),
            ("{{ flow.data.x | size }}", "14"),
        ],
    )
    def test_filters(self, template: str, expected: str) -> None:
        """Text filters work; an unknown filter passes its value through."""
        assert render(template, {"x": " ada LOVELACE "}) == expected

    @pytest.mark.parametrize(
        ("condition", "data", "shown"),
        [
            ("flow.data.x", {"x": "a"}, True),
            ("flow.data.x", {"x": ""}, True),
            ("flow.data.x", {"x": False}, False),
            ("flow.data.x", {}, False),
            ("flow.data.x == 'a'", {"x": "a"}, True),
            ("flow.data.x != 'a'", {"x": "a"}, False),
            ("flow.data.x <> 'a'", {"x": "b"}, True),
            ("flow.data.n > 5", {"n": "10"}, True),
            ("flow.data.n < 5", {"n": 10}, False),
            ("flow.data.n >= 10", {"n": 10.0}, True),
            ("flow.data.n <= 9", {"n": "10"}, False),
            ("flow.data.n > 5", {"n": "many"}, False),
            ("flow.data.n > 5", {}, False),
            ("flow.data.x contains 'ol'", {"x": "gold"}, True),
            ("flow.data.tags contains 'vip'", {"tags": ["new", "vip"]}, True),
            ("flow.data.x == empty", {"x": ""}, True),
            ("flow.data.x == empty", {}, True),
            ("flow.data.x == empty", {"x": " "}, False),
            ("flow.data.x == blank", {"x": " "}, True),
            ("flow.data.x != blank", {"x": "a"}, True),
            ("flow.data.a and flow.data.b", {"a": 1}, False),
            ("flow.data.a or flow.data.b", {"b": 1}, True),
            ("flow.data.a or flow.data.b and flow.data.c", {"a": 1}, True),
            ("flow.data.a and flow.data.b or flow.data.c", {"c": 1}, False),
        ],
    )
    def test_conditions(self, condition: str, data: dict[str, Any], shown: bool) -> None:
        """Truthiness (only nil and false are falsy), comparisons, contains, empty/blank, and/or from the right."""
        assert render("{% if " + condition + " %}yes{% endif %}", data) == ("yes" if shown else "")

    @pytest.mark.parametrize(("x", "expected"), [("a", "A"), ("b", "B"), ("c", "C")])
    def test_if_elsif_else(self, x: str, expected: str) -> None:
        """The first branch whose condition holds is shown, else the else branch."""
        assert (
            render("{% if flow.data.x == 'a' %}A{% elsif flow.data.x == 'b' %}B{% else %}C{% endif %}", {"x": x})
            == expected
        )

    @pytest.mark.parametrize(("data", "expected"), [({"x": "on"}, "else"), ({}, "shown")])
    def test_unless(self, data: dict[str, Any], expected: str) -> None:
        """unless shows its body when the condition is false."""
        assert render("{% unless flow.data.x %}shown{% else %}else{% endunless %}", data) == expected

    def test_other_context_shows_as_placeholders(self) -> None:
        """Values Studio fills in at run time are shown by name, not guessed."""
        template = "{{contact.channel.address}} / {{ widgets.ask.inbound.Body | upcase }} / {{trigger.request.To}}"
        assert render(template, {}) == "[contact.channel.address] / [widgets.ask.inbound.Body] / [trigger.request.To]"

    def test_values_print_as_liquid_prints_them(self) -> None:
        """Numbers, booleans, lists and nested keys print as Liquid shows them; missing keys print nothing."""
        data = {"n": 3, "f": 2.5, "t": True, "tags": ["a", "b"], "o": {"id": 7}}
        template = "{{flow.data.n}} {{flow.data.f}} {{flow.data.t}} {{flow.data.tags}} {{flow.data.o.id}} [{{flow.data.o.nope}}]"
        assert render(template, data) == "3 2.5 true ab 7 []"

    def test_size_first_and_last_properties(self) -> None:
        """list.size, list.first, list.last and text.size work as Liquid's own properties."""
        data = {"tags": ["new", "vip", "eu"], "name": "Ada"}
        template = "{{flow.data.tags.size}} {{flow.data.tags.first}} {{flow.data.tags.last}} {{flow.data.name.size}}"
        assert render(template, data) == "3 new eu 3"

    def test_loops_assign_capture_and_case(self) -> None:
        """for (with else, ranges and reversed), assign, capture and case render like Liquid."""
        data = {"items": [{"n": "x"}, {"n": "y"}], "tier": "gold"}
        template = (
            "{% for i in flow.data.items %}{{ i.n }}{% endfor %}|{% for i in flow.data.none %}-{% else %}none{% endfor %}|"
            "{% for k in (1..3) reversed %}{{k}}{% endfor %}|{% assign who = flow.data.tier | upcase %}{{who}}|"
            "{% capture c %}<{{flow.data.tier}}>{% endcapture %}{{c}}|"
            "{% case flow.data.tier %}{% when 'silver' %}S{% when 'gold' %}G{% else %}?{% endcase %}"
        )
        assert render(template, data) == "xy|none|321|GOLD|<gold>|G"

    def test_loops_show_at_most_max_loop_items(self) -> None:
        """A long list previews its first MAX_LOOP items, so a preview stays short."""
        assert render("{% for i in (1..100000000) %}.{% endfor %}", {}) == "." * flowcheck.MAX_LOOP

    def test_whitespace_control_strips_beside_the_tag(self) -> None:
        """{%- and -%} remove the whitespace next to them, as in Liquid."""
        assert render("a  {%- if true -%}  b  {%- endif -%}  c", {}) == "abc"

    @pytest.mark.parametrize(
        ("template", "expected"),
        [
            ("a{% cycle 'x' %}b", "ab"),
            ("a{% if flow.data.x %}b", "ab"),
            ("a{% if flow.data.y %}b", "a"),
            ("a{% endif %}b{% else %}c", "abc"),
            ("a{{ }}b{{ | upcase }}c", "abc"),
            ("a{{ flow.data.x", "a{{ flow.data.x"),
            ("{% raw %}{{flow.data.x}}{% endraw %}", "{{flow.data.x}}"),
            ("a{% comment %}hidden{% endcomment %}b", "ab"),
        ],
    )
    def test_odd_templates_render_what_they_can(self, template: str, expected: str) -> None:
        """Unknown tags render nothing; unclosed blocks run to the end; stray ends are ignored."""
        assert render(template, {"x": "X"}) == expected

    @pytest.mark.parametrize(
        "template",
        [
            "{% if flow.data.x %}" * 3000,
            "{{ " + "flow.data.a[" * 3000 + " }}",
            "{{ " + "(" * 3000 + " }}",
            "{% if flow.data.x " + "and flow.data.x " * 3000 + "%}y{% endif %}",
            "{{ flow.data.x " + "| upcase " * 3000 + "}}",
            "{% for i in (1..100) %}" * 8 + "x",
        ],
    )
    def test_deep_or_long_templates_render_without_overflowing(self, template: str) -> None:
        """Thousands of nested blocks, brackets or conditions still render, and are read, without raising."""
        assert isinstance(render(template, {"x": "1"}), str)
        assert isinstance(flow_variables(_one_widget(template)), list)
        assert data_keys(template) is None or isinstance(data_keys(template), frozenset)

    @given(st.text())
    def test_never_raises_on_arbitrary_text(self, template: str) -> None:
        """Any text at all renders to some string."""
        assert isinstance(render(template, {"x": "1"}), str)

    @given(_LIQUID_LIKE)
    def test_never_raises_on_liquid_like_text(self, template: str) -> None:
        """Fragments of Liquid in any order render, and flow_variables reads them, without raising."""
        assert isinstance(render(template, {"x": "1", "items": [1, {"a": 2}]}), str)
        assert isinstance(flow_variables(_one_widget(template)), list)


_JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-3, 3) | st.floats(allow_nan=False) | st.text("ab ", max_size=3),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.sampled_from(["n", "x", "size"]), inner, max_size=3),
    max_leaves=8,
)
_DATA = st.dictionaries(st.sampled_from(["x", "y", "k", "items", "data", "flow", "size", "first"]), _JSON_VALUES)
_WRITTEN = [
    "Hi {{flow.data.x}}, {{flow.data.y | default: 'friend'}}",
    "{% if flow.data.x %}{{flow.data.items.size}}{% else %}{{flow.data.items.first}}{% endif %}",
    "{% for i in flow.data.items %}{{i.n}}{% else %}{{flow.data.size}}{% endfor %}",
    "{{flow.data}} and {{flow.data.x}}",
    "{{flow.data[flow.data.k]}}",
    "{{flow.data.items[flow.data.k]}}",
    "{% assign d = flow.data %}{{d.x}}",
    "{% assign flow = flow.data.items %}{{flow.data.x}}",
    "{% case flow.data.x %}{% when flow.data.y %}same{% else %}{{flow.data.first}}{% endcase %}",
    "{% capture c %}{{flow.data.data}}{% endcapture %}{{c | append: flow.data.flow}}",
    "{{ flow.data.size }}",
    "{{contact.channel.address}} only",
]


class TestDataKeys:
    """Which top-level keys of flow.data a widget's text depends on: contacts that agree on them share one render."""

    @pytest.mark.parametrize(
        ("template", "keys"),
        [
            ("Hi {{flow.data.first_name}}, order {{flow.data.order.id}}", {"first_name", "order"}),
            ("{% if flow.data.visits %}({{ flow.data.visits | plus: 1 }}){% endif %}", {"visits"}),
            ("{% for i in flow.data.items %}{{ i.name }}{% endfor %}", {"items"}),
            ("{{flow.data.items[flow.data.k]}}", {"items", "k"}),
            ("Reply YES to confirm", set()),
            ("{{contact.channel.address}}", set()),
            ("{{flow.data}}", None),
            ("{{flow.data[flow.data.k]}}", None),
            ("{% assign d = flow.data %}{{ d.x }}", None),
            ("{{ flow.data.size }}", None),
        ],
    )
    def test_keys_a_template_reads(self, template: str, keys: set[str] | None) -> None:
        """Each key a path starts with; None where the text may depend on any key (all of it, a computed key, size)."""
        assert data_keys(template) == (None if keys is None else frozenset(keys))

    @given(_LIQUID_LIKE | st.sampled_from(_WRITTEN), _DATA)
    def test_a_render_depends_only_on_the_keys_it_reads(self, template: str, data: dict[str, Any]) -> None:
        """Leaving out every key data_keys does not name never changes the text a contact would see."""
        keys = data_keys(template)
        assume(keys is not None)
        assert keys is not None
        assert render(template, {k: v for k, v in data.items() if k in keys}) == render(template, data)


class TestNullCounts:
    """How many rows would print a blank where the Flow shows a value."""

    def test_counts_null_and_blank_rows_of_required_mapped_paths(self) -> None:
        """first_name is null or blank in three rows; optional and unmapped paths are not counted."""
        frame = pl.DataFrame(
            {
                "fname": ["Ada", None, "", "  ", "Bo"],
                "order_no": [1, 2, None, 4, 5],
                "town": [None, None, None, None, None],
            }
        )
        variables = flow_variables(_flow("order_update"))
        counts = flowcheck.null_counts(
            variables, frame, {"first_name": "fname", "order.id": "order_no", "city": "town"}
        )
        assert counts == {"first_name": 3, "order.id": 1}

    def test_complete_columns_are_left_out(self) -> None:
        """Only paths with at least one empty row are listed."""
        frame = pl.DataFrame({"fname": ["Ada", "Bo"]})
        variables = [FlowVariable("first_name", True, ("send_intro",)), FlowVariable("order.id", True, ("send_intro",))]
        assert flowcheck.null_counts(variables, frame, {"first_name": "fname"}) == {}
