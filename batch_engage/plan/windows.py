"""Per-recipient send windows: reach people only at a decent hour of their own day.

A recipient's zone comes from ``[mapping] timezone_column`` (an IANA name), else from
the number itself (``phonenumbers.timezone``), else ``[send] default_timezone``. A
number whose numbering area spans several zones gets all of them, and the window is
open only when it is open in every one: nobody is reached early or late.
"""

from __future__ import annotations

from datetime import UTC, datetime

import phonenumbers
import polars as pl
from phonenumbers import timezone as phone_timezone

from ..errors import InputFileError
from ..job import DAYS, SendWindow, Spec, parse_window, valid_zone, window_openings

__all__ = [
    "DAYS",
    "SendWindow",
    "annotate_windows",
    "assign_zones",
    "parse_window",
    "send_window",
    "valid_zone",
    "zones_for_rows",
]

_UNKNOWN = "Etc/Unknown"


def _number_zones(address: str) -> tuple[str, ...]:
    number = address.removeprefix("whatsapp:")
    if not number.startswith("+"):
        return ()
    try:
        parsed = phonenumbers.parse(number, None)
    except phonenumbers.NumberParseException:
        return ()
    return tuple(sorted(z for z in phone_timezone.time_zones_for_number(parsed) if z != _UNKNOWN))


def zones_for_rows(
    to: pl.Series, explicit: pl.Series | None, default_timezone: str | None
) -> tuple[pl.Series, pl.Series]:
    """Each row's zones (comma-joined) and, where no zone can be found, the reason.

    Looked up once per distinct number prefix would be faster; once per distinct
    address is what phonenumbers offers, and distinct addresses are what a list holds.
    """
    addresses = to.to_list()
    given = explicit.to_list() if explicit is not None else [None] * len(addresses)
    zones: list[str | None] = []
    reasons: list[str | None] = []
    cache: dict[str, tuple[str, ...]] = {}
    for address, name in zip(addresses, given, strict=True):
        if name:
            if valid_zone(name):
                zones.append(name)
                reasons.append(None)
            else:
                zones.append(None)
                reasons.append(f"unknown time zone {name!r} (use an IANA name such as 'America/Chicago')")
            continue
        found = cache.get(address) if address else ()
        if found is None:
            found = cache[address] = _number_zones(address)
        if found:
            zones.append(",".join(found))
            reasons.append(None)
        elif default_timezone:
            zones.append(default_timezone)
            reasons.append(None)
        else:
            zones.append(None)
            reasons.append("no time zone for this address (set send.default_timezone or mapping.timezone_column)")
    return pl.Series("zones", zones, dtype=pl.String), pl.Series("zone_reason", reasons, dtype=pl.String)


def send_window(spec: Spec) -> SendWindow | None:
    """The job's send window, if it has one."""
    return spec.send.send_window


def assign_zones(planned: pl.DataFrame, frame: pl.DataFrame, spec: Spec) -> pl.DataFrame:
    """Each pending row's time zones; a row with none to go by is invalid."""
    column = spec.mapping.timezone_column
    if column is not None and column not in frame.columns:
        raise InputFileError(
            "input",
            f"mapping.timezone_column names a column that does not exist (columns: {', '.join(frame.columns)})",
            column=column,
        )
    explicit = frame.get_column(column).cast(pl.String) if column else None
    zones, reasons = zones_for_rows(planned.get_column("to"), explicit, spec.send.default_timezone)
    window = send_window(spec)
    assert window is not None
    # A window that is never open in all of a number's zones at once would hold its row forever.
    never = {
        z
        for z in zones.drop_nulls().unique().to_list()
        if window.next_open(tuple(z.split(",")), datetime.now(UTC)) is None
    }
    reasons = pl.Series(
        "zone_reason",
        [
            f"the send window {spec.send.window} is never open in all of this number's zones ({z})" if z in never else r
            for z, r in zip(zones.to_list(), reasons.to_list(), strict=True)
        ],
        dtype=pl.String,
    )
    pending = pl.col("status") == "pending"
    bad = pending & pl.col("zone_reason").is_not_null()
    return (
        planned.with_columns(zones, reasons)
        .with_columns(
            status=pl.when(bad).then(pl.lit("invalid")).otherwise(pl.col("status")),
            error_message=pl.when(bad).then(pl.col("zone_reason")).otherwise(pl.col("error_message")),
            zones=pl.when(pending & ~bad).then(pl.col("zones")),
        )
        .drop("zone_reason")
    )


def annotate_windows(plan: pl.DataFrame, results: pl.DataFrame, spec: Spec, now: datetime) -> pl.DataFrame:
    """Say, in ``error_message``, when each row waiting for its send window opens."""
    openings = window_openings(plan, results, spec, now)
    if openings.height == 0:
        return results
    note = pl.format(
        "outside the send window {} local; opens at {}",
        pl.lit(spec.send.window),
        pl.col("opens").dt.strftime("%Y-%m-%dT%H:%M:%SZ").fill_null("never (no allowed day)"),
    )
    return (
        results.join(openings, on="row", how="left", maintain_order="left")
        .with_columns(
            error_message=pl.when(pl.col("opens").is_not_null()).then(note).otherwise(pl.col("error_message"))
        )
        .drop("opens")
    )
