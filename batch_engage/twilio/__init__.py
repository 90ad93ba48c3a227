"""Twilio over the wire: the client, its answers classified, hosts, Twilio's clock, pacing and paced reads."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..faces import lazy_face
from .hosts import (
    DEFAULT_BASE_URL,
    REGION_EDGES,
    api_base_url,
    check_base_url,
    edge_name,
    messaging_base_url,
    processing_region,
    studio_base_url,
    studio_region_warning,
)

if TYPE_CHECKING:
    from .classify import Created, error_code, parse_datetime
    from .client import MessagesClient, RunRecord, StudioClient, load_transport, make_http_client
    from .clock import TwilioClock
    from .messaging import MessagingClient
    from .pacing import Pacer
    from .policy import (
        AT_RETENTION,
        PAST_RETENTION,
        RETENTION,
        RETENTION_MARGIN,
        Breaker,
        backoff,
        is_handback,
        past_retention,
    )
    from .reach import Reach
    from .reads import READ_ATTEMPTS, PacedReads

__all__ = [
    "AT_RETENTION",
    "DEFAULT_BASE_URL",
    "PAST_RETENTION",
    "READ_ATTEMPTS",
    "REGION_EDGES",
    "RETENTION",
    "RETENTION_MARGIN",
    "Breaker",
    "Created",
    "MessagesClient",
    "MessagingClient",
    "PacedReads",
    "Pacer",
    "Reach",
    "RunRecord",
    "StudioClient",
    "TwilioClock",
    "api_base_url",
    "backoff",
    "check_base_url",
    "edge_name",
    "error_code",
    "is_handback",
    "load_transport",
    "make_http_client",
    "messaging_base_url",
    "parse_datetime",
    "past_retention",
    "processing_region",
    "studio_base_url",
    "studio_region_warning",
]

# A job's checks need only the hosts: the client, httpx and tenacity load when a command first asks.
__getattr__, __dir__ = lazy_face(
    __name__,
    {
        "classify": "Created error_code parse_datetime",
        "client": "MessagesClient RunRecord StudioClient load_transport make_http_client",
        "clock": "TwilioClock",
        "messaging": "MessagingClient",
        "pacing": "Pacer",
        "policy": "AT_RETENTION PAST_RETENTION RETENTION RETENTION_MARGIN Breaker backoff is_handback past_retention",
        "reach": "Reach",
        "reads": "READ_ATTEMPTS PacedReads",
    },
)
