"""Check a job against the Studio Flow it triggers, before anything is sent.

Two mistakes never show up as an API error: the Flow prints ``{{flow.data.first_name}}``
but the job supplies ``name`` (Studio renders a missing variable as ``""``, so every
contact reads "Hi , your order  ships soon"), and the Trigger's REST API transition is
connected to nothing (every run is created, 201, and ends at once). This module finds
both in a Flow definition, and renders the first message a contact would receive.

Everything here is pure: a definition (the ``definition`` of
``GET /v2/Flows/{sid}/Revisions/LatestPublished``) and a mapping in, values out.

What it relies on:

* Twilio, "Studio Flow Definition" and "Studio Flow and Widget JSON Schemas"
  (twilio.com/docs/studio/rest-api/v2/flow-definition, .../v2/schemas): a definition is
  ``{"description", "flags", "initial_state", "states": [{"name", "type", "properties",
  "transitions": [{"event", "next"?, "conditions"?}]}]}``; the state of type ``trigger``
  starts a run, and its ``incomingRequest`` transition is the one a REST API run follows.
* Twilio, "Trigger a Studio Flow Execution via the REST API" and "REST API v1": the
  JSON in ``Parameters`` is readable in widgets as ``{{flow.data.<key>}}``, and the
  Trigger's REST API transition must lead to a widget for such runs to do anything.
* Twilio, "What is Studio Flow Context" and "How do I use Liquid with Twilio Studio":
  widget properties are Liquid templates over ``flow``, ``trigger``, ``widgets`` and
  ``contact``; ``{% for %}`` loops and filters work as in Liquid.
* Shopify's Liquid reference (``default``, truthiness, ``empty``/``blank``): only
  ``nil`` and ``false`` are falsy; ``default`` replaces ``nil``, ``false`` and ``""``;
  ``and``/``or`` are evaluated right to left, without precedence.

One reading differs from Shopify's Liquid on purpose: ``nil`` counts as ``empty``, so
``{% if flow.data.x != empty %}`` guards ``x`` the way Flow authors mean it to; the
check (a guarded path is optional) and the preview (the guarded text is left out when
``x`` is missing) agree with each other.

The renderer is a subset meant for a preview, never for sending: unknown tags render
nothing, unknown filters pass their value through, a loop shows at most
``MAX_LOOP`` items, and it never raises.

The Liquid itself lives in private modules: ``liquid`` parses a template into a
``_liquid_nodes`` tree, ``_liquid_render`` renders one; this module holds what concerns a Flow.
"""

from __future__ import annotations

import itertools
from collections import deque
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import polars as pl

from . import liquid_nodes as ln
from .liquid import parse
from .liquid_render import MAX_LOOP, render

__all__ = [
    "MAX_LOOP",
    "FlowCheck",
    "FlowVariable",
    "FlowWiringError",
    "compare",
    "first_message",
    "flow_variables",
    "null_counts",
    "render",
    "rest_trigger",
]

_MESSAGE_TYPES = ("send-message", "send-and-wait-for-reply")
_LENGTH_PROPERTIES = ("size", "first", "last")


class FlowWiringError(Exception):
    """The Flow cannot do anything for a REST API run; the message says what to connect in Studio."""


@dataclass(frozen=True, slots=True)
class FlowVariable:
    """One ``flow.data`` path the Flow reads, whether a missing value shows, and which widgets read it."""

    path: str
    required: bool
    widgets: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class FlowCheck:
    """What a job's mapping lacks (required paths nobody supplies) and supplies in vain (keys never read)."""

    missing: tuple[FlowVariable, ...]
    unused: tuple[str, ...]

    @property
    def ok(self) -> bool:
        """True when every path the Flow prints is supplied."""
        return not self.missing


# ---------------------------------------------------------------------------------------
# Which flow.data paths a template reads


def _flow_path(var: ln.Var) -> str | None:
    """``flow.data.order.id`` -> ``order.id``; ``flow.data.items[0]`` -> ``items``; None outside flow.data."""
    seg = var.segments
    if len(seg) < 3 or seg[0] != "flow" or seg[1] != "data" or not isinstance(seg[2], str):
        return None
    names = list(itertools.takewhile(lambda s: isinstance(s, str), seg[2:]))
    # items.size / items.first are Liquid's own properties of items, not keys the job supplies
    while len(names) > 1 and names[-1] in _LENGTH_PROPERTIES:
        names.pop()
    return ".".join(str(n) for n in names)


def _vars(expr: ln.Expr | None) -> Iterator[ln.Var]:
    """Every variable an expression reads, including those inside ``[index]``es and range bounds."""
    if isinstance(expr, ln.Var):
        yield expr
        for seg in expr.segments:
            if not isinstance(seg, str | int):
                yield from _vars(seg)
    elif isinstance(expr, ln.Range):
        yield from _vars(expr.start)
        yield from _vars(expr.stop)


