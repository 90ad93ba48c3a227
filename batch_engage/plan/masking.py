"""Addresses masked for logs and reports: enough to tell two apart, never enough to reach one."""

from __future__ import annotations

__all__ = ["mask"]


def mask(address: str | None) -> str:
    """Hide the middle of an address for logs: ``+14155550100`` -> ``+1415***0100``."""
    if not address:
        return ""
    if "@" in address:
        name, _, host = address.partition("@")
        return f"{name[:2]}***@{host}"
    prefix = address[: address.find("+") + 1] if "+" in address else ""
    digits = address[len(prefix) :]
    if len(digits) <= 6:
        return prefix + "***"
    return f"{prefix}{digits[:4]}***{digits[-4:]}"
