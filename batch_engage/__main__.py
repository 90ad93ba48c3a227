"""``python -m batch_engage``: the same as the ``batch-engage`` command."""

import sys

from .cli import main

sys.exit(main())
