"""The shared history: who was reached when, claimed before sending so that jobs cap each other; who opted out."""

from .model import OPT_OUT_REASON, HistoryStore, is_database_url, owner
from .optouts import open_opt_outs, opt_outs_path
from .store import open_history

__all__ = [
    "OPT_OUT_REASON",
    "HistoryStore",
    "is_database_url",
    "open_history",
    "open_opt_outs",
    "opt_outs_path",
    "owner",
]
