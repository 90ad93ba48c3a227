"""Which checkpoint a run opens, and, when it resumes one, opening it while the input is being planned.

A resumed million-row job spends about a second planning its input and a third of one reading what
its journal says; neither needs the other, so the second starts first, in a thread of its own. The
checkpoint is locked and bound there exactly as it would be after planning (the same call), and its
states are read under that lock, so no other process can write between the read and the run's use of
it. Only a checkpoint that already exists in this format, without ``--restart`` or ``recover``, is
opened early: then opening changes nothing a refused input would regret (at most the credential it
remembers), and an input that is refused still gets its own answer first.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import threading
from collections.abc import Callable
from functools import partial
from pathlib import Path

import polars as pl

from ..checkpoint import SCHEMA_VERSION, CheckpointStore, checkpoint_meta, is_postgres, open_checkpoint
from ..control import RunControl
from ..errors import Stopped, UsageError
from ..plan import Prepared
from .launch import Launch
from .values import RunOptions

__all__ = ["EarlyOpening", "checkpoint_opening", "opens_early", "plan_while_opening"]

_Opened = tuple[CheckpointStore, pl.DataFrame | None]


def checkpoint_opening(launched: Launch, options: RunOptions, recover: str | None) -> Callable[[], CheckpointStore]:
    """The call that locks, binds and opens this run's checkpoint (``recover``: a run log's token to make it under)."""
    job = launched.spec.job
    extra_meta = {"job_id": job.id, **({"period": job.period} if job.period else {})}
    if recover is not None:
        extra_meta["token"] = recover
    return partial(
        open_checkpoint,
        launched.spec.output.checkpoint,
        launched.fingerprint,
        launched.target,
        restart=options.restart,
        yes=options.yes,
        extra_meta=extra_meta,
    )


def opens_early(location: str, options: RunOptions, *, planned: bool, recover: str | None) -> bool:
    """Whether this run may open its checkpoint (at ``location``) while it plans (``planned``: it reads its input)."""
    if not planned or recover is not None or options.restart or is_postgres(location) or not Path(location).exists():
        return False
    # A format-1 checkpoint is moved aside when opened: that waits for an input known to be good. So does a
    # file that is no checkpoint: the input's own error comes first, as it did before the early open.
    try:
        return checkpoint_meta(location).get("version") == SCHEMA_VERSION
    except UsageError:
        return False


def plan_while_opening(
    plan: Callable[[bool], Prepared],
    opening: Callable[[], CheckpointStore],
    *,
    early: bool,
    then: Callable[[], None] | None = None,
) -> tuple[Prepared, EarlyOpening | Callable[[], CheckpointStore]]:
    """``plan(early)``, with the checkpoint opened meanwhile when ``early``; and what gives the run its checkpoint.

    ``plan`` is told: a run that opens early is a resumed one, which may take the plan its checkpoint keeps.

    ``then``: called in the opening's thread once the checkpoint is open (to load what sending needs).

    An input refused while the checkpoint was opening closes it again, and is the answer.
    """
    if not early:
        return plan(False), opening
    started = EarlyOpening(opening, then)
    try:
        return plan(True), started
    except BaseException:
        started.discard()
        raise


class EarlyOpening:
    """The checkpoint being opened, and its states read, in a thread started now."""

    def __init__(self, opening: Callable[[], CheckpointStore], then: Callable[[], None] | None = None) -> None:
        self._future: concurrent.futures.Future[_Opened] = concurrent.futures.Future()
        threading.Thread(target=self._work, args=(opening, then), name="batch-engage-open", daemon=True).start()

    def _work(self, opening: Callable[[], CheckpointStore], then: Callable[[], None] | None) -> None:
        try:
            cp = opening()
        except BaseException as exc:
            self._future.set_exception(exc)
            return
        try:
            states: pl.DataFrame | None = cp.states()
        except Exception:
            states = None  # read again by the run, where a failing checkpoint is the storage's to report
        self._future.set_result((cp, states))
        if then is not None:
            # The planning still runs: what the first request needs next is loaded meanwhile.
            with contextlib.suppress(Exception):
                then()

    async def result(self, control: RunControl) -> _Opened:
        """The open checkpoint and its states (None: to read again); its refusal raised; a stop meanwhile ends it."""
        waiting = asyncio.wrap_future(self._future)
        while True:
            done, _ = await asyncio.wait({waiting}, timeout=0.1)
            if done:
                return waiting.result()
            if control.stopping:
                # The lock is let go with the process, which now ends (as when opening after planning).
                raise Stopped("stopped while the checkpoint was being opened; nothing was sent")

    def discard(self) -> None:
        """The run does not go on (its input was refused): close the checkpoint once open, whatever it answered."""
        try:
            cp, _ = self._future.result()
        except BaseException:
            return
        with contextlib.suppress(Exception):
            cp.close()
