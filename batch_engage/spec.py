"""The job: a TOML file plus flag overrides, turned into one frozen ``Spec``.

Every default is a named module constant; every error names the key it is about.
"""

from __future__ import annotations

import codecs
import dataclasses
import math
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cached_property
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

import phonenumbers

from . import periods
from ._files import same_file
from ._local_hours import SendWindow, parse_window, valid_zone
from .errors import ConfigError
from .hosts import (
    DEFAULT_BASE_URL,
    REGION_EDGES,
    api_base_url,
    check_base_url,
    edge_name,
    processing_region,
    studio_base_url,
    studio_region_warning,
)
from .source import InputSpec
from .source_db import check_database_uri

__all__ = [
    "DEFAULT_BASE_URL",
    "FLOW_SID_PATTERN",
    "REGION_EDGES",
    "Cap",
    "CollectSpec",
    "FlowSpec",
    "HistorySpec",
    "InputSpec",
    "JobSpec",
    "MappingSpec",
    "OutputSpec",
    "SendSpec",
    "Spec",
    "SuppressSpec",
    "api_base_url",
    "check_base_url",
    "check_number",
    "load_spec",
    "parse_cap",
    "studio_base_url",
    "studio_region_warning",
]

FLOW_SID_PATTERN = re.compile(r"^FW[0-9a-fA-F]{32}$")
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
DEFAULT_MARKER_KEY = "_batch_engage"

Api = Literal["engagements", "executions"]
Dedupe = Literal["to", "to_from", "none"]
INPUT_FORMATS = ("csv", "parquet", "ndjson")


@dataclass(frozen=True, kw_only=True)
class FlowSpec:
    """Which Flow to run, through which API and host."""

    sid: str
    api: Api = "engagements"
    base_url: str | None = None
    region: str | None = None
    edge: str | None = None
    strict_variables: bool = False


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
    marker_key: str = DEFAULT_MARKER_KEY

    @cached_property
    def send_window(self) -> SendWindow | None:
        """``window`` and ``days`` parsed (None: no window); parsed once, when the job is loaded."""
        return parse_window(self.window, self.days) if self.window is not None else None


@dataclass(frozen=True, kw_only=True)
class OutputSpec:
    """Where the results, checkpoint and outcomes live (``*_template``: before ``{id}``/``{date}`` were filled)."""

    results: str
    checkpoint: str
    results_template: str | None = None
    checkpoint_template: str | None = None
    outcomes: str | None = None
    outcomes_template: str | None = None


@dataclass(frozen=True, kw_only=True)
class CollectSpec:
    """What ``collect`` brings back per run: fields (column name, dotted Context path), delivery, and its pace.

    ``rate`` and ``concurrency`` default (None) to ``[send]``'s.
    """

    fields: tuple[tuple[str, str], ...] = ()
    message_status: tuple[str, ...] = ()
    rate: float | None = None
    concurrency: int | None = None


@dataclass(frozen=True, kw_only=True)
class JobSpec:
    """The campaign's name; with ``{date}``, ``{week}`` or ``{month}`` in it, one campaign per period."""

    id: str = "job"
    template: str = "job"
    period_kind: periods.PeriodKind | None = None
    period: str | None = None


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

    @cached_property
    def caps(self) -> tuple[Cap | None, Cap | None]:
        """``cap`` and ``flow_cap`` parsed; parsed once, when the job is loaded."""
        return (
            parse_cap(self.cap, key="history.cap") if self.cap else None,
            parse_cap(self.flow_cap, key="history.flow_cap") if self.flow_cap else None,
        )


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
    job: JobSpec = JobSpec()
    collect: CollectSpec = CollectSpec()

    def replace(self, **sections: Any) -> Spec:
        """Return a copy with whole sections replaced."""
        return dataclasses.replace(self, **sections)

    def for_period(self, period: str) -> Spec:
        """The same job for another period (its own id and output paths)."""
        kind = self.job.period_kind
        if kind is None:
            raise ConfigError("job.id", "has no {date}, {week} or {month}: the job has no periods")
        if not periods.is_period(kind, period):
            raise ConfigError(
                "--period", f"{period!r} is not a {kind} (e.g. {periods.current_period(kind, _EPOCH, None)})"
            )
        job = dataclasses.replace(self.job, id=periods.render(self.job.template, {kind: period}), period=period)
        values = {"id": job.id, kind: period}
        out = self.output
        return dataclasses.replace(
            self,
            job=job,
            output=dataclasses.replace(
                out,
                results=periods.render(out.results_template or out.results, values),
                checkpoint=periods.render(out.checkpoint_template or out.checkpoint, values),
                outcomes=periods.render(out.outcomes_template, values) if out.outcomes_template else out.outcomes,
            ),
        )

    def rehearsal(self) -> Spec:
        """The same job against the sandbox: its own checkpoint and results beside the real ones, no history.

        Idempotent: the rehearsal of a rehearsal is itself.
        """
        if self.output.checkpoint.endswith(".sandbox"):
            return self
        results = Path(self.output.results)
        outcomes = Path(self.output.outcomes) if self.output.outcomes else None
        return dataclasses.replace(
            self,
            output=dataclasses.replace(
                self.output,
                results=str(results.with_name(f"{results.stem}.sandbox{results.suffix}")),
                checkpoint=self.output.checkpoint + ".sandbox",
                outcomes=str(outcomes.with_name(f"{outcomes.stem}.sandbox{outcomes.suffix}")) if outcomes else None,
            ),
            history=HistorySpec(),
        )


