"""Twilio's hosts: the Studio and REST API base URLs from region and edge, and which URLs credentials may travel to."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from typing import Protocol
from urllib.parse import urlsplit

from ..errors import ConfigError, CredentialsError

__all__ = [
    "DEFAULT_BASE_URL",
    "REGION_EDGES",
    "FlowHost",
    "api_base_url",
    "check_base_url",
    "edge_name",
    "messaging_base_url",
    "processing_region",
    "studio_base_url",
    "studio_region_warning",
]

DEFAULT_BASE_URL = "https://studio.twilio.com"


class FlowHost(Protocol):
    """What a Flow's settings say about its host (``spec.FlowSpec`` has these)."""

    @property
    def base_url(self) -> str | None:
        """An explicit Studio base URL (the sandbox, a proxy), or None."""
        ...

    @property
    def region(self) -> str | None:
        """Twilio's processing region (``us1``, ``ie1``, ``au1``), or None for the default."""
        ...

    @property
    def edge(self) -> str | None:
        """Twilio's edge location, or None for the region's default edge."""
        ...


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_base_url(url: str, *, key: str = "flow.base_url") -> None:
    """Refuse URLs that are not http(s), that hold a user or password, and plain http to anything but loopback."""
    try:
        parts = urlsplit(url)
        _ = parts.port  # read here: a bad port, like an unclosed [, is a ValueError, and one line below
    except ValueError:
        raise ConfigError(key, "must be an http(s) URL such as https://studio.twilio.com") from None
    if parts.username is not None or parts.password is not None or "@" in url:
        # Never repeated: the URL would be written into the checkpoint and every log line that names the target.
        raise CredentialsError(
            f"{key}: holds a user name or password (user:password@host); credentials come from TWILIO_ACCOUNT_SID "
            "and TWILIO_AUTH_TOKEN (or TWILIO_API_KEY and TWILIO_API_SECRET), never from the URL"
        )
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(key, f"must be an http(s) URL such as https://studio.twilio.com, not {_shown(url)}")
    if parts.scheme == "http" and not _is_loopback(parts.hostname):
        raise CredentialsError(
            f"{key}: refusing plain http:// to {parts.hostname}: credentials would travel "
            "unencrypted (use https://, or a loopback address for the sandbox)"
        )


# Twilio's processing ("home") regions and the edge each is reached through by default.
# Checked 2026-11 against https://www.twilio.com/docs/global-infrastructure/api-domain-migration-guide
# ("Twilio can process your data in the United States, Ireland, or Australia"; region-only hosts such
# as api.ie1.twilio.com stop working, only us1's survives) and
# https://www.twilio.com/docs/global-infrastructure/edge-locations/legacy-regions (us1 -> ashburn,
# ie1 -> dublin, au1 -> sydney). br1, de1, jp1, sg1 and us2 are legacy edge IDs, not regions.
REGION_EDGES: Mapping[str, str] = {"us1": "ashburn", "ie1": "dublin", "au1": "sydney"}
# https://www.twilio.com/docs/global-infrastructure/regional-product-and-feature-availability: Studio is a
# US1 product; IE1 lists it as a private beta, AU1 not at all.
_STUDIO_REGION_NOTES: Mapping[str, str] = {
    "ie1": "Twilio offers Studio in ie1 only as a private beta",
    "au1": "Twilio does not list Studio among the products available in au1",
}
# Twilio's edges are words (ashburn, sao-paulo, tokyo-ix): a name with digits, a token pasted into TWILIO_EDGE,
# would be sent to DNS as part of the host's name before anything could refuse it.
_EDGE_NAME = re.compile(r"^[a-z]{2,20}(-[a-z]{2,20}){0,3}$")


# What a region, an edge or a host is spelled with; a long run of letters and digits is a token's shape.
_NAME_LIKE = re.compile(r"[A-Za-z0-9.:/\[\]-]{0,60}")
_TOKEN_LIKE = re.compile(r"[A-Za-z0-9_]{20,}")


