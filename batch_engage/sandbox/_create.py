"""The create route: POST a run, with the rate limit, the active-run rule, inbound runs and injected faults."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from dataclasses import dataclass
from typing import Any, Literal

from aiohttp import web

from ._core import Studio
from ._views import ended_at, run_json, twilio_now
from .config import SANDBOX_USERNAME, Api, SandboxConfig, Source
from .shapes import ApiError, too_many
from .state import Run, TokenBucket, message_fates

__all__ = ["CreateRoutes"]

_Fault = Literal["error", "lost", "drop", "slow", "late"] | None


@dataclass(frozen=True, slots=True)
class _Contact:
    """Whom a create is for: the run API, the account, the Flow, and the contact's To and From."""

    api: Api
    account_sid: str
    flow_sid: str
    to: str
    from_: str


class CreateRoutes(Studio):
    """The create handler and the rules that decide its answer."""

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
        contact = _Contact(api, account_sid, flow_sid, to, from_)

        with self._lock:
            config = self._config
            if self._sender_rng.random() < config.other_sender_rate:
                self._start_inbound(config, contact)
            if to in config.other_sender_active and to not in self._foreign_seeded:
                self._foreign_seeded.add(to)
                self._start_inbound(config, contact, stays=True)
            fault = self._draw_fault(config)
            delay = max(0.0, config.latency + self._rng.uniform(-config.jitter, config.jitter))
            if fault == "error":
                status = self._next_error
                # Alternate so a client sees both flavours of server error.
                self._next_error = 503 if status == 500 else 500
            elif fault == "late":
                task = asyncio.create_task(self._create_late(config, contact, parameters))
                self._late.add(task)
                task.add_done_callback(self._late.discard)
            else:
                run, created = self._create_or_find(config, contact, parameters)
                body = run_json(run, config, self.base_url)

        if fault == "error":
            await self._pause(delay)
            raise ApiError(status, 20000 + status, "Internal Server Error" if status == 500 else "Service Unavailable")
        if fault == "late":
            await self._pause(delay)
            raise ApiError(504, 20504, "Gateway Timeout")
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

    async def _create_late(self, config: SandboxConfig, contact: _Contact, parameters: dict[str, Any]) -> None:
        """The run of a request answered 504 before it was processed: created ``late_seconds`` after it."""
        await self._pause(config.late_seconds)
        if self._closing is None or self._closing.is_set():
            return
        with self._lock:
            self._create_or_find(config, contact, parameters)

    async def _update(self, request: web.Request) -> web.StreamResponse:
        """POST /v2/Flows/{f}/Executions/{sid} (UpdateExecution): ``Status=ended`` ends an active run."""
        config = self._read_gate("update_requests")
        form = await request.post()
        status = form.get("Status")
        if status not in ("active", "ended"):
            raise ApiError(400, 20001, "Missing required parameter Status in the post body (active or ended)")
        run = self._find_run(request)
        with self._lock:
            if status == "ended" and ended_at(run, config) is None:
                run.ended_at = twilio_now(config)
                self._remember({"type": "end", "sid": run.sid, "ended_at": run.ended_at.isoformat()})
                self._counts["ended_by_request"] += 1
            return web.json_response(run_json(run, config, self.base_url))

    def _spend_token(self, account_sid: str) -> None:
        """Take one create from the account's bucket, or raise the 429."""
        with self._lock:
            config = self._config
            if self._counts["forced_429"] < config.rate_limited_first:
                self._counts["forced_429"] += 1
                raise too_many(config.retry_after)
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
            ("late", config.late_rate),
        )
        draw = self._rng.random()
        for fault, share in shares:
            if draw < share:
                return fault
            draw -= share
        return None

    def _new_run(
        self,
        config: SandboxConfig,
        contact: _Contact,
        source: Source,
        parameters: dict[str, Any],
        *,
        stays: bool = False,
    ) -> Run:
        """A fresh run: a REST request's (RQ...) or an inbound message's (SM...); ``stays``: an inbound one waits."""
        inbound = source == "inbound"
        now = twilio_now(config)
        return Run(
            seq=len(self._runs),
            sid="FN" + uuid.uuid4().hex,
            api=contact.api,
            account_sid=contact.account_sid,
            flow_sid=contact.flow_sid,
            initiated_by=("SM" if inbound else "RQ") + uuid.uuid4().hex,
            source=source,
            to=contact.to,
            from_=contact.from_,
            parameters=parameters,
            date_created=now,
            born=time.monotonic(),
            # The Trigger's incomingMessage leads nowhere, so an inbound run ends as it starts.
            played=not inbound and not config.unwired_trigger,
            ended_at=now if inbound and not stays else None,
        )

    def _blocking_run(self, config: SandboxConfig, contact: _Contact) -> Run | None:
        """The contact's active run when the active-run rule is on, else None (lock held)."""
        latest = self._latest.get((contact.account_sid, contact.flow_sid, contact.to, contact.from_))
        # Runs end all together or by age, so the newest REST run of a contact is the
        # last one to stop blocking it.
        if config.active_rule and latest is not None and ended_at(latest, config) is None:
            return latest
        return None

    def _start_inbound(self, config: SandboxConfig, contact: _Contact, *, stays: bool = False) -> None:
        """Start the run an inbound message from the contact triggers: ended at once, or (``stays``) left waiting."""
        # A message from a contact with an active run goes to that run, not a new one.
        if self._blocking_run(config, contact) is not None:
            return
        run = self._new_run(config, contact, "inbound", {}, stays=stays)
        self._add(run)
        self._remember(run.record())
        self._counts["inbound_runs"] += 1

    def _create_or_find(self, config: SandboxConfig, contact: _Contact, parameters: dict[str, Any]) -> tuple[Run, bool]:
        """Create a run, or find the active run that blocks it; True if created (lock held)."""
        blocking = self._blocking_run(config, contact)
        if blocking is not None:
            return blocking, False
        run = self._new_run(config, contact, "rest", parameters)
        # Written before the answer, so a later process knows every run a client was told of.
        self._remember(run.record())
        self._add(run)
        self._seen_flows[run.flow_sid] = None
        self._fates.update(message_fates(run, config, self._queues))
        self._counts["created"] += 1
        return run, True
