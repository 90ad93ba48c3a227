"""Small file helpers shared by the modules that write what holds phone numbers, and the locks beside them."""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterable
from pathlib import Path

__all__ = ["holds_lock", "move_with_sidecars", "private_file", "release_lock", "same_file", "try_lock"]


def private_file(path: Path) -> None:
    """Create ``path`` (if missing) readable and writable by its owner only."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_CREAT | os.O_WRONLY, 0o600)
    os.close(fd)
    os.chmod(path, 0o600)


def same_file(a: str | Path, b: str | Path) -> bool:
    """Whether two paths name the same file (existing or not), after resolving links and ``..``."""
    pa, pb = Path(a), Path(b)
    if pa.exists() and pb.exists():
        return os.path.samefile(pa, pb)
    return pa.resolve() == pb.resolve()


def move_with_sidecars(path: Path, to: Path, suffixes: Iterable[str]) -> None:
    """Rename ``path`` to ``to``, and each ``<path><suffix>`` that exists (a WAL, a plan) to ``<to><suffix>``."""
    os.replace(path, to)
    for suffix in suffixes:
        extra = path.with_name(path.name + suffix)
        if extra.exists():
            os.replace(extra, to.with_name(to.name + suffix))


def try_lock(lock_path: Path) -> int | None:
    """Take an exclusive ``flock`` on ``lock_path`` (owner-only) without waiting: its descriptor, or None if held."""
    private_file(lock_path)
    fd = os.open(lock_path, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


def release_lock(fd: int) -> None:
    """Let go of a lock :func:`try_lock` took, and close its descriptor."""
    with contextlib.suppress(OSError):
        fcntl.flock(fd, fcntl.LOCK_UN)
    os.close(fd)


def holds_lock(lock_path: Path) -> bool:
    """Whether some process holds ``lock_path``'s lock now (asked without taking it for longer than a moment)."""
    if not lock_path.exists():
        return False
    fd = os.open(lock_path, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return False
    finally:
        os.close(fd)
