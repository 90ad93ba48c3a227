"""The HTML campaign report: what a reader sees, that it is one self-contained file, and that a real browser agrees."""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import os
import re
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from batch_engage.reporting.html import (
    MAX_BUCKETS,
    STATUS_ORDER,
    FailureGroup,
    FieldValues,
    ReportData,
    RunSpan,
    SecondStats,
    render_report,
)

from conftest import FLOW_SID, REPO, Rig

START = datetime(2026, 3, 2, 14, 0, 0, tzinfo=UTC)
COUNTS = {
    "sent": 180,
    "already_active": 4,
    "failed": 5,
    "invalid": 3,
    "duplicate": 1,
    "suppressed": 2,
    "capped": 0,
    "uncertain": 1,
    "pending": 4,
}


def seconds_of(count: int, *, start: int | None = None, ok: int = 20, limited_at: int = -1) -> tuple[SecondStats, ...]:
    """``count`` consecutive seconds of ``ok`` 2xx each; the second at ``limited_at`` also had three 429s."""
    first = int(START.timestamp()) if start is None else start
    return tuple(
        SecondStats(
            second=first + i,
            requests=ok + (3 if i == limited_at else 0),
            ok=ok,
            rate_limited=3 if i == limited_at else 0,
            retries=3 if i == limited_at + 1 else 0,
            lookups=0,
            pacer_rate=18.0 if i >= limited_at >= 0 else 20.0,
        )
        for i in range(count)
    )


def report(**changes: Any) -> ReportData:
    """A small finished campaign (ten seconds of sends at 20/s, one 429 burst), with ``changes`` applied."""
    data = ReportData(
        job_name="spring",
        flow_sid=FLOW_SID,
        api="executions",
        counts=dict(COUNTS),
        configured_rate=20.0,
        runs=(RunSpan(started=START, stopped=START + timedelta(seconds=10), exit_code=1),),
        seconds=seconds_of(10, limited_at=4),
        failures=(
            FailureGroup(code=21211, message="Invalid 'To' Phone Number", count=4, examples=("+1415***0100",)),
            FailureGroup(code=None, message="HTTP 400 without a Twilio body", count=1, examples=()),
        ),
        invalid_reasons=(("To is empty", 2), ("To: not a possible number", 1)),
        window_openings=((START + timedelta(hours=3), 4),),
        run_status={"ended": 170, "active": 10},
        fields=(FieldValues(name="reply", top=(("YES", 90), ("NO", 40))),),
        checkpoint_path="out/spring.checkpoint",
        as_of=START + timedelta(seconds=10),
        version="0.1.0",
    )
    return dataclasses.replace(data, **changes)


class _Elements(HTMLParser):
    """Every element's attributes by id, and the text inside each element with an id (one level deep is enough)."""

    def __init__(self) -> None:
        super().__init__()
        self.attrs: dict[str, dict[str, str | None]] = {}
        self.text: dict[str, str] = {}
        self._open: list[str | None] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        ident = found.get("id")
        if ident:
            self.attrs[ident] = found
            self.text[ident] = ""
        if tag not in {"meta", "br", "line", "rect", "path", "polyline"}:
            self._open.append(ident)

    def handle_endtag(self, tag: str) -> None:
        if tag not in {"meta", "br", "line", "rect", "path", "polyline"} and self._open:
            self._open.pop()

    def handle_data(self, data: str) -> None:
        for ident in self._open:
            if ident:
                self.text[ident] += data


def parse(page: str) -> _Elements:
    """The page's elements with ids."""
    parser = _Elements()
    parser.feed(page)
    return parser


