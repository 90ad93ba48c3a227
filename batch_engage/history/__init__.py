"""The shared history: who was reached when, claimed before sending so that jobs cap each other."""

from .model import HistoryStore, is_database_url, owner
from .store import open_history

__all__ = ["HistoryStore", "is_database_url", "open_history", "owner"]
