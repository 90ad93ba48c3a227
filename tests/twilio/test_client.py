"""The Studio client over httpx.MockTransport: request shape, Twilio's contract, the answer table, listing and paging."""

from __future__ import annotations

import asyncio
import contextlib
import urllib.parse
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from batch_engage.errors import (
    AlreadyActive,
    AnswerLost,
    AuthFailed,
    FlowNotFound,
    HoldLost,
    NotConnected,
    RateLimited,
    Rejected,
    ServerError,
    StudioError,
)
from batch_engage.sandbox import SANDBOX_PASSWORD, SANDBOX_USERNAME, Sandbox
from batch_engage.twilio.client import RunRecord, StudioClient, classify_exception, classify_response
from batch_engage.twilio.clock import TwilioClock

from conftest import FLOW_SID, shared_folder, twilio_specs

HOME = "https://studio.twilio.com"
RUN_SID = "FN" + "a" * 32
Handler = Callable[[httpx.Request], httpx.Response]


def studio(
    handler: Handler, api: str = "engagements", *, base_url: str = HOME, clock: TwilioClock | None = None
) -> StudioClient:
    http = httpx.AsyncClient(transport=httpx.MockTransport(handler), auth=("ACx", "secret"))
    return StudioClient(http, base_url=base_url, flow_sid=FLOW_SID, api=api, clock=clock)


def run(coro: Any) -> Any:
    return asyncio.run(coro)


async def collect(client: StudioClient, since: datetime, until: datetime | None = None) -> list[RunRecord]:
    return [r async for r in client.list_runs(since=since, until=until)]


def capture(api: str, call: Callable[[StudioClient], Any]) -> list[httpx.Request]:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if request.method == "POST":
            return httpx.Response(201, json={"sid": RUN_SID, "date_created": "2026-11-24T10:00:00Z"})
        return httpx.Response(
            200, json={api: [], "meta": {"next_page_url": None}, "status": "published", "context": {}}
        )

    run(call(studio(handler, api)))
    return seen


async def _create(c: StudioClient) -> None:
    await c.create("+14155550100", "+15005550006", '{"name":"Zoë","n":1}')


async def _list(c: StudioClient) -> None:
    await collect(c, datetime(2026, 11, 24, 0, 0, 0, 250_000, tzinfo=UTC), datetime(2026, 11, 25, 0, 0, 0, tzinfo=UTC))


async def _flow(c: StudioClient) -> None:
    await c.fetch_flow()


async def _published(c: StudioClient) -> None:
    await c.fetch_published()


async def _run(c: StudioClient) -> None:
    await c.fetch_run(RUN_SID)


async def _context(c: StudioClient) -> None:
    await c.fetch_context(RUN_SID)


