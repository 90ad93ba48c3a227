"""The message widgets a REST API run can reach, and the most segments one run can send along any path.

Pure: a Flow definition (``definition`` of its last published revision) in. Widgets of type
``send-message`` and ``send-and-wait-for-reply`` send an SMS (Twilio, Studio widget library);
a run follows one transition out of each widget, so what one run sends is bounded by the
path through the Flow with the most segments. A loop is followed once: a Flow that asks again
and again sends more than this bound (the projection says "at least" for it).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..flow import rest_trigger

__all__ = ["MESSAGE_TYPES", "FlowMessages", "MessageWidget", "flow_messages", "most_segments"]

MESSAGE_TYPES = ("send-message", "send-and-wait-for-reply")
_TEMPLATE_TYPES = ("content_template", "template")


@dataclass(frozen=True, slots=True)
class MessageWidget:
    """One message widget: its name, body (Liquid), sender properties, and whether it waits for a reply."""

    name: str
    body: str
    from_: str
    service: str
    waits: bool
    template: bool


@dataclass(frozen=True)
class FlowMessages:
    """The message widgets reachable from the REST trigger, the first of them, and the graph between widgets."""

    first: MessageWidget | None
    widgets: tuple[MessageWidget, ...]
    start: str
    edges: Mapping[str, tuple[str, ...]]

    @property
    def waits_for_reply(self) -> bool:
        """Whether a widget reachable from the trigger waits for the contact's reply."""
        return any(w.waits for w in self.widgets)

    @property
    def branches(self) -> bool:
        """Whether runs may take different paths with different messages on them."""
        return any(len(n) > 1 for n in self.edges.values())


def _text(properties: Mapping[str, Any], key: str) -> str:
    value = properties.get(key)
    return value if isinstance(value, str) else ""


def _widget(state: Mapping[str, Any]) -> MessageWidget:
    raw = state.get("properties")
    properties: Mapping[str, Any] = raw if isinstance(raw, Mapping) else {}
    kind = _text(properties, "message_type")
    return MessageWidget(
        name=str(state.get("name")),
        body=_text(properties, "body"),
        from_=_text(properties, "from"),
        service=_text(properties, "service"),
        waits=state.get("type") == "send-and-wait-for-reply",
        template=kind in _TEMPLATE_TYPES or bool(_text(properties, "content_sid")),
    )


def flow_messages(definition: Mapping[str, Any]) -> FlowMessages:
    """The message widgets a REST API run can reach, breadth first (raises ``FlowWiringError`` as the check does)."""
    start = rest_trigger(definition) or ""
    states = definition.get("states")
    by_name = {str(s.get("name")): s for s in (states if isinstance(states, list) else []) if isinstance(s, Mapping)}
    edges: dict[str, tuple[str, ...]] = {}
    widgets: list[MessageWidget] = []
    queue, seen = deque([start]), {start}
    while queue:
        name = queue.popleft()
        state = by_name.get(name)
        if state is None:
            continue
        if state.get("type") in MESSAGE_TYPES:
            widgets.append(_widget(state))
        transitions = state.get("transitions")
        targets = tuple(
            dict.fromkeys(
                t["next"]
                for t in (transitions if isinstance(transitions, list) else [])
                if isinstance(t, Mapping) and isinstance(t.get("next"), str) and t["next"]
            )
        )
        edges[name] = targets
        for target in targets:
            if target not in seen:
                seen.add(target)
                queue.append(target)
    return FlowMessages(first=widgets[0] if widgets else None, widgets=tuple(widgets), start=start, edges=edges)


def most_segments(messages: FlowMessages, segments: Mapping[str, int]) -> int:
    """The most segments one run sends along any path (each widget's count in ``segments``; loops once)."""
    best: dict[str, int] = {}
    on_path: set[str] = set()

    def walk(name: str) -> int:
        if name in best:
            return best[name]
        if name in on_path:
            return 0
        on_path.add(name)
        after = max((walk(n) for n in messages.edges.get(name, ())), default=0)
        on_path.discard(name)
        best[name] = segments.get(name, 0) + after
        return best[name]

    return walk(messages.start)
