"""The node tree a Liquid template parses into: frozen values, shared by the parser, the renderer and the Flow check."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class Special:
    """Liquid's ``empty`` and ``blank``: compare equal to empty (or blank) values, print as nothing."""

    name: str


EMPTY = Special("empty")
"""Liquid's ``empty``."""
BLANK = Special("blank")
"""Liquid's ``blank``."""


@dataclass(frozen=True, slots=True)
class Literal:
    """A string, number, boolean or nil written in the template."""

    value: Any


@dataclass(frozen=True, slots=True)
class Var:
    """A variable path such as ``flow.data.items[0]``, with its source text for placeholders."""

    segments: tuple[str | int | Expr, ...]
    text: str


@dataclass(frozen=True, slots=True)
class Range:
    """``(start..stop)``, both ends included."""

    start: Expr
    stop: Expr


Expr = Literal | Var | Range


@dataclass(frozen=True, slots=True)
class Filter:
    """One ``| name: arg, ...`` filter."""

    name: str
    args: tuple[Expr, ...]


@dataclass(frozen=True, slots=True)
class Filtered:
    """An expression and the filters applied to it, left to right."""

    expr: Expr
    filters: tuple[Filter, ...]


@dataclass(frozen=True, slots=True)
class Compare:
    """``left``, or ``left op right``."""

    left: Expr
    op: str | None
    right: Expr | None


@dataclass(frozen=True, slots=True)
class Logic:
    """``left and right`` or ``left or right``."""

    op: str  # "and" | "or"
    left: Cond
    right: Cond


Cond = Compare | Logic


@dataclass(frozen=True, slots=True)
class Text:
    """Literal text between tags."""

    text: str


@dataclass(frozen=True, slots=True)
class Output:
    """A ``{{ ... }}`` tag."""

    value: Filtered


@dataclass(frozen=True, slots=True)
class Branch:
    """One branch of an if/unless: its condition (negated for unless) and body."""

    cond: Cond | None  # None: the else branch
    negated: bool
    body: tuple[Node, ...]


@dataclass(frozen=True, slots=True)
class If:
    """An ``{% if %}`` or ``{% unless %}`` block with its elsif and else branches."""

    branches: tuple[Branch, ...]


@dataclass(frozen=True, slots=True)
class Case:
    """A ``{% case %}`` block: its ``when`` values and bodies, and the else body."""

    subject: Expr
    whens: tuple[tuple[tuple[Expr, ...], tuple[Node, ...]], ...]
    otherwise: tuple[Node, ...]


@dataclass(frozen=True, slots=True)
class For:
    """A ``{% for name in iterable %}`` loop with its optional else body."""

    name: str
    iterable: Filtered
    reverse: bool
    body: tuple[Node, ...]
    otherwise: tuple[Node, ...]


@dataclass(frozen=True, slots=True)
class Assign:
    """``{% assign name = value %}``."""

    name: str
    value: Filtered


@dataclass(frozen=True, slots=True)
class Capture:
    """``{% capture name %}...{% endcapture %}``."""

    name: str
    body: tuple[Node, ...]


Node = Text | Output | If | Case | For | Assign | Capture
