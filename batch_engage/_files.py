"""Small file helpers shared by the modules that write what holds phone numbers."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["private_file", "same_file"]


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
