"""Segments, sender kinds, the paths through a Flow and where a webhook routes replies: pure, by Twilio's rules."""

from __future__ import annotations

import json
from typing import Any

import polars as pl
import pytest
from hypothesis import given
from hypothesis import strategies as st

from batch_engage.arrival import count_segments, describe_sender, flow_messages, route_of, row_segments, sender_of
from batch_engage.arrival.paths import most_segments
from batch_engage.arrival.segments import GSM_BASIC, GSM_EXTENDED
from batch_engage.flow import render

FLOW = "FW" + "1" * 32
ACCOUNT = "AC" + "2" * 32


@pytest.mark.parametrize(
    ("body", "encoding", "units", "segments"),
    [
        pytest.param("Hello, your order ships today.", "GSM-7", 30, 1, id="plain"),
        pytest.param("a" * 160, "GSM-7", 160, 1, id="exactly-160"),
        pytest.param("a" * 161, "GSM-7", 161, 2, id="161-splits-153+8"),
        pytest.param("a" * 306, "GSM-7", 306, 2, id="two-full-parts"),
        pytest.param("a" * 307, "GSM-7", 307, 3, id="one-over-two-parts"),
        pytest.param("Price: 5€", "GSM-7", 10, 1, id="euro-counts-2"),
        pytest.param("a" * 159 + "€", "GSM-7", 161, 2, id="euro-pushes-past-160"),
        pytest.param("a" * 159 + "^", "GSM-7", 161, 2, id="caret-counts-2"),
        pytest.param("{x}", "GSM-7", 5, 1, id="braces-count-2"),
        pytest.param("a" * 152 + "{" + "b" * 10, "GSM-7", 164, 2, id="escape-pair-never-split"),
        pytest.param("a" * 152 + "€" + "a" * 152, "GSM-7", 306, 3, id="escape-pair-moved-to-the-next-part-costs-one"),
        pytest.param("é" * 66 + "🎉" + "é" * 66, "UCS-2", 134, 3, id="surrogate-pair-moved-to-the-next-part-costs-one"),
        pytest.param("Ça va? à bientôt", "UCS-2", 16, 1, id="o-circumflex-is-not-gsm"),
        pytest.param("Thanks 🎉", "UCS-2", 9, 1, id="emoji-is-two-units"),
        pytest.param("a" * 70, "GSM-7", 70, 1, id="70-gsm"),
        pytest.param("é" * 69 + "🎉", "UCS-2", 71, 2, id="one-emoji-makes-gsm-text-ucs2"),
        pytest.param("ü" + "日" * 69, "UCS-2", 70, 1, id="exactly-70-units"),
        pytest.param("日" * 71, "UCS-2", 71, 2, id="71-units-splits-67+4"),
        pytest.param("日" * 66 + "🎉" + "日", "UCS-2", 69, 1, id="emoji-within-70"),
        pytest.param("日" * 66 + "🎉" + "日" * 2, "UCS-2", 70, 1, id="emoji-at-70"),
        pytest.param("日" * 66 + "🎉" + "日" * 3, "UCS-2", 71, 2, id="surrogate-pair-never-split"),
        pytest.param("", "GSM-7", 0, 0, id="empty"),
    ],
)
def test_segments_match_twilios_rules(body: str, encoding: str, units: int, segments: int) -> None:
    """GSM-7 160/153 with extension characters counting 2; else UCS-2 70/67 UTF-16 units (an emoji is 2)."""
    found = count_segments(body)
    assert (found.encoding, found.units, found.segments) == (encoding, units, segments)


def _segments_one_character_at_a_time(body: str) -> tuple[str, int, int]:
    """The rules read literally: each character's units, parts filled in order, a character never split."""
    if not body:
        return "GSM-7", 0, 0
    gsm = all(c in GSM_BASIC or c in GSM_EXTENDED for c in body)
    sizes = [2 if (c in GSM_EXTENDED if gsm else ord(c) > 0xFFFF) else 1 for c in body]
    single, part = (160, 153) if gsm else (70, 67)
    if sum(sizes) <= single:
        return ("GSM-7" if gsm else "UCS-2"), sum(sizes), 1
    segments, used = 1, 0
    for size in sizes:
        if used + size > part:
            segments, used = segments + 1, 0
        used += size
    return ("GSM-7" if gsm else "UCS-2"), sum(sizes), segments


