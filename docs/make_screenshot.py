"""Render a sample campaign report and screenshot it with headless Chromium: ``docs/report.png``.

    python docs/make_screenshot.py                         # the sample job, run on the sandbox
    python docs/make_screenshot.py --html out/report.html  # also keep the HTML
    python docs/make_screenshot.py --made-up               # a made-up two-run campaign with 429s

Needs Debian's ``chromium`` and ``chromium-driver`` (/usr/bin/chromium, /usr/bin/chromedriver) and
``selenium`` (the ``test`` extra). Selenium is pointed at both binaries explicitly, so its
selenium-manager never downloads a browser or a driver. The test suite opens pages with the same
:func:`open_chromium`, so the screenshot and the browser test see the page the same way.
"""

from __future__ import annotations

import argparse
import random
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

from selenium import webdriver
from selenium.webdriver.chrome.service import Service

from batch_engage import CollectOptions, RunOptions, api
from batch_engage.checkpoint.store import read_only
from batch_engage.reporting.data import report_data
from batch_engage.reporting.html import FailureGroup, FieldValues, ReportData, RunSpan, SecondStats, render_report
from batch_engage.sandbox import Sandbox, SandboxConfig

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
# Headless, and quiet on the network: no first-run pages, no component or safe-browsing updates,
# no sync, no QUIC probing. --no-sandbox because CI runs as root in a container.
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--hide-scrollbars",
)
WIDTH = 1200
DOCS = Path(__file__).resolve().parent


@contextmanager
def open_chromium(profile: Path, *, width: int = WIDTH) -> Iterator[webdriver.Chrome]:
    """Headless Chromium in a fresh profile under ``profile``, logging the console and every network event."""
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={profile}")
    options.add_argument(f"--window-size={width},900")
    # The performance log carries the DevTools Network.* events: what the page asked for.
    options.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(executable_path=str(CHROMEDRIVER)))
    try:
        yield driver
    finally:
        driver.quit()


def screenshot(driver: webdriver.Chrome, page: Path, png: Path, *, width: int = WIDTH) -> None:
    """Open ``page`` and save a PNG of the whole page, as tall as its content."""
    driver.get(page.as_uri())
    height = int(driver.execute_script("return document.documentElement.scrollHeight"))
    driver.set_window_size(width, height)
    # Resizing the window leaves browser chrome out of the viewport in headless mode; set the
    # viewport itself so the PNG is exactly the page.
    driver.execute_cdp_cmd(
        "Emulation.setDeviceMetricsOverride",
        {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False},
    )
    driver.save_screenshot(str(png))


