"""Send windows on a controllable clock: rows held and released at their recipients' local hours."""

from __future__ import annotations

import urllib.parse
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import httpx
import polars as pl
import pytest

from batch_engage import Credentials, RunOptions, run, status, validate
from batch_engage.errors import ConfigError
from batch_engage.plan.windows import parse_window, zones_for_rows
from batch_engage.testing import FakeClock

NY, LA, HNL, SD = "+12125550100", "+12135550100", "+18085550100", "+16055550100"


class Studio:
    """A MockTransport handler that notes the (fake) time each run was created."""

    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.created: list[tuple[str, datetime]] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if request.method == "GET":
            return httpx.Response(200, json={"sid": "FW", "status": "published"})
        to = dict(urllib.parse.parse_qsl(request.content.decode()))["To"]
        self.created.append((to, self.clock()))
        return httpx.Response(200, json={"sid": f"FN{len(self.created):032x}", "date_created": None})


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def windowed(make_spec: Callable[..., Any], **send: Any) -> Any:
    spec = make_spec("http://127.0.0.1:9")
    window = {"window": "09:00-20:00"} | send
    return spec.replace(send=replace(spec.send, **window))


def frame(*numbers: str) -> pl.DataFrame:
    return pl.DataFrame({"phone": list(numbers), "name": ["x"] * len(numbers), "visits": [1] * len(numbers)})


CREDS = Credentials("AC" + "0" * 32, "token")


class TestRule:
    def test_multi_zone_number_is_reached_only_when_open_in_every_zone(self) -> None:
        """A South Dakota number (Mountain and Central) opens at 09:00 Mountain, the stricter of the two."""
        zones, reasons = zones_for_rows(pl.Series([SD]), None, None)
        assert zones[0] == "America/Denver,America/North_Dakota/Center" and reasons[0] is None
        window = parse_window("09:00-20:00", None)
        both = tuple(zones[0].split(","))
        # 15:30Z is 09:30 Central but 08:30 Mountain: not yet.
        assert not window.is_open(both, utc("2026-11-24T15:30:00"))
        assert window.next_open(both, utc("2026-11-24T15:30:00")) == utc("2026-11-24T16:00:00")
        # 02:30Z is 20:30 Central, 19:30 Mountain: already closed for Central.
        assert not window.is_open(both, utc("2026-11-25T02:30:00"))

    def test_dst_day_shifts_the_opening_by_an_hour(self) -> None:
        """New York's window opens at 14:00Z the day before clocks spring forward and 13:00Z on that day."""
        window = parse_window("09:00-20:00", None)
        ny = ("America/New_York",)
        assert window.next_open(ny, utc("2026-03-07T05:00:00")) == utc("2026-03-07T14:00:00")
        assert window.next_open(ny, utc("2026-03-08T05:00:00")) == utc("2026-03-08T13:00:00")
        assert window.next_open(ny, utc("2026-11-01T05:00:00")) == utc("2026-11-01T14:00:00")

    def test_days_restrict_the_window(self) -> None:
        """days = ["mon".."fri"]: on a Saturday morning the next opening is Monday 09:00 local."""
        window = parse_window("09:00-20:00", ["mon", "tue", "wed", "thu", "fri"])
        saturday = utc("2026-11-28T15:00:00")
        assert window.next_open(("America/New_York",), saturday) == utc("2026-11-30T14:00:00")

    def test_window_config_errors_name_the_key(self) -> None:
        """A malformed window or day is a configuration error naming the key."""
        with pytest.raises(ConfigError, match=r"send\.window"):
            parse_window("9-5", None)
        with pytest.raises(ConfigError, match=r"send\.days"):
            parse_window("09:00-17:00", ["someday"])


