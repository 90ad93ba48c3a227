"""The Studio client over httpx.MockTransport: request shape, Twilio's contract, and the answer table."""

from __future__ import annotations

import asyncio
import urllib.parse
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import httpx
import pytest
from openapi_core import OpenAPI
from openapi_core.testing import MockRequest

from batch_engage.client import RunRecord, StudioClient, classify_exception, classify_response
from batch_engage.errors import (
    AlreadyActive,
    AnswerLost,
    AuthFailed,
    FlowNotFound,
    NotConnected,
    RateLimited,
    Rejected,
    ServerError,
    StudioError,
)

from conftest import FLOW_SID, SHARED

OAI = SHARED / "twilio-oai"


def studio(handler: Callable[[httpx.Request], httpx.Response], api: str = "engagements") -> StudioClient:
    http = httpx.AsyncClient(transport=httpx.MockTransport(handler), auth=("ACx", "secret"))
    return StudioClient(http, base_url="https://studio.twilio.com", flow_sid=FLOW_SID, api=api)


def capture(api: str, call: Callable[[StudioClient], Any]) -> list[httpx.Request]:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if request.method == "POST":
            return httpx.Response(201, json={"sid": "FN" + "a" * 32, "date_created": "2026-11-24T10:00:00Z"})
        return httpx.Response(200, json={api: [], "meta": {"next_page_url": None}, "status": "published"})

    asyncio.run(call(studio(handler, api)))
    return seen


async def _create(c: StudioClient) -> None:
    await c.create("+14155550100", "+15005550006", '{"name":"Zoë","n":1}')


async def _list(c: StudioClient) -> None:
    [r async for r in c.list_runs(since=datetime(2026, 11, 24, tzinfo=UTC), until=datetime(2026, 11, 25, tzinfo=UTC))]


async def _flow(c: StudioClient) -> None:
    await c.fetch_flow()


class TestRequests:
    def test_create_sends_the_exact_form_body(self) -> None:
        """POST /v1/Flows/{sid}/Engagements, form-encoded To, From and Parameters as a JSON string, Basic auth."""
        (request,) = capture("engagements", _create)
        assert request.method == "POST"
        assert request.url == f"https://studio.twilio.com/v1/Flows/{FLOW_SID}/Engagements"
        assert request.headers["content-type"] == "application/x-www-form-urlencoded"
        assert request.headers["authorization"].startswith("Basic ")
        assert urllib.parse.parse_qs(request.content.decode()) == {
            "To": ["+14155550100"],
            "From": ["+15005550006"],
            "Parameters": ['{"name":"Zoë","n":1}'],
        }

    def test_v2_posts_to_executions(self) -> None:
        """api = executions targets /v2/Flows/{sid}/Executions."""
        (request,) = capture("executions", _create)
        assert request.url.path == f"/v2/Flows/{FLOW_SID}/Executions"

    @pytest.mark.parametrize("api", ["engagements", "executions"])
    @pytest.mark.parametrize("call", [_create, _list, _flow])
    def test_every_request_validates_against_twilios_openapi(self, api: str, call: Callable[..., Any]) -> None:
        """Each request the client builds is valid per Twilio's official Studio description (../shared/twilio-oai)."""
        spec = OpenAPI.from_path(OAI / ("twilio_studio_v1.yaml" if api == "engagements" else "twilio_studio_v2.yaml"))
        for request in capture(api, call):
            body = request.content or None
            mock = MockRequest(
                "https://studio.twilio.com",
                request.method.lower(),
                request.url.path,
                args=dict(request.url.params),
                headers={"Authorization": request.headers["authorization"]},
                data=body,
                content_type=request.headers.get("content-type", "application/json"),
            )
            spec.validate_request(mock)

    def test_contract_check_catches_a_wrong_request(self) -> None:
        """The contract check is real: a create without From is refused by the description."""
        spec = OpenAPI.from_path(OAI / "twilio_studio_v1.yaml")
        mock = MockRequest(
            "https://studio.twilio.com",
            "post",
            f"/v1/Flows/{FLOW_SID}/Engagements",
            headers={"Authorization": "Basic QUN4OnNlY3JldA=="},
            data=b"To=%2B14155550100",
            content_type="application/x-www-form-urlencoded",
        )
        with pytest.raises(Exception, match=r"(?i)from"):
            spec.validate_request(mock)


