"""The job spec: regions and edges build the right Twilio hosts, numeric settings refuse absurd values, and a
job's fingerprint (what binds its checkpoint) stays the same across releases."""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Callable
from datetime import UTC, datetime, time, timedelta
from pathlib import Path
from typing import Any

import pytest

from batch_engage.cli.main import main
from batch_engage.errors import ConfigError
from batch_engage.job import FlowSpec, load_spec
from batch_engage.plan.prepare import fingerprint
from batch_engage.twilio import api_base_url, studio_base_url, studio_region_warning

from conftest import FLOW_SID


def raw_job(flow: dict[str, Any] | None = None, send: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "flow": {"sid": FLOW_SID} | (flow or {}),
        "mapping": {"to": "phone", "from": "+15005550006"},
        "send": send or {},
    }


class TestStudioHost:
    """The Studio host a job reaches, from [flow] settings and the environment's region and edge."""

    @pytest.mark.parametrize(
        ("flow", "env", "host"),
        [
            ({}, {}, "https://studio.twilio.com"),
            ({}, {"region": "ie1", "edge": "dublin"}, "https://studio.dublin.ie1.twilio.com"),
            ({}, {"region": "ie1"}, "https://studio.dublin.ie1.twilio.com"),
            ({}, {"region": "au1"}, "https://studio.sydney.au1.twilio.com"),
            ({}, {"region": "us1"}, "https://studio.ashburn.us1.twilio.com"),
            ({}, {"region": "IE1"}, "https://studio.dublin.ie1.twilio.com"),
            ({}, {"edge": "sydney"}, "https://studio.sydney.us1.twilio.com"),
            ({}, {"region": "ie1", "edge": "frankfurt"}, "https://studio.frankfurt.ie1.twilio.com"),
            ({"region": "au1"}, {"region": "ie1"}, "https://studio.sydney.au1.twilio.com"),
            ({"edge": "tokyo"}, {"region": "ie1", "edge": "dublin"}, "https://studio.tokyo.ie1.twilio.com"),
            ({"base_url": "http://127.0.0.1:8080/"}, {"region": "ie1"}, "http://127.0.0.1:8080"),
        ],
        ids=[
            "nothing",
            "region-and-edge",
            "ie1-gets-dublin",
            "au1-gets-sydney",
            "us1-gets-ashburn",
            "case-insensitive",
            "edge-alone-means-us1",
            "any-edge-with-any-region",
            "flow-region-beats-env",
            "flow-edge-beats-env",
            "base-url-wins",
        ],
    )
    def test_region_and_edge_build_the_host(self, flow: dict[str, str], env: dict[str, str], host: str) -> None:
        """studio.{edge}.{region}.twilio.com with Twilio's defaults: never a region-only host, which Twilio retires."""
        assert studio_base_url(FlowSpec(sid=FLOW_SID, **flow), **env) == host

    @pytest.mark.parametrize("region", ["us2", "de1", "jp1", "gll", "eu1", "dublin"])
    def test_a_region_twilio_does_not_process_in_names_the_valid_ones(self, region: str) -> None:
        """A legacy edge ID or a made-up region is refused, naming TWILIO_REGION and listing us1, ie1, au1."""
        with pytest.raises(ConfigError, match=r"^TWILIO_REGION: .*us1, ie1, au1") as info:
            studio_base_url(FlowSpec(sid=FLOW_SID), region=region)
        assert repr(region) in str(info.value)

    def test_a_bad_flow_region_is_refused_when_the_job_is_loaded(self) -> None:
        """[flow] region = "us2" fails at load time, naming flow.region."""
        with pytest.raises(ConfigError, match=r"^flow\.region: 'us2' is not a Twilio processing region"):
            load_spec(raw=raw_job(flow={"region": "us2"}))

    def test_a_bad_edge_is_refused(self) -> None:
        """An edge that is not a host label (a URL, a dot) is refused, naming its key."""
        with pytest.raises(ConfigError, match=r"^flow\.edge: "):
            load_spec(raw=raw_job(flow={"edge": "evil.example.com/"}))
        with pytest.raises(ConfigError, match=r"^TWILIO_EDGE: "):
            studio_base_url(FlowSpec(sid=FLOW_SID), edge="a.b")


