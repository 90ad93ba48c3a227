"""The Flow held against the job: its trigger, its variables and first messages rendered with Liquid."""

from .check import FlowWiringError, rest_trigger
from .liquid_render import render
from .review import FlowReview, log_findings, review

__all__ = ["FlowReview", "FlowWiringError", "log_findings", "render", "rest_trigger", "review"]
