"""The sandbox's senders: numbers and Messaging Services in Twilio's shapes, with the reply routing they are given."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import httpx
import pytest

from batch_engage.cli.parser import build_parser
from batch_engage.cli.sandbox_flags import sandbox_config
from batch_engage.errors import UsageError
from batch_engage.sandbox import OTHER_FLOW_SID, SANDBOX_PASSWORD, SANDBOX_USERNAME, Sandbox, ServiceConfig

FLOW = "FW" + "a" * 32
NUMBER = "+15005550006"
SERVICE = "MG" + "e" * 32
NUMBERS = f"/2010-04-01/Accounts/{SANDBOX_USERNAME}/IncomingPhoneNumbers.json"


@pytest.fixture
def client_for() -> Iterator[Callable[[Sandbox], httpx.Client]]:
    """An authenticated HTTP client for a sandbox, closed after the test."""
    opened: list[httpx.Client] = []

    def make(sb: Sandbox) -> httpx.Client:
        client = httpx.Client(base_url=sb.url, auth=(SANDBOX_USERNAME, SANDBOX_PASSWORD))
        opened.append(client)
        return client

    yield make
    for client in opened:
        client.close()


def test_a_number_routes_replies_to_the_flow_its_runs_use_by_default(
    sandbox: Sandbox, client_for: Callable[[Sandbox], httpx.Client]
) -> None:
    """IncomingPhoneNumbers?PhoneNumber= finds it (partially, as Twilio's filter does); sms_url is the Flow's webhook."""
    http = client_for(sandbox)
    http.get(f"/v2/Flows/{FLOW}")
    page = http.get(NUMBERS, params={"PhoneNumber": NUMBER}).json()
    (number,) = page["incoming_phone_numbers"]
    assert number["phone_number"] == NUMBER and number["sid"].startswith("PN")
    assert number["sms_url"] == f"https://webhooks.twilio.com/v1/Accounts/{SANDBOX_USERNAME}/Flows/{FLOW}"
    assert page["next_page_uri"] is None


def test_numbers_can_route_elsewhere_or_be_absent(
    sandbox_factory: Callable[..., Sandbox], client_for: Callable[[Sandbox], httpx.Client]
) -> None:
    """other_flow names another Flow; none leaves sms_url empty; absent is not the account's number."""
    sb = sandbox_factory(numbers={NUMBER: "other_flow", "+15005550007": "none", "+15005550008": "absent"})
    http = client_for(sb)
    by = {n: http.get(NUMBERS, params={"PhoneNumber": n}).json()["incoming_phone_numbers"] for n in sb_numbers()}
    assert by[NUMBER][0]["sms_url"].endswith(OTHER_FLOW_SID)
    assert by["+15005550007"][0]["sms_url"] == ""
    assert by["+15005550008"] == []


def sb_numbers() -> list[str]:
    """The numbers the routing test asks about."""
    return [NUMBER, "+15005550007", "+15005550008"]


def test_a_messaging_service_shows_its_pool_inbound_rules_and_validity(
    sandbox_factory: Callable[..., Sandbox], client_for: Callable[[Sandbox], httpx.Client]
) -> None:
    """Services list, fetch and PhoneNumbers in Messaging v1's shapes; inbound "none" is a null URL."""
    service = ServiceConfig(numbers=(NUMBER,), inbound="none", validity_period=600)
    http = client_for(sandbox_factory(services={SERVICE: service}))
    listed = http.get("/v1/Services").json()
    assert [s["sid"] for s in listed["services"]] == [SERVICE] and listed["meta"]["next_page_url"] is None
    fetched = http.get(f"/v1/Services/{SERVICE}").json()
    assert fetched["inbound_request_url"] is None and fetched["use_inbound_webhook_on_number"] is False
    assert fetched["validity_period"] == 600
    pool = http.get(f"/v1/Services/{SERVICE}/PhoneNumbers").json()
    assert [n["phone_number"] for n in pool["phone_numbers"]] == [NUMBER]
    assert http.get(f"/v1/Services/MG{'0' * 32}").status_code == 404


def test_every_sender_setting_has_a_flag() -> None:
    """batch-engage sandbox's flags build the same SandboxConfig fields."""
    args = build_parser().parse_args(
        [
            "sandbox",
            "--reply-routing", "other_flow",
            "--number", f"{NUMBER}=none",
            "--service", f"{SERVICE}={NUMBER},+15005550007",
            "--service-inbound", f"{SERVICE}=number",
            "--service-validity", f"{SERVICE}=120",
            "--sender-pace", "2",
            "--validity-period", "60",
            "--queue-limit", "600",
            "--opted-out", "+14155550100,+14155550101",
        ]
    )  # fmt: skip
    config = sandbox_config(args)
    assert config.reply_routing == "other_flow" and config.numbers == {NUMBER: "none"}
    assert config.services[SERVICE] == ServiceConfig((NUMBER, "+15005550007"), "number", 120)
    assert (config.sender_pace, config.validity_period, config.queue_limit) == (2.0, 60, 600.0)
    assert config.opted_out == {"+14155550100", "+14155550101"}


def test_a_bad_routing_is_refused_naming_it() -> None:
    """A routing Twilio has no equivalent of is refused (a usage error on the command line)."""
    with pytest.raises(UsageError, match="reply_routing"):
        sandbox_config(build_parser().parse_args(["sandbox", "--reply-routing", "somewhere"]))


def test_the_hostile_edges_are_flags_of_the_sandbox_command() -> None:
    """`batch-engage sandbox --late-rate 0.1 --late-seconds 2 --date-header-offset 300` rehearses a 504 whose run
    Studio still makes, and a Date header on another clock, as the library's config does."""
    args = ["sandbox", "--late-rate", "0.1", "--late-seconds", "2", "--date-header-offset", "300"]
    config = sandbox_config(build_parser().parse_args(args))
    assert (config.late_rate, config.late_seconds, config.date_header_offset) == (0.1, 2.0, 300.0)