class TestApiHost:
    """The REST API host (Messages) follows the same region and edge rules as Studio's."""

    @pytest.mark.parametrize(
        ("region", "edge", "host"),
        [
            (None, None, "https://api.twilio.com"),
            ("ie1", None, "https://api.dublin.ie1.twilio.com"),
            ("au1", "sydney", "https://api.sydney.au1.twilio.com"),
            (None, "dublin", "https://api.dublin.us1.twilio.com"),
        ],
    )
    def test_the_rest_api_host_follows_the_same_rules(self, region: str | None, edge: str | None, host: str) -> None:
        """api.{edge}.{region}.twilio.com, the Messages API host, built like Studio's."""
        assert api_base_url(region, edge) == host


class TestStudioRegionWarning:
    """Regions where Twilio does not generally offer Studio are allowed but warned about."""

    @pytest.mark.parametrize("region", [None, "", "us1", "US1"])
    def test_no_warning_where_studio_runs(self, region: str | None) -> None:
        """us1 (or no region) is where Studio is offered: nothing to warn about."""
        assert studio_region_warning(region) is None

    @pytest.mark.parametrize(("region", "says"), [("ie1", "private beta"), ("au1", "does not list Studio")])
    def test_a_warning_elsewhere(self, region: str, says: str) -> None:
        """ie1 and au1 are allowed but warned about, naming the region and why."""
        warning = studio_region_warning(region)
        assert warning is not None and region in warning and says in warning


LIMITED = [
    ("rate", 10_001),
    ("rate", 0),
    ("concurrency", 1_001),
    ("concurrency", 0),
    ("max_attempts", 0),
    ("max_attempts", 10**9),
    ("connect_timeout", 3_601),
    ("connect_timeout", 0),
    ("read_timeout", 86_400),
    ("read_timeout", -1),
    ("max_backoff", -1),
    ("max_backoff", 10**9),
    ("reconcile_delay", -0.5),
    ("reconcile_delay", 7_200),
    ("breaker_ratio", 0),
    ("breaker_ratio", 1.5),
    ("breaker_window", 0),
    ("max_parameters_bytes", 2**40),
]
FLOAT_KEYS = ["rate", "max_backoff", "connect_timeout", "read_timeout", "reconcile_delay", "breaker_ratio"]


