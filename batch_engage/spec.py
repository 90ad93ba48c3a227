"""The job: a TOML file plus flag overrides, turned into one frozen ``Spec``.

Every default is a named module constant; every error names the key it is about.
"""

from __future__ import annotations

import codecs
import dataclasses
import ipaddress
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

import phonenumbers

from .errors import ConfigError, CredentialsError
from .windows import parse_window, valid_zone

__all__ = [
    "DEFAULT_BASE_URL",
    "FLOW_SID_PATTERN",
    "Cap",
    "FlowSpec",
    "HistorySpec",
    "InputSpec",
    "MappingSpec",
    "OutputSpec",
    "SendSpec",
    "Spec",
    "SuppressSpec",
    "load_spec",
    "parse_cap",
    "studio_base_url",
]

FLOW_SID_PATTERN = re.compile(r"^FW[0-9a-fA-F]{32}$")
DEFAULT_BASE_URL = "https://studio.twilio.com"
DEFAULT_RATE = 20.0
DEFAULT_CONCURRENCY = 8
DEFAULT_MAX_ATTEMPTS = 6
DEFAULT_MAX_BACKOFF = 300.0
DEFAULT_CONNECT_TIMEOUT = 5.0
DEFAULT_READ_TIMEOUT = 15.0
DEFAULT_MAX_PARAMETERS_BYTES = 16 * 1024
DEFAULT_RECONCILE_DELAY = 3.0
DEFAULT_BREAKER_WINDOW = 100
DEFAULT_BREAKER_RATIO = 0.5

Api = Literal["engagements", "executions"]
Dedupe = Literal["to", "to_from", "none"]
INPUT_FORMATS = ("csv", "parquet", "ndjson")


@dataclass(frozen=True, kw_only=True)
class InputSpec:
    """Where the contacts come from."""

    path: str | None = None
    format: str | None = None
    encoding: str = "utf-8"
    separator: str | None = None  # a CSV's field separator; None: detected from the header


@dataclass(frozen=True, kw_only=True)
class FlowSpec:
    """Which Flow to run, through which API and host."""

    sid: str
    api: Api = "engagements"
    base_url: str | None = None
    region: str | None = None
    edge: str | None = None


@dataclass(frozen=True, kw_only=True)
class MappingSpec:
    """How columns become ``To``, ``From`` and ``Parameters``."""

    to: str
    from_: str | None = None
    from_column: str | None = None
    parameters: tuple[tuple[str, str], ...] = ()
    static_parameters: Mapping[str, Any] = field(default_factory=dict)
    parameters_column: str | None = None
    default_region: str | None = None
    timezone_column: str | None = None


@dataclass(frozen=True, kw_only=True)
class SendSpec:
    """How fast, how persistently and how carefully to send."""

    rate: float = DEFAULT_RATE
    concurrency: int = DEFAULT_CONCURRENCY
    max_attempts: int = DEFAULT_MAX_ATTEMPTS
    max_backoff: float = DEFAULT_MAX_BACKOFF
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT
    read_timeout: float = DEFAULT_READ_TIMEOUT
    dedupe: Dedupe = "to"
    max_parameters_bytes: int = DEFAULT_MAX_PARAMETERS_BYTES
    preflight: bool = True
    reconcile_delay: float = DEFAULT_RECONCILE_DELAY
    breaker_window: int = DEFAULT_BREAKER_WINDOW
    breaker_ratio: float = DEFAULT_BREAKER_RATIO
    window: str | None = None
    days: tuple[str, ...] | None = None
    default_timezone: str | None = None


@dataclass(frozen=True, kw_only=True)
class OutputSpec:
    """Where the results table and the checkpoint live."""

    results: str
    checkpoint: str


@dataclass(frozen=True, kw_only=True)
class SuppressSpec:
    """Lists of contacts never to reach (opt-outs, do-not-contact)."""

    files: tuple[str, ...] = ()
    column: str | None = None


@dataclass(frozen=True, kw_only=True)
class HistorySpec:
    """The contact history shared across jobs, and the frequency caps checked against it."""

    path: str | None = None
    cap: str | None = None
    flow_cap: str | None = None


