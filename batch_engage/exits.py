"""Every exit code, and every mapping to one: a finished run, a finished collect, an error that stopped a command.

::

    0   EXIT_OK           everything done
    1   EXIT_SOME_FAILED  some rows failed, were invalid or stay uncertain (collect: some runs failed)
    2   EXIT_USAGE        the command cannot start as given (UsageError); nothing was sent
    3   EXIT_ABORTED      the run was stopped by a fatal answer or another BatchEngageError
    74  EXIT_IOERR        storage failed after sending began (OutputFailed, StorageFailed); nothing sent is lost;
                          or the command's own output could not be written (cli.output.unwritable)
    75  EXIT_TEMPFAIL     not now: stopped early, locked, unsettled, runs still active; the same command later
"""

from __future__ import annotations

from collections.abc import Mapping

from .errors import BatchEngageError, OutputFailed, StorageFailed, TryLater, UsageError

__all__ = [
    "EXIT_ABORTED",
    "EXIT_IOERR",
    "EXIT_OK",
    "EXIT_SOME_FAILED",
    "EXIT_TEMPFAIL",
    "EXIT_USAGE",
    "collect_exit_code",
    "exit_code_for",
    "exit_code_for_error",
    "storage_exit_code",
]

EXIT_OK, EXIT_SOME_FAILED, EXIT_USAGE, EXIT_ABORTED, EXIT_TEMPFAIL = 0, 1, 2, 3, 75
EXIT_IOERR = 74


def exit_code_for(
    counts: Mapping[str, int], *, aborted: bool = False, stopped_early: bool = False, io_error: bool = False
) -> int:
    """A run's (or a dry run's) exit code: 3 aborted, 74 storage failed, 75 stopped early or waiting, 1 some
    failed/uncertain, else 0."""
    if aborted:
        return EXIT_ABORTED
    if io_error:
        return EXIT_IOERR
    if stopped_early or counts.get("waiting_active", 0):
        return EXIT_TEMPFAIL
    if counts.get("failed", 0) or counts.get("invalid", 0) or counts.get("uncertain", 0):
        return EXIT_SOME_FAILED
    return EXIT_OK


def storage_exit_code(transient: bool, sending_began: bool) -> int:
    """A run whose checkpoint failed: 75 if trying later will pass, else 74 once sending began, 2 before."""
    if transient:
        return EXIT_TEMPFAIL
    return EXIT_IOERR if sending_began else EXIT_USAGE


def collect_exit_code(counts: Mapping[str, int], *, aborted: bool = False, stopped_early: bool = False) -> int:
    """A collect's exit code: 3 aborted; 75 some run active or not collected; 1 some failed; else 0."""
    if aborted:
        return EXIT_ABORTED
    if stopped_early or counts.get("active", 0) or counts.get("not_collected", 0):
        return EXIT_TEMPFAIL
    if counts.get("failed", 0):
        return EXIT_SOME_FAILED
    return EXIT_OK


def exit_code_for_error(error: BatchEngageError | KeyboardInterrupt) -> int:
    """The exit code of a command an exception stopped: 75 TryLater or Ctrl-C, 2 UsageError, 74 OutputFailed or
    StorageFailed (75 when transient), else 3."""
    if isinstance(error, TryLater | KeyboardInterrupt):
        return EXIT_TEMPFAIL
    if isinstance(error, StorageFailed):
        return EXIT_TEMPFAIL if error.transient else EXIT_IOERR
    if isinstance(error, OutputFailed):
        return EXIT_IOERR
    if isinstance(error, UsageError):
        return EXIT_USAGE
    return EXIT_ABORTED
