"""The Flow held against the job: its trigger, its variables and first messages rendered with Liquid."""

from .check import FlowWiringError, rest_trigger
from .liquid_render import data_keys, render
from .replies import reply_conflicts, waits_for_replies
from .review import FlowReview, log_findings, review

__all__ = [
    "FlowReview",
    "FlowWiringError",
    "data_keys",
    "log_findings",
    "render",
    "reply_conflicts",
    "rest_trigger",
    "review",
    "waits_for_replies",
]
