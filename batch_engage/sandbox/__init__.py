"""A Twilio Studio simulator that serves real HTTP on the loopback interface.

The sandbox answers Studio's v1 Engagements and v2 Executions endpoints (create, list,
fetch one, and its Context), the v1/v2 Flow fetch endpoints, v2 Flow revisions, and
the 2010 Messages fetch for the messages its runs send, with JSON shaped like Twilio's
OpenAPI description. It models what Twilio does rather than what a client expects:
Studio's one-active-run-per-contact rule, a per-account rate limit on creates and
random 429s on reads, Twilio's own clock (its `Date` header and timestamps may be off
from ours), runs started by other senders (inbound messages) for the same contacts,
Flows whose latest revision is an unpublished draft, list pages that drop the
`whatsapp:` prefix or point at another host, and runs that end and leave widget
outputs behind. It can inject the faults a bulk trigger has to survive: 5xx answers,
answers lost after the run was created, dropped connections and slow answers. It runs
in a background thread with its own event loop, so synchronous code can drive it,
records every run it creates in a ledger that tests compare against, and can keep its
runs in a file so a later process sees them.

The package: `config` (SandboxConfig, LedgerEntry, SandboxStats), `shapes` (Twilio's
JSON and the Flow's definition), `state` (runs, their messages, the state file),
`_core` (the simulator's state under one lock, auth), `_views` (a run's lifetime on Twilio's
clock, its JSON), the route mixins `_flows`, `_create` and `_reads`, and `http` (the application,
the background server).
It also holds the account's senders (`_numbers`, `_queue`): numbers and Messaging Services
whose replies go to this Flow, another Flow, a URL or nowhere; each sender's queue at a set
pace (what waits past its validity period fails with 30036, a full queue with 21611 or 30001);
contacts who opted out (21610); all as the Messages it reports show.
It imports nothing from the rest of batch_engage.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .config import SANDBOX_PASSWORD, SANDBOX_USERNAME, LedgerEntry, SandboxConfig, SandboxStats, ServiceConfig

if TYPE_CHECKING:
    from ._numbers import OTHER_FLOW_SID
    from .http import Sandbox, serve

__all__ = [
    "OTHER_FLOW_SID",
    "SANDBOX_PASSWORD",
    "SANDBOX_USERNAME",
    "LedgerEntry",
    "Sandbox",
    "SandboxConfig",
    "SandboxStats",
    "ServiceConfig",
    "serve",
]


def __getattr__(name: str) -> Any:
    """The simulator itself (``Sandbox``, ``serve``) and its routes load aiohttp: only when first asked for."""
    if name in ("Sandbox", "serve"):
        from . import http  # noqa: PLC0415 - aiohttp is loaded only by a simulator that serves

        return getattr(http, name)
    if name == "OTHER_FLOW_SID":
        from . import _numbers  # noqa: PLC0415

        return _numbers.OTHER_FLOW_SID
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
