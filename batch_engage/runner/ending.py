"""How a run ends: why it stopped (in words, for the summary and every row left ``pending``) and its exit code.

A run that leaves contacts pending says why on each of those rows, so a pipeline that reads
the results never finds a silent ``pending``; and it never exits 0 while any is left.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from ..errors import StorageFailed, StudioError
from ..exits import exit_code_for, storage_exit_code
from ..results import NOT_SENT_YET

__all__ = ["Ending", "ending"]


@dataclass(frozen=True)
class Ending:
    """Why the run stopped (None: it did not stop early), what pending rows say, and the exit code."""

    reason: str | None
    pending_reason: str
    exit_code: int


def ending(
    counts: Mapping[str, int],
    *,
    aborted: StudioError | None,
    failure: StorageFailed | None,
    sending_began: bool,
    stopped_early: bool,
    stop_reason: str | None,
) -> Ending:
    """The run's ending from its counts and what stopped it (abort, storage failure, a stop, Studio unreachable)."""
    if aborted is not None:
        reason = f"aborted: {aborted.message}"
        return Ending(reason, f"not sent: the run was {reason}", exit_code_for(counts, aborted=True))
    if failure is not None:
        reason = f"the checkpoint failed: {failure}"
        again = "; run the same command again to send it" if failure.transient else ""
        return Ending(reason, f"not sent: {reason}{again}", storage_exit_code(failure.transient, sending_began))
    if stopped_early:
        reason = stop_reason or "stopped early"
        code = exit_code_for(counts, stopped_early=True)
        return Ending(reason, f"not sent yet ({reason}): run the same command again to send it", code)
    # Left on purpose (--limit): the exit says done as asked, the rows say what is left.
    return Ending(None, NOT_SENT_YET, exit_code_for(counts))
