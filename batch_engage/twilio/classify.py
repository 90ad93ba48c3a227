"""Classify Studio's answers: one table maps every HTTP answer and transport error to a result or a ``StudioError``.

Every answer is classified by one table (``classify_response`` and
``classify_exception``), the same one the README prints:

=====================================================  ===================  ==================
answer                                                 error                row becomes
=====================================================  ===================  ==================
2xx with a run SID                                     (none)               sent
2xx without a run SID of this Flow (HTML, empty)       AnswerLost           uncertain
429 / 20429                                            RateLimited          retried
connect error, DNS failure, connect/pool timeout       NotConnected         retried
5xx, whatever code its body names                      ServerError          uncertain
read timeout, connection dropped after the write       AnswerLost           uncertain
an answer aiohttp cannot parse (8 KB header line)      AnswerLost           uncertain
409 / 20409                                            AlreadyActive        already_active
401, 403, 20003                                        AuthFailed           run aborted (3)
404 on the Flow, 20404                                 FlowNotFound         run aborted (3)
any other 4xx                                          Rejected             failed
=====================================================  ===================  ==================

Reads (the Flow, its published revision, lists, one run, a run's Context) use the
same table, except that a 404 on one run or its Context is ``Rejected`` (that run is
gone, the Flow is not), and a 2xx whose body is not a JSON object is ``ServerError``:
the caller retries a read; it never sees a ``ValueError``. The client never retries
by itself, not even a 429: pacing is the caller's.
"""

from __future__ import annotations

import email.utils
import math
import re
import sys
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

import httpx

from ..errors import (
    AlreadyActive,
    AnswerLost,
    AuthFailed,
    FlowNotFound,
    NotConnected,
    RateLimited,
    Rejected,
    ServerError,
    StudioError,
)

__all__ = [
    "Created",
    "Purpose",
    "classify_exception",
    "classify_response",
    "error_code",
    "is_transport_error",
    "json_body",
    "object_body",
    "parse_datetime",
]

# What a request was for: it decides what a 404 means.
Purpose = Literal["create", "flow", "list", "run"]


@dataclass(frozen=True, slots=True)
class Created:
    """A successful create: the run's SID, and when Twilio says it was created."""

    sid: str
    http_status: int
    # As Twilio sent it, read only when asked: only v1's hand-back test needs it.
    created_text: object = None

    @property
    def date_created(self) -> datetime | None:
        """When Twilio says the run was created (aware UTC), None if it does not say."""
        return parse_datetime(self.created_text)


def parse_datetime(value: object) -> datetime | None:
    """Parse Twilio's ISO 8601 (or, defensively, RFC 2822) timestamps to aware UTC."""
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        try:
            parsed = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def _retry_after(value: str | None) -> float | None:
    """Seconds to wait from a Retry-After header: a number of seconds or an HTTP date."""
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        pass
    else:
        return max(0.0, seconds) if math.isfinite(seconds) else None
    when = parse_datetime(value)
    if when is None:
        return None
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def json_body(response: httpx.Response) -> object:
    """The body as JSON, or None when it is not JSON at all."""
    try:
        return response.json()
    except (ValueError, UnicodeDecodeError, RecursionError):
        return None


_MAX_CODE = 2**31  # PostgreSQL's integer
# An Execution's SID, and an Engagement's (Studio names both FN...).
_RUN_SID = re.compile(r"FN[0-9a-fA-F]{32}")
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def storable(text: str) -> str:
    """``text`` as every store takes it: a lone surrogate (JSON's ``\\ud800``) and NUL become U+FFFD.

    A server's words reach the journal: SQLite cannot read such a line back, PostgreSQL refuses to write it.
    """
    # JSON decodes a valid pair into one character: a surrogate left in a str is a lone one.
    return _UNSTORABLE.sub("\ufffd", text)


def error_code(value: object) -> int | None:
    """An error code as an int, from an int or a digit string; ``None`` otherwise."""
    # Twilio sends an int; proxies and RFC 9457 bodies have been seen sending "20429".
    # Kept to what every store's integer column holds: a server's "code" is untrusted (a 10**30 became a REAL in
    # SQLite's journal, which no read could then load; "²" passes isdigit and int() refuses it).
    if isinstance(value, bool):
        return None
    if isinstance(value, str) and value.strip().isascii() and value.strip().isdigit():
        value = int(value.strip())
    if isinstance(value, int) and 0 <= value < _MAX_CODE:
        return value
    return None


def _error_body(response: httpx.Response) -> tuple[int | None, str, dict[str, Any]]:
    """Twilio's ``{code, message, more_info, status, details}``, or RFC 9457's ``{title, detail}``, read defensively."""
    body = json_body(response)
    fallback = f"HTTP {response.status_code} {response.reason_phrase}".strip()
    if not isinstance(body, dict):
        return None, fallback, {}
    message = next(
        (text for text in (body.get(k) for k in ("message", "detail", "title")) if isinstance(text, str) and text),
        fallback,
    )
    message = storable(message)
    details = body.get("details")
    if not isinstance(details, dict):
        return error_code(body.get("code")), message, {}
    # Its conflicting run's SID is kept as a contact's.
    return (
        error_code(body.get("code")),
        message,
        {k: storable(v) if isinstance(v, str) else v for k, v in details.items()},
    )