class TestDeterminism:
    """The same figures always give the same file, so reports can be diffed and cached."""

    def test_equal_input_renders_byte_identical_pages(self) -> None:
        """Two renders of equal (not identical) ReportData values are the same bytes."""
        assert render_report(report()).encode() == render_report(report()).encode()

    def test_the_order_of_the_counts_mapping_does_not_change_the_page(self) -> None:
        """Statuses are laid out in one fixed order, whatever order the caller's mapping has."""
        reversed_counts = dict(reversed(list(COUNTS.items())))
        assert render_report(report(counts=reversed_counts)) == render_report(report())

    def test_the_page_does_not_depend_on_the_wall_clock(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """Rendering later gives the same page: the only time shown is the checkpoint's as_of."""
        first = render_report(report())
        monkeypatch.setattr(time, "time", lambda: 4_000_000_000.0)
        assert render_report(report()) == first
        assert "2026-03-02 14:00:10 UTC" in first


class TestSelfContained:
    """Opening the file makes no request: no scripts, stylesheets, fonts or images from anywhere."""

    def test_no_external_resource_is_referenced(self) -> None:
        """No script, stylesheet link, remote image or CSS url() appears in the page."""
        page = render_report(report()).lower()
        for needle in ("<script", "<link", '<img src="http', "url(http", "@import", "<iframe"):
            assert needle not in page

    def test_the_only_urls_are_twilio_error_links(self) -> None:
        """Every http(s) URL in the page is a more_info link to Twilio's error docs."""
        page = render_report(report())
        urls = set(re.findall(r"https?://[^\s\"'<>]+", page))
        assert urls == {"https://www.twilio.com/docs/errors/21211"}

    def test_a_content_security_policy_forbids_loading_anything(self) -> None:
        """The page tells the browser to load nothing beyond itself, in case a URL ever slips in."""
        page = render_report(report())
        assert "Content-Security-Policy" in page
        assert "default-src 'none'" in page

    def test_every_chart_has_a_title_for_screen_readers(self) -> None:
        """Each inline SVG starts with a <title>."""
        page = render_report(report())
        svgs = re.findall(r"<svg[^>]*>(.{0,7})", page)
        assert len(svgs) >= 6
        assert all(start.startswith("<title") for start in svgs)


class TestEscaping:
    """Text from the job file, the contacts or Twilio cannot turn into markup."""

    def test_job_name_message_and_field_values_are_escaped(self) -> None:
        """Angle brackets, ampersands and quotes in any text arrive as text, not tags or attributes."""
        hostile = '<script>alert("x")</script>&'
        page = render_report(
            report(
                job_name=hostile,
                failures=(FailureGroup(code=20001, message=hostile, count=1, examples=()),),
                invalid_reasons=((hostile, 1),),
                fields=(FieldValues(name=hostile, top=((hostile, 3),)),),
                checkpoint_path=hostile,
            )
        )
        assert "<script" not in page
        assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;&amp;" in page

    def test_a_replys_control_characters_never_reach_the_page_raw(self) -> None:
        """An answer holding ESC or BEL (anyone can text the number) is shown with U+FFFD, never as the raw byte."""
        answer = "yes\x1b[2J\x07"
        page = render_report(report(fields=(FieldValues(name="answer", top=((answer, 3),)),)))
        assert "\x1b" not in page and "\x07" not in page
        assert "yes\ufffd[2J\ufffd" in page


any_text = st.text(max_size=40)
any_seconds = st.lists(
    st.builds(
        SecondStats,
        second=st.integers(1_700_000_000, 1_700_200_000),
        requests=st.integers(0, 500),
        ok=st.integers(0, 500),
        rate_limited=st.integers(0, 500),
        retries=st.integers(0, 500),
        lookups=st.integers(0, 50),
        pacer_rate=st.floats(0, 1000, allow_nan=False),
    ),
    max_size=40,
)
naive_or_aware = st.datetimes(
    min_value=datetime(2020, 1, 1), max_value=datetime(2030, 1, 1), timezones=st.sampled_from([None, UTC])
)


INJECTED = "<i data-injected>"
hostile_text = any_text.map(lambda text: f"{text}{INJECTED}</i>")


class TestAnyInput:
    """Whatever the checkpoint holds, the page renders, the same each time, with text kept as text."""

    @given(
        name=hostile_text,
        message=hostile_text,
        label=hostile_text,
        counts=st.dictionaries(st.sampled_from(STATUS_ORDER), st.integers(0, 10**9)),
        seconds=st.none() | any_seconds.map(tuple),
        opens=st.lists(st.tuples(naive_or_aware, st.integers(0, 1000)), max_size=4).map(tuple),
        started=naive_or_aware,
    )
    @settings(max_examples=150, deadline=None)
    def test_renders_deterministically_without_injected_markup(
        self,
        name: str,
        message: str,
        label: str,
        counts: dict[str, int],
        seconds: tuple[SecondStats, ...] | None,
        opens: tuple[tuple[datetime, int], ...],
        started: datetime,
    ) -> None:
        """Random text, counts, run events and (naive or aware) times render twice to the same bytes, escaped."""
        data = report(
            job_name=name,
            counts=counts,
            seconds=seconds,
            window_openings=opens,
            runs=(RunSpan(started=started, stopped=None, exit_code=None),),
            failures=(FailureGroup(code=20001, message=message, count=1, examples=(label,)),),
            invalid_reasons=((label, 1),),
            fields=(FieldValues(name=label, top=((message, 2),)),),
        )
        page = render_report(data)
        assert page == render_report(data)
        # Random text alone may be "<" or "<s", which the page's own markup holds; the tag is ours.
        assert INJECTED not in page
        assert "&lt;i data-injected&gt;" in page
        elements = parse(page)
        assert all(elements.attrs[f"status-{s}"]["data-count"] == str(counts.get(s, 0)) for s in STATUS_ORDER)


class TestStatusTiles:
    """One tile per status shows its count and share, readable by id and data attributes."""

    def test_each_tile_shows_its_status_count(self) -> None:
        """Every status has a tile whose data-count and visible number equal the count given."""
        elements = parse(render_report(report()))
        for status in STATUS_ORDER:
            tile = elements.attrs[f"status-{status}"]
            assert tile["data-status"] == status
            assert tile["data-count"] == str(COUNTS[status])
            assert elements.text[f"status-{status}"].startswith(f"{COUNTS[status]:,}")

    def test_shares_are_of_all_rows(self) -> None:
        """A tile's share is its count over the sum of all counts, to one decimal."""
        elements = parse(render_report(report()))
        assert elements.text["status-sent"].endswith("90.0%")  # 180 of 200
        assert elements.text["status-capped"].endswith("0.0%")

    def test_a_status_missing_from_counts_shows_zero_and_an_unknown_one_gets_a_tile(self) -> None:
        """Absent statuses read 0; a status this version does not know is still shown, not dropped."""
        counts = {"sent": 10, "paused": 2}
        elements = parse(render_report(report(counts=counts)))
        assert elements.attrs["status-pending"]["data-count"] == "0"
        assert elements.attrs["status-paused"]["data-count"] == "2"

    def test_thousands_are_grouped(self) -> None:
        """Large counts are written with separators, so 1234567 reads at a glance."""
        elements = parse(render_report(report(counts={"sent": 1_234_567})))
        assert elements.text["status-sent"].startswith("1,234,567")


class TestHeader:
    """The header answers: which flow, when, for how long, and how fast against the configured rate."""

    def test_rates_achieved_configured_and_settled(self) -> None:
        """Achieved is the pace held (2xx per second of sending, the partial first and last left out), settled is
        the last pacer rate."""
        seconds = (
            *seconds_of(10, ok=20, limited_at=4),
            *seconds_of(5, start=int(START.timestamp()) + 100, ok=10, limited_at=0),
        )
        elements = parse(render_report(report(seconds=seconds, configured_rate=25.0)))
        assert elements.text["rate-achieved"].startswith("16.92")  # (9*20 + 4*10) / 13 seconds between first and last
        assert elements.text["rate-configured"].startswith("25.00")
        assert elements.text["rate-settled"].startswith("18.00")

    def test_a_killed_run_ends_at_its_last_recorded_second(self) -> None:
        """A run with no recorded stop is timed to the end of its last second of sends, and says so."""
        page = render_report(report(runs=(RunSpan(started=START, stopped=None, exit_code=None),)))
        assert "2026-03-02 14:00:10 UTC (last event; the run recorded no stop)" in page
        assert "10.0 s" in page

    def test_duration_sums_the_runs_not_the_gaps_between_them(self) -> None:
        """Two runs of ten minutes an hour apart last twenty minutes."""
        runs = (
            RunSpan(started=START, stopped=START + timedelta(minutes=10), exit_code=130),
            RunSpan(started=START + timedelta(hours=1), stopped=START + timedelta(hours=1, minutes=10), exit_code=0),
        )
        assert "20 min 00 s over 2 runs" in render_report(report(runs=runs))

    def test_the_api_is_named_with_its_version(self) -> None:
        """engagements reads as v1, executions as v2."""
        assert "Engagements (v1)" in render_report(report(api="engagements"))
        assert "Executions (v2)" in render_report(report(api="executions"))


class TestSendsOverTime:
    """The time chart, its granularity, and what replaces it for older checkpoints."""

    def test_an_older_checkpoint_gets_an_explanation_instead_of_a_chart(self) -> None:
        """With no run events there is no time chart, and the page says the checkpoint predates them."""
        elements = parse(render_report(report(seconds=None)))
        assert "chart-time" not in elements.attrs
        assert "did not yet record run events" in elements.text["no-run-events"]

    def test_a_short_run_is_shown_per_second(self) -> None:
        """A run under ten minutes has one bar per second."""
        elements = parse(render_report(report(seconds=seconds_of(300))))
        assert "per second" in elements.text["chart-time-title"]

    def test_a_long_run_is_shown_per_minute(self) -> None:
        """A run of an hour is aggregated per minute."""
        elements = parse(render_report(report(seconds=seconds_of(3600))))
        assert "per minute" in elements.text["chart-time-title"]
        assert "3,600 requests" not in elements.text["chart-time-desc"]
        assert "in 60 buckets" in elements.text["chart-time-desc"]

    def test_totals_in_the_legend_match_the_seconds(self) -> None:
        """The legend counts every 2xx, 429 and retry in the run events."""
        page = render_report(report(seconds=seconds_of(10, ok=20, limited_at=4)))
        assert "2xx <b>200</b>" in page
        assert "<b>3</b></li>" in page.split("429 rate-limited", 1)[1]
        assert "retries <b>3</b>" in page

    def test_every_bucket_with_a_429_is_marked(self) -> None:
        """One 429 among an hour of 2xx still gets its own marker above its minute's bar."""
        page = render_report(report(seconds=seconds_of(3600, limited_at=1800)))
        marks = re.search(r'class="marks-429" d="([^"]*)"', page)
        assert marks is not None
        assert marks.group(1).count("M") == 1

    def test_a_fourteen_hour_run_renders_per_minute_and_small(self) -> None:
        """50,000 seconds (14 hours) of events render per minute into a page under 2 MB (its time: the benchmark)."""
        page = render_report(report(seconds=seconds_of(50_000, limited_at=20_000)))
        assert len(page.encode()) < 2_000_000
        buckets = re.search(r"in ([\d,]+) buckets", page)
        assert buckets is not None
        assert int(buckets.group(1).replace(",", "")) <= MAX_BUCKETS
        assert "Requests per minute" in page

    def test_a_run_spanning_days_stays_within_the_bar_limit(self) -> None:
        """Runs resumed days later still draw at most MAX_BUCKETS bars."""
        first = int(START.timestamp())
        seconds = (*seconds_of(60), *seconds_of(60, start=first + 10 * 86400))
        page = render_report(report(seconds=seconds))
        buckets = re.search(r"in ([\d,]+) buckets", page)
        assert buckets is not None
        assert int(buckets.group(1).replace(",", "")) <= MAX_BUCKETS


class TestFailures:
    """Why rows failed: Twilio's code and message, its docs link, and masked examples."""

    def test_each_error_links_to_twilio_docs_as_an_anchor(self) -> None:
        """A failure with a code links to https://www.twilio.com/docs/errors/{code}."""
        page = render_report(report())
        assert '<a href="https://www.twilio.com/docs/errors/21211"' in page
        assert "Invalid &#x27;To&#x27; Phone Number" in page

    def test_at_most_three_examples_are_shown(self) -> None:
        """Only the first three examples of a group appear."""
        examples = ("+1415***0001", "+1415***0002", "+1415***0003", "+1415***0004")
        page = render_report(report(failures=(FailureGroup(code=21211, message="m", count=4, examples=examples),)))
        assert all(example in page for example in examples[:3])
        assert examples[3] not in page

    def test_an_unmasked_example_is_masked_before_it_reaches_the_page(self) -> None:
        """A whole number passed by mistake never appears in the page, only its masked form."""
        page = render_report(
            report(failures=(FailureGroup(code=21211, message="m", count=1, examples=("+14155550100",)),))
        )
        assert "+14155550100" not in page
        assert "+1415***0100" in page

    def test_invalid_rows_are_grouped_by_reason(self) -> None:
        """Each invalid reason has a bar labelled with the reason and its count."""
        elements = parse(render_report(report()))
        assert "To is empty: 2" in elements.text["chart-invalid"]
        assert "To: not a possible number: 1" in elements.text["chart-invalid"]

    def test_no_failures_means_no_section(self) -> None:
        """A campaign without failures or invalid rows has no failures section."""
        elements = parse(render_report(report(failures=(), invalid_reasons=())))
        assert "failures" not in elements.attrs


class TestWindowsAndOutcomes:
    """Send windows relative to the checkpoint's time, and collected outcomes, only when present."""

    def test_window_openings_are_relative_to_as_of(self) -> None:
        """A window opening three hours after the last write reads 'in 3 h 00 min'."""
        elements = parse(render_report(report(as_of=START)))
        assert "2026-03-02 17:00 UTC (in 3 h 00 min): 4" in elements.text["chart-windows"]

    def test_no_windows_means_no_section(self) -> None:
        """Without pending windowed rows the section is left out."""
        assert "windows" not in parse(render_report(report(window_openings=()))).attrs

    def test_outcomes_show_run_status_and_each_fields_top_values(self) -> None:
        """Run statuses and field values appear as bars with their counts."""
        elements = parse(render_report(report()))
        assert "ended: 170" in elements.text["chart-run-status"]
        assert "YES: 90" in elements.text["chart-field-0"]

    def test_uncollected_outcomes_mean_no_section(self) -> None:
        """When `collect` was never run, there is no outcomes section."""
        assert "outcomes" not in parse(render_report(report(run_status=None, fields=()))).attrs


class TestFooter:
    """The footer says where the figures came from."""

    def test_checkpoint_as_of_and_version(self) -> None:
        """Checkpoint path, its last write and the tool version are all named."""
        page = render_report(report(version="9.9.9"))
        footer = page[page.index("<footer>") :]
        assert "out/spring.checkpoint" in footer
        assert "2026-03-02 14:00:10 UTC" in footer
        assert "9.9.9" in footer


# --- a real browser -----------------------------------------------------------------------------


def _screenshot_script() -> ModuleType:
    """docs/make_screenshot.py, which owns the Chromium options, so the test and the docs open pages alike."""
    spec = importlib.util.spec_from_file_location("make_screenshot", REPO / "docs" / "make_screenshot.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def shots() -> ModuleType:
    """The screenshot script, or a skip (a failure under CI) when Debian's Chromium is not installed."""
    pytest.importorskip("selenium")
    script = _screenshot_script()
    missing = [str(p) for p in (script.CHROMIUM, script.CHROMEDRIVER) if not p.exists()]
    if missing:
        reason = f"{', '.join(missing)} not installed: apt-get install chromium chromium-driver"
        if os.environ.get("CI"):
            pytest.fail(f"CI must run the browser test; {reason}")
        pytest.skip(reason)
    return script


@pytest.fixture(scope="module")
def browser(shots: ModuleType, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """Headless Chromium in a fresh profile, logging the console and the network."""
    with shots.open_chromium(tmp_path_factory.mktemp("chromium-profile")) as driver:
        yield driver


def requested_urls(driver: Any) -> list[str]:
    """Every URL the page asked for since the last call, from the DevTools Network events."""
    urls = []
    for entry in driver.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message["method"] == "Network.requestWillBeSent":
            urls.append(message["params"]["request"]["url"])
    return urls


def console_errors(driver: Any) -> list[str]:
    """The browser console's errors since the last call."""
    return [entry["message"] for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]


class TestVariants:
    """The variants section: only with an experiment; a sentence only when a difference excludes zero."""

    def test_a_job_without_an_experiment_has_no_variants_section_and_no_holdout_tile(self) -> None:
        """The page of every other job is what it was."""
        page = render_report(report())
        assert 'id="variants"' not in page and 'id="status-holdout"' not in page

    def test_close_rates_give_no_sentence_and_the_holdout_is_shown(self) -> None:
        """30% against 31%: the interval holds zero, so the page says no difference excludes zero yet."""
        from batch_engage.experiment import difference, rate
        from batch_engage.reporting.compare import ExperimentReport, Metric

        a, b = rate(30, 100), rate(31, 100)
        metric = Metric(key="answered", label="Answered", rates=(a, b), differences=(difference(a, b),))
        experiment = ExperimentReport(
            variants=("A", "B"), assigned=(100, 100), holdout=22, holdout_share=0.1, metrics=(metric,), collected=True
        )
        page = render_report(report(experiment=experiment, counts=dict(COUNTS) | {"holdout": 22}))
        elements = parse(page)
        assert "no-verdict" in elements.attrs and "verdicts" not in elements.attrs
        assert elements.attrs["holdout"]["data-count"] == "22"
        assert elements.attrs["status-holdout"]["data-count"] == "22"

    def test_the_holdout_share_shown_is_the_one_held_out_not_only_the_setting(self) -> None:
        """22 of 222 held out under a 50 % setting (others were sent before it was raised): the page says 9.9 % of
        222, and the setting beside it (it said "share 50.0%" alone)."""
        from batch_engage.reporting.compare import ExperimentReport

        experiment = ExperimentReport(
            variants=("A", "B"), assigned=(100, 100), holdout=22, holdout_share=0.5, metrics=(), collected=False
        )
        page = render_report(report(experiment=experiment, counts=dict(COUNTS) | {"holdout": 22}))
        assert "held out (9.9% of 222; the job's holdout is 50.0%)" in page


class TestInABrowser:
    """Headless Chromium opens the page offline, shows the numbers, and requests nothing."""

    def test_the_network_and_console_checks_can_fail(self, browser: Any, tmp_path: Path) -> None:
        """A page with a remote image shows up in both logs, so their emptiness below means something."""
        page = tmp_path / "leaky.html"
        page.write_text('<!DOCTYPE html><title>leak</title><img src="http://127.0.0.1:9/pixel.png" alt="">')
        requested_urls(browser)  # drain what earlier pages left in both logs
        console_errors(browser)
        browser.get(page.as_uri())
        assert "http://127.0.0.1:9/pixel.png" in requested_urls(browser)
        assert console_errors(browser)

    def test_the_report_loads_offline_and_shows_the_counts(
        self, shots: ModuleType, browser: Any, tmp_path: Path
    ) -> None:
        """No console error, no request but the file itself, tiles equal to the counts, every chart drawn."""
        from selenium.webdriver.common.by import By

        data = shots.sample_report_data()
        page = tmp_path / "report.html"
        page.write_text(render_report(data), encoding="utf-8")
        requested_urls(browser)
        console_errors(browser)
        shots.screenshot(browser, page, tmp_path / "report.png")

        assert console_errors(browser) == []
        urls = requested_urls(browser)
        assert page.as_uri() in urls
        assert set(urls) == {page.as_uri()}

        shown = {
            tile.get_attribute("data-status"): int(tile.find_element(By.CLASS_NAME, "count").text.replace(",", ""))
            for tile in browser.find_elements(By.CSS_SELECTOR, "[data-status]")
        }
        assert shown == dict(data.counts)

        charts = browser.execute_script(
            "return [...document.querySelectorAll('svg')].map(s => {"
            " const r = s.getBoundingClientRect();"
            " return [s.id, r.width, r.height, s.querySelectorAll('path[d]:not([d=\"\"]), rect, polyline').length];"
            "})"
        )
        ids = {chart_id for chart_id, *_ in charts}
        assert {"chart-shares", "chart-time", "chart-rate", "chart-invalid", "chart-windows", "chart-run-status"} <= ids
        for chart_id, width, height, shapes in charts:
            assert width > 100, chart_id
            assert height > 5, chart_id
            assert shapes > 0, chart_id
        assert (tmp_path / "report.png").read_bytes().startswith(b"\x89PNG\r\n\x1a\n")


class TestSandboxRunInABrowser:
    """The report of a real run (on the sandbox) opens offline and its tiles are the checkpoint's counts."""

    def test_the_report_of_a_sandbox_run_shows_the_checkpoints_counts(
        self,
        shots: ModuleType,
        browser: Any,
        sandbox: Any,
        write_job: Any,
        tmp_path: Path,
        capsys: pytest.CaptureFixture[str],
    ) -> None:
        """`run --report-html` on a sandbox job: no request but the file, every chart drawn, tiles == status."""
        import polars as pl
        from selenium.webdriver.common.by import By

        from batch_engage import status
        from batch_engage.cli.main import main

        contacts = tmp_path / "contacts.csv"
        pl.DataFrame(
            {"phone": [f"+1415555{i:04d}" for i in range(40)] + ["nope", "+14155550000"], "name": ["x"] * 42}
        ).with_columns(visits=pl.lit(1)).write_csv(contacts)
        job = write_job(input_path=contacts, base_url=sandbox.url)
        page = tmp_path / "campaign.html"
        assert main(["run", str(job), "--sandbox", "--quiet", "--report-html", str(page)]) == 1
        capsys.readouterr()
        requested_urls(browser)
        console_errors(browser)
        shots.screenshot(browser, page, tmp_path / "campaign.png")
        assert console_errors(browser) == []
        assert set(requested_urls(browser)) == {page.as_uri()}
        shown = {
            tile.get_attribute("data-status"): int(tile.find_element(By.CLASS_NAME, "count").text.replace(",", ""))
            for tile in browser.find_elements(By.CSS_SELECTOR, "[data-status]")
        }
        assert shown == status(job, sandbox=True).counts
        assert shown["sent"] == 40 and shown["invalid"] == 1 and shown["duplicate"] == 1
        sizes = browser.execute_script(
            "return [...document.querySelectorAll('svg')].map(s => [s.id, s.getBoundingClientRect().width,"
            " s.querySelectorAll('rect, path[d], polyline').length])"
        )
        assert {"chart-shares", "chart-time", "chart-invalid"} <= {chart_id for chart_id, *_ in sizes}
        assert all(width > 100 and shapes > 0 for _, width, shapes in sizes)


class TestFromTheCheckpoint:
    """The page depends on the checkpoint alone."""

    def test_two_reports_of_one_checkpoint_are_byte_identical(
        self, sandbox: Any, make_spec: Any, sandbox_creds: Any, tmp_path: Path
    ) -> None:
        """Written a second apart (and after a copy of the checkpoint), the bytes are the same; numbers are masked."""

        from batch_engage import run
        from batch_engage.api import write_report_html

        from conftest import make_contacts

        spec = make_spec(sandbox.url)
        run(spec, frame=make_contacts(25), credentials=sandbox_creds)
        first = write_report_html(spec, tmp_path / "a.html").read_bytes()
        second = write_report_html(spec, tmp_path / "b.html").read_bytes()
        assert first == second
        assert b"+14155550100" not in first
        assert (tmp_path / "a.html").stat().st_mode & 0o077 == 0


class TestTheTruthInABrowser:
    """What the page says is so: its achieved rate is the CLI's, reads are reads, a rehearsal says it is one."""

    def _run(self, argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
        from batch_engage.cli.main import main

        main(argv)
        return capsys.readouterr().out

    def test_the_pages_achieved_rate_equals_the_clis_and_reads_are_named_as_reads(
        self,
        browser: Any,
        sandbox: Any,
        write_job: Any,
        tmp_path: Path,
        capsys: pytest.CaptureFixture[str],
        sandbox_env: dict[str, str],
    ) -> None:
        """One run: the page's "achieved" is the summary's; the preflight's reads are drawn as reads, not answers."""
        from selenium.webdriver.common.by import By

        from conftest import make_contacts

        contacts = tmp_path / "contacts.csv"
        make_contacts(60).write_csv(contacts)
        job = write_job(input_path=contacts, base_url=sandbox.url, send="rate = 40\nconcurrency = 4")
        page = tmp_path / "campaign.html"
        out = self._run(["run", str(job), "--report-html", str(page), "--log-level", "error"], capsys)
        cli_rate = re.search(r"achieved rate: ([0-9.]+)/s", out)
        assert cli_rate is not None, out
        browser.get(page.as_uri())
        shown = browser.find_element(By.CSS_SELECTOR, "#rate-achieved .num").text
        assert shown == cli_rate[1]
        reads = browser.find_element(By.ID, "legend-reads")
        assert reads.is_displayed() and "reads" in reads.text
        assert int(reads.find_element(By.TAG_NAME, "b").text.replace(",", "")) >= 2  # the Flow and its revision
        assert browser.find_elements(By.ID, "rehearsal") == []

    def test_a_rehearsals_page_says_so_at_the_top(
        self, browser: Any, write_job: Any, contacts_csv: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """`run --sandbox --report-html`: a visible "Rehearsal" notice above the job's name."""
        from selenium.webdriver.common.by import By

        job = write_job(input_path=contacts_csv)
        page = tmp_path / "rehearsal.html"
        self._run(["run", str(job), "--sandbox", "--quiet", "--report-html", str(page)], capsys)
        browser.get(page.as_uri())
        notice = browser.find_element(By.ID, "rehearsal")
        title = browser.find_element(By.TAG_NAME, "h1")
        assert notice.is_displayed() and "Rehearsal" in notice.text
        assert notice.location["y"] < title.location["y"]

    def test_an_answer_chart_counts_the_runs_with_no_reply(self, browser: Any, tmp_path: Path) -> None:
        """174 answers of 195 runs: the chart shows a "no reply" bar of 21, so its bars add up to 195."""
        from selenium.webdriver.common.by import By

        data = dataclasses.replace(
            report(), fields=(FieldValues(name="answer", top=(("yes", 120), ("no", 54)), no_reply=21),)
        )
        page = tmp_path / "answers.html"
        page.write_text(render_report(data), encoding="utf-8")
        browser.get(page.as_uri())
        chart = browser.find_element(By.ID, "chart-field-0").find_element(By.XPATH, "..")
        labels = [e.text for e in chart.find_elements(By.CSS_SELECTOR, ".hb-l div")]
        counts = [int(e.text.replace(",", "")) for e in chart.find_elements(By.CSS_SELECTOR, ".hb-n div")]
        assert labels == ["yes", "no", "no reply"]
        assert sum(counts) == 195


def test_runs_without_a_value_for_a_field_are_counted_as_no_reply() -> None:
    """Collected runs whose answer is empty (or absent) are counted, not left out of the chart."""
    from batch_engage.collector import StoredOutcome
    from batch_engage.reporting.data import _field_values

    collected = {
        f"c{i}": StoredOutcome(contact=f"c{i}", sid=f"FN{i}", run_status="ended", values={"answer": v})
        for i, v in enumerate(["yes", "yes", "no", None, None])
    }
    collected["c9"] = StoredOutcome(contact="c9", sid="FN9", run_status="active", values={})
    (answer,) = _field_values(collected)
    assert answer.top == (("yes", 2), ("no", 1))
    assert answer.no_reply == 3


class TestExperimentInABrowser:
    """Two variants whose contacts answer differently: the page compares them and says when they really differ."""

    def test_b_answers_yes_twice_as_often_and_the_page_says_the_difference_excludes_zero(
        self,
        browser: Any,
        sandbox_factory: Any,
        write_job: Any,
        sandbox_creds: Any,
        tmp_path: Path,
    ) -> None:
        """After collect, B's YES rate is above A's, the difference's interval excludes zero, and a sentence says so;
        the holdout's size is shown beside the variants."""
        import polars as pl
        from selenium.webdriver.common.by import By

        import batch_engage
        from batch_engage.api import write_report_html

        # A's contacts answer YES one time in four, B's one in two: twice as often.
        sb = sandbox_factory(
            rate_limit=None, replies_by=("variant", {"A": ("YES", "NO", "NO", "NO"), "B": ("YES", "NO")})
        )
        contacts = tmp_path / "contacts.csv"
        # About 135 contacts a variant: rates of 1/4 and 1/2 then differ by some four standard errors.
        pl.DataFrame({"phone": [f"+1415555{i:04d}" for i in range(300)], "name": ["x"] * 300}).with_columns(
            visits=pl.lit(1)
        ).write_csv(contacts)
        extra = f"""
[collect]
message_status = ["send_intro"]

[collect.fields]
answer = "widgets.ask.inbound.Body"

[experiment]
holdout = 0.1

[[experiment.variants]]
name = "A"
parameters = {{ variant = "A" }}

[[experiment.variants]]
name = "B"
flow = "FW{"b" * 32}"
parameters = {{ variant = "B" }}
"""
        send = "rate = 5000\nconcurrency = 8\nreconcile_delay = 0.0"
        job = write_job(input_path=contacts, base_url=sb.url, send=send, extra=extra)
        ran = batch_engage.run(job, credentials=sandbox_creds)
        assert ran.exit_code == 0
        sb.end_all_runs()
        collected = batch_engage.collect(job, credentials=sandbox_creds)
        assert collected.exit_code == 0
        assert set(collected.outcomes["variant"]) == {"A", "B"}
        page = write_report_html(batch_engage.load_job(job), tmp_path / "experiment.html")

        requested_urls(browser)
        console_errors(browser)
        browser.get(page.as_uri())
        assert console_errors(browser) == []
        row = browser.find_element(By.CSS_SELECTOR, '#variants-table tr[data-metric="field:answer=YES"]')
        a, b, diff = row.find_elements(By.CSS_SELECTOR, "td")
        assert float(b.get_attribute("data-rate")) > float(a.get_attribute("data-rate"))
        assert diff.get_attribute("data-excludes-zero") == "true"
        assert float(diff.get_attribute("data-low")) > 0
        verdict = browser.find_element(By.CSS_SELECTOR, '.verdict[data-metric="field:answer=YES"][data-variant="B"]')
        assert verdict.is_displayed()
        assert "B's rate is higher than A's" in verdict.text and "excludes zero" in verdict.text
        holdout = browser.find_element(By.ID, "holdout")
        assert 15 <= int(holdout.get_attribute("data-count")) == ran.counts["holdout"] <= 45 and holdout.is_displayed()


def test_the_report_counts_only_the_outcomes_of_the_lists_contacts_now(rig: Rig, tmp_path: Path) -> None:
    """10 contacts collected, then a re-exported list of 4 of them: the page's outcomes are those 4 runs, as the
    outcomes table has them, not the 10 collected before."""
    from batch_engage import CollectOptions, collect, run
    from batch_engage.checkpoint import read_checkpoint
    from batch_engage.reporting.data import report_data

    from conftest import make_contacts

    async def _no_wait(seconds: float) -> None:
        return None

    sb = rig.sandbox(rate_limit=None)
    spec = rig.spec(sb.url, api="executions")
    options = CollectOptions(sleep=_no_wait, output=str(tmp_path / "outcomes.csv"))
    assert run(spec, frame=make_contacts(10), credentials=rig.creds).exit_code == 0
    sb.end_all_runs()
    assert collect(spec, credentials=rig.creds, options=options).counts.get("ended") == 10
    assert run(spec, frame=make_contacts(10).head(4), credentials=rig.creds).exit_code == 0
    table = collect(spec, credentials=rig.creds, options=options)
    assert table.outcomes.height == 4
    data = report_data(spec, read_checkpoint(spec.output.checkpoint), spec.output.checkpoint)
    assert data.run_status is not None and sum(data.run_status.values()) == 4
