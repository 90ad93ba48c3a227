"""What Twilio says about each sender: where its replies go, and a Messaging Service's pool and validity period.

Read over the injected client through paced, retried reads (no write, ever). The rules
(twilio_api_v2010 and twilio_messaging_v1 OpenAPI descriptions; Studio's REST API docs):

* a number on its own: replies go to its ``sms_url`` (an ``sms_application_sid`` overrides the
  URLs with the application's, which this does not read: "url");
* a number in a Messaging Service, and a service sender: the service's ``inbound_request_url``,
  unless ``use_inbound_webhook_on_number`` is true, then the number's own ``sms_url``. A null
  ``inbound_request_url`` means inbound messages are not received at all: "none";
* a Flow's webhook is ``https://webhooks.twilio.com/v1/Accounts/{AC}/Flows/{FW}``.

A 403, a 404 or a number the account does not hold is a note (a warning), never a refusal.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Literal, TypeVar

import structlog

from ..errors import StudioError
from ..twilio import MessagingClient, PacedReads
from .sender import describe_sender

__all__ = ["MAX_SENDERS_READ", "Routing", "SenderFacts", "read_senders", "route_of", "worst_routing"]

log = structlog.get_logger(__name__)

Routing = Literal["this_flow", "other_flow", "none", "url", "unknown", "not_needed"]

MAX_SENDERS_READ = 10
"""Senders whose set-up is read, busiest first; the rest keep their kind's defaults."""
_MAX_MEMBERS_READ = 20
_FLOW_WEBHOOK = re.compile(
    r"^(?:https?://)?webhooks\.twilio\.com/v1/Accounts/AC[0-9a-fA-F]{32}/Flows/(FW[0-9a-fA-F]{32})/?(?:[?#].*)?$",
    re.IGNORECASE,
)
T = TypeVar("T")


@dataclass
class SenderFacts:
    """What was learnt of one sender; ``notes`` are warnings (something could not be read)."""

    sender: str
    routing: Routing = "not_needed"
    replies_to: str | None = None
    throughput: float | None = None
    numbers: int | None = None
    validity_period: int | None = None
    service: str | None = None
    notes: list[str] = field(default_factory=list)


def route_of(url: object, flow_sid: str) -> tuple[Routing, str | None]:
    """Where a webhook URL sends replies: this Flow, another Flow (named), nowhere, or some other URL."""
    if not isinstance(url, str) or not url.strip():
        return "none", None
    match = _FLOW_WEBHOOK.match(url.strip())
    if match is None:
        return "url", url.strip()
    other = match.group(1)
    return ("this_flow", other) if other.lower() == flow_sid.lower() else ("other_flow", other)


class _Reader:
    """One look at the account: the services' pools read once, shared by every sender."""

    def __init__(self, client: MessagingClient, reads: PacedReads, account_sid: str, flow_sid: str) -> None:
        self.client, self.reads, self.account_sid, self.flow_sid = client, reads, account_sid, flow_sid
        self._pools: dict[str, list[dict[str, Any]]] | None = None

    async def call(self, what: str, fn: Callable[[], Awaitable[T]]) -> T:
        return await self.reads.call(what, fn)

    async def pools(self) -> dict[str, list[dict[str, Any]]]:
        if self._pools is None:
            sids = await self.call("messaging services", self.client.service_sids)
            self._pools = {}
            for sid in sids:
                self._pools[sid] = await self.call("service numbers", partial(self.client.service_numbers, sid))
        return self._pools

    async def number_route(self, number: str) -> tuple[Routing, str | None, str | None]:
        """(routing, where, note) by the number's own webhook."""
        found = await self.call("phone number", lambda: self.client.find_number(self.account_sid, number))
        if found is None:
            return "unknown", None, f"{number} is not a phone number of this account: its replies were not checked"
        app = found.get("sms_application_sid")
        if isinstance(app, str) and app:
            return "url", f"application {app}", None
        routing, where = route_of(found.get("sms_url"), self.flow_sid)
        return routing, where, None

    async def service_route(self, facts: SenderFacts, service: dict[str, Any], numbers: list[str]) -> None:
        """Fill ``facts`` by the service's inbound rules (the numbers' own when it defers to them)."""
        if service.get("use_inbound_webhook_on_number") is True:
            worst: tuple[Routing, str | None] = ("this_flow", self.flow_sid)
            for number in numbers[:_MAX_MEMBERS_READ]:
                routing, where, note = await self.number_route(number)
                if note:
                    facts.notes.append(note)
                if _RANK[routing] > _RANK[worst[0]]:
                    worst = (routing, where if routing != "none" else f"{number}: no SMS URL")
            facts.routing, facts.replies_to = worst
            return
        routing, where = route_of(service.get("inbound_request_url"), self.flow_sid)
        facts.routing = routing
        facts.replies_to = where if routing != "none" else f"Messaging Service {facts.service}: inbound is off"