class TestRequests:
    def test_create_sends_the_exact_form_body(self) -> None:
        """POST /v1/Flows/{sid}/Engagements, form-encoded To, From and Parameters as a JSON string, Basic auth."""
        (request,) = capture("engagements", _create)
        assert request.method == "POST"
        assert request.url == f"{HOME}/v1/Flows/{FLOW_SID}/Engagements"
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
    def test_the_flow_is_always_read_through_v2(self, api: str) -> None:
        """v1 and v2 share Flow SIDs; only v2 shows a Flow's status, so both jobs GET /v2/Flows/{sid}."""
        (request,) = capture(api, _flow)
        assert request.url.path == f"/v2/Flows/{FLOW_SID}"
        (request,) = capture(api, _published)
        assert request.url.path == f"/v2/Flows/{FLOW_SID}/Revisions/LatestPublished"

    @pytest.mark.parametrize(
        ("api", "runs"), [("engagements", "/v1/Flows/{}/Engagements"), ("executions", "/v2/Flows/{}/Executions")]
    )
    def test_one_run_and_its_context_are_read_from_the_jobs_api(self, api: str, runs: str) -> None:
        """fetch_run and fetch_context GET …/{sid} and …/{sid}/Context of the job's own API."""
        (request,) = capture(api, _run)
        assert request.url.path == runs.format(FLOW_SID) + f"/{RUN_SID}"
        (request,) = capture(api, _context)
        assert request.url.path == runs.format(FLOW_SID) + f"/{RUN_SID}/Context"

    def test_v2_listing_filters_by_whole_seconds(self) -> None:
        """DateCreatedFrom is `since` floored to its second; DateCreatedTo (exclusive) the second after `until`."""
        (request,) = capture("executions", _list)
        assert request.url.params["DateCreatedFrom"] == "2026-11-24T00:00:00Z"
        assert request.url.params["DateCreatedTo"] == "2026-11-25T00:00:01Z"
        assert request.url.params["PageSize"] == "1000"

    @pytest.mark.parametrize("api", ["engagements", "executions"])
    @pytest.mark.parametrize("call", [_create, _list, _flow, _published, _run, _context])
    def test_every_request_validates_against_twilios_openapi(
        self, api: str, call: Callable[..., Any], twilio_oai: Path
    ) -> None:
        """Each request the client builds is valid per Twilio's official Studio description (../shared/twilio-oai)."""
        from openapi_core.testing import MockRequest

        specs = twilio_specs(twilio_oai)
        for request in capture(api, call):
            body = request.content or None
            mock = MockRequest(
                HOME,
                request.method.lower(),
                request.url.path,
                args=dict(request.url.params),
                headers={"Authorization": request.headers["authorization"]},
                data=body,
                content_type=request.headers.get("content-type", "application/json"),
            )
            specs[request.url.path.split("/")[1]].validate_request(mock)

    def test_contract_check_catches_a_wrong_request(self, twilio_oai: Path) -> None:
        """The contract check is real: a create without From is refused by the description."""
        from openapi_core.testing import MockRequest

        spec = twilio_specs(twilio_oai)["v1"]
        mock = MockRequest(
            HOME,
            "post",
            f"/v1/Flows/{FLOW_SID}/Engagements",
            headers={"Authorization": "Basic QUN4OnNlY3JldA=="},
            data=b"To=%2B14155550100",
            content_type="application/x-www-form-urlencoded",
        )
        with pytest.raises(Exception, match=r"(?i)from"):
            spec.validate_request(mock)


