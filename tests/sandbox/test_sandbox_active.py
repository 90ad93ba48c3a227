"""The sandbox's active runs: Send & Wait timeouts, other senders' conversations, Status=ended, 30-day retention."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from batch_engage.sandbox import SANDBOX_PASSWORD, SANDBOX_USERNAME, Sandbox, SandboxConfig
from batch_engage.testing import FakeClock

FLOW = "FW" + "0123456789abcdef" * 2
RUNS = f"/v2/Flows/{FLOW}/Executions"
SENDER = "+15005550006"
DAY = 86400.0


@pytest.fixture
def studio() -> Iterator[Any]:
    """Open a sandbox on a fake clock with the given settings; yields (open, clock)."""
    opened: list[tuple[Sandbox, httpx.Client]] = []
    clock = FakeClock()

    def open_(**settings: Any) -> httpx.Client:
        sandbox = Sandbox(SandboxConfig(latency=0.0, jitter=0.0, wall=clock, **settings))
        sandbox.start()
        http = httpx.Client(base_url=sandbox.url, auth=(SANDBOX_USERNAME, SANDBOX_PASSWORD), timeout=5.0)
        opened.append((sandbox, http))
        return http

    yield open_, clock, opened
    for sandbox, http in opened:
        http.close()
        sandbox.stop()


def create(http: httpx.Client, to: str) -> httpx.Response:
    return http.post(RUNS, data={"To": to, "From": SENDER})


def test_a_send_and_wait_run_blocks_the_contact_until_its_timeout_on_twilios_clock(studio: Any) -> None:
    """wait_timeout = 20: a second create 409s (naming the run) until 20 s pass on the sandbox's clock."""
    open_, clock, _ = studio
    http = open_(wait_timeout=20.0)
    first = create(http, "+14155550100").json()["sid"]
    blocked = create(http, "+14155550100")
    assert blocked.status_code == 409 and blocked.json()["details"]["conflicting_execution_sid"] == first
    assert http.get(f"{RUNS}/{first}").json()["status"] == "active"
    clock.advance(20)
    assert http.get(f"{RUNS}/{first}").json()["status"] == "ended"
    assert create(http, "+14155550100").status_code == 201


def test_status_ended_ends_an_active_run_and_frees_the_contact(studio: Any) -> None:
    """POST .../Executions/{sid} Status=ended: 200 with status ended; the contact can be triggered again."""
    open_, _, _ = studio
    http = open_(wait_timeout=DAY)
    sid = create(http, "+14155550100").json()["sid"]
    answer = http.post(f"{RUNS}/{sid}", data={"Status": "ended"})
    assert answer.status_code == 200 and answer.json()["status"] == "ended"
    assert create(http, "+14155550100").status_code == 201
    assert http.post(f"{RUNS}/{sid}", data={"Status": "paused"}).status_code == 400
    assert http.post(f"{RUNS}/FN{'0' * 32}", data={"Status": "ended"}).status_code == 404


def test_an_engagement_has_no_update(studio: Any) -> None:
    """Twilio documents no update of a v1 Engagement: the sandbox has none either (not even via /Executions)."""
    open_, _, _ = studio
    http = open_(wait_timeout=DAY)
    sid = http.post(f"/v1/Flows/{FLOW}/Engagements", data={"To": "+14155550100", "From": SENDER}).json()["sid"]
    assert http.post(f"/v1/Flows/{FLOW}/Engagements/{sid}", data={"Status": "ended"}).status_code == 405
    assert http.post(f"{RUNS}/{sid}", data={"Status": "ended"}).status_code == 404


def test_chosen_contacts_sit_in_another_senders_conversation(studio: Any) -> None:
    """other_sender_active: the contact's first create meets an active inbound run (SM...), no Parameters."""
    open_, _, _ = studio
    http = open_(wait_timeout=DAY, other_sender_active=("+14155550100",))
    blocked = create(http, "+14155550100")
    assert blocked.status_code == 409
    sid = blocked.json()["details"]["conflicting_execution_sid"]
    run = http.get(f"{RUNS}/{sid}").json()
    assert run["initiated_by"].startswith("SM") and run["status"] == "active"
    assert http.get(f"{RUNS}/{sid}/Context").json()["context"]["flow"]["data"] == {}
    assert create(http, "+14155550101").status_code == 201


@pytest.mark.parametrize("how", ["wall", "offset"])
def test_runs_older_than_30_days_are_gone(studio: Any, how: str) -> None:
    """31 days on (the shared clock, or the clock offset): the run answers 404 and leaves the lists."""
    open_, clock, _ = studio
    http = open_(wait_timeout=40 * DAY)
    sid = create(http, "+14155550100").json()["sid"]
    assert len(http.get(RUNS).json()["executions"]) == 1
    if how == "wall":
        clock.advance(31 * DAY)
    else:
        http.close()
        http = open_(wait_timeout=40 * DAY, clock_offset=31 * DAY)
        sid = create(http, "+14155550100").json()["sid"]
        clock.advance(31 * DAY)
    assert http.get(f"{RUNS}/{sid}").status_code == 404
    assert http.get(f"{RUNS}/{sid}/Context").status_code == 404
    assert http.get(RUNS).json()["executions"] == []
    assert create(http, "+14155550100").status_code == 201
