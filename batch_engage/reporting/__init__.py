"""The report page: one self-contained HTML file with its charts drawn as SVG."""

from .data import report_data
from .html import render_report

__all__ = ["render_report", "report_data"]
