"""The Studio simulator's HTTP side: the aiohttp routes and handlers, the background server, serve()."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hmac
import json
import random
import signal
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path
from types import FrameType, MappingProxyType, TracebackType
from typing import Any, Final, Literal, Self
from urllib.parse import urlencode, urlsplit, urlunsplit

from aiohttp import BasicAuth, web
from aiohttp.typedefs import Handler

from .config import (
    DEFAULT_CONFIG,
    SANDBOX_USERNAME,
    Api,
    LedgerEntry,
    SandboxConfig,
    SandboxStats,
    Source,
)
from .shapes import (
    ACCOUNT_SID,
    ASK_BODY,
    DRAFT_ASK_BODY,
    FLOW_SID,
    ApiError,
    FlowRevisions,
    flow_definition,
    hex32,
    int_query,
    iso,
    not_found,
    parse_moment,
    too_many,
)
from .state import (
    MESSAGE_ROLES,
    Message,
    Run,
    TokenBucket,
    append_state,
    load_state,
    message_json,
    message_sid,
    run_messages,
    start_context,
    widget_outputs,
)

_Fault = Literal["error", "lost", "drop", "slow"] | None

_DEFAULT_PAGE_SIZE: Final = 50
_MAX_PAGE_SIZE: Final = 1000
# Pauses end early on shutdown, so in-flight answers need little time to finish.
_SHUTDOWN_GRACE: Final = 1.0


class _Studio:
    """The simulator's state and handlers, shared by the server and test threads."""

    def __init__(self, config: SandboxConfig) -> None:
        """Start with the runs of the state file, if there is one, else none."""
        # One lock for all state: handlers run on the server thread while tests read
        # the ledger and reconfigure from theirs.
        self._lock = threading.Lock()
        self._config = config
        self._seed_draws(config.seed)
        self._runs: list[Run] = []
        self._by_sid: dict[str, Run] = {}
        self._latest: dict[tuple[str, str, str, str], Run] = {}
        # Message SID -> the run and the widget role (intro, ask, reply) that sends it.
        self._messages: dict[str, tuple[Run, str]] = {}
        self._buckets: dict[str, TokenBucket] = {}
        self._next_error = 500
        self._counts: Counter[str] = Counter()
        self._by_status: Counter[int] = Counter()
        self._flows_born = self._now(config).replace(microsecond=0)
        self._state_path = None if config.state_path is None else Path(config.state_path)
        self.base_url = ""
        self._closing: asyncio.Event | None = None
        if self._state_path is not None:
            self._restore(load_state(self._state_path))

    def _seed_draws(self, seed: int | None) -> None:
        """Start the three random streams; separate, so one rate never shifts another's draws."""
        self._rng = random.Random(seed)
        self._sender_rng = random.Random(None if seed is None else f"other-sender:{seed}")
        self._read_rng = random.Random(None if seed is None else f"read-429:{seed}")

    @staticmethod
    def _now(config: SandboxConfig) -> datetime:
        """Twilio's clock: ours plus the configured offset."""
        return datetime.now(UTC) + timedelta(seconds=config.clock_offset)

    def _restore(self, records: list[dict[str, Any]]) -> None:
        """Rebuild runs from state-file records; their age follows their date_created."""
        now, mono = self._now(self._config), time.monotonic()
        for record in records:
            if record["type"] == "end":
                run = self._by_sid.get(record["sid"])
                if run is not None:
                    run.ended_at = datetime.fromisoformat(record["ended_at"])
                continue
            created = datetime.fromisoformat(record["date_created"])
            run = Run(
                seq=len(self._runs),
                sid=record["sid"],
                api=record["api"],
                account_sid=record["account_sid"],
                flow_sid=record["flow_sid"],
                initiated_by=record["initiated_by"],
                source=record["source"],
                to=record["to"],
                from_=record["from"],
                parameters=record["parameters"],
                date_created=created,
                born=mono - (now - created).total_seconds(),
                played=record["played"],
                ended_at=None if record["ended_at"] is None else datetime.fromisoformat(record["ended_at"]),
            )
            self._add(run)

    def _add(self, run: Run) -> None:
        """Keep a run and index it (lock held)."""
        self._runs.append(run)
        self._by_sid[run.sid] = run
        key = (run.account_sid, run.flow_sid, run.to, run.from_)
        latest = self._latest.get(key)
        # An inbound run is ended at birth; it must not hide an older active run.
        if latest is None or run.source == "rest" or latest.ended_at is not None:
            self._latest[key] = run
        if run.played:
            for role in MESSAGE_ROLES:
                self._messages[message_sid(role, run)] = (run, role)

    def reconfigure(self, changes: Mapping[str, Any]) -> None:
        """Replace the live config; a new seed restarts the random draws."""
        with self._lock:
            self._config = dataclasses.replace(self._config, **changes)
            if "seed" in changes:
                self._seed_draws(self._config.seed)

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
                    initiated_by=run.initiated_by,
                    source=run.source,
                )
                for run in self._runs
            ]

    def stats(self) -> SandboxStats:
        """Snapshot the counters."""
        with self._lock:
            counts = self._counts
            return SandboxStats(
                create_requests=counts["create_requests"],
                created=counts["created"],
                rate_limited=counts["rate_limited"],
                by_status=MappingProxyType(dict(self._by_status)),
                list_requests=counts["list_requests"],
                flow_requests=counts["flow_requests"],
                run_requests=counts["run_requests"],
                context_requests=counts["context_requests"],
                revision_requests=counts["revision_requests"],
                message_requests=counts["message_requests"],
                read_rate_limited=counts["read_rate_limited"],
                inbound_runs=counts["inbound_runs"],
            )

    def end_all_runs(self) -> None:
        """Mark every active run ended, now on Twilio's clock."""
        with self._lock:
            config = self._config
            now, mono = self._now(config), time.monotonic()
            for run in self._runs:
                if run.end(config.run_lifetime, mono) is None:
                    run.ended_at = now
                    self._remember({"type": "end", "sid": run.sid, "ended_at": now.isoformat()})

    def _remember(self, record: Mapping[str, Any]) -> None:
        """Append a record to the state file, if there is one (lock held)."""
        if self._state_path is not None:
            append_state(self._state_path, record)

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
                return ApiError(
                    401,
                    20003,
                    "Authentication Error - invalid username",
                    headers={"WWW-Authenticate": 'Basic realm="Twilio API"'},
                ).response()
            try:
                return await handler(request)
            except ApiError as exc:
                return exc.response()
            except web.HTTPNotFound:
                return not_found(request.path).response()
            except web.HTTPMethodNotAllowed:
                return ApiError(405, 20004, "Method not allowed").response()

        app = web.Application(middlewares=[twilio_gate])
        app.on_response_prepare.append(self._stamp_date)
        app.router.add_get("/v{version:[12]}/Flows/{flow}", self._fetch_flow)
        app.router.add_get("/v2/Flows/{flow}/Revisions/{revision}", self._fetch_revision)
        for runs in ("/v1/Flows/{flow}/{collection:Engagements}", "/v2/Flows/{flow}/{collection:Executions}"):
            app.router.add_post(runs, self._create)
            app.router.add_get(runs, self._list)
            app.router.add_get(runs + "/{sid}", self._fetch_run)
            app.router.add_get(runs + "/{sid}/Context", self._fetch_context)
        app.router.add_get("/2010-04-01/Accounts/{account}/Messages/{sid}.json", self._fetch_message)
        return app

    async def _stamp_date(self, request: web.Request, response: web.StreamResponse) -> None:
        """Put Twilio's clock in the Date header of every answer, in place of aiohttp's."""
        with self._lock:
            now = self._now(self._config)
        response.headers["Date"] = format_datetime(now.replace(microsecond=0), usegmt=True)

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
        return auth.login if ACCOUNT_SID.match(auth.login) else SANDBOX_USERNAME

    @staticmethod
    def _api(request: web.Request) -> Api:
        """Which run API the path names."""
        return "engagements" if request.match_info["collection"] == "Engagements" else "executions"

    def _count(self, counter: str) -> SandboxConfig:
        """Count a request and answer the live config."""
        with self._lock:
            self._counts[counter] += 1
            return self._config

    def _flow_status(self, request: web.Request) -> str:
        """Answer the configured status of the path's flow, or raise the 404 Twilio gives."""
        flow_sid = request.match_info["flow"]
        with self._lock:
            flows = self._config.flows
        status: str | None
        if not FLOW_SID.match(flow_sid):
            status = None
        elif flows is None:
            status = "published"
        else:
            status = flows.get(flow_sid)
        if status is None:
            raise not_found(request.path)
        return status

    def _read_gate(self, counter: str) -> SandboxConfig:
        """Count a run read and maybe refuse it with 429, as Twilio does under load."""
        with self._lock:
            self._counts[counter] += 1
            config = self._config
            refused = self._read_rng.random() < config.read_rate_limit_rate
            if refused:
                self._counts["read_rate_limited"] += 1
        if refused:
            raise too_many(config.retry_after)
        return config

    # --- Flows and their revisions.

    async def _fetch_flow(self, request: web.Request) -> web.StreamResponse:
        """GET /v1/Flows/{sid} and /v2/Flows/{sid} (v2 shows the latest revision)."""
        account_sid = self._account(request) or SANDBOX_USERNAME
        config = self._count("flow_requests")
        revisions = FlowRevisions.of(self._flow_status(request))
        sid = request.match_info["flow"]
        url = f"{self.base_url}/v{request.match_info['version']}/Flows/{sid}"
        if request.match_info["version"] == "1":
            return web.json_response(
                {
                    "sid": sid,
                    "account_sid": account_sid,
                    "friendly_name": f"Sandbox Flow {sid[-4:]}",
                    "status": revisions.status(revisions.latest),
                    "version": 1,
                    "date_created": iso(self._flows_born),
                    "date_updated": self._revision_updated(revisions.latest),
                    "url": url,
                    "links": {"engagements": f"{url}/Engagements", "executions": f"{url}/Executions"},
                }
            )
        body = self._revision_json(account_sid, sid, revisions, revisions.latest, config)
        body.update(
            warnings=[],
            webhook_url=f"https://webhooks.twilio.com/v1/Accounts/{account_sid}/Flows/{sid}",
            url=url,
            links={
                "test_users": f"{url}/TestUsers",
                "revisions": f"{url}/Revisions",
                "executions": f"{url}/Executions",
            },
        )
        return web.json_response(body)

    async def _fetch_revision(self, request: web.Request) -> web.StreamResponse:
        """GET /v2/Flows/{sid}/Revisions/{n | LatestPublished | LatestRevision}."""
        account_sid = self._account(request) or SANDBOX_USERNAME
        config = self._count("revision_requests")
        revisions = FlowRevisions.of(self._flow_status(request))
        wanted = request.match_info["revision"]
        number: int | None
        if wanted == "LatestPublished":
            number = revisions.published
        elif wanted == "LatestRevision":
            number = revisions.latest
        else:
            number = int(wanted) if wanted.isdigit() and 1 <= int(wanted) <= revisions.latest else None
        if number is None:
            raise not_found(request.path)
        return web.json_response(
            self._revision_json(account_sid, request.match_info["flow"], revisions, number, config)
        )

    def _revision_updated(self, number: int) -> str | None:
        """date_updated of a revision: revisions after the first are edits, a minute apart."""
        return None if number == 1 else iso(self._flows_born + timedelta(minutes=number - 1))

    def _revision_json(
        self, account_sid: str, sid: str, revisions: FlowRevisions, number: int, config: SandboxConfig
    ) -> dict[str, Any]:
        """Render one revision of a Flow, in the shape v2 Flow and FlowRevision share."""
        unpublished_edit = revisions.published is not None and number > revisions.published
        definition = flow_definition(
            wired=not config.unwired_trigger, ask_body=DRAFT_ASK_BODY if unpublished_edit else ASK_BODY
        )
        return {
            "sid": sid,
            "account_sid": account_sid,
            "author_sid": "US" + hex32("author", account_sid),
            "friendly_name": f"Sandbox Flow {sid[-4:]}",
            "definition": definition,
            "status": revisions.status(number),
            "revision": number,
            "commit_message": "Ask for a coupon code" if unpublished_edit else None,
            "valid": True,
            "errors": [],
            "date_created": iso(self._flows_born),
            "date_updated": self._revision_updated(number),
            "url": f"{self.base_url}/v2/Flows/{sid}/Revisions/{number}",
        }

    # --- Creating runs.

    async def _create(self, request: web.Request) -> web.StreamResponse:
        """POST /v1/Flows/{sid}/Engagements and /v2/Flows/{sid}/Executions; count the answer."""
        self._count("create_requests")
        try:
            answer = await self._answer_create(request, self._api(request))
        except ApiError as exc:
            answer = exc.response()
        with self._lock:
            self._by_status[0 if answer is None else answer.status] += 1
            if answer is not None and answer.status == 429:
                self._counts["rate_limited"] += 1
        # aiohttp cannot write to the transport we closed; it swallows that quietly.
        return web.Response() if answer is None else answer

    async def _read_create_form(self, request: web.Request) -> tuple[str, str, dict[str, Any]]:
        """Read To, From and Parameters from a create's form, or raise the 400."""
        form = await request.post()
        fields: dict[str, str] = {}
        for name in ("To", "From", "Parameters"):
            value = form.get(name)
            if isinstance(value, str) and value != "":
                fields[name] = value
        for name in ("To", "From"):
            if name not in fields:
                raise ApiError(400, 20001, f"Missing required parameter {name} in the post body")
        return fields["To"], fields["From"], self._parse_parameters(fields.get("Parameters"))

    async def _answer_create(self, request: web.Request, api: Api) -> web.Response | None:
        """Decide the answer to a create; None means drop the connection."""
        account_sid = self._account(request) or SANDBOX_USERNAME
        flow_sid = request.match_info["flow"]
        self._flow_status(request)
        self._spend_token(account_sid)
        to, from_, parameters = await self._read_create_form(request)

        with self._lock:
            config = self._config
            if self._sender_rng.random() < config.other_sender_rate:
                self._start_inbound(config, api, account_sid, flow_sid, to, from_)
            fault = self._draw_fault(config)
            delay = max(0.0, config.latency + self._rng.uniform(-config.jitter, config.jitter))
            if fault == "error":
                status = self._next_error
                # Alternate so a client sees both flavours of server error.
                self._next_error = 503 if status == 500 else 500
            else:
                run, created = self._create_or_find(config, api, account_sid, flow_sid, to, from_, parameters)
                body = self._run_json(run, config)

        if fault == "error":
            await self._pause(delay)
            raise ApiError(status, 20000 + status, "Internal Server Error" if status == 500 else "Service Unavailable")
        await self._pause(config.slow_seconds if fault == "slow" else delay)
        if fault == "lost":
            raise ApiError(503, 20503, "Service Unavailable")
        if fault == "drop":
            if request.transport is not None:
                request.transport.close()
            return None
        if created:
            return web.json_response(body, status=200 if api == "engagements" else 201)
        if api == "engagements":
            # Studio v1 hands back the contact's active Engagement instead of failing.
            return web.json_response(body, status=200)
        raise ApiError(
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
            bucket = self._buckets.setdefault(account_sid, TokenBucket())
            if bucket.take(config.rate_limit, time.monotonic()):
                return
        raise too_many(config.retry_after)

    @staticmethod
    def _parse_parameters(raw: str | None) -> dict[str, Any]:
        """Parse the Parameters field, which must hold a JSON object."""
        if raw is None:
            return {}
        try:
            parsed = json.loads(raw)
        except ValueError:
            raise ApiError(400, 20001, "Invalid Parameters: not valid JSON") from None
        if not isinstance(parsed, dict):
            raise ApiError(400, 20001, "Invalid Parameters: must be a JSON object")
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

    def _active(self, run: Run, config: SandboxConfig) -> bool:
        """Tell whether a run still counts as active (lock held)."""
        return run.end(config.run_lifetime, time.monotonic()) is None

    def _new_run(
        self,
        config: SandboxConfig,
        api: Api,
        account_sid: str,
        flow_sid: str,
        to: str,
        from_: str,
        source: Source,
        parameters: dict[str, Any],
    ) -> Run:
        """A fresh run: a REST request's (RQ...) or an inbound message's (SM...) (lock held)."""
        inbound = source == "inbound"
        now = self._now(config)
        return Run(
            seq=len(self._runs),
            sid="FN" + uuid.uuid4().hex,
            api=api,
            account_sid=account_sid,
            flow_sid=flow_sid,
            initiated_by=("SM" if inbound else "RQ") + uuid.uuid4().hex,
            source=source,
            to=to,
            from_=from_,
            parameters=parameters,
            date_created=now,
            born=time.monotonic(),
            # The Trigger's incomingMessage leads nowhere, so an inbound run ends as it starts.
            played=not inbound and not config.unwired_trigger,
            ended_at=now if inbound else None,
        )

    def _start_inbound(
        self, config: SandboxConfig, api: Api, account_sid: str, flow_sid: str, to: str, from_: str
    ) -> None:
        """Start and end at once the run an inbound message from the contact triggers (lock held)."""
        latest = self._latest.get((account_sid, flow_sid, to, from_))
        # A message from a contact with an active run goes to that run, not a new one.
        if config.active_rule and latest is not None and self._active(latest, config):
            return
        run = self._new_run(config, api, account_sid, flow_sid, to, from_, "inbound", {})
        self._add(run)
        self._remember(run.record())
        self._counts["inbound_runs"] += 1

    def _create_or_find(
        self,
        config: SandboxConfig,
        api: Api,
        account_sid: str,
        flow_sid: str,
        to: str,
        from_: str,
        parameters: dict[str, Any],
    ) -> tuple[Run, bool]:
        """Create a run, or find the active run that blocks it; True if created (lock held)."""
        latest = self._latest.get((account_sid, flow_sid, to, from_))
        # Runs end all together or by age, so the newest REST run of a contact is the
        # last one to stop blocking it.
        if config.active_rule and latest is not None and self._active(latest, config):
            return latest, False
        run = self._new_run(config, api, account_sid, flow_sid, to, from_, "rest", parameters)
        # Written before the answer, so a later process knows every run a client was told of.
        self._remember(run.record())
        self._add(run)
        self._counts["created"] += 1
        return run, True

    # --- Reading runs.

    def _run_url(self, run: Run) -> str:
        """The absolute URL of a run."""
        version, collection = ("v1", "Engagements") if run.api == "engagements" else ("v2", "Executions")
        return f"{self.base_url}/{version}/Flows/{run.flow_sid}/{collection}/{run.sid}"

    def _run_context(self, run: Run, config: SandboxConfig) -> dict[str, Any]:
        """A run's Flow context: what it started with, and widget outputs once ended (lock held)."""
        context = start_context(run)
        ended = run.end(config.run_lifetime, time.monotonic())
        if ended is not None and run.played:
            context["widgets"] = widget_outputs(run, run_messages(run, config.replies, ended))
        return context

    def _run_json(self, run: Run, config: SandboxConfig, *, listed: bool = False) -> dict[str, Any]:
        """Render a run as an Engagement or an Execution (lock held)."""
        url = self._run_url(run)
        ended = run.end(config.run_lifetime, time.monotonic())
        address = run.to
        if listed and config.list_drops_channel_prefix:
            address = address.removeprefix("whatsapp:")
        body: dict[str, Any] = {
            "sid": run.sid,
            "account_sid": run.account_sid,
            "flow_sid": run.flow_sid,
            "contact_sid": run.contact_sid,
            "contact_channel_address": address,
            "context": self._run_context(run, config),
            "status": "active" if ended is None else "ended",
            "date_created": iso(run.date_created),
            "date_updated": iso(run.date_created if ended is None else ended),
            "url": url,
        }
        if run.api == "engagements":
            # Twilio's v1 Engagement has no initiated_by; never show it there.
            body["links"] = {"steps": f"{url}/Steps", "engagement_context": f"{url}/Context"}
        else:
            body["flow_version"] = 2
            body["initiated_by"] = run.initiated_by
            body["links"] = {"steps": f"{url}/Steps", "execution_context": f"{url}/Context"}
        return body

    def _find_run(self, request: web.Request) -> Run:
        """The run the path names, in the caller's account, or raise the 404."""
        account_sid = self._account(request) or SANDBOX_USERNAME
        self._flow_status(request)
        with self._lock:
            run = self._by_sid.get(request.match_info["sid"])
        if (
            run is None
            or run.api != self._api(request)
            or run.flow_sid != request.match_info["flow"]
            or run.account_sid != account_sid
        ):
            raise not_found(request.path)
        return run

    async def _fetch_run(self, request: web.Request) -> web.StreamResponse:
        """GET /v1/Flows/{f}/Engagements/{sid} and /v2/Flows/{f}/Executions/{sid}."""
        config = self._read_gate("run_requests")
        run = self._find_run(request)
        with self._lock:
            return web.json_response(self._run_json(run, config))

    async def _fetch_context(self, request: web.Request) -> web.StreamResponse:
        """GET .../Engagements/{sid}/Context and .../Executions/{sid}/Context."""
        config = self._read_gate("context_requests")
        run = self._find_run(request)
        with self._lock:
            context = self._run_context(run, config)
        key = "engagement_sid" if run.api == "engagements" else "execution_sid"
        return web.json_response(
            {
                "account_sid": run.account_sid,
                "context": context,
                key: run.sid,
                "flow_sid": run.flow_sid,
                "url": f"{self._run_url(run)}/Context",
            }
        )

    async def _fetch_message(self, request: web.Request) -> web.StreamResponse:
        """GET /2010-04-01/Accounts/{AccountSid}/Messages/{Sid}.json for a message a run sent or got."""
        account_sid = self._account(request) or SANDBOX_USERNAME
        config = self._count("message_requests")
        message: Message | None = None
        with self._lock:
            run, role = self._messages.get(request.match_info["sid"], (None, ""))
            # A message exists once its run has played out; a contact who never got
            # the question never replied.
            ended = None if run is None else run.end(config.run_lifetime, time.monotonic())
            if run is not None and ended is not None:
                message = run_messages(run, config.replies, ended).get(role)
        if message is None or account_sid != request.match_info["account"] or account_sid != message.run.account_sid:
            raise not_found(request.path)
        return web.json_response(message_json(message))

    async def _list(self, request: web.Request) -> web.StreamResponse:
        """GET /v1/Flows/{sid}/Engagements and /v2/Flows/{sid}/Executions: one page, newest first."""
        api = self._api(request)
        account_sid = self._account(request) or SANDBOX_USERNAME
        self._read_gate("list_requests")
        flow_sid = request.match_info["flow"]
        self._flow_status(request)
        query = request.query
        page_size = int_query(query, "PageSize", _DEFAULT_PAGE_SIZE, 1, _MAX_PAGE_SIZE)
        page = int_query(query, "Page", 0, 0, None)
        token = query.get("PageToken")
        filters, keep = self._list_filters(query, api)

        with self._lock:
            config = self._config
            matches = [
                run
                for run in self._runs
                if run.api == api and run.flow_sid == flow_sid and run.account_sid == account_sid and keep(run, config)
            ]
            matches.sort(key=Run.order, reverse=True)
            start, end = self._page_bounds(matches, token, page_size)
            chosen = matches[start:end]
            items = [self._run_json(run, config, listed=True) for run in chosen]

        page_base = self.base_url
        if config.next_page_host is not None:
            # Only the host changes: a client that follows it must not send its credentials there.
            page_base = urlunsplit(urlsplit(self.base_url)._replace(netloc=config.next_page_host))

        def page_url(number: int, page_token: str | None) -> str:
            params = {**filters, "PageSize": str(page_size), "Page": str(number)}
            if page_token is not None:
                params["PageToken"] = page_token
            return f"{page_base}{request.path}?{urlencode(params)}"

        url = page_url(page, token)
        if config.repeat_next_page:
            next_url: str | None = url
        elif end < len(matches) and chosen:
            next_url = page_url(page + 1, f"PA{chosen[-1].seq}")
        else:
            next_url = None
        previous_url = page_url(max(0, page - 1), f"PB{chosen[0].seq}") if start > 0 and chosen else None
        meta = {
            "page": page,
            "page_size": page_size,
            "first_page_url": page_url(0, None),
            "previous_page_url": previous_url,
            "url": url,
            "next_page_url": next_url,
            "key": api,
        }
        return web.json_response({api: items, "meta": meta})

    def _list_filters(
        self, query: Mapping[str, str], api: Api
    ) -> tuple[dict[str, str], Callable[[Run, SandboxConfig], bool]]:
        """Read v2's DateCreatedFrom/To and status filters: the ones to echo, and a test (v1 has none)."""
        # Echoed into the paging URLs so following next_page_url keeps filtering.
        filters: dict[str, str] = {}
        date_from = date_to = None
        wanted_status = None
        if api == "executions":
            if "DateCreatedFrom" in query:
                filters["DateCreatedFrom"] = query["DateCreatedFrom"]
                date_from = parse_moment("DateCreatedFrom", query["DateCreatedFrom"])
            if "DateCreatedTo" in query:
                filters["DateCreatedTo"] = query["DateCreatedTo"]
                date_to = parse_moment("DateCreatedTo", query["DateCreatedTo"])
            # The OpenAPI file spells it "status"; the helper libraries send "Status".
            for name in ("status", "Status"):
                if name in query:
                    wanted_status = query[name]
                    if wanted_status not in ("active", "ended"):
                        raise ApiError(400, 20001, f"Invalid {name}: {wanted_status!r}")
                    filters[name] = wanted_status

        def keep(run: Run, config: SandboxConfig) -> bool:
            # Dates are compared on Twilio's clock: that is the clock run dates are on.
            if date_from is not None and run.date_created < date_from:
                return False
            if date_to is not None and run.date_created >= date_to:
                return False
            return wanted_status is None or wanted_status == ("active" if self._active(run, config) else "ended")

        return filters, keep

    def _page_bounds(self, matches: list[Run], token: str | None, page_size: int) -> tuple[int, int]:
        """Turn a page token into a slice of the newest-first matches (lock held)."""
        if token is None:
            return 0, page_size
        # Tokens name a run rather than an offset, so runs created while a client is
        # paging do not shift later pages under it.
        anchor: Run | None = None
        if token[:2] in ("PA", "PB") and token[2:].isdigit() and int(token[2:]) < len(self._runs):
            anchor = self._runs[int(token[2:])]
        if anchor is None:
            raise ApiError(400, 20001, f"Invalid PageToken: {token!r}")
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
        config: SandboxConfig = DEFAULT_CONFIG,
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
    config: SandboxConfig = DEFAULT_CONFIG,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    on_ready: Callable[[str], None] | None = None,
) -> None:
    """Serve in the foreground until Ctrl-C or SIGTERM (`batch-engage sandbox`)."""

    def on_sigterm(signum: int, frame: FrameType | None) -> None:
        raise _Terminated

    # Built first: a bad state file raises before any signal handler is swapped.
    sandbox = Sandbox(config, host=host, port=port)
    # signal.signal only works on the main thread; elsewhere only Ctrl-C applies.
    in_main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, on_sigterm) if in_main_thread else None
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
