"""The checkpoint in PostgreSQL: a lease per job, its tables, and read-only views."""

from .read import exists, jobs_beside, meta_of, read_only
from .store import PgBinding, PgCheckpoint, lock_job_checkpoint, reading_binding

__all__ = [
    "PgBinding",
    "PgCheckpoint",
    "exists",
    "jobs_beside",
    "lock_job_checkpoint",
    "meta_of",
    "read_only",
    "reading_binding",
]