def _cond_vars(cond: ln.Cond) -> Iterator[ln.Var]:
    """Every variable a condition reads."""
    if isinstance(cond, ln.Logic):
        yield from _cond_vars(cond.left)
        yield from _cond_vars(cond.right)
    else:
        yield from _vars(cond.left)
        yield from _vars(cond.right)


def _is_nothing(value: Any) -> bool:
    return value is None or value is ln.EMPTY or value is ln.BLANK or value == ""


def _present_when(cond: ln.Cond, outcome: bool) -> frozenset[str]:  # noqa: PLR0911 - one return per case, as a table
    """The flow.data paths known to hold a value when ``cond`` comes out as ``outcome``."""
    if isinstance(cond, ln.Logic):
        left, right = _present_when(cond.left, outcome), _present_when(cond.right, outcome)
        # (a and b) true, or (a or b) false: both sides hold; otherwise only what both sides share
        both = (cond.op == "and") == outcome
        return left | right if both else left & right
    sides = [(cond.left, cond.right), (cond.right, cond.left)] if cond.right is not None else [(cond.left, None)]
    for var, other in sides:
        path = _flow_path(var) if isinstance(var, ln.Var) else None
        if path is None:
            continue
        if cond.op is None:
            return frozenset({path}) if outcome else frozenset()
        if not isinstance(other, ln.Literal):
            return frozenset()
        nothing = _is_nothing(other.value) or other.value is False
        if cond.op in ("!=", "<>") and _is_nothing(other.value):
            return frozenset({path}) if outcome else frozenset()
        if cond.op == "==" and _is_nothing(other.value):
            return frozenset() if outcome else frozenset({path})
        if cond.op not in ("!=", "<>") and not nothing:
            return frozenset({path}) if outcome else frozenset()
        return frozenset()
    return frozenset()


@dataclass(slots=True)
class _Reads:
    """Uses of each path found so far: path -> was every use optional."""

    optional: dict[str, bool] = field(default_factory=dict)

    def add(self, var: ln.Var, optional: bool, guards: frozenset[str]) -> None:
        path = _flow_path(var)
        if not path:
            return
        guarded = any(g == path or g.startswith(path + ".") for g in guards)
        self.optional[path] = self.optional.get(path, True) and (optional or guarded)

    def filtered(self, value: ln.Filtered, guards: frozenset[str]) -> None:
        defaulted = any(f.name == "default" for f in value.filters)
        for var in _vars(value.expr):
            self.add(var, defaulted, guards)
        for f in value.filters:
            for arg in f.args:
                for var in _vars(arg):
                    self.add(var, f.name == "default", guards)

    def nodes(self, nodes: Iterable[ln.Node], guards: frozenset[str]) -> None:
        for node in nodes:
            if isinstance(node, ln.Output | ln.Assign):
                self.filtered(node.value, guards)
            elif isinstance(node, ln.Capture):
                self.nodes(node.body, guards)
            elif isinstance(node, ln.For):
                self.filtered(node.iterable, guards)
                self.nodes(node.body, guards)
                self.nodes(node.otherwise, guards)
            elif isinstance(node, ln.If):
                known_false: frozenset[str] = frozenset()
                for branch in node.branches:
                    inner = guards | known_false
                    if branch.cond is not None:
                        for var in _cond_vars(branch.cond):
                            self.add(var, True, guards)
                        inner |= _present_when(branch.cond, not branch.negated)
                        known_false |= _present_when(branch.cond, branch.negated)
                    self.nodes(branch.body, inner)
            elif isinstance(node, ln.Case):
                for var in _vars(node.subject):
                    self.add(var, True, guards)
                subject = _flow_path(node.subject) if isinstance(node.subject, ln.Var) else None
                for values, body in node.whens:
                    for value in values:
                        for var in _vars(value):
                            self.add(var, True, guards)
                    present = subject is not None and all(
                        isinstance(v, ln.Literal) and not _is_nothing(v.value) and v.value is not False for v in values
                    )
                    self.nodes(body, guards | {subject} if present and subject else guards)
                self.nodes(node.otherwise, guards)


