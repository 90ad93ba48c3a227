"""Twilio Studio v1/v2 over an injected ``httpx.AsyncClient``: create, list and fetch runs, fetch the Flow.

Every answer is classified by the table in :mod:`.classify` (the one the
README prints); a read's 2xx that is not a JSON object is a ``ServerError``, so the
caller retries a read and never sees a ``ValueError``. The client never retries by
itself, not even a 429: pacing is the caller's.

Every answer's ``Date`` header, errors included, is observed into ``StudioClient.clock``.
"""

from __future__ import annotations

import functools
import ssl
import urllib.parse
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import structlog

from ..errors import Rejected, ServerError
from .classify import (
    Created,
    Purpose,
    classify_exception,
    classify_response,
    is_transport_error,
    object_body,
    parse_datetime,
    storable,
)
from .clock import TwilioClock
from .fence import fenced_connector, fenced_request
from .reach import Reach, WatchedTransport

__all__ = [
    "USER_AGENT",
    "Created",
    "MessagesClient",
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

_DEFAULT_PORTS = {"http": 80, "https": 443}
_FORM = {"Content-Type": "application/x-www-form-urlencoded"}
# Each UTF-8 byte as urllib.parse.quote_plus writes it: unreserved bytes as themselves, a space as "+", the rest %XX.
_UNRESERVED = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-~")
_FORM_BYTES = tuple("+" if b == 0x20 else chr(b) if b in _UNRESERVED else f"%{b:02X}" for b in range(256))


def _form_value(text: str) -> str:
    """``quote_plus(text)``, in one C call: urlencode's per-byte Python quoting was a twentieth of a send's CPU."""
    return text.encode("utf-8").decode("latin-1").translate(_FORM_BYTES)


@dataclass(frozen=True)
class RunRecord:
    """One run as a list endpoint shows it."""

    sid: str
    address: str | None
    date_created: datetime | None
    initiated_by: str | None = None


class _NoCookies(httpx.Cookies):
    """A cookie jar that keeps nothing: Twilio's REST API sets none, and reading every answer for them
    (httpx builds urllib request and response stand-ins each time) was a sixteenth of a send's CPU."""

    def extract_cookies(self, response: httpx.Response) -> None:
        """Nothing to keep."""

    def set(self, name: str, value: str, domain: str = "", path: str = "/") -> None:
        """Refused: one empty jar serves every client of the process."""
        raise TypeError("batch-engage's HTTP client keeps no cookies")

    def __setitem__(self, name: str, value: str) -> None:
        self.set(name, value)

    def update(self, cookies: object = None) -> None:  # type: ignore[override]
        """Refused, as :meth:`set`."""
        if cookies:
            raise TypeError("batch-engage's HTTP client keeps no cookies")


class _StudioHttp(httpx.AsyncClient):
    """httpx's client with no cookie jar (:class:`_NoCookies`); everything else as httpx does it."""

    @property
    def cookies(self) -> httpx.Cookies:
        """Always empty."""
        return _NO_COOKIES

    @cookies.setter
    def cookies(self, cookies: object) -> None:
        raise TypeError("batch-engage's HTTP client keeps no cookies")


_NO_COOKIES = _NoCookies()


def _aiohttp_transport(limits: httpx.Limits, may_send: Callable[[], bool] | None) -> httpx.AsyncBaseTransport:
    """httpx-aiohttp's transport over a session of our own: aiohttp keeps a cookie jar of its own beneath
    httpx's, and a cookie an answer sets would otherwise go back with every later request."""
    import aiohttp  # noqa: PLC0415 - aiohttp loads in 0.2 s; validate never connects
    from httpx_aiohttp import AiohttpTransport  # noqa: PLC0415 - as above

    def session() -> aiohttp.ClientSession:
        # What the transport's own session would be (pool limit, keep-alive, TLS roots), less the cookie jar.
        # Only a leased run is fenced.
        kind = aiohttp.TCPConnector if may_send is None else fenced_connector(may_send)
        connector = kind(keepalive_timeout=limits.keepalive_expiry, ssl=_tls(), limit=limits.max_connections or 0)
        request = aiohttp.ClientRequest if may_send is None else fenced_request(may_send)
        return aiohttp.ClientSession(connector=connector, cookie_jar=aiohttp.DummyCookieJar(), request_class=request)

    return AiohttpTransport(limits=limits, trust_env=False, verify=_tls(), client=session)


def load_transport() -> None:
    """Load the default transport's modules and TLS roots now (0.2 s), so the first request does not wait on them."""
    import httpx_aiohttp  # noqa: F401, PLC0415 - loads aiohttp too; what _aiohttp_transport imports

    _tls()


def make_http_client(
    *,
    username: str,
    password: str,
    concurrency: int,
    connect_timeout: float,
    read_timeout: float,
    transport: httpx.AsyncBaseTransport | None = None,
    reach: Reach | None = None,
    may_send: Callable[[], bool] | None = None,
) -> httpx.AsyncClient:
    """The ``httpx.AsyncClient`` the runner uses: Basic auth, timeouts, pool sized to ``concurrency``.

    With ``reach``, every request is reported to it (is Studio answering at all?). With ``may_send``, the
    default transport asks it the moment before each request is written (:func:`.fence.fenced_connector`); an injected
    ``transport`` is left as it is.

    The default transport is httpx-aiohttp: the same httpx API at about a tenth of
    the CPU per request of httpx's own pool (see benchmarks/client_ceiling.py).
    """
    limits = httpx.Limits(max_connections=concurrency + 2, max_keepalive_connections=concurrency + 2)
    if transport is None:
        transport = _aiohttp_transport(limits, may_send)
    if reach is not None:
        transport = WatchedTransport(transport, reach)
    return _StudioHttp(
        auth=httpx.BasicAuth(username, password),
        timeout=httpx.Timeout(connect=connect_timeout, read=read_timeout, write=read_timeout, pool=None),
        limits=limits,
        transport=transport,
        headers={"User-Agent": USER_AGENT, "Accept": "application/json"},
    )


@functools.lru_cache(maxsize=1)
def _tls() -> ssl.SSLContext:
    """certifi's roots, as httpx-aiohttp would load them for every client: once per process is enough."""
    return httpx.create_ssl_context(trust_env=False)


async def _exchange(http: httpx.AsyncClient, clock: TwilioClock, request: httpx.Request) -> httpx.Response:
    """Send ``request``, its answer read to the end; a transport error raised by the table, the Date observed."""
    try:
        response = await http.send(request)
    except Exception as exc:
        if not is_transport_error(exc):
            raise
        raise classify_exception(exc) from None
    clock.observe(response.headers.get("Date"))
    return response


async def _request(http: httpx.AsyncClient, clock: TwilioClock, method: str, url: str, **kwargs: Any) -> httpx.Response:
    """One request, as :func:`_exchange` sends it."""
    return await _exchange(http, clock, http.build_request(method, url, **kwargs))


def _origin(url: httpx.URL) -> tuple[str, str, int | None]:
    return url.scheme, url.host, url.port or _DEFAULT_PORTS.get(url.scheme)


class StudioClient:
    """Studio's calls for one Flow and one API version; ``clock`` learns Twilio's time from every answer."""

    def __init__(
        self,
        http: httpx.AsyncClient,
        *,
        base_url: str,
        flow_sid: str,
        api: str,
        clock: TwilioClock | None = None,
    ) -> None:
        self._http = http
        self._base = base_url.rstrip("/")
        self._home = httpx.URL(self._base)
        self.flow_sid = flow_sid
        self.api = api
        self.clock = clock if clock is not None else TwilioClock()
        version = "v1" if api == "engagements" else "v2"
        flow_url = f"{self._base}/{version}/Flows/{flow_sid}"
        self._runs_url = f"{flow_url}/{'Engagements' if api == 'engagements' else 'Executions'}"
        self._runs_target = httpx.URL(self._runs_url)
        # v1 and v2 share Flow SIDs, and only v2 shows a Flow's status and revisions.
        self._flow_v2_url = f"{self._base}/v2/Flows/{flow_sid}"

    @property
    def http(self) -> httpx.AsyncClient:
        """The HTTP client under this one (other Twilio APIs' reads share its pool and credentials)."""
        return self._http

    def for_flow(self, flow_sid: str) -> StudioClient:
        """The same connection, host, API and Twilio clock, for another Flow (an experiment's variant)."""
        if flow_sid == self.flow_sid:
            return self
        return StudioClient(self._http, base_url=self._base, flow_sid=flow_sid, api=self.api, clock=self.clock)

    async def _send(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        return await _request(self._http, self.clock, method, url, **kwargs)

    async def _get_object(self, url: str, *, what: Purpose, params: dict[str, str] | None = None) -> dict[str, Any]:
        """GET a JSON object: a non-2xx raises by the table; a 2xx that is not an object is a ``ServerError``."""
        return object_body(await self._send("GET", url, params=params), what=what)

    async def create(self, to: str, from_: str, parameters: str | None) -> Created:
        """Start one run; raise a ``StudioError`` for anything but a 2xx with a run SID."""
        # The form encoded here (as httpx would) and the URL parsed once: the send path's
        # CPU is mostly the HTTP client's, and httpx's per-call URL and form handling was a tenth of it.
        form = f"To={_form_value(to)}&From={_form_value(from_)}"
        if parameters is not None:
            form += f"&Parameters={_form_value(parameters)}"
        body = form.encode("ascii")
        request = self._http.build_request("POST", self._runs_target, content=body, headers=_FORM)
        return classify_response(await _exchange(self._http, self.clock, request), flow_sid=self.flow_sid)

    async def fetch_flow(self) -> dict[str, Any]:
        """GET /v2/Flows/{sid} (also for v1 jobs): proves the credentials and that the Flow exists."""
        return await self._get_object(self._flow_v2_url, what="flow")

    async def fetch_published(self) -> dict[str, Any] | None:
        """GET the Flow's latest published revision; None when nothing is published (a 404).

        Twilio answers 404 both when the Flow has no published revision and when the
        Flow does not exist: call :meth:`fetch_flow` first to tell them apart.
        """
        try:
            return await self._get_object(f"{self._flow_v2_url}/Revisions/LatestPublished", what="run")
        except Rejected as exc:
            if exc.http_status == 404:
                return None
            raise

    async def fetch_run(self, sid: str) -> dict[str, Any]:
        """GET one Engagement (v1) or Execution (v2); a 404 is ``Rejected``."""
        return await self._get_object(self._run_url(sid), what="run")

    async def fetch_context(self, sid: str) -> dict[str, Any]:
        """The run's Context JSON (``flow.data``, ``widgets``, …); a 404 is ``Rejected``."""
        body = await self._get_object(f"{self._run_url(sid)}/Context", what="run")
        context = body.get("context")
        if not isinstance(context, dict):
            raise ServerError(f"the Context of run {sid} has no 'context' object")
        return context

    async def end_run(self, sid: str) -> dict[str, Any]:
        """POST ``Status=ended`` to /v2/Flows/{flow}/Executions/{sid} (UpdateExecution); a 404 is ``Rejected``.

        Only v2 Executions: Twilio documents no update of a v1 Engagement, so callers refuse
        ``api = "engagements"`` before they get here.
        """
        url = f"{self._flow_v2_url}/Executions/{urllib.parse.quote(sid, safe='')}"
        return object_body(await self._send("POST", url, data={"Status": "ended"}), what="run")

    def _run_url(self, sid: str) -> str:
        # A SID comes from Twilio's own answers; quoting keeps a strange one inside its path segment.
        return f"{self._runs_url}/{urllib.parse.quote(sid, safe='')}"

    def _next_url(self, current: httpx.URL, next_page_url: object) -> httpx.URL | None:
        """Where the next page is, on the configured host only: credentials never go elsewhere."""
        if not isinstance(next_page_url, str) or not next_page_url:
            return None
        target = current.join(next_page_url)
        if _origin(target) == _origin(self._home):
            return target
        path = target.raw_path.decode("ascii")
        prefix = self._home.raw_path.decode("ascii").rstrip("/")
        if prefix and not path.startswith(prefix + "/"):
            path = prefix + path
        rebuilt = self._home.copy_with(raw_path=path.encode("ascii"))
        log.warning("list.foreign_next_page", host=target.host, rebuilt_on=self._home.host)
        return rebuilt

    async def list_runs(self, *, since: datetime, until: datetime | None = None) -> AsyncIterator[RunRecord]:
        """Every run created from ``since`` (to ``until``), both on Twilio's clock, in the order listed.

        Twilio stamps runs to the second, so ``since`` counts from its whole second.
        v2 filters on the server (``DateCreatedFrom``/``DateCreatedTo``) and every page
        is read. v1 has no filter and nobody has proven its order, so paging stops
        early only once every run seen so far was newest-first and a whole page was
        older than ``since``; otherwise it reads to the end. A repeated page ends the
        listing with a ``ServerError`` instead of looping forever.
        """
        floor = _whole_second(since)
        params: dict[str, str] = {"PageSize": str(LIST_PAGE_SIZE)}
        if self.api == "executions":
            params["DateCreatedFrom"] = _iso(floor)
            if until is not None:
                # DateCreatedTo is exclusive ("starting before"): the next whole second keeps `until` itself.
                params["DateCreatedTo"] = _iso(_whole_second(until) + timedelta(seconds=1))
        url: httpx.URL | None = httpx.URL(self._runs_url)
        seen: set[str] = set()
        newest_first = True
        previous: datetime | None = None
        pages = 0
        while url is not None:
            pages += 1
            if str(url) in seen or pages > MAX_LIST_PAGES:
                raise ServerError(f"the run listing repeats page {url}; stopped reading it")
            seen.add(str(url))
            body = await self._get_object(str(url), what="list", params=params if pages == 1 else None)
            items = body.get(self.api)
            if not isinstance(items, list):
                # An empty answer would read as "no run was created" and lead to a re-send.
                raise ServerError(f"the run listing has no {self.api!r} list; cannot tell which runs exist")
            older = 0
            for item in items:
                if not isinstance(item, dict) or not isinstance(item.get("sid"), str):
                    continue
                created = parse_datetime(item.get("date_created"))
                if created is None or (previous is not None and created > previous):
                    newest_first = False
                previous = created if created is not None else previous
                if created is not None and created < floor:
                    older += 1
                    continue
                if created is not None and until is not None and created > until:
                    continue
                address = item.get("contact_channel_address")
                initiated_by = item.get("initiated_by")
                yield RunRecord(
                    sid=storable(item["sid"]),
                    address=address if isinstance(address, str) else None,
                    date_created=created,
                    initiated_by=initiated_by if isinstance(initiated_by, str) else None,
                )
            if self.api == "engagements" and newest_first and items and older == len(items):
                break
            meta = body.get("meta")
            url = self._next_url(url, meta.get("next_page_url") if isinstance(meta, dict) else None)


class MessagesClient:
    """The one Messages API call ``collect`` needs, on the REST API host (not Studio's), over the same client.

    Answers are classified like a run's read: a 404 is ``Rejected`` (no such message),
    401/403 ``AuthFailed``, a 2xx that is not a JSON object a ``ServerError``.
    """

    def __init__(self, http: httpx.AsyncClient, *, base_url: str, clock: TwilioClock | None = None) -> None:
        self._http = http
        self._base = base_url.rstrip("/")
        self.clock = clock if clock is not None else TwilioClock()

    async def fetch_message(self, account_sid: str, sid: str) -> dict[str, Any]:
        """GET /2010-04-01/Accounts/{account_sid}/Messages/{sid}.json: ``status``, ``error_code`` and the rest."""
        account, message = (urllib.parse.quote(part, safe="") for part in (account_sid, sid))
        url = f"{self._base}/2010-04-01/Accounts/{account}/Messages/{message}.json"
        return object_body(await _request(self._http, self.clock, "GET", url), what="run")


def _whole_second(moment: datetime) -> datetime:
    return moment.astimezone(UTC).replace(microsecond=0)


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
