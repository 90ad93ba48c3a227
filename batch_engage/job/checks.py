"""Checking a job's sections one by one (input, flow, mapping, send, history, collect); each error names its key."""

from __future__ import annotations

import codecs
import math
import re
from collections.abc import Mapping
from typing import Any

import phonenumbers

from ..errors import ConfigError
from .send_window import valid_zone

__all__ = [
    "FLOW_SID_PATTERN",
    "INPUT_FORMATS",
    "ON_ACTIVE",
    "OUTCOME_BASE_COLUMNS",
    "check_flow",
    "check_history",
    "check_input",
    "check_mapping",
    "check_marker_key",
    "check_number",
    "check_on_active",
    "check_parameter_keys",
    "check_send",
    "check_suppress",
    "check_zone",
    "collect_fields",
    "parse_duration",
    "static_parameter_pairs",
]

FLOW_SID_PATTERN = re.compile(r"^FW[0-9a-fA-F]{32}$")
INPUT_FORMATS = ("csv", "parquet", "ndjson")


def check_input(inp: dict[str, Any]) -> dict[str, Any]:
    """``[input]`` checked: a known format and encoding, and a file or a query (not both)."""
    if inp.get("format") is not None and inp["format"] not in INPUT_FORMATS:
        raise ConfigError("input.format", f"must be one of {', '.join(INPUT_FORMATS)}")
    if "encoding" in inp:
        try:
            info = codecs.lookup(inp["encoding"])
        except LookupError:
            raise ConfigError("input.encoding", f"unknown encoding {inp['encoding']!r}") from None
        # rot13, base64, zlib and the like are codecs, not text encodings; punycode and idna are for host names;
        # "undefined" decodes nothing.
        if not getattr(info, "_is_text_encoding", True) or info.name in ("punycode", "idna", "undefined"):
            raise ConfigError("input.encoding", f'{inp["encoding"]!r} is not a text encoding (e.g. "cp1252")')
    if ("uri" in inp) != ("query" in inp):
        raise ConfigError("input.query" if "uri" in inp else "input.uri", "input.uri and input.query go together")
    if "uri" in inp and "path" in inp:
        raise ConfigError("input.path", "give input.path or input.uri + input.query, not both")
    if inp.get("separator") is not None and inp["separator"] not in (",", ";", "\t", "|"):
        raise ConfigError("input.separator", f"must be one of ',' ';' '\\t' '|', not {inp['separator']!r}")
    return inp


def check_flow(flow: dict[str, Any]) -> dict[str, Any]:
    """``[flow]`` checked: a Flow SID, a known API, where replies go (its addresses: ``addresses.py``)."""
    if "sid" not in flow:
        raise ConfigError("flow.sid", "is required")
    if not FLOW_SID_PATTERN.match(flow["sid"]):
        raise ConfigError("flow.sid", f"must be 'FW' and 32 hex digits, not {flow['sid']!r}")
    if flow.get("api", "engagements") not in ("engagements", "executions"):
        raise ConfigError("flow.api", "must be 'engagements' (v1) or 'executions' (v2)")
    if flow.get("replies", "here") not in ("here", "elsewhere"):
        raise ConfigError("flow.replies", "must be 'here' (replies reach this Flow) or 'elsewhere' (on purpose)")
    return flow


def check_mapping(section: dict[str, Any]) -> dict[str, Any]:
    """``[mapping]`` checked: To, exactly one From, a known region; parameters flattened to ``(dotted key, column)``."""
    mapping = dict(section)
    if "to" not in mapping:
        raise ConfigError("mapping.to", "is required: the column holding each contact's address")
    if ("from_" in mapping) == ("from_column" in mapping):
        raise ConfigError("mapping.from", "give exactly one of 'from' (a literal) or 'from_column'")
    region = mapping.get("default_region")
    if region is not None and region.strip().upper() not in phonenumbers.SUPPORTED_REGIONS:
        raise ConfigError("mapping.default_region", f"unknown region {region!r} (use a two-letter code such as 'US')")
    params = _flatten_parameters(mapping.get("parameters", {}))
    statics = mapping.get("static_parameters", {})
    check_parameter_keys([k for k, _ in params] + [k for k, _ in static_parameter_pairs(statics)])
    mapping["parameters"] = tuple(params)
    mapping["static_parameters"] = statics
    return mapping


