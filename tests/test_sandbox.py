"""The Studio sandbox, driven over real loopback HTTP the way the client drives it."""

from __future__ import annotations

import json
import signal
import ssl
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import timedelta, timezone
from pathlib import Path
from typing import Any

import httpx
import pytest

from batch_engage.sandbox import (
    SANDBOX_PASSWORD,
    SANDBOX_USERNAME,
    Sandbox,
    SandboxConfig,
)

AUTH = (SANDBOX_USERNAME, SANDBOX_PASSWORD)
FLOW = "FW" + "0123456789abcdef" * 2
DRAFT_FLOW = "FW" + "fedcba9876543210" * 2
SENDER = "+15005550006"
SANDBOX_FILE = Path(__file__).resolve().parents[1] / "batch_engage" / "sandbox.py"
# Building an SSL context per client costs ~40 ms; loopback HTTP never uses it.
TLS = ssl.create_default_context()


@dataclass
class Studio:
    """A running sandbox and an HTTP client logged in to it."""

    sandbox: Sandbox
    http: httpx.Client

    def engage(self, to: str, **fields: str) -> httpx.Response:
        """Trigger a v1 Engagement."""
        form = {"To": to, "From": SENDER, **fields}
        return self.http.post(f"/v1/Flows/{FLOW}/Engagements", data=form)

    def execute(self, to: str, **fields: str) -> httpx.Response:
        """Trigger a v2 Execution."""
        form = {"To": to, "From": SENDER, **fields}
        return self.http.post(f"/v2/Flows/{FLOW}/Executions", data=form)


OpenStudio = Callable[..., Studio]


@pytest.fixture
def open_studio() -> Iterator[OpenStudio]:
    """Open sandboxes with latency 0 unless told otherwise; all stop at teardown."""
    with ExitStack() as stack:

        def open_(**settings: Any) -> Studio:
            config = SandboxConfig(**{"latency": 0.0, "jitter": 0.0, **settings})
            sandbox = stack.enter_context(Sandbox(config))
            http = stack.enter_context(httpx.Client(base_url=sandbox.url, auth=AUTH, timeout=5.0, verify=TLS))
            return Studio(sandbox, http)

        yield open_


@pytest.fixture
def studio(open_studio: OpenStudio) -> Studio:
    """A sandbox with the default behaviour, minus latency."""
    return open_studio()


def error_of(response: httpx.Response) -> tuple[int, int]:
    """Check a Twilio error body's shape and answer (HTTP status, Twilio code)."""
    body = response.json()
    assert response.headers["content-type"].startswith("application/json")
    assert body["status"] == response.status_code
    assert body["more_info"] == f"https://www.twilio.com/docs/errors/{body['code']}"
    assert isinstance(body["message"], str)
    assert body["message"]
    return response.status_code, body["code"]