class TestNumbers:
    """Numeric [send] settings: finite, within a sane range, from the file and from flags alike."""

    @pytest.mark.parametrize("key", FLOAT_KEYS)
    @pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")], ids=["nan", "inf", "-inf"])
    def test_non_finite_values_are_refused(self, key: str, value: float) -> None:
        """nan and infinities are refused with a ConfigError naming the key."""
        with pytest.raises(ConfigError, match=rf"^send\.{key}: must be a finite number"):
            load_spec(raw=raw_job(send={key: value}))

    @pytest.mark.parametrize(("key", "value"), LIMITED, ids=[f"{k}={v}" for k, v in LIMITED])
    def test_absurd_values_are_refused(self, key: str, value: float) -> None:
        """Each numeric setting has a sane range; outside it the error names the key, the range and the value."""
        with pytest.raises(ConfigError, match=rf"^send\.{key}: must be in [\[(].*\], not {value!r}$"):
            load_spec(raw=raw_job(send={key: value}))

    def test_the_defaults_and_the_edges_of_each_range_are_accepted(self) -> None:
        """Defaults, and the largest value of each range, load as given."""
        assert load_spec(raw=raw_job()).send.rate == 20.0
        edges = {"rate": 10_000, "concurrency": 1_000, "read_timeout": 3_600, "breaker_ratio": 1, "reconcile_delay": 0}
        send = load_spec(raw=raw_job(send=edges)).send
        assert (send.rate, send.concurrency, send.read_timeout, send.breaker_ratio) == (10_000.0, 1_000, 3_600.0, 1.0)

    def test_1e400_in_a_job_file_is_refused(self, tmp_path: Path) -> None:
        """TOML reads 1e400 as infinity: a job file saying rate = 1e400 names send.rate."""
        job = tmp_path / "job.toml"
        job.write_text(
            f'[flow]\nsid = "{FLOW_SID}"\n[mapping]\nto = "phone"\nfrom = "+15005550006"\n[send]\nrate = 1e400\n'
        )
        with pytest.raises(ConfigError, match=r"^send\.rate: must be a finite number, not inf$"):
            load_spec(job)

    @pytest.mark.parametrize(("key", "value"), [("send.rate", float("nan")), ("send.concurrency", 5_000)])
    def test_overrides_go_through_the_same_check(self, key: str, value: float) -> None:
        """A flag's value (load_spec overrides) is checked like the file's."""
        with pytest.raises(ConfigError, match=rf"^{key}: "):
            load_spec(raw=raw_job(), overrides={key: value})

    @pytest.mark.parametrize(("flag", "value"), [("--rate", "nan"), ("--rate", "1e400"), ("--concurrency", "100000")])
    def test_run_with_an_absurd_flag_exits_2_naming_it(
        self,
        flag: str,
        value: str,
        write_job: Callable[..., Path],
        contacts_csv: Path,
        capsys: pytest.CaptureFixture[str],
    ) -> None:
        """`run --rate nan` stops before anything is sent: exit 2, one line naming send.rate."""
        job = write_job(input_path=contacts_csv)
        code = main(["run", str(job), flag, value])
        err = capsys.readouterr().err
        assert code == 2
        assert f"send.{flag[2:]}" in err and err.count("\n") == 1


# A job touching every setting the fingerprint holds, and its fingerprint as 0.x wrote it into checkpoints.
FINGERPRINTED_JOB: dict[str, Any] = {
    "flow": {"sid": "FW" + "0" * 32, "api": "executions"},
    "mapping": {
        "to": "phone",
        "from_column": "sender",
        "parameters": {"name": "first", "order": {"id": "oid"}},
        "static_parameters": {"brand": "Acme", "n": 3, "nested": {"k": True}},
        "default_region": "US",
        "timezone_column": "tz",
    },
    "send": {
        "dedupe": "to_from",
        "max_parameters_bytes": 4096,
        "marker_key": "_m",
        "window": "09:00-20:00",
        "days": ["mon", "tue"],
        "default_timezone": "America/Chicago",
    },
    "history": {"path": "h.sqlite", "cap": "1 per 7d", "flow_cap": "2 per 1w"},
}
FINGERPRINT_JSON = (
    '{"api": "executions", "flow_sid": "FW00000000000000000000000000000000", "mapping": {"default_region": "US", '
    '"from": null, "from_column": "sender", "parameters": [["name", "first"], ["order.id", "oid"]], '
    '"parameters_column": null, "static_parameters": {"brand": "Acme", "n": 3, "nested": {"k": true}}, '
    '"to": "phone"}, "planning": {"dedupe": "to_from", "marker_key": "_m", "max_parameters_bytes": 4096}}'
)


class TestFingerprint:
    """What binds a checkpoint to its job is byte-for-byte what earlier releases wrote."""

    def test_a_fixed_jobs_fingerprint_is_unchanged(self) -> None:
        """A checkpoint made before the spec carried parsed windows and caps still opens for the same job."""
        spec = load_spec(raw=FINGERPRINTED_JOB)
        assert spec.send.window is not None and spec.history.cap is not None
        assert json.dumps(fingerprint(spec), sort_keys=True) == FINGERPRINT_JSON


