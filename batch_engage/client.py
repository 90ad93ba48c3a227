"""Twilio Studio v1/v2 over an injected ``httpx.AsyncClient``: create, list, fetch the Flow.

Every answer is classified by one table (``classify_response`` and
``classify_exception``), the same one the README prints:

=====================================================  ===================  ==================
answer                                                 error                row becomes
=====================================================  ===================  ==================
2xx                                                    (none)               sent
429 / 20429                                            RateLimited          retried
connect error, DNS failure, connect/pool timeout       NotConnected         retried
5xx                                                    ServerError          uncertain
read timeout, connection dropped after the write       AnswerLost           uncertain
409 / 20409                                            AlreadyActive        already_active
401, 403, 20003                                        AuthFailed           run aborted (3)
404 on the Flow, 20404                                 FlowNotFound         run aborted (3)
any other 4xx                                          Rejected             failed
=====================================================  ===================  ==================
"""

from __future__ import annotations

import email.utils
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import aiohttp
import httpx
import structlog
from httpx_aiohttp import AiohttpTransport

from .errors import (
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
from .twilio_clock import TwilioClock

__all__ = [
    "USER_AGENT",
    "Created",
    "RunRecord",
    "StudioClient",
    "classify_exception",
    "classify_response",
    "make_http_client",
    "parse_datetime",
]

USER_AGENT = "batch-engage/0.1"
LIST_PAGE_SIZE = 1000
MAX_LIST_PAGES = 100_000

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class Created:
    """A successful create: the run's SID, and when Twilio says it was created."""

    sid: str
    http_status: int
    date_created: datetime | None


@dataclass(frozen=True)
class RunRecord:
    """One run as a list endpoint shows it."""

    sid: str
    address: str | None
    date_created: datetime | None
    initiated_by: str | None = None


def parse_datetime(value: object) -> datetime | None:
    """Parse Twilio's ISO 8601 (or, defensively, RFC 2822) timestamps to aware UTC."""
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        try:
            parsed = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    when = parse_datetime(value)
    if when is None:
        return None
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def _error_body(response: httpx.Response) -> tuple[int | None, str, dict[str, Any]]:
    """Twilio's ``{code, message, more_info, status, details}``, read defensively."""
    try:
        body = response.json()
    except (ValueError, UnicodeDecodeError):
        body = None
    if not isinstance(body, dict):
        return None, f"HTTP {response.status_code} {response.reason_phrase}".strip(), {}
    code = body.get("code")
    message = body.get("message")
    details = body.get("details")
    return (
        code if isinstance(code, int) and not isinstance(code, bool) else None,
        message if isinstance(message, str) and message else f"HTTP {response.status_code}",
        details if isinstance(details, dict) else {},
    )


def classify_response(response: httpx.Response, *, what: str = "create") -> Created:
    """Return a ``Created`` for a 2xx; raise the ``StudioError`` the table above names otherwise."""
    status = response.status_code
    if 200 <= status < 300:
        try:
            body = response.json()
        except (ValueError, UnicodeDecodeError):
            body = {}
        sid = body.get("sid") if isinstance(body, dict) else None
        if not isinstance(sid, str):
            # A 2xx we cannot read still created a run: treat it as possibly sent.
            raise AnswerLost(f"HTTP {status} without a run SID", http_status=status)
        return Created(sid=sid, http_status=status, date_created=parse_datetime(body.get("date_created")))
    code, message, details = _error_body(response)
    kw: dict[str, Any] = {"http_status": status, "code": code, "details": details}
    if status == 429 or code == 20429:
        raise RateLimited(message, retry_after=_retry_after(response.headers.get("Retry-After")), http_status=status)
    if status in (401, 403) or code == 20003:
        raise AuthFailed(
            f"Twilio refused the credentials ({code or status}: {message}); check "
            "TWILIO_API_KEY/TWILIO_API_SECRET or TWILIO_ACCOUNT_SID/TWILIO_AUTH_TOKEN",
            **kw,
        )
    if status == 404 and (what not in ("list", "run") or (what == "list" and code == 20404)):
        raise FlowNotFound(
            f"the Flow was not found ({code or status}: {message}); check flow.sid and that the "
            "credentials belong to the Flow's account",
            **kw,
        )
    if status == 409 and code == 20409:
        raise AlreadyActive(message, **kw)
    if status >= 500:
        raise ServerError(message, **kw)
    raise Rejected(message, **kw)


def classify_exception(exc: httpx.HTTPError) -> StudioError:
    """Map a transport error to never-sent (``NotConnected``) or possibly-sent (``AnswerLost``)."""
    cause = exc.__cause__
    if isinstance(cause, aiohttp.ClientError):
        # httpx-aiohttp maps every aiohttp connection error to ConnectTimeout, including
        # a connection dropped after the body was written: judge by the real cause.
        if isinstance(cause, aiohttp.ClientConnectorError | aiohttp.ConnectionTimeoutError):
            return NotConnected(f"could not connect: {cause}")
        return AnswerLost(f"no answer: {type(cause).__name__}: {cause}")
    if isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout | httpx.PoolTimeout | httpx.UnsupportedProtocol):
        return NotConnected(f"could not connect: {type(exc).__name__}: {exc}")
    return AnswerLost(f"no answer: {type(exc).__name__}: {exc}")


