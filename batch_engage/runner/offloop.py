"""Storage calls off the event loop, each in a daemon thread: one left idle by an earlier call, or a new one.

A daemon thread, never ``asyncio.to_thread``'s pool: a stop can abandon a call that hangs (a
frozen database) and the process still exits. A call never waits behind another: when no
thread is idle, a new one starts. A thread idle for ``IDLE_SECONDS`` ends; one kept for the
next call saves its start: a run with a shared history claims every contact off the loop, and
those starts were a fifth of its CPU.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import os
import queue
import threading
from collections.abc import Callable
from typing import TypeVar

__all__ = ["IDLE_SECONDS", "abandoned", "calls_hanging", "off_loop"]

T = TypeVar("T")

IDLE_SECONDS = 2.0
_THREAD_NAME = "batch-engage-storage"


class _Threads:
    """The storage threads: those idle (waiting for a call) and those in a call, counted under one lock."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        """Count anew, with no thread (a forked child has none of its parent's)."""
        # queue.Queue, not SimpleQueue: on Python 3.11 and 3.12 SimpleQueue.get(timeout=...) can wait forever when
        # a put wakes it after its deadline and another thread takes the item first, which this pool does.
        self.calls: queue.Queue[Callable[[], Callable[[], None]]] = queue.Queue()
        self.lock = threading.Lock()
        self.idle = 0
        self.busy = 0
        self.abandoned: list[float] = []

    def start(self, call: Callable[[], Callable[[], None]]) -> None:
        """Hand ``call`` to an idle thread, or to a new one when none is idle.

        ``call`` does the work and returns what hands its answer over, which the thread runs once it counts as idle
        again: the next call, made the moment an answer lands, finds this thread instead of starting another.
        """
        with self.lock:
            if self.idle > 0:
                self.idle -= 1
                self.calls.put(call)
                return
            self.busy += 1
        try:
            threading.Thread(target=self._serve, args=(call,), name=_THREAD_NAME, daemon=True).start()
        except BaseException:
            with self.lock:
                self.busy -= 1
            raise

    def _serve(self, call: Callable[[], Callable[[], None]] | None) -> None:
        while call is not None:
            try:
                answer = call()
            except BaseException:
                with self.lock:
                    self.busy -= 1
                raise
            # Nothing of the last call (its arguments, a journal read) is kept while the thread waits.
            call = None
            with self.lock:
                self.busy -= 1
                self.idle += 1
            answer()
            del answer
            call = self._next()

    def _next(self) -> Callable[[], Callable[[], None]] | None:
        """The next call handed to the idle threads, counted busy; None (no longer idle) after ``IDLE_SECONDS``."""
        try:
            call = self.calls.get(timeout=IDLE_SECONDS)
        except queue.Empty:
            with self.lock:
                # A call handed to the idle threads is put under the lock: taken here, or by another of them.
                try:
                    call = self.calls.get_nowait()
                except queue.Empty:
                    self.idle -= 1
                    return None
        with self.lock:
            self.busy += 1
        return call


_threads = _Threads()


def _after_fork() -> None:
    # A program that forks (multiprocessing's default on Linux) leaves its threads behind: the child's first call
    # would otherwise wait for an idle thread that is not there.
    _threads.reset()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork)


def abandoned(at: float) -> None:
    """A call was given up on at ``at`` (monotonic): it may still hang in its thread."""
    _threads.abandoned.append(at)


def calls_hanging() -> bool:
    """Whether a storage call the run abandoned still hangs (then a clean interpreter exit could wait on it)."""
    with _threads.lock:
        return bool(_threads.abandoned) and _threads.busy > 0


def _settle(future: asyncio.Future[T], value: T | None, error: BaseException | None) -> None:
    if future.done():
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(value)  # type: ignore[arg-type]


async def off_loop(fn: Callable[..., T], *args: object) -> T:
    """``fn(*args)`` in a daemon thread, awaited; see the module's docstring."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[T] = loop.create_future()
    context = contextvars.copy_context()

    def work() -> Callable[[], None]:
        value: T | None = None
        error: BaseException | None = None
        try:
            value = context.run(fn, *args)
        except BaseException as exc:
            error = exc

        def answer() -> None:
            # RuntimeError: the loop is gone, and nobody waits for this answer any more.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(_settle, future, value, error)

        return answer

    _threads.start(work)
    return await future
