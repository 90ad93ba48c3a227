"""A stop before the command has started: SIGINT or SIGTERM while Python is still importing (seconds on a
busy machine) ends the ``batch-engage`` command with exit 75 and one line, never a traceback.

Only the command installs this (its own process, its main thread, handlers still Python's defaults);
a program that imports the library keeps its signals as they were. The run replaces these handlers
with its own stop button as soon as its event loop starts.

What else the command's process does before its imports lives here too: structlog imported without rich
(:func:`structlog_without_rich`).
"""

from __future__ import annotations

import contextlib
import gc
import itertools
import os
import signal
import sys
import threading
from collections.abc import Iterator
from types import FrameType

__all__ = ["EXIT_STOPPED_EARLY", "imported", "stop_before_start", "structlog_without_rich"]

EXIT_STOPPED_EARLY = 75  # exits.EXIT_TEMPFAIL, not imported: this runs before anything heavy is loaded


def _is_the_command() -> bool:
    argv = getattr(sys, "orig_argv", sys.argv)
    if os.path.basename(sys.argv[0] if sys.argv else "") == "batch-engage":
        return True
    return any(a == "-m" and b == "batch_engage" for a, b in itertools.pairwise(argv))


def _stopped(signum: int, frame: FrameType | None) -> None:
    # Not SystemExit: raised inside an import's bookkeeping it is swallowed, and the command would go on.
    # Nothing is open yet, so there is nothing to close.
    sys.stderr.write(f"batch-engage: stopped by {signal.Signals(signum).name} before the run began; nothing was sent\n")
    sys.stderr.flush()
    os._exit(EXIT_STOPPED_EARLY)


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def imported() -> None:
    """The imports are done: from now on a stop is a ``KeyboardInterrupt`` the command turns into exit 75.

    In the command's own process, what the imports made lives as long as the process does, so the
    garbage collector stops walking it (``gc.freeze``): each of its full passes, and the last one at
    exit, would otherwise visit every function and class of every module (a tenth of a second of
    ``validate``'s CPU on a million rows). Nor does it walk them while they are being made: it is off
    from :func:`stop_before_start` until here.
    """
    if signal.getsignal(signal.SIGINT) is _stopped:
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, _interrupt)
        gc.freeze()
        gc.enable()


def stop_before_start() -> None:
    """In the command's process: until the run takes over, a stop signal exits 75 with one line."""
    if not _is_the_command() or threading.current_thread() is not threading.main_thread():
        return
    if signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
        return
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, _stopped)
    # Importing makes a few hundred thousand objects and no garbage worth a pass: imported() turns it back on.
    gc.disable()


@contextlib.contextmanager
def structlog_without_rich() -> Iterator[None]:
    """In the command's process, structlog is imported as if rich were not installed.

    structlog loads rich's traceback and pretty-printer (with pygments and attrs) at import, to render
    exceptions in console logs: a tenth of a second of every command, and the command never shows a
    traceback. Its plain renderer stands in. A program that imports the library keeps structlog's own choice.
    """
    if not _is_the_command() or "rich" in sys.modules or "structlog" in sys.modules:
        yield
        return
    sys.modules["rich"] = None  # type: ignore[assignment]  # "import rich" now fails, as when it is absent
    try:
        yield
    finally:
        if sys.modules.get("rich", 0) is None:
            del sys.modules["rich"]
