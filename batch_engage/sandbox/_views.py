"""A run as Studio shows it: Twilio's clock, when the run ended, whether retention deleted it, its JSON."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

from .config import SandboxConfig
from .shapes import iso
from .state import Run, run_messages, start_context, widget_outputs

__all__ = ["RETENTION", "ended_at", "expired", "replies_heard", "run_context", "run_json", "run_url", "twilio_now"]

RETENTION = timedelta(days=30)
"""How long Studio keeps a run after it starts: then it is ended, and gone from every read and list."""


def twilio_now(config: SandboxConfig) -> datetime:
    """Twilio's clock: ours (or the configured wall) plus the configured offset."""
    ours = config.wall() if config.wall is not None else datetime.now(UTC)
    return ours + timedelta(seconds=config.clock_offset)


def ended_at(run: Run, config: SandboxConfig) -> datetime | None:
    """When a run ended (Twilio's clock), or None while active: ended by a call, its timeout, or retention."""
    if run.ended_at is not None:
        return run.ended_at
    now = twilio_now(config)
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


def expired(run: Run, config: SandboxConfig) -> bool:
    """Whether Studio has deleted a run: 30 days after it started, on Twilio's clock."""
    return twilio_now(config) >= run.date_created + RETENTION


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


def run_url(run: Run, base_url: str) -> str:
    """The absolute URL of a run."""
    version, collection = ("v1", "Engagements") if run.api == "engagements" else ("v2", "Executions")
    return f"{base_url}/{version}/Flows/{run.flow_sid}/{collection}/{run.sid}"


def run_context(run: Run, config: SandboxConfig) -> dict[str, Any]:
    """A run's Flow context: what it started with, and widget outputs once ended."""
    context = start_context(run)
    ended = ended_at(run, config)
    if ended is not None and run.played:
        heard = replies_heard(run, config)
        messages = run_messages(run, config.replies_for(run.parameters), ended, heard=heard)
        context["widgets"] = widget_outputs(run, messages)
    return context


def run_json(run: Run, config: SandboxConfig, base_url: str, *, listed: bool = False) -> dict[str, Any]:
    """Render a run as an Engagement or an Execution."""
    url = run_url(run, base_url)
    ended = ended_at(run, config)
    address = run.to
    if listed and config.list_drops_channel_prefix:
        address = address.removeprefix("whatsapp:")
    body: dict[str, Any] = {
        "sid": run.sid,
        "account_sid": run.account_sid,
        "flow_sid": run.flow_sid,
        "contact_sid": run.contact_sid,
        "contact_channel_address": address,
        "context": run_context(run, config),
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
