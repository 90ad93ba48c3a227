"""The plan kept beside a SQLite checkpoint, written again only when it changed.

A resumed run of a million rows plans the same rows again; compressing and writing them (half a
second) would only delay its first request. The meta keeps a digest of the plan last written.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from pathlib import Path

import polars as pl

from ..disk import write_atomically

__all__ = ["PLAN_DIGEST", "plan_digest", "save_plan"]

PLAN_DIGEST = "plan_digest"
"""The meta key of the digest of the plan file beside the checkpoint."""


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


def save_plan(path: Path, plan: pl.DataFrame, meta: Mapping[str, str], remember: Callable[[str, str], None]) -> None:
    """Write ``plan`` at ``path`` (atomically, owner-only), unless the file there is this plan already.

    The digest is kept after the file is in place: a crash between leaves the old digest, and the next
    run writes the file again.
    """
    digest = plan_digest(plan)
    if meta.get(PLAN_DIGEST) == digest and path.exists():
        return
    write_atomically(path, lambda tmp: plan.write_parquet(tmp, compression="zstd"))
    remember(PLAN_DIGEST, digest)
