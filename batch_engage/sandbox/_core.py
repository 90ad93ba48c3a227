"""The simulator's core: its runs and counters under one lock, Twilio's clock, auth, and a run's JSON."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hmac
import json
import random
import threading
import time
from collections import Counter
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import MappingProxyType
from typing import Any

from aiohttp import BasicAuth, web

from ._queue import Fate, SenderQueues, segments
from .config import SANDBOX_USERNAME, Api, LedgerEntry, SandboxConfig, SandboxStats
from .shapes import ACCOUNT_SID, ASK_BODY, FLOW_SID, INTRO_BODY, iso, not_found, render_liquid, too_many
from .state import (
    MESSAGE_ROLES,
    Run,
    TokenBucket,
    append_state,
    load_state,
    message_sid,
    run_messages,
    start_context,
    widget_outputs,
)

__all__ = ["FALLBACK_FLOW", "RETENTION", "Studio"]

FALLBACK_FLOW = "FW" + "0" * 32
"""The Flow "this_flow" names before any Flow was asked about."""
RETENTION = timedelta(days=30)
"""How long Studio keeps a run after it starts: then it is ended, and gone from every read and list."""

# What a ledger entry copies from a run as it is (Parameters are copied deep), and the counters SandboxStats shows.
_ENTRY = tuple(f.name for f in dataclasses.fields(LedgerEntry) if f.name != "parameters")
_COUNTERS = tuple(f.name for f in dataclasses.fields(SandboxStats) if f.name != "by_status")


class Studio:
    """The simulator's state and rules, shared by the server and test threads; routes are added by mixins."""

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
        # Message SID -> what Twilio's queue (or an opt-out) made of it; none: sent as its run started.
        self._fates: dict[str, Fate] = {}
        self._queues = SenderQueues()
        self._seen_flows: dict[str, None] = {}
        self._next_error = 500
        # Contacts whose other-sender run (other_sender_active) was started: one each, at their first create.
        self._foreign_seeded: set[str] = set()
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
        """Twilio's clock: ours (or the configured wall) plus the configured offset."""
        ours = config.wall() if config.wall is not None else datetime.now(UTC)
        return ours + timedelta(seconds=config.clock_offset)

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
            born = mono - (now - created).total_seconds()
            self._add(Run.from_record(record, seq=len(self._runs), born=born))

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

    def reply_flow(self) -> str | None:
        """The Flow a number routed to "this_flow" answers: the one Flow its runs use; None once it served several.

        One number's replies reach one webhook. A sandbox that serves several Flows (tests running two jobs at
        once) models the set-up that needs: a Function forwarding each reply to its contact's Flow.
        """
        with self._lock:
            seen, flows = list(self._seen_flows), self._config.flows
        if len(seen) > 1:
            return None
        if seen:
            return seen[0]
        return next(iter(flows), FALLBACK_FLOW) if flows else FALLBACK_FLOW

    @staticmethod
    def replies_heard(run: Run, config: SandboxConfig) -> bool:
        """Whether the contact's reply reaches the run's Flow: its From (or the service holding it) routes here."""
        route = config.numbers.get(run.from_, config.reply_routing)
        holder = config.services.get(run.from_) or next(
            (s for s in config.services.values() if run.from_ in s.numbers), None
        )
        if holder is not None and holder.inbound != "number":
            route = holder.inbound
        # A URL may forward to the Flow; only a route that names no Flow of ours loses the reply for sure.
        return route not in ("other_flow", "none", "absent")

    def _saw_flow(self, flow_sid: str) -> None:
        """Remember a Flow a client works with: "this_flow" routing means it (lock not held)."""
        with self._lock:
            self._seen_flows[flow_sid] = None

    def _queue_messages(self, run: Run, config: SandboxConfig) -> None:
        """Decide the fate of a new run's messages: opted out (21610), or through its sender's queue (lock held)."""
        if not run.played or (config.sender_pace is None and run.to not in config.opted_out):
            return
        service = config.services.get(run.from_)
        validity = service.validity_period if service is not None else config.validity_period
        scope = start_context(run)
        for role, body in (("intro", INTRO_BODY), ("ask", ASK_BODY)):
            units = segments(render_liquid(body, scope))
            if run.to in config.opted_out:
                fate = Fate("failed", 21610, None, units)
            else:
                assert config.sender_pace is not None
                fate = self._queues.enqueue(
                    run.from_,
                    run.date_created,
                    units,
                    pace=config.sender_pace,
                    validity=validity,
                    limit=config.queue_limit,
                )
            self._fates[message_sid(role, run)] = fate

    def reconfigure(self, changes: Mapping[str, Any]) -> None:
        """Replace the live config; a new seed restarts the random draws."""
        with self._lock:
            self._config = dataclasses.replace(self._config, **changes)
            if "seed" in changes:
                self._seed_draws(self._config.seed)

    def ledger(self) -> list[LedgerEntry]:
        """Snapshot the runs created so far, oldest first."""
        with self._lock:
            # A deep copy of the Parameters: a test mutating its entry must not change the run.
            return [
                LedgerEntry(
                    **{name: getattr(run, name) for name in _ENTRY}, parameters=json.loads(json.dumps(run.parameters))
                )
                for run in self._runs
            ]

    def stats(self) -> SandboxStats:
        """Snapshot the counters."""
        with self._lock:
            return SandboxStats(
                by_status=MappingProxyType(dict(self._by_status)), **{name: self._counts[name] for name in _COUNTERS}
            )

    def end_all_runs(self) -> None:
        """Mark every active run ended, now on Twilio's clock."""
        with self._lock:
            config = self._config
            now = self._now(config)
            for run in self._runs:
                if self._ended_at(run, config) is None:
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

    def _active(self, run: Run, config: SandboxConfig) -> bool:
        """Tell whether a run still counts as active (lock held)."""
        return self._ended_at(run, config) is None

    def _ended_at(self, run: Run, config: SandboxConfig) -> datetime | None:
        """When a run ended (Twilio's clock), or None while active: ended by a call, its timeout, or retention."""
        if run.ended_at is not None:
            return run.ended_at
        now = self._now(config)
        if config.wait_timeout is not None:
            timeout = run.date_created + timedelta(seconds=config.wait_timeout)
            if now >= timeout:
                return timeout
        else:
            ended = run.end(config.run_lifetime, time.monotonic())
            if ended is not None:
                return ended
        # Studio ends every run 30 days after it started, whatever it waits for.
        horizon = run.date_created + RETENTION
        return horizon if now >= horizon else None

    def _expired(self, run: Run, config: SandboxConfig) -> bool:
        """Whether Studio has deleted a run: 30 days after it started, on Twilio's clock (lock held)."""
        return self._now(config) >= run.date_created + RETENTION

    def _find_run(self, request: web.Request) -> Run:
        """The run the path names, in the caller's account, or raise the 404."""
        account_sid = self._account(request) or SANDBOX_USERNAME
        self._flow_status(request)
        with self._lock:
            run = self._by_sid.get(request.match_info["sid"])
            expired = run is not None and self._expired(run, self._config)
        if (
            run is None
            or expired
            or run.api != self._api(request)
            or run.flow_sid != request.match_info["flow"]
            or run.account_sid != account_sid
        ):
            raise not_found(request.path)
        return run

    def _run_url(self, run: Run) -> str:
        """The absolute URL of a run."""
        version, collection = ("v1", "Engagements") if run.api == "engagements" else ("v2", "Executions")
        return f"{self.base_url}/{version}/Flows/{run.flow_sid}/{collection}/{run.sid}"

    def _run_context(self, run: Run, config: SandboxConfig) -> dict[str, Any]:
        """A run's Flow context: what it started with, and widget outputs once ended (lock held)."""
        context = start_context(run)
        ended = self._ended_at(run, config)
        if ended is not None and run.played:
            heard = self.replies_heard(run, config)
            messages = run_messages(run, config.replies_for(run.parameters), ended, heard=heard)
            context["widgets"] = widget_outputs(run, messages)
        return context

    def _run_json(self, run: Run, config: SandboxConfig, *, listed: bool = False) -> dict[str, Any]:
        """Render a run as an Engagement or an Execution (lock held)."""
        url = self._run_url(run)
        ended = self._ended_at(run, config)
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
