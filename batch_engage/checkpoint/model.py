"""What a checkpoint holds, whichever backend keeps it: target, intents, outcomes, per-second counters, the interface.

:mod:`batch_engage._checkpoint_sqlite` and :mod:`batch_engage.checkpoint_pg` both build on
this (and on :mod:`batch_engage._checkpoint_binding`), so neither imports the other.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from datetime import datetime
from typing import Any, Protocol, Self, TypedDict

import polars as pl

from ..errors import CheckpointMismatch, UsageError
from ..states import RowState
from .runlog import LostLines
from .schema import JOURNAL_COLUMNS, SCHEMA_VERSION

__all__ = [
    "CheckpointStore",
    "CheckpointView",
    "Intent",
    "OpenOptions",
    "Outcome",
    "RestartOptions",
    "SecondStats",
    "StoreBase",
    "Target",
    "achieved_rate",
    "contacts_from_text",
    "empty_journal",
    "journal_frame",
    "reached_frame",
    "states_from_parts",
    "states_from_text",
]


@dataclass(frozen=True, kw_only=True)
class Target:
    """The Twilio a checkpoint's runs were made against: where, as whom, and whether it was the sandbox."""

    base_url: str
    identity: str | None
    sandbox: bool = False
    account: str | None = None

    def __post_init__(self) -> None:
        """An Account SID identity names its account; an API key's account is learned from the Flow."""
        if self.account is None and self.identity and self.identity.startswith("AC"):
            object.__setattr__(self, "account", self.identity)

    def describe(self) -> str:
        """The target in words, for error messages (an identity is a SID, never a secret)."""
        if self.sandbox:
            return "the sandbox"
        who = f" as {self.identity}" if self.identity else ""
        account = f" (account {self.account})" if self.account and self.account != self.identity else ""
        return f"{self.base_url}{who}{account}"

    def differs(self, other: Target) -> bool:
        """True when runs made against ``self`` cannot be found through ``other``.

        Accounts are compared, not credentials: a rotated API key, or a key instead of the
        Account SID, reaches the same runs. An account not known yet (an API key before the
        preflight has read the Flow's ``account_sid``) matches any.
        """
        if self.sandbox != other.sandbox or (not self.sandbox and self.base_url != other.base_url):
            return True
        return self.account is not None and other.account is not None and self.account != other.account


class RestartOptions(TypedDict, total=False):
    """Whether to start the job over (``restart``), and the operator's consent to forget what it reached (``yes``)."""

    restart: bool
    yes: bool


class OpenOptions(RestartOptions, total=False):
    """:class:`RestartOptions`, and what a new checkpoint's meta holds besides the binding (``extra_meta``)."""

    extra_meta: Mapping[str, str] | None


# Intent and Outcome are made for every row a run sends: not frozen, since a frozen dataclass sets each field
# through object.__setattr__ (0.9 us a line against 0.4). Nothing changes them once made.
@dataclass(slots=True)
class Intent:
    """A contact about to be sent: who, from which row, and the marker its Parameters carry."""

    contact: str
    row: int
    to: str
    from_: str
    params_hash: str
    marker: str | None
    variant: str | None = None  # the experiment's variant it is sent (None: a job without one)


@dataclass(slots=True)
class Outcome:
    """One contact's answer, as the journal records it."""

    contact: str
    state: RowState
    sid: str | None = None
    http_status: int | None = None
    error_code: int | None = None
    error_message: str | None = None
    attempts: int = 0
    completed_at: str | None = None
    ended_sid: str | None = None  # the earlier run of this job ended for it ([send] on_active = "end")


def achieved_rate(seconds: Iterable[tuple[int, int]]) -> float | None:
    """The pace a run held: 2xx answers per full second of sending, from ``(requests, ok)`` per second, in order.

    The first and last seconds with a request are partly idle (a run rarely starts or ends on a second's
    edge), so where there are seconds between them only those count: 195 rows at 20/s over parts of 11
    seconds are 20/s, not 17.7. A run of one or two seconds has none between: its answers per second.
    None if nothing was sent. The one definition: the run's summary and the report page both call it.
    """
    active = [(requests, ok) for requests, ok in seconds if requests > 0]
    if len(active) >= 3:
        active = active[1:-1]
    return sum(ok for _, ok in active) / len(active) if active else None


@dataclass(frozen=True, kw_only=True)
class SecondStats:
    """What one run did in one second: the run-events table's line."""

    second: int
    requests: int = 0
    ok: int = 0
    rate_limited: int = 0
    retries: int = 0
    lookups: int = 0
    pacer_rate: float = 0.0


