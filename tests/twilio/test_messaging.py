"""The read-only Messaging calls: exact number matches over Twilio's partial filter, pages followed on one host."""

from __future__ import annotations

import asyncio

import httpx

from batch_engage.twilio import MessagingClient

ACCOUNT = "AC" + "1" * 32
SERVICE = "MG" + "2" * 32


def _client(handler: httpx.MockTransport) -> tuple[httpx.AsyncClient, MessagingClient]:
    http = httpx.AsyncClient(transport=handler)
    return http, MessagingClient(http, api_base="https://api.test", messaging_base="https://messaging.test")


def test_find_number_matches_exactly_across_relative_pages() -> None:
    """PhoneNumber also matches partial numbers: the exact one is picked, on the second page (a relative URI)."""
    path = f"/2010-04-01/Accounts/{ACCOUNT}/IncomingPhoneNumbers.json"
    first = {"incoming_phone_numbers": [{"phone_number": "+141555501001"}], "next_page_uri": path + "?Page=1"}
    second = {"incoming_phone_numbers": [{"phone_number": "+14155550100", "sms_url": "https://x"}]}

    def handle(request: httpx.Request) -> httpx.Response:
        assert request.url.path == path
        return httpx.Response(200, json=second if request.url.params.get("Page") == "1" else first)

    async def go() -> object:
        http, client = _client(httpx.MockTransport(handle))
        async with http:
            return await client.find_number(ACCOUNT, "+14155550100")

    assert asyncio.run(go()) == {"phone_number": "+14155550100", "sms_url": "https://x"}


def test_paging_never_leaves_the_first_pages_host() -> None:
    """A next_page_url on another host is not followed (credentials stay with Twilio)."""
    seen: list[str] = []

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request.url.host)
        meta = {"next_page_url": "https://elsewhere.test/v1/Services/x/PhoneNumbers?Page=1"}
        return httpx.Response(200, json={"phone_numbers": [{"phone_number": "+1"}], "meta": meta})

    async def go() -> list[dict[str, object]]:
        http, client = _client(httpx.MockTransport(handle))
        async with http:
            return await client.service_numbers(SERVICE)

    assert asyncio.run(go()) == [{"phone_number": "+1"}] and seen == ["messaging.test"]
