"""What makes a job one job in a shared history: its ``[job] id`` as written, and the place that holds its state.

A file name is not an identity: ``a/job.toml`` and ``b/job.toml`` both default to the id ``job``,
and if a history told jobs apart by that alone, each would take the other's claims for its own
and neither would cap the other. The place that holds a job's state does tell them apart: two
jobs can share a checkpoint folder (or database) only under different ids, since the same id
there would be the same checkpoint. Periods and checkpoints moved aside by ``--restart`` keep
both the id as written and the place, so they stay one job.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

from ..postgres import DEFAULT_SCHEMA, server_of
from .spec import Spec

__all__ = ["history_identity", "table_owner"]

_POSTGRES = ("postgresql://", "postgres://")


def _place(checkpoint: str) -> str:
    """Where a checkpoint's state lives: its folder (absolute), or its database and schema (never a password)."""
    if checkpoint.startswith(_POSTGRES):
        parts = urlsplit(checkpoint)
        schema = dict(parse_qsl(parts.query)).get("schema", DEFAULT_SCHEMA)
        return f"postgresql://{server_of(checkpoint)}{parts.path}?schema={schema}"
    return str(Path(checkpoint).parent.resolve())


def history_identity(spec: Spec) -> str:
    """The job as a shared history tells it from others: ``<id as written>@<folder or database of its state>``.

    The id is taken before ``{date}``/``{week}``/``{month}`` are filled in, and the place from
    the checkpoint's template, so every period of a job is the same job.
    """
    written = spec.job.template if spec.job.period_kind is not None else spec.job.id
    return f"{written}@{_place(spec.output.checkpoint_template or spec.output.checkpoint)}"


def table_owner(spec: Spec) -> str:
    """The job a results or outcomes table's rows belong to: ``<id as written>@<its checkpoint>``.

    Finer than :func:`history_identity` for a file: two jobs in one folder may share an id under checkpoints of
    their own, and each would replace the other's rows. A database checkpoint is keyed by the id, so its
    database and schema name it. Every period, and ``--restart``'s fresh checkpoint, stay the same owner.
    """
    written = spec.job.template if spec.job.period_kind is not None else spec.job.id
    # {id} as written, like the id: the same owner for every period.
    checkpoint = (spec.output.checkpoint_template or spec.output.checkpoint).replace("{id}", written)
    place = _place(checkpoint) if checkpoint.startswith(_POSTGRES) else str(Path(checkpoint).resolve())
    return f"{written}@{place}"
