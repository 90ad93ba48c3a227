"""How numbers were rewritten between the input and the request: one example of each way, for ``validate``.

A number sent is rarely the number written: spaces go, a national number gains its country
code, a spreadsheet's ``,0`` is dropped. Each of these is right, and each is a place where a
wrong reading would reach another person; so ``validate`` shows, for every distinct way a
value was rewritten, one ``as written → as sent`` example a person can check at a glance.
"""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

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


def _ways(written: pl.Expr, sent: pl.Expr) -> pl.Expr:
    """Each rewrite named by what happened to it, the most consequential part first."""
    body = written.str.replace(r"(?i)^whatsapp:", "")
    zero = body.str.contains(numbers.WHOLE_FLOAT_TEXT)
    body = pl.when(zero).then(body.str.replace(numbers.ZERO_FRACTION, "")).otherwise(body)
    digits = body.str.replace_all(r"[^0-9]", "")
    number = sent.str.replace(r"^whatsapp:", "")
    plus = body.str.starts_with("+")
    sent_digits = number.str.strip_prefix("+")
    # 00, 011, 0011, 010…: whatever a country dials out with, then the number as sent.
    dialled = digits.str.starts_with("0") & (digits != sent_digits) & digits.str.ends_with(sent_digits)
    trunk = body.str.contains(r"\(0\)")
    kind = (
        pl.when(~plus & (pl.lit("+") + digits == number))
        .then(pl.lit(WITHOUT_PLUS))
        .when(~plus & dialled)
        .then(pl.lit(INTERNATIONAL_PREFIX))
        .when(trunk & (pl.lit("+") + digits != number))
        .then(pl.lit(TRUNK))
        .when(~plus)
        .then(pl.lit(NATIONAL))
        .when(pl.lit("+") + digits == number)
        .then(pl.when(body != number).then(pl.lit(PUNCTUATION)))
        # Digits that changed are worth a look above all: never left without a label.
        .otherwise(pl.lit(OTHER_DIGITS))
    )
    zero_part = pl.when(zero).then(pl.lit(ZERO_FRACTION))
    return pl.concat_str([zero_part, kind], separator=", ", ignore_nulls=True)


def rewrite_examples(written: pl.Series, plan: pl.DataFrame) -> tuple[Rewrite, ...]:
    """The first example of each way a sendable row's To differs from its cell (``written`` is the To column)."""
    # A float column's cell reads as the file shows it (``4155550123.0``), not as its digits.
    frame = pl.DataFrame({"written": written.cast(pl.String), "sent": plan["to"], "status": plan["status"]})
    # A sendable row's To has no space at either end, so a cell equal to it as written is equal once stripped:
    # only the few cells that differ are stripped and compared again.
    differ = frame.lazy().filter((pl.col("status") != "invalid") & (pl.col("written") != pl.col("sent")))
    changed = differ.with_columns(pl.col("written").str.strip_chars()).filter(pl.col("written") != pl.col("sent"))
    ways = changed.with_columns(way=_ways(pl.col("written"), pl.col("sent"))).filter(pl.col("way") != "")
    first = ways.group_by("way", maintain_order=True).first().collect()
    return tuple(Rewrite(way, w, s) for way, w, s in first.select("way", "written", "sent").iter_rows())