@dataclass(frozen=True)
class CheckpointView:
    """A checkpoint read without its lock: plan, journal, meta, runs, events, and whether a run holds it now."""

    plan: pl.DataFrame | None
    journal: pl.DataFrame
    meta: dict[str, str]
    runs: pl.DataFrame
    events: pl.DataFrame | None
    live: bool
    modified: datetime
    latest_line: str | None = None
    """A brief read's latest intent or completion stamp over every line (its ``sent`` lines come without theirs);
    None: the journal's own stamps say it."""


def empty_journal() -> pl.DataFrame:
    """A journal with no lines (a job that has never sent)."""
    return pl.DataFrame(schema=JOURNAL_COLUMNS)


def journal_frame(rows: list[tuple[Any, ...]]) -> pl.DataFrame:
    """Journal lines (in :data:`JOURNAL_COLUMNS` order) as a frame."""
    return pl.DataFrame(rows, schema=JOURNAL_COLUMNS, orient="row") if rows else empty_journal()


def contacts_from_text(text: str | None) -> pl.Series:
    """Contacts aggregated into one newline-separated text by the database, as a series.

    Splitting one string in polars takes ~0.2 s for a million contacts, where fetching
    them as Python tuples takes seconds (a resumed job's first request waits on it).
    """
    if not text:
        return pl.Series("contact", [], dtype=pl.String)
    return pl.Series("contact", [text]).str.split("\n").explode()


_STATES_SCHEMA = {"contact": pl.String, "state": pl.String, "input": pl.Categorical}


def states_from_text(contacts: str | None, states: str | None, others: str | None, usual: str | None) -> pl.DataFrame:
    """Contacts and states aggregated by the database into newline-separated texts (in one order), and the
    lines written for another input than ``usual`` (the last run's) as ``contact<TAB>input`` lines (no
    digest: empty), as the frame ``states`` returns.

    Only the few lines of an earlier export carry their digest: 33 bytes a line for the database to join and
    polars to split were a third of a resumed run's wait.
    """
    if not contacts or states is None:
        return pl.DataFrame(schema=_STATES_SCHEMA)
    frame = pl.DataFrame({"contact": [contacts], "state": [states]}).select(pl.all().str.split("\n").explode())
    return _with_inputs(frame, others, usual)


def states_from_parts(
    contacts: str | None, unsent: Sequence[tuple[str, str]], others: str | None, usual: str | None
) -> pl.DataFrame:
    """Every line's contact (one newline-separated text), the ``(contact, state)`` of the lines not ``sent``,
    and the lines of another input than ``usual`` (as :func:`states_from_text`), as the frame ``states`` returns.

    Read this way, the contacts come from their own index and the states of the few lines not sent from the
    state's: a third of the table's bytes for the database to walk.
    """
    if not contacts:
        return pl.DataFrame(schema=_STATES_SCHEMA)
    frame = pl.DataFrame({"contact": [contacts]}).select(pl.col("contact").str.split("\n").explode())
    frame = frame.with_columns(state=pl.lit(RowState.SENT.value))
    if unsent:
        other = pl.DataFrame(list(unsent), schema={"contact": pl.String, "state": pl.String}, orient="row")
        known = frame.filter(~pl.col("contact").is_in(other.get_column("contact").implode()))
        frame = pl.concat([known, other])
    return _with_inputs(frame, others, usual)


def _with_inputs(frame: pl.DataFrame, others: str | None, usual: str | None) -> pl.DataFrame:
    """``frame`` with each line's ``input``: ``usual``, but for the ``contact<TAB>input`` lines of ``others``."""
    frame = frame.with_columns(input=pl.lit(usual or None, pl.String))
    if others:
        lines = pl.Series([others]).str.split("\n").explode().str.split_exact("\t", 1)
        written = lines.struct.rename_fields(["contact", "input"]).struct.unnest()
        given = pl.col("input")
        frame = frame.update(
            written.with_columns(pl.when(given != "").then(given).alias("input")), on="contact", include_nulls=True
        )
    return frame.with_columns(pl.col("input").cast(pl.Categorical))


def reached_frame(rows: Iterable[tuple[Any, ...]]) -> pl.DataFrame:
    """``(contact, params_hash)`` rows as the frame :meth:`CheckpointStore.reached_for_other_input` returns."""
    return pl.DataFrame(list(rows), schema={"contact": pl.String, "params_hash": pl.String}, orient="row")


