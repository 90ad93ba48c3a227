"""The job held against the Flow it triggers, through the sandbox: missing variables, strictness, unwired triggers."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from batch_engage import run, validate
from batch_engage.cli.main import main
from batch_engage.credentials import Credentials
from batch_engage.errors import ConfigError
from batch_engage.sandbox import Sandbox

from conftest import Rig, make_contacts


def _mapped(spec: Any, **parameters: str) -> Any:
    return spec.replace(mapping=replace(spec.mapping, parameters=tuple(parameters.items())))


class TestVariables:
    """flow.data variables the Flow prints and the job does not supply are named before anything is sent."""

    def test_a_missing_variable_is_named_with_its_widget(
        self, sandbox: Sandbox, make_spec: Callable[..., Any], sandbox_creds: Credentials
    ) -> None:
        """The sample Flow prints first_name and order.id; a job mapping only `name` is warned about both."""
        with capture_logs() as logs:
            result = run(make_spec(sandbox.url), frame=make_contacts(3), credentials=sandbox_creds)
        missing = {e["path"]: e for e in logs if e["event"] == "flow.variable_missing"}
        assert set(missing) == {"first_name", "order.id"}
        assert missing["first_name"]["widgets"] == ["send_intro"]
        assert "send_intro" in missing["first_name"]["message"]
        assert result.counts["sent"] == 3

    def test_a_variable_with_a_default_is_not_required(
        self, sandbox: Sandbox, make_spec: Callable[..., Any], sandbox_creds: Credentials
    ) -> None:
        """`{{flow.data.city | default: 'our store'}}` and a guarded `visits` are never reported missing."""
        frame = make_contacts(2).with_columns(first_name=make_contacts(2)["name"], oid=make_contacts(2)["name"])
        spec = _mapped(make_spec(sandbox.url), first_name="first_name", **{"order.id": "oid"})
        with capture_logs() as logs:
            run(spec, frame=frame, credentials=sandbox_creds)
        assert not [e for e in logs if e["event"] == "flow.variable_missing"]

    @pytest.mark.parametrize("api", ["engagements", "executions"])
    def test_strict_variables_refuses_with_exit_2_and_sends_nothing(
        self, api: str, sandbox: Sandbox, make_spec: Callable[..., Any], sandbox_creds: Credentials
    ) -> None:
        """With flow.strict_variables a missing variable is an error naming it; no run is created."""
        spec = make_spec(sandbox.url, api=api)
        spec = spec.replace(flow=replace(spec.flow, strict_variables=True))
        with pytest.raises(ConfigError, match=r"flow\.data\.first_name"):
            run(spec, frame=make_contacts(3), credentials=sandbox_creds)
        assert sandbox.stats().create_requests == 0


class TestWiring:
    """A Flow whose REST API trigger leads nowhere is refused before the first request."""

    @pytest.mark.parametrize("api", ["engagements", "executions"])
    def test_an_unwired_rest_trigger_aborts_with_exit_3_and_no_create(self, api: str, rig: Rig) -> None:
        """Exit 3, nothing created, and the reason says what to connect in the Studio editor."""
        sb = rig.sandbox(rate_limit=None, unwired_trigger=True)
        result = run(rig.spec(sb.url, api=api), frame=make_contacts(3), credentials=rig.creds)
        assert result.exit_code == 3
        assert "connect REST API" in (result.summary.aborted or "")
        assert sb.stats().create_requests == 0


class TestValidateFlow:
    """`validate --flow` shows the Flow, the trigger's first widget, the variables and the first message."""

    def test_validate_flow_warns_about_a_missing_variable_naming_its_widget(
        self, sandbox: Sandbox, make_spec: Callable[..., Any], sandbox_creds: Credentials
    ) -> None:
        """The same warning as the run's preflight: path and widget; the table marks it MISSING."""
        with capture_logs() as logs:
            found = validate(make_spec(sandbox.url), frame=make_contacts(2), credentials=sandbox_creds, flow=True).flow
        assert found is not None
        warned = {e["path"]: e["widgets"] for e in logs if e["event"] == "flow.variable_missing"}
        assert warned == {"first_name": ["send_intro"], "order.id": ["send_intro"]}
        assert {v.path for v in found.variables if v.source is None and v.required} == set(warned)

    def test_validate_flow_renders_the_first_message_of_the_first_contacts(
        self, sandbox: Sandbox, make_spec: Callable[..., Any], sandbox_creds: Credentials
    ) -> None:
        """The sample message is rendered with each row's values, exactly as the hand-written text."""
        frame = make_contacts(2).with_columns(first_name=make_contacts(2)["name"], oid=make_contacts(2)["phone"])
        spec = _mapped(make_spec(sandbox.url), first_name="first_name", **{"order.id": "oid"}, visits="visits")
        with capture_logs() as logs:
            found = validate(spec, frame=frame, credentials=sandbox_creds, flow=True).flow
        assert found is not None
        assert not [e for e in logs if e["event"] == "flow.variable_missing"]
        assert found.trigger_target == "send_intro" and found.message_widget == "send_intro"
        assert found.samples == (
            "Hi Person 0, your order +14155550100 ships soon from our store.",
            "Hi Person 1, your order +14155550101 ships soon from our store.",
        )
        assert {v.path: v.source for v in found.variables}["city"] is None

    def test_validate_flow_on_the_command_line_exits_3_for_an_unwired_trigger(
        self, sandbox_factory: Callable[..., Sandbox], job_for: Callable[..., Path], capsys: pytest.CaptureFixture[str]
    ) -> None:
        """One line on stderr, exit 3."""
        sb = sandbox_factory(rate_limit=None, unwired_trigger=True)
        code = main(["validate", str(job_for(sb)), "--flow"])
        err = capsys.readouterr().err
        assert code == 3 and "REST API" in err and len(err.strip().splitlines()) == 1
