"""A Twilio Studio simulator that serves real HTTP on the loopback interface.

The sandbox answers Studio's v1 Engagements and v2 Executions endpoints (create and
list) and the v1/v2 Flow fetch endpoints with JSON shaped like Twilio's OpenAPI
description. It enforces Studio's one-active-run-per-contact rule and a per-account
rate limit, and can inject the faults a bulk trigger has to survive: 5xx answers,
answers lost after the run was created, dropped connections and slow answers. It runs
in a background thread with its own event loop, so synchronous code can drive it, and
it records every run it creates in a ledger that tests compare against.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import hmac
import json
import math
import random
import re
import signal
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from types import FrameType, MappingProxyType, TracebackType
from typing import Any, Final, Literal, Self
from urllib.parse import urlencode

from aiohttp import BasicAuth, web
from aiohttp.typedefs import Handler

__all__ = [
    "SANDBOX_PASSWORD",
    "SANDBOX_USERNAME",
    "LedgerEntry",
    "Sandbox",
    "SandboxConfig",
    "SandboxStats",
    "serve",
]

SANDBOX_USERNAME: Final[str] = "AC" + "5a" * 16
"""The account SID the sandbox accepts by default."""

SANDBOX_PASSWORD: Final[str] = "sandbox-auth-token"  # noqa: S105 - a public, throwaway credential by design
"""The auth token the sandbox accepts by default."""

_Api = Literal["engagements", "executions"]
_Fault = Literal["error", "lost", "drop", "slow"] | None

_FLOW_SID = re.compile(r"^FW[0-9a-fA-F]{32}$")
_ACCOUNT_SID = re.compile(r"^AC[0-9a-fA-F]{32}$")
_FLOW_STATUSES: Final = frozenset({"published", "draft"})
_DEFAULT_PAGE_SIZE: Final = 50
_MAX_PAGE_SIZE: Final = 1000
# Pauses end early on shutdown, so in-flight answers need little time to finish.
_SHUTDOWN_GRACE: Final = 1.0


@dataclass(frozen=True, kw_only=True)
class SandboxConfig:
    """How the simulated Studio behaves."""

    rate_limit: float | None = 20.0
    latency: float = 0.08
    jitter: float = 0.02
    active_rule: bool = True
    run_lifetime: float = 3600.0
    error_rate: float = 0.0
    lost_answer_rate: float = 0.0
    drop_rate: float = 0.0
    slow_rate: float = 0.0
    slow_seconds: float = 5.0
    retry_after: float | None = None
    flows: Mapping[str, str] | None = None
    credentials: tuple[tuple[str, str], ...] = ((SANDBOX_USERNAME, SANDBOX_PASSWORD),)
    repeat_next_page: bool = False
    seed: int | None = None

    def __post_init__(self) -> None:
        """Reject settings the simulator cannot honour."""
        if self.rate_limit is not None and not self.rate_limit > 0:
            raise ValueError(f"rate_limit must be positive or None, got {self.rate_limit!r}")
        for name in ("latency", "jitter", "run_lifetime", "slow_seconds"):
            if not getattr(self, name) >= 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)!r}")
        for name in ("error_rate", "lost_answer_rate", "drop_rate", "slow_rate"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be between 0 and 1, got {getattr(self, name)!r}")
        if self.retry_after is not None and not self.retry_after >= 0:
            raise ValueError(f"retry_after must be >= 0 or None, got {self.retry_after!r}")
        if self.flows is not None:
            bad = {sid: status for sid, status in self.flows.items() if status not in _FLOW_STATUSES}
            if bad:
                raise ValueError(f"flow status must be 'published' or 'draft', got {bad!r}")
            # A caller mutating its dict later must not change a frozen config.
            object.__setattr__(self, "flows", MappingProxyType(dict(self.flows)))
        if not self.credentials:
            raise ValueError("credentials must hold at least one (username, password) pair")


_DEFAULT_CONFIG: Final = SandboxConfig()


@dataclass(frozen=True)
class LedgerEntry:
    """One run the sandbox created."""

    sid: str
    flow_sid: str
    api: str
    to: str
    from_: str
    parameters: dict[str, Any]
    date_created: datetime


@dataclass(frozen=True)
class SandboxStats:
    """Counts of what the sandbox was asked and answered (0: connection dropped)."""

    create_requests: int
    created: int
    rate_limited: int
    by_status: Mapping[int, int]
    list_requests: int
    flow_requests: int


@dataclass(eq=False)
class _Run:
    """A run as the simulator tracks it; `ended` is the only field that changes."""

    seq: int
    sid: str
    api: _Api
    account_sid: str
    flow_sid: str
    contact_sid: str
    request_sid: str
    to: str
    from_: str
    parameters: dict[str, Any]
    date_created: datetime
    born: float
    ended: bool = False

    def order(self) -> tuple[datetime, int]:
        """Sort key for listings: date_created, then creation order."""
        return (self.date_created, self.seq)


class _TokenBucket:
    """A continuously refilled token bucket that starts full."""

    def __init__(self) -> None:
        """Create a bucket that fills itself on first use."""
        self._tokens: float | None = None
        self._stamp = 0.0

    def take(self, rate: float, now: float) -> bool:
        """Spend one token if there is one."""
        capacity = max(1.0, rate)
        tokens = capacity if self._tokens is None else min(capacity, self._tokens + (now - self._stamp) * rate)
        self._stamp = now
        allowed = tokens >= 1.0
        self._tokens = tokens - 1.0 if allowed else tokens
        return allowed


class _ApiError(Exception):
    """A Twilio-shaped error answer, raised anywhere inside a handler."""

    def __init__(
        self,
        status: int,
        code: int,
        message: str,
        *,
        headers: Mapping[str, str] | None = None,
        details: Mapping[str, Any] | None = None,
    ) -> None:
        """Describe the answer."""
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = dict(headers or {})
        self.details = dict(details) if details is not None else None

    def response(self) -> web.Response:
        """Render the answer as Twilio renders errors."""
        body: dict[str, Any] = {
            "code": self.code,
            "message": self.message,
            "more_info": f"https://www.twilio.com/docs/errors/{self.code}",
            "status": self.status,
        }
        if self.details is not None:
            body["details"] = self.details
        return web.json_response(body, status=self.status, headers=self.headers)


def _iso(moment: datetime) -> str:
    """Format a moment as Twilio does: UTC, whole seconds, trailing Z."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _hex32(*parts: str) -> str:
    """Derive 32 stable hex digits from some strings."""
    return hashlib.blake2b("\x1f".join(parts).encode(), digest_size=16).hexdigest()