@dataclass(frozen=True, kw_only=True)
class Spec:
    """A whole job, validated: build it with :func:`load_spec` or directly."""

    input: InputSpec
    flow: FlowSpec
    mapping: MappingSpec
    send: SendSpec = SendSpec()
    output: OutputSpec
    suppress: SuppressSpec = SuppressSpec()
    history: HistorySpec = HistorySpec()

    def replace(self, **sections: Any) -> Spec:
        """Return a copy with whole sections replaced."""
        return dataclasses.replace(self, **sections)


# key -> (type or types, section field name); "from" is a keyword in Python.
_SCHEMA: dict[str, dict[str, tuple[type | tuple[type, ...], str]]] = {
    "input": {
        "path": (str, "path"),
        "format": (str, "format"),
        "encoding": (str, "encoding"),
        "separator": (str, "separator"),
    },
    "flow": {
        "sid": (str, "sid"),
        "api": (str, "api"),
        "base_url": (str, "base_url"),
        "region": (str, "region"),
        "edge": (str, "edge"),
    },
    "mapping": {
        "to": (str, "to"),
        "from": (str, "from_"),
        "from_column": (str, "from_column"),
        "parameters": (dict, "parameters"),
        "static_parameters": (dict, "static_parameters"),
        "parameters_column": (str, "parameters_column"),
        "default_region": (str, "default_region"),
        "timezone_column": (str, "timezone_column"),
    },
    "send": {
        "rate": ((int, float), "rate"),
        "concurrency": (int, "concurrency"),
        "max_attempts": (int, "max_attempts"),
        "max_backoff": ((int, float), "max_backoff"),
        "connect_timeout": ((int, float), "connect_timeout"),
        "read_timeout": ((int, float), "read_timeout"),
        "dedupe": (str, "dedupe"),
        "max_parameters_bytes": (int, "max_parameters_bytes"),
        "preflight": (bool, "preflight"),
        "reconcile_delay": ((int, float), "reconcile_delay"),
        "breaker_window": (int, "breaker_window"),
        "breaker_ratio": ((int, float), "breaker_ratio"),
        "window": (str, "window"),
        "days": (list, "days"),
        "default_timezone": (str, "default_timezone"),
    },
    "output": {"results": (str, "results"), "checkpoint": (str, "checkpoint")},
    "suppress": {"files": (list, "files"), "column": (str, "column")},
    "history": {"path": (str, "path"), "cap": (str, "cap"), "flow_cap": (str, "flow_cap")},
}

_TYPE_NAMES = {
    str: "a string",
    int: "an integer",
    float: "a number",
    bool: "true or false",
    dict: "a table",
    list: "a list",
}


def accepted_keys() -> list[str]:
    """Every ``section.key`` a job file may hold (the README documents exactly these)."""
    return [f"{section}.{key}" for section, keys in _SCHEMA.items() for key in keys]


def _type_name(expected: type | tuple[type, ...]) -> str:
    if isinstance(expected, tuple):
        return _TYPE_NAMES[float]
    return _TYPE_NAMES[expected]


def _check_type(key: str, value: Any, expected: type | tuple[type, ...]) -> None:
    # bool is an int in Python; a job file saying `rate = true` is still wrong.
    wanted = expected if isinstance(expected, tuple) else (expected,)
    if isinstance(value, bool) and bool not in wanted:
        raise ConfigError(key, f"must be {_type_name(expected)}, not {value!r}")
    if not isinstance(value, wanted):
        raise ConfigError(key, f"must be {_type_name(expected)}, not {value!r}")


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


def _resolve(base: Path, value: str | None) -> str | None:
    if value is None or value == "-" or "://" in value:
        return value
    path = Path(value).expanduser()
    return str(path if path.is_absolute() else (base / path).resolve())


def _section(raw: Mapping[str, Any], name: str) -> dict[str, Any]:
    value = raw.get(name, {})
    if not isinstance(value, dict):
        raise ConfigError(name, "must be a table")
    out: dict[str, Any] = {}
    for key, item in value.items():
        if key not in _SCHEMA[name]:
            close = [k for k in _SCHEMA[name] if k.replace("_", "") == key.replace("_", "").lower()]
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ConfigError(f"{name}.{key}", f"is not a known key{hint}")
        expected, field_name = _SCHEMA[name][key]
        _check_type(f"{name}.{key}", item, expected)
        out[field_name] = item
    return out