class StoreBase:
    """What both backends' open checkpoints share: their meta's target, and use as a context manager."""

    meta: dict[str, str]
    # Set on open when the journal holds fewer intents than its run log counts (file checkpoints only).
    lost: LostLines | None = None
    # Whether the hold can go stale (a lease another machine may take over): see ``holds``.
    leased: bool = False

    @property
    def target(self) -> Target:
        """The Twilio this checkpoint's runs were made against."""
        return Target(**json.loads(self.meta["target"]))

    def acknowledge_lost(self) -> None:
        """The lost lines are marked possibly sent: the journal counts what its run log does again."""
        self.lost = None

    def close(self) -> None:
        """Close it and release the lock."""
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class CheckpointStore(Protocol):
    """What a run uses of its checkpoint, whichever backend holds it (:class:`Checkpoint` or ``PgCheckpoint``)."""

    token: str
    meta: dict[str, str]
    run_id: int | None
    lost: LostLines | None
    leased: bool

    def acknowledge_lost(self) -> None:
        """The lost lines are marked possibly sent: the journal counts what its run log does again."""

    def close(self) -> None:
        """Close it and release the lock."""

    def holds(self) -> bool:
        """Whether this run may still send: it still holds the job (a lease-based backend may lose it)."""
        ...

    def __enter__(self) -> CheckpointStore: ...

    def __exit__(self, *exc: object) -> None: ...

    def save_plan(self, plan: pl.DataFrame, key: str = "") -> None:
        """Keep the plan with the journal, and the ``key`` it was made from (``plan.plan_key``) where it is a file."""

    def start_run(self, started_at: str, input_digest: str) -> int:
        """Record that a run starts."""
        ...

    def finish_run(self, stopped_at: str, exit_code: int) -> None:
        """Record how this run ended."""

    def write_events(self, seconds: Iterable[SecondStats]) -> None:
        """Add this run's per-second counters."""

    def write_intents(self, intents: Iterable[Intent], *, at: str, twilio_at: str | None) -> None:
        """Commit intents before their requests leave."""

    def write_outcomes(self, outcomes: Iterable[Outcome]) -> None:
        """Commit a group of outcomes."""

    def journal(self) -> pl.DataFrame:
        """Every journal line."""
        ...

    def result_lines(self) -> pl.DataFrame:
        """The journal's lines as the run's results table needs them (at least its columns, in any order)."""
        ...

    def open_lines(self) -> pl.DataFrame:
        """The lines a run still has to act on."""
        ...

    @property
    def target(self) -> Target:
        """The Twilio this checkpoint's runs were made against."""
        ...

    def learn_account(self, account_sid: str) -> None:
        """Refuse another account; remember this one."""

    def remember(self, key: str, value: str) -> None:
        """Keep a note beside the binding (the preflight's projection, say)."""

    def contacts_in(self, states: frozenset[RowState]) -> pl.Series:
        """Contacts whose line is in one of ``states``."""
        ...

    def states(self) -> pl.DataFrame:
        """Every line's contact, state and the digest of the input it was written for."""
        ...

    def reached_for_other_input(self, input_digest: str) -> pl.DataFrame:
        """Contacts reached by runs for another input: contact, params_hash."""
        ...

    def sids_since(self, since_iso: str) -> set[str]:
        """SIDs attributed since a moment."""
        ...


def with_account(meta: Mapping[str, str], account_sid: str, *, where: str) -> str | None:
    """The target JSON with the account the Flow belongs to, when it was not known yet (None: nothing to store).

    Raises ``CheckpointMismatch`` when the checkpoint's runs were made in another account.
    """
    was = Target(**json.loads(meta["target"]))
    if was.account is not None and was.account != account_sid:
        raise CheckpointMismatch(
            f"{where}: this checkpoint's runs were made in account {was.account}, and these credentials "
            f"reach account {account_sid}; nothing was sent. Use another --checkpoint for that account, "
            "or --restart --yes to forget this one."
        )
    return None if was.account is not None else json.dumps(asdict(replace(was, account=account_sid)), sort_keys=True)


def check_readable(where: object, meta: Mapping[str, str]) -> None:
    """Refuse (``UsageError``) to read a checkpoint of another format."""
    if meta.get("version") != SCHEMA_VERSION:
        raise UsageError(
            f"{where}: written by another version of batch-engage (checkpoint format "
            f"{meta.get('version', '?')}); read it with that version"
        )
