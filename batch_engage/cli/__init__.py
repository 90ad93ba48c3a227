"""The batch-engage command: the only layer that parses flags, prints and picks exit codes."""

from .main import main
from .process import entry

__all__ = ["entry", "main"]
