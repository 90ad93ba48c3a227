"""The report page: one self-contained HTML file with its charts drawn as SVG."""

from .data import report_data
from .html import ReportData, render_report

__all__ = ["ReportData", "render_report", "report_data"]
