"""The sandbox's public value objects: its settings, its ledger entries, its counters, its credentials."""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from types import MappingProxyType
from typing import Any, Final, Literal

from .shapes import FLOW_SID

SANDBOX_USERNAME: Final[str] = "AC" + "5a" * 16
"""The account SID the sandbox accepts by default."""

SANDBOX_PASSWORD: Final[str] = "sandbox-auth-token"  # noqa: S105 - a public, throwaway credential by design
"""The auth token the sandbox accepts by default."""

_HOST = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?(:[0-9]{1,5})?$")
_FLOW_STATUSES: Final = ("published", "draft", "draft_over_published")
_DEFAULT_REPLIES: Final = ("YES", "NO", "STOP", "4", "5")

Api = Literal["engagements", "executions"]
"""The two run APIs: v1 Engagements and v2 Executions."""

Source = Literal["rest", "inbound"]
"""Who started a run: a REST create, or an inbound message from the contact."""

ROUTES: Final = ("this_flow", "other_flow", "none", "absent")
"""Where a number's replies go: the Flow its runs use, another Flow, no SMS URL; absent: not the account's."""
SERVICE_ROUTES: Final = ("this_flow", "other_flow", "none", "number")
"""Where a service's replies go; "number": ``use_inbound_webhook_on_number``, so each number's own."""
MAX_VALIDITY: Final = 36_000


def _check_route(route: str, allowed: tuple[str, ...], what: str) -> None:
    if route not in allowed and not route.startswith(("http://", "https://")):
        raise ValueError(f"{what} must be one of {', '.join(allowed)} or an http(s) URL, got {route!r}")


@dataclass(frozen=True)
class ServiceConfig:
    """A Messaging Service: its sender pool, where its replies go, and its validity period (seconds)."""

    numbers: tuple[str, ...] = ()
    inbound: str = "this_flow"
    validity_period: int = MAX_VALIDITY

    def __post_init__(self) -> None:
        """Reject what Twilio would not hold."""
        object.__setattr__(self, "numbers", tuple(self.numbers))
        _check_route(self.inbound, SERVICE_ROUTES, "a service's inbound")
        if not 1 <= self.validity_period <= MAX_VALIDITY:
            raise ValueError(f"validity_period must be 1 to {MAX_VALIDITY}, got {self.validity_period!r}")