class TestCreate:
    """Creates answer in Twilio's shapes and the ledger keeps what was sent."""

    def test_v1_engagement_is_created_and_ledger_keeps_its_parameters(
        self,
        studio: Studio,
    ) -> None:
        """A v1 create answers 200 with the Engagement, and the ledger holds its Parameters."""
        answer = studio.engage("+15551230001", Parameters=json.dumps({"name": "Zeke"}))

        assert answer.status_code == 200
        body = answer.json()
        assert body["sid"].startswith("FN")
        assert len(body["sid"]) == 34
        assert body["flow_sid"] == FLOW
        assert body["account_sid"] == SANDBOX_USERNAME
        assert body["contact_channel_address"] == "+15551230001"
        assert body["status"] == "active"
        assert body["url"] == f"{studio.sandbox.url}/v1/Flows/{FLOW}/Engagements/{body['sid']}"
        [entry] = studio.sandbox.ledger()
        assert entry.sid == body["sid"]
        assert entry.api == "engagements"
        assert (entry.to, entry.from_) == ("+15551230001", SENDER)
        assert entry.parameters == {"name": "Zeke"}
        assert entry.date_created.tzinfo is not None
        assert body["date_created"] == entry.date_created.strftime("%Y-%m-%dT%H:%M:%SZ")

    def test_v2_execution_is_created_with_201(self, studio: Studio) -> None:
        """A v2 create answers 201 with the Execution."""
        answer = studio.execute("+15551230002")

        assert answer.status_code == 201
        body = answer.json()
        assert body["status"] == "active"
        assert body["contact_sid"].startswith("FC")
        [entry] = studio.sandbox.ledger()
        assert (entry.sid, entry.api, entry.parameters) == (body["sid"], "executions", {})

    @pytest.mark.parametrize(
        ("form", "complaint"),
        [
            ({"From": SENDER}, "To"),
            ({"To": "+15551230003"}, "From"),
            ({"To": "+15551230003", "From": SENDER, "Parameters": "{oops"}, "Parameters"),
            ({"To": "+15551230003", "From": SENDER, "Parameters": "[1, 2]"}, "Parameters"),
        ],
    )
    def test_malformed_create_is_400_and_creates_nothing(
        self, studio: Studio, form: dict[str, str], complaint: str
    ) -> None:
        """A create missing To/From or with bad Parameters is 400/20001 and creates no run."""
        answer = studio.http.post(f"/v2/Flows/{FLOW}/Executions", data=form)

        assert error_of(answer) == (400, 20001)
        assert complaint in answer.json()["message"]
        assert studio.sandbox.ledger() == []


class TestAuthentication:
    """Every request needs credentials the sandbox accepts."""

    def test_wrong_password_is_refused_with_20003(self, studio: Studio) -> None:
        """A wrong auth token is 401/20003 with a Basic challenge, and nothing is counted."""
        answer = httpx.post(
            f"{studio.sandbox.url}/v2/Flows/{FLOW}/Executions",
            data={"To": "+15551230004", "From": SENDER},
            auth=(SANDBOX_USERNAME, "not-the-token"),
            verify=TLS,
        )

        assert error_of(answer) == (401, 20003)
        assert answer.json()["message"] == "Authentication Error - invalid username"
        assert answer.headers["www-authenticate"].startswith("Basic")
        assert studio.sandbox.ledger() == []
        assert studio.sandbox.stats().create_requests == 0

    def test_reads_need_credentials_too(self, studio: Studio) -> None:
        """A GET without credentials is 401/20003."""
        answer = httpx.get(f"{studio.sandbox.url}/v2/Flows/{FLOW}", verify=TLS)

        assert error_of(answer) == (401, 20003)

    def test_any_configured_credential_pair_is_accepted(self, open_studio: OpenStudio) -> None:
        """An API key among the credentials works and acts for the sandbox's account."""
        api_key = ("SK" + "1" * 32, "key-secret")
        studio = open_studio(credentials=(AUTH, api_key))

        answer = httpx.get(f"{studio.sandbox.url}/v2/Flows/{FLOW}", auth=api_key, verify=TLS)

        assert answer.status_code == 200
        assert answer.json()["account_sid"] == SANDBOX_USERNAME


