"""An unreachable Studio is named, and given up on: the run's phases run under a watch that logs the host, the
cause and the next try within seconds (above the progress bar), ends the run after ``send.unreachable_timeout``
(exit 75, saying how much was sent), and cuts a stopped run off when nothing answers any more.

Real time throughout: the network's silence is real, whatever clock the run keeps.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Coroutine
from typing import Any

import structlog

from ..control import RunControl
from ..twilio import Reach

__all__ = ["CUT_AFTER_STOP", "NOTICE_AFTER", "watched"]

# A request with no answer for this long names the host (a port that accepts and never answers).
NOTICE_AFTER = 4.0
# The warning is repeated this often while Studio stays silent.
REPEAT = 10.0
# After a stop, a run whose requests get no answer for this long is cut off (they stay possibly sent).
CUT_AFTER_STOP = 0.5
_TICK = 0.1

log = structlog.get_logger(__name__)


class _Watch:
    def __init__(
        self, reach: Reach, control: RunControl, timeout: float, sent: Callable[[], int], give_up: Callable[[str], None]
    ) -> None:
        self.give_up = give_up
        self.reach = reach
        self.control = control
        self.timeout = timeout
        self.sent = sent
        self.told: float | None = None
        self.stop_seen: float | None = None
        self.gave_up: str | None = None

    def look(self, now: float) -> None:
        """Name a silent Studio (once every REPEAT seconds), and give up on it after the timeout."""
        since = self.reach.silent_since(hung_after=NOTICE_AFTER)
        if since is None:
            self.told = None
            return
        cause = self.reach.describe_cause(hung_after=NOTICE_AFTER)
        if self.told is None or now - self.told >= REPEAT:
            self.told = now
            next_try = self.reach.next_try
            log.warning(
                "studio.unreachable",
                host=self.reach.host,
                cause=cause,
                silent_seconds=round(now - since, 1),
                next_try_in=round(next_try - now, 1) if next_try is not None and next_try > now else None,
                gives_up_in=round(max(0.0, self.timeout - (now - since)), 1),
                message=f"no answer from Studio at {self.reach.host}: {cause}",
            )
        if now - since >= self.timeout and self.gave_up is None:
            n = self.sent()
            sent = "nothing was sent" if n == 0 else f"{n} contacts were sent before"
            self.gave_up = (
                f"Studio at {self.reach.host} was unreachable for {self.timeout:g} s "
                f"(send.unreachable_timeout; {cause}); {sent}"
            )
            log.error("run.unreachable", host=self.reach.host, reason=self.gave_up)
            self.give_up(self.gave_up)
            self.control.request_stop()

    def cut_off(self, now: float) -> bool:
        """Whether a stopped run should stop waiting: nothing answered in the second after the stop."""
        if not self.control.stopping:
            return False
        self.stop_seen = self.stop_seen or now
        return now - self.stop_seen >= CUT_AFTER_STOP and self.reach.waiting_without_answer(self.stop_seen)


async def watched(
    phases: Coroutine[Any, Any, bool],
    reach: Reach,
    control: RunControl,
    *,
    give_up_after: float,
    sent: Callable[[], int],
    gave_up: Callable[[str], None],
) -> bool:
    """Run ``phases`` under the watch: what it returned, or True when cut off; ``gave_up`` hears why, if so."""
    task = asyncio.ensure_future(phases)
    watch = _Watch(reach, control, give_up_after, sent, gave_up)
    try:
        while True:
            done, _ = await asyncio.wait({task}, timeout=_TICK)
            if done:
                return task.result()
            now = time.monotonic()
            watch.look(now)
            if watch.cut_off(now):
                log.warning(
                    "run.cut_off",
                    host=reach.host,
                    message="no answer came after the stop; the requests in flight are settled by the next run",
                )
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
                return True
    except asyncio.CancelledError:
        task.cancel()
        raise
