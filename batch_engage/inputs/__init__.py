"""Every reader of contacts (CSV, Parquet, NDJSON, a database query) and the one list of formats."""

from .database import read_query
from .files import Table, frame_digest, read_table, require_columns

__all__ = ["Table", "frame_digest", "read_query", "read_table", "require_columns"]
