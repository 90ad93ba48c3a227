"""``python -m batch_engage``: the same as the ``batch-engage`` command."""

from .cli import entry

entry()
