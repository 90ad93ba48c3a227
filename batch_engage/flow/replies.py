"""Replies in an experiment: a number routes its replies to one Flow only, so two variant Flows that both wait
for replies cannot share a sender. Computed from the job and the Flows' definitions alone."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..job import Spec

__all__ = ["reply_conflicts", "waits_for_replies"]

_WAITS = "send-and-wait-for-reply"


def waits_for_replies(definition: Mapping[str, Any]) -> bool:
    """Whether the Flow has a widget that waits for the contact's reply."""
    states = definition.get("states")
    return isinstance(states, list) and any(isinstance(s, dict) and s.get("type") == _WAITS for s in states)


def reply_conflicts(spec: Spec, waits: Mapping[str, bool]) -> list[str]:
    """A warning per variant whose replies go to another variant's Flow (``waits``: Flow SID -> waits for replies).

    The sender's number is assumed to route replies to the job's ``[flow] sid`` (else to the
    first variant's Flow): the variants on other Flows that wait for replies are named.
    A per-row sender (``from_column``) cannot be told from the job alone, so it is not checked.
    """
    experiment = spec.experiment
    if experiment is None or spec.mapping.from_ is None:
        return []
    flows = experiment.flows(spec.flow.sid)
    waiting = {name: sid for name, sid in flows.items() if waits.get(sid)}
    if len(set(waiting.values())) < 2:
        return []
    home = spec.flow.sid if spec.flow.sid in waiting.values() else next(iter(waiting.values()))
    homes = [name for name, sid in waiting.items() if sid == home]
    return [
        f"variants {', '.join(homes)} and {name} send from {spec.mapping.from_} and their Flows ({home}, {sid}) both "
        f"wait for replies; a number routes replies to one Flow only, so variant {name}'s replies go elsewhere "
        f"(to {home} if the number's messaging webhook is that Flow): give variant {name} its own sender"
        for name, sid in waiting.items()
        if sid != home
    ]
