"""The simulator's core: its runs and counters under one lock, the state file, auth and the request gates."""

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
from datetime import datetime
from pathlib import Path
from types import MappingProxyType
from typing import Any

from aiohttp import BasicAuth, web

from ._queue import Fate, SenderQueues
from ._views import ended_at, expired, twilio_now
from .config import SANDBOX_USERNAME, Api, LedgerEntry, SandboxConfig, SandboxStats
from .shapes import ACCOUNT_SID, FLOW_SID, not_found, too_many
from .state import (
    MESSAGE_ROLES,
    Run,
    TokenBucket,
    append_state,
    load_state,
    message_sid,
)

__all__ = ["FALLBACK_FLOW", "Studio"]

FALLBACK_FLOW = "FW" + "0" * 32
"""The Flow "this_flow" names before any Flow was asked about."""

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
        self._flows_born = twilio_now(config).replace(microsecond=0)
        self._state_path = None if config.state_path is None else Path(config.state_path)
        self.base_url = ""
        self._closing: asyncio.Event | None = None
        # Runs a late fault creates after its answer: held, or the loop could drop a task still sleeping.
        self._late: set[asyncio.Task[None]] = set()
        if self._state_path is not None:
            self._restore(load_state(self._state_path))

    def _seed_draws(self, seed: int | None) -> None:
        """Start the three random streams; separate, so one rate never shifts another's draws."""
        self._rng = random.Random(seed)
        self._sender_rng = random.Random(None if seed is None else f"other-sender:{seed}")
        self._read_rng = random.Random(None if seed is None else f"read-429:{seed}")

    def _restore(self, records: list[dict[str, Any]]) -> None:
        """Rebuild runs from state-file records; their age follows their date_created."""
        now, mono = twilio_now(self._config), time.monotonic()
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

    def _saw_flow(self, flow_sid: str) -> None:
        """Remember a Flow a client works with: "this_flow" routing means it (lock not held)."""
        with self._lock:
            self._seen_flows[flow_sid] = None

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
            now = twilio_now(config)
            for run in self._runs:
                if ended_at(run, config) is None:
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
            forced = self._counts["forced_read_429"] < config.read_rate_limited_first
            self._counts["forced_read_429"] += forced
            refused = forced or self._read_rng.random() < config.read_rate_limit_rate
            if refused:
                self._counts["read_rate_limited"] += 1
        if refused:
            raise too_many(config.retry_after)
        return config

    def _find_run(self, request: web.Request) -> Run:
        """The run the path names, in the caller's account, or raise the 404."""
        account_sid = self._account(request) or SANDBOX_USERNAME
        self._flow_status(request)
        with self._lock:
            run = self._by_sid.get(request.match_info["sid"])
            gone = run is not None and expired(run, self._config)
        if (
            run is None
            or gone
            or run.api != self._api(request)
            or run.flow_sid != request.match_info["flow"]
            or run.account_sid != account_sid
        ):
            raise not_found(request.path)
        return run
