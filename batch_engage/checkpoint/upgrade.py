"""Upgrade a checkpoint written by batch-engage 0.1 (format 1: keyed by row number) to format 2 (keyed by contact).

A campaign half-sent when batch-engage is upgraded must finish, not start over: every
row's line moves to its contact (from the plan kept beside the checkpoint), the job's
fingerprint and target are those of the run doing the upgrade, and the old file is kept
aside as ``<checkpoint>.v1.old``. Format 1 requests carried no marker, so a contact whose
request was possibly sent before the upgrade is reconciled by address alone (the README's
limit of ``marker_key = ""``); its later requests carry the marker.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import polars as pl
import structlog

from ..disk import move_with_sidecars
from ..errors import CheckpointMismatch
from .binding import changed_parts
from .columnar import read_only_uri

__all__ = ["V1_LINE_COLUMNS", "take_v1_lines"]

log = structlog.get_logger(__name__)

_V1_COLUMNS = "row, state, sid, http_status, error_code, error_message, attempts, intent_at, completed_at"


def _v1(path: Path) -> tuple[dict[str, str], list[tuple[Any, ...]]] | None:
    try:
        conn = sqlite3.connect(read_only_uri(path), uri=True)
        try:
            meta = dict(conn.execute("SELECT key, value FROM meta").fetchall())
            if meta.get("version") != "1":
                return None
            return meta, conn.execute(f"SELECT {_V1_COLUMNS} FROM journal").fetchall()  # noqa: S608 - constants
        finally:
            conn.close()
    except sqlite3.DatabaseError:
        return None


def _contacts(plan: pl.DataFrame, dedupe: str) -> dict[int, tuple[str, str, str]]:
    """Row number -> (contact, to, from), with the contact key format 2 uses."""
    if dedupe == "to":
        key = pl.col("to")
    elif dedupe == "to_from":
        key = pl.concat_str([pl.col("to"), pl.col("from")], separator=" ")
    else:
        place = pl.col("row").rank("ordinal").over(pl.struct("to", "from"))
        key = pl.concat_str([pl.col("to"), pl.col("from"), pl.format("~{}", place)], separator=" ")
    rows = plan.filter(pl.col("status") != "invalid").select("row", key.alias("contact"), "to", "from")
    return {row: (contact, to, from_) for row, contact, to, from_ in rows.iter_rows()}


V1_LINE_COLUMNS = (
    "contact, row, to_addr, from_addr, state, sid, http_status, error_code, error_message, attempts, "
    "intent_at, completed_at"
)
"""The format-2 journal columns :func:`take_v1_lines` fills, in its tuples' order."""


def take_v1_lines(path: Path, fingerprint: Mapping[str, Any]) -> list[tuple[Any, ...]] | None:
    """If ``path`` is a format-1 checkpoint: move it aside and return its lines keyed by contact; else None.

    The caller then creates the format-2 checkpoint as for a new job and inserts the lines.
    """
    found = _v1(path)
    if found is None:
        return None
    meta, lines = found
    old = json.loads(meta.get("fingerprint", "{}"))
    # Format 1 kept its planning settings in another shape: they cannot be compared.
    changed = changed_parts(old, fingerprint, ignore=("planning",))
    if changed:
        raise CheckpointMismatch(
            f"{path}: this checkpoint (written by an older batch-engage) was made for another job: "
            f"{', '.join(changed)} changed. Nothing was sent. Use another --checkpoint, or --restart --yes."
        )
    plan_file = path.with_name(path.name + ".plan.parquet")
    if not plan_file.exists():
        raise CheckpointMismatch(
            f"{path}: written by an older batch-engage and its plan ({plan_file.name}) is missing, so its rows "
            "cannot be matched to contacts; nothing was sent. Finish it with that version, or --restart --yes."
        )
    by_row = _contacts(pl.read_parquet(plan_file), str(old.get("planning", {}).get("dedupe", "to")))
    moved: list[tuple[Any, ...]] = []
    for row, state, sid, status, code, message, attempts, intent_at, completed_at in lines:
        if row not in by_row:
            continue
        contact, to, from_ = by_row[row]
        moved.append((contact, row, to, from_, state, sid, status, code, message, attempts, intent_at, completed_at))
    aside = path.with_name(path.name + ".v1.old")
    move_with_sidecars(path, aside, ("-wal", "-shm"))
    log.warning(
        "checkpoint.upgraded",
        path=str(path),
        contacts=len(moved),
        kept=str(aside),
        message="a checkpoint of batch-engage 0.1 was upgraded; its possibly-sent contacts are matched by address",
    )
    return moved
