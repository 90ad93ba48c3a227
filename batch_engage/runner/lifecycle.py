"""A run's checkpoint, opened, flushed, read and closed so that a stop always ends the run: each call runs off
the event loop, and one that hangs (a frozen database) is abandoned after a stop instead of holding the run."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

import polars as pl
import structlog

from ..checkpoint import CheckpointStore
from ..control import RunControl
from ..errors import Stopped, StorageFailed
from .failures import Storage
from .offloop import off_loop

__all__ = ["CLOSE_AFTER_STOP", "FLUSH_AFTER_STOP", "close", "flushed", "journal_lines", "opened"]

# After a stop, the last flush gets this long (seconds): a stop must end the run even while a write hangs.
FLUSH_AFTER_STOP = 1.0
CLOSE_AFTER_STOP = 0.5

log = structlog.get_logger(__name__)


async def opened(opening: Callable[[], CheckpointStore], control: RunControl) -> CheckpointStore:
    """Open the checkpoint off the loop (connecting, taking a PostgreSQL lease over): a stop meanwhile ends it."""
    call = asyncio.ensure_future(off_loop(opening))
    while True:
        done, _ = await asyncio.wait({call}, timeout=0.1)
        if done:
            return call.result()
        if control.stopping:
            # The thread may still open it: the lock is let go with the process, which now ends.
            call.cancel()
            raise Stopped("stopped while the checkpoint was being opened; nothing was sent")


async def journal_lines(cp: CheckpointStore, storage: Storage) -> pl.DataFrame:
    """Every journal line, in the columns the results table reads (``result_lines``); a checkpoint that does not
    answer ends the run without one."""
    try:
        return await storage.commit("reading the journal", cp.result_lines, after_failure=True)
    except StorageFailed as exc:
        raise StorageFailed(
            f"{exc}; the results table was not written: `batch-engage report` writes it once the checkpoint answers",
            transient=exc.transient,
        ) from None


async def close(cp: CheckpointStore, control: RunControl, storage: Storage) -> None:
    """Close the checkpoint off the loop; one that hangs (a frozen server) is abandoned: the process still ends."""
    wait = CLOSE_AFTER_STOP if control.stopping or storage.failure is not None else None
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(off_loop(cp.close), wait)


async def flushed(flusher: asyncio.Task[None], control: RunControl) -> None:
    """Wait for the last flush; after a stop, only briefly: a hung write is abandoned (its intents stand)."""
    if not control.stopping:
        await flusher
        return
    done, _ = await asyncio.wait({flusher}, timeout=FLUSH_AFTER_STOP)
    if not done:
        log.warning("checkpoint.abandoned", message="the last outcomes could not be written; the next run settles them")
        flusher.cancel()
