"""The results table: the plan joined with the journal by contact, one line per input row."""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Mapping
from pathlib import Path

import polars as pl

from .digests import params_hash
from .disk import write_atomically

# Re-exported: older callers import them from here; exits is their home.
from .exits import EXIT_ABORTED, EXIT_OK, EXIT_SOME_FAILED, EXIT_TEMPFAIL, EXIT_USAGE, exit_code_for
from .states import FINAL, REACHED, RowState

__all__ = [
    "EXIT_ABORTED",
    "EXIT_OK",
    "EXIT_SOME_FAILED",
    "EXIT_TEMPFAIL",
    "EXIT_USAGE",
    "EXPERIMENT_STATUSES",
    "NOT_SENT_YET",
    "RESULT_COLUMNS",
    "SEGMENTS_META",
    "STATUSES",
    "build_results",
    "counts_by_status",
    "exit_code_for",
    "guard_formulas",
    "stored_segments",
    "unguarded",
    "with_segments",
    "write_results",
]

REACHED_EARLIER = "reached by an earlier run"
NOT_SENT_YET = "not sent yet: run the same command again to send it"
UNCERTAIN_REASON = (
    "no answer came back for the request, so Twilio may have created the run; "
    "the next run looks for it by its marker before sending again"
)
RESULT_COLUMNS = [
    "row",
    "to",
    "from",
    "status",
    "sid",
    "http_status",
    "error_code",
    "error_message",
    "attempts",
    "completed_at",
    "ended_sid",
    # Appended (columns are only ever added at the end): the experiment's variant, or "holdout"; null without one.
    "variant",
    "segments",
]
STATUSES = (
    "sent",
    "already_active",
    "failed",
    "invalid",
    "duplicate",
    "suppressed",
    "capped",
    "holdout",
    "uncertain",
    "pending",
)


EXPERIMENT_STATUSES = ("holdout",)
"""Statuses only a job with an ``[experiment]`` has (counted, and shown as tiles, only there)."""


def build_results(
    plan: pl.DataFrame,
    journal: pl.DataFrame,
    *,
    input_digest: str | None = None,
    live: bool = False,
    pending_reason: str | None = None,
) -> pl.DataFrame:
    """Project plan + journal into the results table, in input order.

    A contact whose line was written for another input (an earlier export of the list)
    and reached shows that run, with the message "reached by an earlier run". With
    ``live`` (a run holds the checkpoint now) a contact whose request is out shows
    ``in_flight`` rather than ``uncertain``. ``pending_reason`` is what a ``pending`` row says when its
    line says nothing (why the run left it).
    """
    lines = journal.select(
        "contact",
        "state",
        "sid",
        "http_status",
        "error_code",
        pl.col("error_message").alias("line_message"),
        "attempts",
        "completed_at",
        "ended_sid",
        pl.col("input").alias("line_input"),
        pl.col("variant").alias("line_variant")
        if "variant" in journal.columns
        else pl.lit(None, pl.String).alias("line_variant"),
    )
    joined = _credit_rows_sent(plan, journal).join(lines, on="contact", how="left", maintain_order="left")
    # What this job did outranks what the history says now: a contact it reached, capped since
    # (by another job, or by claims it wrote before a history told jobs apart), shows that run.
    reached = pl.col("state").is_in([s.value for s in REACHED])
    reached_then_capped = ((pl.col("status") == "capped") & reached).fill_null(False)
    sendable = (pl.col("status") == "pending") | reached_then_capped
    status = _status(sendable, live=live)
    message = _message(sendable, input_digest, pending_reason)
    return joined.select(
        pl.col("row"),
        pl.col("to"),
        pl.col("from"),
        status.alias("status"),
        pl.when(sendable).then(pl.col("sid")).alias("sid"),
        pl.when(sendable).then(pl.col("http_status")).alias("http_status"),
        pl.when(sendable).then(pl.col("error_code")).alias("error_code"),
        _with_reason(status, message).alias("error_message"),
        pl.when(sendable).then(pl.col("attempts")).fill_null(0).alias("attempts"),
        pl.when(sendable).then(pl.col("completed_at")).alias("completed_at"),
        pl.when(sendable).then(pl.col("ended_sid")).alias("ended_sid"),
        _variant(joined.columns),
        # Filled by the preflight's arrival check (with_segments); empty without one.
        pl.lit(None, dtype=pl.Int64).alias("segments"),
    )