def check_send(send: dict[str, Any]) -> dict[str, Any]:
    """``[send]`` checked (the window itself is parsed by ``SendSpec``); rates and durations as floats."""
    for key, value in send.items():
        if key in _NUMBER_LIMITS:
            check_number(f"send.{key}", value, *_NUMBER_LIMITS[key])
    if "rate" in send and send["rate"] < MIN_RATE:
        # Each wait ends on a stop, but a campaign paced slower than this is a typo (a unit mistaken).
        raise ConfigError(
            "send.rate", f"must be at least one request a minute ({MIN_RATE:.4f}/s), not {send['rate']!r}"
        )
    if "dedupe" in send and send["dedupe"] not in ("to", "to_from", "none"):
        raise ConfigError("send.dedupe", "must be 'to', 'to_from' or 'none'")
    if "days" in send:
        if not all(isinstance(d, str) for d in send["days"]):
            raise ConfigError("send.days", "must be a list of day names such as 'mon'")
        send["days"] = tuple(send["days"])
    if ("days" in send or "default_timezone" in send) and "window" not in send:
        raise ConfigError("send.window", "is required with send.days or send.default_timezone")
    if "on_active" in send and send["on_active"] not in ON_ACTIVE:
        raise ConfigError("send.on_active", "must be 'skip', 'wait' or 'end'")
    for key in ("active_retry", "end_active_after", "unreachable_timeout"):
        if key in send:
            send[key] = parse_duration(f"send.{key}", send[key])
    if send.get("active_retry") == 0:
        raise ConfigError("send.active_retry", "must be more than 0 seconds")
    if send.get("pace", "rate") not in ("rate", "sender"):
        raise ConfigError("send.pace", "must be 'rate' ([send] rate alone) or 'sender' (no faster than the sender)")
    return _floats(send)


def check_suppress(suppress: dict[str, Any]) -> dict[str, Any]:
    """``[suppress]`` checked: ``opted_out`` is 'sender' (Twilio's own scope) or 'everywhere'."""
    if suppress.get("opted_out", "sender") not in ("sender", "everywhere"):
        raise ConfigError("suppress.opted_out", "must be 'sender' (the sender they opted out of) or 'everywhere'")
    return suppress


ON_ACTIVE = ("skip", "wait", "end")
"""What a run does with a contact still inside an earlier active run (``[send] on_active``)."""

_DURATION = re.compile(
    r"^\s*(?:(\d+(?:\.\d+)?)d)?\s*(?:(\d+(?:\.\d+)?)h)?\s*(?:(\d+(?:\.\d+)?)m)?\s*(?:(\d+(?:\.\d+)?)s?)?\s*$"
)


def parse_duration(key: str, value: object) -> float:
    """``"5m"``, ``"1h30m"``, ``"24h"``, ``"2d"``, ``"90s"`` or a number of seconds, as seconds."""
    if isinstance(value, bool):
        raise ConfigError(key, f"must be a duration such as '5m' or '24h', not {value!r}")
    if isinstance(value, int | float):
        seconds = float(value)
    else:
        match = _DURATION.match(str(value))
        if not str(value).strip() or match is None or not any(match.groups()):
            raise ConfigError(key, f"must be a duration such as '5m' or '24h', not {value!r}")
        days, hours, minutes, secs = (float(g) if g else 0.0 for g in match.groups())
        seconds = days * 86400 + hours * 3600 + minutes * 60 + secs
    if not math.isfinite(seconds) or seconds < 0:
        raise ConfigError(key, f"must be a duration of 0 seconds or more, not {value!r}")
    return seconds