class TestFlows:
    """Flows that do not exist are 404s; a Flow's status is visible."""

    def test_malformed_flow_sid_is_404_20404(self, studio: Studio) -> None:
        """A Flow SID of the wrong shape is 404/20404 naming the path."""
        answer = studio.http.post("/v2/Flows/FWnot-a-sid/Executions", data={"To": "+15551230005", "From": SENDER})

        assert error_of(answer) == (404, 20404)
        assert answer.json()["message"] == ("The requested resource /v2/Flows/FWnot-a-sid/Executions was not found")

    def test_flow_missing_from_the_configured_flows_is_404(
        self,
        open_studio: OpenStudio,
    ) -> None:
        """With flows configured, any other Flow is 404 on every endpoint."""
        studio = open_studio(flows={DRAFT_FLOW: "draft"})

        assert error_of(studio.http.get(f"/v1/Flows/{FLOW}")) == (404, 20404)
        assert error_of(studio.engage("+15551230006")) == (404, 20404)
        assert error_of(studio.http.get(f"/v2/Flows/{FLOW}/Executions")) == (404, 20404)
        assert studio.sandbox.ledger() == []

    def test_draft_flow_status_is_visible_on_fetch(self, open_studio: OpenStudio) -> None:
        """v1 and v2 Flow GETs show draft or published, and are counted."""
        studio = open_studio(flows={FLOW: "published", DRAFT_FLOW: "draft"})

        draft_v2 = studio.http.get(f"/v2/Flows/{DRAFT_FLOW}").json()
        draft_v1 = studio.http.get(f"/v1/Flows/{DRAFT_FLOW}").json()
        published = studio.http.get(f"/v2/Flows/{FLOW}").json()

        assert (draft_v2["sid"], draft_v2["status"]) == (DRAFT_FLOW, "draft")
        assert draft_v1["status"] == "draft"
        assert published["status"] == "published"
        assert isinstance(published["revision"], int)
        assert studio.sandbox.stats().flow_requests == 3

    def test_unknown_path_is_a_twilio_404(self, studio: Studio) -> None:
        """An unknown path is a Twilio-shaped 404."""
        assert error_of(studio.http.get("/v1/Services")) == (404, 20404)


class TestCreateRateLimit:
    """Creates beyond the account's rate get 429/20429; reads do not spend it."""

    def test_burst_beyond_the_bucket_gets_429_20429(self, open_studio: OpenStudio) -> None:
        """A burst past one second's worth of creates gets 429/20429, counted."""
        studio = open_studio(rate_limit=3.0)

        started = time.monotonic()
        answers = [studio.execute(f"+1555124{n:04d}") for n in range(10)]
        elapsed = time.monotonic() - started

        statuses = [answer.status_code for answer in answers]
        # Capacity is one second's worth; only tokens refilled during the burst add to it.
        assert statuses[:3] == [201, 201, 201]
        assert 3 <= statuses.count(201) <= 3 + int(elapsed * 3.0)
        assert set(statuses) == {201, 429}
        refused = [answer for answer in answers if answer.status_code == 429]
        assert all(error_of(answer) == (429, 20429) for answer in refused)
        assert refused[0].json()["message"] == "Too Many Requests"
        assert "retry-after" not in refused[0].headers
        stats = studio.sandbox.stats()
        assert stats.rate_limited == len(refused)
        assert stats.create_requests == 10
        assert stats.created == len(studio.sandbox.ledger()) == statuses.count(201)

    def test_429_carries_retry_after_in_whole_seconds_when_configured(
        self,
        open_studio: OpenStudio,
    ) -> None:
        """retry_after puts Retry-After on 429s, rounded up to whole seconds."""
        studio = open_studio(rate_limit=1.0, retry_after=0.2)

        assert studio.execute("+15551250001").status_code == 201
        refused = studio.execute("+15551250002")

        assert refused.status_code == 429
        assert refused.headers["retry-after"] == "1"

    def test_reads_do_not_spend_the_create_budget(self, open_studio: OpenStudio) -> None:
        """Lists do not spend the create rate limit."""
        studio = open_studio(rate_limit=1.0)

        for _ in range(5):
            assert studio.http.get(f"/v2/Flows/{FLOW}/Executions").status_code == 200
        assert studio.execute("+15551260001").status_code == 201

    def test_rate_limit_none_never_refuses(self, open_studio: OpenStudio) -> None:
        """rate_limit=None never answers 429."""
        studio = open_studio(rate_limit=None)

        statuses = {studio.execute(f"+1555127{n:04d}").status_code for n in range(30)}

        assert statuses == {201}


