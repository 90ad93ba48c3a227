"""Everything that can go wrong, as one exception tree.

::

    BatchEngageError
    ├── UsageError                  exit 2: the job cannot start; nothing was sent
    │   ├── ConfigError             a job-file key or flag is wrong (names the key)
    │   ├── InputFileError          the input file is unreadable (names file, line, column)
    │   ├── CredentialsError        no usable credentials, or http:// to a non-loopback host
    │   └── CheckpointMismatch      the checkpoint belongs to another job or Twilio, or --restart lacks --yes
    ├── TryLater                    exit 75: nothing wrong, but not now
    │   ├── CheckpointLocked        another process holds the checkpoint
    │   ├── PeriodUnsettled         the previous period's possibly-sent contacts could not be settled
    │   ├── HoldLost                the run's lease on the job is stale: a request about to leave stays
    │   └── Stopped                 a stop ended a wait: the run winds down, the same command later goes on
    ├── StorageFailed               exit 74 (75 when transient): the checkpoint could not commit
    ├── OutputFailed                exit 74: an output could not be written after sending began
    └── StudioError                 an answer (or non-answer) from Studio for one request
        ├── RetrySafe               never processed by Twilio: send again after a pause
        │   ├── RateLimited         429 / 20429, maybe with Retry-After
        │   └── NotConnected        connect error, DNS failure: the request never left
        ├── PossiblySent            may have created a run: reconcile before any re-send
        │   ├── ServerError         5xx
        │   └── AnswerLost          read timeout, or the connection dropped after the write
        ├── Rejected                4xx other than the above: the row fails, no retry
        │   └── AlreadyActive       409 / 20409: the contact already has an active run
        └── Fatal                   the whole run is wrong: stop it, exit 3
            ├── AuthFailed          401 / 403 / 20003
            ├── FlowNotFound        404 on the Flow / 20404, or nothing published
            ├── FlowUnwired         the Flow's REST API trigger leads to no widget
            └── RepliesLost         the Flow waits for replies that go to another Flow or nowhere

``client.classify_response`` and ``client.classify_exception`` turn an answer into a
``StudioError`` (the table in ``twilio/classify.py``); the dispatcher turns that into a row's
outcome; ``exits`` maps a finished run, a finished collect, or a ``BatchEngageError``
that stopped a command, to its exit code.
"""

from __future__ import annotations

__all__ = [
    "AlreadyActive",
    "AnswerLost",
    "AuthFailed",
    "BatchEngageError",
    "CheckpointLocked",
    "CheckpointMismatch",
    "ConfigError",
    "CredentialsError",
    "Fatal",
    "FlowNotFound",
    "FlowUnwired",
    "HoldLost",
    "InputFileError",
    "NotConnected",
    "OutputFailed",
    "PeriodUnsettled",
    "PossiblySent",
    "RateLimited",
    "Rejected",
    "RepliesLost",
    "RetrySafe",
    "ServerError",
    "Stopped",
    "StorageFailed",
    "StudioError",
    "TryLater",
    "UsageError",
]


class BatchEngageError(Exception):
    """Base of every error batch-engage raises on purpose."""


class UsageError(BatchEngageError):
    """The job cannot start as given; nothing was sent (exit 2)."""


class ConfigError(UsageError):
    """A job-file key or flag is missing, unknown or of the wrong type."""

    def __init__(self, key: str, message: str) -> None:
        self.key = key
        super().__init__(f"{key}: {message}")


class InputFileError(UsageError):
    """The input file cannot be read as a table of contacts."""

    def __init__(
        self,
        path: str,
        message: str,
        *,
        line: int | None = None,
        column: str | None = None,
    ) -> None:
        self.path = path
        self.line = line
        self.column = column
        where = path
        if line is not None:
            where += f":{line}"
        if column is not None:
            where += f": column {column!r}"
        super().__init__(f"{where}: {message}")


class CredentialsError(UsageError):
    """Credentials are missing or would travel unencrypted."""


class CheckpointMismatch(UsageError):
    """The checkpoint was made for another input, flow, API or mapping."""


class TryLater(BatchEngageError):
    """Nothing is wrong, but the job cannot go on now; the same command later will (exit 75)."""


class CheckpointLocked(TryLater):
    """Another process is running this job's checkpoint."""


class PeriodUnsettled(TryLater):
    """The previous period's possibly-sent contacts could not be settled yet."""


class HoldLost(TryLater):
    """The run's hold on its job went stale (frozen past its lease, maybe taken over): nothing more may leave."""


class Stopped(TryLater):
    """A stop was asked for while the run waited: whatever waited gives up, nothing more is sent."""


class StorageFailed(BatchEngageError):
    """A checkpoint write (or read) failed: the run stops sending; ``transient`` ones pass if tried again later."""

    def __init__(self, message: str, *, transient: bool) -> None:
        self.transient = transient
        super().__init__(message)


class OutputFailed(BatchEngageError):
    """An output could not be written after sending began; the checkpoint keeps what was sent (exit 74)."""


class StudioError(BatchEngageError):
    """One request's unsuccessful answer, or the lack of one."""

    def __init__(
        self,
        message: str,
        *,
        http_status: int | None = None,
        code: int | None = None,
        details: dict[str, object] | None = None,
    ) -> None:
        self.message = message
        self.http_status = http_status
        self.code = code
        self.details = details or {}
        super().__init__(message)


class RetrySafe(StudioError):
    """Twilio never processed the request: it may be sent again."""


class RateLimited(RetrySafe):
    """HTTP 429 / 20429; ``retry_after`` is the server's hint in seconds, if any."""

    def __init__(
        self,
        message: str,
        *,
        retry_after: float | None = None,
        http_status: int | None = 429,
        code: int | None = 20429,
    ) -> None:
        super().__init__(message, http_status=http_status, code=code)
        self.retry_after = retry_after


class NotConnected(RetrySafe):
    """The request never reached Twilio (connect error, DNS failure)."""


class PossiblySent(StudioError):
    """Twilio may have created the run: reconcile before sending again."""


class ServerError(PossiblySent):
    """A 5xx answer."""


class AnswerLost(PossiblySent):
    """The request was written but no answer came back (read timeout, dropped connection)."""


class Rejected(StudioError):
    """Twilio refused this row for good (a 4xx that is not rate limiting or fatal)."""


class AlreadyActive(Rejected):
    """The contact already has an active run on this Flow (409 / 20409)."""

    @property
    def conflicting_sid(self) -> str | None:
        """The SID of the run that is already active, from ``details``."""
        sid = self.details.get("conflicting_execution_sid")
        return sid if isinstance(sid, str) else None


class Fatal(StudioError):
    """An answer that will be the same for every row: stop the run (exit 3)."""


class RepliesLost(Fatal):
    """The Flow waits for replies, but the sender's replies go to another Flow or nowhere."""


class AuthFailed(Fatal):
    """The credentials were refused (401/403, 20003)."""


class FlowNotFound(Fatal):
    """The Flow does not exist for these credentials, or cannot be run."""


class FlowUnwired(Fatal):
    """The Flow's REST API trigger is connected to nothing: every run would end at once."""