_RANK: dict[str, int] = {"not_needed": 0, "this_flow": 1, "unknown": 2, "url": 3, "none": 4, "other_flow": 5}


async def _service(reader: _Reader, facts: SenderFacts, sid: str, *, routing: bool) -> None:
    """A Messaging Service sender: its pool's throughput, its validity period, its inbound rules."""
    facts.service = sid
    service = await reader.call("messaging service", lambda: reader.client.fetch_service(sid))
    members = await reader.call("service numbers", lambda: reader.client.service_numbers(sid))
    numbers = [str(n.get("phone_number")) for n in members if n.get("phone_number")]
    facts.numbers = len(numbers)
    facts.throughput = sum(describe_sender(n).throughput for n in numbers)
    validity = service.get("validity_period")
    # The OpenAPI file's "default: 0" is a generator artefact: 0 is not a valid period, so it means "not set".
    facts.validity_period = validity if isinstance(validity, int) and 1 <= validity <= 36_000 else None
    if routing:
        await reader.service_route(facts, service, numbers)


async def _number(reader: _Reader, facts: SenderFacts, number: str) -> None:
    """A number sender: the service that holds it decides its replies, else its own webhook."""
    # Both at once: the run waits for the preflight, and most numbers are in no service.
    pools, own = await asyncio.gather(reader.pools(), reader.number_route(number))
    holder = next(
        (sid for sid, members in pools.items() if any(m.get("phone_number") == number for m in members)), None
    )
    if holder is None:
        facts.routing, facts.replies_to, note = own
        if note:
            facts.notes.append(note)
        return
    facts.service = holder
    service = await reader.call("messaging service", lambda: reader.client.fetch_service(holder))
    await reader.service_route(facts, service, [number])


async def read_senders(
    client: MessagingClient,
    reads: PacedReads,
    *,
    account_sid: str,
    flow_sid: str,
    senders: list[str],
    routing: bool,
) -> dict[str, SenderFacts]:
    """What Twilio says about each sender (busiest first; at most ``MAX_SENDERS_READ`` are read)."""
    reader = _Reader(client, reads, account_sid, flow_sid)
    out: dict[str, SenderFacts] = {}
    for index, sender in enumerate(senders):
        facts = out[sender] = SenderFacts(sender)
        if index >= MAX_SENDERS_READ:
            if routing:
                facts.routing = "unknown"
            continue
        kind = describe_sender(sender).kind
        try:
            if kind == "messaging_service":
                await _service(reader, facts, sender, routing=routing)
            elif routing and kind in ("long_code", "toll_free"):
                await _number(reader, facts, sender)
            elif routing:
                facts.routing = "unknown"
                facts.notes.append(f"the {kind} sender {sender}'s replies are not checked (no API reads them here)")
        except StudioError as exc:
            if routing:
                facts.routing = "unknown"
            what = "not found" if exc.http_status == 404 else exc.message
            facts.notes.append(f"could not read how {sender} is set up ({what}): its replies and pool were not checked")
    return out


def worst_routing(facts: dict[str, SenderFacts]) -> Routing:
    """The routing that matters most over all senders (another Flow, then nowhere, then a URL, ...)."""
    found: list[Routing] = [f.routing for f in facts.values()] or ["not_needed"]
    return max(found, key=lambda r: _RANK[r])
