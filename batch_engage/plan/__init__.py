"""Planning with no network: rows read, numbers normalized, deduplicated, suppressed, capped and windowed."""

from .phone import mask
from .prepare import Prepared, caps, contact_hash, fingerprint, params_hash, prepare
from .rewrites import Rewrite
from .windows import annotate_windows, send_window

__all__ = [
    "Prepared",
    "Rewrite",
    "annotate_windows",
    "caps",
    "contact_hash",
    "fingerprint",
    "mask",
    "params_hash",
    "prepare",
    "send_window",
]