class TestRun:
    def test_rows_are_held_until_their_local_window_and_the_run_exits_75(self, make_spec: Callable[..., Any]) -> None:
        """At 14:30Z New York (09:30) is sent; Los Angeles and Honolulu wait with their opening time; exit 75."""
        clock = FakeClock(utc("2026-11-24T14:30:00"))
        studio = Studio(clock)
        spec = windowed(make_spec)
        options = RunOptions(clock=clock)
        first = run(
            spec, frame=frame(NY, LA, HNL), credentials=CREDS, options=options, transport=httpx.MockTransport(studio)
        )
        assert first.exit_code == 75
        assert [to for to, _ in studio.created] == [NY]
        waiting = first.results.filter(pl.col("status") == "pending")
        assert waiting["error_message"].to_list() == [
            "outside the send window 09:00-20:00 local; opens at 2026-11-24T17:00:00Z",
            "outside the send window 09:00-20:00 local; opens at 2026-11-24T19:00:00Z",
        ]
        waiting = status(spec, now=clock())
        assert (waiting.waiting_for_window, waiting.next_opening) == (2, utc("2026-11-24T17:00:00"))
        check = validate(spec, frame=frame(NY, LA, HNL), now=clock())
        assert check.openings == {"now": 1, "2026-11-24 17:00Z": 1, "2026-11-24 19:00Z": 1}
        clock.set(utc("2026-11-24T17:30:00"))
        second = run(
            spec, frame=frame(NY, LA, HNL), credentials=CREDS, options=options, transport=httpx.MockTransport(studio)
        )
        assert second.exit_code == 75
        assert [to for to, _ in studio.created] == [NY, LA]
        clock.set(utc("2026-11-24T19:30:00"))
        third = run(
            spec, frame=frame(NY, LA, HNL), credentials=CREDS, options=options, transport=httpx.MockTransport(studio)
        )
        assert third.exit_code == 0
        assert [to for to, _ in studio.created] == [NY, LA, HNL]

    def test_wait_sends_each_row_as_its_window_opens(self, make_spec: Callable[..., Any]) -> None:
        """With --wait, one run releases every row at its own local 09:00, never earlier, and exits 0."""
        clock = FakeClock(utc("2026-11-24T12:00:00"))
        studio = Studio(clock)
        options = RunOptions(wait=True, clock=clock)
        result = run(
            windowed(make_spec),
            frame=frame(HNL, LA, NY),
            credentials=CREDS,
            options=options,
            transport=httpx.MockTransport(studio),
        )
        assert result.exit_code == 0
        when = dict(studio.created)
        assert [to for to, _ in studio.created] == [NY, LA, HNL]
        assert utc("2026-11-24T14:00:00") <= when[NY] < utc("2026-11-24T14:01:00")
        assert utc("2026-11-24T17:00:00") <= when[LA] < utc("2026-11-24T17:01:00")
        assert utc("2026-11-24T19:00:00") <= when[HNL] < utc("2026-11-24T19:01:00")

    def test_timezone_column_and_default_timezone(self, make_spec: Callable[..., Any]) -> None:
        """An IANA zone in the data wins over the number's; an unknown zone name makes the row invalid."""
        clock = FakeClock(utc("2026-11-24T14:30:00"))
        studio = Studio(clock)
        spec = windowed(make_spec)
        spec = spec.replace(mapping=replace(spec.mapping, timezone_column="tz"))
        data = frame(NY, LA, HNL).with_columns(tz=pl.Series(["Pacific/Honolulu", "America/New_York", "Mars/Olympus"]))
        result = run(
            spec,
            frame=data,
            credentials=CREDS,
            options=RunOptions(clock=clock),
            transport=httpx.MockTransport(studio),
        )
        assert [to for to, _ in studio.created] == [LA]
        assert result.results["status"].to_list() == ["pending", "sent", "invalid"]
        assert "unknown time zone 'Mars/Olympus'" in result.results["error_message"][2]

    def test_window_is_checked_again_just_before_each_request(self, make_spec: Callable[..., Any]) -> None:
        """Rows that waited in the queue while the window closed are not sent late: they stay pending."""
        clock = FakeClock(utc("2026-11-25T00:50:00"))  # 19:50 in New York: ten minutes left

        class Slow(Studio):
            def __call__(self, request: httpx.Request) -> httpx.Response:
                answer = super().__call__(request)
                if request.method == "POST":
                    clock.advance(4 * 60)  # each answer takes four (fake) minutes
                return answer

        studio = Slow(clock)
        numbers = [f"+1212555{n:04d}" for n in range(100, 106)]
        spec = windowed(make_spec, concurrency=1)
        result = run(
            spec,
            frame=frame(*numbers),
            credentials=CREDS,
            options=RunOptions(clock=clock),
            transport=httpx.MockTransport(studio),
        )
        assert all(when < utc("2026-11-25T01:00:00") for _, when in studio.created)
        assert len(studio.created) == 3
        assert result.results["status"].to_list() == ["sent"] * 3 + ["pending"] * 3
        assert result.exit_code == 75
