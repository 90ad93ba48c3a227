"""A dry run: plan a job and say what would be sent, what would not and why (the Flow held against it: ``held``)."""

from __future__ import annotations

import functools
import hashlib
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import polars as pl

from ..checkpoint import (
    Target,
    checkpoint_exists,
    checkpoints_beside,
    empty_journal,
    later_period_bound_to,
    other_list_refused,
    period_behind,
    reached_by_another_list,
    reached_not_in,
    read_checkpoint,
)
from ..credentials import Credentials, credentials_from_env
from ..errors import CredentialsError, UsageError
from ..exits import exit_code_for
from ..inputs import is_local_file
from ..job import Spec, check_outputs, window_openings
from ..plan import Prepared, Rewrite, annotate_windows, prepare, send_window
from ..postgres import masked
from ..results import build_results, with_segments, write_results
from ..runner import Item, kept_variants, make_marker, target_for
from ..states import FINAL
from ..tables import prove_tables

if TYPE_CHECKING:
    from ..arrival import Arrival, Capacity
    from ..flow import FlowReview

__all__ = ["Validation", "offline_target", "prove_validate_outputs", "validation"]

# A reason quotes its value last, after ": '" (or ': "'): cut there, rows group by kind of problem.
_QUOTED_TAIL = r"""(?s): ['"].*$"""
_SAMPLES = 3


@dataclass(frozen=True)
class Validation:
    """What a dry run found: counts, reasons, samples and the time the job would take."""

    total: int
    valid: int
    invalid: int
    duplicate: int
    already_done: int
    invalid_reasons: dict[str, int]
    samples: list[dict[str, Any]]
    estimated_seconds: float
    results_table: Callable[[], pl.DataFrame] = field(repr=False, compare=False)
    """Builds :attr:`results`; a dry run on the command line never reads the table, so it is built on demand."""
    suppressed: dict[str, int] = field(default_factory=dict)
    capped: int = 0
    openings: dict[str, int] = field(default_factory=dict)
    flow: FlowReview | None = None
    rewrites: tuple[Rewrite, ...] = ()
    variant_flows: dict[str, FlowReview] = field(default_factory=dict)
    """With an ``[experiment]`` and ``--flow``: each variant's Flow held against that variant's rows."""
    flow_warnings: list[str] = field(default_factory=list)
    capacity: Capacity | None = None
    """With ``--flow``: will it arrive (the first variant's, in an experiment)."""
    left_out: int = 0
    """Contacts the checkpoint says this job reached that no row of this list names (the run says so too)."""

    @functools.cached_property
    def results(self) -> pl.DataFrame:
        """The results table as the run would begin it: each row's status and why (built on first use)."""
        return self.results_table()

    @property
    def exit_code(self) -> int:
        """0 when every row is sendable, 1 when some are not (the same mapping as ``run``)."""
        return exit_code_for({"invalid": self.invalid})

    def as_dict(self) -> dict[str, Any]:
        """Plain data for JSON."""
        return {
            "rows": self.total,
            "valid": self.valid,
            "invalid": self.invalid,
            "duplicate": self.duplicate,
            "already_done": self.already_done,
            "reached_not_in_list": self.left_out,
            "invalid_reasons": self.invalid_reasons,
            "suppressed": self.suppressed,
            "capped": self.capped,
            "window_openings": self.openings,
            "samples": self.samples,
            "estimated_seconds": round(self.estimated_seconds, 1),
            "rewritten": [{"way": r.way, "written": r.written, "sent": r.sent} for r in self.rewrites],
            **({"capacity": self.capacity.as_dict()} if self.capacity is not None else {}),
        }


@dataclass(frozen=True)
class _Checkpointed:
    """What the existing checkpoint adds: rows already done, and the token the markers would carry."""

    done_rows: int = 0
    left_out: int = 0
    marker_token: str = "<token of the new checkpoint>"  # noqa: S105 - a placeholder, not a secret
    # The first pending rows a run has not finished, for the sample requests (None: every pending row is to send).
    first_to_send: pl.DataFrame | None = None


