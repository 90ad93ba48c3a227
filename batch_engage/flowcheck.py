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
"""

from __future__ import annotations

import itertools
import json
import re
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import polars as pl

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

MAX_LOOP = 50
"""A preview shows at most this many items of a ``{% for %}`` loop."""

_MAX_DEPTH = 40  # nested blocks deeper than this are treated as unknown tags, so parsing cannot overflow the stack
_MAX_STEPS = 20_000  # nodes a render may visit: nested loops over ranges cannot make a preview hang
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
# Liquid: tokens, expressions, blocks


@dataclass(frozen=True, slots=True)
class _Special:
    name: str


_EMPTY = _Special("empty")
_BLANK = _Special("blank")


@dataclass(frozen=True, slots=True)
class _Literal:
    value: Any


@dataclass(frozen=True, slots=True)
class _Var:
    segments: tuple[str | int | _Expr, ...]
    text: str


@dataclass(frozen=True, slots=True)
class _Range:
    start: _Expr
    stop: _Expr


_Expr = _Literal | _Var | _Range


@dataclass(frozen=True, slots=True)
class _Filter:
    name: str
    args: tuple[_Expr, ...]


@dataclass(frozen=True, slots=True)
class _Filtered:
    expr: _Expr
    filters: tuple[_Filter, ...]


@dataclass(frozen=True, slots=True)
class _Compare:
    left: _Expr
    op: str | None
    right: _Expr | None


@dataclass(frozen=True, slots=True)
class _Logic:
    op: str  # "and" | "or"
    left: _Cond
    right: _Cond


_Cond = _Compare | _Logic


@dataclass(frozen=True, slots=True)
class _Text:
    text: str


@dataclass(frozen=True, slots=True)
class _Output:
    value: _Filtered


@dataclass(frozen=True, slots=True)
class _Branch:
    cond: _Cond | None  # None: the else branch
    negated: bool
    body: tuple[_Node, ...]


@dataclass(frozen=True, slots=True)
class _If:
    branches: tuple[_Branch, ...]


@dataclass(frozen=True, slots=True)
class _Case:
    subject: _Expr
    whens: tuple[tuple[tuple[_Expr, ...], tuple[_Node, ...]], ...]
    otherwise: tuple[_Node, ...]


@dataclass(frozen=True, slots=True)
class _For:
    name: str
    iterable: _Filtered
    reverse: bool
    body: tuple[_Node, ...]
    otherwise: tuple[_Node, ...]


@dataclass(frozen=True, slots=True)
class _Assign:
    name: str
    value: _Filtered


@dataclass(frozen=True, slots=True)
class _Capture:
    name: str
    body: tuple[_Node, ...]


_Node = _Text | _Output | _If | _Case | _For | _Assign | _Capture

_TAG = re.compile(r"\{\{(-?)(.*?)(-?)\}\}|\{%(-?)(.*?)(-?)%\}", re.S)
_LEX = re.compile(
    r"""\s*(?:
      (?P<str>'[^']*'|"[^"]*")
     |(?P<num>-?\d+(?:\.\d+)?)
     |(?P<op>==|!=|<>|>=|<=|\.\.|[<>|:,\[\]().=])
     |(?P<word>[A-Za-z_][\w-]*\??)
     |(?P<other>\S)
    )""",
    re.X,
)
_WORD_LITERALS: dict[str, Any] = {
    "true": True,
    "false": False,
    "nil": None,
    "null": None,
    "empty": _EMPTY,
    "blank": _BLANK,
}
_COMPARISONS = ("==", "!=", "<>", ">", "<", ">=", "<=", "contains")


@dataclass(frozen=True, slots=True)
class _Token:
    kind: str  # "text" | "output" | "tag"
    text: str
    name: str = ""


def _tokens(template: str) -> list[_Token]:
    """Split a template into text, ``{{ }}`` and ``{% %}`` tokens; raw and comment are resolved here."""
    out: list[_Token] = []
    pos = 0
    strip_next = False
    while True:
        match = _TAG.search(template, pos)
        text = template[pos : match.start()] if match else template[pos:]
        if strip_next:
            text = text.lstrip()
        if match and (match.group(1) or match.group(4)):
            text = text.rstrip()
        if text:
            out.append(_Token("text", text))
        if match is None:
            return out
        pos = match.end()
        if match.group(0).startswith("{{"):
            strip_next = bool(match.group(3))
            out.append(_Token("output", match.group(2)))
            continue
        strip_next = bool(match.group(6))
        name, _, rest = match.group(5).strip().replace("\n", " ").partition(" ")
        if name in ("raw", "comment"):
            end = re.compile(r"\{%-?\s*end" + name + r"\s*-?%\}").search(template, pos)
            if name == "raw":
                out.append(_Token("text", template[pos : end.start() if end else len(template)]))
            if end is None:
                return out
            pos = end.end()
            continue
        out.append(_Token("tag", rest.strip(), name))


class _Lexer:
    """A cursor over one tag's expression tokens that never runs off the end."""

    def __init__(self, markup: str) -> None:
        self.markup = markup
        self.items: list[tuple[str, str, int, int]] = []
        for m in _LEX.finditer(markup):
            kind = m.lastgroup or "other"
            self.items.append((kind, m.group(kind), m.start(kind), m.end(kind)))
        self.i = 0
        self.depth = 0

    def peek(self, offset: int = 0) -> tuple[str, str]:
        """The kind and text of a coming token, ("end", "") past the end."""
        j = self.i + offset
        return (self.items[j][0], self.items[j][1]) if j < len(self.items) else ("end", "")

    def take(self) -> tuple[str, str]:
        """The next token, consumed."""
        token = self.peek()
        self.i += 1
        return token

    def accept(self, text: str) -> bool:
        """Consume the next token if it is exactly ``text``."""
        if self.peek()[1] == text and self.peek()[0] != "str":
            self.i += 1
            return True
        return False

    def position(self) -> int:
        """Where the next token starts in the markup."""
        return self.items[self.i][2] if self.i < len(self.items) else len(self.markup)

    def end_of_previous(self) -> int:
        """Where the last consumed token ends in the markup."""
        return self.items[self.i - 1][3] if 0 < self.i <= len(self.items) else len(self.markup)


