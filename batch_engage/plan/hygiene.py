"""Campaign hygiene across runs at planning time: suppression lists, and frequency caps against the history.

The history itself (SQLite or PostgreSQL, claims, settlements and their owner format) lives in
``history.py``; this module only filters the plan against it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path

import polars as pl

from ..errors import InputFileError
from ..history import OPT_OUT_REASON, HistoryStore
from ..inputs import read_table, require_columns
from ..job import Cap, InputSpec
from . import phone

__all__ = ["apply_history", "apply_opt_outs", "apply_suppression", "load_suppression"]


def load_suppression(files: Iterable[str], column: str | None, default_region: str | None) -> dict[str, set[str]]:
    """Each suppression list's normalized addresses, by the list's file name.

    A list with an entry that is not a number it can read is refused (``InputFileError``, naming the first):
    the person it stands for would be messaged. Empty cells are skipped. A list with its header and no entries
    is empty (nobody has opted out yet); a file without even a header is refused.
    """
    lists: dict[str, set[str]] = {}
    for path in files:
        table = read_table(
            InputSpec(path=path), text_columns=[column] if column else [], digest=False, header_only=True
        )
        frame, shown = table.frame, table.name
        if not frame.width:
            raise InputFileError(shown, "has no columns, so no numbers to hold back (set suppress.column?)")
        name = column or frame.columns[0]
        require_columns(shown, frame, [("suppress.column", name)])
        cells = frame[name].cast(pl.String)
        # The column as read (numbers too, whose leading zero may be gone), or as its text columns say it was.
        normalized = phone.normalize(frame[name], default_region, what="entry", numbers=name in table.numbers)
        unread = (normalized["reason"].is_not_null() & cells.str.strip_chars().fill_null("").ne("")).arg_true()
        if len(unread):
            raise InputFileError(
                shown,
                f"{len(unread)} of its {frame.height} entries cannot be read as phone numbers, so those people "
                f"could be messaged; the first, row {unread[0] + 1}: {normalized['reason'][unread[0]]} (is "
                "suppress.column the column of numbers? are they written without a country code and "
                "mapping.default_region unset?)",
                column=name,
            )
        # A URL's list is named by its file, never its query: the name is written into every row it holds back.
        listed = normalized["address"].filter(normalized["reason"].is_null())
        lists[_unique(Path(shown).name.removesuffix("?…"), lists)] = set(listed.to_list())
    return lists


def _unique(name: str, taken: Mapping[str, object]) -> str:
    """``name``, or ``name (2)``, ``(3)`` … when another list has it (two folders' optout.csv, two queries of one
    URL): a list named as another would replace it, and its people be messaged."""
    if name not in taken:
        return name
    return next(f"{name} ({n})" for n in range(2, len(taken) + 2) if f"{name} ({n})" not in taken)


def apply_suppression(plan: pl.DataFrame, lists: Mapping[str, set[str]]) -> pl.DataFrame:
    """Mark pending rows whose To is on a list ``suppressed``, naming the list.

    A number on a list stands for the person, on every channel: ``+14155550100`` holds ``whatsapp:+14155550100``
    back too. An entry written with its channel (``whatsapp:+1…``) holds back that channel only.
    """
    # Only a plan with channel addresses pays for their numbers: most have none.
    channels = bool(plan.get_column("to").str.contains(r"^[a-z]+:\+").any())
    if channels:
        plan = plan.with_columns(_number=pl.col("to").str.replace(r"^[a-z]+:", ""))
    for name, numbers in lists.items():
        listed = pl.col("to").is_in(list(numbers))
        if channels:
            listed = listed | pl.col("_number").is_in([n for n in numbers if n.startswith("+")])
        hit = (pl.col("status") == "pending") & listed
        plan = plan.with_columns(
            status=pl.when(hit).then(pl.lit("suppressed")).otherwise(pl.col("status")),
            error_message=pl.when(hit).then(pl.lit(f"on suppression list {name}")).otherwise(pl.col("error_message")),
        )
    return plan.drop("_number") if channels else plan


def apply_opt_outs(plan: pl.DataFrame, opt_outs: pl.DataFrame, *, everywhere: bool) -> pl.DataFrame:
    """Mark pending rows ``suppressed`` whose contact opted out of the row's From (of any sender: ``everywhere``).

    Twilio scopes an opt-out to the sender it was sent to (a number, or a whole Messaging Service);
    a From that is a number of a service is not matched against the service here (that needs the network).
    """
    if opt_outs.height == 0:
        return plan
    if everywhere:
        hit = pl.col("to").is_in(opt_outs.get_column("to").unique().implode())
    else:
        pairs = (opt_outs.get_column("to") + "\x1f" + opt_outs.get_column("sender")).unique()
        hit = (pl.col("to") + "\x1f" + pl.col("from").fill_null("")).is_in(pairs.implode())
    hit = (pl.col("status") == "pending") & hit
    return plan.with_columns(
        status=pl.when(hit).then(pl.lit("suppressed")).otherwise(pl.col("status")),
        error_message=pl.when(hit).then(pl.lit(OPT_OUT_REASON)).otherwise(pl.col("error_message")),
    )


def apply_history(
    plan: pl.DataFrame, history: HistoryStore, flow_sid: str, cap: Cap | None, flow_cap: Cap | None, *, job: str
) -> pl.DataFrame:
    """Mark pending rows whose contact was reached within a cap ``capped``, with the earlier contact."""
    if cap is None and flow_cap is None:
        return plan
    longest = max(c.seconds for c in (cap, flow_cap) if c is not None)
    recent = history.recent_addresses(longest)
    # Only contacts the history holds need the exact (per-contact) check.
    pending = plan.filter((pl.col("status") == "pending") & pl.col("to").is_in(list(recent))).select("row", "to")
    messages: dict[int, str] = {}
    for row, to in pending.iter_rows():
        blocker = history.check(to, flow_sid, cap, flow_cap, job=job)
        if blocker is not None:
            messages[row] = blocker[0].describe(blocker[1])
    if not messages:
        return plan
    capped = pl.DataFrame(
        {"row": list(messages), "cap_message": list(messages.values())},
        schema={"row": pl.Int64, "cap_message": pl.String},
    )
    joined = plan.join(capped, on="row", how="left", maintain_order="left")
    hit = pl.col("cap_message").is_not_null()
    return joined.with_columns(
        status=pl.when(hit).then(pl.lit("capped")).otherwise(pl.col("status")),
        error_message=pl.when(hit).then(pl.col("cap_message")).otherwise(pl.col("error_message")),
    ).drop("cap_message")