def validate_plan(spec: Spec, frame: pl.DataFrame | pl.LazyFrame | None, stdin: Any, *, restart: bool) -> Prepared:
    """The plan ``validate`` judges, made as a run makes it: contacts the checkpoint sent keep their variant (the
    counts and sample requests ignored them: 12 done where 20 were, a holdout of 21 where the run held 13)."""
    return prepare(
        spec, frame=frame, stdin=stdin, rewrites=True, digest=False, kept=kept_variants(spec, restart=restart)
    )


def validation(
    spec: Spec,
    prepared: Prepared,
    *,
    flow_review: FlowReview | None,
    restart: bool,
    variant_flows: tuple[dict[str, FlowReview], list[str]] = ({}, []),
    arrivals: tuple[Arrival, ...] = (),
    now: datetime | None,
    output: str | Path | None,
) -> Validation:
    """What ``prepared``'s plan would send, and what not and why (the results table written to ``output``, if
    given)."""
    plan, rewrites = prepared.plan, prepared.rewrites
    statuses: dict[str, int] = dict(plan.lazy().group_by("status").len().collect().iter_rows())
    pending = statuses.get("pending", 0)
    earlier = _Checkpointed() if restart else _checkpointed(spec, plan, prepared.source_file)
    moment = now or datetime.now(UTC)
    segments = {row: n for a in arrivals for row, n in a.rows.first.items()}

    @functools.cache
    def results() -> pl.DataFrame:
        table = annotate_windows(plan, build_results(plan, empty_journal()), spec, moment)
        return with_segments(table, segments)

    if output is not None:
        if "://" in str(output):
            # A preview's "pending" rows would replace the job's real ones in the table.
            raise UsageError("--output: validate writes a file (.csv or .parquet); run and report write tables")
        write_results(results(), output, csv_guard=spec.output.csv_guard)
    return Validation(
        total=plan.height,
        valid=pending,
        invalid=statuses.get("invalid", 0),
        duplicate=statuses.get("duplicate", 0),
        already_done=earlier.done_rows,
        invalid_reasons=_invalid_reasons(plan),
        samples=_samples(spec, plan if earlier.first_to_send is None else earlier.first_to_send, earlier.marker_token),
        estimated_seconds=max(0, pending - earlier.done_rows) / spec.send.rate,
        results_table=results,
        suppressed=_suppressed(plan),
        capped=statuses.get("capped", 0),
        openings=_opening_counts(spec, plan, results, pending, moment),
        flow=flow_review,
        rewrites=rewrites,
        variant_flows=variant_flows[0],
        flow_warnings=variant_flows[1],
        capacity=arrivals[0].capacity if arrivals else None,
        left_out=earlier.left_out,
    )


def offline_target(spec: Spec, credentials: Credentials | None, sandbox: bool) -> Target:
    """The Twilio a run would go to, worked out without the network (and without credentials, if there are none)."""
    if credentials is None and not sandbox:
        try:
            credentials = credentials_from_env()
        except CredentialsError:
            credentials = None  # without credentials the identity is unknown; the base URL still counts
    return target_for(spec, credentials, sandbox=sandbox)


def prove_validate_outputs(spec: Spec, output: str | Path | None) -> None:
    """``validate``: its ``--output`` held against the job's files, and the job's tables proven as ``run`` proves
    them before sending (``validate`` said OK to a database that did not exist, and the run found it after)."""
    check_outputs(spec, [("--output", output)])
    prove_tables(spec, ("output.results", "output.outcomes"))


