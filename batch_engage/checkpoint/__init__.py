"""The checkpoint: the journal keyed by contact, bound to one job and one target, in SQLite or PostgreSQL."""

from .binding import describe_mismatch, other_list_refused, reached_by_another_list, reached_not_in
from .columnar import read_only_uri
from .model import CheckpointStore, CheckpointView, Intent, Outcome, SecondStats, Target, achieved_rate, empty_journal
from .runlog import LostLines, RunLogState, read_runlog, refuse_lost_journal, runlog_path, set_aside_damaged
from .schema import SCHEMA_VERSION
from .store import (
    check_binding,
    checkpoint_exists,
    checkpoint_meta,
    checkpoints_beside,
    is_locked,
    is_postgres,
    later_period_bound_to,
    open_checkpoint,
    period_behind,
    read_checkpoint,
    stored_plan,
)

__all__ = [
    "SCHEMA_VERSION",
    "CheckpointStore",
    "CheckpointView",
    "Intent",
    "LostLines",
    "Outcome",
    "RunLogState",
    "SecondStats",
    "Target",
    "achieved_rate",
    "check_binding",
    "checkpoint_exists",
    "checkpoint_meta",
    "checkpoints_beside",
    "describe_mismatch",
    "empty_journal",
    "is_locked",
    "is_postgres",
    "later_period_bound_to",
    "open_checkpoint",
    "other_list_refused",
    "period_behind",
    "reached_by_another_list",
    "reached_not_in",
    "read_checkpoint",
    "read_only_uri",
    "read_runlog",
    "refuse_lost_journal",
    "runlog_path",
    "set_aside_damaged",
    "stored_plan",
]
