"""Who sends a run's first message, what kind of sender it is, and how many segments a second it sends.

Defaults, in segments per second, as Twilio documents them (docs/api/errors/30001 and /21611,
support article 115002943027 "Understanding Twilio's queues", the market throughput overview,
the WhatsApp FAQ):

=================  ====  ==============================================================
long code US/CA       1  "a US long code number can send one message segment per second"
long code, other     10  other countries' numbers
toll-free             3  US/CA toll-free, before any raise after verification
short code          100
alphanumeric         10
whatsapp             10  text; more on request
messaging service     -  the sum of its senders (each counted by its own kind)
=================  ====  ==============================================================

Registered US 10DLC throughput is set per campaign by the carriers and is not in any API we
read: ``[send] sender_throughput`` is how a job says what it got.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final, Literal

import phonenumbers

__all__ = [
    "DEFAULT_THROUGHPUT",
    "DEFAULT_VALIDITY",
    "SenderKind",
    "SenderLine",
    "describe_sender",
    "is_messaging_service",
    "sender_of",
]

SenderKind = Literal["long_code", "toll_free", "short_code", "alphanumeric", "whatsapp", "messaging_service"]

DEFAULT_VALIDITY: Final = 36_000
"""Seconds a message may wait in Twilio's queue before it fails with 30036, unless set lower."""

DEFAULT_THROUGHPUT: Final[dict[str, float]] = {
    "long_code_us": 1.0,
    "long_code": 10.0,
    "toll_free": 3.0,
    "short_code": 100.0,
    "alphanumeric": 10.0,
    "whatsapp": 10.0,
}
"""Segments per second a sender of each kind sends by default (long_code_us: a US or Canadian long code)."""

_MG = re.compile(r"^MG[0-9a-fA-F]{32}$")
_SHORT_CODE = re.compile(r"^[0-9]{3,8}$")
_ALPHANUMERIC = re.compile(r"^(?=.*[A-Za-z])[A-Za-z0-9 ]{1,11}$")
_NANP = ("US", "CA")


@dataclass(frozen=True, slots=True)
class SenderLine:
    """One sender: its address, kind, country (phone numbers), 10DLC (US/CA long codes) and default pace."""

    sender: str
    kind: SenderKind
    country: str | None
    ten_dlc: bool
    throughput: float

    def label(self) -> str:
        """How logs and the summary name the kind, e.g. ``long_code (US, 10DLC)``."""
        extra = [x for x in (self.country, "10DLC" if self.ten_dlc else None) if x]
        return f"{self.kind} ({', '.join(extra)})" if extra else self.kind


def is_messaging_service(sender: str) -> bool:
    """Whether a sender is a Messaging Service SID (``MG`` and 32 hex digits)."""
    return bool(_MG.match(sender))


def describe_sender(sender: str) -> SenderLine:
    """The kind, country and default throughput of one sender (a service's throughput: 0 until its numbers are read)."""
    if sender.startswith("whatsapp:"):
        return SenderLine(sender, "whatsapp", _country(sender.removeprefix("whatsapp:")), False, 10.0)
    if is_messaging_service(sender):
        return SenderLine(sender, "messaging_service", None, False, 0.0)
    for kind, pattern in (("short_code", _SHORT_CODE), ("alphanumeric", _ALPHANUMERIC)):
        if pattern.match(sender):
            return SenderLine(sender, kind, None, False, DEFAULT_THROUGHPUT[kind])  # type: ignore[arg-type]
    country = _country(sender)
    if country in _NANP and _toll_free(sender):
        return SenderLine(sender, "toll_free", country, False, DEFAULT_THROUGHPUT["toll_free"])
    if country in _NANP:
        return SenderLine(sender, "long_code", country, True, DEFAULT_THROUGHPUT["long_code_us"])
    return SenderLine(sender, "long_code", country, False, DEFAULT_THROUGHPUT["long_code"])


def _parsed(number: str) -> phonenumbers.PhoneNumber | None:
    try:
        return phonenumbers.parse(number, None)
    except phonenumbers.NumberParseException:
        return None


def _country(number: str) -> str | None:
    parsed = _parsed(number)
    if parsed is None or parsed.country_code is None:
        return None
    # By the country code, not the number's validity: a fictional or new range still has a country.
    region = phonenumbers.region_code_for_country_code(parsed.country_code)
    return None if region == "ZZ" else region


def _toll_free(number: str) -> bool:
    parsed = _parsed(number)
    return parsed is not None and phonenumbers.number_type(parsed) == phonenumbers.PhoneNumberType.TOLL_FREE


def sender_of(widget_from: str, widget_service: str, run_from: str) -> str:
    """The first message's sender: the widget's own ``from``/``service`` when it names one, else the run's From.

    A Liquid value (``{{flow.channel.address}}``, Studio's default) is the run's From; so is an empty one.
    """
    for value in (widget_service, widget_from):
        text = value.strip()
        if text and "{" not in text:
            return text
    return run_from
