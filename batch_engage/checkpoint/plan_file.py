"""The plan kept beside a SQLite checkpoint, written again only when it changed, and taken again by a resumed run.

A resumed run of a million rows plans the same rows again; compressing and writing them (half a
second) would only delay its first request. The file carries, in its own Parquet metadata, the digest
of the plan it holds and the key of what that plan was made from (``plan.plan_key``: the input's
digest, the job, the code): the file is replaced atomically, so the two can never describe another plan,
as a digest kept apart in the meta could after a crash between the two writes. A resumed run whose key
is the file's takes the plan from the file instead of planning its input again.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Final

import polars as pl

from ..disk import write_atomically

__all__ = ["PLAN_DIGEST", "PLAN_KEY", "plan_digest", "save_plan", "stored_plan"]

PLAN_DIGEST = "plan_digest"
"""The meta key (and the plan file's metadata key) of the digest of the plan file beside the checkpoint."""
PLAN_KEY = "plan_key"
"""The plan file's metadata key of what its plan was made from (empty: a plan that cannot be taken again)."""

# Snappy, not zstd: the file is half as large again, and a resumed run reads it in half the time.
_COMPRESSION: Final = "snappy"


def plan_digest(plan: pl.DataFrame) -> str:
    """A digest of the plan's columns and every value: polars hashes each row twice (128 bits a row).

    Row hashes are stable within one polars version only, so the version is part of it: after an
    upgrade the plan is written once more.
    """
    digest = hashlib.blake2b(f"{pl.__version__}{list(plan.schema.items())}".encode(), digest_size=16)
    for seed in (0, 1):
        # The values buffer of one UInt64 array (hashes are never null).
        digest.update(plan.hash_rows(seed=seed).rechunk().to_arrow().buffers()[1])
    return digest.hexdigest()


def _file_metadata(path: Path) -> dict[str, str]:
    """The plan file's own metadata (empty: no file, one written before it carried any, or one unreadable)."""
    with contextlib.suppress(OSError, pl.exceptions.PolarsError):
        if path.exists():
            return pl.read_parquet_metadata(path)
    return {}


def save_plan(
    path: Path, plan: pl.DataFrame, meta: Mapping[str, str], remember: Callable[[str, str], None], key: str = ""
) -> None:
    """Write ``plan`` at ``path`` (atomically, owner-only) with its ``key``, unless the file holds them already.

    The meta's digest is kept after the file is in place, for releases that read it there; this one
    trusts only the file's own.
    """
    digest = plan_digest(plan)
    kept = _file_metadata(path)
    if kept.get(PLAN_DIGEST) == digest and kept.get(PLAN_KEY, "") == key:
        return
    metadata = {PLAN_DIGEST: digest, PLAN_KEY: key}
    write_atomically(path, lambda tmp: plan.write_parquet(tmp, compression=_COMPRESSION, metadata=metadata))
    if meta.get(PLAN_DIGEST) != digest:
        remember(PLAN_DIGEST, digest)


def stored_plan(path: Path, key: str) -> pl.DataFrame | None:
    """The plan kept at ``path`` when it was made from ``key`` (a non-empty ``plan.plan_key``); else None."""
    if not key or _file_metadata(path).get(PLAN_KEY) != key:
        return None
    try:
        return pl.read_parquet(path)
    except (OSError, pl.exceptions.PolarsError):
        # Damaged or gone since: planning the input again is always right.
        return None
