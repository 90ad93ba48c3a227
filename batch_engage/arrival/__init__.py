"""Will this campaign arrive? Segments, the sender's pace and Twilio's queue, reply routing, opt-outs, per Flow."""

from .check import Arrival, check_arrival, first_opening, log_capacity, refusal
from .paths import FlowMessages, MessageWidget, flow_messages
from .projection import Capacity, RowSegments, capacity, row_segments, trigger_rate
from .routing import Routing, SenderFacts, read_senders, route_of, worst_routing
from .segments import Segments, count_segments
from .sender import DEFAULT_THROUGHPUT, DEFAULT_VALIDITY, SenderLine, describe_sender, sender_of

__all__ = [
    "DEFAULT_THROUGHPUT",
    "DEFAULT_VALIDITY",
    "Arrival",
    "Capacity",
    "FlowMessages",
    "MessageWidget",
    "Routing",
    "RowSegments",
    "Segments",
    "SenderFacts",
    "SenderLine",
    "capacity",
    "check_arrival",
    "count_segments",
    "describe_sender",
    "first_opening",
    "flow_messages",
    "log_capacity",
    "read_senders",
    "refusal",
    "route_of",
    "row_segments",
    "sender_of",
    "trigger_rate",
    "worst_routing",
]
