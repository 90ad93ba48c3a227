"""The suite's ``batch-engage`` processes, forked from one that has already imported the package.

``python forkserver.py SOCKET``, started by ``launch.py`` once a test run (``conftest.pytest_configure``). It imports every module of the
package, prints ``ready`` and serves until its stdin closes (the run is over). Each launch is one
``SOCK_SEQPACKET`` connection: the request (JSON ``{"argv", "env", "cwd"}`` with the child's stdin, stdout and
stderr as passed descriptors), then two answers, ``{"pid": N}`` and, once the child is reaped,
``{"returncode": R}`` counted as ``subprocess`` counts it (``-9`` for SIGKILL).

Why: a ``batch-engage`` process spends 0.4-0.5 s of CPU importing before it does anything, and the suite
starts some sixty of them on two cores (a third of its time over the release before the package layout). A forked child is still a process of its own, with its own pid,
descriptors, environment, folder and exit status: SIGKILL, SIGTERM and two machines at once mean what they
mean for the command. It runs what ``python -m batch_engage`` runs, its argv and signal handlers set as the
command's are.

Forking here is safe: this process never starts a thread or runs a polars query (polars starts its pool of
threads at the first one), and its children do everything after the fork. Importing polars starts jemalloc's
background threads and an idle cleaner; jemalloc forks safely, and children running queries never hung in a
trial of 60 forks.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import pkgutil
import selectors
import signal
import socket
import sys
import time
from typing import Any, NoReturn

import batch_engage

REQUEST_BYTES = 1 << 20


def import_everything() -> None:
    """Every module of the package, so that no child imports one again (a missing optional driver is skipped)."""
    for module in pkgutil.walk_packages(batch_engage.__path__, "batch_engage."):
        if module.name.endswith("__main__"):
            continue
        with contextlib.suppress(ImportError):
            importlib.import_module(module.name)


def serve(path: str) -> None:
    """Fork a child for each request on the socket at ``path`` until stdin closes."""
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    listener.bind(path)
    listener.listen(64)
    selector = selectors.DefaultSelector()
    selector.register(listener, selectors.EVENT_READ, ("accept",))
    selector.register(0, selectors.EVENT_READ, ("stdin",))
    print("ready", flush=True)
    while True:
        for key, _ in selector.select():
            what: tuple[Any, ...] = key.data
            if what[0] == "stdin":
                if not os.read(0, 4096):
                    return
            elif what[0] == "accept":
                conn, _ = listener.accept()
                selector.register(conn, selectors.EVENT_READ, ("request", conn))
            elif what[0] == "request":
                conn = what[1]
                selector.unregister(conn)
                message, fds, _, _ = socket.recv_fds(conn, REQUEST_BYTES, 3)
                if not message or len(fds) != 3:
                    conn.close()
                    continue
                pid = os.fork()
                if pid == 0:
                    child(json.loads(message), fds)
                for fd in fds:
                    os.close(fd)
                pidfd = os.pidfd_open(pid)
                selector.register(pidfd, selectors.EVENT_READ, ("exit", pid, conn, pidfd))
                _answer(conn, {"pid": pid})
            else:
                _, pid, conn, pidfd = what
                selector.unregister(pidfd)
                os.close(pidfd)
                _, status = os.waitpid(pid, 0)
                _answer(conn, {"returncode": os.waitstatus_to_exitcode(status)})
                conn.close()


def _answer(conn: socket.socket, message: dict[str, int]) -> None:
    # OSError: the test let go of this launch; its child still runs to its end, as a Popen's would.
    with contextlib.suppress(OSError):
        conn.send(json.dumps(message).encode())


def child(request: dict[str, Any], fds: list[int]) -> NoReturn:
    """In the forked child: become ``python -m batch_engage ARGV`` in ``cwd`` with ``env``, and exit as it does."""
    code = 1
    try:
        for target, fd in enumerate(fds):
            os.dup2(fd, target)
        os.closerange(3, os.sysconf("SC_OPEN_MAX"))  # the server's socket, connections and pidfds
        for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGCHLD):
            signal.signal(sig, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(request["env"])
        time.tzset()
        sys.path[0] = request["cwd"]  # as ``-m`` puts it
        main = os.path.join(batch_engage.__path__[0], "__main__.py")
        sys.argv = [main, *request["argv"]]
        sys.orig_argv = [sys.executable, "-m", "batch_engage", *request["argv"]]
        from batch_engage.early import stop_before_start

        stop_before_start()  # the command's own process installs its early stop handlers: so does this one
        from batch_engage.cli import entry

        entry()
    except SystemExit as stop:
        code = _exit_status(stop.code)
    except KeyboardInterrupt:
        # As the interpreter ends on an uncaught KeyboardInterrupt: torn down, then killed by SIGINT.
        _tear_down()
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGINT)
    except BaseException:
        import traceback

        traceback.print_exc()
    os._exit(code if _tear_down() else 120)


def _exit_status(code: object) -> int:
    if code is None:
        return 0
    if isinstance(code, int):
        return code & 0xFF
    print(code, file=sys.stderr)
    return 1


def _tear_down() -> bool:
    """What the interpreter's own exit does (``entry`` leaves it to when threads remain): join the threads that are
    not daemons, run the ``atexit`` functions, flush stdout and stderr; False if a flush failed."""
    import atexit
    import threading

    threading._shutdown()  # type: ignore[attr-defined]
    atexit._run_exitfuncs()
    ok = True
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            ok = False
    return ok


if __name__ == "__main__":
    import_everything()
    serve(sys.argv[1])