def _parse_moment(name: str, raw: str) -> datetime:
    """Parse an ISO 8601 query value; a value without an offset is taken as UTC."""
    try:
        moment = datetime.fromisoformat(raw)
    except ValueError:
        raise _ApiError(400, 20001, f"Invalid {name}: {raw!r} is not an ISO 8601 date-time") from None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment


def _int_query(query: Mapping[str, str], name: str, default: int, low: int, high: int | None) -> int:
    """Read an integer query parameter within bounds, or answer 400."""
    raw = query.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise _ApiError(400, 20001, f"Invalid {name}: {raw!r} is not an integer") from None
    if value < low or (high is not None and value > high):
        limit = f"between {low} and {high}" if high is not None else f"at least {low}"
        raise _ApiError(400, 20001, f"Invalid {name}: {value} must be {limit}")
    return value


class _Studio:
    """The simulator's state and handlers, shared by the server and test threads."""

    def __init__(self, config: SandboxConfig) -> None:
        """Start with no runs."""
        # One lock for all state: handlers run on the server thread while tests read
        # the ledger and reconfigure from theirs.
        self._lock = threading.Lock()
        self._config = config
        self._rng = random.Random(config.seed)
        self._runs: list[_Run] = []
        self._latest: dict[tuple[str, str, str, str], _Run] = {}
        self._buckets: dict[str, _TokenBucket] = {}
        self._next_error = 500
        self._create_requests = 0
        self._created = 0
        self._rate_limited = 0
        self._by_status: Counter[int] = Counter()
        self._list_requests = 0
        self._flow_requests = 0
        self._flows_born = datetime.now(UTC).replace(microsecond=0)
        self.base_url = ""
        self._closing: asyncio.Event | None = None

    def reconfigure(self, changes: Mapping[str, Any]) -> None:
        """Replace the live config; a new seed restarts the fault sequence."""
        with self._lock:
            self._config = dataclasses.replace(self._config, **changes)
            if "seed" in changes:
                self._rng = random.Random(self._config.seed)

    def ledger(self) -> list[LedgerEntry]:
        """Snapshot the runs created so far, oldest first."""
        with self._lock:
            return [
                LedgerEntry(
                    sid=run.sid,
                    flow_sid=run.flow_sid,
                    api=run.api,
                    to=run.to,
                    from_=run.from_,
                    parameters=json.loads(json.dumps(run.parameters)),
                    date_created=run.date_created,
                )
                for run in self._runs
            ]

    def stats(self) -> SandboxStats:
        """Snapshot the counters."""
        with self._lock:
            return SandboxStats(
                create_requests=self._create_requests,
                created=self._created,
                rate_limited=self._rate_limited,
                by_status=MappingProxyType(dict(self._by_status)),
                list_requests=self._list_requests,
                flow_requests=self._flow_requests,
            )

    def end_all_runs(self) -> None:
        """Mark every run created so far as ended."""
        with self._lock:
            for run in self._runs:
                run.ended = True

    def serving_at(self, base_url: str) -> None:
        """Get ready to serve at base_url."""
        self.base_url = base_url
        self._closing = asyncio.Event()

    def begin_closing(self) -> None:
        """Cut short every pause, so in-flight answers finish at once."""
        if self._closing is not None:
            self._closing.set()

    async def _pause(self, seconds: float) -> None:
        """Sleep, unless the server is shutting down."""
        if seconds <= 0 or self._closing is None:
            return
        # Without this, stopping during a slow-answer fault would wait out
        # slow_seconds (or aiohttp's shutdown timeout) and stall the test suite.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._closing.wait(), seconds)

    def make_app(self) -> web.Application:
        """Build the aiohttp application serving the Studio routes."""

        @web.middleware
        async def twilio_gate(request: web.Request, handler: Handler) -> web.StreamResponse:
            if self._account(request) is None:
                return _ApiError(
                    401,
                    20003,
                    "Authentication Error - invalid username",
                    headers={"WWW-Authenticate": 'Basic realm="Twilio API"'},
                ).response()
            try:
                return await handler(request)
            except _ApiError as exc:
                return exc.response()
            except web.HTTPNotFound:
                return _ApiError(404, 20404, f"The requested resource {request.path} was not found").response()
            except web.HTTPMethodNotAllowed:
                return _ApiError(405, 20004, "Method not allowed").response()

        app = web.Application(middlewares=[twilio_gate])
        app.router.add_get("/v1/Flows/{flow}", self._fetch_flow_v1)
        app.router.add_get("/v2/Flows/{flow}", self._fetch_flow_v2)
        app.router.add_post("/v1/Flows/{flow}/Engagements", self._create_engagement)
        app.router.add_get("/v1/Flows/{flow}/Engagements", self._list_engagements)
        app.router.add_post("/v2/Flows/{flow}/Executions", self._create_execution)
        app.router.add_get("/v2/Flows/{flow}/Executions", self._list_executions)
        return app

    def _account(self, request: web.Request) -> str | None:
        """Answer the account SID the request authenticates as, or None."""
        header = request.headers.get("Authorization")
        if header is None:
            return None
        try:
            auth = BasicAuth.decode(header)
        except ValueError:
            return None
        with self._lock:
            credentials = self._config.credentials
        accepted = any(
            hmac.compare_digest(auth.login.encode(), user.encode())
            & hmac.compare_digest(auth.password.encode(), password.encode())
            for user, password in credentials
        )
        if not accepted:
            return None
        # API-key usernames (SK...) belong to the sandbox's one account, as on Twilio
        # where a key is scoped to the account that made it.
        return auth.login if _ACCOUNT_SID.match(auth.login) else SANDBOX_USERNAME

    def _flow_status(self, request: web.Request) -> str:
        """Answer the status of the path's flow, or raise the 404 Twilio gives."""
        flow_sid = request.match_info["flow"]
        with self._lock:
            flows = self._config.flows
        status: str | None
        if not _FLOW_SID.match(flow_sid):
            status = None
        elif flows is None:
            status = "published"
        else:
            status = flows.get(flow_sid)
        if status is None:
            raise _ApiError(404, 20404, f"The requested resource {request.path} was not found")
        return status

    async def _fetch_flow_v1(self, request: web.Request) -> web.StreamResponse:
        """GET /v1/Flows/{sid}."""
        return self._fetch_flow(request, 1)

    async def _fetch_flow_v2(self, request: web.Request) -> web.StreamResponse:
        """GET /v2/Flows/{sid}."""
        return self._fetch_flow(request, 2)

    def _fetch_flow(self, request: web.Request, version: int) -> web.Response:
        """Answer a flow resource in the shape of the given API version."""
        account_sid = self._account(request) or SANDBOX_USERNAME
        with self._lock:
            self._flow_requests += 1
        status = self._flow_status(request)
        sid = request.match_info["flow"]
        url = f"{self.base_url}/v{version}/Flows/{sid}"
        webhook = f"https://webhooks.twilio.com/v1/Accounts/{account_sid}/Flows/{sid}"
        born = _iso(self._flows_born)
        name = f"Sandbox Flow {sid[-4:]}"
        if version == 1:
            return web.json_response(
                {
                    "sid": sid,
                    "account_sid": account_sid,
                    "friendly_name": name,
                    "status": status,
                    "version": 1,
                    "date_created": born,
                    "date_updated": None,
                    "url": url,
                    "links": {
                        "engagements": f"{url}/Engagements",
                        "executions": f"{url}/Executions",
                    },
                }
            )
        return web.json_response(
            {
                "sid": sid,
                "account_sid": account_sid,
                "author_sid": "US" + _hex32("author", account_sid),
                "friendly_name": name,
                "definition": {
                    "description": "A New Flow",
                    "flags": {"allow_concurrent_calls": True},
                    "initial_state": "Trigger",
                    "states": [
                        {
                            "name": "Trigger",
                            "type": "trigger",
                            "properties": {"offset": {"x": 0, "y": 0}},
                            "transitions": [
                                {"event": "incomingMessage"},
                                {"event": "incomingCall"},
                                {"event": "incomingConversationMessage"},
                                {"event": "incomingRequest"},
                                {"event": "incomingParent"},
                            ],
                        }
                    ],
                },
                "status": status,
                "revision": 1 if status == "draft" else 2,
                "commit_message": None,
                "valid": True,
                "errors": [],
                "warnings": [],
                "webhook_url": webhook,
                "date_created": born,
                "date_updated": None,
                "url": url,
                "links": {
                    "test_users": f"{url}/TestUsers",
                    "revisions": f"{url}/Revisions",
                    "executions": f"{url}/Executions",
                },
            }
        )

    async def _create_engagement(self, request: web.Request) -> web.StreamResponse:
        """POST /v1/Flows/{sid}/Engagements."""
        return await self._create(request, "engagements")

    async def _create_execution(self, request: web.Request) -> web.StreamResponse:
        """POST /v2/Flows/{sid}/Executions."""
        return await self._create(request, "executions")

    async def _create(self, request: web.Request, api: _Api) -> web.StreamResponse:
        """Answer a create request and count how it was answered."""
        with self._lock:
            self._create_requests += 1
        try:
            answer = await self._answer_create(request, api)
        except _ApiError as exc:
            answer = exc.response()
        with self._lock:
            self._by_status[0 if answer is None else answer.status] += 1
            if answer is not None and answer.status == 429:
                self._rate_limited += 1
        # aiohttp cannot write to the transport we closed; it swallows that quietly.
        return web.Response() if answer is None else answer

    async def _answer_create(self, request: web.Request, api: _Api) -> web.Response | None:
        """Decide the answer to a create; None means drop the connection."""
        account_sid = self._account(request) or SANDBOX_USERNAME
        flow_sid = request.match_info["flow"]
        self._flow_status(request)
        self._spend_token(account_sid)

        form = await request.post()
        fields: dict[str, str] = {}
        for name in ("To", "From", "Parameters"):
            value = form.get(name)
            if isinstance(value, str) and value != "":
                fields[name] = value
        for name in ("To", "From"):
            if name not in fields:
                raise _ApiError(400, 20001, f"Missing required parameter {name} in the post body")
        parameters = self._parse_parameters(fields.get("Parameters"))

        with self._lock:
            config = self._config
            fault = self._draw_fault(config)
            delay = max(0.0, config.latency + self._rng.uniform(-config.jitter, config.jitter))
            if fault == "error":
                status = self._next_error
                # Alternate so a client sees both flavours of server error.
                self._next_error = 503 if status == 500 else 500
            else:
                run, created = self._create_or_find(
                    config,
                    api,
                    account_sid,
                    flow_sid,
                    fields["To"],
                    fields["From"],
                    parameters,
                )
                body = self._run_json(run, api, config)

        if fault == "error":
            await self._pause(delay)
            raise _ApiError(
                status,
                20000 + status,
                "Internal Server Error" if status == 500 else "Service Unavailable",
            )
        await self._pause(config.slow_seconds if fault == "slow" else delay)
        if fault == "lost":
            raise _ApiError(503, 20503, "Service Unavailable")
        if fault == "drop":
            if request.transport is not None:
                request.transport.close()
            return None
        if created:
            return web.json_response(body, status=200 if api == "engagements" else 201)
        if api == "engagements":
            # Studio v1 hands back the contact's active Engagement instead of failing.
            return web.json_response(body, status=200)
        raise _ApiError(
            409,
            20409,
            "Execution already exists for this contact. End the active Execution or wait for it to end.",
            details={"conflicting_execution_sid": run.sid},
        )

    def _spend_token(self, account_sid: str) -> None:
        """Take one create from the account's bucket, or raise the 429."""
        with self._lock:
            config = self._config
            if config.rate_limit is None:
                return
            bucket = self._buckets.setdefault(account_sid, _TokenBucket())
            if bucket.take(config.rate_limit, time.monotonic()):
                return
        headers = {}
        if config.retry_after is not None:
            headers["Retry-After"] = str(math.ceil(config.retry_after))
        raise _ApiError(429, 20429, "Too Many Requests", headers=headers)

    @staticmethod
    def _parse_parameters(raw: str | None) -> dict[str, Any]:
        """Parse the Parameters field, which must hold a JSON object."""
        if raw is None:
            return {}
        try:
            parsed = json.loads(raw)
        except ValueError:
            raise _ApiError(400, 20001, "Invalid Parameters: not valid JSON") from None
        if not isinstance(parsed, dict):
            raise _ApiError(400, 20001, "Invalid Parameters: must be a JSON object")
        return parsed

    def _draw_fault(self, config: SandboxConfig) -> _Fault:
        """Pick this request's fault, the rates being shares of one draw (lock held)."""
        shares: tuple[tuple[_Fault, float], ...] = (
            ("error", config.error_rate),
            ("lost", config.lost_answer_rate),
            ("drop", config.drop_rate),
            ("slow", config.slow_rate),
        )
        draw = self._rng.random()
        for fault, share in shares:
            if draw < share:
                return fault
            draw -= share
        return None

    def _is_active(self, run: _Run, config: SandboxConfig, now: float) -> bool:
        """Tell whether a run still counts as active (lock held)."""
        return not run.ended and now - run.born < config.run_lifetime

    def _create_or_find(
        self,
        config: SandboxConfig,
        api: _Api,
        account_sid: str,
        flow_sid: str,
        to: str,
        from_: str,
        parameters: dict[str, Any],
    ) -> tuple[_Run, bool]:
        """Create a run, or find the active run that blocks it; True if created."""
        key = (account_sid, flow_sid, to, from_)
        now = time.monotonic()
        latest = self._latest.get(key)
        # Runs end all together or by age, so the newest run of a contact is the
        # last one to stop blocking it.
        if config.active_rule and latest is not None and self._is_active(latest, config, now):
            return latest, False
        run = _Run(
            seq=len(self._runs),
            sid="FN" + uuid.uuid4().hex,
            api=api,
            account_sid=account_sid,
            flow_sid=flow_sid,
            contact_sid="FC" + _hex32("contact", account_sid, to),
            request_sid="RQ" + uuid.uuid4().hex,
            to=to,
            from_=from_,
            parameters=parameters,
            date_created=datetime.now(UTC),
            born=now,
        )
        self._runs.append(run)
        self._latest[key] = run
        self._created += 1
        return run, True

    def _run_json(self, run: _Run, api: _Api, config: SandboxConfig) -> dict[str, Any]:
        """Render a run as an Engagement or an Execution (lock held)."""
        version, collection = ("v1", "Engagements") if api == "engagements" else ("v2", "Executions")
        url = f"{self.base_url}/{version}/Flows/{run.flow_sid}/{collection}/{run.sid}"
        stamp = _iso(run.date_created)
        context = {
            "flow": {
                "data": run.parameters,
                "channel": {"address": run.from_},
                "flow_sid": run.flow_sid,
            },
            "contact": {"channel": {"address": run.to}},
        }
        status = "active" if self._is_active(run, config, time.monotonic()) else "ended"
        if api == "engagements":
            return {
                "sid": run.sid,
                "account_sid": run.account_sid,
                "flow_sid": run.flow_sid,
                "contact_sid": run.contact_sid,
                "contact_channel_address": run.to,
                "context": context,
                "status": status,
                "date_created": stamp,
                "date_updated": stamp,
                "url": url,
                "links": {
                    "steps": f"{url}/Steps",
                    "engagement_context": f"{url}/Context",
                },
            }
        return {
            "sid": run.sid,
            "account_sid": run.account_sid,
            "flow_sid": run.flow_sid,
            "contact_channel_address": run.to,
            "contact_sid": run.contact_sid,
            "flow_version": 2,
            "context": context,
            "status": status,
            "date_created": stamp,
            "date_updated": stamp,
            "initiated_by": run.request_sid,
            "url": url,
            "links": {"steps": f"{url}/Steps", "execution_context": f"{url}/Context"},
        }

    async def _list_engagements(self, request: web.Request) -> web.StreamResponse:
        """GET /v1/Flows/{sid}/Engagements."""
        return self._list(request, "engagements")

    async def _list_executions(self, request: web.Request) -> web.StreamResponse:
        """GET /v2/Flows/{sid}/Executions."""
        return self._list(request, "executions")

    def _list(self, request: web.Request, api: _Api) -> web.Response:
        """Answer one page of runs, newest first, with Twilio's paging meta."""
        account_sid = self._account(request) or SANDBOX_USERNAME
        with self._lock:
            self._list_requests += 1
        flow_sid = request.match_info["flow"]
        self._flow_status(request)
        query = request.query
        page_size = _int_query(query, "PageSize", _DEFAULT_PAGE_SIZE, 1, _MAX_PAGE_SIZE)
        page = _int_query(query, "Page", 0, 0, None)
        token = query.get("PageToken")

        # Echoed into the paging URLs so following next_page_url keeps filtering.
        filters: dict[str, str] = {}
        date_from = date_to = None
        wanted_status = None
        if api == "executions":
            if "DateCreatedFrom" in query:
                filters["DateCreatedFrom"] = query["DateCreatedFrom"]
                date_from = _parse_moment("DateCreatedFrom", query["DateCreatedFrom"])
            if "DateCreatedTo" in query:
                filters["DateCreatedTo"] = query["DateCreatedTo"]
                date_to = _parse_moment("DateCreatedTo", query["DateCreatedTo"])
            # The OpenAPI file spells it "status"; the helper libraries send "Status".
            for name in ("status", "Status"):
                if name in query:
                    wanted_status = query[name]
                    if wanted_status not in ("active", "ended"):
                        raise _ApiError(400, 20001, f"Invalid {name}: {wanted_status!r}")
                    filters[name] = wanted_status

        with self._lock:
            config = self._config
            now = time.monotonic()
            matches = [
                run
                for run in self._runs
                if run.api == api
                and run.flow_sid == flow_sid
                and run.account_sid == account_sid
                and (date_from is None or run.date_created >= date_from)
                and (date_to is None or run.date_created < date_to)
                and (
                    wanted_status is None
                    or wanted_status == ("active" if self._is_active(run, config, now) else "ended")
                )
            ]
            matches.sort(key=_Run.order, reverse=True)
            start, end = self._page_bounds(matches, token, page_size)
            chosen = matches[start:end]
            items = [self._run_json(run, api, config) for run in chosen]

        def page_url(number: int, page_token: str | None) -> str:
            params = {**filters, "PageSize": str(page_size), "Page": str(number)}
            if page_token is not None:
                params["PageToken"] = page_token
            return f"{self.base_url}{request.path}?{urlencode(params)}"

        url = page_url(page, token)
        if config.repeat_next_page:
            next_url: str | None = url
        elif end < len(matches) and chosen:
            next_url = page_url(page + 1, f"PA{chosen[-1].seq}")
        else:
            next_url = None
        previous_url = page_url(max(0, page - 1), f"PB{chosen[0].seq}") if start > 0 and chosen else None
        return web.json_response(
            {
                api: items,
                "meta": {
                    "page": page,
                    "page_size": page_size,
                    "first_page_url": page_url(0, None),
                    "previous_page_url": previous_url,
                    "url": url,
                    "next_page_url": next_url,
                    "key": api,
                },
            }
        )

    def _page_bounds(self, matches: list[_Run], token: str | None, page_size: int) -> tuple[int, int]:
        """Turn a page token into a slice of the newest-first matches (lock held)."""
        if token is None:
            return 0, page_size
        # Tokens name a run rather than an offset, so runs created while a client is
        # paging do not shift later pages under it.
        anchor: _Run | None = None
        if token[:2] in ("PA", "PB") and token[2:].isdigit() and int(token[2:]) < len(self._runs):
            anchor = self._runs[int(token[2:])]
        if anchor is None:
            raise _ApiError(400, 20001, f"Invalid PageToken: {token!r}")
        if token.startswith("PA"):
            start = sum(1 for run in matches if run.order() >= anchor.order())
            return start, start + page_size
        end = sum(1 for run in matches if run.order() > anchor.order())
        return max(0, end - page_size), end


