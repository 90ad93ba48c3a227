"""Everything a job knows before the network: read, plan, filter, key each row by contact.

Shared by ``validate`` and ``run``.

The plan has one line per input row, in input order: ``row, to, from, parameters,
status, error_message, contact`` (and ``zones`` with a send window). ``contact`` is
the key dedupe uses (the normalized To; To and From with ``dedupe = "to_from"``; with
``dedupe = "none"`` also the row's place among that pair's rows), and the checkpoint's
key: a re-exported list whose rows moved still maps every outcome to its person.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import polars as pl

from ..digests import contact_hash, params_hash
from ..history import is_database_url, open_history, open_opt_outs
from ..inputs import Table, as_text, frame_digest, integer_columns, read_query, read_table, shown_name
from ..job import Cap, Spec, history_identity
from .again import KeyedInput, keyed_input
from .hygiene import apply_history, apply_opt_outs, apply_suppression, load_suppression
from .rewrites import Rewrite, rewrite_examples
from .rows import planned as planned_rows
from .rows import text_columns
from .variants import experiment_fingerprint, history_by_flow, hold_out, with_variants
from .windows import assign_zones

__all__ = ["Prepared", "caps", "contact_hash", "fingerprint", "marker_overhead", "params_hash", "prepare"]


@dataclass(frozen=True)
class Prepared:
    """A planned job: the plan frame, what binds a checkpoint to it, and a digest of the input it was read from."""

    plan: pl.DataFrame
    fingerprint: dict[str, Any]
    input_digest: str
    rewrites: tuple[Rewrite, ...] = ()
    key: str = ""
    """What the plan was made from (``again.keyed_input``), kept with it; empty: it is always made again."""
    kept: bool = False
    """The plan was taken from the checkpoint, as kept under ``key``: it needs no saving."""
    source_file: str | None = None
    """The file (or URL) the plan was read from, as messages show it; None for a frame, a query or stdin, whose
    rows the caller makes anew each time, so a list with none of the contacts reached is no sign of a wrong file."""


def fingerprint(spec: Spec) -> dict[str, Any]:
    """What binds a checkpoint to its job: Flow, API, mapping, planning settings (not the input: lists change)."""
    m = spec.mapping
    mapping = {
        "to": m.to,
        "from": m.from_,
        "from_column": m.from_column,
        "parameters": sorted(m.parameters),
        "static_parameters": m.static_parameters,
        "parameters_column": m.parameters_column,
        "default_region": m.default_region,
    }
    bound = {
        "flow_sid": spec.flow.sid,
        "api": spec.flow.api,
        "mapping": json.loads(json.dumps(mapping, sort_keys=True, default=str)),
        "planning": {
            "dedupe": spec.send.dedupe,
            "max_parameters_bytes": spec.send.max_parameters_bytes,
            "marker_key": spec.send.marker_key,
        },
    }
    experiment = experiment_fingerprint(spec)
    # Only a job with an experiment has the key: every other job's fingerprint stays what it was.
    if experiment is not None:
        bound["experiment"] = json.loads(json.dumps(experiment, sort_keys=True, default=str))
    return bound


def caps(spec: Spec) -> tuple[Cap | None, Cap | None]:
    """The job's frequency caps, parsed."""
    return spec.history.caps


def marker_overhead(marker_key: str) -> int:
    """Bytes the marker adds to a row's Parameters (``,"key":"<16 hex>:<16 hex>"``)."""
    return 0 if not marker_key else len("," + json.dumps(marker_key) + ":" + json.dumps("0" * 33))


def _contact(dedupe: str) -> pl.Expr:
    usable = pl.col("status") != "invalid"
    if dedupe == "to":
        key = pl.col("to")
    elif dedupe == "to_from":
        key = pl.concat_str([pl.col("to"), pl.col("from")], separator=" ")
    else:
        place = pl.col("row").rank("ordinal").over(pl.when(usable).then(pl.struct("to", "from")))
        key = pl.concat_str([pl.col("to"), pl.col("from"), pl.format("~{}", place)], separator=" ")
    return pl.when(usable).then(key).alias("contact")


def _with_marker(planned: pl.LazyFrame, spec: Spec) -> pl.LazyFrame:
    """A row whose Parameters would be over the limit once the marker is added is invalid, and says so; so is one
    whose ``parameters_column`` object already holds the marker's key."""
    key = spec.send.marker_key
    extra = marker_overhead(key)
    if not extra:
        return planned
    limit = spec.send.max_parameters_bytes
    sendable = pl.col("status") != "invalid"
    over = sendable & (pl.col("parameters").fill_null("{}").str.len_bytes() + extra > limit)
    reason: Any = pl.when(over).then(
        pl.lit(f"Parameters is over {limit} bytes with the marker (send.max_parameters_bytes)")
    )
    column = spec.mapping.parameters_column
    if column:
        # The body would carry the key twice (an old run's flow.data pasted back?), and which one Studio keeps is
        # not documented: a stale marker would make this contact's run look like someone else's to reconciliation.
        # Compact JSON: the key as a key (a nested one too, refused alike), never inside a string, whose quotes are
        # escaped.
        # The key as the Parameters spell it (non-ASCII as itself) or escaped, as another writer may have.
        spellings = "|".join(re.escape(json.dumps(key, ensure_ascii=a)) for a in (False, True))
        held = sendable & pl.col("parameters").str.contains(f"[{{,](?:{spellings}):").fill_null(False)
        reason = reason.when(held).then(
            pl.lit(f"{column}: holds {key!r}, the key batch-engage adds to prove a run is this job's (send.marker_key)")
        )
        over = over | held
    return planned.with_columns(
        status=pl.when(over).then(pl.lit("invalid")).otherwise(pl.col("status")),
        error_message=reason.otherwise(pl.col("error_message")),
    )


