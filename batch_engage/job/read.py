"""Reading a job's tables: the TOML file, its known sections and keys with their types, flag overrides, paths.

Relative paths in the file resolve against the file's folder; paths given as overrides
resolve against the current directory. Values are checked here for type only: what
they mean is checked by ``checks`` and ``paths``.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from ..postgres import is_libpq_keywords, split_url

__all__ = ["accepted_keys", "job_sections", "read_job"]

Sections = dict[str, dict[str, Any]]

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
        "other_lists": (bool, "other_lists"),
    },
    "flow": {
        "sid": (str, "sid"),
        "api": (str, "api"),
        "base_url": (str, "base_url"),
        "region": (str, "region"),
        "edge": (str, "edge"),
        "strict_variables": (bool, "strict_variables"),
        "replies": (str, "replies"),
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
        "settle_after": ((int, float), "settle_after"),
        "breaker_window": (int, "breaker_window"),
        "breaker_ratio": ((int, float), "breaker_ratio"),
        "window": (str, "window"),
        "days": (list, "days"),
        "default_timezone": (str, "default_timezone"),
        "marker_key": (str, "marker_key"),
        "unreachable_timeout": ((int, float, str), "unreachable_timeout"),
        "on_active": (str, "on_active"),
        "active_retry": ((str, int, float), "active_retry"),
        "end_active_after": ((str, int, float), "end_active_after"),
        "sender_throughput": ((int, float), "sender_throughput"),
        "pace": (str, "pace"),
        "validity_period": (int, "validity_period"),
    },
    "output": {
        "results": (str, "results"),
        "checkpoint": (str, "checkpoint"),
        "outcomes": (str, "outcomes"),
        "lock_wait": ((int, float, str), "lock_wait"),
        "csv_guard": (bool, "csv_guard"),
    },
    "suppress": {"files": (list, "files"), "column": (str, "column"), "opted_out": (str, "opted_out")},
    "history": {"path": (str, "path"), "cap": (str, "cap"), "flow_cap": (str, "flow_cap")},
    "collect": {
        "fields": (dict, "fields"),
        "message_status": (list, "message_status"),
        "rate": ((int, float), "rate"),
        "concurrency": (int, "concurrency"),
    },
    "experiment": {
        "salt": (str, "salt"),
        "holdout": ((int, float), "holdout"),
        "holdout_counts": (bool, "holdout_counts"),
        "variants": (list, "variants"),
    },
}

# Keys that hold paths; relative ones in the file mean "beside the job file", wherever it is run from.
_PATH_KEYS = (
    ("input", "path"),
    ("output", "results"),
    ("output", "checkpoint"),
    ("output", "outcomes"),
    ("history", "path"),
)

# Database files named by URL: a relative path in it resolves like any other path in the job file.
_FILE_SCHEMES = ("duckdb", "sqlite")

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


def _resolve_file_uri(base: Path, uri: str) -> str:
    """``duckdb:///x.db`` (relative, SQLAlchemy's convention) made absolute against ``base``, like a path."""
    scheme, sep, rest = uri.partition(":///")
    if not sep or scheme not in _FILE_SCHEMES or rest.startswith("/"):
        return uri
    return f"{scheme}:///{(base / Path(rest).expanduser()).resolve()}"


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


def read_job(path: str | Path | None, raw: Mapping[str, Any] | None) -> tuple[Mapping[str, Any], Path, str]:
    """The job's table, the folder its relative paths resolve against, and the default job id (the file's stem)."""
    if raw is not None:
        return raw, Path.cwd(), "job"
    if path is None:
        raise ConfigError("job", "give a job file or a table")
    job_path = Path(path)
    try:
        table = tomllib.loads(job_path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError("job", f"no such job file: {job_path}") from None
    except IsADirectoryError:
        raise ConfigError("job", f"{job_path} is a folder; give the job's .toml file") from None
    except PermissionError:
        raise ConfigError("job", f"{job_path} cannot be read (permission denied)") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError("job", f"{job_path} is not valid TOML: {exc}") from None
    return table, job_path.resolve().parent, job_path.stem


def job_sections(raw: Mapping[str, Any], base: Path, overrides: Mapping[str, Any]) -> Sections:
    """Every section as ``{field name: value}``, types checked, overrides applied, paths made absolute."""
    for name in raw:
        if name not in _SCHEMA:
            raise ConfigError(name, f"is not a known section (known: {', '.join(_SCHEMA)})")
    sections = {name: _section(raw, name) for name in _SCHEMA}
    for name, key in (*_PATH_KEYS, ("input", "uri")):
        for value in (sections[name].get(key), overrides.get(f"{name}.{key}")):
            if isinstance(value, str) and is_libpq_keywords(value):
                split_url(value, key=f"{name}.{key}")  # refuses it, with the pointer to PGPASSWORD / ~/.pgpass
    _apply_overrides(sections, overrides)
    # A path given as a flag was resolved against the current directory already.
    for name, key in _PATH_KEYS:
        if key in sections[name] and not overrides.get(f"{name}.{key}"):
            sections[name][key] = _resolve(base, sections[name][key])
    if isinstance(sections["input"].get("uri"), str):
        sections["input"]["uri"] = _resolve_file_uri(base, sections["input"]["uri"])
    if "files" in sections["suppress"]:
        files = sections["suppress"]["files"]
        if not all(isinstance(f, str) for f in files):
            raise ConfigError("suppress.files", "must be a list of file paths")
        sections["suppress"]["files"] = tuple(_resolve(base, f) or f for f in files)
    return sections


def _apply_overrides(sections: Sections, overrides: Mapping[str, Any]) -> None:
    for dotted, value in overrides.items():
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