def answer(status: int, body: Any = None, headers: dict[str, str] | None = None) -> httpx.Response:
    request = httpx.Request("POST", "https://studio.twilio.com/v1/Flows/x/Engagements")
    if isinstance(body, bytes):
        return httpx.Response(status, content=body, headers=headers, request=request)
    return httpx.Response(status, json=body, headers=headers, request=request)


def twilio_error(status: int, code: int, message: str = "m", **extra: Any) -> dict[str, Any]:
    return {
        "code": code,
        "message": message,
        "more_info": f"https://www.twilio.com/docs/errors/{code}",
        "status": status,
    } | extra


class TestClassification:
    @pytest.mark.parametrize(
        ("status", "body", "error"),
        [
            (429, twilio_error(429, 20429), RateLimited),
            (503, twilio_error(503, 20503), ServerError),
            (500, b"<html>oops</html>", ServerError),
            (409, twilio_error(409, 20409, details={"conflicting_execution_sid": "FN" + "b" * 32}), AlreadyActive),
            (401, twilio_error(401, 20003), AuthFailed),
            (403, twilio_error(403, 20003), AuthFailed),
            (404, twilio_error(404, 20404), FlowNotFound),
            (400, twilio_error(400, 21211, "bad To"), Rejected),
            (409, twilio_error(409, 12345), Rejected),
        ],
    )
    def test_each_answer_maps_to_its_row_outcome(self, status: int, body: Any, error: type[StudioError]) -> None:
        """The classification table: 429 retry, 5xx uncertain, 20409 already_active, auth/flow fatal, other 4xx failed."""
        with pytest.raises(error) as info:
            classify_response(answer(status, body))
        assert type(info.value) is error
        assert info.value.http_status == status

    def test_twilio_error_fields_are_kept(self) -> None:
        """Code, message and details come from Twilio's JSON error body."""
        sid = "FN" + "c" * 32
        with pytest.raises(AlreadyActive) as info:
            classify_response(
                answer(409, twilio_error(409, 20409, "already", details={"conflicting_execution_sid": sid}))
            )
        assert (info.value.code, info.value.message, info.value.conflicting_sid) == (20409, "already", sid)

    def test_a_non_json_error_falls_back_to_the_http_status(self) -> None:
        """A proxy's HTML 502 still yields a readable message and the status."""
        with pytest.raises(ServerError) as info:
            classify_response(answer(502, b"<html>Bad gateway</html>"))
        assert info.value.code is None and "502" in info.value.message

    @pytest.mark.parametrize("status", [200, 201])
    def test_any_2xx_is_success(self, status: int) -> None:
        """v1 answers 200 and v2 201: both are a created run with its SID."""
        created = classify_response(answer(status, {"sid": "FN" + "d" * 32, "date_created": "2026-11-24T10:00:00Z"}))
        assert created.sid == "FN" + "d" * 32
        assert created.date_created == datetime(2026, 11, 24, 10, tzinfo=UTC)

    def test_retry_after_in_seconds_and_as_an_http_date(self) -> None:
        """Retry-After is read both as seconds and as an HTTP date."""
        with pytest.raises(RateLimited) as info:
            classify_response(answer(429, twilio_error(429, 20429), {"Retry-After": "7"}))
        assert info.value.retry_after == 7.0
        when = format_datetime(datetime.now(UTC) + timedelta(seconds=30), usegmt=True)
        with pytest.raises(RateLimited) as info:
            classify_response(answer(429, twilio_error(429, 20429), {"Retry-After": when}))
        assert info.value.retry_after is not None and 25 <= info.value.retry_after <= 31

    def test_connect_errors_are_never_sent_and_read_errors_possibly_sent(self) -> None:
        """A connect failure is safe to retry; a read timeout or a dropped connection is possibly sent."""
        request = httpx.Request("POST", "https://studio.twilio.com/")
        assert isinstance(classify_exception(httpx.ConnectError("x", request=request)), NotConnected)
        assert isinstance(classify_exception(httpx.ConnectTimeout("x", request=request)), NotConnected)
        assert isinstance(classify_exception(httpx.ReadTimeout("x", request=request)), AnswerLost)
        assert isinstance(classify_exception(httpx.RemoteProtocolError("x", request=request)), AnswerLost)

    def test_aiohttp_drop_after_write_is_possibly_sent_despite_its_mapping(self) -> None:
        """httpx-aiohttp reports a dropped connection as ConnectTimeout; the real cause decides: possibly sent."""
        import aiohttp

        exc = httpx.ConnectTimeout("Server disconnected")
        exc.__cause__ = aiohttp.ServerDisconnectedError()
        assert isinstance(classify_exception(exc), AnswerLost)

    def test_connection_refused_through_the_real_transport_is_never_sent(self) -> None:
        """Through httpx-aiohttp, a refused connection (nothing listening) is classified as safe to retry."""
        import socket

        from batch_engage.client import make_http_client

        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]

        async def attempt() -> StudioError:
            http = make_http_client(username="u", password="p", concurrency=1, connect_timeout=2, read_timeout=2)
            async with http:
                client = StudioClient(http, base_url=f"http://127.0.0.1:{port}", flow_sid=FLOW_SID, api="engagements")
                with pytest.raises(StudioError) as info:
                    await client.create("+14155550100", "+15005550006", None)
                return info.value

        assert isinstance(asyncio.run(attempt()), NotConnected)


