"""Where a job writes: its id and period, its output paths from templates, and never over what it reads."""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

from ..disk import file_url_path, same_file
from ..errors import ConfigError
from ..postgres import database_of, is_postgres_url, parse_table_url, schema_param
from . import periods

__all__ = ["check_paths", "check_postgres_checkpoint", "check_tables", "job_fields", "output_fields"]

_JOB_ID = re.compile(r"^[A-Za-z0-9_.-]+$")


def job_fields(section: dict[str, Any], stem: str, timezone: str | None, now: datetime) -> dict[str, Any]:
    """``[job] id`` checked, and its period (if it names one) read from ``now`` in ``timezone``."""
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
    named = "id" in section
    if kind is None:
        return {"id": template, "template": template, "named": named}
    period = periods.current_period(kind, now, timezone)
    rendered = periods.render(template, {kind: period})
    return {"id": rendered, "template": template, "period_kind": kind, "period": period, "named": named}


_POSTGRES = ("postgresql://", "postgres://")


def check_postgres_checkpoint(out: dict[str, Any], job: dict[str, Any]) -> None:
    """A PostgreSQL checkpoint or table is keyed by ``[job] id``: require it, and keep passwords out of the job file."""
    for key in ("results", "outcomes"):
        if is_postgres_url(out.get(key)) and "id" not in job:
            raise ConfigError(
                "job.id",
                f"is required when output.{key} is a postgresql:// table: it keys the job's rows in it "
                '(with the period and the row); add [job] id = "..."',
            )
    url = out.get("checkpoint")
    if not isinstance(url, str) or not url.startswith(_POSTGRES):
        return
    if "id" not in job:
        raise ConfigError(
            "job.id",
            "is required when output.checkpoint is a postgresql:// URL: it keys the job's state in the database "
            '(file names collide across folders); add [job] id = "..."',
        )


def output_fields(out: dict[str, Any], base: Path, job: Mapping[str, Any]) -> dict[str, Any]:
    """``[output]`` paths from their templates (default: beside the job file), filled with the job's id and period."""
    templates = {
        "results": out.get("results", str(base / "{id}.results.csv")),
        "checkpoint": out.get("checkpoint", str(base / "{id}.checkpoint")),
        "outcomes": out.get("outcomes", str(base / "{id}.outcomes.csv")),
    }
    if templates["checkpoint"].startswith(_POSTGRES) and "#" not in templates["checkpoint"]:
        # The fragment is the job's key in the database; a rehearsal appends ".sandbox" to it.
        templates["checkpoint"] += "#{id}"
    kind = job.get("period_kind")
    values: dict[str, str] = {"id": job["id"]}
    if kind and job.get("period"):
        values[kind] = job["period"]
    for key, template in templates.items():
        bad = [name for name in periods.placeholders(template) if name not in ("id", *periods.PLACEHOLDERS)]
        if bad:
            raise ConfigError(
                f"output.{key}", f"unknown placeholder {{{bad[0]}}} (use {{id}}, {{date}}, {{week}}, {{month}})"
            )
        named = [name for name in periods.placeholders(template) if name in periods.PLACEHOLDERS]
        if any(name != kind for name in named):
            raise ConfigError(f"output.{key}", f"uses {{{named[0]}}}, but job.id has no such period")
    if kind and not periods.placeholders(templates["checkpoint"]):
        raise ConfigError(
            "output.checkpoint",
            "must contain {id} (or the period) when job.id has a period: each period needs its own checkpoint",
        )
    results = periods.render(templates["results"], values)
    outcomes = periods.render(templates["outcomes"], values)
    for key, target in (("output.results", results), ("output.outcomes", outcomes)):
        if is_postgres_url(target):
            parse_table_url(target, key=key)
        elif not target.endswith((".csv", ".parquet")):
            raise ConfigError(key, "must end in .csv or .parquet, or be postgresql://host/db#schema.table")
    return {
        "results": results,
        "checkpoint": periods.render(templates["checkpoint"], values),
        "results_template": templates["results"],
        "checkpoint_template": templates["checkpoint"],
        "outcomes": outcomes,
        "outcomes_template": templates["outcomes"],
    }


def _query_reads(query: str, schema: str, table: str) -> bool:
    """Whether ``query`` names ``table`` after FROM or JOIN (bare, or qualified by ``schema``)."""
    name = rf'(?:"?{re.escape(schema)}"?\s*\.\s*)?"?{re.escape(table)}"?'
    return re.search(rf"\b(?:from|join)\s+{name}(?![\w.])", query, re.IGNORECASE) is not None


def check_tables(
    tables: list[tuple[str, str | None]], *, checkpoint: str, history: str | None, source: Any, named: bool = True
) -> None:
    """Refuse a results or outcomes table in the checkpoint's or the history's schema, or one the input reads;
    and, unless the job is ``named`` (``[job] id``), any table: its rows are keyed by the job's id."""
    owners = [("output.checkpoint", checkpoint), ("history.path", history)]
    for key, url in tables:
        if not is_postgres_url(url):
            continue
        if not named:
            raise ConfigError(
                "job.id",
                f"is required when {key} is a postgresql:// table: it keys the job's rows in it (with the period "
                "and the row), and two jobs named by their file alone would replace each other's rows; "
                'add [job] id = "..."',
            )
        assert url is not None
        table = parse_table_url(url, key=key)
        place = database_of(table.conninfo)
        for owner_key, owner in owners:
            if is_postgres_url(owner) and database_of(owner or "") == place:
                schema = schema_param(owner or "")
                if schema == table.schema:
                    raise ConfigError(key, f"{table.describe()} is in {owner_key}'s schema {schema}: choose another")
        uri, query = getattr(source, "uri", None), getattr(source, "query", None)
        same_place = isinstance(uri, str) and is_postgres_url(uri) and database_of(uri) == place
        if same_place and query and _query_reads(query, table.schema, table.table):
            raise ConfigError(key, f"{table.describe()} is a table input.query reads: choose another")


def check_paths(
    inputs: list[tuple[str, str | None]], *, results: str, checkpoint: str, outcomes: str | None, history: str | None
) -> None:
    """Refuse outputs (results, outcomes, checkpoint, history) that would overwrite an input ``(key, path)``: exit 2."""
    base = Path(checkpoint)
    outputs = [
        *([("output.results", Path(results))] if not is_postgres_url(results) else []),
        *([("output.outcomes", Path(outcomes))] if outcomes and not is_postgres_url(outcomes) else []),
        *(
            ("output.checkpoint", base.with_name(base.name + suffix))
            for suffix in ("", ".plan.parquet", ".lock", "-wal", "-shm", ".sandbox", ".outcomes", ".outcomes.lock")
            if not checkpoint.startswith(_POSTGRES)
        ),
    ]
    if history and "://" not in history:
        outputs.append(("history.path", Path(history)))
    for in_key, given in inputs:
        # A file:// URL is read as the local file it names: it is protected as that file is.
        name = file_url_path(given) if given and "://" in given else given
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
