"""Routes for the account's senders: IncomingPhoneNumbers (2010 API) and Messaging Services (Messaging v1).

Shapes from Twilio's OpenAPI descriptions: ``ListIncomingPhoneNumber`` pages carry a relative
``next_page_uri``; ``ListService`` and ``ListPhoneNumber`` pages carry ``meta.next_page_url``.
The ``PhoneNumber`` filter also matches partial numbers, as Twilio's does.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from ._core import Studio
from .config import SANDBOX_USERNAME, SandboxConfig
from .shapes import hex32, not_found, rfc2822

__all__ = ["NumberRoutes"]

OTHER_FLOW_SID = "FW" + hex32("another team's flow")
"""The Flow a number routed to "other_flow" sends its replies to."""
FORWARDER_URL = "https://sandbox-replies.twil.io/forward"
"""Where "this_flow" replies go once the sandbox has served several Flows: a Function forwarding each reply."""


class NumberRoutes(Studio):
    """The sender handlers: a number by its digits, the services, a service, its sender pool."""

    def _webhook(self, route: str, account_sid: str) -> str | None:
        """The URL a routing names: a Flow's webhook, a URL as given, or None."""
        if route == "none":
            return None
        if route.startswith(("http://", "https://")):
            return route
        flow = OTHER_FLOW_SID if route == "other_flow" else self.reply_flow()
        if flow is None:
            return FORWARDER_URL
        return f"https://webhooks.twilio.com/v1/Accounts/{account_sid}/Flows/{flow}"

    def _numbers(self, config: SandboxConfig) -> list[str]:
        """Every number the account is known to hold (configured, pooled, or used as a From)."""
        known = dict.fromkeys(config.numbers)
        for service in config.services.values():
            known.update(dict.fromkeys(service.numbers))
        with self._lock:
            known.update(dict.fromkeys(r.from_ for r in self._runs if r.from_.startswith("+")))
        return [n for n in known if config.numbers.get(n, config.reply_routing) != "absent"]

    def _number_json(self, number: str, account_sid: str, config: SandboxConfig) -> dict[str, Any]:
        sid = "PN" + hex32("number", number)
        stamp = rfc2822(self._flows_born)
        return {
            "account_sid": account_sid,
            "api_version": "2010-04-01",
            "beta": False,
            "capabilities": {"voice": True, "sms": True, "mms": True, "fax": False},
            "date_created": stamp,
            "date_updated": stamp,
            "friendly_name": number,
            "origin": "twilio",
            "phone_number": number,
            "sid": sid,
            "sms_application_sid": "",
            "sms_fallback_method": "POST",
            "sms_fallback_url": "",
            "sms_method": "POST",
            "sms_url": self._webhook(config.numbers.get(number, config.reply_routing), account_sid) or "",
            "status": "in-use",
            "uri": f"/2010-04-01/Accounts/{account_sid}/IncomingPhoneNumbers/{sid}.json",
        }

    async def _list_numbers(self, request: web.Request) -> web.StreamResponse:
        """GET /2010-04-01/Accounts/{AccountSid}/IncomingPhoneNumbers.json (PhoneNumber filters, partial matches)."""
        account_sid = self._account(request) or SANDBOX_USERNAME
        config = self._count("number_requests")
        if request.match_info["account"] != account_sid:
            raise not_found(request.path)
        wanted = request.query.get("PhoneNumber", "").strip()
        candidates = self._numbers(config)
        route = config.numbers.get(wanted, config.reply_routing)
        if wanted.startswith("+") and wanted not in candidates and route != "absent":
            candidates.append(wanted)  # the account holds every number asked about unless configured absent
        items = [self._number_json(n, account_sid, config) for n in candidates if wanted in n]
        uri = f"/2010-04-01/Accounts/{account_sid}/IncomingPhoneNumbers.json"
        return web.json_response(
            {
                "incoming_phone_numbers": items,
                "page": 0,
                "page_size": max(50, len(items)),
                "start": 0,
                "end": max(0, len(items) - 1),
                "uri": uri,
                "first_page_uri": uri + "?Page=0",
                "next_page_uri": None,
                "previous_page_uri": None,
            }
        )

    def _service_json(self, sid: str, account_sid: str, config: SandboxConfig) -> dict[str, Any]:
        service = config.services[sid]
        on_number = service.inbound == "number"
        url = f"{self.base_url}/v1/Services/{sid}"
        return {
            "account_sid": account_sid,
            "sid": sid,
            "friendly_name": f"Sandbox service {sid[-4:]}",
            "inbound_request_url": None if on_number else self._webhook(service.inbound, account_sid),
            "inbound_method": "POST",
            "fallback_url": None,
            "fallback_method": "POST",
            "status_callback": None,
            "sticky_sender": True,
            "smart_encoding": True,
            "use_inbound_webhook_on_number": on_number,
            "validity_period": service.validity_period,
            "usecase": "marketing",
            "url": url,
            "links": {"phone_numbers": f"{url}/PhoneNumbers"},
        }

    def _service(self, request: web.Request) -> tuple[str, str, SandboxConfig]:
        account_sid = self._account(request) or SANDBOX_USERNAME
        config = self._count("service_requests")
        sid = request.match_info["service"]
        if sid not in config.services:
            raise not_found(request.path)
        return sid, account_sid, config

    async def _fetch_service(self, request: web.Request) -> web.StreamResponse:
        """GET /v1/Services/{Sid}."""
        sid, account_sid, config = self._service(request)
        return web.json_response(self._service_json(sid, account_sid, config))

    async def _list_services(self, request: web.Request) -> web.StreamResponse:
        """GET /v1/Services: every service, one page."""
        account_sid = self._account(request) or SANDBOX_USERNAME
        config = self._count("service_requests")
        items = [self._service_json(sid, account_sid, config) for sid in config.services]
        return web.json_response({"services": items, "meta": self._meta(f"{self.base_url}/v1/Services", "services")})

    async def _list_service_numbers(self, request: web.Request) -> web.StreamResponse:
        """GET /v1/Services/{Sid}/PhoneNumbers: the sender pool, one page."""
        sid, account_sid, config = self._service(request)
        url = f"{self.base_url}/v1/Services/{sid}/PhoneNumbers"
        items = [
            {
                "sid": "PN" + hex32("number", number),
                "account_sid": account_sid,
                "service_sid": sid,
                "phone_number": number,
                "country_code": "US" if number.startswith("+1") else None,
                "capabilities": ["SMS", "MMS"],
                "url": f"{url}/PN{hex32('number', number)}",
            }
            for number in config.services[sid].numbers
        ]
        return web.json_response({"phone_numbers": items, "meta": self._meta(url, "phone_numbers")})

    @staticmethod
    def _meta(url: str, key: str) -> dict[str, Any]:
        first = f"{url}?PageSize=50&Page=0"
        return {
            "page": 0,
            "page_size": 50,
            "first_page_url": first,
            "previous_page_url": None,
            "url": first,
            "next_page_url": None,
            "key": key,
        }
