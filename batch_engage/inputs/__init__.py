"""Every reader of contacts (CSV, Parquet, NDJSON, a database query) and the one catalog of them."""

from .catalog import QUERY_SOURCES, SOURCES, Source
from .database import read_query
from .files import (
    Table,
    as_text,
    frame_digest,
    integer_columns,
    is_local_file,
    read_table,
    require_columns,
    shown_name,
)

__all__ = [
    "QUERY_SOURCES",
    "SOURCES",
    "Source",
    "Table",
    "as_text",
    "frame_digest",
    "integer_columns",
    "is_local_file",
    "read_query",
    "read_table",
    "require_columns",
    "shown_name",
]