_BODY_CHARACTERS = st.sampled_from([*sorted(GSM_BASIC | GSM_EXTENDED), "é", "ô", "日", "🎉", "😀", "’"])


@st.composite
def _runs_around_part_ends(draw: st.DrawFn) -> str:
    """One-unit characters in runs of any length, each run maybe ending in a two-unit one: pairs land on part ends."""
    gsm = draw(st.booleans())
    two = st.sampled_from(sorted(GSM_EXTENDED) if gsm else ["🎉", "😀"])
    # Lengths next to the parts' sizes (67, 70, 153, 160) as often as any others.
    length = st.integers(0, 160) | st.sampled_from([65, 66, 67, 68, 69, 70, 151, 152, 153, 154, 159, 160])
    runs = draw(st.lists(st.tuples(length, st.none() | two), max_size=6))
    return "".join(("a" if gsm else "é") * n + (pair or "") for n, pair in runs)


@given(_runs_around_part_ends() | st.lists(_BODY_CHARACTERS, max_size=700).map("".join) | st.text(max_size=400))
def test_segments_counted_by_expressions_match_counting_one_character_at_a_time(body: str) -> None:
    """Any body (escape pairs and emoji at every place a part ends) gets the segments a per-character count gives."""
    found = count_segments(body)
    assert (found.encoding, found.units, found.segments) == _segments_one_character_at_a_time(body)


@pytest.mark.parametrize(
    ("sender", "kind", "throughput"),
    [
        ("+14155550100", "long_code", 1.0),
        ("+18005550100", "toll_free", 3.0),
        ("+447700900123", "long_code", 10.0),
        ("12345", "short_code", 100.0),
        ("MyShop", "alphanumeric", 10.0),
        ("whatsapp:+14155550100", "whatsapp", 10.0),
        ("MG" + "a" * 32, "messaging_service", 0.0),
    ],
)
def test_each_sender_kind_has_its_documented_default_throughput(sender: str, kind: str, throughput: float) -> None:
    """Long code 1/s in the US (10DLC), 10 elsewhere; toll-free 3; short code 100; a service counts its pool."""
    line = describe_sender(sender)
    assert (line.kind, line.throughput) == (kind, throughput)
    if sender == "+14155550100":
        assert line.country == "US" and line.ten_dlc and line.label() == "long_code (US, 10DLC)"


def test_the_widgets_own_sender_wins_over_the_runs_from() -> None:
    """A literal ``from`` or ``service`` on the widget sends; Studio's default ``{{flow.channel.address}}`` is From."""
    assert sender_of("{{flow.channel.address}}", "{{trigger.message.InstanceSid}}", "+14155550100") == "+14155550100"
    assert sender_of("+18005550100", "", "+14155550100") == "+18005550100"
    assert sender_of("", "MG" + "b" * 32, "+14155550100") == "MG" + "b" * 32


def _state(name: str, kind: str, body: str = "", nxt: list[str] | None = None, **props: Any) -> dict[str, Any]:
    return {
        "name": name,
        "type": kind,
        "properties": {"body": body, **props},
        "transitions": [{"event": f"e{i}", "next": n} for i, n in enumerate(nxt or [])],
    }


def test_a_branching_flow_bounds_a_run_by_its_longest_path() -> None:
    """Trigger -> hello -> split -> (long survey | short thanks); a loop back is followed once."""
    definition = {
        "states": [
            {"name": "Trigger", "type": "trigger", "transitions": [{"event": "incomingRequest", "next": "hello"}]},
            _state("hello", "send-message", "Hi", ["split"]),
            _state("split", "split-based-on", "", ["survey", "thanks"]),
            _state("survey", "send-and-wait-for-reply", "x" * 200, ["hello"]),
            _state("thanks", "send-message", "Thanks"),
        ]
    }
    messages = flow_messages(definition)
    assert messages.first is not None and messages.first.name == "hello"
    assert messages.waits_for_reply and messages.branches
    counts = {w.name: count_segments(w.body).segments for w in messages.widgets}
    assert counts == {"hello": 1, "survey": 2, "thanks": 1}
    assert most_segments(messages, counts) == 3