class TestParsedSettings:
    """The send window and the caps come parsed with the job, and a bad one stops the load naming its key."""

    def test_the_window_and_caps_are_parsed_when_the_job_is_loaded(self) -> None:
        """spec.send.send_window and spec.history.caps hold what the job file says."""
        spec = load_spec(raw=FINGERPRINTED_JOB)
        window = spec.send.send_window
        assert window is not None
        assert (window.start, window.end, window.days) == (time(9), time(20), frozenset({0, 1}))
        monday_noon_chicago = datetime(2026, 3, 2, 18, tzinfo=UTC)
        assert window.is_open(("America/Chicago",), monday_noon_chicago)
        assert not window.is_open(("America/Chicago",), monday_noon_chicago + timedelta(days=2))
        cap, flow_cap = spec.history.caps
        assert cap is not None and (cap.count, cap.seconds) == (1, 7 * 86_400)
        assert flow_cap is not None and (flow_cap.count, flow_cap.seconds) == (2, 7 * 86_400)

    def test_a_job_without_window_or_caps_has_none(self) -> None:
        """No [send] window and no caps: nothing to hold rows for, nothing to cap."""
        spec = load_spec(raw=raw_job())
        assert spec.send.send_window is None
        assert spec.history.caps == (None, None)

    def test_a_replaced_send_section_carries_its_own_window(self) -> None:
        """A copy of the job with another window opens at the new hours, not the old ones."""
        spec = load_spec(raw=FINGERPRINTED_JOB)
        later = dataclasses.replace(spec.send, window="10:00-11:00", days=None).send_window
        assert later is not None and (later.start, later.end, later.days) == (time(10), time(11), frozenset(range(7)))

    @pytest.mark.parametrize(
        ("section", "values", "key"),
        [
            ("send", {"window": "9-5"}, "send.window"),
            ("send", {"window": "09:00-17:00", "days": ["someday"]}, "send.days"),
            ("history", {"path": "h.sqlite", "cap": "often"}, "history.cap"),
            ("history", {"path": "h.sqlite", "flow_cap": "0 per 1d"}, "history.flow_cap"),
        ],
    )
    def test_a_bad_window_or_cap_fails_the_load_naming_its_key(
        self, section: str, values: dict[str, Any], key: str
    ) -> None:
        """The job never loads with a window or cap that cannot be parsed."""
        with pytest.raises(ConfigError, match=rf"^{re.escape(key)}: "):
            load_spec(raw=raw_job() | {section: values})


@pytest.mark.parametrize(
    ("section", "address"),
    [
        ("history", {"path": "postgresql://u:s3cret@127.0.0.1/test"}),
        ("output", {"checkpoint": "postgresql://u:s3cret@127.0.0.1/test#job"}),
        ("input", {"uri": "postgresql://u:s3cret@127.0.0.1/test", "query": "select 1"}),
        ("output", {"results": "postgresql://u:s3cret@127.0.0.1/test#public.results"}),
    ],
    ids=["history", "checkpoint", "input", "results-table"],
)
def test_a_password_in_an_address_is_said_before_any_other_mistake(section: str, address: dict[str, str]) -> None:
    """A job with a bad Flow SID and a password in a PostgreSQL URL: the password is what the one line names."""
    raw = raw_job(flow={"sid": "nope"}) | {section: address}
    with pytest.raises(ConfigError, match="holds a password") as refused:
        load_spec(raw=raw)
    assert "s3cret" not in str(refused.value)


@pytest.mark.parametrize(
    ("collect", "key"),
    [
        ({"fields": {"variant": "widgets.ask.inbound.Body"}}, "collect.fields.variant"),
        ({"fields": {"job_id": "widgets.ask.inbound.Body"}}, "collect.fields.job_id"),
        ({"fields": {"period": "widgets.ask.inbound.Body"}}, "collect.fields.period"),
        (
            {"fields": {"send_intro_queue_seconds": "flow.data.x"}, "message_status": ["send_intro"]},
            "collect.message_status",
        ),
    ],
)
def test_a_collect_field_named_like_a_column_the_outcomes_table_adds_is_refused(
    collect: dict[str, Any], key: str
) -> None:
    """variant, job_id, period and a widget's <name>_queue_seconds are columns already: refused when the job is
    loaded, naming the key, rather than a traceback after every run was fetched."""
    with pytest.raises(ConfigError) as caught:
        load_spec(raw=raw_job() | {"collect": collect})
    assert caught.value.key == key