class TestActiveRule:
    """One active run per contact: v1 hands it back, v2 refuses with 409."""

    def test_v1_hands_back_the_contacts_active_engagement(self, studio: Studio) -> None:
        """A second v1 create for a contact answers 200 with the active Engagement."""
        first = studio.engage("+15551280001", Parameters='{"try": 1}').json()
        again = studio.engage("+15551280001", Parameters='{"try": 2}')

        assert again.status_code == 200
        assert again.json()["sid"] == first["sid"]
        assert again.json()["date_created"] == first["date_created"]
        assert [entry.parameters for entry in studio.sandbox.ledger()] == [{"try": 1}]
        stats = studio.sandbox.stats()
        assert (stats.create_requests, stats.created) == (2, 1)
        assert stats.by_status == {200: 2}

    def test_v2_refuses_a_second_execution_with_409_naming_the_active_one(
        self,
        studio: Studio,
    ) -> None:
        """A second v2 create is 409/20409 naming the active Execution."""
        first = studio.execute("+15551290001").json()
        again = studio.execute("+15551290001")

        assert error_of(again) == (409, 20409)
        assert again.json()["message"].startswith("Execution already exists for this contact")
        assert again.json()["details"] == {"conflicting_execution_sid": first["sid"]}
        assert len(studio.sandbox.ledger()) == 1
        assert studio.sandbox.stats().by_status == {201: 1, 409: 1}

    def test_another_sender_or_flow_is_another_contact(self, studio: Studio) -> None:
        """Another From or another Flow is not blocked by the contact's run."""
        assert studio.execute("+15551300001").status_code == 201
        assert studio.execute("+15551300001", From="+15005550007").status_code == 201
        other_flow = "FW" + "9" * 32
        answer = studio.http.post(
            f"/v2/Flows/{other_flow}/Executions",
            data={"To": "+15551300001", "From": SENDER},
        )
        assert answer.status_code == 201

    def test_an_active_execution_also_blocks_a_v1_engagement(self, studio: Studio) -> None:
        """An active v2 Execution is handed back to a v1 create."""
        execution = studio.execute("+15551310001").json()

        handed_back = studio.engage("+15551310001")

        assert handed_back.status_code == 200
        assert handed_back.json()["sid"] == execution["sid"]
        assert len(studio.sandbox.ledger()) == 1

    def test_without_the_active_rule_a_second_run_goes_through(
        self,
        open_studio: OpenStudio,
    ) -> None:
        """active_rule=False lets a contact have two runs."""
        studio = open_studio(active_rule=False)

        first = studio.execute("+15551320001")
        second = studio.execute("+15551320001")

        assert (first.status_code, second.status_code) == (201, 201)
        assert first.json()["sid"] != second.json()["sid"]
        assert len(studio.sandbox.ledger()) == 2

    def test_ended_runs_no_longer_block_their_contact(self, studio: Studio) -> None:
        """After end_all_runs a contact can be started again, and lists show who ended."""
        first = studio.execute("+15551330001").json()
        studio.sandbox.end_all_runs()

        second = studio.execute("+15551330001")

        assert second.status_code == 201
        listed = studio.http.get(f"/v2/Flows/{FLOW}/Executions").json()["executions"]
        status_of = {run["sid"]: run["status"] for run in listed}
        assert status_of == {first["sid"]: "ended", second.json()["sid"]: "active"}

    def test_runs_end_by_themselves_after_their_lifetime(self, open_studio: OpenStudio) -> None:
        """Runs older than run_lifetime are ended and no longer block."""
        studio = open_studio(run_lifetime=0.0)

        assert studio.execute("+15551340001").status_code == 201
        assert studio.execute("+15551340001").status_code == 201
        ended = studio.http.get(f"/v2/Flows/{FLOW}/Executions", params={"Status": "ended"})
        assert len(ended.json()["executions"]) == 2