def make_http_client(
    *,
    username: str,
    password: str,
    concurrency: int,
    connect_timeout: float,
    read_timeout: float,
    transport: httpx.AsyncBaseTransport | None = None,
) -> httpx.AsyncClient:
    """The ``httpx.AsyncClient`` the runner uses: Basic auth, timeouts, pool sized to ``concurrency``.

    The default transport is httpx-aiohttp: the same httpx API at about a tenth of
    the CPU per request of httpx's own pool (see benchmarks/client_ceiling.py).
    """
    limits = httpx.Limits(max_connections=concurrency + 2, max_keepalive_connections=concurrency + 2)
    if transport is None:
        transport = AiohttpTransport(limits=limits, trust_env=False)
    return httpx.AsyncClient(
        auth=httpx.BasicAuth(username, password),
        timeout=httpx.Timeout(connect=connect_timeout, read=read_timeout, write=read_timeout, pool=None),
        limits=limits,
        transport=transport,
        headers={"User-Agent": USER_AGENT, "Accept": "application/json"},
    )


class StudioClient:
    """Studio's create, list and fetch-Flow calls for one Flow and one API version."""

    def __init__(
        self, http: httpx.AsyncClient, *, base_url: str, flow_sid: str, api: str, clock: TwilioClock | None = None
    ) -> None:
        self._http = http
        self.clock = clock or TwilioClock()
        self._base = base_url.rstrip("/")
        self.flow_sid = flow_sid
        self.api = api
        version = "v1" if api == "engagements" else "v2"
        self._flow_url = f"{self._base}/{version}/Flows/{flow_sid}"
        self._runs_url = f"{self._flow_url}/{'Engagements' if api == 'engagements' else 'Executions'}"

    async def create(self, to: str, from_: str, parameters: str | None) -> Created:
        """Start one run; raise a ``StudioError`` for anything but a 2xx."""
        form = {"To": to, "From": from_}
        if parameters is not None:
            form["Parameters"] = parameters
        try:
            response = await self._http.post(self._runs_url, data=form)
            await response.aread()
        except httpx.HTTPError as exc:
            raise classify_exception(exc) from None
        self.clock.observe(response.headers.get("Date"))
        return classify_response(response)

    async def _get_json(self, url: str, what: str) -> dict[str, Any]:
        try:
            response = await self._http.get(url)
        except httpx.HTTPError as exc:
            raise classify_exception(exc) from None
        self.clock.observe(response.headers.get("Date"))
        if response.status_code != 200:
            classify_response(response, what=what)
        try:
            body = response.json()
        except (ValueError, UnicodeDecodeError):
            raise ServerError(f"HTTP {response.status_code} with a body that is not JSON") from None
        return body if isinstance(body, dict) else {}

    async def fetch_flow(self) -> dict[str, Any]:
        """GET the Flow (the preflight): proves the credentials and that the Flow exists."""
        return await self._get_json(f"{self._base}/v2/Flows/{self.flow_sid}", "flow")

    async def fetch_published(self) -> dict[str, Any] | None:
        """The Flow's last published revision, or None when nothing is published."""
        try:
            return await self._get_json(f"{self._base}/v2/Flows/{self.flow_sid}/Revisions/LatestPublished", "run")
        except Rejected as exc:
            if exc.http_status == 404:
                return None
            raise

    async def fetch_run(self, sid: str) -> dict[str, Any]:
        """GET one run."""
        return await self._get_json(f"{self._runs_url}/{sid}", "run")

    async def fetch_context(self, sid: str) -> dict[str, Any]:
        """GET one run's Context; the ``context`` object."""
        body = await self._get_json(f"{self._runs_url}/{sid}/Context", "run")
        context = body.get("context")
        return context if isinstance(context, dict) else {}

    async def list_runs(self, *, since: datetime, until: datetime | None = None) -> AsyncIterator[RunRecord]:
        """Every run created since ``since``, newest first, following ``next_page_url``.

        v2 asks the server to filter by date; v1 has no filter, so paging stops at the
        first run older than ``since``. A repeated ``next_page_url`` ends the listing
        with an error instead of looping forever.
        """
        params: dict[str, str] = {"PageSize": str(LIST_PAGE_SIZE)}
        if self.api == "executions":
            params["DateCreatedFrom"] = _iso(since)
            if until is not None:
                params["DateCreatedTo"] = _iso(until)
        url: str | None = self._runs_url
        seen: set[str] = set()
        first = True
        pages = 0
        while url is not None:
            pages += 1
            if url in seen or pages > MAX_LIST_PAGES:
                raise ServerError(f"the run listing repeats page {url}; stopped reading it")
            seen.add(url)
            try:
                response = await self._http.get(url, params=params if first else None)
            except httpx.HTTPError as exc:
                raise classify_exception(exc) from None
            first = False
            self.clock.observe(response.headers.get("Date"))
            if response.status_code != 200:
                classify_response(response, what="list")
            body = response.json()
            items = body.get(self.api, []) if isinstance(body, dict) else []
            older = False
            for item in items if isinstance(items, list) else []:
                if not isinstance(item, dict) or not isinstance(item.get("sid"), str):
                    continue
                created = parse_datetime(item.get("date_created"))
                if created is not None and created < since:
                    older = True
                    continue
                address = item.get("contact_channel_address")
                initiated = item.get("initiated_by")
                yield RunRecord(
                    sid=item["sid"],
                    address=address if isinstance(address, str) else None,
                    date_created=created,
                    initiated_by=initiated if isinstance(initiated, str) else None,
                )
            meta = body.get("meta", {}) if isinstance(body, dict) else {}
            next_url = meta.get("next_page_url") if isinstance(meta, dict) else None
            if older and self.api == "engagements":
                break
            url = next_url if isinstance(next_url, str) and next_url else None


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