def _primary(lex: _Lexer) -> _Expr:
    """A literal, a ``(a..b)`` range or a variable path; anything else reads as nil."""
    kind, text = lex.peek()
    if kind == "str":
        lex.take()
        return _Literal(text[1:-1])
    if kind == "num":
        lex.take()
        return _Literal(float(text) if "." in text else int(text))
    if kind == "op" and text == "(":
        lex.take()
        start = _range_end(lex)
        lex.accept("..")
        stop = _range_end(lex)
        lex.accept(")")
        return _Range(start, stop)
    if kind == "word" and text in _WORD_LITERALS:
        lex.take()
        return _Literal(_WORD_LITERALS[text])
    if kind == "word":
        return _variable(lex)
    if kind != "end":
        lex.take()
    return _Literal(None)


def _range_end(lex: _Lexer) -> _Expr:
    """A range bound: a number or a variable, never a nested range (no unbounded recursion)."""
    kind, _ = lex.peek()
    return _primary(lex) if kind in ("num", "word") else _Literal(None)


def _variable(lex: _Lexer) -> _Var:
    """``a.b['c'][0][d]``: a path of names, indexes and variable indexes."""
    start = lex.position()
    segments: list[str | int | _Expr] = [lex.take()[1]]
    while True:
        if lex.peek() == ("op", ".") and lex.peek(1)[0] == "word":
            lex.take()
            segments.append(lex.take()[1])
        elif lex.accept("["):
            kind, _ = lex.peek()
            lex.depth += 1
            # a[b[c[...]]] past a few levels is noise, not a Flow: stop before the stack does
            inner = _primary(lex) if kind in ("str", "num", "word") and lex.depth < _MAX_DEPTH else _Literal(None)
            lex.depth -= 1
            lex.accept("]")
            if isinstance(inner, _Literal) and isinstance(inner.value, str | int) and not isinstance(inner.value, bool):
                segments.append(inner.value)
            else:
                segments.append(inner)
        else:
            return _Var(tuple(segments), lex.markup[start : lex.end_of_previous()].strip())


def _filtered(lex: _Lexer) -> _Filtered:
    """An expression followed by ``| name: arg, key: arg`` filters."""
    expr = _primary(lex)
    filters: list[_Filter] = []
    while lex.accept("|"):
        kind, name = lex.peek()
        if kind != "word":
            continue
        lex.take()
        args: list[_Expr] = []
        if lex.accept(":"):
            while lex.peek()[0] != "end" and lex.peek()[1] != "|":
                if lex.peek()[0] == "word" and lex.peek(1)[1] == ":":
                    lex.take()
                    lex.take()
                    _primary(lex)  # a named argument (allow_false: true): read and ignored
                else:
                    args.append(_primary(lex))
                if not lex.accept(","):
                    break
        filters.append(_Filter(name, tuple(args)))
    return _Filtered(expr, tuple(filters))


