"""When the run's own storage fails: what kind of failure it is, lock waits worth sitting out, and one place that
holds the first failure so every part of the run stops sending before its next request.

A write that cannot commit must never be followed by a request whose intent it would have
held. So every write of the run goes through :meth:`Storage.commit`: a lock held by another
connection is waited out (with a log line) for ``lock_wait`` seconds; anything else, or a lock
that outlasts that, is recorded once as the run's failure. From then on the dispatcher's
``stopping()`` is true, and the run ends with 75 (tried again later it will finish) or 74 (the
disk or database is broken: someone has to look).
"""

from __future__ import annotations

import asyncio
import errno
import sqlite3
import time
from collections.abc import Awaitable, Callable
from typing import Literal, TypeVar

import structlog

from ..errors import Stopped, StorageFailed, TryLater
from .offloop import abandoned, off_loop

__all__ = ["DEFAULT_LOCK_WAIT", "Storage", "classify", "is_storage_error"]

T = TypeVar("T")
Kind = Literal["lock", "transient", "broken"]

DEFAULT_LOCK_WAIT = 60.0
# A call to the storage that has not answered in this long is abandoned (a frozen database server, a proxy that
# stopped forwarding: TCP keepalives cannot see a peer whose kernel still answers). PostgreSQL's statement
# timeout is the same, so a healthy server always answers first.
CALL_DEADLINE = 30.0
# After a stop, a call that has not answered in this long is abandoned: a stop ends the run within about 2 s.
AFTER_STOP = 0.5
# Once one call hung and was abandoned, later ones (the last outcomes, the journal for the results) get this long.
AFTER_HUNG = 0.1
_TICK = 0.1
_FIRST_RETRY, _LONGEST_RETRY = 0.1, 2.0

# SQLSTATEs (PostgreSQL) of a lock another session holds: worth waiting for.
_PG_LOCK = ("55P03", "40001", "40P01")
# Classes that pass when tried again later: connection (08), rolled back (40), operator intervention (57:
# a cancelled statement, a server shutting down), too many connections.
_PG_TRANSIENT = ("08", "40", "57", "53300")
_BROKEN_ERRNOS = {errno.ENOSPC, errno.EROFS, errno.EACCES, errno.EPERM, errno.EIO, errno.EDQUOT}

log = structlog.get_logger(__name__)


def _sqlstate(exc: BaseException) -> str | None:
    for e in (exc, exc.__cause__, exc.__context__):
        state = getattr(e, "sqlstate", None)
        if isinstance(state, str):
            return state
    return None


def _pg_kind(state: str) -> Kind:
    if state in _PG_LOCK:
        return "lock"
    return "transient" if state.startswith(_PG_TRANSIENT) else "broken"


def classify(exc: BaseException) -> Kind:
    """``lock`` (another connection holds it: wait), ``transient`` (try again later: 75), ``broken`` (74)."""
    state = _sqlstate(exc)
    if state is not None:
        return _pg_kind(state)
    if isinstance(exc, sqlite3.OperationalError):
        text = str(exc).lower()
        if "locked" in text or "busy" in text:
            return "lock"
        return "broken"
    if isinstance(exc, OSError):
        return "broken" if exc.errno in _BROKEN_ERRNOS else "transient"
    if isinstance(exc, TryLater):
        return "transient"
    return "broken"


def is_storage_error(exc: BaseException) -> bool:
    """Whether ``exc`` came from the run's storage (a database, the disk), not from a bug or from Studio."""
    if isinstance(exc, StorageFailed | sqlite3.Error | OSError):
        return True
    if isinstance(exc, TryLater) and not isinstance(exc, Stopped):
        return True
    return _sqlstate(exc) is not None


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


class Storage:
    """The run's writes, lock waits bounded, and the first failure that stopped it."""

    def __init__(
        self,
        *,
        lock_wait: float = DEFAULT_LOCK_WAIT,
        wait: Callable[[float], Awaitable[None]] | None = None,
        stopping: Callable[[], bool] = lambda: False,
    ) -> None:
        self.lock_wait = lock_wait
        self._wait = wait or asyncio.sleep
        self._stopping = stopping
        self.failure: StorageFailed | None = None
        self.sending_began = False
        self.deadline = CALL_DEADLINE
        self.hung = False

    def fail(self, failure: StorageFailed) -> StorageFailed:
        """Hold ``failure`` as the run's (the first one wins) and log it once."""
        if self.failure is None:
            self.failure = failure
            log.error("checkpoint.failed", reason=str(failure), transient=failure.transient)
        return self.failure

    async def _answer(self, what: str, fn: Callable[..., T], *args: object) -> T:
        """``fn(*args)`` off the loop, given up on (``StorageFailed``) past the deadline or a second after a stop."""
        call = asyncio.ensure_future(off_loop(fn, *args))
        started = time.monotonic()
        stopped_at: float | None = None
        while True:
            done, _ = await asyncio.wait({call}, timeout=_TICK)
            if done:
                return call.result()
            now = time.monotonic()
            if self._stopping():
                stopped_at = stopped_at or now
            patience = AFTER_HUNG if self.hung else AFTER_STOP
            if now - started >= self.deadline or (stopped_at is not None and now - stopped_at >= patience):
                call.cancel()
                self.hung = True
                abandoned(now)
                waited = "after the stop" if stopped_at is not None else f"in {self.deadline:g} s"
                message = f"{what}: the checkpoint did not answer {waited}; abandoned (the next run settles it)"
                raise self.fail(StorageFailed(message, transient=True))

    def failed(self, what: str, exc: BaseException) -> StorageFailed:
        """Record ``exc`` (raised by ``what``) as the run's failure."""
        if isinstance(exc, StorageFailed):
            return self.fail(exc)
        kind = classify(exc)
        return self.fail(StorageFailed(f"{what} failed: {_one_line(exc)}", transient=kind != "broken"))

    async def commit(self, what: str, fn: Callable[..., T], *args: object, after_failure: bool = False) -> T:
        """Run the write ``fn(*args)`` off the loop; wait out another holder's lock; raise ``StorageFailed``.

        ``after_failure``: try even when the run already failed (recording what was sent is still worth it).
        """
        if self.failure is not None and not after_failure:
            raise self.failure
        started = time.monotonic()
        delay = _FIRST_RETRY
        while True:
            try:
                return await self._answer(what, fn, *args)
            except Exception as exc:
                if classify(exc) != "lock":
                    raise self.failed(what, exc) from exc
                waited = time.monotonic() - started
                if waited >= self.lock_wait or self._stopping():
                    message = (
                        f"{what}: the checkpoint stayed locked by another connection for {waited:.0f} s "
                        f"(output.lock_wait = {self.lock_wait:g} s); nothing more was sent"
                    )
                    raise self.fail(StorageFailed(message, transient=True)) from exc
                log.warning(
                    "checkpoint.locked",
                    what=what,
                    waited_seconds=round(waited, 1),
                    retry_in=round(delay, 2),
                    gives_up_after=self.lock_wait,
                    reason=_one_line(exc),
                )
                # Real time: the other holder's lock is released on the real clock.
                await self._wait(min(delay, max(0.0, self.lock_wait - waited)))
                delay = min(delay * 2, _LONGEST_RETRY)
