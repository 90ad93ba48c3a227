"""The job: a TOML file plus flag overrides, turned into one frozen ``Spec``.

Every default is a named constant (``sections``); every error names the key it is about. Reading
the file is ``read``'s job, checking each section ``checks``' and ``paths``'.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ..errors import ConfigError, UsageError
from ..postgres import sandbox_twin
from . import periods
from .addresses import check_addresses
from .checks import (
    check_flow,
    check_history,
    check_input,
    check_mapping,
    check_marker_key,
    check_on_active,
    check_send,
    check_suppress,
    check_zone,
    collect_fields,
    parse_duration,
)
from .experiment import ExperimentSpec, VariantSpec, check_experiment, merged_parameters
from .paths import check_paths, check_postgres_checkpoint, check_tables, job_fields, output_fields
from .read import job_sections, read_job
from .sections import (
    DEFAULT_LOCK_WAIT,
    CollectSpec,
    FlowSpec,
    HistorySpec,
    InputSpec,
    JobSpec,
    MappingSpec,
    OutputSpec,
    SendSpec,
    SuppressSpec,
)

__all__ = ["Spec", "load_spec"]

# A fixed day to show an example period from (for_period's error), whatever today is.
_EPOCH = datetime(2026, 1, 1, tzinfo=UTC)


@dataclass(frozen=True, kw_only=True)
class Spec:
    """A whole job, validated: build it with :func:`load_spec` or directly."""

    input: InputSpec
    flow: FlowSpec
    mapping: MappingSpec
    send: SendSpec = SendSpec()
    output: OutputSpec
    suppress: SuppressSpec = SuppressSpec()
    history: HistorySpec = HistorySpec()
    job: JobSpec = JobSpec()
    collect: CollectSpec = CollectSpec()
    experiment: ExperimentSpec | None = None
    job_file: str | None = None  # the TOML it was read from: no output may overwrite it

    def flow_sids(self) -> tuple[str, ...]:
        """Every Flow the job runs: ``[flow] sid`` alone, or each variant's (first seen first)."""
        if self.experiment is None:
            return (self.flow.sid,)
        return tuple(dict.fromkeys(self.experiment.flows(self.flow.sid).values()))

    def replace(self, **sections: Any) -> Spec:
        """Return a copy with whole sections replaced."""
        return dataclasses.replace(self, **sections)

    def for_variant(self, variant: VariantSpec) -> Spec:
        """The job as one variant sends it: the variant's Flow, its Parameters added to the static ones."""
        statics = merged_parameters(self.mapping.static_parameters, variant.parameters)
        return dataclasses.replace(
            self,
            flow=dataclasses.replace(self.flow, sid=variant.flow or self.flow.sid),
            mapping=dataclasses.replace(self.mapping, static_parameters=statics),
        )

    def refuse_early_period(self, *, yes: bool, now: datetime | None = None) -> None:
        """A run for a period that has not begun sends early: refused unless ``yes`` (``--yes``)."""
        kind, period = self.job.period_kind, self.job.period
        if kind is None or period is None or yes:
            return
        moment = now or datetime.now(UTC)
        if periods.is_future(kind, period, moment, self.send.default_timezone):
            today = periods.current_period(kind, moment, self.send.default_timezone)
            raise UsageError(
                f"--period {period} has not begun (the current {kind} is {today}); nothing was sent. "
                "Add --yes to send for it now"
            )

    def for_period(self, period: str) -> Spec:
        """The same job for another period (its own id and output paths)."""
        kind = self.job.period_kind
        if kind is None:
            raise ConfigError("job.id", "has no {date}, {week} or {month}: the job has no periods")
        if not periods.is_period(kind, period):
            raise ConfigError(
                "--period", f"{period!r} is not a {kind} (e.g. {periods.current_period(kind, _EPOCH, None)})"
            )
        job = dataclasses.replace(self.job, id=periods.render(self.job.template, {kind: period}), period=period)
        values = {"id": job.id, kind: period}
        out = self.output
        return dataclasses.replace(
            self,
            job=job,
            output=dataclasses.replace(
                out,
                results=periods.render(out.results_template or out.results, values),
                checkpoint=periods.render(out.checkpoint_template or out.checkpoint, values),
                outcomes=periods.render(out.outcomes_template, values) if out.outcomes_template else out.outcomes,
            ),
        )

    def period_of_checkpoint(self, tail: str, *, sandbox: bool) -> str | None:
        """The period whose checkpoint ends in ``tail`` (a file name, or a key in a schema), or None.

        ``sandbox`` asks about the rehearsal's checkpoints. One pattern, made from the job's own templates,
        answers for every candidate, so finding the newest period never builds a Spec per candidate.
        """
        kind = self.job.period_kind
        if kind is None:
            return None
        template = self.output.checkpoint_template or self.output.checkpoint
        tail_template = template.rsplit("#", 1)[-1] if "#" in template else Path(template).name
        marker = "\x00"
        rendered = periods.render(
            tail_template, {"id": periods.render(self.job.template, {kind: marker}), kind: marker}
        )
        rendered += ".sandbox" if sandbox else ""
        first, *rest = re.escape(rendered).split(re.escape(marker))
        if not rest:  # the period is in a folder's name, not the checkpoint's own: it is not looked for there
            return None
        pattern = first + "".join(
            ("(?P<period>[0-9W-]+)" if i == 0 else "(?P=period)") + part for i, part in enumerate(rest)
        )
        found = re.fullmatch(pattern, tail)
        return found["period"] if found and periods.is_period(kind, found["period"]) else None

    def rehearsal(self) -> Spec:
        """The same job against the sandbox: its own checkpoint and results beside the real ones, no history.

        Idempotent: the rehearsal of a rehearsal is itself.
        """
        if self.output.checkpoint.endswith(".sandbox"):
            return self
        return dataclasses.replace(
            self,
            output=dataclasses.replace(
                self.output,
                results=sandbox_twin(self.output.results),
                checkpoint=self.output.checkpoint + ".sandbox",
                outcomes=sandbox_twin(self.output.outcomes) if self.output.outcomes else None,
                real=tuple(p for p in (self.output.results, self.output.outcomes) if p),
            ),
            history=HistorySpec(),
        )


