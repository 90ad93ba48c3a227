"""Liquid as Studio widgets use it: tokens, expressions and blocks, parsed into a frozen node tree.

The parser never raises: unknown tags are skipped, a malformed expression reads as nil,
and nesting deeper than a few dozen levels is treated as an unknown tag, so any text a Flow
holds parses. The tree is made of :mod:`.liquid_nodes`;
:mod:`.liquid_render` renders it for a preview;
:mod:`.check` reads it for the ``flow.data`` paths a widget uses.

Shopify's Liquid reference is the model (truthiness, ``empty``/``blank``, ``and``/``or``
grouped from the right, without precedence).
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from typing import Any

from .liquid_nodes import (
    BLANK,
    EMPTY,
    Assign,
    Branch,
    Capture,
    Case,
    Compare,
    Cond,
    Expr,
    Filter,
    Filtered,
    For,
    If,
    Literal,
    Logic,
    Node,
    Output,
    Range,
    Text,
    Var,
)

_MAX_DEPTH = 40  # nested blocks deeper than this are treated as unknown tags, so parsing cannot overflow the stack


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
    "empty": EMPTY,
    "blank": BLANK,
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


def _primary(lex: _Lexer) -> Expr:
    """A literal, a ``(a..b)`` range or a variable path; anything else reads as nil."""
    kind, text = lex.peek()
    if kind == "str":
        lex.take()
        return Literal(text[1:-1])
    if kind == "num":
        lex.take()
        return Literal(float(text) if "." in text else int(text))
    if kind == "op" and text == "(":
        lex.take()
        start = _range_end(lex)
        lex.accept("..")
        stop = _range_end(lex)
        lex.accept(")")
        return Range(start, stop)
    if kind == "word" and text in _WORD_LITERALS:
        lex.take()
        return Literal(_WORD_LITERALS[text])
    if kind == "word":
        return _variable(lex)
    if kind != "end":
        lex.take()
    return Literal(None)


def _range_end(lex: _Lexer) -> Expr:
    """A range bound: a number or a variable, never a nested range (no unbounded recursion)."""
    kind, _ = lex.peek()
    return _primary(lex) if kind in ("num", "word") else Literal(None)


def _variable(lex: _Lexer) -> Var:
    """``a.b['c'][0][d]``: a path of names, indexes and variable indexes."""
    start = lex.position()
    segments: list[str | int | Expr] = [lex.take()[1]]
    while True:
        if lex.peek() == ("op", ".") and lex.peek(1)[0] == "word":
            lex.take()
            segments.append(lex.take()[1])
        elif lex.accept("["):
            kind, _ = lex.peek()
            lex.depth += 1
            # a[b[c[...]]] past a few levels is noise, not a Flow: stop before the stack does
            inner = _primary(lex) if kind in ("str", "num", "word") and lex.depth < _MAX_DEPTH else Literal(None)
            lex.depth -= 1
            lex.accept("]")
            if isinstance(inner, Literal) and isinstance(inner.value, str | int) and not isinstance(inner.value, bool):
                segments.append(inner.value)
            else:
                segments.append(inner)
        else:
            return Var(tuple(segments), lex.markup[start : lex.end_of_previous()].strip())


def _filtered(lex: _Lexer) -> Filtered:
    """An expression followed by ``| name: arg, key: arg`` filters."""
    expr = _primary(lex)
    filters: list[Filter] = []
    while lex.accept("|"):
        kind, name = lex.peek()
        if kind != "word":
            continue
        lex.take()
        args: list[Expr] = []
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
        filters.append(Filter(name, tuple(args)))
    return Filtered(expr, tuple(filters))


def _comparison(lex: _Lexer) -> Compare:
    """``a``, or ``a op b``."""
    left = _primary(lex)
    if lex.peek()[1] in _COMPARISONS and lex.peek()[0] != "str":
        op = lex.take()[1]
        return Compare(left, op, _primary(lex))
    return Compare(left, None, None)


def _condition(lex: _Lexer) -> Cond:
    """``a op b and c or d``, grouped from the right as Liquid evaluates it."""
    parts: list[Cond] = [_comparison(lex)]
    ops: list[str] = []
    # more and/or than _MAX_DEPTH is noise, not a Flow: the rest is ignored so evaluation stays shallow
    while lex.peek()[0] == "word" and lex.peek()[1] in ("and", "or") and len(ops) < _MAX_DEPTH:
        ops.append(lex.take()[1])
        parts.append(_comparison(lex))
    cond = parts.pop()
    while ops:
        cond = Logic(ops.pop(), parts.pop(), cond)
    return cond


_ENDS = {"if": "endif", "unless": "endunless", "case": "endcase", "for": "endfor", "capture": "endcapture"}


def _parse(tokens: list[_Token], i: int, stops: frozenset[str], depth: int) -> tuple[list[Node], int, _Token | None]:
    """Nodes up to a tag named in ``stops``; returns them, the next index and that tag (None at the end)."""
    nodes: list[Node] = []
    while i < len(tokens):
        token = tokens[i]
        i += 1
        if token.kind == "text":
            nodes.append(Text(token.text))
        elif token.kind == "output":
            nodes.append(Output(_filtered(_Lexer(token.text))))
        elif token.name in stops:
            return nodes, i, token
        elif token.name in _ENDS and depth < _MAX_DEPTH:
            node, i = _block(tokens, i, token, depth + 1)
            nodes.append(node)
        elif token.name == "assign":
            name, _, value = token.text.partition("=")
            nodes.append(Assign(name.strip(), _filtered(_Lexer(value))))
    return nodes, i, None


def _block(tokens: list[_Token], i: int, opener: _Token, depth: int) -> tuple[Node, int]:
    """One block tag and its body, from just after its opening tag."""
    end = _ENDS[opener.name]
    if opener.name in ("if", "unless"):
        branches: list[Branch] = []
        cond: Cond | None = _condition(_Lexer(opener.text))
        negated = opener.name == "unless"
        while True:
            body, i, stop = _parse(tokens, i, frozenset({"elsif", "else", end}), depth)
            branches.append(Branch(cond, negated, tuple(body)))
            if stop is None or stop.name == end or cond is None:
                return If(tuple(branches)), i
            cond = _condition(_Lexer(stop.text)) if stop.name == "elsif" else None
            negated = False
    if opener.name == "case":
        subject = _primary(_Lexer(opener.text))
        whens: list[tuple[tuple[Expr, ...], tuple[Node, ...]]] = []
        _, i, stop = _parse(tokens, i, frozenset({"when", "else", end}), depth)
        while stop is not None and stop.name == "when":
            lex = _Lexer(stop.text)
            values = [_primary(lex)]
            while lex.accept(",") or lex.accept("or"):
                values.append(_primary(lex))
            body, i, stop = _parse(tokens, i, frozenset({"when", "else", end}), depth)
            whens.append((tuple(values), tuple(body)))
        otherwise: list[Node] = []
        if stop is not None and stop.name == "else":
            otherwise, i, _ = _parse(tokens, i, frozenset({end}), depth)
        return Case(subject, tuple(whens), tuple(otherwise)), i
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
        return For(name, iterable, reverse, tuple(body), tuple(otherwise)), i
    body, i, _ = _parse(tokens, i, frozenset({end}), depth)
    return Capture(opener.text.split(" ", 1)[0].strip(), tuple(body)), i


@functools.lru_cache(maxsize=1024)
def parse(template: str) -> tuple[Node, ...]:
    """A template's node tree (kept: the arrival check renders each widget's body once per contact)."""
    return tuple(_parse(_tokens(template), 0, frozenset(), 0)[0])
