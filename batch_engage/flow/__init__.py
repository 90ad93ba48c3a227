"""The Flow held against the job: its trigger, its variables and first messages rendered with Liquid."""

from .check import FlowWiringError
from .replies import reply_conflicts, waits_for_replies
from .review import FlowReview, log_findings, review

__all__ = ["FlowReview", "FlowWiringError", "log_findings", "reply_conflicts", "review", "waits_for_replies"]
