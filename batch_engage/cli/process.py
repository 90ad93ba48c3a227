"""The command's process: it runs :func:`~.main.main`, then ends without tearing the interpreter down."""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import threading
from typing import NoReturn

from .main import main

__all__ = ["entry"]


def entry() -> NoReturn:
    """The ``batch-engage`` command: ``main``, then an exit that skips tearing the interpreter down.

    Finalizing the thousand modules a command loads took 0.1 s of every command (a tenth of ``validate``'s
    wall time on a million rows) and does nothing for an ended one: its files and connections are closed
    inside ``main``; here its other threads are waited for, its log handlers and output flushed, as a normal
    exit would. A program calling ``main`` is left to exit its own way.
    """
    code = main()
    for thread in threading.enumerate():
        if thread is not threading.current_thread() and not thread.daemon:
            thread.join()
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):  # a reader that went away, a stream closed
            stream.flush()
    os._exit(code)
