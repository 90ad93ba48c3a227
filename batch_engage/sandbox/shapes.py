"""Twilio's shapes: errors, timestamps, SIDs, query values, and the sandbox Flow's definition, Liquid and revisions."""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
    from aiohttp import web

FLOW_SID: Final = re.compile(r"^FW[0-9a-fA-F]{32}$")
"""A well-formed Flow SID."""
ACCOUNT_SID: Final = re.compile(r"^AC[0-9a-fA-F]{32}$")
"""A well-formed Account SID."""


class ApiError(Exception):
    """A Twilio-shaped error answer, raised anywhere inside a handler."""

    def __init__(
        self,
        status: int,
        code: int,
        message: str,
        *,
        headers: Mapping[str, str] | None = None,
        details: Mapping[str, Any] | None = None,
    ) -> None:
        """Describe the answer."""
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = dict(headers or {})
        self.details = dict(details) if details is not None else None

    def response(self) -> web.Response:
        """Render the answer as Twilio renders errors."""
        body: dict[str, Any] = {
            "code": self.code,
            "message": self.message,
            "more_info": f"https://www.twilio.com/docs/errors/{self.code}",
            "status": self.status,
        }
        if self.details is not None:
            body["details"] = self.details
        from aiohttp import web  # noqa: PLC0415 - the configuration imports this module; aiohttp is for serving

        return web.json_response(body, status=self.status, headers=self.headers)


def not_found(path: str) -> ApiError:
    """The 404 Twilio gives for anything it does not know."""
    return ApiError(404, 20404, f"The requested resource {path} was not found")


def too_many(retry_after: float | None) -> ApiError:
    """The 429 Twilio gives when an account goes too fast."""
    headers = {} if retry_after is None else {"Retry-After": str(math.ceil(retry_after))}
    return ApiError(429, 20429, "Too Many Requests", headers=headers)


def iso(moment: datetime) -> str:
    """Format a moment as Studio does: UTC, whole seconds, trailing Z."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def rfc2822(moment: datetime) -> str:
    """Format a moment as the 2010 API does: 'Wed, 25 Nov 2026 17:45:46 +0000'."""
    return format_datetime(moment.astimezone(UTC).replace(microsecond=0))


def hex32(*parts: str) -> str:
    """Derive 32 stable hex digits from some strings."""
    return hashlib.blake2b("\x1f".join(parts).encode(), digest_size=16).hexdigest()


def pick(salt: str, key: str, choices: int) -> int:
    """Pick one of `choices` deterministically for a key."""
    return int(hex32(salt, key)[:8], 16) % choices


def parse_moment(name: str, raw: str) -> datetime:
    """Parse an ISO 8601 query value; a value without an offset is taken as UTC."""
    try:
        moment = datetime.fromisoformat(raw)
    except ValueError:
        raise ApiError(400, 20001, f"Invalid {name}: {raw!r} is not an ISO 8601 date-time") from None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment


def int_query(query: Mapping[str, str], name: str, default: int, low: int, high: int | None) -> int:
    """Read an integer query parameter within bounds, or answer 400."""
    raw = query.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ApiError(400, 20001, f"Invalid {name}: {raw!r} is not an integer") from None
    if value < low or (high is not None and value > high):
        limit = f"between {low} and {high}" if high is not None else f"at least {low}"
        raise ApiError(400, 20001, f"Invalid {name}: {value} must be {limit}")
    return value


# --- The Flow: its definition, the Liquid it uses, and what its widgets leave behind.

INTRO_BODY: Final = (
    "Hi {{flow.data.first_name}}, your order {{flow.data.order.id}} ships soon"
    " from {{flow.data.city | default: 'our store'}}."
)
"""The `send_intro` widget's Liquid body."""
ASK_BODY: Final = "Reply YES to confirm{% if flow.data.visits %} (visit {{flow.data.visits}}){% endif %}"
"""The `ask` widget's Liquid body."""
# The unpublished edit of a draft-over-published Flow: it reads a key no job maps,
# so a client that checks the draft instead of what runs finds a problem that is not there.
DRAFT_ASK_BODY: Final = ASK_BODY + " and use code {{flow.data.coupon}}"
"""The `ask` body of a draft's unpublished revision."""
_LIQUID_IF = re.compile(r"\{%\s*if\s+([\w.]+)\s*%\}(.*?)\{%\s*endif\s*%\}", re.DOTALL)
_LIQUID_OUT = re.compile(r"\{\{\s*([\w.]+)\s*(?:\|\s*default:\s*'([^']*)'\s*)?\}\}")