class TestFaults:
    """Injected faults: server errors, lost answers, dropped connections, slow answers."""

    def test_server_errors_alternate_500_503_and_create_nothing(
        self,
        open_studio: OpenStudio,
    ) -> None:
        """error_rate answers 500 and 503 in turn and creates nothing."""
        studio = open_studio(error_rate=1.0)

        answers = [studio.execute(f"+1555135{n:04d}") for n in range(3)]

        assert [error_of(answer) for answer in answers] == [
            (500, 20500),
            (503, 20503),
            (500, 20500),
        ]
        assert studio.sandbox.ledger() == []

    def test_lost_answer_creates_the_run_but_answers_503(self, open_studio: OpenStudio) -> None:
        """lost_answer_rate creates the run but answers 503."""
        studio = open_studio(lost_answer_rate=1.0)

        lost = studio.execute("+15551360001")

        assert error_of(lost) == (503, 20503)
        [entry] = studio.sandbox.ledger()
        studio.sandbox.reconfigure(lost_answer_rate=0.0)
        resent = studio.execute("+15551360001")
        assert resent.json()["details"]["conflicting_execution_sid"] == entry.sid

    def test_dropped_connection_still_creates_the_run(self, open_studio: OpenStudio) -> None:
        """drop_rate creates the run and then drops the connection."""
        studio = open_studio(drop_rate=1.0)

        with pytest.raises(httpx.RemoteProtocolError):
            studio.execute("+15551370001")

        assert [entry.to for entry in studio.sandbox.ledger()] == ["+15551370001"]
        assert studio.sandbox.stats().by_status == {0: 1}

    def test_slow_answer_times_the_client_out_after_creating_the_run(
        self,
        open_studio: OpenStudio,
    ) -> None:
        """slow_rate creates the run and answers too late for the client."""
        studio = open_studio(slow_rate=1.0, slow_seconds=30.0)

        with pytest.raises(httpx.ReadTimeout):
            studio.http.post(
                f"/v2/Flows/{FLOW}/Executions",
                data={"To": "+15551380001", "From": SENDER},
                timeout=0.2,
            )

        assert len(studio.sandbox.ledger()) == 1

    def test_faults_can_be_switched_off_mid_test(self, open_studio: OpenStudio) -> None:
        """reconfigure switches faults off for later requests."""
        studio = open_studio(error_rate=1.0)
        assert studio.execute("+15551390001").status_code == 500

        studio.sandbox.reconfigure(error_rate=0.0)

        assert studio.execute("+15551390001").status_code == 201

    def test_same_seed_gives_the_same_faults(self, open_studio: OpenStudio) -> None:
        """The same seed gives the same sequence of faults."""

        def statuses(studio: Studio) -> list[int]:
            return [studio.execute(f"+1555140{n:04d}").status_code for n in range(20)]

        first = statuses(open_studio(error_rate=0.3, lost_answer_rate=0.3, seed=7))
        second = statuses(open_studio(error_rate=0.3, lost_answer_rate=0.3, seed=7))

        assert first == second
        assert {201, 503} <= set(first)


