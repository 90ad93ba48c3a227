"""The short hashes a journal line keeps of its row: the contact (in the marker) and the Parameters."""

from __future__ import annotations

import hashlib

__all__ = ["contact_hash", "params_hash"]


def contact_hash(contact: str) -> str:
    """A short, stable hash of a contact key: the part of the marker that names the person."""
    return hashlib.blake2b(contact.encode(), digest_size=8).hexdigest()


def params_hash(parameters: str | None) -> str:
    """A short, stable hash of a row's Parameters (to tell "reached earlier, parameters changed")."""
    return hashlib.blake2b((parameters or "").encode(), digest_size=8).hexdigest()