def flow_definition(*, wired: bool, ask_body: str = ASK_BODY) -> dict[str, Any]:
    """Studio's JSON for the sandbox's Flow: Trigger -> send_intro -> ask."""
    request: dict[str, str] = {"event": "incomingRequest"}
    if wired:
        request["next"] = "send_intro"
    message_properties = {"service": "{{trigger.message.InstanceSid}}", "channel": "{{trigger.message.ChannelSid}}"}
    return {
        "description": "A New Flow",
        "flags": {"allow_concurrent_calls": True},
        "initial_state": "Trigger",
        "states": [
            {
                "name": "Trigger",
                "type": "trigger",
                "properties": {"offset": {"x": 0, "y": 0}},
                "transitions": [
                    {"event": "incomingMessage"},
                    {"event": "incomingCall"},
                    {"event": "incomingConversationMessage"},
                    request,
                    {"event": "incomingParent"},
                ],
            },
            {
                "name": "send_intro",
                "type": "send-message",
                "properties": {
                    "offset": {"x": 0, "y": 200},
                    **message_properties,
                    "from": "{{flow.channel.address}}",
                    "to": "{{contact.channel.address}}",
                    "body": INTRO_BODY,
                },
                "transitions": [{"event": "sent", "next": "ask"}, {"event": "failed"}],
            },
            {
                "name": "ask",
                "type": "send-and-wait-for-reply",
                "properties": {
                    "offset": {"x": 0, "y": 400},
                    **message_properties,
                    "from": "{{flow.channel.address}}",
                    "body": ask_body,
                    "timeout": "3600",
                },
                "transitions": [{"event": "incomingMessage"}, {"event": "timeout"}, {"event": "deliveryFailure"}],
            },
        ],
    }


def _lookup(scope: Mapping[str, Any], path: str) -> Any:
    """Follow a dotted Liquid path through nested objects; None when it leads nowhere."""
    value: Any = scope
    for part in path.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return None
        value = value[part]
    return value


def _liquid_text(value: Any) -> str:
    """Render a value as Liquid prints it."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict | list):
        return json.dumps(value, separators=(",", ":"))
    return str(value)


def render_liquid(template: str, scope: Mapping[str, Any]) -> str:
    """Render the Liquid the sandbox's Flow uses: {{ path }}, | default: '...', {% if path %}."""

    def branch(match: re.Match[str]) -> str:
        # In Liquid only nil and false are falsy; 0 and "" are true.
        value = _lookup(scope, match.group(1))
        return "" if value is None or value is False else match.group(2)

    def output(match: re.Match[str]) -> str:
        value = _lookup(scope, match.group(1))
        # Identity, not equality: 0 == False in Python, but 0 is a value in Liquid.
        if match.group(2) is not None and (value is None or value is False or value == ""):
            return match.group(2)
        return _liquid_text(value)

    return _LIQUID_OUT.sub(output, _LIQUID_IF.sub(branch, template))


# --- Flow revisions.


@dataclass(frozen=True)
class FlowRevisions:
    """Which revisions a Flow has: the latest, and the last published (None: never)."""

    latest: int
    published: int | None

    @classmethod
    def of(cls, status: str) -> FlowRevisions:
        """The revisions of a Flow configured with this status."""
        if status == "draft":
            return cls(latest=1, published=None)
        if status == "draft_over_published":
            return cls(latest=3, published=2)
        return cls(latest=2, published=2)

    def status(self, revision: int) -> str:
        """A revision is published if it is the last one published, else a draft."""
        return "published" if revision == self.published else "draft"
