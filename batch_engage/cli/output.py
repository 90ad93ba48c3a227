"""What the command shows: log configuration, progress bars, and the human summaries on stdout."""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import sys
from collections.abc import Callable, Iterator, MutableMapping
from contextlib import AbstractContextManager, contextmanager
from typing import Any, TextIO, TypeVar, cast

import structlog

from .. import api

__all__ = [
    "UNWRITABLE",
    "collect_bar",
    "configure_logging",
    "notice",
    "print_collect_summary",
    "print_summary",
    "progress_bar",
    "sandbox_banner",
    "status_lines",
    "stop_acknowledged",
    "sweep_lines",
    "unwritable",
    "validation_lines",
]

_Seen = TypeVar("_Seen")

# How stderr is read: "console" (a person: plain lines are welcome) or "json" (a machine: events only).
_stderr_format = {"format": "console"}
_log = structlog.get_logger("batch_engage.cli")


def printable(text: str) -> str:
    """``text`` as one line of a terminal: a control character (an escape sequence, a line break, U+202E) escaped.

    The lines shown hold what anyone can write: a list's cells and column names, a Flow's step names, Twilio's
    error text. Left raw, they could clear the screen above a dry run's counts, or print a log line of their own.
    """
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in text)


def notice(line: str, event: str | None, **fields: Any) -> None:
    """Tell the user ``line`` on stderr; under JSON logs, the event ``event`` instead (None: already logged)."""
    if _stderr_format["format"] == "json":
        if event is not None:
            _log.warning(event, message=line, **fields)
    else:
        print(f"batch-engage: {printable(line)}", file=sys.stderr, flush=True)


def configure_logging(log_format: str, log_level: str, *, quiet: bool) -> None:
    """Log lines on stderr as JSON or for a console, at ``log_level`` (warning when quiet and left at info)."""
    level = "warning" if quiet and log_level == "info" else log_level
    fmt = log_format
    if fmt == "auto":
        fmt = "console" if sys.stderr.isatty() else "json"
    _stderr_format["format"] = fmt
    renderer: Any = (
        structlog.processors.JSONRenderer(serializer=_json_line, ensure_ascii=False)
        if fmt == "json"
        else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    )
    # On a console the human summary on stdout is the only summary; JSON logs keep the event for machines.
    drop = [_drop_summary, _printable_values] if fmt == "console" else []
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            *drop,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(getattr(logging, level.upper())),
        logger_factory=structlog.PrintLoggerFactory(file=cast(TextIO, _CurrentStderr())),
        cache_logger_on_first_use=False,
    )


# JSON leaves these raw, yet a reader that splits lines with str.splitlines() breaks an event at them, and a
# terminal showing the log turns text around at the bidi ones.
_JSON_RAW_BREAKS = {c: f"\\u{c:04x}" for c in (0x85, 0x2028, 0x2029, *range(0x202A, 0x202F), *range(0x2066, 0x206A))}


def _json_line(event: Any, **options: Any) -> str:
    """One event as one JSON line, whatever text a reply or a cell put in it."""
    return json.dumps(event, **options).translate(_JSON_RAW_BREAKS)