def _credit_rows_sent(plan: pl.DataFrame, journal: pl.DataFrame) -> pl.DataFrame:
    """The plan with each reached contact's run credited to the row sent with its Parameters, the others repeats.

    A list re-exported with a new row above one reached (one person, twice, with other Parameters) makes the
    new row the contact's first: without this, it took the run's SID and the row sent read ``duplicate``.
    """
    # A brief read (the page's) has no Parameters: its counts are the same either way.
    if "params_hash" not in journal.columns or "parameters" not in plan.columns:
        return plan
    if not plan.get_column("status").eq("duplicate").any():
        return plan
    repeated = plan.filter(pl.col("status") == "duplicate").get_column("contact").unique()
    reached = [s.value for s in REACHED]
    sent = journal.filter(pl.col("contact").is_in(repeated.implode()) & pl.col("state").is_in(reached))
    if sent.is_empty():
        return plan
    hashes = dict(sent.select("contact", "params_hash").iter_rows())
    rows = plan.filter(pl.col("contact").is_in(list(hashes)) & pl.col("status").is_in(["pending", "duplicate"]))
    first: dict[str, int] = {}
    credited: dict[str, int] = {}
    for contact, row, status, parameters in rows.select("contact", "row", "status", "parameters").iter_rows():
        if status == "pending":
            first[contact] = row
        if contact not in credited and params_hash(parameters) == hashes[contact]:
            credited[contact] = row
    moved = {c: row for c, row in credited.items() if first.get(c, row) != row}
    if not moved:
        return plan
    new_first = pl.col("contact").replace_strict(moved, default=None, return_dtype=pl.Int64)
    touched = new_first.is_not_null() & pl.col("status").is_in(["pending", "duplicate"])
    again = pl.col("row") != new_first
    # The words of the contact's repeats ("same contact and sender as row 2"), now naming the credited row.
    words = pl.when(pl.col("status") == "duplicate").then(pl.col("error_message").str.replace(r"\d+$", ""))
    repeat_of = words.max().over("contact")
    return plan.with_columns(
        status=pl.when(touched)
        .then(pl.when(again).then(pl.lit("duplicate")).otherwise(pl.lit("pending")))
        .otherwise(pl.col("status")),
        error_message=pl.when(touched)
        .then(pl.when(again).then(pl.format("{}{}", repeat_of, new_first)))
        .otherwise(pl.col("error_message")),
    )


def _status(sendable: pl.Expr, *, live: bool) -> pl.Expr:
    """A row's status: the plan's, unless it was sendable; then its line's (an intent: in flight or uncertain)."""
    state = pl.col("state")
    return (
        pl.when(~sendable)
        .then(pl.col("status"))
        .when(state.is_in([s.value for s in FINAL | {RowState.UNCERTAIN, RowState.WAITING_ACTIVE}]))
        .then(state)
        .when(state == RowState.INTENT.value)
        .then(pl.lit("in_flight" if live else "uncertain"))
        .otherwise(pl.lit("pending"))
    )


def _message(sendable: pl.Expr, input_digest: str | None, pending_reason: str | None) -> pl.Expr:
    """A row's message: the plan's, "reached by an earlier run", its line's, or why a pending row waits."""
    state = pl.col("state")
    earlier = (
        state.is_in([s.value for s in REACHED])
        & pl.col("line_input").is_not_null()
        & (pl.col("line_input") != input_digest)
        if input_digest is not None
        else pl.lit(False)
    )
    return (
        pl.when(~sendable)
        .then(pl.col("error_message"))
        .when(earlier)
        .then(pl.lit(REACHED_EARLIER))
        .when(state.is_not_null() & (state != RowState.PENDING.value))
        .then(pl.col("line_message"))
        .otherwise(pl.lit(pending_reason, dtype=pl.String))
    )


def _with_reason(status: pl.Expr, message: pl.Expr) -> pl.Expr:
    """An ``uncertain`` row always says why, and what happens to it next."""
    return pl.when(status == "uncertain").then(pl.coalesce(message, pl.lit(UNCERTAIN_REASON))).otherwise(message)


