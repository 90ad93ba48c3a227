"""The Studio sandbox, driven over real loopback HTTP the way the client drives it."""

from __future__ import annotations

import json
import re
import signal
import ssl
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import launch
import pytest

from batch_engage.sandbox import (
    SANDBOX_PASSWORD,
    SANDBOX_USERNAME,
    Sandbox,
    SandboxConfig,
)

from conftest import twilio_specs

AUTH = (SANDBOX_USERNAME, SANDBOX_PASSWORD)
FLOW = "FW" + "0123456789abcdef" * 2
DRAFT_FLOW = "FW" + "fedcba9876543210" * 2
SENDER = "+15005550006"
SANDBOX_PACKAGE = Path(__file__).resolve().parents[2] / "batch_engage" / "sandbox"
REPO = Path(__file__).resolve().parents[2]
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
        assert error_of(studio.http.get("/v1/Nowhere")) == (404, 20404)


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

    def test_rate_limited_first_refuses_exactly_the_first_creates(self, open_studio: OpenStudio) -> None:
        """rate_limited_first=3: the first three creates get 429/20429 (counted, nothing created), then none."""
        studio = open_studio(rate_limit=None, rate_limited_first=3)

        statuses = [studio.execute(f"+1555128{n:04d}").status_code for n in range(6)]

        assert statuses == [429, 429, 429, 201, 201, 201]
        assert studio.sandbox.stats().rate_limited == 3
        assert len(studio.sandbox.ledger()) == 3

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

    @pytest.fixture
    def specs(self, twilio_oai: Path) -> dict[str, Any]:
        """Twilio's Studio v1 and v2 descriptions, loaded with openapi-core (skip or fail as the fixture says)."""
        return twilio_specs(twilio_oai)

    @staticmethod
    def conforms(specs: dict[str, Any], answer: httpx.Response) -> None:
        """Validate one answer against the description of its path."""
        from openapi_core import testing

        path = answer.request.url.path
        # The description's server is studio.twilio.com; only the path matters here.
        request = testing.MockRequest("https://studio.twilio.com", answer.request.method.lower(), path)
        response = testing.MockResponse(answer.content, status_code=answer.status_code)
        specs[path[1:3]].validate_response(request, response)

    def test_answers_conform_to_twilios_openapi_description(self, studio: Studio, specs: dict[str, Any]) -> None:
        """Creates, lists and Flow GETs validate against Twilio's OpenAPI files, and the check can fail."""
        import openapi_core
        from openapi_core import testing

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
            self.conforms(specs, answer)

        broken = {**studio.engage("+15551460003").json(), "sid": "FN-too-short"}
        with pytest.raises(openapi_core.validation.response.exceptions.InvalidData):
            specs["v1"].validate_response(
                testing.MockRequest("https://studio.twilio.com", "post", calls[0][1]),
                testing.MockResponse(json.dumps(broken).encode()),
            )

    def test_new_answers_conform_too(self, open_studio: OpenStudio, specs: dict[str, Any]) -> None:
        """Single runs, Contexts with widget outputs, inbound runs and Flow revisions validate too."""
        studio = open_studio(
            rate_limit=None, other_sender_rate=1.0, list_drops_channel_prefix=True, flows={FLOW: "draft_over_published"}
        )
        params = '{"first_name": "Ada", "order": {"id": "A-1"}}'
        engagement = studio.engage("whatsapp:+15551470001", Parameters=params).json()["sid"]
        execution = studio.execute("+15551470002", Parameters=params).json()["sid"]
        studio.sandbox.end_all_runs()
        engagement_path = f"/v1/Flows/{FLOW}/Engagements/{engagement}"
        execution_path = f"/v2/Flows/{FLOW}/Executions/{execution}"

        paths = [
            engagement_path,
            f"{engagement_path}/Context",
            execution_path,
            f"{execution_path}/Context",
            f"/v1/Flows/{FLOW}/Engagements",
            f"/v2/Flows/{FLOW}/Executions?PageSize=1",
            f"/v2/Flows/{FLOW}",
            f"/v2/Flows/{FLOW}/Revisions/LatestPublished",
            f"/v2/Flows/{FLOW}/Revisions/3",
        ]
        for path in paths:
            answer = studio.http.get(path)
            assert answer.status_code == 200, path
            self.conforms(specs, answer)
        assert "widgets" in studio.http.get(f"{execution_path}/Context").json()["context"]


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
        with pytest.raises(ValueError, match="flows keys must be Flow SIDs"):
            SandboxConfig(flows={"my-flow": "published"})
        with pytest.raises(ValueError, match="other_sender_rate"):
            SandboxConfig(other_sender_rate=-0.1)
        with pytest.raises(ValueError, match="read_rate_limit_rate"):
            SandboxConfig(read_rate_limit_rate=2.0)
        with pytest.raises(ValueError, match="clock_offset"):
            SandboxConfig(clock_offset=float("nan"))
        with pytest.raises(ValueError, match="next_page_host"):
            SandboxConfig(next_page_host="https://elsewhere.example/path")
        with pytest.raises(ValueError, match="replies"):
            SandboxConfig(replies=())
        with pytest.raises(ValueError, match="replies"):
            SandboxConfig(replies=("YES", ""))

    @pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
    @pytest.mark.parametrize("stop_signal", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
    def test_serve_runs_in_the_foreground_until_ctrl_c_or_sigterm(
        self,
        stop_signal: signal.Signals,
    ) -> None:
        """serve() runs until Ctrl-C or SIGTERM, exits 0, and the sandbox imports nothing from batch_engage."""
        # Loading the sandbox package outside batch_engage also proves it imports nothing from it.
        program = (
            "import importlib.util, signal, sys\n"
            # A shell may start background jobs with Ctrl-C ignored; a terminal does not.
            "signal.signal(signal.SIGINT, signal.default_int_handler)\n"
            "spec = importlib.util.spec_from_file_location(\n"
            "    'sandbox', sys.argv[1] + '/__init__.py', submodule_search_locations=[sys.argv[1]]\n"
            ")\n"
            "sandbox = importlib.util.module_from_spec(spec)\n"
            "sys.modules['sandbox'] = sandbox\n"
            "spec.loader.exec_module(sandbox)\n"
            "sandbox.serve(on_ready=lambda url: print(url, flush=True))\n"
        )
        with subprocess.Popen(
            [sys.executable, "-c", program, str(SANDBOX_PACKAGE)],
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


def twilio_date(response: httpx.Response) -> datetime:
    """The moment a response's single Date header names."""
    [date] = response.headers.get_list("date")
    return parsedate_to_datetime(date)


class TestTwilioClock:
    """Twilio's clock, not ours, stamps the Date header, run dates and what date filters compare."""

    @pytest.mark.parametrize("offset", [3600.0, -7200.0])
    def test_every_answer_carries_twilios_date(self, open_studio: OpenStudio, offset: float) -> None:
        """Successes, 401s, 404s, 409s and 429s all carry one Date on Twilio's clock, to the second."""
        studio = open_studio(clock_offset=offset, rate_limit=1.0)
        answers = [
            studio.execute("+15551500001"),
            studio.execute("+15551500001"),
            studio.execute("+15551500002"),
            studio.http.get("/v1/Nowhere"),
            httpx.get(f"{studio.sandbox.url}/v2/Flows/{FLOW}", verify=TLS),
        ]

        expected = datetime.now(UTC) + timedelta(seconds=offset)
        assert [answer.status_code for answer in answers] == [201, 429, 429, 404, 401]
        for answer in answers:
            assert answer.headers["date"].endswith(" GMT")
            assert abs((twilio_date(answer) - expected).total_seconds()) < 5

    def test_run_dates_are_on_twilios_clock(self, open_studio: OpenStudio) -> None:
        """date_created of a run and its ledger entry read Twilio's clock, an hour ahead here."""
        studio = open_studio(clock_offset=3600.0)

        answer = studio.execute("+15551510001")

        [entry] = studio.sandbox.ledger()
        assert abs((entry.date_created - datetime.now(UTC)).total_seconds() - 3600) < 5
        assert answer.json()["date_created"] == entry.date_created.strftime("%Y-%m-%dT%H:%M:%SZ")
        assert abs((twilio_date(answer) - entry.date_created).total_seconds()) < 2

    def test_date_filters_compare_on_twilios_clock(self, open_studio: OpenStudio) -> None:
        """A window built from our clock misses runs when Twilio's clock is an hour behind; one from its Date finds them."""
        studio = open_studio(clock_offset=-3600.0)
        answer = studio.execute("+15551520001")
        ours = (datetime.now(UTC) - timedelta(minutes=5)).isoformat()
        theirs = (twilio_date(answer) - timedelta(minutes=5)).isoformat()

        def listed(since: str) -> int:
            page = studio.http.get(f"/v2/Flows/{FLOW}/Executions", params={"DateCreatedFrom": since})
            return len(page.json()["executions"])

        assert listed(ours) == 0
        assert listed(theirs) == 1


class TestOtherSenders:
    """Inbound messages start runs of the same Flow for the same contacts, beside the client's."""

    def test_an_inbound_run_starts_just_before_the_create(self, open_studio: OpenStudio) -> None:
        """Before each create, an ended run initiated by a message SID, with no Parameters, appears."""
        studio = open_studio(other_sender_rate=1.0)

        answer = studio.execute("+15551530001", Parameters='{"marker": "row-1"}')

        assert answer.status_code == 201
        inbound, rest = studio.sandbox.ledger()
        assert (inbound.source, inbound.to, inbound.from_, inbound.parameters) == (
            "inbound",
            "+15551530001",
            SENDER,
            {},
        )
        assert re.fullmatch(r"SM[0-9a-f]{32}", inbound.initiated_by)
        assert (rest.source, rest.sid, rest.parameters) == ("rest", answer.json()["sid"], {"marker": "row-1"})
        assert re.fullmatch(r"RQ[0-9a-f]{32}", rest.initiated_by)
        assert answer.json()["initiated_by"] == rest.initiated_by
        listed = studio.http.get(f"/v2/Flows/{FLOW}/Executions").json()["executions"]
        assert [(run["sid"], run["status"], run["initiated_by"]) for run in listed] == [
            (rest.sid, "active", rest.initiated_by),
            (inbound.sid, "ended", inbound.initiated_by),
        ]
        assert listed[1]["context"]["flow"]["data"] == {}
        stats = studio.sandbox.stats()
        assert (stats.created, stats.inbound_runs) == (1, 1)

    def test_inbound_runs_also_happen_when_the_create_fails(self, open_studio: OpenStudio) -> None:
        """A create answered 500/503 without a run still finds the contact's inbound run in the list."""
        studio = open_studio(other_sender_rate=1.0, error_rate=1.0)

        assert studio.engage("+15551540001").status_code == 500

        [entry] = studio.sandbox.ledger()
        assert entry.source == "inbound"
        listed = studio.http.get(f"/v1/Flows/{FLOW}/Engagements").json()["engagements"]
        assert [run["sid"] for run in listed] == [entry.sid]

    def test_v1_never_shows_initiated_by(self, open_studio: OpenStudio) -> None:
        """Engagements, listed or fetched, have no initiated_by, as in Twilio's v1 description."""
        studio = open_studio(other_sender_rate=1.0)
        created = studio.engage("+15551550001").json()

        listed = studio.http.get(f"/v1/Flows/{FLOW}/Engagements").json()["engagements"]
        fetched = studio.http.get(f"/v1/Flows/{FLOW}/Engagements/{created['sid']}").json()

        assert len(listed) == 2
        assert all("initiated_by" not in run for run in [created, fetched, *listed])
        assert {entry.initiated_by[:2] for entry in studio.sandbox.ledger()} == {"SM", "RQ"}

    def test_a_message_to_an_active_run_starts_no_other(self, open_studio: OpenStudio) -> None:
        """While the contact's run is active, the inbound message joins it and the second create is still 409."""
        studio = open_studio(other_sender_rate=1.0)
        first = studio.execute("+15551560001").json()

        again = studio.execute("+15551560001")

        assert error_of(again) == (409, 20409)
        assert again.json()["details"] == {"conflicting_execution_sid": first["sid"]}
        assert [entry.source for entry in studio.sandbox.ledger()] == ["inbound", "rest"]

    def test_other_senders_do_not_change_the_fault_sequence(self, open_studio: OpenStudio) -> None:
        """With the same seed, the faults creates meet are the same with or without other senders."""

        def statuses(studio: Studio) -> list[int]:
            return [studio.execute(f"+1555157{n:04d}").status_code for n in range(20)]

        quiet = statuses(open_studio(error_rate=0.4, seed=3))
        busy = open_studio(error_rate=0.4, seed=3, other_sender_rate=0.5)

        assert statuses(busy) == quiet
        assert 0 < busy.sandbox.stats().inbound_runs < 20


class TestReadRateLimit:
    """Reads of runs can be refused with 429 too, as Twilio does under load."""

    def test_run_reads_get_429_with_retry_after(self, open_studio: OpenStudio) -> None:
        """List, run and Context GETs answer 429/20429 with Retry-After; creates and Flow GETs do not."""
        studio = open_studio(read_rate_limit_rate=1.0, retry_after=2.5)
        sid = studio.execute("+15551580001").json()["sid"]

        refused = [
            studio.http.get(f"/v2/Flows/{FLOW}/Executions"),
            studio.http.get(f"/v2/Flows/{FLOW}/Executions/{sid}"),
            studio.http.get(f"/v2/Flows/{FLOW}/Executions/{sid}/Context"),
            studio.http.get(f"/v1/Flows/{FLOW}/Engagements"),
        ]

        assert all(error_of(answer) == (429, 20429) for answer in refused)
        assert all(answer.headers["retry-after"] == "3" for answer in refused)
        assert studio.http.get(f"/v2/Flows/{FLOW}").status_code == 200
        stats = studio.sandbox.stats()
        assert (stats.read_rate_limited, stats.rate_limited) == (4, 0)
        assert (stats.list_requests, stats.run_requests, stats.context_requests) == (2, 1, 1)

    def test_some_reads_pass_at_a_partial_rate(self, open_studio: OpenStudio) -> None:
        """At a share of 0.5, some list reads pass and some are refused, and the count says how many."""
        studio = open_studio(read_rate_limit_rate=0.5, seed=11)

        statuses = [studio.http.get(f"/v2/Flows/{FLOW}/Executions").status_code for _ in range(30)]

        assert set(statuses) == {200, 429}
        assert studio.sandbox.stats().read_rate_limited == statuses.count(429)


class TestSingleRun:
    """One run and its Context can be fetched, in the shapes Twilio documents."""

    @pytest.mark.parametrize(
        ("collection", "key", "create"),
        [("Engagements", "engagement_sid", Studio.engage), ("Executions", "execution_sid", Studio.execute)],
    )
    def test_run_and_context_are_fetched(
        self, studio: Studio, collection: str, key: str, create: Callable[..., httpx.Response]
    ) -> None:
        """GET of a run equals its create answer; its Context holds Parameters exactly as posted, To and From."""
        parameters = {"marker": "r-7", "order": {"id": "A-1", "total": 9.5}, "tags": [1, None]}
        created = create(studio, "whatsapp:+15551590001", Parameters=json.dumps(parameters)).json()
        base = f"/{'v1' if key == 'engagement_sid' else 'v2'}/Flows/{FLOW}/{collection}/{created['sid']}"

        fetched = studio.http.get(base)
        context = studio.http.get(f"{base}/Context")

        assert fetched.status_code == context.status_code == 200
        assert fetched.json() == created
        body = context.json()
        assert body == {
            "account_sid": SANDBOX_USERNAME,
            "context": body["context"],
            key: created["sid"],
            "flow_sid": FLOW,
            "url": f"{studio.sandbox.url}{base}/Context",
        }
        assert body["context"]["flow"]["data"] == parameters
        assert body["context"]["contact"]["channel"]["address"] == "whatsapp:+15551590001"
        assert body["context"]["flow"]["channel"]["address"] == SENDER
        assert "widgets" not in body["context"]

    def test_unknown_or_misplaced_runs_are_404(self, studio: Studio) -> None:
        """An unknown SID, a v2 run asked for on v1, or on another Flow, is 404/20404."""
        sid = studio.execute("+15551600001").json()["sid"]
        other_flow = "FW" + "9" * 32

        for path in [
            f"/v2/Flows/{FLOW}/Executions/FN{'0' * 32}",
            f"/v2/Flows/{FLOW}/Executions/FN{'0' * 32}/Context",
            f"/v1/Flows/{FLOW}/Engagements/{sid}",
            f"/v2/Flows/{other_flow}/Executions/{sid}",
        ]:
            assert error_of(studio.http.get(path)) == (404, 20404), path


class TestDrafts:
    """A Flow's latest revision may be a draft; the runs play the last published one."""

    def test_revisions_of_each_kind_of_flow(self, open_studio: OpenStudio) -> None:
        """Flow GET shows the latest revision; LatestPublished the last published one, or 404 if never published."""
        over = "FW" + "a" * 32
        studio = open_studio(flows={FLOW: "published", DRAFT_FLOW: "draft", over: "draft_over_published"})

        def revision(flow: str, which: str) -> tuple[str, int] | int:
            answer = studio.http.get(f"/v2/Flows/{flow}/Revisions/{which}")
            return (
                (answer.json()["status"], answer.json()["revision"])
                if answer.status_code == 200
                else error_of(answer)[1]
            )

        latest = {flow: studio.http.get(f"/v2/Flows/{flow}").json() for flow in (FLOW, DRAFT_FLOW, over)}
        assert {flow: (body["status"], body["revision"]) for flow, body in latest.items()} == {
            FLOW: ("published", 2),
            DRAFT_FLOW: ("draft", 1),
            over: ("draft", 3),
        }
        assert revision(FLOW, "LatestPublished") == ("published", 2)
        assert revision(DRAFT_FLOW, "LatestPublished") == 20404
        assert revision(over, "LatestPublished") == ("published", 2)
        assert revision(over, "LatestRevision") == ("draft", 3)
        assert revision(over, "1") == ("draft", 1)
        assert revision(over, "4") == 20404
        assert revision(over, "latest") == 20404
        assert studio.http.get(f"/v1/Flows/{over}").json()["status"] == "draft"
        assert studio.sandbox.stats().revision_requests == 7

    def test_a_draft_over_published_differs_from_what_runs(self, open_studio: OpenStudio) -> None:
        """The draft's definition reads a key the published one does not; runs send the published text."""
        studio = open_studio(flows={FLOW: "draft_over_published"}, run_lifetime=0.0)
        draft = studio.http.get(f"/v2/Flows/{FLOW}").json()
        published = studio.http.get(f"/v2/Flows/{FLOW}/Revisions/LatestPublished").json()
        sid = studio.execute("+15551610001").json()["sid"]

        context = studio.http.get(f"/v2/Flows/{FLOW}/Executions/{sid}/Context").json()["context"]

        assert "flow.data.coupon" in json.dumps(draft["definition"])
        assert "flow.data.coupon" not in json.dumps(published["definition"])
        assert draft["commit_message"]
        assert "code" not in context["widgets"]["ask"]["outbound"]["Body"]


FLOW_DATA_KEY = re.compile(r"flow\.data\.([\w.]+)")


def state(definition: dict[str, Any], name: str) -> dict[str, Any]:
    """The named widget of a Flow definition."""
    [found] = [widget for widget in definition["states"] if widget["name"] == name]
    return found


class TestFlowDefinition:
    """Every Flow has Studio's JSON for Trigger -> send_intro -> ask."""

    def test_definition_is_studios_shape(self, studio: Studio) -> None:
        """States have name/type/properties/transitions; the REST trigger leads to send_intro, then ask."""
        definition = studio.http.get(f"/v2/Flows/{FLOW}").json()["definition"]

        assert definition["initial_state"] == "Trigger"
        assert [(s["name"], s["type"]) for s in definition["states"]] == [
            ("Trigger", "trigger"),
            ("send_intro", "send-message"),
            ("ask", "send-and-wait-for-reply"),
        ]
        assert all(set(s) == {"name", "type", "properties", "transitions"} for s in definition["states"])
        trigger = {t["event"]: t.get("next") for t in state(definition, "Trigger")["transitions"]}
        assert trigger == {
            "incomingMessage": None,
            "incomingCall": None,
            "incomingConversationMessage": None,
            "incomingRequest": "send_intro",
            "incomingParent": None,
        }
        assert {"event": "sent", "next": "ask"} in state(definition, "send_intro")["transitions"]
        assert all("next" not in t for t in state(definition, "ask")["transitions"])

    def test_definition_reads_only_what_the_sample_job_maps(self, studio: Studio) -> None:
        """Every flow.data key the published Flow reads is one the sample job maps."""
        import tomllib

        job = tomllib.loads((REPO / "jobs" / "sample_campaign.toml").read_text())
        mapped = set(job["mapping"]["parameters"]) | set(job["mapping"]["static_parameters"])
        definition = studio.http.get(f"/v2/Flows/{FLOW}/Revisions/LatestPublished").json()["definition"]

        read = set(FLOW_DATA_KEY.findall(json.dumps(definition)))

        assert read == {"first_name", "order.id", "city", "visits"}
        assert read <= mapped

    def test_unwired_trigger_sends_nothing(self, open_studio: OpenStudio) -> None:
        """With the REST trigger unconnected, runs still start and end, but no widget runs."""
        studio = open_studio(unwired_trigger=True, run_lifetime=0.0)
        definition = studio.http.get(f"/v2/Flows/{FLOW}").json()["definition"]
        sid = studio.execute("+15551620001").json()["sid"]

        context = studio.http.get(f"/v2/Flows/{FLOW}/Executions/{sid}/Context").json()["context"]

        assert {"event": "incomingRequest"} in state(definition, "Trigger")["transitions"]
        assert studio.http.get(f"/v2/Flows/{FLOW}/Executions/{sid}").json()["status"] == "ended"
        assert "widgets" not in context


class TestListQuirks:
    """Lists differ from single reads where Twilio's do: the WhatsApp prefix, and paging on another host."""

    def test_lists_drop_the_whatsapp_prefix(self, open_studio: OpenStudio) -> None:
        """Listed runs show the bare number; the run GET and its Context keep whatsapp:."""
        studio = open_studio(list_drops_channel_prefix=True)
        sid = studio.execute("whatsapp:+15551630001").json()["sid"]

        [listed] = studio.http.get(f"/v2/Flows/{FLOW}/Executions").json()["executions"]
        fetched = studio.http.get(f"/v2/Flows/{FLOW}/Executions/{sid}").json()
        context = studio.http.get(f"/v2/Flows/{FLOW}/Executions/{sid}/Context").json()["context"]

        assert listed["contact_channel_address"] == "+15551630001"
        assert fetched["contact_channel_address"] == "whatsapp:+15551630001"
        assert context["contact"]["channel"]["address"] == "whatsapp:+15551630001"

    def test_prefix_is_kept_by_default(self, studio: Studio) -> None:
        """Without the option, lists show the address as created."""
        studio.engage("whatsapp:+15551640001")

        [listed] = studio.http.get(f"/v1/Flows/{FLOW}/Engagements").json()["engagements"]

        assert listed["contact_channel_address"] == "whatsapp:+15551640001"

    def test_paging_urls_name_another_host(self, open_studio: OpenStudio) -> None:
        """next_page_url and the other page URLs name next_page_host, with the same path and query."""
        studio = open_studio(next_page_host="api.elsewhere.example:8443")
        for n in range(3):
            studio.execute(f"+1555165{n:04d}")

        meta = studio.http.get(f"/v2/Flows/{FLOW}/Executions", params={"PageSize": 2}).json()["meta"]

        for name in ("url", "first_page_url", "next_page_url"):
            parts = urlsplit(meta[name])
            assert parts.netloc == "api.elsewhere.example:8443", name
            assert parts.path == f"/v2/Flows/{FLOW}/Executions", name
        local = urlsplit(studio.sandbox.url).netloc
        follow = meta["next_page_url"].replace("api.elsewhere.example:8443", local)
        assert len(studio.http.get(follow).json()["executions"]) == 1


class TestRunsEnd:
    """Runs end, and then their Context and the Messages API show what the Flow did."""

    def test_a_run_is_active_then_ended_with_its_end_time(self, studio: Studio) -> None:
        """GET shows active, then ended with date_updated the moment it ended."""
        created = studio.execute("+15551660001").json()
        path = f"/v2/Flows/{FLOW}/Executions/{created['sid']}"
        before = studio.http.get(path).json()

        studio.sandbox.end_all_runs()
        answer = studio.http.get(path)

        assert (before["status"], before["date_updated"]) == ("active", created["date_created"])
        assert answer.json()["status"] == "ended"
        ended = datetime.strptime(answer.json()["date_updated"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
        assert abs((twilio_date(answer) - ended).total_seconds()) < 2

    def test_ended_by_lifetime_at_date_created_plus_lifetime(self, open_studio: OpenStudio) -> None:
        """A run past its lifetime ended at date_created + run_lifetime."""
        studio = open_studio(run_lifetime=0.0)
        created = studio.engage("+15551670001").json()

        fetched = studio.http.get(f"/v1/Flows/{FLOW}/Engagements/{created['sid']}").json()

        assert (fetched["status"], fetched["date_updated"]) == ("ended", created["date_created"])

    def test_widget_outputs_once_ended(self, open_studio: OpenStudio) -> None:
        """send_intro and ask hold the rendered messages; ask's inbound holds the contact's reply."""
        studio = open_studio(run_lifetime=0.0, replies=("YES",), rate_limit=None)
        params = {"first_name": "Ada", "order": {"id": "A-17", "total": 3}, "visits": 0}

        def widgets_of(to: str) -> dict[str, Any]:
            sid = studio.execute(to, Parameters=json.dumps(params)).json()["sid"]
            return studio.http.get(f"/v2/Flows/{FLOW}/Executions/{sid}/Context").json()["context"]["widgets"]

        # Some contacts never get the messages; take the first who does.
        to, widgets = next(
            (to, widgets)
            for to in (f"+1555168{n:04d}" for n in range(50))
            if "inbound" in (widgets := widgets_of(to))["ask"]
        )

        intro, ask = widgets["send_intro"]["outbound"], widgets["ask"]["outbound"]
        assert intro["Body"] == "Hi Ada, your order A-17 ships soon from our store."
        assert ask["Body"] == "Reply YES to confirm (visit 0)"
        for message in (intro, ask):
            assert re.fullmatch(r"SM[0-9a-f]{32}", message["Sid"])
            assert (message["Status"], message["To"], message["From"]) == ("sent", to, SENDER)
        inbound = widgets["ask"]["inbound"]
        assert (inbound["Body"], inbound["From"], inbound["To"]) == ("YES", to, SENDER)

    def test_reply_is_chosen_per_contact(self, open_studio: OpenStudio) -> None:
        """The same contact gives the same reply in every run; across contacts every reply occurs."""
        studio = open_studio(run_lifetime=0.0, active_rule=False, rate_limit=None)

        def reply(to: str) -> str | None:
            sid = studio.execute(to).json()["sid"]
            ask = studio.http.get(f"/v2/Flows/{FLOW}/Executions/{sid}/Context").json()["context"]["widgets"]["ask"]
            return ask["inbound"]["Body"] if "inbound" in ask else None

        contacts = [f"+1555169{n:04d}" for n in range(60)]
        first = [reply(to) for to in contacts]

        assert [reply(to) for to in contacts[:10]] == first[:10]
        assert {body for body in first if body is not None} == {"YES", "NO", "STOP", "4", "5"}

    def test_messages_api_shows_delivery(self, open_studio: OpenStudio) -> None:
        """Messages are delivered, or undelivered with 30003 for some contacts, who then never reply."""
        studio = open_studio(run_lifetime=0.0, rate_limit=None)
        contexts = {}
        for n in range(40):
            sid = studio.execute(f"+1555170{n:04d}", Parameters='{"first_name": "Bo"}').json()["sid"]
            contexts[n] = studio.http.get(f"/v2/Flows/{FLOW}/Executions/{sid}/Context").json()["context"]

        def message(sid: str) -> dict[str, Any]:
            answer = studio.http.get(f"/2010-04-01/Accounts/{SANDBOX_USERNAME}/Messages/{sid}.json")
            assert answer.status_code == 200
            return answer.json()

        kinds = set()
        for context in contexts.values():
            intro = message(context["widgets"]["send_intro"]["outbound"]["Sid"])
            assert intro["body"] == context["widgets"]["send_intro"]["outbound"]["Body"]
            assert intro["direction"] == "outbound-api"
            kinds.add((intro["status"], intro["error_code"], "inbound" in context["widgets"]["ask"]))
            if "inbound" in context["widgets"]["ask"]:
                reply = message(context["widgets"]["ask"]["inbound"]["MessageSid"])
                assert (reply["direction"], reply["status"]) == ("inbound", "received")
        assert kinds == {("delivered", None, True), ("undelivered", 30003, False)}
        assert studio.sandbox.stats().message_requests > 40

    def test_unknown_or_unsent_messages_are_404(self, studio: Studio) -> None:
        """An unknown SID, another account's path, or a message of a run still active is 404/20404."""
        other = "AC" + "1" * 32

        assert error_of(studio.http.get(f"/2010-04-01/Accounts/{SANDBOX_USERNAME}/Messages/SM{'0' * 32}.json")) == (
            404,
            20404,
        )
        studio.sandbox.reconfigure(run_lifetime=0.0)
        sid = studio.execute("+15551710001").json()["sid"]
        intro = studio.http.get(f"/v2/Flows/{FLOW}/Executions/{sid}/Context").json()["context"]["widgets"]
        intro_sid = intro["send_intro"]["outbound"]["Sid"]
        assert error_of(studio.http.get(f"/2010-04-01/Accounts/{other}/Messages/{intro_sid}.json")) == (404, 20404)
        studio.sandbox.reconfigure(run_lifetime=3600.0)
        assert error_of(studio.http.get(f"/2010-04-01/Accounts/{SANDBOX_USERNAME}/Messages/{intro_sid}.json")) == (
            404,
            20404,
        )


class TestStateFile:
    """With state_path, a later sandbox process serves the runs an earlier one created."""

    def test_runs_survive_into_another_sandbox(self, open_studio: OpenStudio, tmp_path: Path) -> None:
        """The next sandbox lists the same runs with the same dates, and the active rule still holds."""
        path = tmp_path / "studio.jsonl"
        first = open_studio(state_path=str(path), other_sender_rate=1.0)
        created = first.execute("+15551720001", Parameters='{"marker": "m-1"}').json()
        first.sandbox.stop()

        second = open_studio(state_path=str(path))

        assert second.sandbox.ledger() == first.sandbox.ledger()
        fetched = second.http.get(f"/v2/Flows/{FLOW}/Executions/{created['sid']}").json()
        assert fetched == {**created, "url": fetched["url"], "links": fetched["links"]}
        assert fetched["url"].startswith(second.sandbox.url)
        again = second.execute("+15551720001")
        assert again.json()["details"] == {"conflicting_execution_sid": created["sid"]}

    def test_loaded_runs_end_by_their_date_created(self, open_studio: OpenStudio, tmp_path: Path) -> None:
        """A loaded run's status follows run_lifetime from its date_created, and an ending is kept."""
        path = tmp_path / "studio.jsonl"
        first = open_studio(state_path=str(path))
        kept = first.execute("+15551730001").json()
        ended = first.execute("+15551730002").json()
        first.sandbox.end_all_runs()
        first.execute("+15551730003")
        first.sandbox.stop()

        lasting = open_studio(state_path=str(path))
        short = open_studio(state_path=str(path), run_lifetime=0.0)

        def statuses(studio: Studio) -> dict[str, str]:
            runs = studio.http.get(f"/v2/Flows/{FLOW}/Executions").json()["executions"]
            return {run["contact_channel_address"]: run["status"] for run in runs}

        assert statuses(lasting) == {"+15551730001": "ended", "+15551730002": "ended", "+15551730003": "active"}
        assert set(statuses(short).values()) == {"ended"}
        assert (kept["sid"], ended["sid"]) == tuple(e.sid for e in lasting.sandbox.ledger()[:2])

    def test_a_torn_last_line_is_dropped(self, open_studio: OpenStudio, tmp_path: Path) -> None:
        """A line cut short by a crash mid-write is dropped; the runs before it and after it load."""
        path = tmp_path / "studio.jsonl"
        first = open_studio(state_path=str(path))
        first.execute("+15551740001")
        first.sandbox.stop()
        with path.open("a") as handle:
            handle.write('{"type": "run", "sid": "FN')

        second = open_studio(state_path=str(path))
        second.execute("+15551740002")
        second.sandbox.stop()

        assert [entry.to for entry in open_studio(state_path=str(path)).sandbox.ledger()] == [
            "+15551740001",
            "+15551740002",
        ]

    def test_a_foreign_file_is_refused_naming_the_line(self, tmp_path: Path) -> None:
        """A file that is not the sandbox's is refused with its path and line number."""
        path = tmp_path / "notes.txt"
        path.write_text('{"type": "run", "sid": "FN1"}\nmilk\n')

        with pytest.raises(ValueError, match=r"notes\.txt:1: not a sandbox state line"):
            Sandbox(SandboxConfig(state_path=str(path)))


class TestCommand:
    """`batch-engage sandbox` passes its flags through to the simulator."""

    @pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
    def test_flags_reach_the_sandbox(self, tmp_path: Path) -> None:
        """Clock offset, flows, unwired trigger, list quirks, replies and state file all take effect."""
        over = "FW" + "a" * 32
        state_path = tmp_path / "state.jsonl"
        flags = [
            "--clock-offset=-86400",
            "--flow",
            f"{FLOW}=published",
            "--flow",
            f"{over}=draft_over_published",
            "--unwired-trigger",
            "--list-drops-channel-prefix",
            "--next-page-host",
            "other.example",
            "--replies",
            "OK",
            "--run-lifetime",
            "0",
            "--read-rate-limit-rate",
            "0",
            "--other-sender-rate",
            "1",
            "--seed",
            "5",
            "--retry-after",
            "1",
            "--state-path",
            str(state_path),
            "--latency",
            "0",
        ]
        with launch.start(["sandbox", *flags], stdout=subprocess.PIPE, text=True) as server:
            try:
                assert server.stdout is not None
                url = server.stdout.readline().split()[-1]
                with httpx.Client(base_url=url, auth=AUTH, verify=TLS) as http:
                    created = http.post(
                        f"/v2/Flows/{FLOW}/Executions", data={"To": "whatsapp:+15551750001", "From": SENDER}
                    )
                    listed = http.get(f"/v2/Flows/{FLOW}/Executions").json()
                    flow = http.get(f"/v2/Flows/{over}").json()
                    missing = http.get(f"/v2/Flows/{'FW' + 'b' * 32}")
            finally:
                server.send_signal(signal.SIGINT)
                server.wait(timeout=5)

        assert abs((twilio_date(created) - datetime.now(UTC)).total_seconds() + 86400) < 10
        assert [run["contact_channel_address"] for run in listed["executions"]] == ["+15551750001"] * 2
        assert "widgets" not in listed["executions"][0]["context"]
        assert urlsplit(listed["meta"]["url"]).netloc == "other.example"
        assert (flow["status"], flow["revision"]) == ("draft", 3)
        assert missing.status_code == 404
        assert len(state_path.read_text().splitlines()) == 2

    def test_bad_flag_values_are_usage_errors(self, capsys: pytest.CaptureFixture[str]) -> None:
        """An impossible share or a --flow without a status exits 2 naming what is wrong."""
        from batch_engage.cli.main import main

        assert main(["sandbox", "--other-sender-rate", "1.5"]) == 2
        assert "other_sender_rate must be between 0 and 1" in capsys.readouterr().err
        assert main(["sandbox", "--flow", FLOW]) == 2
        assert "needs =STATUS" in capsys.readouterr().err