def _comparison(lex: _Lexer) -> _Compare:
    """``a``, or ``a op b``."""
    left = _primary(lex)
    if lex.peek()[1] in _COMPARISONS and lex.peek()[0] != "str":
        op = lex.take()[1]
        return _Compare(left, op, _primary(lex))
    return _Compare(left, None, None)


def _condition(lex: _Lexer) -> _Cond:
    """``a op b and c or d``, grouped from the right as Liquid evaluates it."""
    parts: list[_Cond] = [_comparison(lex)]
    ops: list[str] = []
    # more and/or than _MAX_DEPTH is noise, not a Flow: the rest is ignored so evaluation stays shallow
    while lex.peek()[0] == "word" and lex.peek()[1] in ("and", "or") and len(ops) < _MAX_DEPTH:
        ops.append(lex.take()[1])
        parts.append(_comparison(lex))
    cond = parts.pop()
    while ops:
        cond = _Logic(ops.pop(), parts.pop(), cond)
    return cond


_ENDS = {"if": "endif", "unless": "endunless", "case": "endcase", "for": "endfor", "capture": "endcapture"}


def _parse(tokens: list[_Token], i: int, stops: frozenset[str], depth: int) -> tuple[list[_Node], int, _Token | None]:
    """Nodes up to a tag named in ``stops``; returns them, the next index and that tag (None at the end)."""
    nodes: list[_Node] = []
    while i < len(tokens):
        token = tokens[i]
        i += 1
        if token.kind == "text":
            nodes.append(_Text(token.text))
        elif token.kind == "output":
            nodes.append(_Output(_filtered(_Lexer(token.text))))
        elif token.name in stops:
            return nodes, i, token
        elif token.name in _ENDS and depth < _MAX_DEPTH:
            node, i = _block(tokens, i, token, depth + 1)
            nodes.append(node)
        elif token.name == "assign":
            name, _, value = token.text.partition("=")
            nodes.append(_Assign(name.strip(), _filtered(_Lexer(value))))
    return nodes, i, None


def _block(tokens: list[_Token], i: int, opener: _Token, depth: int) -> tuple[_Node, int]:
    """One block tag and its body, from just after its opening tag."""
    end = _ENDS[opener.name]
    if opener.name in ("if", "unless"):
        branches: list[_Branch] = []
        cond: _Cond | None = _condition(_Lexer(opener.text))
        negated = opener.name == "unless"
        while True:
            body, i, stop = _parse(tokens, i, frozenset({"elsif", "else", end}), depth)
            branches.append(_Branch(cond, negated, tuple(body)))
            if stop is None or stop.name == end or cond is None:
                return _If(tuple(branches)), i
            cond = _condition(_Lexer(stop.text)) if stop.name == "elsif" else None
            negated = False
    if opener.name == "case":
        subject = _primary(_Lexer(opener.text))
        whens: list[tuple[tuple[_Expr, ...], tuple[_Node, ...]]] = []
        _, i, stop = _parse(tokens, i, frozenset({"when", "else", end}), depth)
        while stop is not None and stop.name == "when":
            lex = _Lexer(stop.text)
            values = [_primary(lex)]
            while lex.accept(",") or lex.accept("or"):
                values.append(_primary(lex))
            body, i, stop = _parse(tokens, i, frozenset({"when", "else", end}), depth)
            whens.append((tuple(values), tuple(body)))
        otherwise: list[_Node] = []
        if stop is not None and stop.name == "else":
            otherwise, i, _ = _parse(tokens, i, frozenset({end}), depth)
        return _Case(subject, tuple(whens), tuple(otherwise)), i
    if opener.name == "for":
        lex = _Lexer(opener.text)
        name = lex.take()[1]
        lex.accept("in")
        iterable = _filtered(lex)
        reverse = "reversed" in opener.text.split()
        body, i, stop = _parse(tokens, i, frozenset({"else", end}), depth)
        otherwise = []
        if stop is not None and stop.name == "else":
            otherwise, i, _ = _parse(tokens, i, frozenset({end}), depth)
        return _For(name, iterable, reverse, tuple(body), tuple(otherwise)), i
    body, i, _ = _parse(tokens, i, frozenset({end}), depth)
    return _Capture(opener.text.split(" ", 1)[0].strip(), tuple(body)), i