class TestPaging:
    """Lists page newest first with Twilio's meta, filters and stable tokens."""

    def test_engagement_pages_follow_next_page_url_until_null(self, studio: Studio) -> None:
        """v1 pages follow next_page_url to null, newest first, and previous_page_url goes back."""
        for n in range(7):
            studio.engage(f"+1555141{n:04d}")
        studio.execute("+15551419999")
        url: str | None = f"/v1/Flows/{FLOW}/Engagements?PageSize=3"
        pages = []
        while url is not None:
            page = studio.http.get(url).json()
            pages.append(page)
            url = page["meta"]["next_page_url"]

        assert [len(page["engagements"]) for page in pages] == [3, 3, 1]
        assert [page["meta"]["page"] for page in pages] == [0, 1, 2]
        assert all(page["meta"]["key"] == "engagements" for page in pages)
        assert all(page["meta"]["page_size"] == 3 for page in pages)
        assert pages[0]["meta"]["previous_page_url"] is None
        assert pages[1]["meta"]["next_page_url"].startswith(f"{studio.sandbox.url}/v1/")
        listed = [run["sid"] for page in pages for run in page["engagements"]]
        engagements = [e for e in studio.sandbox.ledger() if e.api == "engagements"]
        assert listed == [entry.sid for entry in reversed(engagements)]
        back = studio.http.get(pages[1]["meta"]["previous_page_url"]).json()
        assert back["engagements"] == pages[0]["engagements"]
        assert studio.sandbox.stats().list_requests == 4

    def test_runs_created_while_paging_do_not_shift_later_pages(self, studio: Studio) -> None:
        """Runs created while paging do not shift the next page."""
        for n in range(4):
            studio.execute(f"+1555142{n:04d}")
        first = studio.http.get(f"/v2/Flows/{FLOW}/Executions?PageSize=2").json()

        studio.execute("+15551429999")
        second = studio.http.get(first["meta"]["next_page_url"]).json()

        older = [entry.sid for entry in studio.sandbox.ledger()[:2]]
        assert [run["sid"] for run in second["executions"]] == older[::-1]
        assert second["meta"]["next_page_url"] is None

    def test_page_size_over_1000_is_400(self, studio: Studio) -> None:
        """PageSize above 1000 is 400/20001."""
        answer = studio.http.get(f"/v2/Flows/{FLOW}/Executions", params={"PageSize": 1001})

        assert error_of(answer) == (400, 20001)

    def test_execution_date_filters_are_from_inclusive_to_exclusive(
        self,
        studio: Studio,
    ) -> None:
        """DateCreatedFrom is inclusive, DateCreatedTo exclusive, any offset accepted."""
        for n in range(4):
            studio.execute(f"+1555143{n:04d}")
        ledger = studio.sandbox.ledger()
        eastern = timezone(timedelta(hours=-5))

        def listed(date_from: str, date_to: str) -> list[str]:
            params = {"DateCreatedFrom": date_from, "DateCreatedTo": date_to}
            answer = studio.http.get(f"/v2/Flows/{FLOW}/Executions", params=params)
            return [run["sid"] for run in answer.json()["executions"]]

        utc_from = ledger[1].date_created.isoformat()
        z_to = ledger[3].date_created.isoformat().replace("+00:00", "Z")
        offset_from = ledger[1].date_created.astimezone(eastern).isoformat()
        assert listed(utc_from, z_to) == [ledger[2].sid, ledger[1].sid]
        assert listed(offset_from, z_to) == [ledger[2].sid, ledger[1].sid]
        later = (ledger[3].date_created + timedelta(microseconds=1)).isoformat()
        assert listed(utc_from, later) == [ledger[3].sid, ledger[2].sid, ledger[1].sid]

    def test_filters_survive_into_the_next_page_url(self, studio: Studio) -> None:
        """Filters are kept in next_page_url."""
        for n in range(3):
            studio.execute(f"+1555144{n:04d}")
        since = studio.sandbox.ledger()[1].date_created.isoformat()

        first = studio.http.get(
            f"/v2/Flows/{FLOW}/Executions",
            params={"DateCreatedFrom": since, "PageSize": 1},
        ).json()
        second = studio.http.get(first["meta"]["next_page_url"]).json()

        assert len(first["executions"]) == len(second["executions"]) == 1
        assert second["meta"]["next_page_url"] is None

    def test_bad_date_filter_is_400(self, studio: Studio) -> None:
        """A date filter that is not ISO 8601 is 400/20001."""
        answer = studio.http.get(f"/v2/Flows/{FLOW}/Executions", params={"DateCreatedFrom": "yesterday"})

        assert error_of(answer) == (400, 20001)

    def test_repeat_next_page_serves_the_same_url_forever(self, open_studio: OpenStudio) -> None:
        """repeat_next_page names the same page as next, forever."""
        studio = open_studio(repeat_next_page=True)
        studio.execute("+15551450001")

        first = studio.http.get(f"/v2/Flows/{FLOW}/Executions").json()
        url = first["meta"]["next_page_url"]
        again = studio.http.get(url).json()

        assert url == first["meta"]["url"]
        assert again["meta"]["next_page_url"] == url
        assert again["executions"] == first["executions"]


