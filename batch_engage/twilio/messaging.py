"""Where a sender's replies go and how big a Messaging Service is: the few read-only calls the arrival check needs.

Over the run's injected ``httpx.AsyncClient``, classified like a run's read (404: ``Rejected``;
401/403: ``AuthFailed``; a 2xx that is not a JSON object: ``ServerError``). Shapes from Twilio's
OpenAPI descriptions (twilio_api_v2010, twilio_messaging_v1):

* ``GET /2010-04-01/Accounts/{AC}/IncomingPhoneNumbers.json?PhoneNumber=`` (``ListIncomingPhoneNumber``):
  the filter also matches partial numbers, so the match is made exactly here; pages carry a
  relative ``next_page_uri``.
* ``GET https://messaging.twilio.com/v1/Services`` (``ListService``), ``/v1/Services/{MG}``
  (``FetchService``) and ``/v1/Services/{MG}/PhoneNumbers`` (``ListPhoneNumber``); pages carry
  ``meta.next_page_url``. An IncomingPhoneNumber does not say which service holds it: the services' lists do.

Paging stays on the host it started on, and stops when a page names itself again.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import AsyncIterator
from typing import Any

import httpx

from .classify import object_body
from .client import _request
from .clock import TwilioClock

__all__ = ["MessagingClient"]

_PAGE_SIZE = "1000"
_MAX_PAGES = 1000


class MessagingClient:
    """Read-only calls on the REST API host (numbers) and the Messaging host (services)."""

    def __init__(
        self, http: httpx.AsyncClient, *, api_base: str, messaging_base: str, clock: TwilioClock | None = None
    ) -> None:
        self._http = http
        self._api = api_base.rstrip("/")
        self._messaging = messaging_base.rstrip("/")
        self.clock = clock if clock is not None else TwilioClock()

    async def _get(self, url: str, params: dict[str, str] | None = None) -> dict[str, Any]:
        return object_body(await _request(self._http, self.clock, "GET", url, params=params), what="run")

    async def find_number(self, account_sid: str, number: str) -> dict[str, Any] | None:
        """The account's IncomingPhoneNumber that is exactly ``number``, or None."""
        account = urllib.parse.quote(account_sid, safe="")
        url = f"{self._api}/2010-04-01/Accounts/{account}/IncomingPhoneNumbers.json"
        async for item in self._pages(url, {"PhoneNumber": number, "PageSize": _PAGE_SIZE}, "incoming_phone_numbers"):
            if item.get("phone_number") == number:
                return item
        return None

    async def fetch_service(self, service_sid: str) -> dict[str, Any]:
        """One Messaging Service: ``inbound_request_url``, ``use_inbound_webhook_on_number``, ``validity_period``."""
        return await self._get(f"{self._messaging}/v1/Services/{urllib.parse.quote(service_sid, safe='')}")

    async def service_sids(self) -> list[str]:
        """The SIDs of every Messaging Service of the account."""
        url = f"{self._messaging}/v1/Services"
        return [str(s["sid"]) async for s in self._pages(url, {"PageSize": _PAGE_SIZE}, "services") if "sid" in s]

    async def service_numbers(self, service_sid: str) -> list[dict[str, Any]]:
        """The phone numbers in a Messaging Service's sender pool."""
        url = f"{self._messaging}/v1/Services/{urllib.parse.quote(service_sid, safe='')}/PhoneNumbers"
        return [n async for n in self._pages(url, {"PageSize": _PAGE_SIZE}, "phone_numbers")]

    async def _pages(self, url: str, params: dict[str, str] | None, key: str) -> AsyncIterator[dict[str, Any]]:
        """Every item of a list, page after page, on the first page's host only."""
        home = httpx.URL(url)
        seen: set[str] = set()
        current: str | None = url
        for _ in range(_MAX_PAGES):
            if current is None or current in seen:
                return
            seen.add(current)
            body = await self._get(current, params)
            params = None  # later pages carry their own query
            items = body.get(key)
            for item in items if isinstance(items, list) else []:
                if isinstance(item, dict):
                    yield item
            current = self._next(home, body)

    @staticmethod
    def _next(home: httpx.URL, body: dict[str, Any]) -> str | None:
        meta = body.get("meta")
        raw = meta.get("next_page_url") if isinstance(meta, dict) else body.get("next_page_uri")
        if not isinstance(raw, str) or not raw:
            return None
        nxt = home.join(raw)
        if (nxt.scheme, nxt.host, nxt.port) != (home.scheme, home.host, home.port):
            return None
        return str(nxt)
