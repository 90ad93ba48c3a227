"""GETs that push through: paced like creates, retried on 429, 5xx and network errors (Retry-After honoured).

A read changes nothing at Twilio, so every failure but a refusal (4xx) is worth another
try; only when ``attempts`` or ``max_backoff`` are spent does the caller see the error.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

import structlog

from ..errors import PossiblySent, RetrySafe, StudioError
from .pacing import Pacer
from .policy import backoff

__all__ = ["READ_ATTEMPTS", "PacedReads"]

READ_ATTEMPTS = 12
"""Tries for one read: a GET changes nothing at Twilio, so it is worth more tries than a create."""

T = TypeVar("T")
log = structlog.get_logger(__name__)


class PacedReads:
    """Run read calls through the run's pacer, retrying what a later try may fix."""

    def __init__(
        self,
        pacer: Pacer,
        *,
        sleep: Callable[[float], Awaitable[None]],
        attempts: int,
        max_backoff: float,
        on_request: Callable[[], None] | None = None,
        on_retry: Callable[[float], None] | None = None,
    ) -> None:
        self._pacer = pacer
        self._sleep = sleep
        self._attempts = max(1, attempts)
        self._max_backoff = max_backoff
        self._on_request = on_request
        self._on_retry = on_retry
        self.requests = 0

    async def call(self, what: str, fn: Callable[[], Awaitable[T]]) -> T:
        """Call ``fn`` until it answers; raise its last ``StudioError`` once the retries are spent."""
        waited = 0.0
        for attempt in range(1, self._attempts + 1):
            sent_at = await self._pacer.acquire()
            self.requests += 1
            if self._on_request is not None:
                self._on_request()
            try:
                answer = await fn()
            except (RetrySafe, PossiblySent) as exc:
                delay = backoff(exc, attempt)
                if attempt == self._attempts or waited + delay > self._max_backoff:
                    raise
                waited += delay
                log.debug("read.retry", what=what, attempt=attempt, delay=round(delay, 3), reason=type(exc).__name__)
                if self._on_retry is not None:
                    self._on_retry(delay)
                await self._sleep(delay)
            else:
                # Settling a resumed run reads hundreds of runs before its first create: they ramp the pace too.
                self._pacer.answered(sent_at)
                return answer
        raise StudioError(f"{what}: no attempt was made")  # pragma: no cover - the loop always returns or raises
