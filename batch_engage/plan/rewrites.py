"""How numbers were rewritten between the input and the request: one example of each way, for ``validate``.

A number sent is rarely the number written: spaces go, a national number gains its country
code, a spreadsheet's ``,0`` is dropped. Each of these is right, and each is a place where a
wrong reading would reach another person; so ``validate`` shows, for every distinct way a
value was rewritten, one ``as written → as sent`` example a person can check at a glance.
"""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl
import polars.selectors as cs

from . import numbers

__all__ = ["Rewrite", "rewrite_examples"]

ZERO_FRACTION = "a spreadsheet's decimal zeros dropped"
WITHOUT_PLUS = "country code written without '+'"
NATIONAL = "national number: country code of mapping.default_region"
INTERNATIONAL_PREFIX = "international prefix (00, 011, 0011…) written for '+'"
TRUNK = "trunk prefix (0) after the country code dropped"
OTHER_DIGITS = "digits changed by the country's numbering rules"
PUNCTUATION = "spaces and punctuation dropped"


@dataclass(frozen=True)
class Rewrite:
    """One way a number was rewritten, with the first row that shows it."""

    way: str
    written: str
    sent: str


def _with_way(changed: pl.LazyFrame) -> pl.LazyFrame:
    """``changed`` (``written``, ``sent``) with ``way``, each rewrite named by what happened to it, the most
    consequential part first.

    In steps, so that each intermediate column is computed once: as one expression, its parts were computed again
    in every branch that names them, and took twenty times as long.
    """
    written, sent = pl.col("written"), pl.col("sent")
    body = written.str.replace(r"(?i)^whatsapp:", "")
    zero = body.str.contains(numbers.WHOLE_FLOAT_TEXT)
    steps = changed.with_columns(_zero=zero, _body=body, _number=sent.str.replace(r"^whatsapp:", "")).with_columns(
        _body=pl.when("_zero").then(pl.col("_body").str.replace(numbers.ZERO_FRACTION, "")).otherwise("_body")
    )
    body, number = pl.col("_body"), pl.col("_number")
    steps = steps.with_columns(
        _digits=body.str.replace_all(r"[^0-9]", ""),
        _plus=body.str.starts_with("+"),
        _trunk=body.str.contains(r"\(0\)"),
        _sent_digits=number.str.strip_prefix("+"),
    )
    digits, plus = pl.col("_digits"), pl.col("_plus")
    steps = steps.with_columns(
        _same_digits=pl.lit("+") + digits == number,
        # 00, 011, 0011, 010…: whatever a country dials out with, then the number as sent.
        _dialled=digits.str.starts_with("0")
        & (digits != pl.col("_sent_digits"))
        & digits.str.ends_with(pl.col("_sent_digits")),
    )
    same = pl.col("_same_digits")
    kind = (
        pl.when(~plus & same)
        .then(pl.lit(WITHOUT_PLUS))
        .when(~plus & pl.col("_dialled"))
        .then(pl.lit(INTERNATIONAL_PREFIX))
        .when(pl.col("_trunk") & ~same)
        .then(pl.lit(TRUNK))
        .when(~plus)
        .then(pl.lit(NATIONAL))
        .when(same)
        .then(pl.when(body != number).then(pl.lit(PUNCTUATION)))
        # Digits that changed are worth a look above all: never left without a label.
        .otherwise(pl.lit(OTHER_DIGITS))
    )
    zero_part = pl.when("_zero").then(pl.lit(ZERO_FRACTION))
    way = pl.concat_str([zero_part, kind], separator=", ", ignore_nulls=True)
    return steps.with_columns(way=way).drop(cs.starts_with("_"))


def rewrite_examples(written: pl.Series, plan: pl.DataFrame) -> tuple[Rewrite, ...]:
    """The first example of each way a sendable row's To differs from its cell (``written`` is the To column)."""
    # A float column's cell reads as the file shows it (``4155550123.0``), not as its digits.
    frame = pl.DataFrame({"written": written.cast(pl.String), "sent": plan["to"], "status": plan["status"]})
    # A sendable row's To has no space at either end, so a cell equal to it as written is equal once stripped:
    # only the few cells that differ are stripped and compared again.
    differ = frame.lazy().filter((pl.col("status") != "invalid") & (pl.col("written") != pl.col("sent")))
    changed = differ.with_columns(pl.col("written").str.strip_chars()).filter(pl.col("written") != pl.col("sent"))
    ways = _with_way(changed).filter(pl.col("way") != "")
    first = ways.group_by("way", maintain_order=True).first().collect()
    return tuple(Rewrite(way, w, s) for way, w, s in first.select("way", "written", "sent").iter_rows())