def check_on_active(on_active: str, api: str) -> None:
    """Refuse ``on_active = "end"`` for v1 Engagements: Twilio documents no way to end one but deleting it."""
    if on_active == "end" and api == "engagements":
        raise ConfigError(
            "send.on_active",
            "'end' needs flow.api = 'executions': Twilio documents no update of a v1 Engagement "
            "(only POST /v2/.../Executions/{sid} Status=ended), so batch-engage never ends one",
        )


def check_zone(name: str | None) -> None:
    """Refuse a ``send.default_timezone`` this machine does not know."""
    if name is not None and not valid_zone(name):
        raise ConfigError("send.default_timezone", f"unknown time zone {name!r}")


def check_marker_key(marker_key: str | None, mapping: Mapping[str, Any]) -> None:
    """Refuse a ``send.marker_key`` that is also the top-level key of a mapped parameter."""
    if not marker_key:
        return
    keys = [k for k, _ in mapping["parameters"]] + [k for k, _ in static_parameter_pairs(mapping["static_parameters"])]
    if marker_key in [k.split(".")[0] for k in keys]:
        raise ConfigError("send.marker_key", f"{marker_key!r} is also a mapped parameter; choose another")


def check_history(history: dict[str, Any]) -> dict[str, Any]:
    """``[history]`` checked: a cap needs a history to count in (the caps themselves are parsed by ``HistorySpec``)."""
    if ("cap" in history or "flow_cap" in history) and "path" not in history:
        raise ConfigError("history.path", "is required when a cap is set")
    return history


# Columns every outcomes table has; a field may not take one of their names.
OUTCOME_BASE_COLUMNS = ("row", "to", "sid", "run_status", "ended_at", "error_message")
_COLUMN_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_CONTEXT_PATH = re.compile(r"^[^.\s]+(\.[^.\s]+)*$")


def collect_fields(section: dict[str, Any]) -> dict[str, Any]:
    """``[collect]`` checked: field names free to be columns, Context paths, widget names, pace."""
    fields = _flatten_parameters_any(section.get("fields", {}))
    # The variant's column, and the keys a database outcomes table adds (tables.KEY_COLUMNS), are taken too.
    taken = {*OUTCOME_BASE_COLUMNS, "variant", "job_id", "period"}
    for name, path in fields:
        key = f"collect.fields.{name}"
        if not _COLUMN_NAME.match(name):
            raise ConfigError(key, "a field name becomes a column: use letters, digits and '_' (no dots)")
        if name in taken:
            raise ConfigError(key, f"{name!r} is already a column of the outcomes table; choose another name")
        if not isinstance(path, str) or not _CONTEXT_PATH.match(path):
            raise ConfigError(
                key, f"must be a dotted path into the run's Context such as 'widgets.ask.inbound.Body', not {path!r}"
            )
        taken.add(name)
    widgets = section.get("message_status", [])
    if not all(isinstance(w, str) and _COLUMN_NAME.match(w) for w in widgets):
        raise ConfigError(
            "collect.message_status", f"must be a list of widget names such as ['send_intro'], not {widgets!r}"
        )
    for widget in widgets:
        for column in (f"{widget}_delivery", f"{widget}_delivery_error_code", f"{widget}_queue_seconds"):
            if column in taken:
                raise ConfigError("collect.message_status", f"{widget!r} gives the column {column!r}, which is taken")
            taken.add(column)
    for key in ("rate", "concurrency"):
        if key in section:
            check_number(f"collect.{key}", section[key], *_NUMBER_LIMITS[key])
    return {
        "fields": tuple(fields),
        "message_status": tuple(widgets),
        "rate": float(section["rate"]) if "rate" in section else None,
        "concurrency": section.get("concurrency"),
    }


