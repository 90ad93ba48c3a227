"""Who gets which variant: a pure function of (salt, contact key), the same on every machine and in every run.

The contact's hash places it on [0, 1): below the holdout share it is held out; the rest of
the line is cut in proportion to the weights, in the job's order of variants. Nothing here
depends on the row's place in the list, so a reordered, re-exported or grown list keeps
everyone where they were.
"""

from __future__ import annotations

import hashlib
from bisect import bisect_right
from collections.abc import Iterable, Mapping
from itertools import accumulate

import polars as pl

from ..job import HOLDOUT, ExperimentSpec

__all__ = ["VARIANT_COLUMN", "assign", "assign_frame", "position", "split"]

VARIANT_COLUMN = "variant"
_SCALE = float(1 << 64)


def position(salt: str, contact: str) -> float:
    """Where the contact falls on [0, 1) for this salt (blake2b: stable across machines and Python versions)."""
    # The salt's length first: ("ab", "c") and ("a", "bc") must not hash alike.
    text = f"{len(salt)}:{salt}{contact}".encode()
    digest = hashlib.blake2b(text, digest_size=8, person=b"be-variant")
    return int.from_bytes(digest.digest(), "big") / _SCALE


def _bounds(experiment: ExperimentSpec) -> list[float]:
    total = sum(v.weight for v in experiment.variants)
    return [w / total for w in accumulate(v.weight for v in experiment.variants)]


def assign(experiment: ExperimentSpec, contact: str) -> str:
    """The variant name (or ``"holdout"``) of one contact key."""
    return _assign(experiment, _bounds(experiment), contact)


def _assign(experiment: ExperimentSpec, bounds: list[float], contact: str) -> str:
    u = position(experiment.salt, contact)
    if u < experiment.holdout:
        return HOLDOUT
    rest = (u - experiment.holdout) / (1.0 - experiment.holdout)
    return experiment.variants[min(bisect_right(bounds, rest), len(bounds) - 1)].name


def assign_frame(
    frame: pl.DataFrame,
    experiment: ExperimentSpec,
    *,
    contact: str = "contact",
    kept: Mapping[str, str] | None = None,
) -> pl.DataFrame:
    """``frame`` with a ``variant`` column from its ``contact`` column (null where the key is null).

    ``kept`` maps contacts to the variant they were already sent: they keep it, whatever the
    weights say now.
    """
    bounds = _bounds(experiment)
    keys = frame.get_column(contact).unique().drop_nulls().to_list()
    chosen = {key: _assign(experiment, bounds, key) for key in keys}
    if kept:
        chosen.update({key: name for key, name in kept.items() if key in chosen and name})
    lookup = pl.DataFrame(
        {contact: list(chosen), VARIANT_COLUMN: list(chosen.values())},
        schema={contact: pl.String, VARIANT_COLUMN: pl.String},
    )
    base = frame.drop(VARIANT_COLUMN) if VARIANT_COLUMN in frame.columns else frame
    return base.join(lookup, on=contact, how="left", maintain_order="left")


def split(variants: Iterable[str | None]) -> dict[str, int]:
    """Contacts per variant (the holdout last), for ``status`` and the pipeline's look before a send."""
    counts: dict[str, int] = {}
    for name in variants:
        if name is not None:
            counts[name] = counts.get(name, 0) + 1
    holdout = counts.pop(HOLDOUT, None)
    ordered = dict(sorted(counts.items()))
    return ordered | ({HOLDOUT: holdout} if holdout is not None else {})
