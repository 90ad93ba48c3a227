"""A checkpoint's binding to one job and one Twilio, done here alone: both backends only answer its questions.

:func:`bind` asks a backend's :class:`Binding` (a checkpoint locked, not yet bound) whether a checkpoint is
there, what it says and how many contacts it reached; refuses another job or Twilio, or a restart without
``--yes``, in the same words for both; moves a confirmed restart's checkpoint aside; and stores the meta.

``meta`` holds the format version, the job's *fingerprint* (Flow, API, mapping, planning
settings), the *target* (Studio base URL, the credential's identity, sandbox or not, the
account once known) and the *token* each request's marker starts with.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import asdict
from datetime import UTC, datetime
from typing import Any, Protocol, Unpack

import polars as pl

from ..clock import iso_ms
from ..errors import CheckpointMismatch
from ..states import REACHED
from .model import RestartOptions, Target
from .schema import SCHEMA_VERSION

__all__ = [
    "Binding",
    "bind",
    "bind_meta",
    "changed_parts",
    "check",
    "check_meta",
    "describe_mismatch",
    "other_list_refused",
    "reached_by_another_list",
    "reached_not_in",
    "restart_refused",
]

_FINGERPRINT_NAMES = {
    "flow_sid": "the Flow SID",
    "api": "the API",
    "mapping": "the column mapping",
    "planning": "the planning settings (dedupe, max_parameters_bytes, marker_key)",
    "experiment": "the experiment (its salt, or a variant's Flow or Parameters)",
}


def changed_parts(stored: Mapping[str, Any], current: Mapping[str, Any], *, ignore: Iterable[str] = ()) -> list[str]:
    """The parts of the fingerprint (but those in ``ignore``) that differ, in words."""
    skip = set(ignore)
    return [name for key, name in _FINGERPRINT_NAMES.items() if key not in skip and stored.get(key) != current.get(key)]


def describe_mismatch(stored: Mapping[str, Any], current: Mapping[str, Any]) -> str:
    """Say in words which parts of the fingerprint changed."""
    return ", ".join(changed_parts(stored, current)) or "the job"


def restart_refused(where: object, reached: int) -> CheckpointMismatch:
    """The refusal of a ``--restart`` without ``--yes``, counting what it would forget."""
    return CheckpointMismatch(
        f"{where}: --restart would forget {reached} contacts this job reached (or may have reached) and send "
        "to them again; nothing was sent. Add --yes to do it."
    )


def _reached(journal: pl.DataFrame) -> pl.Series:
    return journal.get_column("state").is_in(sorted(s.value for s in REACHED))


def reached_by_another_list(plan: pl.DataFrame, journal: pl.DataFrame) -> int:
    """The contacts this job reached (``journal``: its lines' contacts and states) when no row of ``plan``, whatever
    its status, is for a contact with a line; else 0. Capped or suppressed now, a row still shows the list is the
    one the journal was written for."""
    reached = int(_reached(journal).sum())
    if reached == 0 or plan.get_column("contact").is_in(journal.get_column("contact").implode()).any():
        return 0
    return reached


def reached_not_in(plan: pl.DataFrame, journal: pl.DataFrame) -> int:
    """The contacts this job reached (``journal``) that no row of ``plan`` names: a re-export without them, whose
    results table no longer shows their runs."""
    reached = journal.get_column("contact").filter(_reached(journal))
    return int((~reached.is_in(plan.get_column("contact").drop_nulls().implode())).sum())


def other_list_refused(source: str, where: str, plan: pl.DataFrame, reached: int) -> CheckpointMismatch:
    """The refusal of a list (``plan``) whose contacts share none with the ``reached`` this job reached before.

    A re-exported list keeps some of its people; one with none of them is, more likely than not, the wrong
    file (last month's list, another campaign's), and what it would start cannot be taken back.
    """
    statuses = plan.get_column("status")
    contacts, invalid = int((statuses == "pending").sum()), int((statuses == "invalid").sum())
    noun = "contact" if contacts == 1 else "contacts"
    # Numbers a spreadsheet mangled have no contact to match: the same list can look like another one.
    unmatched = f" ({invalid} invalid rows could not be matched: `validate --other-list` says why)" if invalid else ""
    return CheckpointMismatch(
        f"{source}: none of its {contacts} {noun} to send is among the {reached} this job already reached "
        f"({where}){unmatched}: is it the right file? Nothing was sent. To send it under this job anyway, add "
        "--other-list (or set [input] other_lists = true for a job whose lists only ever hold new contacts); "
        "for another campaign, use another checkpoint or job id."
    )


def check_meta(path: str, meta: Mapping[str, str], fingerprint: Mapping[str, Any], target: Target) -> None:
    """Refuse a stored checkpoint's ``meta`` made by another format, job or Twilio (both backends share this)."""
    version = meta.get("version")
    if version != SCHEMA_VERSION:
        raise CheckpointMismatch(
            f"{path}: written by another version of batch-engage (checkpoint format {version or '?'}, "
            f"this one reads {SCHEMA_VERSION}); nothing was sent. Finish it with that version, "
            "or use --restart --yes to start over."
        )
    stored = json.loads(meta.get("fingerprint", "{}"))
    if stored != dict(fingerprint):
        raise CheckpointMismatch(
            f"{path}: this checkpoint was made for another job: {describe_mismatch(stored, fingerprint)} changed. "
            "Nothing was sent. Use another --checkpoint, or --restart --yes to start over (the old one is kept aside)."
        )
    was = Target(**json.loads(meta["target"])) if "target" in meta else None
    if was is not None and was.differs(target):
        raise CheckpointMismatch(
            f"{path}: this checkpoint was made against {was.describe()}, not {target.describe()}; "
            "nothing was sent. Its runs cannot be looked up there: use another --checkpoint for this target, "
            "or --restart --yes to forget it."
        )


def bind_meta(
    stored: dict[str, str], fingerprint: Mapping[str, Any], target: Target, extra_meta: Mapping[str, str] | None
) -> tuple[dict[str, str], bool]:
    """The meta an opened checkpoint holds, and whether it is new (every key to store) or only its target changed.

    A new checkpoint gets a fresh token. An existing one keeps the latest credential, and an
    account learned once is never forgotten.
    """
    if "fingerprint" not in stored:
        return {
            "version": SCHEMA_VERSION,
            "fingerprint": json.dumps(dict(fingerprint), sort_keys=True),
            "target": json.dumps(asdict(target), sort_keys=True),
            "token": secrets.token_hex(8),
            "created_at": iso_ms(datetime.now(UTC)),
            **(extra_meta or {}),
        }, True
    was = Target(**json.loads(stored["target"]))
    pinned = Target(
        base_url=was.base_url,
        identity=target.identity or was.identity,
        sandbox=was.sandbox,
        account=was.account or target.account,
    )
    return {**stored, "target": json.dumps(asdict(pinned), sort_keys=True)}, False


class Binding(Protocol):
    """What the binding asks of a backend's checkpoint, locked but not yet bound."""

    where: str

    def exists(self) -> bool:
        """Whether a checkpoint is already there."""

    def stored_meta(self) -> dict[str, str]:
        """The meta it holds (empty for a new one)."""

    def reached_count(self) -> int:
        """How many contacts it has reached or may have reached: what a restart would forget."""

    def move_aside(self) -> None:
        """Keep it under another name, never delete it, so a restart starts empty."""

    def store_meta(self, meta: dict[str, str], *, new: bool) -> None:
        """Store the meta: every key for a new checkpoint, the latest target for an existing one."""


def check(binding: Binding, fingerprint: Mapping[str, Any], target: Target, **options: Unpack[RestartOptions]) -> bool:
    """Refuse what a run must refuse; True when a confirmed restart must move the checkpoint aside. Reads only."""
    if not binding.exists():
        return False
    if options.get("restart"):
        if not options.get("yes"):
            raise restart_refused(binding.where, binding.reached_count())
        return True
    check_meta(binding.where, binding.stored_meta(), fingerprint, target)
    return False


def bind(
    binding: Binding,
    fingerprint: Mapping[str, Any],
    target: Target,
    extra_meta: Mapping[str, str] | None = None,
    **options: Unpack[RestartOptions],
) -> dict[str, str]:
    """Bind a locked checkpoint to this job and target, and return the meta it then holds."""
    if check(binding, fingerprint, target, **options):
        binding.move_aside()
    meta, new = bind_meta(binding.stored_meta() if binding.exists() else {}, fingerprint, target, extra_meta)
    binding.store_meta(meta, new=new)
    return meta