def _printable_values(logger: Any, method: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """A console line's text values with their control characters escaped (:func:`printable`)."""
    for key, value in event.items():
        if isinstance(value, str):
            event[key] = printable(value)
    return event


def _drop_summary(logger: Any, method: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    if event.get("event") == "run.summary":
        raise structlog.DropEvent
    return event


class _CurrentStderr:
    """Whatever ``sys.stderr`` is when a line is written: under the progress bar, rich's proxy prints above it."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()


@contextmanager
def _bar(
    enabled: bool,
    label: str,
    columns: tuple[str, ...],
    start: dict[str, Any],
    fields: Callable[[_Seen], dict[str, Any]],
) -> Iterator[Callable[[_Seen], None] | None]:
    """A bar on stderr: ``label``, the bar, done/total, ``columns`` (the last after time left); yields its update."""
    if not enabled:
        yield None
        return
    # rich loads in about 30 ms; validate, status and every run whose stderr is no terminal draw no bar.
    from rich.console import Console  # noqa: PLC0415
    from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeRemainingColumn  # noqa: PLC0415
    from rich.progress import Progress as Bar  # noqa: PLC0415

    *before, after = (TextColumn(text) for text in columns)
    bar = Bar(
        TextColumn(f"[bold]{label}"),
        BarColumn(),
        MofNCompleteColumn(),
        *before,
        TextColumn("left"),
        TimeRemainingColumn(),
        after,
        console=Console(file=sys.stderr),
        transient=False,
    )
    task = bar.add_task(label, total=None, **start)
    with bar:
        yield lambda seen: bar.update(task, **fields(seen))


def progress_bar(enabled: bool) -> AbstractContextManager[Callable[[api.Progress], None] | None]:
    """The ``run`` bar: rows done, rate, time left, sent/failed/retried; yields the run's progress callback."""
    return _bar(
        enabled,
        "sending",
        (
            "{task.fields[rate]:.1f}/s",
            "sent {task.fields[sent]} failed {task.fields[failed]} retried {task.fields[retried]}",
        ),
        {"rate": 0.0, "sent": 0, "failed": 0, "retried": 0},
        lambda p: {
            "completed": p.done,
            "total": p.total,
            "rate": p.rate,
            "sent": p.sent,
            "failed": p.failed,
            "retried": p.retried,
        },
    )


def collect_bar(enabled: bool) -> AbstractContextManager[Callable[[api.CollectProgress], None] | None]:
    """The ``collect`` bar: runs fetched, time left, ended/active/failed; yields collect's progress callback."""
    return _bar(
        enabled,
        "collecting",
        ("ended {task.fields[ended]} active {task.fields[active]} failed {task.fields[failed]}",),
        {"ended": 0, "active": 0, "failed": 0},
        lambda p: {"completed": p.done, "total": p.total, "ended": p.ended, "active": p.active, "failed": p.failed},
    )


def _left_out(contacts: int) -> str:
    """The line saying the list no longer holds contacts the job reached (a re-exported list without them)."""
    return (
        f"reached earlier, not in this list: {contacts} (their runs stay in the checkpoint; this results table "
        "has this list's rows only)"
    )


def print_summary(result: api.RunResult, out: TextIO) -> None:
    """The run's summary: counts, requests, rates, top errors, where the files are, and the exit code."""
    s = result.summary
    counts = ", ".join(f"{k} {v}" for k, v in s.counts.items() if v)
    done = sum(s.counts.get(k, 0) for k in ("sent", "already_active", "failed", "capped", "holdout"))
    left = sum(s.counts.get(k, 0) for k in ("pending", "uncertain", "in_flight", "waiting_active"))
    if s.requests == 0 and s.lookups == 0 and done and not left and not s.aborted:
        print(
            f"all {done} rows were done by earlier runs (results: {s.results_path}); exit {result.exit_code}", file=out
        )
        if s.left_out:
            print(_left_out(s.left_out), file=out)
        return
    lines = [
        f"rows: {sum(s.counts.values())} ({counts})",
        *(
            [f"reached by earlier runs: {s.reached_earlier} (parameters changed since: {s.parameters_changed})"]
            if s.reached_earlier
            else []
        ),
        *([_left_out(s.left_out)] if s.left_out else []),
        f"requests: {s.requests}, 429s: {s.rate_limited}, retries: {s.retries}, reconciled: {s.reconciled} "
        f"({s.lookups} lookups)",
        f"duration: {s.duration:.1f}s, achieved rate: {s.achieved_rate:.2f}/s "
        f"(configured {s.configured_rate:g}/s, settled at {s.settled_rate:.2f}/s)",
    ]
    lines.extend(f"error {err['code']}: {err['message']} ({err['rows']} rows)" for err in s.top_errors)
    if s.checkpoint_repaired:
        lines.append(f"reconciled first: {s.checkpoint_repaired}")
    advice = "stopped early: run the same command again to finish" if s.stopped_early else None
    if s.stopped_because and not s.aborted:
        if result.exit_code == api.EXIT_TEMPFAIL:
            advice = f"stopped early ({s.stopped_because}): run the same command again to finish"
        else:
            advice = f"stopped: {s.stopped_because}"
    files: dict[str, object] = {"results": s.results_path, "checkpoint": s.checkpoint_path}
    lines += _closing_lines(s.aborted, advice, files, result.exit_code)
    print("\n".join(map(printable, lines)), file=out)


def print_collect_summary(result: api.CollectResult, out: TextIO) -> None:
    """The collect's summary: runs by status, still active, top field values, requests, and the exit code."""
    counts = result.counts
    lines = [
        f"runs: {sum(counts.values())} ({', '.join(f'{k} {v}' for k, v in counts.items() if v) or 'none'})",
        f"still active: {result.still_active}",
    ]
    for name, values in result.top_values.items():
        shown = ", ".join(f"{value!r} {n}" for value, n in values)
        lines.append(f"{name}: {shown or '(no values yet)'}")
    lines.append(f"requests: {result.requests}, retries: {result.retries}")
    advice = (
        "a run of this job is still sending: collect again when it has ended"
        if result.run_sending
        else "some runs are still active: run the same command again later, or pass --wait"
        if result.still_active
        else None
    )
    lines += _closing_lines(
        result.aborted,
        advice,
        {"outcomes": result.outcomes_path},
        result.exit_code,
    )
    print("\n".join(map(printable, lines)), file=out)


def _closing_lines(aborted: object, advice: str | None, files: dict[str, object], exit_code: int) -> list[str]:
    """A summary's last lines: why it was aborted, what to do next, where its files are, and the exit code."""
    return [
        *([f"aborted: {aborted}"] if aborted else []),
        *([advice] if advice else []),
        *(f"{name}: {path}" for name, path in files.items()),
        f"exit: {exit_code}",
    ]


def validation_lines(v: api.Validation, rate: float) -> list[str]:
    """The dry run's report: counts, reasons, openings, estimated duration at ``rate``, samples, the Flow's review."""
    return [
        f"rows: {v.total}",
        f"valid: {v.valid}",
        f"invalid: {v.invalid}",
        *(f"  {n:>6}  {reason}" for reason, n in v.invalid_reasons.items()),
        *(["numbers rewritten (one example of each way, as written → as sent):"] if v.rewrites else []),
        *(f"  {r.written} → {r.sent}  ({r.way})" for r in v.rewrites),
        f"duplicate: {v.duplicate}",
        *(f"suppressed ({name}): {n}" for name, n in v.suppressed.items()),
        *([f"capped: {v.capped}"] if v.capped else []),
        *(["send window openings (rows):"] if v.openings else []),
        *(f"  {when:>17}  {n}" for when, n in v.openings.items()),
        f"already done (checkpoint): {v.already_done}",
        *([_left_out(v.left_out)] if v.left_out else []),
        f"estimated duration at {rate:g}/s: {v.estimated_seconds:.0f}s",
        "sample requests:",
        *(f"  {json.dumps(s, ensure_ascii=False)}" for s in v.samples),
        *(_flow_lines(v.flow) if v.flow and not v.variant_flows else []),
        *(line for name, review in v.variant_flows.items() for line in [f"variant {name}:", *_flow_lines(review)]),
        *(f"warning: {w}" for w in v.flow_warnings),
        *(capacity_lines(v.capacity) if v.capacity else []),
    ]


def capacity_lines(c: api.Capacity) -> list[str]:
    """Will it arrive: the first message's segments, the sender and its pace, trigger and queue time, warnings."""
    data = c.as_dict()
    distribution = ", ".join(f"{n} x {k}" for k, n in c.first_segments.items()) or "none"
    return [
        f"first message segments (rows x segments): {distribution}",
        f"segments per run (upper bound over the Flow's paths): at most {c.segments_per_run_max}; {c.segments} in all",
        f"sender: {c.sender} ({c.sender_label}), {c.sender_throughput or 0:g} segments/s",
        f"trigger: {c.runs} runs at {c.trigger_rate:g}/s, about {c.trigger_seconds:,.0f}s",
        f"Twilio's queue: about {c.queue_seconds:,.0f}s (validity period {c.validity_period:,}s)",
        f"projected finish: {data['finish_at']}",
        f"replies: {c.reply_routing}" + (f" ({c.replies_to})" if c.replies_to else ""),
        *(f"warning: {w}" for w in c.warnings),
    ]


def _flow_lines(review: api.FlowReview) -> list[str]:
    name = f"{review.name} " if review.name else ""
    lines = [
        f"flow: {name}(revision {review.revision}, the last published)",
        f"the REST API trigger leads to: {review.trigger_target}",
        "variables the Flow reads:",
    ]
    width = max((len(v.path) for v in review.variables), default=4) + len("flow.data.")
    for v in review.variables:
        source = "MISSING" if v.source is None else f"from {v.source}"
        empty = f"; empty in {v.empty_rows} rows" if v.empty_rows else ""
        kind = "required" if v.required else "optional"
        lines.append(f"  {'flow.data.' + v.path:<{width}}  {kind:<8}  {source}{empty}  ({', '.join(v.widgets)})")
    for v in review.variables:
        if v.empty_rows and v.required:
            lines.append(f"{v.path} is empty in {v.empty_rows} rows; the Flow prints it in {', '.join(v.widgets)}")
    if review.check.unused:
        lines.append(f"keys the Flow never reads: {', '.join(review.check.unused)}")
    if review.message_widget:
        lines.append(f"the first message ({review.message_widget}) for the first contacts:")
        lines.extend(f"  {text}" for text in review.samples)
    return lines


def sweep_lines(result: api.Sweep) -> list[str]:
    """What ``sweep`` prints: each active run it looked at, what it did (or would do) and why, then the totals."""
    lines = [f"{run.action:<12} {run.sid}  row {run.row}: {run.reason}" for run in result.runs]
    verb = "would end" if result.dry_run else "ended"
    lines.append(
        f"{result.count(verb)} {verb}, {result.count('left active')} of this job's left active, "
        f"{result.count('not ours')} not this job's (left alone), of {result.checked} runs in the checkpoint"
        + ("; nothing was ended: add --yes to end them" if result.dry_run else "")
    )
    return lines


def status_lines(state: api.Status) -> list[str]:
    """Counts by status aligned, their total, and the rows waiting for their send window."""
    counts = state.counts
    width = max(len(k) for k in counts)
    lines = [f"checkpoint: {state.checkpoint}"] if state.checkpoint else []
    lines += [f"period: {state.period}"] if state.period else []
    lines += [f"{k:<{width}}  {v}" for k, v in counts.items()]
    lines.append(f"{'total':<{width}}  {sum(counts.values())}")
    if state.waiting_for_window:
        opens = state.next_opening
        when = opens.strftime("%Y-%m-%dT%H:%M:%SZ") if opens else "never"
        lines.append(f"waiting for their send window: {state.waiting_for_window} (next opens at {when})")
    for name, by_status in state.variants.items():
        detail = ", ".join(f"{status} {n}" for status, n in by_status.items())
        lines.append(f"variant {name}: {sum(by_status.values())} ({detail})")
    return lines


def stop_acknowledged(control: api.RunControl) -> None:
    """Ask ``control`` to stop, and say so on stderr: the first time gently, the second time at once."""
    hard = control.stopping
    control.request_stop()
    if hard:
        notice("stopping now; requests in flight are looked up by the next run", "stop.now")
    else:
        notice(
            "stopping: waiting for the answers in flight (again to stop at once); the same command resumes",
            "stop.requested",
        )


def sandbox_banner(url: str) -> None:
    """Where the sandbox listens, the credentials it takes, and how to point a run at it."""
    print(f"Studio sandbox on {url}", flush=True)
    print(f"  TWILIO_ACCOUNT_SID={api.SANDBOX_USERNAME} TWILIO_AUTH_TOKEN={api.SANDBOX_PASSWORD}", flush=True)
    print(f"  batch-engage run JOB --base-url {url}", flush=True)


# An output that cannot take what the command writes: a full disk or quota, a failing device, a reader gone.
UNWRITABLE = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EIO, errno.EPIPE})


def unwritable(exc: OSError) -> int:
    """Say that the output could not be written (not when its reader went away: nobody is there to tell); 74."""
    if exc.errno != errno.EPIPE:
        with contextlib.suppress(OSError, ValueError):
            sys.stderr.write(f"batch-engage: the output could not be written: {exc}\n")
            sys.stderr.flush()
    return api.EXIT_IOERR