def _finish_loop(loop: asyncio.AbstractEventLoop) -> None:
    """Cancel what is left on a loop, let it unwind, and close the loop."""
    # Handlers of connections the client already gave up on (slow faults) are no
    # longer tracked by aiohttp; cancelling them here keeps "Task was destroyed but
    # it is pending" out of the test suite.
    pending = asyncio.all_tasks(loop)
    for task in pending:
        task.cancel()
    if pending:
        loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
    loop.run_until_complete(loop.shutdown_asyncgens())
    loop.run_until_complete(loop.shutdown_default_executor())
    loop.close()


class Sandbox:
    """A Twilio Studio simulator on 127.0.0.1, served from a background thread."""

    def __init__(
        self,
        config: SandboxConfig = _DEFAULT_CONFIG,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        """Prepare a sandbox; nothing listens until start()."""
        self._studio = _Studio(config)
        self._host = host
        self._port = port
        self._lifecycle = threading.Lock()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._url: str | None = None

    @property
    def url(self) -> str:
        """The base URL, like http://127.0.0.1:54321."""
        if self._url is None:
            raise RuntimeError("the sandbox is not running; call start() first")
        return self._url

    def start(self) -> str:
        """Start serving and answer the base URL once the port is listening."""
        with self._lifecycle:
            if self._thread is not None:
                raise RuntimeError("the sandbox is already running")
            ready = threading.Event()
            failures: list[BaseException] = []
            thread = threading.Thread(
                target=self._serve_in_thread,
                args=(ready, failures),
                name="batch-engage-sandbox",
                daemon=True,
            )
            thread.start()
            ready.wait()
            if failures:
                thread.join()
                raise failures[0]
            self._thread = thread
            return self.url

    def stop(self) -> None:
        """Stop serving and join the server thread; safe to call more than once."""
        with self._lifecycle:
            thread, loop = self._thread, self._loop
            if thread is None:
                return
            if loop is not None:
                loop.call_soon_threadsafe(self._studio.begin_closing)
                loop.call_soon_threadsafe(loop.stop)
            thread.join()
            self._thread = self._loop = self._url = None

    def __enter__(self) -> Self:
        """Start serving."""
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        """Stop serving."""
        self.stop()

    def ledger(self) -> list[LedgerEntry]:
        """Answer a copy of every run created so far, in creation order."""
        return self._studio.ledger()

    def stats(self) -> SandboxStats:
        """Answer a snapshot of the request counters."""
        return self._studio.stats()

    def reconfigure(self, **changes: Any) -> None:
        """Change settings of the running sandbox, as dataclasses.replace would."""
        self._studio.reconfigure(changes)

    def end_all_runs(self) -> None:
        """Mark every run ended, so the active rule no longer blocks its contact."""
        self._studio.end_all_runs()

    def _serve_in_thread(self, ready: threading.Event, failures: list[BaseException]) -> None:
        """Run the server's event loop until stop() stops it."""
        if hasattr(signal, "pthread_sigmask"):
            # The kernel hands a process signal to any thread that does not block
            # it; only the main thread can act on Ctrl-C or SIGTERM.
            signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
        loop = asyncio.new_event_loop()
        try:
            runner = loop.run_until_complete(self._open())
        except BaseException as exc:
            failures.append(exc)
            _finish_loop(loop)
            ready.set()
            return
        self._loop = loop
        ready.set()
        try:
            loop.run_forever()
        finally:
            try:
                loop.run_until_complete(runner.cleanup())
            finally:
                _finish_loop(loop)

    async def _open(self) -> web.AppRunner:
        """Bind the port and record the URL it is reachable at."""
        runner = web.AppRunner(
            self._studio.make_app(),
            handle_signals=False,
            access_log=None,
            shutdown_timeout=_SHUTDOWN_GRACE,
        )
        await runner.setup()
        try:
            site = web.TCPSite(runner, self._host, self._port)
            await site.start()
            port = runner.addresses[0][1]
        except BaseException:
            await runner.cleanup()
            raise
        host = f"[{self._host}]" if ":" in self._host else self._host
        self._url = f"http://{host}:{port}"
        self._studio.serving_at(self._url)
        return runner


class _Terminated(BaseException):
    """Raised by the SIGTERM handler to leave serve()'s wait."""


def serve(
    config: SandboxConfig = _DEFAULT_CONFIG,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    on_ready: Callable[[str], None] | None = None,
) -> None:
    """Serve in the foreground until Ctrl-C or SIGTERM (`batch-engage sandbox`)."""

    def on_sigterm(signum: int, frame: FrameType | None) -> None:
        raise _Terminated

    # signal.signal only works on the main thread; elsewhere only Ctrl-C applies.
    in_main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, on_sigterm) if in_main_thread else None
    sandbox = Sandbox(config, host=host, port=port)
    try:
        url = sandbox.start()
        if on_ready is not None:
            on_ready(url)
        # time.sleep, unlike a lock wait, also wakes for Ctrl-C on Windows.
        while True:
            time.sleep(3600)
    except (KeyboardInterrupt, _Terminated):
        pass
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
        sandbox.stop()