class TestContractFolder:
    def test_a_missing_folder_skips_with_its_path(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        """Without ../shared a contract test is skipped, and the reason names the folder."""
        monkeypatch.delenv("CI", raising=False)
        with pytest.raises(pytest.skip.Exception, match="nowhere"):
            shared_folder(tmp_path / "nowhere")

    def test_a_missing_folder_fails_under_ci(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        """With CI set, a missing ../shared is a failure, never a silent skip."""
        monkeypatch.setenv("CI", "true")
        with pytest.raises(pytest.fail.Exception, match="CI is set"):
            shared_folder(tmp_path / "nowhere")

    def test_a_present_folder_is_handed_over(self, tmp_path: Path) -> None:
        """An existing folder is returned as is."""
        assert shared_folder(tmp_path) == tmp_path


def answer(status: int, body: Any = None, headers: dict[str, str] | None = None) -> httpx.Response:
    request = httpx.Request("POST", f"{HOME}/v1/Flows/x/Engagements")
    if isinstance(body, bytes):
        return httpx.Response(status, content=body, headers=headers, request=request)
    return httpx.Response(status, json=body, headers=headers, request=request)


def twilio_error(status: int, code: int | str, message: str = "m", **extra: Any) -> dict[str, Any]:
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

    def test_a_code_sent_as_a_string_still_classifies(self) -> None:
        """A body saying code "20409" is the same answer as code 20409."""
        with pytest.raises(AlreadyActive) as info:
            classify_response(answer(409, twilio_error(409, "20409")))
        assert info.value.code == 20409

    @pytest.mark.parametrize(
        ("body", "text"),
        [
            (
                {"type": "about:blank", "title": "Bad Request", "detail": "To is not a number", "status": 400},
                "To is not a number",
            ),
            ({"type": "about:blank", "title": "Bad Request", "status": 400}, "Bad Request"),
        ],
    )
    def test_problem_details_keep_their_text(self, body: dict[str, Any], text: str) -> None:
        """An RFC 9457 problem body's detail (or else title) is the error's message."""
        with pytest.raises(Rejected) as info:
            classify_response(answer(400, body))
        assert info.value.message == text

    def test_a_lone_surrogate_or_a_nul_in_a_message_reaches_the_journal_as_storable_text(self) -> None:
        """Whatever a server writes in its message (JSON's \\ud800, \\u0000) becomes text every store can write and
        read back: the rest of it kept, the bad characters shown as U+FFFD."""
        body = b'{"code": 21211, "message": "bad \\ud800 To\\u0000x \\u00e9"}'
        with pytest.raises(Rejected) as info:
            classify_response(answer(400, body))
        assert info.value.message == "bad \ufffd To\ufffdx \u00e9"
        info.value.message.encode("utf-8")

    @pytest.mark.parametrize("code", [10**30, "9223372036854775808", 2**31, -5, "²", "1e3"])
    def test_a_code_no_store_can_hold_is_no_code(self, code: object) -> None:
        """A server's out-of-range or odd "code" becomes no code (the status still says what happened), never a
        value that breaks the journal or a crash."""
        with pytest.raises(Rejected) as info:
            classify_response(answer(400, {"code": code, "message": "m"}))
        assert info.value.code is None and info.value.http_status == 400

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

    @pytest.mark.parametrize(
        "body",
        [
            b"<html>created?</html>",
            b"",
            b"[]",
            b'[{"sid": "FN1"}]',
            b'{"status": "active"}',
            b'{"sid": 7}',
            b"\xff\xfe",
        ],
        ids=["html", "empty", "empty-array", "array", "no-sid", "sid-not-text", "not-utf8"],
    )
    def test_an_unreadable_2xx_is_possibly_sent(self, body: bytes) -> None:
        """A 2xx whose body names no run may still have created one: uncertain (AnswerLost), never a crash."""
        with pytest.raises(AnswerLost) as info:
            classify_response(answer(201, body))
        assert info.value.http_status == 201

    def test_retry_after_in_seconds_and_as_an_http_date(self) -> None:
        """Retry-After is read both as seconds and as an HTTP date."""
        with pytest.raises(RateLimited) as info:
            classify_response(answer(429, twilio_error(429, 20429), {"Retry-After": "7"}))
        assert info.value.retry_after == 7.0
        when = format_datetime(datetime.now(UTC) + timedelta(seconds=30), usegmt=True)
        with pytest.raises(RateLimited) as info:
            classify_response(answer(429, twilio_error(429, 20429), {"Retry-After": when}))
        assert info.value.retry_after is not None and 25 <= info.value.retry_after <= 31

    def test_a_non_finite_retry_after_is_ignored(self) -> None:
        """Retry-After: nan or inf is no hint at all, rather than a wait forever."""
        for value in ("nan", "inf"):
            with pytest.raises(RateLimited) as info:
                classify_response(answer(429, twilio_error(429, 20429), {"Retry-After": value}))
            assert info.value.retry_after is None

    def test_connect_errors_are_never_sent_and_read_errors_possibly_sent(self) -> None:
        """A connect failure is safe to retry; a read timeout or a dropped connection is possibly sent."""
        request = httpx.Request("POST", f"{HOME}/")
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

        from batch_engage.twilio.client import make_http_client

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

        assert isinstance(run(attempt()), NotConnected)

    @pytest.mark.parametrize("header", [b"X-Long: " + b"a" * 9000, b"Content-Length: x"])
    def test_an_answer_aiohttp_cannot_parse_is_possibly_sent_not_a_crash(self, header: bytes) -> None:
        """A 201 with a header line over 8 KB or a broken Content-Length (aiohttp's own error, which httpx-aiohttp
        lets through): the row is possibly sent, never a traceback."""
        from batch_engage.twilio.client import make_http_client

        async def attempt() -> StudioError:
            async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
                await reader.readuntil(b"\r\n\r\n")
                writer.write(b"HTTP/1.1 201 Created\r\n" + header + b"\r\nContent-Length: 2\r\n\r\n{}")
                await writer.drain()
                writer.close()

            server = await asyncio.start_server(answer, "127.0.0.1", 0)
            port = server.sockets[0].getsockname()[1]
            http = make_http_client(username="u", password="p", concurrency=1, connect_timeout=2, read_timeout=2)
            async with server, http:
                client = StudioClient(http, base_url=f"http://127.0.0.1:{port}", flow_sid=FLOW_SID, api="executions")
                with pytest.raises(StudioError) as info:
                    await client.create("+14155550100", "+15005550006", None)
                return info.value

        assert isinstance(run(attempt()), AnswerLost)

    @pytest.mark.parametrize("code", [20003, 20429, 20409])
    def test_a_5xx_is_possibly_sent_whatever_code_its_body_names(self, code: int) -> None:
        """A 500 saying 20003 or a 503 saying 20429 may have been processed: uncertain, never retried or aborted."""
        with pytest.raises(ServerError):
            classify_response(answer(503, twilio_error(503, code)))

    @pytest.mark.parametrize(
        "body",
        [
            {"sid": "RQ0123", "flow_sid": FLOW_SID},
            {"sid": "FN" + "0" * 31, "flow_sid": FLOW_SID},
            {"sid": "FN" + "a" * 32, "flow_sid": "FW" + "9" * 32},
        ],
        ids=["not-a-run", "short", "another-flow"],
    )
    def test_a_2xx_naming_no_run_of_this_flow_is_possibly_sent(self, body: dict[str, Any]) -> None:
        """A create's 201 whose SID is no run's, or whose run is another Flow's, never makes the row sent."""
        with pytest.raises(AnswerLost):
            classify_response(answer(201, body), flow_sid=FLOW_SID)
        assert classify_response(answer(201, body | {"sid": "FN" + "a" * 32, "flow_sid": FLOW_SID})).sid


def always(status: int, body: Any = None, *, content: bytes | None = None) -> tuple[Handler, list[httpx.Request]]:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if content is not None:
            return httpx.Response(status, content=content)
        return httpx.Response(status, json=body)

    return handler, seen


class TestReads:
    def test_a_missing_run_or_context_fails_that_run_only(self) -> None:
        """A 404 on one run or its Context is Rejected (the run is gone), not a fatal FlowNotFound."""
        handler, _ = always(404, twilio_error(404, 20404))
        client = studio(handler, "executions")
        with pytest.raises(Rejected) as info:
            run(client.fetch_run(RUN_SID))
        assert type(info.value) is Rejected
        with pytest.raises(Rejected) as info:
            run(client.fetch_context(RUN_SID))
        assert type(info.value) is Rejected

    def test_a_missing_flow_is_fatal(self) -> None:
        """A 404 on the Flow aborts the run (FlowNotFound)."""
        handler, _ = always(404, twilio_error(404, 20404))
        with pytest.raises(FlowNotFound):
            run(studio(handler).fetch_flow())

    def test_nothing_published_is_none(self) -> None:
        """LatestPublished answering 404 means the Flow has no published revision: None, not an error."""
        handler, _ = always(404, twilio_error(404, 20404))
        assert run(studio(handler).fetch_published()) is None

    def test_the_published_revision_is_handed_back(self) -> None:
        """LatestPublished's body comes back as a dict."""
        handler, _ = always(200, {"revision": 3, "status": "published", "definition": {"states": []}})
        assert run(studio(handler).fetch_published()) == {
            "revision": 3,
            "status": "published",
            "definition": {"states": []},
        }

    def test_the_context_object_is_unwrapped(self) -> None:
        """fetch_context returns the run's Context JSON itself (flow.data, widgets), not its envelope."""
        context = {"flow": {"data": {"marker": "r1"}}, "widgets": {}}
        handler, _ = always(200, {"account_sid": "AC1", "context": context, "execution_sid": RUN_SID})
        assert run(studio(handler, "executions").fetch_context(RUN_SID)) == context

    def test_a_context_without_its_object_is_a_server_error(self) -> None:
        """A Context answer lacking `context` cannot prove anything: ServerError, so the caller retries."""
        handler, _ = always(200, {"account_sid": "AC1"})
        with pytest.raises(ServerError):
            run(studio(handler).fetch_context(RUN_SID))

    @pytest.mark.parametrize("call", [_flow, _published, _run, _context, _list])
    def test_one_429_on_a_read_raises_at_once(self, call: Callable[[StudioClient], Any]) -> None:
        """A 429 on any GET is RateLimited after exactly one request: the caller's pacer retries, not the client."""
        handler, seen = always(429, twilio_error(429, 20429))
        with pytest.raises(RateLimited):
            run(call(studio(handler)))
        assert len(seen) == 1

    @pytest.mark.parametrize("call", [_flow, _published, _run, _context, _list])
    @pytest.mark.parametrize("content", [b"<html>maintenance</html>", b"", b"[1, 2]", b"\xff"])
    def test_an_unreadable_200_on_a_read_is_a_server_error(
        self, call: Callable[[StudioClient], Any], content: bytes
    ) -> None:
        """A 200 whose body is not a JSON object raises ServerError (retried), never ValueError."""
        handler, _ = always(200, content=content)
        with pytest.raises(ServerError):
            run(call(studio(handler)))

    def test_a_listing_without_its_list_is_a_server_error(self) -> None:
        """A list answer without `executions` is not "no runs": reading it as empty would re-send rows."""
        handler, _ = always(200, {"meta": {"next_page_url": None}})
        with pytest.raises(ServerError, match="executions"):
            run(collect(studio(handler, "executions"), datetime(2026, 11, 24, tzinfo=UTC)))


class RecordingClock(TwilioClock):
    """A TwilioClock that also keeps every header it was shown."""

    def __init__(self) -> None:
        super().__init__()
        self.headers: list[str | None] = []

    def observe(self, date_header: str | None) -> None:
        self.headers.append(date_header)
        super().observe(date_header)


class TestClock:
    @pytest.mark.parametrize(
        ("status", "body"),
        [
            (201, {"sid": RUN_SID}),
            (500, twilio_error(500, 20500)),
            (429, twilio_error(429, 20429)),
            (404, twilio_error(404, 20404)),
        ],
    )
    @pytest.mark.parametrize("call", [_create, _flow, _published, _run, _context, _list])
    def test_every_answer_date_is_observed(self, call: Callable[[StudioClient], Any], status: int, body: Any) -> None:
        """Creates, reads, errors and 429s all feed their Date header to the client's clock."""
        date = "Wed, 25 Nov 2026 12:00:05 GMT"

        def handler(request: httpx.Request) -> httpx.Response:
            return httpx.Response(status, json=body, headers={"Date": date})

        clock = RecordingClock()
        client = studio(handler, clock=clock)
        with contextlib.suppress(StudioError):
            run(call(client))
        assert clock.headers == [date]

    def test_a_skewed_twilio_moves_the_clock(self) -> None:
        """Answers dated an hour ahead of us give an offset of about an hour."""
        ahead = format_datetime(datetime.now(UTC) + timedelta(hours=1), usegmt=True)
        handler = lambda request: httpx.Response(201, json={"sid": RUN_SID}, headers={"Date": ahead})  # noqa: E731
        client = studio(handler)
        assert client.clock.offset is None
        run(_create(client))
        assert client.clock.offset is not None and 3590 < client.clock.offset < 3610


def engagement(sid: str, when: str | None, address: str = "+14155550100") -> dict[str, Any]:
    return {"sid": sid, "contact_channel_address": address, "date_created": when}


class Pages:
    """A paged listing: page 0 answers the first request, page n the token `p{n}`; every request is kept."""

    def __init__(self, key: str, pages: list[list[dict[str, Any]]], *, next_host: str = HOME) -> None:
        self.key = key
        self.pages = pages
        self.next_host = next_host
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        token = request.url.params.get("PageToken")
        index = int(token[1:]) if token else 0
        path = request.url.path
        more = index + 1 < len(self.pages)
        next_url = f"{self.next_host}{path}?PageSize=1000&Page={index + 1}&PageToken=p{index + 1}" if more else None
        return httpx.Response(200, json={self.key: self.pages[index], "meta": {"next_page_url": next_url}})


SINCE = datetime(2026, 11, 24, 10, 0, 0, 400_000, tzinfo=UTC)


class TestListingOrder:
    def test_v1_newest_first_stops_after_a_whole_older_page(self) -> None:
        """v1 newest-first: paging stops once a whole page is older than `since`; later pages are never asked for."""
        pages = Pages(
            "engagements",
            [
                [engagement("FN1", "2026-11-24T10:05:00Z"), engagement("FN2", "2026-11-24T10:04:00Z")],
                [engagement("FN3", "2026-11-24T10:00:00Z"), engagement("FN4", "2026-11-24T09:00:00Z")],
                [engagement("FN5", "2026-11-24T08:00:00Z"), engagement("FN6", "2026-11-24T07:00:00Z")],
                [engagement("FN7", "2026-11-24T06:00:00Z")],
            ],
        )
        records = run(collect(studio(pages), SINCE))
        assert [r.sid for r in records] == ["FN1", "FN2", "FN3"]
        assert len(pages.requests) == 3

    def test_v1_oldest_first_reads_to_the_end(self) -> None:
        """v1 oldest-first: older pages come first, so the listing reads on and finds the newest runs."""
        pages = Pages(
            "engagements",
            [
                [engagement("FN1", "2026-11-24T07:00:00Z"), engagement("FN2", "2026-11-24T08:00:00Z")],
                [engagement("FN3", "2026-11-24T09:00:00Z"), engagement("FN4", "2026-11-24T09:30:00Z")],
                [engagement("FN5", "2026-11-24T10:00:00Z"), engagement("FN6", "2026-11-24T10:05:00Z")],
            ],
        )
        records = run(collect(studio(pages), SINCE))
        assert [r.sid for r in records] == ["FN5", "FN6"]
        assert len(pages.requests) == 3

    def test_v1_unproven_order_reads_to_the_end(self) -> None:
        """One run out of newest-first order (or without a date) and a whole older page no longer stops the listing."""
        pages = Pages(
            "engagements",
            [
                [engagement("FN1", "2026-11-24T10:05:00Z"), engagement("FN2", "2026-11-24T10:06:00Z")],
                [engagement("FN3", "2026-11-24T09:00:00Z")],
                [engagement("FN4", "2026-11-24T10:07:00Z")],
            ],
        )
        assert [r.sid for r in run(collect(studio(pages), SINCE))] == ["FN1", "FN2", "FN4"]
        undated = Pages(
            "engagements",
            [
                [engagement("FN1", None)],
                [engagement("FN2", "2026-11-24T09:00:00Z")],
                [engagement("FN3", "2026-11-24T10:07:00Z")],
            ],
        )
        assert [r.sid for r in run(collect(studio(undated), SINCE))] == ["FN1", "FN3"]

    def test_v2_reads_every_page(self) -> None:
        """v2 is filtered by the server: every page is read whatever its order, and nothing before `since` is yielded."""
        pages = Pages(
            "executions",
            [
                [engagement("FN1", "2026-11-24T10:05:00Z")],
                [engagement("FN2", "2026-11-24T09:59:59Z")],
                [engagement("FN3", "2026-11-24T10:01:00Z")],
            ],
        )
        assert [r.sid for r in run(collect(studio(pages, "executions"), SINCE))] == ["FN1", "FN3"]
        assert len(pages.requests) == 3

    def test_a_run_in_the_same_second_as_since_is_kept(self) -> None:
        """Twilio stamps runs to the second: a run stamped 10:00:00 may be later than since=10:00:00.4, so it is kept."""
        pages = Pages("engagements", [[engagement("FN1", "2026-11-24T10:00:00Z")]])
        assert [r.sid for r in run(collect(studio(pages), SINCE))] == ["FN1"]

    def test_runs_after_until_are_left_out(self) -> None:
        """With `until`, runs created after it are not yielded (v1 cannot ask the server)."""
        pages = Pages(
            "engagements",
            [[engagement("FN1", "2026-11-24T10:09:00Z"), engagement("FN2", "2026-11-24T10:01:00Z")]],
        )
        until = datetime(2026, 11, 24, 10, 5, tzinfo=UTC)
        assert [r.sid for r in run(collect(studio(pages), SINCE, until))] == ["FN2"]

    def test_v2_records_carry_initiated_by_and_v1_none(self) -> None:
        """initiated_by (v2 only) is read from the list; v1's schema has none."""
        item = engagement("FN1", "2026-11-24T10:05:00Z") | {"initiated_by": "RQ" + "0" * 32}
        (v2,) = run(collect(studio(Pages("executions", [[item]]), "executions"), SINCE))
        (v1,) = run(collect(studio(Pages("engagements", [[engagement("FN1", "2026-11-24T10:05:00Z")]])), SINCE))
        assert v2 == RunRecord("FN1", "+14155550100", datetime(2026, 11, 24, 10, 5, tzinfo=UTC), "RQ" + "0" * 32)
        assert v1.initiated_by is None


class TestPaging:
    def test_a_next_page_on_another_host_is_read_from_the_configured_one(self) -> None:
        """A next_page_url naming a foreign host is rebuilt on the configured host: credentials never travel there."""
        pages = Pages("executions", [[], [], []], next_host="https://evil.example.com")
        run(collect(studio(pages, "executions"), SINCE))
        assert len(pages.requests) == 3
        assert {(r.url.scheme, r.url.host, r.url.port) for r in pages.requests} == {
            ("https", "studio.twilio.com", None)
        }
        assert pages.requests[2].url.params["PageToken"] == "p2"

    @pytest.mark.parametrize("next_host", ["http://studio.twilio.com", "https://studio.twilio.com:8443"])
    def test_another_scheme_or_port_counts_as_another_host(self, next_host: str) -> None:
        """Scheme and port must match too: a downgrade to http:// or another port is rebuilt on the configured URL."""
        pages = Pages("executions", [[], []], next_host=next_host)
        run(collect(studio(pages, "executions"), SINCE))
        assert [str(r.url).split("/v2/")[0] for r in pages.requests] == [HOME, HOME]

    def test_a_base_url_with_a_path_keeps_it(self) -> None:
        """Behind a proxy at https://proxy.example/studio, a rebuilt next page keeps the /studio prefix."""
        pages = Pages("executions", [[], []])
        run(collect(studio(pages, "executions", base_url="https://proxy.example/studio"), SINCE))
        assert [r.url.path for r in pages.requests] == [f"/studio/v2/Flows/{FLOW_SID}/Executions"] * 2
        assert {r.url.host for r in pages.requests} == {"proxy.example"}

    def test_a_same_host_next_page_is_followed_as_given(self) -> None:
        """A next_page_url on the configured host is followed verbatim."""
        pages = Pages("executions", [[], []])
        run(collect(studio(pages, "executions"), SINCE))
        assert str(pages.requests[1].url) == f"{HOME}/v2/Flows/{FLOW_SID}/Executions?PageSize=1000&Page=1&PageToken=p1"

    def test_a_relative_next_page_resolves_on_the_configured_host(self) -> None:
        """A relative next_page_url is read against the page that named it."""
        answers = iter(
            [
                {"executions": [], "meta": {"next_page_url": f"/v2/Flows/{FLOW_SID}/Executions?PageToken=p1"}},
                {"executions": [], "meta": {"next_page_url": None}},
            ]
        )
        seen: list[httpx.Request] = []

        def handler(request: httpx.Request) -> httpx.Response:
            seen.append(request)
            return httpx.Response(200, json=next(answers))

        run(collect(studio(handler, "executions"), SINCE))
        assert str(seen[1].url) == f"{HOME}/v2/Flows/{FLOW_SID}/Executions?PageToken=p1"

    def test_a_listing_that_repeats_its_next_page_is_stopped(self) -> None:
        """A next_page_url seen before ends the listing with an error instead of looping forever."""
        url = f"{HOME}/v2/Flows/{FLOW_SID}/Executions?PageSize=50&PageToken=same"
        handler, seen = always(200, {"executions": [], "meta": {"next_page_url": url}})
        with pytest.raises(ServerError, match="repeats"):
            run(collect(studio(handler, "executions"), SINCE))
        assert len(seen) == 2


class TestOverLoopback:
    def test_the_real_transport_hands_the_date_header_to_the_clock(self, sandbox: Sandbox) -> None:
        """Through httpx-aiohttp against the sandbox, a create and a list leave a clock offset of about zero."""
        from batch_engage.twilio.client import make_http_client

        async def go() -> float | None:
            http = make_http_client(
                username=SANDBOX_USERNAME, password=SANDBOX_PASSWORD, concurrency=1, connect_timeout=2, read_timeout=5
            )
            async with http:
                client = StudioClient(http, base_url=sandbox.url, flow_sid=FLOW_SID, api="executions")
                await client.create("+14155550100", "+15005550006", None)
                records = await collect(client, datetime.now(UTC) - timedelta(minutes=1))
                assert [r.address for r in records] == ["+14155550100"]
                return client.clock.offset

        offset = run(go())
        assert offset is not None and abs(offset) < 2

    def test_a_request_asked_at_the_last_moment_and_refused_never_reaches_studio(self, sandbox: Sandbox) -> None:
        """``may_send`` saying no as a create is written (a run frozen past its lease, maybe taken over): HoldLost
        and the sandbox received nothing, while a read still goes; saying yes again, the next create goes through."""
        allowed = {"now": True}

        async def go() -> None:
            http = _fenced_client(lambda: allowed["now"])
            async with http:
                client = StudioClient(http, base_url=sandbox.url, flow_sid=FLOW_SID, api="executions")
                await client.create("+14155550100", "+15005550006", None)  # the pooled connection is open
                allowed["now"] = False
                with pytest.raises(HoldLost):
                    await client.create("+14155550101", "+15005550006", None)
                assert [e.to for e in sandbox.ledger()] == ["+14155550100"]
                # A read creates nothing: it still goes (reconciliation's lookups, the collector's reads).
                assert [r.address for r in await collect(client, datetime.now(UTC) - timedelta(minutes=1))] == [
                    "+14155550100"
                ]
                allowed["now"] = True
                await client.create("+14155550102", "+15005550006", None)

        run(go())
        assert [e.to for e in sandbox.ledger()] == ["+14155550100", "+14155550102"]

    def test_a_hold_gone_stale_while_a_connection_was_made_stops_the_request(self, sandbox: Sandbox) -> None:
        """The hold is asked once the connection is ready: a run frozen during the TCP handshake, woken past its
        lease, sends nothing (HoldLost), though its hold was fresh when the request began."""
        allowed = {"now": True}

        async def go() -> None:
            loop = asyncio.get_running_loop()
            make_connection = loop.create_connection

            async def connected_while_the_hold_went_stale(*args: Any, **kwargs: Any) -> Any:
                made = await make_connection(*args, **kwargs)
                allowed["now"] = False
                return made

            http = _fenced_client(lambda: allowed["now"])
            async with http:
                client = StudioClient(http, base_url=sandbox.url, flow_sid=FLOW_SID, api="executions")
                loop.create_connection = connected_while_the_hold_went_stale  # type: ignore[method-assign]
                try:
                    with pytest.raises(HoldLost):
                        await client.create("+14155550100", "+15005550006", None)
                finally:
                    del loop.create_connection

        run(go())
        assert sandbox.ledger() == []

    def test_a_hold_gone_stale_before_the_body_is_written_stops_the_request(self, sandbox: Sandbox) -> None:
        """aiohttp writes a request's headers with its body in a task of its own, a loop turn after the connection
        is handed over: a run frozen in that turn and woken past its lease sends nothing (HoldLost), though the
        hold was fresh when the connection was asked. Before, that request went out on waking: a second run."""
        asked: list[bool] = []

        def fresh_only_for_the_connection() -> bool:
            asked.append(not asked)
            return asked[-1]

        async def go() -> None:
            http = _fenced_client(fresh_only_for_the_connection)
            async with http:
                client = StudioClient(http, base_url=sandbox.url, flow_sid=FLOW_SID, api="executions")
                with pytest.raises(HoldLost):
                    await client.create("+14155550100", "+15005550006", None)

        run(go())
        assert asked == [True, False]
        assert sandbox.ledger() == []


def _fenced_client(may_send: Callable[[], bool]) -> httpx.AsyncClient:
    """The runner's client to the sandbox, one connection, its POSTs asked ``may_send`` (a leased run's)."""
    from batch_engage.twilio.client import make_http_client

    return make_http_client(
        username=SANDBOX_USERNAME,
        password=SANDBOX_PASSWORD,
        concurrency=1,
        connect_timeout=2,
        read_timeout=5,
        may_send=may_send,
    )


def test_a_cookie_an_answer_sets_is_never_sent_back(sandbox_factory: Callable[..., Sandbox]) -> None:
    """A Studio whose answers set a cookie (a load balancer's, say): no later request, through the real
    transport, carries it back, and the client's jar stays empty."""
    from batch_engage.twilio.client import make_http_client

    sb = sandbox_factory(rate_limit=None, active_rule=False, set_cookie="lb=node-7; Path=/")

    async def three_creates() -> int:
        http = make_http_client(
            username=SANDBOX_USERNAME, password=SANDBOX_PASSWORD, concurrency=1, connect_timeout=2, read_timeout=5
        )
        async with http:
            # By name: aiohttp's own jar ignores cookies from a bare IP address, as it would not Twilio's.
            url = sb.url.replace("127.0.0.1", "localhost")
            client = StudioClient(http, base_url=url, flow_sid=FLOW_SID, api="executions")
            for n in range(3):
                await client.create(f"+1415555010{n}", "+15005550006", None)
            return len(http.cookies)

    assert run(three_creates()) == 0
    stats = sb.stats()
    assert stats.created == 3 and stats.cookies_sent_back == 0
