"""What a command writes besides a run's results: each output held against the job's own files first.

A write that fails after sending (a full disk) is one line and exit 74 (``OutputFailed``),
saying how to get the file again.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..disk import write_text_atomically
from ..errors import OutputFailed
from ..job import Spec, check_outputs, rehearsal_target
from .owned import refuse_foreign_checkpoint
from .status import rewrite_results, write_report_html

__all__ = ["guarded_collect", "guarded_report", "guarded_report_html", "guarded_summary_json"]


def _not_written(path: str | Path, exc: OSError) -> OutputFailed:
    """A page, summary or table that could not be written (a full disk): exit 74, and how to get it later."""
    reason = exc.strerror or type(exc).__name__
    return OutputFailed(
        f"{path}: could not be written ({reason}); the checkpoint keeps everything, "
        "so `batch-engage report JOB` (with `--html PATH` for the page) writes it again once there is room"
    )


def guarded_report(
    spec: Spec, output: str | Path | None, html: str | Path | None, *, sandbox: bool = False
) -> tuple[str | None, dict[str, int]]:
    """``report``: the results table again (``output`` or the job's own), or with ``html`` alone only the page.

    Another job's checkpoint, or one from the other side of ``sandbox``, is refused: its rows would be written
    over this job's results table.
    """
    output = rehearsal_target(spec, output) if output is not None else None
    table = output or (spec.output.results if html is None else None)
    outputs = [("--output" if output else "output.results", table), ("--html", html)]
    check_outputs(spec, outputs, replaces=["output.results"])
    refuse_foreign_checkpoint(spec, "report", sandbox=sandbox, nothing="nothing was written")
    try:
        return rewrite_results(spec, output, html)
    except OSError as exc:
        raise _not_written(output or spec.output.results, exc) from None


def guarded_collect(spec: Spec, output: str | None, *, sandbox: bool) -> None:
    """``collect``'s outcomes table never over the job's own files, and its checkpoint this job's: another job's
    (``--checkpoint``) would have its runs fetched and written as this job's outcomes."""
    outcomes = output or spec.output.outcomes
    check_outputs(spec, [("--output" if output else "output.outcomes", outcomes)], replaces=["output.outcomes"])
    refuse_foreign_checkpoint(spec, "collect", sandbox=sandbox, nothing="nothing was fetched")


def guarded_report_html(spec: Spec, path: str | Path) -> Path:
    """The campaign page for ``spec``'s checkpoint, never over the job's own files, owner-only."""
    check_outputs(spec, [("--report-html", path)])
    try:
        return write_report_html(spec, path)
    except OSError as exc:
        raise _not_written(path, exc) from None


def guarded_summary_json(spec: Spec, path: str | Path, summary: Mapping[str, Any]) -> Path:
    """A run's summary as JSON, owner-only (it names files and counts), never over the job's own files."""
    check_outputs(spec, [("--summary-json", path)])
    try:
        return write_text_atomically(path, json.dumps(summary, indent=2))
    except OSError as exc:
        raise _not_written(path, exc) from None
