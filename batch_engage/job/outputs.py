"""What a command may write: never the input, the job file, the checkpoint and its kin, or its own other outputs.

Every output a command names (results, outcomes, the report page, the summary, validate's and
report's ``--output``) is held against what the job reads and keeps, then proven writable,
all before the first request. A refusal is one line, exit 2, and nothing was written.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path

import structlog

from ..disk import check_writable, file_url_path, same_file
from ..errors import UsageError
from ..postgres import is_postgres_url, sandbox_twin
from .spec import Spec

__all__ = ["check_outputs", "checkpoint_family", "prove_outputs", "rehearsal_target"]

log = structlog.get_logger(__name__)

_POSTGRES = ("postgresql://", "postgres://")
_REHEARSAL = ".sandbox"
# SQLite's and ours: what lives beside a file checkpoint (the outcomes store and run log start with its name too).
_SIBLINGS = ("-wal", "-shm", "-journal", ".lock", ".plan.parquet")
_USER_FILES = (".csv", ".parquet", ".json", ".html", ".htm", ".txt")


def _absolute(path: str | Path) -> Path:
    return Path(os.path.abspath(Path(path).expanduser()))


def _is_file(path: str | Path) -> bool:
    """Whether an output names a file (not ``""``, not a URL such as a PostgreSQL table)."""
    return str(path) != "" and "://" not in str(path)


def checkpoint_family(checkpoint: str) -> Path | None:
    """The real checkpoint's path (a rehearsal's ``.sandbox`` taken off): every file named after it is kin."""
    if checkpoint.startswith(_POSTGRES):
        return None
    return _absolute(checkpoint.removesuffix(_REHEARSAL))


def _is_kin(target: Path, base: Path) -> bool:
    """Whether ``target`` is ``base`` or one of the files beside it named after it (WAL, lock, plan, run log...).

    ``<checkpoint>.results.csv`` or ``<checkpoint>.summary.json`` are a user's own files, not kin.
    """
    if same_file(target, base):
        return True
    if not same_file(target.parent, base.parent) or not target.name.startswith(base.name):
        return False
    rest = target.name[len(base.name) :]
    if rest.startswith(_SIBLINGS):
        return True
    return rest[:1] in ("-", ".") and not rest.endswith(_USER_FILES)


def _kept(spec: Spec) -> list[tuple[str, Path, bool]]:
    """What the job reads or keeps: ``(name, path, whether files named after it are kin too)``."""
    kept: list[tuple[str, Path, bool]] = []
    if spec.job_file:
        kept.append(("the job file", _absolute(spec.job_file), False))
    given = spec.input.path
    local = file_url_path(given) if given and "://" in given else given
    if local and local != "-" and "://" not in local:
        kept.append(("input.path", _absolute(local), False))
    kept.extend(("suppress.files", _absolute(f), False) for f in spec.suppress.files)
    family = checkpoint_family(spec.output.checkpoint)
    if family is not None:
        kept.append(("the checkpoint", family, True))
    if spec.history.path and "://" not in spec.history.path:
        kept.append(("history.path", _absolute(spec.history.path), True))
    kept.extend(("the real job's output", _absolute(p), False) for p in spec.output.real if _is_file(p))
    return kept


def rehearsal_target(spec: Spec, output: str | Path) -> str | Path:
    """Where a rehearsal's ``--output`` goes: a table to its twin beside it, as ``run --sandbox --output``'s does
    (a file named after the real job's own is refused by :func:`check_outputs`); anything else as named."""
    if spec.output.real and is_postgres_url(str(output)):
        return sandbox_twin(str(output))
    return output


def _refuse(key: str, target: Path, what: str, path: Path) -> UsageError:
    return UsageError(f"{key} {target} would overwrite {what} ({path}); choose another path. Nothing was written.")


def _check_collisions(spec: Spec, outputs: Sequence[tuple[str, Path]], replaces: Iterable[str]) -> None:
    kept = _kept(spec)
    for key, target in outputs:
        for what, path, kin in kept:
            inside = path.is_dir() and target.resolve().is_relative_to(path.resolve())
            if (_is_kin(target, path) if kin else same_file(target, path)) or inside:
                raise _refuse(key, target, what, path)
    named = {key for key, _ in outputs} | set(replaces)
    job_outputs = [("output.results", spec.output.results), ("output.outcomes", spec.output.outcomes)]
    others = [(k, _absolute(p)) for k, p in job_outputs if p and _is_file(p) and k not in named]
    for i, (key, target) in enumerate(outputs):
        for other_key, other in [*outputs[:i], *others]:
            if same_file(target, other):
                raise _refuse(key, target, other_key, other)


def _check_checkpoint(checkpoint: str) -> list[Path]:
    if checkpoint.startswith(_POSTGRES):
        return []
    path = _absolute(checkpoint)
    created = check_writable(path, "output.checkpoint")
    for suffix in _SIBLINGS:
        sibling = path.with_name(path.name + suffix)
        if sibling.is_symlink():
            raise UsageError(f"{sibling} is a symbolic link: batch-engage does not follow links beside its checkpoint")
    return created


def check_outputs(
    spec: Spec,
    outputs: Iterable[tuple[str, str | Path | None]],
    *,
    checkpoint: bool = False,
    replaces: Iterable[str] = (),
) -> list[Path]:
    """Refuse outputs that would overwrite what the job reads or keeps, or each other; prove each writable.

    ``outputs`` are ``(flag or key, path)`` pairs (``None`` paths are skipped). With ``checkpoint``
    the checkpoint's own folder and siblings are proven too (a command that writes it: ``run``).
    ``replaces`` names the job's outputs (``output.results``, ``output.outcomes``) that a flag
    stands in for: writing over those is the command's job, not a collision.
    Returns the folders that had to be created, in order, for the caller to show.
    """
    # A database table (postgresql://…#schema.table) is not a file: job/paths.check_tables holds those.
    named = [(key, _absolute(path)) for key, path in outputs if path is not None and _is_file(path)]
    _check_collisions(spec, named, replaces)
    created: list[Path] = []
    if checkpoint:
        created += _check_checkpoint(spec.output.checkpoint)
    for key, target in named:
        created += check_writable(target, key)
    return created


def prove_outputs(spec: Spec, extra: Sequence[tuple[str, str | None]] = ()) -> list[Path]:
    """Before any request: refuse outputs that would overwrite the job's files, prove them all writable.

    ``extra`` are the caller's own outputs (the CLI's ``--summary-json``, ``--report-html``).
    Returns the folders made for them (each logged).
    """
    created = check_outputs(spec, [("output.results", spec.output.results), *extra], checkpoint=True)
    for folder in created:
        log.info("output.folder_created", path=str(folder))
    return created
