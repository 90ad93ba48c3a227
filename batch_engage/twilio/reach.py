"""Whether Studio answers at all: every request through the run's HTTP client is watched, so a host that
refuses connections, or accepts them and never answers, is named within seconds instead of sitting silent.

Any answer (whatever its status) proves Studio reachable; a transport error (refused, reset, timed out)
or a request that has waited long with no answer since it left says it may not be.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable

import httpx

from ..errors import HoldLost

__all__ = ["Reach", "WatchedTransport"]


class Reach:
    """What the run knows of Studio's reachability: requests under way, the last answer, the last failure."""

    def __init__(self, host: str, *, now: Callable[[], float] = time.monotonic) -> None:
        self.host = host
        self._now = now
        self._ids = itertools.count()
        self.under_way: dict[int, float] = {}
        self.last_answer: float | None = None
        self.failing_since: float | None = None
        self.cause: str | None = None
        self.next_try: float | None = None

    def started(self) -> int:
        """A request leaves: its ticket."""
        ticket = next(self._ids)
        self.under_way[ticket] = self._now()
        return ticket

    def answered(self, ticket: int) -> None:
        """An answer came back: Studio is reachable."""
        self.under_way.pop(ticket, None)
        self.last_answer = self._now()
        self.failing_since = None
        self.cause = None

    def never_left(self, ticket: int) -> None:
        """A request stopped before it was written (the fence): it says nothing of Studio."""
        self.under_way.pop(ticket, None)

    def failed(self, ticket: int, exc: BaseException) -> None:
        """A request failed on the way (no answer): remember since when, and why."""
        # Silent since the failed request left: no answer has come since (an answer clears this).
        started = self.under_way.pop(ticket, self._now())
        if self.failing_since is None:
            self.failing_since = started
        self.cause = _cause(exc)

    def retrying_in(self, seconds: float) -> None:
        """The next try is due in ``seconds``."""
        self.next_try = self._now() + seconds

    def silent_since(self, *, hung_after: float) -> float | None:
        """Since when Studio has not answered (a failure, or a request waiting over ``hung_after`` s); None: fine."""
        if self.failing_since is not None:
            return self.failing_since
        oldest = min(self.under_way.values(), default=None)
        if oldest is None or self._now() - oldest < hung_after:
            return None
        if self.last_answer is not None and self.last_answer > oldest:
            return None
        return oldest

    def waiting_without_answer(self, since: float) -> bool:
        """Whether a request is under way and no answer came back since ``since``."""
        return bool(self.under_way) and (self.last_answer is None or self.last_answer < since)

    def describe_cause(self, *, hung_after: float) -> str:
        """Why Studio looks unreachable, in words."""
        return self.cause or f"a request has had no answer for over {hung_after:g} s"


def _cause(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


class WatchedTransport(httpx.AsyncBaseTransport):
    """``inner``, every request reported to a :class:`Reach`."""

    def __init__(self, inner: httpx.AsyncBaseTransport, reach: Reach) -> None:
        self._inner = inner
        self._reach = reach

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        """Send through ``inner``; an answer or a failure is reported (a cancelled request is neither)."""
        ticket = self._reach.started()
        try:
            response = await self._inner.handle_async_request(request)
        except HoldLost:
            self._reach.never_left(ticket)
            raise
        except Exception as exc:
            self._reach.failed(ticket, exc)
            raise
        except BaseException:
            self._reach.under_way.pop(ticket, None)
            raise
        self._reach.answered(ticket)
        return response

    async def aclose(self) -> None:
        """Close ``inner``."""
        await self._inner.aclose()
