"""After a run: what each Studio run did, fetched once and kept in the outcomes store."""

from .collect import DEFAULT_POLL_INTERVAL, CollectOptions, CollectResult, collect_job
from .fetch import CollectProgress
from .outcomes import StoredOutcome, read_outcomes

__all__ = [
    "DEFAULT_POLL_INTERVAL",
    "CollectOptions",
    "CollectProgress",
    "CollectResult",
    "StoredOutcome",
    "collect_job",
    "read_outcomes",
]
