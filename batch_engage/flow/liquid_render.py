"""Render a Liquid node tree as a preview of what a contact would read; never raises.

A subset meant for a preview, never for sending: unknown tags render nothing, unknown
filters pass their value through, a loop shows at most ``MAX_LOOP`` items, and a render
visits a bounded number of nodes. ``nil`` counts as ``empty`` (see
:mod:`.check` for why).
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import json
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from . import liquid_nodes as ln
from .liquid import parse

__all__ = ["MAX_LOOP", "data_keys", "render"]

MAX_LOOP = 50
"""A preview shows at most this many items of a ``{% for %}`` loop."""

_MAX_STEPS = 20_000  # nodes a render may visit: nested loops over ranges cannot make a preview hang


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
    if value is None or isinstance(value, ln.Special):
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


def _lookup(var: ln.Var, ctx: _Context) -> Any:
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


def _evaluate(expr: ln.Expr, ctx: _Context) -> Any:
    if isinstance(expr, ln.Literal):
        return expr.value
    if isinstance(expr, ln.Var):
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
        if a is ln.EMPTY:
            return b is ln.EMPTY or _is_empty(b)
        if a is ln.BLANK:
            return b is ln.BLANK or _is_blank(b)
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


def _test(cond: ln.Cond, ctx: _Context) -> bool:
    if isinstance(cond, ln.Logic):
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


def _apply(f: ln.Filter, value: Any, ctx: _Context) -> Any:  # noqa: PLR0911 - one return per filter, as a table
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


def _value(value: ln.Filtered, ctx: _Context) -> Any:
    result = _evaluate(value.expr, ctx)
    for f in value.filters:
        result = _apply(f, result, ctx)
    return result


def _render(nodes: Iterable[ln.Node], ctx: _Context, out: list[str]) -> None:
    for node in nodes:
        ctx.steps -= 1
        if ctx.steps < 0:
            return
        if isinstance(node, ln.Text):
            out.append(node.text)
        elif isinstance(node, ln.Output):
            out.append(_text(_value(node.value, ctx)))
        elif isinstance(node, ln.Assign):
            ctx.scope[node.name] = _value(node.value, ctx)
        elif isinstance(node, ln.Capture):
            captured: list[str] = []
            _render(node.body, ctx, captured)
            ctx.scope[node.name] = "".join(captured)
        elif isinstance(node, ln.If):
            for branch in node.branches:
                if branch.cond is None or _test(branch.cond, ctx) != branch.negated:
                    _render(branch.body, ctx, out)
                    break
        elif isinstance(node, ln.Case):
            subject = _evaluate(node.subject, ctx)
            for values, body in node.whens:
                if any(_equal(subject, _evaluate(v, ctx)) for v in values):
                    _render(body, ctx, out)
                    break
            else:
                _render(node.otherwise, ctx, out)
        else:
            _render_for(node, ctx, out)


def _render_for(node: ln.For, ctx: _Context, out: list[str]) -> None:
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
    _render(parse(template), _Context(data, {}), out)
    return "".join(out)


def _variables(node: Any) -> Iterator[ln.Var]:
    """Every variable anywhere in a node tree, those inside another's ``[index]`` too."""
    if isinstance(node, ln.Var):
        yield node
    if isinstance(node, tuple | list):
        for item in node:
            yield from _variables(item)
    elif dataclasses.is_dataclass(node) and not isinstance(node, type):
        for f in dataclasses.fields(node):
            yield from _variables(getattr(node, f.name))


@functools.cache
def data_keys(template: str) -> frozenset[str] | None:
    """The top-level ``flow.data`` keys a render of ``template`` reads; None when it may read any of them.

    Two contacts whose ``data`` agree on these keys see the same text: the arrival check renders a widget
    once for them. ``flow.data`` whole, an index computed at render time and ``flow.data.size`` (the number
    of keys) read more than one key.
    """
    keys: set[str] = set()
    for var in _variables(parse(template)):
        segments = var.segments
        if segments[:2] != ("flow", "data"):
            continue
        if len(segments) < 3 or not isinstance(segments[2], str) or segments[2] == "size":
            return None
        keys.add(segments[2])
    return frozenset(keys)
