"""Storage calls off the event loop: a thread kept for the next call, never a call stuck behind a hung one."""

from __future__ import annotations

import asyncio
import os
import threading
import time

import pytest

from batch_engage.runner import offloop


@pytest.fixture(autouse=True)
def fresh_threads(monkeypatch: pytest.MonkeyPatch) -> offloop._Threads:
    """Each test counts its own threads and abandoned calls, not those of the tests before it."""
    threads = offloop._Threads()
    monkeypatch.setattr(offloop, "_threads", threads)
    return threads


def test_calls_one_after_another_share_one_thread_so_a_capped_run_starts_none_per_contact() -> None:
    """A run with a shared history claims every contact off the loop: one thread serves them all, none per call."""

    async def main() -> list[threading.Thread]:
        # The threads themselves, kept: an ended thread's ident may be handed to the next one.
        return [await offloop.off_loop(threading.current_thread) for _ in range(50)]

    threads = asyncio.run(main())
    assert len({id(t) for t in threads}) == 1
    assert threads[0] is not threading.main_thread()


def test_a_call_never_waits_behind_one_that_hangs_and_the_hung_one_is_known_until_it_returns() -> None:
    """A frozen database holds one thread; the next call runs in another, and only an abandoned call still
    running counts as hanging (the CLI then exits without waiting for it)."""
    release = threading.Event()

    async def main() -> None:
        hung = asyncio.ensure_future(offloop.off_loop(release.wait, 30))
        await asyncio.sleep(0)
        assert await asyncio.wait_for(offloop.off_loop(lambda: "answered"), 5) == "answered"
        assert not offloop.calls_hanging()  # hung, but nobody gave up on it
        offloop.abandoned(time.monotonic())
        assert offloop.calls_hanging()
        release.set()
        assert await asyncio.wait_for(hung, 5) is True

    asyncio.run(main())
    assert not offloop.calls_hanging()


def test_what_a_call_raises_reaches_its_caller_and_the_thread_serves_the_next() -> None:
    """A failed write is the caller's exception (the run's storage failure), and the thread is not lost to it."""

    def broken() -> None:
        raise OSError(28, "No space left on device")

    async def main() -> tuple[threading.Thread, threading.Thread]:
        first = await offloop.off_loop(threading.current_thread)
        with pytest.raises(OSError, match="No space left"):
            await offloop.off_loop(broken)
        return first, await offloop.off_loop(threading.current_thread)

    first, then = asyncio.run(main())
    assert first is then


def test_an_idle_thread_ends_after_its_wait(monkeypatch: pytest.MonkeyPatch, fresh_threads: offloop._Threads) -> None:
    """No thread is left behind by a run that is over: an idle one ends, and a later call starts another."""
    monkeypatch.setattr(offloop, "IDLE_SECONDS", 0.01)
    done = threading.Event()

    async def main() -> None:
        await offloop.off_loop(done.set)

    asyncio.run(main())
    deadline = time.monotonic() + 5
    while fresh_threads.idle and time.monotonic() < deadline:
        threading.Event().wait(0.01)
    assert (fresh_threads.idle, fresh_threads.busy) == (0, 0)
    asyncio.run(main())
    assert done.is_set()


@pytest.mark.skipif(not hasattr(os, "fork"), reason="fork is POSIX-only")
def test_a_forked_child_gets_its_answers_though_its_parent_left_an_idle_thread() -> None:
    """A program that forks after a storage call (multiprocessing's default on Linux): the child's calls are
    answered by threads of its own, not handed to the parent's idle one, which the child does not have."""

    async def ask() -> str:
        return await asyncio.wait_for(offloop.off_loop(lambda: "answered"), 5)

    assert asyncio.run(ask()) == "answered"  # the parent now has an idle thread
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child reports through the pipe
        try:
            os.write(write, asyncio.run(ask()).encode())
        finally:
            os._exit(0)
    os.close(write)
    with os.fdopen(read, "rb") as child:
        said = child.read()
    os.waitpid(pid, 0)
    assert said == b"answered"