def _template(template: str) -> tuple[_Node, ...]:
    """A template's node tree."""
    return tuple(_parse(_tokens(template), 0, frozenset(), 0)[0])


# ---------------------------------------------------------------------------------------
# Which flow.data paths a template reads


def _flow_path(var: _Var) -> str | None:
    """``flow.data.order.id`` -> ``order.id``; ``flow.data.items[0]`` -> ``items``; None outside flow.data."""
    seg = var.segments
    if len(seg) < 3 or seg[0] != "flow" or seg[1] != "data" or not isinstance(seg[2], str):
        return None
    names = list(itertools.takewhile(lambda s: isinstance(s, str), seg[2:]))
    # items.size / items.first are Liquid's own properties of items, not keys the job supplies
    while len(names) > 1 and names[-1] in _LENGTH_PROPERTIES:
        names.pop()
    return ".".join(str(n) for n in names)


def _vars(expr: _Expr | None) -> Iterator[_Var]:
    """Every variable an expression reads, including those inside ``[index]``es and range bounds."""
    if isinstance(expr, _Var):
        yield expr
        for seg in expr.segments:
            if not isinstance(seg, str | int):
                yield from _vars(seg)
    elif isinstance(expr, _Range):
        yield from _vars(expr.start)
        yield from _vars(expr.stop)


def _cond_vars(cond: _Cond) -> Iterator[_Var]:
    """Every variable a condition reads."""
    if isinstance(cond, _Logic):
        yield from _cond_vars(cond.left)
        yield from _cond_vars(cond.right)
    else:
        yield from _vars(cond.left)
        yield from _vars(cond.right)


def _is_nothing(value: Any) -> bool:
    return value is None or value is _EMPTY or value is _BLANK or value == ""