def refuse_period_behind(spec: Spec, *, sandbox: bool, yes: bool) -> None:
    """As ``run`` refuses it: a new period before one already sent from the very same local file (read for its
    digest only when such a period's checkpoint is there)."""
    period, where, path = spec.job.period, spec.output.checkpoint, spec.input.path
    if period is None or yes or path is None or not is_local_file(path) or checkpoint_exists(where, plan=True):
        return
    period_of = functools.partial(spec.period_of_checkpoint, sandbox=sandbox)
    if not any((other := period_of(tail)) is not None and other > period for tail in checkpoints_beside(where)):
        return
    # The digest a run binds its checkpoint to: its bytes as read.
    digest = hashlib.blake2b(Path(path).read_bytes(), digest_size=16).hexdigest()
    later = later_period_bound_to(where, digest, period, period_of)
    if later is not None:
        raise period_behind(period, later)


def _checkpointed(spec: Spec, plan: pl.DataFrame, source_file: str | None) -> _Checkpointed:
    if not checkpoint_exists(spec.output.checkpoint):
        return _Checkpointed()
    pending = plan.filter(pl.col("status") == "pending")
    view = read_checkpoint(spec.output.checkpoint)
    finals = view.journal.filter(pl.col("state").is_in([s.value for s in FINAL]))
    finished = pl.col("contact").is_in(finals.get_column("contact").implode())
    done = pending.filter(finished).height
    if not done and pending.height and source_file is not None and not spec.input.other_lists:
        _refuse_other_list(spec, plan, source_file, view.journal)
    token = view.meta.get("token", _Checkpointed.marker_token)
    left_out = reached_not_in(plan, view.journal)
    first = pending.filter(~finished).head(_SAMPLES) if done else None
    return _Checkpointed(done_rows=done, left_out=left_out, marker_token=token, first_to_send=first)


def _refuse_other_list(spec: Spec, plan: pl.DataFrame, source_file: str, journal: pl.DataFrame) -> None:
    """As ``run`` refuses it: a file none of whose contacts is among those the job reached before."""
    reached = reached_by_another_list(plan, journal)
    if reached:
        raise other_list_refused(source_file, masked(spec.output.checkpoint), plan, reached)


def _invalid_reasons(plan: pl.DataFrame) -> dict[str, int]:
    """Invalid rows by kind of reason, the most common first (ties in the order met)."""
    kinds = (
        plan.lazy()
        .filter(pl.col("status") == "invalid")
        .select(kind=pl.col("error_message").str.replace(_QUOTED_TAIL, ""))
        .group_by("kind", maintain_order=True)
        .len()
        .sort("len", descending=True, maintain_order=True)
        .collect()
    )
    return dict(kinds.iter_rows())


def _suppressed(plan: pl.DataFrame) -> dict[str, int]:
    messages = plan.filter(pl.col("status") == "suppressed").get_column("error_message").to_list()
    return dict(Counter(m.removeprefix("on suppression list ") for m in messages))


def _samples(spec: Spec, plan: pl.DataFrame, marker_token: str) -> list[dict[str, Any]]:
    """The first requests as they would leave, marker included (``plan``: its pending rows, those still to send)."""
    samples = []
    first = plan.lazy().filter(pl.col("status") == "pending").head(_SAMPLES)
    for row, contact, to, from_, params in (
        first.select("row", "contact", "to", "from", "parameters").collect().iter_rows()
    ):
        body = Item(
            row=row, contact=contact, to=to, from_=from_, parameters=params, marker=make_marker(marker_token, contact)
        )
        sent = body.body(spec.send.marker_key)
        samples.append({"row": row, "To": to, "From": from_, **({"Parameters": sent} if sent is not None else {})})
    return samples


def _opening_counts(
    spec: Spec, plan: pl.DataFrame, results: Callable[[], pl.DataFrame], pending: int, moment: datetime
) -> dict[str, int]:
    """Rows by the hour their send window opens (``now`` for those open already); empty without a window."""
    if not send_window(spec):
        return {}
    openings = window_openings(plan, results(), spec, moment)
    by_hour = Counter(
        "never" if o is None else o.strftime("%Y-%m-%d %H:00Z") for o in openings.get_column("opens").to_list()
    )
    return {"now": pending - openings.height, **dict(sorted(by_hour.items()))}