def load_spec(
    path: str | Path | None = None,
    *,
    raw: Mapping[str, Any] | None = None,
    overrides: Mapping[str, Any] | None = None,
    now: datetime | None = None,
) -> Spec:
    """Read a job file (or an already-parsed ``raw`` table) and apply ``section.key`` overrides.

    Relative paths in the file resolve against the file's folder; paths given as
    overrides resolve against the current directory. ``now`` fixes the period of a
    ``[job] id`` with ``{date}``, ``{week}`` or ``{month}`` (default: the current time).
    """
    table, base, stem = read_job(path, raw)
    sections = job_sections(table, base, overrides or {})
    spec = _build(sections, base, stem, now or datetime.now(UTC))
    return dataclasses.replace(spec, job_file=str(Path(path).resolve())) if raw is None and path is not None else spec


def _build(sections: dict[str, dict[str, Any]], base: Path, stem: str, now: datetime) -> Spec:
    check_addresses(sections, base)
    # Each section's own rules, then the paths and the period (these read several sections together).
    inp = InputSpec(**check_input(sections["input"]))
    flow = FlowSpec(**check_flow(sections["flow"]))
    mapping = check_mapping(sections["mapping"])
    send = SendSpec(**check_send(sections["send"]))
    # The window is parsed here, once: a bad one fails the load naming its key, and readers never parse it again.
    if send.send_window is not None:
        check_zone(send.default_timezone)
    check_marker_key(sections["send"].get("marker_key"), mapping)
    check_on_active(send.on_active, flow.api)
    lock_wait = parse_duration("output.lock_wait", sections["output"].get("lock_wait", DEFAULT_LOCK_WAIT))
    history = HistorySpec(**check_history(sections["history"]))
    _ = history.caps  # parsed here, once, like the window
    collect = CollectSpec(**collect_fields(sections["collect"]))
    suppress = SuppressSpec(**check_suppress(sections["suppress"]))
    check_postgres_checkpoint(sections["output"], sections["job"])
    job = job_fields(sections["job"], stem, send.default_timezone, now)
    guard = sections["output"].get("csv_guard", True)
    output = OutputSpec(**output_fields(sections["output"], base, job), lock_wait=lock_wait, csv_guard=guard)
    spec = Spec(
        collect=collect,
        suppress=suppress,
        history=history,
        input=inp,
        flow=flow,
        mapping=MappingSpec(**mapping),
        send=send,
        output=output,
        job=JobSpec(**job),
        experiment=check_experiment(sections["experiment"], salt=job["template"], mapping=mapping),
    )
    check_paths(
        [("input.path", inp.path), *(("suppress.files", f) for f in spec.suppress.files)],
        results=output.results,
        checkpoint=output.checkpoint,
        outcomes=output.outcomes,
        history=history.path,
    )
    check_tables(
        [("output.results", output.results), ("output.outcomes", output.outcomes)],
        checkpoint=output.checkpoint,
        history=history.path,
        source=inp,
    )
    return spec