# key -> (type or types, section field name); "from" is a keyword in Python.
_SCHEMA: dict[str, dict[str, tuple[type | tuple[type, ...], str]]] = {
    "job": {"id": (str, "id")},
    "input": {
        "path": (str, "path"),
        "format": (str, "format"),
        "encoding": (str, "encoding"),
        "uri": (str, "uri"),
        "query": (str, "query"),
        "separator": (str, "separator"),
    },
    "flow": {
        "sid": (str, "sid"),
        "api": (str, "api"),
        "base_url": (str, "base_url"),
        "region": (str, "region"),
        "edge": (str, "edge"),
        "strict_variables": (bool, "strict_variables"),
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
        "marker_key": (str, "marker_key"),
    },
    "output": {"results": (str, "results"), "checkpoint": (str, "checkpoint"), "outcomes": (str, "outcomes")},
    "suppress": {"files": (list, "files"), "column": (str, "column")},
    "history": {"path": (str, "path"), "cap": (str, "cap"), "flow_cap": (str, "flow_cap")},
    "collect": {
        "fields": (dict, "fields"),
        "message_status": (list, "message_status"),
        "rate": ((int, float), "rate"),
        "concurrency": (int, "concurrency"),
    },
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
    if value is None or value == "-" or "://" in value or value.startswith("env:"):
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
    now: datetime | None = None,
) -> Spec:
    """Read a job file (or an already-parsed ``raw`` table) and apply ``section.key`` overrides.

    Relative paths in the file resolve against the file's folder; paths given as
    overrides resolve against the current directory. ``now`` fixes the period of a
    ``[job] id`` with ``{date}``, ``{week}`` or ``{month}`` (default: the current time).
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
        if name in ("input", "output") and key in ("path", "results", "checkpoint", "outcomes"):
            sections[name][field_name] = _resolve(Path.cwd(), value)
            if dotted == "input.path":
                # --input replaces the job's whole source, a query included.
                sections["input"].pop("uri", None)
                sections["input"].pop("query", None)
        else:
            sections[name][field_name] = value

    for name, key in (
        ("input", "path"),
        ("output", "results"),
        ("output", "checkpoint"),
        ("output", "outcomes"),
        ("history", "path"),
    ):
        if key in sections[name] and not (overrides or {}).get(f"{name}.{key}"):
            sections[name][key] = _resolve(base, sections[name][key])
    if "files" in sections["suppress"]:
        files = sections["suppress"]["files"]
        if not all(isinstance(f, str) for f in files):
            raise ConfigError("suppress.files", "must be a list of file paths")
        sections["suppress"]["files"] = tuple(_resolve(base, f) or f for f in files)

    return _build(sections, base, stem, now or datetime.now(UTC))


def _job(section: dict[str, Any], stem: str, send: dict[str, Any], now: datetime) -> JobSpec:
    template = section.get("id", stem)
    unknown = [name for name in periods.placeholders(template) if name not in periods.PLACEHOLDERS]
    if unknown or not _JOB_ID.match(periods.render(template, dict.fromkeys(periods.PLACEHOLDERS, "x"))):
        raise ConfigError(
            "job.id",
            f"{template!r}: use letters, digits, '.', '-' and '_', and at most one of {{date}}, {{week}}, {{month}}",
        )
    kinds = {name for name in periods.placeholders(template) if name in periods.PLACEHOLDERS}
    if len(kinds) > 1:
        raise ConfigError("job.id", f"{template!r}: use only one of {{date}}, {{week}}, {{month}}")
    kind = periods.period_kind(template)
    if kind is None:
        return JobSpec(id=template, template=template)
    period = periods.current_period(kind, now, send.get("default_timezone"))
    return JobSpec(id=periods.render(template, {kind: period}), template=template, period_kind=kind, period=period)


_POSTGRES = ("postgresql://", "postgres://")


def _check_postgres_checkpoint(out: dict[str, Any], job: dict[str, Any]) -> None:
    """A PostgreSQL checkpoint is keyed by ``[job] id``: require it, and keep passwords out of the job file."""
    url = out.get("checkpoint")
    if not isinstance(url, str) or not url.startswith(_POSTGRES):
        return
    if "id" not in job:
        raise ConfigError(
            "job.id",
            "is required when output.checkpoint is a postgresql:// URL: it keys the job's state in the database "
            '(file names collide across folders); add [job] id = "..."',
        )
    if urlsplit(url).password:
        raise ConfigError(
            "output.checkpoint", "holds a password: remove it from the URL and use PGPASSWORD or ~/.pgpass"
        )


def _outputs(out: dict[str, Any], base: Path, job: JobSpec) -> OutputSpec:
    templates = {
        "results": out.get("results", str(base / "{id}.results.csv")),
        "checkpoint": out.get("checkpoint", str(base / "{id}.checkpoint")),
        "outcomes": out.get("outcomes", str(base / "{id}.outcomes.csv")),
    }
    if templates["checkpoint"].startswith(_POSTGRES) and "#" not in templates["checkpoint"]:
        # The fragment is the job's key in the database; a rehearsal appends ".sandbox" to it.
        templates["checkpoint"] += "#{id}"
    values: dict[str, str] = {"id": job.id}
    if job.period_kind and job.period:
        values[job.period_kind] = job.period
    for key, template in templates.items():
        bad = [name for name in periods.placeholders(template) if name not in ("id", *periods.PLACEHOLDERS)]
        if bad:
            raise ConfigError(
                f"output.{key}", f"unknown placeholder {{{bad[0]}}} (use {{id}}, {{date}}, {{week}}, {{month}})"
            )
        named = [name for name in periods.placeholders(template) if name in periods.PLACEHOLDERS]
        if any(name != job.period_kind for name in named):
            raise ConfigError(f"output.{key}", f"uses {{{named[0]}}}, but job.id has no such period")
    if job.period_kind and not periods.placeholders(templates["checkpoint"]):
        raise ConfigError(
            "output.checkpoint",
            "must contain {id} (or the period) when job.id has a period: each period needs its own checkpoint",
        )
    results = periods.render(templates["results"], values)
    if not results.endswith((".csv", ".parquet")):
        raise ConfigError("output.results", "must end in .csv or .parquet")
    outcomes = periods.render(templates["outcomes"], values)
    if not outcomes.endswith((".csv", ".parquet")):
        raise ConfigError("output.outcomes", "must end in .csv or .parquet")
    return OutputSpec(
        results=results,
        checkpoint=periods.render(templates["checkpoint"], values),
        results_template=templates["results"],
        checkpoint_template=templates["checkpoint"],
        outcomes=outcomes,
        outcomes_template=templates["outcomes"],
    )


def _check_paths(spec: Spec) -> None:
    """Refuse outputs that would overwrite what the job reads: nothing is sent, exit 2."""
    inputs = [("input.path", spec.input.path), *(("suppress.files", f) for f in spec.suppress.files)]
    checkpoint = Path(spec.output.checkpoint)
    outputs = [
        ("output.results", Path(spec.output.results)),
        *([("output.outcomes", Path(spec.output.outcomes))] if spec.output.outcomes else []),
        *(
            ("output.checkpoint", checkpoint.with_name(checkpoint.name + suffix))
            for suffix in ("", ".plan.parquet", ".lock", "-wal", "-shm", ".sandbox", ".outcomes", ".outcomes.lock")
            if not spec.output.checkpoint.startswith(_POSTGRES)
        ),
    ]
    if spec.history.path and "://" not in spec.history.path:
        outputs.append(("history.path", Path(spec.history.path)))
    for in_key, name in inputs:
        if not name or name == "-" or "://" in name:
            continue
        source = Path(name)
        for out_key, target in outputs:
            inside = source.is_dir() and target.resolve().is_relative_to(source.resolve())
            if same_file(source, target) or inside:
                raise ConfigError(
                    out_key,
                    f"{target} would overwrite {in_key} ({source}); choose another path. Nothing was sent.",
                )


def _build(sections: dict[str, dict[str, Any]], base: Path, stem: str, now: datetime) -> Spec:
    inp = sections["input"]
    if inp.get("format") is not None and inp["format"] not in INPUT_FORMATS:
        raise ConfigError("input.format", f"must be one of {', '.join(INPUT_FORMATS)}")
    if "encoding" in inp:
        try:
            codecs.lookup(inp["encoding"])
        except LookupError:
            raise ConfigError("input.encoding", f"unknown encoding {inp['encoding']!r}") from None
    if ("uri" in inp) != ("query" in inp):
        raise ConfigError("input.query" if "uri" in inp else "input.uri", "input.uri and input.query go together")
    if "uri" in inp:
        if "path" in inp:
            raise ConfigError("input.path", "give input.path or input.uri + input.query, not both")
        if not inp["uri"].startswith("env:"):
            check_database_uri(inp["uri"], key="input.uri")
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
    if "region" in flow:
        flow["region"] = processing_region(flow["region"], key="flow.region")
    if "edge" in flow:
        flow["edge"] = edge_name(flow["edge"], key="flow.edge")

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
    for key, value in send.items():
        if key in _NUMBER_LIMITS:
            check_number(f"send.{key}", value, *_NUMBER_LIMITS[key])
    if "dedupe" in send and send["dedupe"] not in ("to", "to_from", "none"):
        raise ConfigError("send.dedupe", "must be 'to', 'to_from' or 'none'")
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

    if send.get("marker_key"):
        mapped = [k.split(".")[0] for k, _ in params] + [k.split(".")[0] for k in static_keys]
        if send["marker_key"] in mapped:
            raise ConfigError("send.marker_key", f"{send['marker_key']!r} is also a mapped parameter; choose another")
    job = _job(sections["job"], stem, send, now)
    _check_postgres_checkpoint(sections["output"], sections["job"])
    output = _outputs(sections["output"], base, job)

    history = sections["history"]
    if ("cap" in history or "flow_cap" in history) and "path" not in history:
        raise ConfigError("history.path", "is required when a cap is set")
    for key in ("cap", "flow_cap"):
        if key in history:
            parse_cap(history[key], key=f"history.{key}")

    spec = Spec(
        collect=_collect(sections["collect"]),
        suppress=SuppressSpec(**sections["suppress"]),
        history=HistorySpec(**history),
        input=InputSpec(**inp),
        flow=FlowSpec(**flow),
        mapping=MappingSpec(**mapping),
        send=SendSpec(**_floats(send)),
        output=output,
        job=job,
    )
    _check_paths(spec)
    return spec


# Columns every outcomes table has; a field may not take one of their names.
OUTCOME_BASE_COLUMNS = ("row", "to", "sid", "run_status", "ended_at", "error_message")
_COLUMN_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_CONTEXT_PATH = re.compile(r"^[^.\s]+(\.[^.\s]+)*$")


def _collect(section: dict[str, Any]) -> CollectSpec:
    fields = _flatten_parameters_any(section.get("fields", {}))
    taken = set(OUTCOME_BASE_COLUMNS)
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
        for column in (f"{widget}_delivery", f"{widget}_delivery_error_code"):
            if column in taken:
                raise ConfigError("collect.message_status", f"{widget!r} gives the column {column!r}, which is taken")
            taken.add(column)
    for key in ("rate", "concurrency"):
        if key in section:
            check_number(f"collect.{key}", section[key], *_NUMBER_LIMITS[key])
    return CollectSpec(
        fields=tuple(fields),
        message_status=tuple(widgets),
        rate=float(section["rate"]) if "rate" in section else None,
        concurrency=section.get("concurrency"),
    )


def _floats(send: dict[str, Any]) -> dict[str, Any]:
    # TOML's `rate = 20` is an int; the spec promises floats for rates and durations.
    return {k: float(v) if isinstance(v, int) and k in _FLOAT_KEYS else v for k, v in send.items()}


_FLOAT_KEYS = {"rate", "max_backoff", "connect_timeout", "read_timeout", "reconcile_delay", "breaker_ratio"}

MAX_RATE = 10_000.0
MAX_CONCURRENCY = 1_000
MAX_TIMEOUT = 3_600.0
# key -> (lowest, highest, whether the lowest itself is refused); beyond these a value is a typo, not a choice.
_NUMBER_LIMITS: dict[str, tuple[float, float, bool]] = {
    "rate": (0.0, MAX_RATE, True),
    "concurrency": (1, MAX_CONCURRENCY, False),
    "max_attempts": (1, 1_000, False),
    "max_backoff": (0.0, 7 * 86_400.0, False),
    "connect_timeout": (0.0, MAX_TIMEOUT, True),
    "read_timeout": (0.0, MAX_TIMEOUT, True),
    "max_parameters_bytes": (1, 16 * 1024 * 1024, False),
    "reconcile_delay": (0.0, MAX_TIMEOUT, False),
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


_JOB_ID = re.compile(r"^[A-Za-z0-9_.-]+$")
_EPOCH = datetime(2026, 1, 1, tzinfo=UTC)
_CAP = re.compile(r"^\s*(\d+)\s*per\s*(\d+)\s*([mhdw])\s*$")
_UNIT_SECONDS = {"m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
