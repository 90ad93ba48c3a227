"""``[experiment]``: variants of the job (another Flow, more Parameters, or both) and a holdout that gets nothing."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ..errors import ConfigError
from .checks import FLOW_SID_PATTERN, check_parameter_keys, static_parameter_pairs

__all__ = ["HOLDOUT", "ExperimentSpec", "VariantSpec", "check_experiment", "merged_parameters"]

HOLDOUT = "holdout"
"""The name the holdout group goes by (in the ``variant`` column too), so no variant may take it."""

_VARIANT_KEYS = ("name", "flow", "weight", "parameters")


@dataclass(frozen=True, kw_only=True)
class VariantSpec:
    """One variant: its name, its Flow (None: ``[flow] sid``), its share's weight and the Parameters it adds."""

    name: str
    flow: str | None = None
    weight: float = 1.0
    parameters: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, kw_only=True)
class ExperimentSpec:
    """The variants, the holdout's share, and the salt that makes the assignment (part of the fingerprint)."""

    salt: str
    variants: tuple[VariantSpec, ...]
    holdout: float = 0.0
    holdout_counts: bool = False

    def flow_of(self, name: str, default: str) -> str:
        """The Flow SID variant ``name`` runs (``default``: the job's ``[flow] sid``)."""
        for variant in self.variants:
            if variant.name == name:
                return variant.flow or default
        return default

    def flows(self, default: str) -> dict[str, str]:
        """Each variant's Flow SID, by variant name, in the job's order."""
        return {v.name: v.flow or default for v in self.variants}


def _variant(index: int, raw: object, mapping_keys: list[str]) -> VariantSpec:
    where = f"experiment.variants[{index}]"
    if not isinstance(raw, dict):
        raise ConfigError(where, "must be a table with name, weight and optionally flow and parameters")
    unknown = sorted(set(raw) - set(_VARIANT_KEYS))
    if unknown:
        raise ConfigError(f"{where}.{unknown[0]}", f"is not a known key (known: {', '.join(_VARIANT_KEYS)})")
    name = raw.get("name")
    if not isinstance(name, str) or not name.strip() or name == HOLDOUT:
        raise ConfigError(f"{where}.name", f"must be a non-empty name other than {HOLDOUT!r}, not {name!r}")
    flow = raw.get("flow")
    if flow is not None and (not isinstance(flow, str) or not FLOW_SID_PATTERN.match(flow)):
        raise ConfigError(f"{where}.flow", f"must be 'FW' and 32 hex digits, not {flow!r}")
    weight = raw.get("weight", 1)
    if isinstance(weight, bool) or not isinstance(weight, int | float) or not math.isfinite(weight) or weight <= 0:
        raise ConfigError(f"{where}.weight", f"must be a positive number, not {weight!r}")
    parameters = raw.get("parameters", {})
    if not isinstance(parameters, dict):
        raise ConfigError(f"{where}.parameters", "must be a table of static Parameters")
    keys = [k for k, _ in static_parameter_pairs(parameters)]
    # A variant's Parameters sit beside the mapped ones: the same key twice would be ambiguous.
    check_parameter_keys(mapping_keys + keys, where=f"{where}.parameters")
    return VariantSpec(name=name, flow=flow, weight=float(weight), parameters=parameters)


def check_experiment(section: dict[str, Any], *, salt: str, mapping: Mapping[str, Any]) -> ExperimentSpec | None:
    """``[experiment]`` checked (None when the job has none); ``salt`` is the default: the job id as written."""
    if not section:
        return None
    holdout = section.get("holdout", 0.0)
    if not 0.0 <= holdout < 1.0:
        raise ConfigError("experiment.holdout", f"must be a share from 0 up to (not including) 1, not {holdout!r}")
    raw = section.get("variants", [])
    if not raw:
        raise ConfigError("experiment.variants", "give at least one [[experiment.variants]] with a name")
    mapping_keys = [k for k, _ in mapping["parameters"]]
    mapping_keys += [k for k, _ in static_parameter_pairs(mapping["static_parameters"])]
    variants = tuple(_variant(i, v, mapping_keys) for i, v in enumerate(raw))
    names = [v.name for v in variants]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise ConfigError("experiment.variants", f"the name {twice[0]!r} is given twice")
    chosen = section.get("salt", salt)
    if not chosen:
        raise ConfigError("experiment.salt", "must not be empty")
    return ExperimentSpec(
        salt=chosen, variants=variants, holdout=float(holdout), holdout_counts=section.get("holdout_counts", False)
    )


def merged_parameters(base: Mapping[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    """``extra`` added to ``base``; nested tables merge key by key (``meta.a`` and ``meta.b`` both stay)."""
    out = dict(base)
    for key, value in extra.items():
        both = isinstance(out.get(key), Mapping) and isinstance(value, Mapping)
        out[key] = merged_parameters(out[key], value) if both else value
    return out