def prepare(
    spec: Spec,
    *,
    frame: pl.DataFrame | pl.LazyFrame | None = None,
    stdin: BinaryIO | None = None,
    job_owner: str | None = None,
    kept: Mapping[str, str] | None = None,
    rewrites: bool = False,
    digest: bool = True,
    stored: Callable[[str], pl.DataFrame | None] | None = None,
) -> Prepared:
    """Read and plan the input (suppression, caps, send-window zones, contact keys, variants); no call to Twilio.

    ``kept``: contacts already sent a variant (from the checkpoint), who keep it. ``rewrites`` also finds
    one example of each way a To was rewritten (for ``validate``; a run skips the cost). Without ``digest``
    the input's digest, which only a run keeps, is not taken (``input_digest`` is empty). ``stored``: the
    plan a resumed run's checkpoint keeps under a key, if any; taken instead of planning when the key is this
    plan's.
    """
    keyed = keyed_input(spec) if frame is None and digest else None
    if keyed is not None and stored is not None:
        plan = stored(keyed.key)
        if plan is not None:
            return Prepared(
                plan, fingerprint(spec), keyed.digest, key=keyed.key, kept=True, source_file=_file_name(spec, frame)
            )
    table = _read(spec, frame, stdin, digest=digest, keyed=keyed)
    key = keyed.key if keyed is not None else ""
    del keyed  # its bytes are read
    query = planned_rows(table.frame, spec, source_name=table.name, numbers=table.numbers)
    if spec.experiment is not None:
        contact = _contact(spec.send.dedupe)
        rows = with_variants(
            query.collect(), table.frame, spec, source_name=table.name, contact=contact, kept=kept or {}
        )
        query = rows.lazy()
    planned = _with_marker(query, spec).with_columns(_contact(spec.send.dedupe)).collect()
    if spec.send.window is not None:
        planned = assign_zones(planned, table.frame, spec)
    written = table.frame.get_column(spec.mapping.to) if rewrites else None
    taken = table.digest
    # The other input columns are done with: a million rows of them are worth giving back before the hygiene.
    del table
    planned = _hygiene(planned, spec, job_owner)
    examples = rewrite_examples(written, planned) if written is not None else ()
    return Prepared(
        plan=planned,
        fingerprint=fingerprint(spec),
        input_digest=taken,
        rewrites=examples,
        key=key,
        source_file=_file_name(spec, frame),
    )


def _file_name(spec: Spec, frame: object) -> str | None:
    """``Prepared.source_file``: the input file as shown, when the rows come from one (stdin too: a pipe from the
    wrong export is the same mistake as a path to it)."""
    path = spec.input.path
    if frame is not None or spec.input.query is not None or path is None:
        return None
    return shown_name(path)


def _read(
    spec: Spec,
    frame: pl.DataFrame | pl.LazyFrame | None,
    stdin: BinaryIO | None,
    *,
    digest: bool,
    keyed: KeyedInput | None = None,
) -> Table:
    """The job's rows: the frame given, the query's, or the file's; address and JSON columns as text."""
    if frame is not None:
        data = frame.collect() if isinstance(frame, pl.LazyFrame) else frame
        numbers = integer_columns(data, text_columns(spec.mapping))
        data = as_text(data, text_columns(spec.mapping), "(frame)")
        return Table(frame=data, digest=frame_digest(data) if digest else "", name="(frame)", numbers=numbers)
    if spec.input.query is not None:
        return read_query(spec.input, text_columns=text_columns(spec.mapping))
    raw = (keyed.raw, keyed.digest) if keyed is not None else None
    return read_table(spec.input, text_columns=text_columns(spec.mapping), stdin=stdin, digest=digest, raw=raw)


def _hygiene(planned: pl.DataFrame, spec: Spec, job_owner: str | None) -> pl.DataFrame:
    """Suppression lists, opt-outs, frequency caps against the history, and the experiment's holdout."""
    if spec.suppress.files:
        lists = load_suppression(spec.suppress.files, spec.suppress.column, spec.mapping.default_region)
        planned = apply_suppression(planned, lists)
    store = open_opt_outs(spec, create=False)
    if store is not None:
        with store:
            opted = store.opt_outs()
        planned = apply_opt_outs(planned, opted, everywhere=spec.suppress.opted_out == "everywhere")
    job_caps = caps(spec)
    known = spec.history.path and (is_database_url(spec.history.path) or Path(spec.history.path).exists())
    if spec.history.path and any(job_caps) and known:
        with open_history(spec.history.path) as history:
            owner = job_owner or history_identity(spec)
            if spec.experiment is None:
                planned = apply_history(planned, history, spec.flow.sid, *job_caps, job=owner)
            else:
                planned = history_by_flow(planned, history, spec, job_caps, job=owner)
    if spec.experiment is not None:
        planned = hold_out(planned)
    return planned