@dataclass(frozen=True, kw_only=True)
class SandboxConfig:
    """How the simulated Studio behaves.

    rate_limit: creates per second per account before 429/20429 (None: no limit).
    rate_limited_first: the first this many creates are answered 429/20429, whatever
        rate_limit says (a backoff to test that does not hang on real time).
    latency, jitter: seconds each create answer takes, mean and spread.
    active_rule: Studio's one-active-run-per-contact rule (v1 hands back, v2 409s).
    run_lifetime: seconds after which a run ends by itself (and its widgets have played).
    wait_timeout: when set, runs instead stay active this many seconds on Twilio's clock
        (``wall`` plus ``clock_offset``), as a Send & Wait for Reply widget holds a run
        until its timeout; a test on a FakeClock moves it by advancing that clock.
    other_sender_active: contacts (To addresses) that, at their first create, already
        sit in an active run another sender started (an inbound conversation: initiated_by
        SM..., no Parameters); it blocks them like any active run until it ends.
    error_rate, lost_answer_rate, drop_rate, slow_rate, late_rate: shares of one draw per create:
        500/503 without a run, run created but 503, run created but connection
        dropped, run created but answered after slow_seconds, 504 answered at once and the
        run created late_seconds later (an edge that gave up while Studio still worked).
    retry_after: seconds put in Retry-After on 429s (rounded up), or no header.
    flows: Flow SID -> "published", "draft" (never published) or
        "draft_over_published" (a published revision under a newer draft); None
        means every well-formed Flow SID is a published Flow.
    credentials: accepted (username, password) pairs.
    repeat_next_page: list pages name themselves as next_page_url, forever.
    seed: seeds the fault, other-sender and read-429 draws (None: random).
    clock_offset: seconds Twilio's clock is ahead of ours (negative: behind); drives
        date_created/date_updated, the Date header, v2 DateCreated filters and retention:
        runs older than 30 days on this clock answer 404 and leave the lists.
    date_header_offset: seconds the Date header is ahead of the clock that stamps runs (an edge or a proxy
        with its own clock): Twilio's clock as a client reads it is then not date_created's.
    wall: where "ours" is read (None: this machine's clock); a test that runs a job on a
        ``batch_engage.testing.FakeClock`` passes the same one, so both sides share virtual time.
    other_sender_rate: share of creates before which an inbound message starts a run
        of the same Flow for the same contact (initiated_by SM..., no Parameters); that
        run ends at once, so it never blocks the create under the active rule.
    read_rate_limit_rate: share of run-list, run and Context GETs answered 429/20429.
    read_rate_limited_first: the first this many of those GETs are answered 429/20429, whatever
        read_rate_limit_rate says (counted over the sandbox's life, as rate_limited_first is).
    list_drops_channel_prefix: lists show contact_channel_address without "whatsapp:".
    next_page_host: host (and port) that list paging URLs name instead of the sandbox's.
    replies: what contacts answer the Flow's question, picked per contact.
    replies_by: a Parameters key and, per value of it, the replies contacts whose run carries
        that value pick from instead (e.g. ``("variant", {"B": ("YES", "NO")})``: B's contacts
        answer YES more often); runs without the key, or another value, use ``replies``.
    unwired_trigger: the Trigger's incomingRequest has no next widget, so REST runs
        end without sending anything.
    state_path: JSON-lines file runs are appended to as they are created and loaded
        from when the Sandbox is built (reconfigure does not reload it), so another
        process sees the same runs.
    reply_routing: where replies to a number go unless ``numbers`` says otherwise
        ("this_flow": the Flow its runs use, "other_flow", "none", "absent": the account
        has no such number, or an http(s) URL).
    numbers: From number -> its own reply routing (same values).
    services: Messaging Service SID -> ServiceConfig (pool, inbound, validity period).
    sender_pace: segments a second each sender sends; None: no queue (every message sent at once).
    validity_period: seconds a number's message may wait (a service's has its own).
    queue_limit: seconds' worth of segments a queue holds before 21611/30001.
    opted_out: To addresses that sent STOP: every message to them fails with 21610.
    set_cookie: a ``Set-Cookie`` value put on every answer (a load balancer's stickiness cookie, say);
        ``SandboxStats.cookies_sent_back`` counts the requests that carried a ``Cookie`` header anyway.
    """

    rate_limit: float | None = 20.0
    rate_limited_first: int = 0
    latency: float = 0.08
    jitter: float = 0.02
    run_lifetime: float = 3600.0
    wait_timeout: float | None = None
    other_sender_active: tuple[str, ...] = ()
    active_rule: bool = True
    error_rate: float = 0.0
    lost_answer_rate: float = 0.0
    drop_rate: float = 0.0
    slow_rate: float = 0.0
    slow_seconds: float = 5.0
    late_rate: float = 0.0
    late_seconds: float = 5.0
    retry_after: float | None = None
    flows: Mapping[str, str] | None = None
    credentials: tuple[tuple[str, str], ...] = ((SANDBOX_USERNAME, SANDBOX_PASSWORD),)
    repeat_next_page: bool = False
    seed: int | None = None
    clock_offset: float = 0.0
    date_header_offset: float = 0.0
    wall: Callable[[], datetime] | None = None
    other_sender_rate: float = 0.0
    read_rate_limit_rate: float = 0.0
    read_rate_limited_first: int = 0
    list_drops_channel_prefix: bool = False
    next_page_host: str | None = None
    replies: tuple[str, ...] = _DEFAULT_REPLIES
    replies_by: tuple[str, Mapping[str, tuple[str, ...]]] | None = None
    unwired_trigger: bool = False
    state_path: str | None = None
    reply_routing: str = "this_flow"
    numbers: Mapping[str, str] = field(default_factory=dict)
    services: Mapping[str, ServiceConfig] = field(default_factory=dict)
    sender_pace: float | None = None
    validity_period: int = MAX_VALIDITY
    queue_limit: float = float(MAX_VALIDITY)
    opted_out: frozenset[str] = frozenset()
    set_cookie: str | None = None

    def __post_init__(self) -> None:
        """Reject settings the simulator cannot honour."""
        if self.rate_limit is not None and not self.rate_limit > 0:
            raise ValueError(f"rate_limit must be positive or None, got {self.rate_limit!r}")
        for name in (
            "latency",
            "jitter",
            "run_lifetime",
            "slow_seconds",
            "late_seconds",
            "rate_limited_first",
            "read_rate_limited_first",
        ):
            if not getattr(self, name) >= 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)!r}")
        shares = ("error_rate", "lost_answer_rate", "drop_rate", "slow_rate", "late_rate", "other_sender_rate")
        for name in (*shares, "read_rate_limit_rate"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be between 0 and 1, got {getattr(self, name)!r}")
        if self.wait_timeout is not None and not self.wait_timeout >= 0:
            raise ValueError(f"wait_timeout must be >= 0 or None, got {self.wait_timeout!r}")
        object.__setattr__(self, "other_sender_active", tuple(self.other_sender_active))
        if self.retry_after is not None and not self.retry_after >= 0:
            raise ValueError(f"retry_after must be >= 0 or None, got {self.retry_after!r}")
        for name in ("clock_offset", "date_header_offset"):
            if not math.isfinite(getattr(self, name)):
                raise ValueError(f"{name} must be a finite number of seconds, got {getattr(self, name)!r}")
        if self.flows is not None:
            bad = {sid: status for sid, status in self.flows.items() if status not in _FLOW_STATUSES}
            if bad:
                raise ValueError(f"flow status must be one of {', '.join(_FLOW_STATUSES)}; got {bad!r}")
            malformed = [sid for sid in self.flows if not FLOW_SID.match(sid)]
            if malformed:
                raise ValueError(f"flows keys must be Flow SIDs (FW and 32 hex digits), got {malformed!r}")
            # A caller mutating its dict later must not change a frozen config.
            object.__setattr__(self, "flows", MappingProxyType(dict(self.flows)))
        if not self.credentials:
            raise ValueError("credentials must hold at least one (username, password) pair")
        if self.next_page_host is not None and not _HOST.match(self.next_page_host):
            raise ValueError(f"next_page_host must be a host name with an optional :port, got {self.next_page_host!r}")
        object.__setattr__(self, "replies", tuple(self.replies))
        if not self.replies or not all(isinstance(reply, str) and reply for reply in self.replies):
            raise ValueError(f"replies must be one or more non-empty strings, got {self.replies!r}")
        if self.replies_by is not None:
            key, table = self.replies_by
            frozen = {value: tuple(options) for value, options in table.items()}
            if not key or not all(
                options and all(isinstance(o, str) and o for o in options) for options in frozen.values()
            ):
                raise ValueError(
                    f"replies_by must be a Parameters key and non-empty replies per value, got {self.replies_by!r}"
                )
            object.__setattr__(self, "replies_by", (key, MappingProxyType(frozen)))
        if self.state_path is not None and not self.state_path:
            raise ValueError("state_path must name a file, or be None")
        self._check_senders()

    def _check_senders(self) -> None:
        """Reject reply routings, services and queue settings Twilio would not have."""
        _check_route(self.reply_routing, ROUTES, "reply_routing")
        for number, route in self.numbers.items():
            _check_route(route, ROUTES, f"numbers[{number!r}]")
        for sid, service in self.services.items():
            if not re.match(r"^MG[0-9a-fA-F]{32}$", sid) or not isinstance(service, ServiceConfig):
                raise ValueError(f"services maps Messaging Service SIDs (MG...) to ServiceConfig, got {sid!r}")
        if self.sender_pace is not None and not self.sender_pace > 0:
            raise ValueError(f"sender_pace must be positive or None, got {self.sender_pace!r}")
        if not 1 <= self.validity_period <= MAX_VALIDITY:
            raise ValueError(f"validity_period must be 1 to {MAX_VALIDITY}, got {self.validity_period!r}")
        if not self.queue_limit > 0:
            raise ValueError(f"queue_limit must be positive, got {self.queue_limit!r}")
        object.__setattr__(self, "numbers", MappingProxyType(dict(self.numbers)))
        object.__setattr__(self, "services", MappingProxyType(dict(self.services)))
        object.__setattr__(self, "opted_out", frozenset(self.opted_out))

    def replies_for(self, parameters: Mapping[str, Any]) -> tuple[str, ...]:
        """The replies a contact whose run carries ``parameters`` picks from."""
        if self.replies_by is None:
            return self.replies
        key, table = self.replies_by
        value = parameters.get(key)
        return table.get(value, self.replies) if isinstance(value, str) else self.replies


DEFAULT_CONFIG: Final = SandboxConfig()
"""The settings a Sandbox gets when given none."""


@dataclass(frozen=True)
class LedgerEntry:
    """One run the sandbox created: by a REST create (source "rest") or an inbound message."""

    sid: str
    flow_sid: str
    api: str
    to: str
    from_: str
    parameters: dict[str, Any]
    date_created: datetime
    initiated_by: str
    source: Source


@dataclass(frozen=True)
class SandboxStats:
    """Counts of what the sandbox was asked and answered (by_status 0: connection dropped).

    by_status and rate_limited count creates only; read_rate_limited counts the 429s
    given to run-list, run and Context GETs; inbound_runs counts runs other senders started;
    update_requests counts Status updates, ended_by_request the runs they ended.
    """

    create_requests: int
    created: int
    rate_limited: int
    by_status: Mapping[int, int]
    list_requests: int
    flow_requests: int
    run_requests: int
    context_requests: int
    revision_requests: int
    message_requests: int
    read_rate_limited: int
    inbound_runs: int
    update_requests: int = 0
    ended_by_request: int = 0
    number_requests: int = 0
    service_requests: int = 0
    cookies_sent_back: int = 0