class TestContract:
    """Answers validate against Twilio's OpenAPI description."""

    def test_answers_conform_to_twilios_openapi_description(self, studio: Studio, twilio_oai: Path) -> None:
        """Every answer validates against Twilio's OpenAPI files, and the check can fail."""
        import openapi_core
        from openapi_core import testing

        specs = {
            "v1": openapi_core.OpenAPI.from_path(twilio_oai / "twilio_studio_v1.yaml"),
            "v2": openapi_core.OpenAPI.from_path(twilio_oai / "twilio_studio_v2.yaml"),
        }
        form = {"To": "+15551460001", "From": SENDER, "Parameters": '{"a": [1]}'}
        calls = [
            ("post", f"/v1/Flows/{FLOW}/Engagements", form, 200),
            ("post", f"/v2/Flows/{FLOW}/Executions", {**form, "To": "+15551460002"}, 201),
            ("get", f"/v1/Flows/{FLOW}/Engagements", None, 200),
            ("get", f"/v2/Flows/{FLOW}/Executions", None, 200),
            ("get", f"/v1/Flows/{FLOW}", None, 200),
            ("get", f"/v2/Flows/{FLOW}", None, 200),
        ]
        for method, path, data, status in calls:
            answer = studio.http.request(method, path, data=data)
            assert answer.status_code == status
            # The description's server is studio.twilio.com; only the path matters here.
            request = testing.MockRequest("https://studio.twilio.com", method, path)
            response = testing.MockResponse(answer.content, status_code=status)
            specs[path[1:3]].validate_response(request, response)

        broken = {**studio.engage("+15551460003").json(), "sid": "FN-too-short"}
        with pytest.raises(openapi_core.validation.response.exceptions.InvalidData):
            specs["v1"].validate_response(
                testing.MockRequest("https://studio.twilio.com", "post", calls[0][1]),
                testing.MockResponse(json.dumps(broken).encode()),
            )


class TestLifecycle:
    """Starting, stopping and configuring the sandbox."""

    def test_url_is_only_available_while_running(self) -> None:
        """url is available only between start() and stop()."""
        sandbox = Sandbox()
        with pytest.raises(RuntimeError, match="not running"):
            _ = sandbox.url

        url = sandbox.start()
        try:
            assert url == sandbox.url
            assert url.startswith("http://127.0.0.1:")
            with pytest.raises(RuntimeError, match="already running"):
                sandbox.start()
        finally:
            sandbox.stop()
        sandbox.stop()

        with pytest.raises(RuntimeError, match="not running"):
            _ = sandbox.url

    def test_config_rejects_impossible_settings(self) -> None:
        """SandboxConfig refuses settings it cannot honour, naming the field."""
        with pytest.raises(ValueError, match="error_rate"):
            SandboxConfig(error_rate=1.5)
        with pytest.raises(ValueError, match="rate_limit"):
            SandboxConfig(rate_limit=0.0)
        with pytest.raises(ValueError, match="flow status"):
            SandboxConfig(flows={FLOW: "archived"})

    @pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
    @pytest.mark.parametrize("stop_signal", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
    def test_serve_runs_in_the_foreground_until_ctrl_c_or_sigterm(
        self,
        stop_signal: signal.Signals,
    ) -> None:
        """serve() runs until Ctrl-C or SIGTERM, exits 0, and imports nothing from the package."""
        # Loading the file outside its package also proves it imports nothing from it.
        program = (
            "import importlib.util, signal, sys\n"
            # A shell may start background jobs with Ctrl-C ignored; a terminal does not.
            "signal.signal(signal.SIGINT, signal.default_int_handler)\n"
            "spec = importlib.util.spec_from_file_location('sandbox', sys.argv[1])\n"
            "sandbox = importlib.util.module_from_spec(spec)\n"
            "sys.modules['sandbox'] = sandbox\n"
            "spec.loader.exec_module(sandbox)\n"
            "sandbox.serve(on_ready=lambda url: print(url, flush=True))\n"
        )
        with subprocess.Popen(
            [sys.executable, "-c", program, str(SANDBOX_FILE)],
            stdout=subprocess.PIPE,
            text=True,
        ) as server:
            try:
                assert server.stdout is not None
                url = server.stdout.readline().strip()
                answer = httpx.get(f"{url}/v2/Flows/{FLOW}", auth=AUTH, verify=TLS)
                assert answer.status_code == 200
                server.send_signal(stop_signal)
                assert server.wait(timeout=5) == 0
                assert server.stdout.read() == ""
            finally:
                if server.poll() is None:
                    server.kill()
                    server.wait()