def _present_when(cond: _Cond, outcome: bool) -> frozenset[str]:  # noqa: PLR0911 - one return per case, as a table
    """The flow.data paths known to hold a value when ``cond`` comes out as ``outcome``."""
    if isinstance(cond, _Logic):
        left, right = _present_when(cond.left, outcome), _present_when(cond.right, outcome)
        # (a and b) true, or (a or b) false: both sides hold; otherwise only what both sides share
        both = (cond.op == "and") == outcome
        return left | right if both else left & right
    sides = [(cond.left, cond.right), (cond.right, cond.left)] if cond.right is not None else [(cond.left, None)]
    for var, other in sides:
        path = _flow_path(var) if isinstance(var, _Var) else None
        if path is None:
            continue
        if cond.op is None:
            return frozenset({path}) if outcome else frozenset()
        if not isinstance(other, _Literal):
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

    def add(self, var: _Var, optional: bool, guards: frozenset[str]) -> None:
        path = _flow_path(var)
        if not path:
            return
        guarded = any(g == path or g.startswith(path + ".") for g in guards)
        self.optional[path] = self.optional.get(path, True) and (optional or guarded)

    def filtered(self, value: _Filtered, guards: frozenset[str]) -> None:
        defaulted = any(f.name == "default" for f in value.filters)
        for var in _vars(value.expr):
            self.add(var, defaulted, guards)
        for f in value.filters:
            for arg in f.args:
                for var in _vars(arg):
                    self.add(var, f.name == "default", guards)

    def nodes(self, nodes: Iterable[_Node], guards: frozenset[str]) -> None:
        for node in nodes:
            if isinstance(node, _Output | _Assign):
                self.filtered(node.value, guards)
            elif isinstance(node, _Capture):
                self.nodes(node.body, guards)
            elif isinstance(node, _For):
                self.filtered(node.iterable, guards)
                self.nodes(node.body, guards)
                self.nodes(node.otherwise, guards)
            elif isinstance(node, _If):
                known_false: frozenset[str] = frozenset()
                for branch in node.branches:
                    inner = guards | known_false
                    if branch.cond is not None:
                        for var in _cond_vars(branch.cond):
                            self.add(var, True, guards)
                        inner |= _present_when(branch.cond, not branch.negated)
                        known_false |= _present_when(branch.cond, branch.negated)
                    self.nodes(branch.body, inner)
            elif isinstance(node, _Case):
                for var in _vars(node.subject):
                    self.add(var, True, guards)
                subject = _flow_path(node.subject) if isinstance(node.subject, _Var) else None
                for values, body in node.whens:
                    for value in values:
                        for var in _vars(value):
                            self.add(var, True, guards)
                    present = subject is not None and all(
                        isinstance(v, _Literal) and not _is_nothing(v.value) and v.value is not False for v in values
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
                reads.nodes(_template(text), frozenset())
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
# Rendering a preview


class _Placeholder(str):
    """What a value from outside flow.data shows as: its path in brackets."""

    __slots__ = ()


@dataclass(slots=True)
class _Context:
    data: Mapping[str, Any]
    scope: dict[str, Any]
    steps: int = _MAX_STEPS


def _text(value: Any) -> str:  # noqa: PLR0911 - one return per type, as a table
    """How Liquid prints a value."""
    if value is None or isinstance(value, _Special):
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    if isinstance(value, range):
        return f"{value.start}..{value.stop - 1}"
    if isinstance(value, list | tuple):
        return "".join(_text(v) for v in value)
    if isinstance(value, Mapping):
        return json.dumps(value, ensure_ascii=False, default=str)
    return str(value)


def _lookup(var: _Var, ctx: _Context) -> Any:
    """A variable's value: locals first, then flow.data; anything else is a placeholder."""
    root = var.segments[0]
    if isinstance(root, str) and root in ctx.scope:
        value: Any = ctx.scope[root]
        rest = var.segments[1:]
    elif var.segments[:2] == ("flow", "data"):
        value = ctx.data
        rest = var.segments[2:]
    else:
        return _Placeholder(f"[{var.text}]")
    for seg in rest:
        key = seg if isinstance(seg, str | int) else _evaluate(seg, ctx)
        value = _index(value, key)
        if value is None:
            return None
    return value


def _index(value: Any, key: Any) -> Any:
    if isinstance(value, Mapping):
        return value.get(key) if isinstance(key, str) and key in value else _length_property(value, key)
    if isinstance(value, list | tuple | str):
        if isinstance(key, int) and not isinstance(key, bool):
            return value[key] if -len(value) <= key < len(value) else None
        return _length_property(value, key)
    return None


def _length_property(value: Any, key: Any) -> Any:
    if key == "size":
        return len(value)
    if key in ("first", "last") and isinstance(value, list | tuple) and value:
        return value[0] if key == "first" else value[-1]
    return None


def _evaluate(expr: _Expr, ctx: _Context) -> Any:
    if isinstance(expr, _Literal):
        return expr.value
    if isinstance(expr, _Var):
        return _lookup(expr, ctx)
    start, stop = _number(_evaluate(expr.start, ctx)), _number(_evaluate(expr.stop, ctx))
    if isinstance(start, int) and isinstance(stop, int):
        return range(start, stop + 1)
    return []


def _number(value: Any) -> Any:
    """Numbers stay numbers; numeric text becomes a number (Parameters values arrive as text)."""
    if isinstance(value, str) and not isinstance(value, _Placeholder):
        try:
            return int(value)
        except ValueError:
            try:
                return float(value)
            except ValueError:
                return value
    return value


def _is_empty(value: Any) -> bool:
    return value is None or (isinstance(value, str | list | tuple | Mapping) and len(value) == 0)


def _is_blank(value: Any) -> bool:
    return value is None or value is False or _is_empty(value) or (isinstance(value, str) and not value.strip())


def _equal(left: Any, right: Any) -> bool:
    for a, b in ((left, right), (right, left)):
        if a is _EMPTY:
            return b is _EMPTY or _is_empty(b)
        if a is _BLANK:
            return b is _BLANK or _is_blank(b)
    if isinstance(left, bool) != isinstance(right, bool):
        return False
    if isinstance(left, int | float) or isinstance(right, int | float):
        return bool(_number(left) == _number(right))
    return bool(left == right)


def _order(left: Any, right: Any, op: str) -> bool:
    a, b = _number(left), _number(right)
    numbers = all(isinstance(v, int | float) and not isinstance(v, bool) for v in (a, b))
    if not numbers and not (isinstance(a, str) and isinstance(b, str)):
        return False
    return bool({">": a > b, "<": a < b, ">=": a >= b, "<=": a <= b}[op])


def _contains(left: Any, right: Any) -> bool:
    if isinstance(left, str) and isinstance(right, str):
        return right in left
    if isinstance(left, list | tuple):
        return any(_equal(item, right) for item in left)
    if isinstance(left, Mapping):
        return isinstance(right, str) and right in left
    return False


def _test(cond: _Cond, ctx: _Context) -> bool:
    if isinstance(cond, _Logic):
        left = _test(cond.left, ctx)
        return (left and _test(cond.right, ctx)) if cond.op == "and" else (left or _test(cond.right, ctx))
    left = _evaluate(cond.left, ctx)
    if cond.op is None or cond.right is None:
        return left is not None and left is not False
    right = _evaluate(cond.right, ctx)
    if cond.op == "==":
        return _equal(left, right)
    if cond.op in ("!=", "<>"):
        return not _equal(left, right)
    if cond.op == "contains":
        return _contains(left, right)
    return _order(left, right, cond.op)


_TEXT_FILTERS: dict[str, Callable[[str], str]] = {
    "upcase": str.upper,
    "downcase": str.lower,
    "capitalize": str.capitalize,
    "strip": str.strip,
    "lstrip": str.lstrip,
    "rstrip": str.rstrip,
}


def _apply(f: _Filter, value: Any, ctx: _Context) -> Any:  # noqa: PLR0911 - one return per filter, as a table
    """One filter; unknown filters, and any filter on a placeholder, pass the value through."""
    args = [_evaluate(a, ctx) for a in f.args]
    if f.name == "default":
        return (args[0] if args else "") if value is None or value is False or _is_empty(value) else value
    if isinstance(value, _Placeholder):
        return value
    if f.name in _TEXT_FILTERS:
        return _TEXT_FILTERS[f.name](_text(value))
    if f.name == "append":
        return _text(value) + (_text(args[0]) if args else "")
    if f.name == "prepend":
        return (_text(args[0]) if args else "") + _text(value)
    if f.name == "size":
        return len(value) if isinstance(value, str | list | tuple | Mapping) else 0
    return value


def _value(value: _Filtered, ctx: _Context) -> Any:
    result = _evaluate(value.expr, ctx)
    for f in value.filters:
        result = _apply(f, result, ctx)
    return result


def _render(nodes: Iterable[_Node], ctx: _Context, out: list[str]) -> None:
    for node in nodes:
        ctx.steps -= 1
        if ctx.steps < 0:
            return
        if isinstance(node, _Text):
            out.append(node.text)
        elif isinstance(node, _Output):
            out.append(_text(_value(node.value, ctx)))
        elif isinstance(node, _Assign):
            ctx.scope[node.name] = _value(node.value, ctx)
        elif isinstance(node, _Capture):
            captured: list[str] = []
            _render(node.body, ctx, captured)
            ctx.scope[node.name] = "".join(captured)
        elif isinstance(node, _If):
            for branch in node.branches:
                if branch.cond is None or _test(branch.cond, ctx) != branch.negated:
                    _render(branch.body, ctx, out)
                    break
        elif isinstance(node, _Case):
            subject = _evaluate(node.subject, ctx)
            for values, body in node.whens:
                if any(_equal(subject, _evaluate(v, ctx)) for v in values):
                    _render(body, ctx, out)
                    break
            else:
                _render(node.otherwise, ctx, out)
        else:
            _render_for(node, ctx, out)


def _render_for(node: _For, ctx: _Context, out: list[str]) -> None:
    items = _value(node.iterable, ctx)
    if isinstance(items, Mapping):
        items = list(items.items())
    if not isinstance(items, list | tuple | range) or len(items) == 0:
        _render(node.otherwise, ctx, out)
        return
    shown = list(itertools.islice(reversed(items) if node.reverse else items, MAX_LOOP))
    outer = ctx.scope.get(node.name)
    for item in shown:
        ctx.scope[node.name] = item
        _render(node.body, ctx, out)
    ctx.scope[node.name] = outer


def render(template: str, data: Mapping[str, Any]) -> str:
    """The text a contact with these Parameters would see, for a preview; never raises.

    ``flow.data`` paths read ``data``; a missing one prints ``""`` as Studio does; anything
    else (``{{contact.channel.address}}``, ``{{widgets.ask.inbound.Body}}``) shows as
    ``[contact.channel.address]``.
    """
    out: list[str] = []
    _render(_template(template), _Context(data, {}), out)
    return "".join(out)


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