def test_contacts_share_a_render_only_where_their_text_would_be_the_same() -> None:
    """Each row's segments are its own render's, however many rows agree on the keys a widget reads."""
    # A number 1, a text "1" and true render differently; a missing key renders as null; "note" is never read,
    # but "bye" counts the keys, so it reads them all.
    long_if_one = "{% if flow.data.n == 1 %}" + "€" * 90 + "{% else %}short{% endif %} {{flow.data.name}}"
    long_if_text = "{% assign size = flow.data.n | size %}{% if size == 1 %}" + "x" * 170 + "{% endif %}"
    long_if_many = "{% if flow.data.size > 2 %}" + "x" * 170 + "{% endif %}bye"
    definition = {
        "states": [
            {"name": "Trigger", "type": "trigger", "transitions": [{"event": "incomingRequest", "next": "hi"}]},
            _state("hi", "send-message", long_if_one + long_if_text, ["ask"]),
            _state("ask", "send-and-wait-for-reply", "Reply YES{% if flow.data.name %}, {{flow.data.name}}{% endif %}"),
            _state("bye", "send-message", long_if_many),
        ]
    }
    definition["states"][2]["transitions"] = [{"event": "incomingMessage", "next": "bye"}]
    values = [{"n": 1}, {"n": "1"}, {"n": True}, {"n": 1.0}, {"n": None}, {}, {"n": 1, "note": "x" * 500}]
    names = ["Ada", "Zoë " * 20, None]
    data = [{**v, **({"name": n} if n else {})} for n in names for v in values] * 3
    parameters = [json.dumps(d) for d in data]
    plan = pl.DataFrame(
        {
            "row": range(1, len(data) + 1),
            "from": ["+15005550006"] * len(data),
            "parameters": parameters,
            "status": ["pending"] * len(data),
        }
    )
    found = row_segments(definition, plan)
    messages = flow_messages(definition)
    for row, params in enumerate(parameters, start=1):
        own = {w.name: count_segments(render(w.body, json.loads(params))).segments for w in messages.widgets}
        assert (found.first[row], found.per_run[row]) == (own["hi"], most_segments(messages, own)), params
    assert len({(found.first[r], found.per_run[r]) for r in found.first}) > 2


def test_a_widget_out_of_room_for_shared_renders_still_counts_every_contact(monkeypatch: pytest.MonkeyPatch) -> None:
    """Past its budget of kept keys (big values, different for everyone) a widget renders each contact: same counts."""
    from batch_engage.arrival import projection

    definition = {
        "states": [
            {"name": "Trigger", "type": "trigger", "transitions": [{"event": "incomingRequest", "next": "hi"}]},
            _state("hi", "send-message", "{% for i in flow.data.items %}{{i}}{% endfor %}"),
        ]
    }
    items = [["x" * (n % 7) * 40, n] for n in range(60)]
    plan = pl.DataFrame(
        {
            "row": range(1, 61),
            "from": ["+15005550006"] * 60,
            "parameters": [json.dumps({"items": i}) for i in items],
            "status": ["pending"] * 60,
        }
    )
    shared = row_segments(definition, plan)
    monkeypatch.setattr(projection, "_SHARED_RENDERS", 500)
    assert row_segments(definition, plan) == shared


@pytest.mark.parametrize(
    ("url", "routing"),
    [
        (f"https://webhooks.twilio.com/v1/Accounts/{ACCOUNT}/Flows/{FLOW}", "this_flow"),
        (f"https://webhooks.twilio.com/v1/Accounts/{ACCOUNT}/Flows/{FLOW}/?FlowEvent=x", "this_flow"),
        (f"http://webhooks.twilio.com/v1/Accounts/{ACCOUNT}/Flows/FW{'9' * 32}", "other_flow"),
        ("https://example.com/sms", "url"),
        ("", "none"),
        (None, "none"),
    ],
)
def test_a_webhook_url_says_where_replies_go(url: str | None, routing: str) -> None:
    """This Flow's webhook, another Flow's, another URL, or nothing."""
    assert route_of(url, FLOW)[0] == routing