def classify_response(response: httpx.Response, *, what: Purpose = "create", flow_sid: str | None = None) -> Created:
    """Return a ``Created`` for a 2xx; raise the ``StudioError`` the table above names otherwise.

    A create's 2xx is believed only when it names a run (``FN`` and 32 hex digits) of ``flow_sid``, where it
    names a Flow: an answer about something else (a proxy's, a desynchronized connection's) makes no row sent.
    """
    status = response.status_code
    if 200 <= status < 300:
        body = json_body(response)
        sid = body.get("sid") if isinstance(body, dict) else None
        if not isinstance(body, dict) or not isinstance(sid, str) or not sid:
            # A 2xx we cannot read may still have created a run: possibly sent, never a crash.
            raise AnswerLost(f"HTTP {status} without a run SID in its body", http_status=status)
        if what == "create" and not _RUN_SID.fullmatch(sid):
            raise AnswerLost(f"HTTP {status} naming {storable(sid)[:40]!r}, not a run's SID", http_status=status)
        named = body.get("flow_sid")
        if flow_sid is not None and isinstance(named, str) and named != flow_sid:
            raise AnswerLost(f"HTTP {status} naming a run of another Flow ({storable(named)[:40]})", http_status=status)
        return Created(sid=storable(sid), http_status=status, created_text=body.get("date_created"))
    code, message, details = _error_body(response)
    kw: dict[str, Any] = {"http_status": status, "code": code, "details": details}
    if status >= 500:
        # Whatever its body's code says (a 503 saying 20429, a 500 saying 20003), a 5xx may have been processed.
        raise ServerError(message, **kw)
    if status == 429 or code == 20429:
        raise RateLimited(message, retry_after=_retry_after(response.headers.get("Retry-After")), http_status=status)
    if status in (401, 403) or code == 20003:
        raise AuthFailed(
            f"Twilio refused the credentials ({code or status}: {message}); check "
            "TWILIO_API_KEY/TWILIO_API_SECRET or TWILIO_ACCOUNT_SID/TWILIO_AUTH_TOKEN",
            **kw,
        )
    if status == 404 and what != "run" and (what != "list" or code == 20404):
        raise FlowNotFound(
            f"the Flow was not found ({code or status}: {message}); check flow.sid and that the "
            "credentials belong to the Flow's account",
            **kw,
        )
    if status == 409 and code == 20409:
        raise AlreadyActive(message, **kw)
    raise Rejected(message, **kw)


def is_transport_error(exc: Exception) -> bool:
    """Whether ``exc`` is httpx's transport error, or one of aiohttp's (loaded by then: its transport raised it)."""
    aiohttp = sys.modules.get("aiohttp")
    return isinstance(exc, httpx.HTTPError) or (aiohttp is not None and isinstance(exc, aiohttp.ClientError))


def classify_exception(exc: Exception) -> StudioError:
    """Map a transport error to never-sent (``NotConnected``) or possibly-sent (``AnswerLost``).

    ``exc`` is httpx's, or aiohttp's own where httpx-aiohttp lets one through unmapped: an answer it could not
    parse (a header line over 8 KB, a bad status line or Content-Length) came after the request was written.
    """
    import aiohttp  # noqa: PLC0415 - a command that never connects (validate) is spared loading it

    cause = exc if isinstance(exc, aiohttp.ClientError) else exc.__cause__
    if isinstance(cause, aiohttp.ClientError):
        # httpx-aiohttp maps every aiohttp connection error to ConnectTimeout, including
        # a connection dropped after the body was written: judge by the real cause.
        if isinstance(cause, aiohttp.ClientConnectorError | aiohttp.ConnectionTimeoutError):
            return NotConnected(f"could not connect: {cause}")
        return AnswerLost(f"no answer: {type(cause).__name__}: {cause}")
    if isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout | httpx.PoolTimeout | httpx.UnsupportedProtocol):
        return NotConnected(f"could not connect: {type(exc).__name__}: {exc}")
    return AnswerLost(f"no answer: {type(exc).__name__}: {exc}")


def object_body(response: httpx.Response, *, what: Purpose) -> dict[str, Any]:
    """A read's JSON object: a non-2xx raises by the table; a 2xx that is not an object is a ``ServerError``."""
    if not 200 <= response.status_code < 300:
        classify_response(response, what=what)
    body = json_body(response)
    if not isinstance(body, dict):
        raise ServerError(
            f"GET {response.request.url.path}: HTTP {response.status_code} with a body that is not a JSON object",
            http_status=response.status_code,
        )
    return body