def _floats(send: dict[str, Any]) -> dict[str, Any]:
    # TOML's `rate = 20` is an int; the spec promises floats for rates and durations.
    return {k: float(v) if isinstance(v, int) and k in _FLOAT_KEYS else v for k, v in send.items()}


_FLOAT_KEYS = {
    "rate",
    "sender_throughput",
    "max_backoff",
    "connect_timeout",
    "read_timeout",
    "reconcile_delay",
    "settle_after",
    "breaker_ratio",
}

MAX_RATE = 10_000.0
MIN_RATE = 1 / 60
MAX_CONCURRENCY = 1_000
MAX_TIMEOUT = 3_600.0
# key -> (lowest, highest, whether the lowest itself is refused); beyond these a value is a typo, not a choice.
_NUMBER_LIMITS: dict[str, tuple[float, float, bool]] = {
    "rate": (0.0, MAX_RATE, True),
    "sender_throughput": (0.0, MAX_RATE, True),
    # Twilio's ValidityPeriod: 1 to 36,000 seconds (Message create, Messaging Service).
    "validity_period": (1, 36_000, False),
    "concurrency": (1, MAX_CONCURRENCY, False),
    "max_attempts": (1, 1_000, False),
    "max_backoff": (0.0, 7 * 86_400.0, False),
    "connect_timeout": (0.0, MAX_TIMEOUT, True),
    "read_timeout": (0.0, MAX_TIMEOUT, True),
    "max_parameters_bytes": (1, 16 * 1024 * 1024, False),
    "reconcile_delay": (0.0, MAX_TIMEOUT, False),
    "settle_after": (0.0, MAX_TIMEOUT, False),
    "breaker_window": (1, 1_000_000, False),
    "breaker_ratio": (0.0, 1.0, True),
}


def check_number(key: str, value: float, low: float, high: float, low_open: bool = False) -> None:
    """Refuse ``nan``, infinities (``inf``, ``1e400``) and values outside ``[low, high]`` (``(low, high]``)."""
    if not math.isfinite(value):
        raise ConfigError(key, f"must be a finite number, not {value!r}")
    if value < low or (low_open and value == low) or value > high:
        interval = f"{'(' if low_open else '['}{low:g}, {high:g}]"
        raise ConfigError(key, f"must be in {interval}, not {value!r}")


def _flatten_parameters_any(table: Mapping[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    pairs: list[tuple[str, Any]] = []
    for key, value in table.items():
        if isinstance(value, dict):
            pairs.extend(_flatten_parameters_any(value, f"{prefix}{key}."))
        else:
            pairs.append((f"{prefix}{key}", value))
    return pairs


def static_parameter_pairs(statics: Mapping[str, Any]) -> list[tuple[str, Any]]:
    """Static parameters as ``(dotted key, value)`` pairs."""
    return _flatten_parameters_any(statics)


def _flatten_parameters(table: Mapping[str, Any]) -> list[tuple[str, str]]:
    """``{"order": {"id": "col"}}`` (TOML's own nesting) and ``{"order.id": "col"}`` alike; values name columns."""
    pairs = _flatten_parameters_any(table)
    for dotted, value in pairs:
        if not isinstance(value, str):
            raise ConfigError(f"mapping.parameters.{dotted}", f"must name a column, not {value!r}")
    return pairs


def check_parameter_keys(keys: list[str], where: str = "mapping.parameters") -> None:
    """Refuse a key mapped twice, or a key that is both a value and a parent of others."""
    seen: set[str] = set()
    for key in keys:
        if not key or any(part == "" for part in key.split(".")):
            raise ConfigError(f"{where}.{key}", "is not a valid key")
        if key in seen:
            raise ConfigError(f"{where}.{key}", "is mapped twice")
        seen.add(key)
    for key in keys:
        parts = key.split(".")
        for i in range(1, len(parts)):
            parent = ".".join(parts[:i])
            if parent in seen:
                raise ConfigError(f"{where}.{key}", f"nests under {parent!r}, which is mapped to a value")
