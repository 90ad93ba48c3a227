"""The command's process: it runs :func:`~.main.main`, then ends without tearing the interpreter down."""

from __future__ import annotations

import logging
import os
import sys
import threading
from typing import NoReturn

from .main import main
from .output import unwritable

__all__ = ["entry"]


def entry() -> NoReturn:
    """The ``batch-engage`` command: ``main``, then an exit that skips tearing the interpreter down.

    Finalizing the thousand modules a command loads took 0.1 s of every command (a tenth of ``validate``'s
    wall time on a million rows) and does nothing for an ended one: its files and connections are closed
    inside ``main``. The exit is the usual one whenever something may still want it: a thread still running
    (a pool's idle workers leave only at the interpreter's own exit), a profiler or tracer (they write their
    report then). A program calling ``main`` is left to exit its own way.
    """
    code = main()
    others = [t for t in threading.enumerate() if t is not threading.current_thread() and not t.daemon]
    if others or sys.getprofile() is not None or sys.gettrace() is not None:
        sys.exit(code)
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except ValueError:  # a stream already closed
            pass
        except OSError as exc:
            # A full disk under a redirected output: said, and the exit says so, as a normal exit's would.
            code = unwritable(exc)
    os._exit(code)