def load_spec(
    path: str | Path | None = None,
    *,
    raw: Mapping[str, Any] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Spec:
    """Read a job file (or an already-parsed ``raw`` table) and apply ``section.key`` overrides.

    Relative paths in the file resolve against the file's folder; paths given as
    overrides resolve against the current directory.
    """
    if raw is None:
        if path is None:
            raise ConfigError("job", "give a job file or a table")
        job_path = Path(path)
        try:
            raw = tomllib.loads(job_path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError("job", f"no such job file: {job_path}") from None
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise ConfigError("job", f"{job_path} is not valid TOML: {exc}") from None
        base = job_path.resolve().parent
        stem = job_path.stem
    else:
        base = Path.cwd()
        stem = "job"
    for name in raw:
        if name not in _SCHEMA:
            raise ConfigError(name, f"is not a known section (known: {', '.join(_SCHEMA)})")
    sections = {name: _section(raw, name) for name in _SCHEMA}
    for dotted, value in (overrides or {}).items():
        if value is None:
            continue
        name, _, key = dotted.partition(".")
        expected, field_name = _SCHEMA[name][key]
        _check_type(dotted, value, expected)
        if name in ("input", "output") and key in ("path", "results", "checkpoint"):
            sections[name][field_name] = _resolve(Path.cwd(), value)
        else:
            sections[name][field_name] = value

    for name, key in (("input", "path"), ("output", "results"), ("output", "checkpoint"), ("history", "path")):
        if key in sections[name] and not (overrides or {}).get(f"{name}.{key}"):
            sections[name][key] = _resolve(base, sections[name][key])
    if "files" in sections["suppress"]:
        files = sections["suppress"]["files"]
        if not all(isinstance(f, str) for f in files):
            raise ConfigError("suppress.files", "must be a list of file paths")
        sections["suppress"]["files"] = tuple(_resolve(base, f) or f for f in files)

    return _build(sections, base, stem)


def _build(sections: dict[str, dict[str, Any]], base: Path, stem: str) -> Spec:
    inp = sections["input"]
    if inp.get("format") is not None and inp["format"] not in INPUT_FORMATS:
        raise ConfigError("input.format", f"must be one of {', '.join(INPUT_FORMATS)}")
    if "encoding" in inp:
        try:
            codecs.lookup(inp["encoding"])
        except LookupError:
            raise ConfigError("input.encoding", f"unknown encoding {inp['encoding']!r}") from None
    if inp.get("separator") is not None and inp["separator"] not in (",", ";", "\t", "|"):
        raise ConfigError("input.separator", f"must be one of ',' ';' '\\t' '|', not {inp['separator']!r}")

    flow = sections["flow"]
    if "sid" not in flow:
        raise ConfigError("flow.sid", "is required")
    if not FLOW_SID_PATTERN.match(flow["sid"]):
        raise ConfigError("flow.sid", f"must be 'FW' and 32 hex digits, not {flow['sid']!r}")
    if flow.get("api", "engagements") not in ("engagements", "executions"):
        raise ConfigError("flow.api", "must be 'engagements' (v1) or 'executions' (v2)")
    if "base_url" in flow:
        check_base_url(flow["base_url"], key="flow.base_url")

    mapping = dict(sections["mapping"])
    if "to" not in mapping:
        raise ConfigError("mapping.to", "is required: the column holding each contact's address")
    if ("from_" in mapping) == ("from_column" in mapping):
        raise ConfigError("mapping.from", "give exactly one of 'from' (a literal) or 'from_column'")
    region = mapping.get("default_region")
    if region is not None and region.strip().upper() not in phonenumbers.SUPPORTED_REGIONS:
        raise ConfigError("mapping.default_region", f"unknown region {region!r} (use a two-letter code such as 'US')")
    params = _flatten_parameters(mapping.get("parameters", {}))
    statics = mapping.get("static_parameters", {})
    static_keys = [k for k, _ in _flatten_parameters_any(statics)]
    check_parameter_keys([k for k, _ in params] + static_keys)
    mapping["parameters"] = tuple(params)
    mapping["static_parameters"] = statics

    send = sections["send"]
    for key, low in (("rate", 0.0), ("connect_timeout", 0.0), ("read_timeout", 0.0)):
        if key in send and send[key] <= low:
            raise ConfigError(f"send.{key}", "must be greater than 0")
    for key in ("concurrency", "max_attempts", "max_parameters_bytes", "breaker_window"):
        if key in send and send[key] < 1:
            raise ConfigError(f"send.{key}", "must be at least 1")
    if "dedupe" in send and send["dedupe"] not in ("to", "to_from", "none"):
        raise ConfigError("send.dedupe", "must be 'to', 'to_from' or 'none'")
    if "breaker_ratio" in send and not 0 < send["breaker_ratio"] <= 1:
        raise ConfigError("send.breaker_ratio", "must be in (0, 1]")
    if "days" in send:
        if not all(isinstance(d, str) for d in send["days"]):
            raise ConfigError("send.days", "must be a list of day names such as 'mon'")
        send["days"] = tuple(send["days"])
    if ("days" in send or "default_timezone" in send) and "window" not in send:
        raise ConfigError("send.window", "is required with send.days or send.default_timezone")
    if "window" in send:
        parse_window(send["window"], send.get("days"))
        if "default_timezone" in send and not valid_zone(send["default_timezone"]):
            raise ConfigError("send.default_timezone", f"unknown time zone {send['default_timezone']!r}")

    out = sections["output"]
    out.setdefault("results", str(base / f"{stem}.results.csv"))
    out.setdefault("checkpoint", str(base / f"{stem}.checkpoint"))
    if not str(out["results"]).endswith((".csv", ".parquet")):
        raise ConfigError("output.results", "must end in .csv or .parquet")

    history = sections["history"]
    if ("cap" in history or "flow_cap" in history) and "path" not in history:
        raise ConfigError("history.path", "is required when a cap is set")
    for key in ("cap", "flow_cap"):
        if key in history:
            parse_cap(history[key], key=f"history.{key}")

    return Spec(
        suppress=SuppressSpec(**sections["suppress"]),
        history=HistorySpec(**history),
        input=InputSpec(**inp),
        flow=FlowSpec(**flow),
        mapping=MappingSpec(**mapping),
        send=SendSpec(**_floats(send)),
        output=OutputSpec(**out),
    )


def _floats(send: dict[str, Any]) -> dict[str, Any]:
    # TOML's `rate = 20` is an int; the spec promises floats for rates and durations.
    return {k: float(v) if isinstance(v, int) and k in _FLOAT_KEYS else v for k, v in send.items()}


_FLOAT_KEYS = {"rate", "max_backoff", "connect_timeout", "read_timeout", "reconcile_delay", "breaker_ratio"}


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


@dataclass(frozen=True)
class Cap:
    """At most ``count`` contacts within ``seconds``."""

    count: int
    seconds: float
    text: str


def parse_cap(text: str, *, key: str) -> Cap:
    """Parse ``"1 per 7d"`` (units m, h, d, w)."""
    match = _CAP.match(text)
    if match is None or int(match.group(1)) < 1 or int(match.group(2)) < 1:
        raise ConfigError(key, f"must look like '1 per 7d' (units m, h, d, w), not {text!r}")
    return Cap(int(match.group(1)), int(match.group(2)) * _UNIT_SECONDS[match.group(3)], text.strip())


_CAP = re.compile(r"^\s*(\d+)\s*per\s*(\d+)\s*([mhdw])\s*$")
_UNIT_SECONDS = {"m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_base_url(url: str, *, key: str = "flow.base_url") -> None:
    """Refuse URLs that are not http(s), and plain http to anything but loopback."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(key, f"must be an http(s) URL, not {url!r}")
    if parts.scheme == "http" and not _is_loopback(parts.hostname):
        raise CredentialsError(
            f"{key}: refusing plain http:// to {parts.hostname}: credentials would travel "
            "unencrypted (use https://, or a loopback address for the sandbox)"
        )


def studio_base_url(flow: FlowSpec, *, region: str | None = None, edge: str | None = None) -> str:
    """The Studio host for this flow, built the way Twilio's SDKs build it.

    ``[flow] base_url`` wins; otherwise ``studio.{edge}.{region}.twilio.com`` from the
    flow's region/edge (or the environment's), with Twilio's rule that an edge
    without a region means region ``us1``.
    """
    if flow.base_url:
        return flow.base_url.rstrip("/")
    region = flow.region or region
    edge = flow.edge or edge
    if edge and not region:
        region = "us1"
    host = ".".join(part for part in ("studio", edge, region, "twilio", "com") if part)
    return f"https://{host}"