def _strings(value: Any) -> Iterator[str]:
    """Every string inside a JSON value, depth first, in document order."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, Mapping):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list | tuple):
        for item in value:
            yield from _strings(item)


def _states(definition: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    states = definition.get("states") if isinstance(definition, Mapping) else None
    if not isinstance(states, list):
        return []
    return [s for s in states if isinstance(s, Mapping)]


def _transitions(state: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    transitions = state.get("transitions")
    return [t for t in transitions if isinstance(t, Mapping)] if isinstance(transitions, list) else []


def flow_variables(definition: Mapping[str, Any]) -> list[FlowVariable]:
    """Every ``flow.data`` path the Flow's widgets read, in the order they first appear.

    A path is optional (``required=False``) when every read of it has a ``default``
    filter, is only tested in a condition, or sits inside a block whose condition
    proves it present (``{% if flow.data.x %}``, ``!= empty``, ``unless ... == blank``).
    A split's ``input`` and a condition's ``arguments`` are ``{{ }}`` tags like any
    other, so they count as required reads: a Flow that branches on a value the job
    never supplies always takes the same branch.
    """
    order: dict[str, list[str]] = {}
    optional: dict[str, bool] = {}
    for state in _states(definition):
        name = str(state.get("name", ""))
        texts = list(_strings(state.get("properties", {})))
        for transition in _transitions(state):
            texts.extend(_strings(transition.get("conditions", [])))
        reads = _Reads()
        for text in texts:
            if "{" in text:
                reads.nodes(parse(text), frozenset())
        for path, opt in reads.optional.items():
            widgets = order.setdefault(path, [])
            if name not in widgets:
                widgets.append(name)
            optional[path] = optional.get(path, True) and opt
    return [FlowVariable(path, not optional[path], tuple(widgets)) for path, widgets in order.items()]


def _covers(path: str, key: str) -> bool:
    """A supplied key covers a path equal to it, inside it, or containing it."""
    return path == key or path.startswith(key + ".") or key.startswith(path + ".")


def compare(variables: Iterable[FlowVariable], supplied: Iterable[str], *, marker_key: str | None) -> FlowCheck:
    """Required paths no supplied key covers, and supplied top-level keys the Flow never reads.

    ``supplied`` are the job's Parameters keys, dotted for nested ones (``order.id``);
    ``marker_key`` (the tool's own per-run key) is never reported either way.
    """
    variables = list(variables)
    keys = [k for k in dict.fromkeys(supplied) if k != marker_key]
    covering = [*keys, marker_key] if marker_key else keys
    missing = tuple(v for v in variables if v.required and not any(_covers(v.path, k) for k in covering))
    read_tops = {v.path.split(".", 1)[0] for v in variables}
    unused = tuple(dict.fromkeys(k.split(".", 1)[0] for k in keys if k.split(".", 1)[0] not in read_tops))
    return FlowCheck(missing=missing, unused=unused)


# ---------------------------------------------------------------------------------------
# Wiring


def _trigger_state(definition: Mapping[str, Any]) -> Mapping[str, Any]:
    states = _states(definition)
    if not states:
        raise FlowWiringError(
            "the Flow definition has no widgets: open the Flow in the Studio editor, build it and publish it"
        )
    for state in states:
        if state.get("type") == "trigger":
            return state
    raise FlowWiringError(
        "the Flow definition has no Trigger widget: re-create the Flow in the Studio editor (every Flow starts at one)"
    )


def rest_trigger(definition: Mapping[str, Any]) -> str | None:
    """The widget a REST API run starts at: where the Trigger's ``incomingRequest`` transition leads.

    Raises FlowWiringError when there are no states, no trigger state, or the transition leads nowhere.
    """
    trigger = _trigger_state(definition)
    name = trigger.get("name", "Trigger")
    for transition in _transitions(trigger):
        if transition.get("event") == "incomingRequest":
            target = transition.get("next")
            if isinstance(target, str) and target:
                return target
    raise FlowWiringError(
        f"the Flow's {name} widget has nothing on its REST API transition, so every run ends at once: "
        "in the Studio editor connect REST API to the first widget, then publish"
    )


def first_message(definition: Mapping[str, Any]) -> tuple[str, str] | None:
    """(widget name, body) of the first message widget a REST API run reaches, breadth first; None if none.

    Raises FlowWiringError as rest_trigger does.
    """
    start = rest_trigger(definition)
    by_name = {str(s.get("name")): s for s in _states(definition)}
    queue = deque([start])
    seen = {start}
    while queue:
        state = by_name.get(str(queue.popleft()))
        if state is None:
            continue
        if state.get("type") in _MESSAGE_TYPES:
            properties = state.get("properties")
            body = properties.get("body", "") if isinstance(properties, Mapping) else ""
            return str(state.get("name")), body if isinstance(body, str) else ""
        for transition in _transitions(state):
            target = transition.get("next")
            if isinstance(target, str) and target not in seen:
                seen.add(target)
                queue.append(target)
    return None


# ---------------------------------------------------------------------------------------
# Empty values in the input


def null_counts(
    variables: Iterable[FlowVariable], frame: pl.DataFrame, mapping_columns: Mapping[str, str]
) -> dict[str, int]:
    """For each required path mapped from a column: rows where that column is null or blank (only counts > 0).

    ``mapping_columns`` maps a Parameters key (dotted when nested) to the column it comes
    from. A blank text value counts: Studio prints it, and "Hi   ," reads as broken as "Hi ,".
    """
    checks: list[pl.Expr] = []
    for variable in variables:
        column = mapping_columns.get(variable.path)
        if not variable.required or column is None or column not in frame.columns:
            continue
        empty = pl.col(column).is_null()
        if frame.schema[column] == pl.String:
            empty = empty | (pl.col(column).str.strip_chars() == "")
        checks.append(empty.sum().alias(variable.path))
    if not checks:
        return {}
    row = frame.select(checks).row(0, named=True)
    return {path: int(count) for path, count in row.items() if count}