class TestListing:
    def _pages(self, pages: dict[str, dict[str, Any]]) -> Callable[[httpx.Request], httpx.Response]:
        def handler(request: httpx.Request) -> httpx.Response:
            key = request.url.params.get("PageToken", "first")
            return httpx.Response(200, json=pages[key])

        return handler

    def test_v1_listing_follows_pages_and_stops_at_older_runs(self) -> None:
        """v1 has no date filter: the client pages newest first and stops at the first run older than the window."""
        base = f"https://studio.twilio.com/v1/Flows/{FLOW_SID}/Engagements?PageSize=2"
        run = lambda sid, when: {"sid": sid, "contact_channel_address": "+1", "date_created": when}  # noqa: E731
        pages = {
            "first": {
                "engagements": [run("FN1", "2026-11-24T10:05:00Z"), run("FN2", "2026-11-24T10:04:00Z")],
                "meta": {"next_page_url": base + "&PageToken=p2"},
            },
            "p2": {
                "engagements": [run("FN3", "2026-11-24T10:03:00Z"), run("FN4", "2026-11-24T09:00:00Z")],
                "meta": {"next_page_url": base + "&PageToken=p3"},
            },
            "p3": {"engagements": [run("FN5", "2026-11-24T08:00:00Z")], "meta": {"next_page_url": None}},
        }
        client = studio(self._pages(pages))

        async def collect() -> list[RunRecord]:
            return [r async for r in client.list_runs(since=datetime(2026, 11, 24, 10, tzinfo=UTC))]

        assert [r.sid for r in asyncio.run(collect())] == ["FN1", "FN2", "FN3"]

    def test_a_listing_that_repeats_its_next_page_is_stopped(self) -> None:
        """A next_page_url seen before ends the listing with an error instead of looping forever."""
        url = f"https://studio.twilio.com/v2/Flows/{FLOW_SID}/Executions?PageSize=50&PageToken=same"
        page = {"executions": [], "meta": {"next_page_url": url}}
        client = studio(self._pages({"first": page, "same": page}), api="executions")

        async def collect() -> None:
            [r async for r in client.list_runs(since=datetime(2026, 11, 24, tzinfo=UTC))]

        with pytest.raises(ServerError, match="repeats"):
            asyncio.run(collect())
