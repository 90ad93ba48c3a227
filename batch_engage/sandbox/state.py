"""What the sandbox remembers: runs, the messages they send and get, the token bucket, and the state file."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Final, Literal

from ._queue import ERROR_MESSAGES, Fate, SenderQueues, segments
from .config import Api, SandboxConfig, Source
from .shapes import ASK_BODY, INTRO_BODY, hex32, pick, render_liquid, rfc2822

# One contact in this many never gets the Flow's messages (30003).
_UNDELIVERED_ONE_IN: Final = 8
# A run's fields a state file keeps, in its order (``from_`` is written ``from``).
_RECORDED: Final = (
    "sid", "api", "account_sid", "flow_sid", "initiated_by", "source", "to", "from_", "parameters", "date_created",
    "played", "ended_at",
)  # fmt: skip


@dataclass(eq=False)
class Run:
    """A run as the simulator tracks it; `ended_at` is the only field that changes.

    `born` is the monotonic time the run started, so its age does not jump with the
    wall clock; `played` says whether the Flow's widgets run for it.
    """

    seq: int
    sid: str
    api: Api
    account_sid: str
    flow_sid: str
    initiated_by: str
    source: Source
    to: str
    from_: str
    parameters: dict[str, Any]
    date_created: datetime
    born: float
    played: bool
    ended_at: datetime | None = None

    @property
    def contact_sid(self) -> str:
        """The Contact SID Studio gives this address in this account."""
        return "FC" + hex32("contact", self.account_sid, self.to)

    def order(self) -> tuple[datetime, int]:
        """Sort key for listings: date_created, then creation order."""
        return (self.date_created, self.seq)

    def end(self, lifetime: float, now: float) -> datetime | None:
        """When the run ended (Twilio's clock), or None while it is active."""
        if self.ended_at is not None:
            return self.ended_at
        if now - self.born >= lifetime:
            return self.date_created + timedelta(seconds=lifetime)
        return None

    def record(self) -> dict[str, Any]:
        """The JSON line that keeps this run in a state file."""
        line: dict[str, Any] = {"type": "run"}
        for name in _RECORDED:
            value = getattr(self, name)
            line[name.rstrip("_")] = value.isoformat() if isinstance(value, datetime) else value
        return line

    @classmethod
    def from_record(cls, line: Mapping[str, Any], *, seq: int, born: float) -> Run:
        """The run a state file's line keeps (see :meth:`record`)."""
        values = {name: line[name.rstrip("_")] for name in _RECORDED}
        for name in ("date_created", "ended_at"):
            values[name] = None if values[name] is None else datetime.fromisoformat(values[name])
        return cls(seq=seq, born=born, **values)


class TokenBucket:
    """A continuously refilled token bucket that starts full."""

    def __init__(self) -> None:
        """Create a bucket that fills itself on first use."""
        self._tokens: float | None = None
        self._stamp = 0.0

    def take(self, rate: float, now: float) -> bool:
        """Spend one token if there is one."""
        capacity = max(1.0, rate)
        tokens = capacity if self._tokens is None else min(capacity, self._tokens + (now - self._stamp) * rate)
        self._stamp = now
        allowed = tokens >= 1.0
        self._tokens = tokens - 1.0 if allowed else tokens
        return allowed


# --- What a run leaves behind.


@dataclass(frozen=True)
class Message:
    """A message a run sent or received, as the 2010 Messages API shows it."""

    sid: str
    run: Run
    direction: Literal["outbound-api", "inbound"]
    body: str
    to: str
    from_: str
    sent_at: datetime


MESSAGE_ROLES: Final = ("intro", "ask", "reply")
"""The messages of a played run: send_intro's, ask's, and the contact's reply."""


def message_sid(role: str, run: Run) -> str:
    """The SID of the message a run's widget sends (intro, ask) or receives (reply)."""
    return "SM" + hex32(role, run.sid)


def undelivered(to: str) -> bool:
    """Tell whether the Flow's messages never reach this contact (30003)."""
    return pick("delivery", to, _UNDELIVERED_ONE_IN) == 0


def run_messages(run: Run, replies: tuple[str, ...], ended: datetime, *, heard: bool = True) -> dict[str, Message]:
    """The messages a played run sent and received, by widget role: intro, ask, reply.

    ``heard``: the From's replies reach this Flow; otherwise the contact's answer goes elsewhere and the
    ask times out without one.
    """
    scope = start_context(run)
    sent = {
        role: Message(
            sid=message_sid(role, run),
            run=run,
            direction="outbound-api",
            body=render_liquid(body, scope),
            to=run.to,
            from_=run.from_,
            sent_at=run.date_created,
        )
        for role, body in (("intro", INTRO_BODY), ("ask", ASK_BODY))
    }
    if heard and not undelivered(run.to):
        reply = replies[pick("reply", run.to, len(replies))]
        sent["reply"] = Message(message_sid("reply", run), run, "inbound", reply, run.from_, run.to, ended)
    return sent


def start_context(run: Run) -> dict[str, Any]:
    """The Flow context a run starts with."""
    return {
        "flow": {"data": run.parameters, "channel": {"address": run.from_}, "flow_sid": run.flow_sid},
        "contact": {"channel": {"address": run.to}},
    }


def widget_outputs(run: Run, messages: Mapping[str, Message]) -> dict[str, Any]:
    """What the Flow's widgets leave in the context once the run has ended."""

    def outbound(message: Message) -> dict[str, Any]:
        return {
            "Sid": message.sid,
            "AccountSid": run.account_sid,
            "Status": "sent",
            "To": message.to,
            "From": message.from_,
            "Body": message.body,
        }

    ask: dict[str, Any] = {"outbound": outbound(messages["ask"])}
    reply = messages.get("reply")
    if reply is not None:
        ask["inbound"] = {
            "Body": reply.body,
            "From": run.to,
            "To": run.from_,
            "MessageSid": reply.sid,
            "SmsMessageSid": reply.sid,
            "AccountSid": run.account_sid,
            "NumMedia": "0",
            "ApiVersion": "2010-04-01",
        }
    return {"send_intro": {"outbound": outbound(messages["intro"])}, "ask": ask}


def message_json(message: Message, fate: Fate | None = None) -> dict[str, Any]:
    """Render a message as GET /2010-04-01/Accounts/{AccountSid}/Messages/{Sid}.json does.

    ``fate``: what the sender's queue or an opt-out made of it (None: sent as its run started).
    """
    run = message.run
    failed = message.direction == "outbound-api" and undelivered(run.to)
    status = "received" if message.direction == "inbound" else ("undelivered" if failed else "delivered")
    code: int | None = 30003 if failed else None
    text = "Unreachable destination handset" if failed else None
    sent_at: datetime | None = message.sent_at
    if fate is not None and fate.status == "failed":
        status, code, text, sent_at = "failed", fate.error_code, ERROR_MESSAGES.get(fate.error_code or 0), None
    elif fate is not None:
        sent_at = fate.date_sent
    uri = f"/2010-04-01/Accounts/{run.account_sid}/Messages/{message.sid}.json"
    stamp = rfc2822(message.sent_at)
    return {
        "account_sid": run.account_sid,
        "api_version": "2010-04-01",
        "body": message.body,
        "date_created": stamp,
        "date_sent": rfc2822(sent_at) if sent_at is not None else None,
        "date_updated": rfc2822(sent_at) if sent_at is not None else stamp,
        "direction": message.direction,
        "error_code": code,
        "error_message": text,
        "from": message.from_,
        "messaging_service_sid": None,
        "num_media": "0",
        "num_segments": str(fate.segments if fate is not None else 1),
        "price": None,
        "price_unit": "USD",
        "sid": message.sid,
        "status": status,
        "subresource_uris": {"media": uri.replace(".json", "/Media.json")},
        "to": message.to,
        "uri": uri,
    }


# --- State that survives between processes.


_RECORD_KEYS: Final = {
    "run": frozenset(
        {"type", "sid", "api", "account_sid", "flow_sid", "initiated_by", "source", "to", "from", "parameters"}
        | {"date_created", "played", "ended_at"}
    ),
    "end": frozenset({"type", "sid", "ended_at"}),
}


def message_fates(run: Run, config: SandboxConfig, queues: SenderQueues) -> dict[str, Fate]:
    """The fate of a new run's messages by SID: opted out (21610), or through its sender's queue; none: sent."""
    if not run.played or (config.sender_pace is None and run.to not in config.opted_out):
        return {}
    service = config.services.get(run.from_)
    validity = service.validity_period if service is not None else config.validity_period
    scope = start_context(run)
    fates = {}
    for role, body in (("intro", INTRO_BODY), ("ask", ASK_BODY)):
        units = segments(render_liquid(body, scope))
        if run.to in config.opted_out:
            fate = Fate("failed", 21610, None, units)
        else:
            assert config.sender_pace is not None
            fate = queues.enqueue(
                run.from_,
                run.date_created,
                units,
                pace=config.sender_pace,
                validity=validity,
                limit=config.queue_limit,
            )
        fates[message_sid(role, run)] = fate
    return fates


def load_state(path: Path) -> list[dict[str, Any]]:
    """Read a state file's records; a torn last line (a crash mid-write) is cut off the file."""
    if not path.exists():
        return []
    text = path.read_text(encoding="utf-8")
    lines = text.split("\n")
    records = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            if not isinstance(record, dict) or _RECORD_KEYS.get(str(record.get("type"))) != frozenset(record):
                raise ValueError(line)
        except ValueError:
            if number == len(lines):
                # Cut it off, or the next record appended would be glued to it.
                path.write_text(text[: len(text) - len(line)], encoding="utf-8")
                break
            raise ValueError(
                f"{path}:{number}: not a sandbox state line; move the file aside to start with no runs"
            ) from None
        records.append(record)
    return records


def append_state(path: Path, record: Mapping[str, Any]) -> None:
    """Append one record to a state file, flushed before the caller answers (owner-only: it holds numbers)."""
    # O_NOFOLLOW: a link planted at the state file's name is refused (ELOOP), never appended through.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | getattr(os, "O_NOFOLLOW", 0), 0o600)
    with open(fd, "a", encoding="utf-8") as handle:
        handle.write(json.dumps(record, separators=(",", ":")) + "\n")
