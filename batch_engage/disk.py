"""Small file helpers shared by the modules that write what holds phone numbers, and the locks beside them.

Nothing here follows a link someone else placed: locks and private files are opened with
``O_NOFOLLOW``, and every whole-file write goes to a temporary file with a random name made
with ``O_EXCL`` in the target's own folder, then ``os.replace``-d over the target.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path
from urllib.parse import urlsplit
from urllib.request import url2pathname

from .errors import UsageError

__all__ = [
    "check_writable",
    "file_url_path",
    "holds_lock",
    "move_with_sidecars",
    "private_file",
    "release_lock",
    "same_file",
    "try_lock",
    "write_atomically",
    "write_text_atomically",
]

_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)


def _refuse_link(path: Path) -> UsageError:
    return UsageError(
        f"{path} is a symbolic link: batch-engage does not write through a link it did not make; remove it"
    )


def _open_private(path: Path, flags: int) -> int:
    """``path`` opened (created owner-only if missing) without following a link; its mode made 0600."""
    try:
        fd = os.open(path, flags | os.O_CREAT | _NOFOLLOW, 0o600)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise _refuse_link(path) from None
        raise
    try:
        os.fchmod(fd, 0o600)
    except BaseException:
        os.close(fd)
        raise
    return fd


def private_file(path: Path) -> None:
    """Create ``path`` (if missing) readable and writable by its owner only; a link there is refused."""
    path.parent.mkdir(parents=True, exist_ok=True)
    os.close(_open_private(path, os.O_WRONLY))


def write_atomically(path: str | Path, write: Callable[[Path], object]) -> Path:
    """Have ``write`` fill a fresh owner-only temporary file beside ``path``, then put it in ``path``'s place.

    The temporary file has a random name and is made with ``O_EXCL``, so a link planted at a
    predictable name (``<path>.tmp``) is never written through; on any failure it is removed.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        write(tmp)
        os.chmod(tmp, 0o600)
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    return target


def write_text_atomically(path: str | Path, text: str) -> Path:
    """``text`` written to ``path`` (UTF-8) by :func:`write_atomically`: owner-only, whole or not at all."""
    return write_atomically(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


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
    """Take an exclusive ``flock`` on ``lock_path`` (owner-only) without waiting: its descriptor, or None if held.

    A link at ``lock_path`` is refused, never followed (its target is neither created nor chmod-ed).
    """
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    fd = _open_private(lock_path, os.O_RDWR)
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
    try:
        fd = os.open(lock_path, os.O_RDONLY | _NOFOLLOW)
    except OSError:
        # Missing, or a link nobody of ours made (try_lock refuses those): not held by a run.
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return False
    finally:
        os.close(fd)


def check_writable(path: str | Path, what: str) -> list[Path]:
    """Prove ``path`` can be written (a file made and removed in its folder); the folders it had to create.

    Refused, naming ``what``: a link at ``path``, a folder at ``path``, a path through a file,
    and a folder that cannot be written (read-only, immutable, not ours). Missing folders are
    created (the one rule for every output), and returned so the caller can say so.
    """
    target = Path(os.path.abspath(path))
    if target.is_symlink():
        raise UsageError(f"{what} {target} is a symbolic link; write the file elsewhere or remove the link")
    if target.is_dir():
        raise UsageError(f"{what} {target} is a folder; name a file")
    missing: list[Path] = []
    folder = target.parent
    while not folder.exists() and not folder.is_symlink():
        missing.append(folder)
        folder = folder.parent
    if not folder.is_dir():
        kind = "a broken link" if folder.is_symlink() and not folder.exists() else "a file"
        raise UsageError(f"{what} {target}: {folder} is {kind}, not a folder")
    try:
        for made in reversed(missing):
            made.mkdir()
        fd, probe = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".probe", dir=target.parent)
        os.close(fd)
        os.unlink(probe)
        if target.exists() and not os.access(target, os.W_OK):
            raise PermissionError(errno.EACCES, "the file is not writable")
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise UsageError(f"{what} {target}: cannot write there ({reason})") from None
    return list(reversed(missing))


def file_url_path(name: str) -> str | None:
    """The local path a ``file://`` URL names (``file:///data/c.csv``); None for any other URL."""
    parts = urlsplit(name)
    if parts.scheme.lower() != "file" or parts.netloc not in ("", "localhost"):
        return None
    return url2pathname(parts.path)