def sample_report_data() -> ReportData:
    """A representative campaign: two runs over 40 minutes, a 429 episode, failures, windows and outcomes."""
    rng = random.Random(18)
    start = datetime(2026, 3, 2, 14, 0, 0, tzinfo=UTC)
    seconds = []
    rate = 20.0
    t0 = int(start.timestamp())
    # First run: 25 minutes climbing to 25/s, a minute of 429s when another sender shares the
    # account, then the process is killed (no stop recorded).
    for i in range(1500):
        limited = rng.randint(2, 8) if 600 <= i < 660 else 0
        rate = max(rate * 0.9, 17.0) if limited else min(rate + 0.25, 25.0)
        ok = max(int(rate) - rng.randint(0, 1), 0)
        other = 1 if rng.random() < 0.05 else 0
        seconds.append(
            SecondStats(
                second=t0 + i,
                requests=ok + limited + other,
                ok=ok,
                rate_limited=limited,
                retries=limited if i > 600 else 0,
                lookups=0,
                pacer_rate=round(rate, 2),
            )
        )
    # Second run, five minutes later: the rest at the settled rate.
    t1 = t0 + 1800
    for i in range(600):
        ok = 24 + rng.randint(0, 1)
        seconds.append(
            SecondStats(second=t1 + i, requests=ok, ok=ok, rate_limited=0, retries=0, lookups=0, pacer_rate=24.6)
        )
    runs = (
        RunSpan(started=start, stopped=None, exit_code=None),
        RunSpan(started=start + timedelta(seconds=1799), stopped=start + timedelta(seconds=2401), exit_code=1),
    )
    sent = sum(s.ok for s in seconds)
    return ReportData(
        job_name="spring_reactivation",
        flow_sid="FW0123456789abcdef0123456789abcdef",
        api="executions",
        counts={
            "sent": sent,
            "already_active": 212,
            "failed": 98,
            "invalid": 141,
            "duplicate": 37,
            "suppressed": 64,
            "capped": 0,
            "uncertain": 3,
            "pending": 215,
        },
        configured_rate=25.0,
        runs=runs,
        seconds=tuple(seconds),
        failures=(
            FailureGroup(
                code=21211,
                message="The 'To' number is not a valid phone number.",
                count=61,
                examples=("+1415***0142", "+4420***9911", "+3361***0087"),
            ),
            FailureGroup(
                code=21610,
                message="Attempt to send to unsubscribed recipient",
                count=29,
                examples=("+1646***2210", "+1212***7781"),
            ),
            FailureGroup(code=None, message="HTTP 400 with no Twilio error body", count=8, examples=("+1305***4420",)),
        ),
        invalid_reasons=(
            ("To: not a possible number for region US", 88),
            ("To is empty", 41),
            ("From: not an E.164 number", 12),
        ),
        window_openings=(
            (datetime(2026, 3, 2, 17, 0, tzinfo=UTC), 130),
            (datetime(2026, 3, 2, 18, 0, tzinfo=UTC), 61),
            (datetime(2026, 3, 3, 1, 0, tzinfo=UTC), 24),
        ),
        run_status={"ended": sent - 356, "active": 301, "failed": 55},
        fields=(
            FieldValues(name="reply", top=(("YES", 5_210), ("NO", 2_877), ("STOP", 340), ("(none)", 2_803))),
            FieldValues(name="appointment.slot", top=(("morning", 3_020), ("afternoon", 2_190), ("evening", 644))),
        ),
        checkpoint_path="out/spring_reactivation.checkpoint",
        as_of=start + timedelta(seconds=2401),
        version="0.1.0",
    )


def sample_job_report_data() -> ReportData:
    """The sample job (jobs/sample_campaign.toml) run on the sandbox at 50/s against its 20/s limit, then collected."""
    repo = DOCS.parent
    with tempfile.TemporaryDirectory(prefix="batch-engage-sample-") as tmp:
        overrides = {
            "output.results": f"{tmp}/sample.results.csv",
            "output.checkpoint": f"{tmp}/sample.checkpoint",
            "send.rate": 50.0,
        }
        spec = api.load_job(
            repo / "jobs" / "sample_campaign.toml", overrides | {"output.outcomes": f"{tmp}/o.csv"}, sandbox=True
        )
        # One simulator's runs, kept in a state file: the run's simulator and collect's serve the same ones.
        simulator = SandboxConfig(latency=0.03, state_path=f"{tmp}/runs.jsonl")
        api.run(spec, options=RunOptions(sandbox=True), simulator=simulator)
        with Sandbox(simulator) as sb:
            sb.end_all_runs()  # the simulated contacts answer once their runs have ended
        api.collect(spec, options=CollectOptions(sandbox=True), simulator=simulator)
        return report_data(spec, read_only(spec.output.checkpoint), "out/sample_campaign.checkpoint.sandbox")


def main() -> None:
    """Render the sample (or a checkpoint's) report and save its screenshot."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--made-up", action="store_true", help="a made-up campaign instead of the sample job")
    parser.add_argument("--out", type=Path, default=DOCS / "report.png", help="the PNG to write")
    parser.add_argument("--html", type=Path, help="also keep the HTML page here")
    args = parser.parse_args()
    data = sample_report_data() if args.made_up else sample_job_report_data()
    with tempfile.TemporaryDirectory(prefix="batch-engage-shot-") as tmp:
        page = Path(args.html) if args.html else Path(tmp) / "report.html"
        page.write_text(render_report(data), encoding="utf-8")
        with open_chromium(Path(tmp) / "profile") as driver:
            screenshot(driver, page.resolve(), args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
