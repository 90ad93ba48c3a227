"""The sections of a job as frozen values, each default a named constant: what ``Spec`` is made of."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Literal

from ..errors import ConfigError
from . import periods
from .send_window import SendWindow, parse_window

DEFAULT_RATE = 20.0
DEFAULT_CONCURRENCY = 8
DEFAULT_MAX_ATTEMPTS = 6
DEFAULT_MAX_BACKOFF = 300.0
DEFAULT_CONNECT_TIMEOUT = 5.0
DEFAULT_READ_TIMEOUT = 15.0
DEFAULT_MAX_PARAMETERS_BYTES = 16 * 1024
DEFAULT_RECONCILE_DELAY = 3.0
# Seconds a possibly-sent request must be old before a lookup that misses its run means "never created": Studio may
# still create a run after its edge answered 504, or after we stopped waiting (no bound is documented).
DEFAULT_SETTLE_AFTER = 60.0
DEFAULT_BREAKER_WINDOW = 100
DEFAULT_BREAKER_RATIO = 0.5
DEFAULT_MARKER_KEY = "_batch_engage"
DEFAULT_UNREACHABLE_TIMEOUT = 120.0
DEFAULT_LOCK_WAIT = 60.0
DEFAULT_ACTIVE_RETRY = 300.0
DEFAULT_END_ACTIVE_AFTER = 86400.0

Api = Literal["engagements", "executions"]
Dedupe = Literal["to", "to_from", "none"]
OnActive = Literal["skip", "wait", "end"]
_CAP = re.compile(r"^\s*(\d+)\s*per\s*(\d+)\s*([mhdw])\s*$")
_UNIT_SECONDS = {"m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


@dataclass(frozen=True, kw_only=True)
class InputSpec:
    """Where the contacts come from (``[input]`` of the job; the readers take it)."""

    path: str | None = None
    format: str | None = None
    encoding: str = "utf-8"
    uri: str | None = None
    query: str | None = None
    separator: str | None = None  # a CSV's field separator; None: detected from the header
    # A list that shares no contact with the ones this job reached is sent (lists that only ever hold new
    # contacts), not refused as a likely wrong file.
    other_lists: bool = False


@dataclass(frozen=True)
class Cap:
    """At most ``count`` contacts within ``seconds``."""

    count: int
    seconds: float
    text: str


def parse_cap(text: str, *, key: str) -> Cap:
    """Parse ``"1 per 7d"`` (units m, h, d, w)."""
    match = _CAP.match(text)
    if match is None or int(match.group(1)) < 1 or int(match.group(2)) < 1:
        raise ConfigError(key, f"must look like '1 per 7d' (units m, h, d, w), not {text!r}")
    return Cap(int(match.group(1)), int(match.group(2)) * _UNIT_SECONDS[match.group(3)], text.strip())


@dataclass(frozen=True, kw_only=True)
class FlowSpec:
    """Which Flow to run, through which API and host."""

    sid: str
    api: Api = "engagements"
    base_url: str | None = None
    region: str | None = None
    edge: str | None = None
    strict_variables: bool = False
    replies: Literal["here", "elsewhere"] = "here"


@dataclass(frozen=True, kw_only=True)
class MappingSpec:
    """How columns become ``To``, ``From`` and ``Parameters``."""

    to: str
    from_: str | None = None
    from_column: str | None = None
    parameters: tuple[tuple[str, str], ...] = ()
    static_parameters: Mapping[str, Any] = field(default_factory=dict)
    parameters_column: str | None = None
    default_region: str | None = None
    timezone_column: str | None = None


@dataclass(frozen=True, kw_only=True)
class SendSpec:
    """How fast, how persistently and how carefully to send."""

    rate: float = DEFAULT_RATE
    concurrency: int = DEFAULT_CONCURRENCY
    max_attempts: int = DEFAULT_MAX_ATTEMPTS
    max_backoff: float = DEFAULT_MAX_BACKOFF
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT
    read_timeout: float = DEFAULT_READ_TIMEOUT
    dedupe: Dedupe = "to"
    max_parameters_bytes: int = DEFAULT_MAX_PARAMETERS_BYTES
    preflight: bool = True
    reconcile_delay: float = DEFAULT_RECONCILE_DELAY
    settle_after: float = DEFAULT_SETTLE_AFTER
    breaker_window: int = DEFAULT_BREAKER_WINDOW
    breaker_ratio: float = DEFAULT_BREAKER_RATIO
    window: str | None = None
    days: tuple[str, ...] | None = None
    default_timezone: str | None = None
    marker_key: str = DEFAULT_MARKER_KEY
    unreachable_timeout: float = DEFAULT_UNREACHABLE_TIMEOUT
    on_active: OnActive = "skip"
    active_retry: float = DEFAULT_ACTIVE_RETRY
    end_active_after: float = DEFAULT_END_ACTIVE_AFTER
    sender_throughput: float | None = None  # segments/s; None: the sender kind's documented default
    pace: Literal["rate", "sender"] = "rate"
    validity_period: int | None = None  # seconds; None: the Messaging Service's own, else Twilio's 36,000

    @cached_property
    def send_window(self) -> SendWindow | None:
        """``window`` and ``days`` parsed (None: no window); parsed once, when the job is loaded."""
        return parse_window(self.window, self.days) if self.window is not None else None


@dataclass(frozen=True, kw_only=True)
class OutputSpec:
    """Where the results, checkpoint and outcomes live (``*_template``: before ``{id}``/``{date}`` were filled)."""

    results: str
    checkpoint: str
    results_template: str | None = None
    checkpoint_template: str | None = None
    outcomes: str | None = None
    outcomes_template: str | None = None
    lock_wait: float = DEFAULT_LOCK_WAIT
    csv_guard: bool = True
    real: tuple[str, ...] = ()
    """A rehearsal's: the real job's results and outcomes, which nothing the rehearsal writes may replace."""


@dataclass(frozen=True, kw_only=True)
class CollectSpec:
    """What ``collect`` brings back per run: fields (column name, dotted Context path), delivery, and its pace.

    ``rate`` and ``concurrency`` default (None) to ``[send]``'s.
    """

    fields: tuple[tuple[str, str], ...] = ()
    message_status: tuple[str, ...] = ()
    rate: float | None = None
    concurrency: int | None = None


@dataclass(frozen=True, kw_only=True)
class JobSpec:
    """The campaign's name; with ``{date}``, ``{week}`` or ``{month}`` in it, one campaign per period."""

    id: str = "job"
    template: str = "job"
    period_kind: periods.PeriodKind | None = None
    period: str | None = None
    named: bool = False
    """Whether ``[job] id`` was given (else the job file's name): a database table's rows are keyed by it."""


@dataclass(frozen=True, kw_only=True)
class SuppressSpec:
    """Lists of contacts never to reach (opt-outs, do-not-contact)."""

    files: tuple[str, ...] = ()
    column: str | None = None
    opted_out: Literal["sender", "everywhere"] = "sender"


@dataclass(frozen=True, kw_only=True)
class HistorySpec:
    """The contact history shared across jobs, and the frequency caps checked against it."""

    path: str | None = None
    cap: str | None = None
    flow_cap: str | None = None

    @cached_property
    def caps(self) -> tuple[Cap | None, Cap | None]:
        """``cap`` and ``flow_cap`` parsed; parsed once, when the job is loaded."""
        return (
            parse_cap(self.cap, key="history.cap") if self.cap else None,
            parse_cap(self.flow_cap, key="history.flow_cap") if self.flow_cap else None,
        )