def _shown(value: str) -> str:
    """``value`` quoted for a message, unless it may be a secret pasted into the wrong setting (never repeated)."""
    if _NAME_LIKE.fullmatch(value) and not _TOKEN_LIKE.search(value):
        return repr(value)
    return "a value (not shown: a secret in the wrong setting?)"


def processing_region(region: str, *, key: str) -> str:
    """``region`` as the lower-case name of a region Twilio processes in; anything else is a ``ConfigError``."""
    name = region.strip().lower()
    if name not in REGION_EDGES:
        raise ConfigError(
            key,
            f"{_shown(region)} is not a Twilio processing region (use one of {', '.join(REGION_EDGES)}, or leave it "
            "unset)",
        )
    return name


def edge_name(edge: str, *, key: str) -> str:
    """``edge`` as a lower-case edge location name; a URL or dotted name is a ``ConfigError``."""
    name = edge.strip().lower()
    if not _EDGE_NAME.match(name):
        raise ConfigError(key, f"{_shown(edge)} is not an edge location name such as 'dublin' or 'sydney'")
    return name


def _region_and_edge(region: str | None, edge: str | None, *, region_key: str, edge_key: str) -> tuple[str, str] | None:
    """The (region, edge) pair to reach Twilio through, or None for the default global host."""
    if not region and not edge:
        return None
    # Twilio's SDKs: an edge without a region means us1; a region without an edge gets its own edge.
    name = processing_region(region, key=region_key) if region else "us1"
    return name, edge_name(edge, key=edge_key) if edge else REGION_EDGES[name]


def _host(product: str, pair: tuple[str, str] | None) -> str:
    """``https://{product}.{edge}.{region}.twilio.com``, or the product's global host without a pair."""
    if pair is None:
        return f"https://{product}.twilio.com"
    name, via = pair
    return f"https://{product}.{via}.{name}.twilio.com"


def studio_base_url(flow: FlowHost, *, region: str | None = None, edge: str | None = None) -> str:
    """The Studio host for this flow: ``[flow] base_url``, else ``studio.{edge}.{region}.twilio.com``.

    Region and edge come from the flow, else from the environment's ``TWILIO_REGION`` /
    ``TWILIO_EDGE``. An edge without a region means ``us1``; a region without an edge gets
    the edge Twilio documents for it (Twilio retires region-only hosts); a region Twilio
    does not process in is a ``ConfigError``. Neither gives ``https://studio.twilio.com``.
    """
    if flow.base_url:
        return flow.base_url.rstrip("/")
    pair = _region_and_edge(
        flow.region or region,
        flow.edge or edge,
        region_key="flow.region" if flow.region else "TWILIO_REGION",
        edge_key="flow.edge" if flow.edge else "TWILIO_EDGE",
    )
    return _host("studio", pair)


def api_base_url(region: str | None = None, edge: str | None = None) -> str:
    """The REST API host (Messages and the like): ``https://api.{edge}.{region}.twilio.com``, same rules as Studio's."""
    return _host("api", _region_and_edge(region, edge, region_key="TWILIO_REGION", edge_key="TWILIO_EDGE"))


def messaging_base_url(region: str | None = None, edge: str | None = None) -> str:
    """The Messaging API host (Messaging Services): ``https://messaging.{edge}.{region}.twilio.com``, as the others."""
    return _host("messaging", _region_and_edge(region, edge, region_key="TWILIO_REGION", edge_key="TWILIO_EDGE"))


def studio_region_warning(region: str | None) -> str | None:
    """The warning to log when Studio is not (generally) offered in ``region``; None for us1 or no region."""
    if not region:
        return None
    name = region.strip().lower()
    note = _STUDIO_REGION_NOTES.get(name)
    if note is None:
        return None
    return f"region {name}: {note}; the run may fail with 404 or 401 (Studio is a us1 product)"