def _variant(columns: list[str]) -> pl.Expr:
    """The variant a contact was sent (the journal's), else the one the plan gives it; null without an experiment."""
    planned = pl.col("variant") if "variant" in columns else pl.lit(None, pl.String)
    return pl.coalesce(pl.col("line_variant"), planned).cast(pl.String).alias("variant")


SEGMENTS_META = "segments"
"""The checkpoint's note of each row's first-message segments (JSON ``{row: segments}``), kept by the preflight."""


def stored_segments(meta: Mapping[str, str]) -> dict[int, int] | None:
    """The segments a run's preflight kept in the checkpoint (None: none kept)."""
    raw = meta.get(SEGMENTS_META)
    return {int(row): int(n) for row, n in json.loads(raw).items()} if raw else None


def with_segments(results: pl.DataFrame, first: Mapping[int, int] | None) -> pl.DataFrame:
    """The results with ``segments``: the SMS segments of each row's first message (empty where unknown)."""
    if not first:
        return results
    counts = pl.DataFrame(
        {"row": list(first), "_segments": list(first.values())}, schema={"row": pl.Int64, "_segments": pl.Int64}
    )
    joined = results.join(counts, on="row", how="left", maintain_order="left")
    return joined.with_columns(segments=pl.col("_segments")).drop("_segments")


def counts_by_status(results: pl.DataFrame) -> dict[str, int]:
    """Rows per status: every usual status (zero where none), then any other found (``in_flight``).

    ``holdout`` is usual only in a job with an experiment (a ``variant`` somewhere): the counts of
    every other job stay what they were.
    """
    found = Counter(dict(results.group_by("status").len().iter_rows()))
    experiment = "variant" in results.columns and results.get_column("variant").is_not_null().any()
    usual = STATUSES if experiment else tuple(s for s in STATUSES if s not in EXPERIMENT_STATUSES)
    counts = {status: int(found.get(status, 0)) for status in usual}
    counts.update({status: int(n) for status, n in sorted(found.items()) if status not in counts})
    return counts


# OWASP's CSV injection rule: a spreadsheet runs a cell that starts with one of these as a formula; ASVS adds NUL,
# and a line feed or spaces before one are trimmed by some spreadsheets' imports.
_FORMULA_START = r"^(?:[=+\-@\t\r\n\x00]|\s+[=+\-@])"
# C0 and C1 controls but tab, line feed and carriage return (a CSV cell holds those quoted).
_CONTROL = r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]"
# A phone number as sent (``+14155550100``, ``whatsapp:+14155550100``) is the one such text that is data.
_PLAIN_NUMBER = r"^(?:whatsapp:)?\+[0-9]+$"


def guard_formulas(table: pl.DataFrame) -> pl.DataFrame:
    """Every text cell a spreadsheet would run as a formula, behind a leading ``'`` (OWASP); E.164 numbers exempt.

    Anyone can text a Flow, so a reply (or a name in the input) may be ``=HYPERLINK(…)``;
    a campaign owner opening the CSV in Excel must see it as text.
    """
    texts = [name for name, dtype in table.schema.items() if dtype == pl.String]
    if not texts:
        return table
    # A control character (an input cell's ESC [2J) reaches whoever cats the file: shown as U+FFFD instead.
    return table.with_columns(
        pl.when(pl.col(c).str.contains(_FORMULA_START) & ~pl.col(c).str.contains(_PLAIN_NUMBER))
        .then(pl.lit("'") + pl.col(c))
        .otherwise(pl.col(c))
        .str.replace_all(_CONTROL, "\ufffd")
        .alias(c)
        for c in texts
    )


def unguarded(text: str) -> str:
    """A cell read back from a guarded CSV, without the ``'`` :func:`guard_formulas` put before it."""
    return text[1:] if text.startswith("'") and re.match(_FORMULA_START, text[1:]) else text


def write_results(results: pl.DataFrame, path: str | Path, *, csv_guard: bool = True) -> Path:
    """Write atomically, readable by the owner only; CSV or Parquet by extension.

    A CSV's formula-like text cells are guarded (:func:`guard_formulas`) unless ``csv_guard`` is off;
    Parquet keeps the raw text (code reads it, not a spreadsheet).
    """
    target = Path(path)
    if target.suffix == ".parquet":
        return write_atomically(target, results.write_parquet)
    table = guard_formulas(results) if csv_guard else results
    return write_atomically(target, table.write_csv)
