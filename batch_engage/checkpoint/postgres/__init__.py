"""The checkpoint in PostgreSQL: a lease per job, its tables, and read-only views."""

from .read import exists, jobs_beside, meta_of, read_only
from .store import PgCheckpoint
from .tables import check_binding

__all__ = ["PgCheckpoint", "check_binding", "exists", "jobs_beside", "meta_of", "read_only"]
