"""The ``batch-engage`` command: the only module that parses flags, prints, and picks exit codes."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import re
import signal
import sys
from collections.abc import Callable, Iterator, MutableMapping, Sequence
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any, NoReturn, TextIO, cast

import structlog
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeRemainingColumn
from rich.progress import Progress as Bar

from . import api
from .api import (
    EXIT_OK,
    EXIT_USAGE,
    SANDBOX_PASSWORD,
    SANDBOX_USERNAME,
    Credentials,
    FlowReview,
    Progress,
    RunControl,
    RunOptions,
    RunResult,
    Sandbox,
    SandboxConfig,
)
from .api import serve_sandbox as serve
from .errors import BatchEngageError, UsageError

__all__ = ["build_parser", "main"]

_DURATION = re.compile(r"^\s*(?:(\d+(?:\.\d+)?)h)?\s*(?:(\d+(?:\.\d+)?)m)?\s*(?:(\d+(?:\.\d+)?)s?)?\s*$")


class _Parser(argparse.ArgumentParser):
    """argparse, with its usage errors as one line and exit 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"batch-engage: {message} (see --help)\n")


def parse_duration(text: str) -> float:
    """``50m``, ``1h30m``, ``90s`` or plain seconds, as seconds."""
    match = _DURATION.match(text)
    if not text.strip() or match is None or not any(match.groups()):
        raise argparse.ArgumentTypeError(f"not a duration: {text!r} (use e.g. 50m, 1h30m, 90s)")
    hours, minutes, seconds = (float(g) if g else 0.0 for g in match.groups())
    return hours * 3600 + minutes * 60 + seconds


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError("must not be negative")
    return value


def _job_options(p: argparse.ArgumentParser, *, period: bool = False) -> None:
    p.add_argument("job", help="the job file (TOML)")
    p.add_argument("--input", metavar="PATH", help="read contacts from PATH instead of [input] path ('-' = stdin)")
    p.add_argument("--checkpoint", metavar="PATH", help="use this checkpoint instead of [output] checkpoint")
    p.add_argument(
        "--sandbox",
        action="store_true",
        help="the rehearsal on the built-in Studio simulator (no Twilio account): its own checkpoint and results",
    )
    if period:
        p.add_argument(
            "--period", metavar="PERIOD", help="another period of a job whose id has {date}, {week} or {month}"
        )
    p.add_argument(
        "--separator",
        metavar="CHAR",
        type=lambda text: "\t" if text in ("\\t", "tab") else text,
        help="the CSV field separator: ',', ';', '|' or 'tab' (overrides [input] separator; default: detected)",
    )


def _log_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--log-format",
        choices=["auto", "json", "console"],
        default="auto",
        help="log lines on stderr: JSON (the default when stderr is not a terminal) or console",
    )
    p.add_argument(
        "--log-level",
        choices=["debug", "info", "warning", "error"],
        default="info",
        help="least important log level shown",
    )
    p.add_argument(
        "--quiet", "-q", action="store_true", help="no progress bar and no summary; logs at warning and above"
    )


def _strict_option(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--strict-variables",
        action="store_true",
        help="refuse (exit 2) when the Flow prints a flow.data variable the job does not supply",
    )


def _restart_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--restart",
        action="store_true",
        help="start over: forget every contact this job reached (the old checkpoint is moved aside, never deleted)",
    )
    p.add_argument("--yes", action="store_true", help="confirm --restart (it never asks: cron is safe)")


def build_parser() -> argparse.ArgumentParser:
    """The whole command line, every command and option with its help."""
    parser = _Parser(
        prog="batch-engage",
        description=(
            "Turn a CSV or Parquet file of contacts into Twilio Studio Flow runs: paced, resumable, never twice."
        ),
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=_Parser)

    run = sub.add_parser(
        "run", help="send every row of a job to Studio", description="Send every row of a job to Studio."
    )
    _job_options(run, period=True)
    run.add_argument("--output", metavar="PATH", help="write the results table to PATH instead of [output] results")
    run.add_argument("--rate", type=float, metavar="N", help="requests per second (overrides [send] rate)")
    run.add_argument(
        "--concurrency", type=int, metavar="N", help="requests in flight at most (overrides [send] concurrency)"
    )
    run.add_argument("--base-url", metavar="URL", help="Studio's base URL (overrides [flow] base_url)")
    run.add_argument("--limit", type=_positive_int, metavar="N", help="send at most N new rows in this run")
    run.add_argument(
        "--max-duration",
        type=parse_duration,
        metavar="DURATION",
        help="stop gracefully after this long (e.g. 50m), exit 75",
    )
    run.add_argument("--wait", action="store_true", help="keep running and send each row as its send window opens")
    _restart_options(run)
    _strict_option(run)
    run.add_argument("--no-preflight", action="store_true", help="skip the GET of the Flow before the first row")
    run.add_argument("--dry-run", action="store_true", help="validate only, send nothing (the same as 'validate')")
    run.add_argument("--summary-json", metavar="PATH", help="also write the run summary as JSON to PATH")
    run.add_argument("--report-html", metavar="PATH", help="also write the campaign report page at the end of the run")
    _log_options(run)

    val = sub.add_parser(
        "validate",
        help="check a job's input without sending anything",
        description="Check a job's input and mapping; no network at all.",
    )
    _job_options(val)
    val.add_argument("--output", metavar="PATH", help="write the results table (invalid, duplicate, pending) to PATH")
    val.add_argument(
        "--flow",
        action="store_true",
        help="also check the job against the Flow's published revision (uses the network and credentials)",
    )
    _strict_option(val)
    _restart_options(val)
    _log_options(val)

    st = sub.add_parser(
        "status",
        help="counts by status from the checkpoint",
        description="Counts by status from the checkpoint; sends nothing.",
    )
    _job_options(st, period=True)
    _log_options(st)

    rep = sub.add_parser(
        "report",
        help="write the results table again from the checkpoint",
        description="Write the results table again from the checkpoint alone; sends nothing.",
    )
    _job_options(rep, period=True)
    rep.add_argument("--output", metavar="PATH", help="write to PATH instead of [output] results")
    rep.add_argument("--html", metavar="PATH", help="also write the campaign report: one self-contained HTML page")
    _log_options(rep)

    col = sub.add_parser(
        "collect",
        help="fetch what happened in each run: status, answers, delivery",
        description=(
            "Fetch each run's status, the [collect.fields] of its Context and its messages' delivery; "
            "write the outcomes table. Exit 75 while some runs are still active."
        ),
    )
    col.add_argument("job", help="the job file (TOML)")
    col.add_argument("--checkpoint", metavar="PATH", help="use this checkpoint instead of [output] checkpoint")
    col.add_argument(
        "--sandbox", action="store_true", help="collect the rehearsal's runs from the built-in Studio simulator"
    )
    col.add_argument(
        "--period", metavar="PERIOD", help="another period of a job whose id has {date}, {week} or {month}"
    )
    col.add_argument("--output", metavar="PATH", help="write the outcomes table to PATH instead of [output] outcomes")
    col.add_argument("--refresh", action="store_true", help="fetch every run again, even those recorded as ended")
    col.add_argument("--wait", action="store_true", help="poll until every run has ended (see --max-duration)")
    col.add_argument(
        "--max-duration",
        type=parse_duration,
        metavar="DURATION",
        help="stop gracefully after this long (e.g. 50m); exit 75 if runs are still active",
    )
    _log_options(col)

    hist = sub.add_parser(
        "history",
        help="seed or inspect the shared contact history",
        description="Seed the contact history from a past results table, or show contacts reached per flow per day.",
    )
    hist_sub = hist.add_subparsers(
        dest="history_command", required=True, metavar="ACTION", parser_class=_Parser, help="import or stats"
    )
    imp = hist_sub.add_parser(
        "import", help="record a past results table's sent rows", description="Record a results table's sent rows."
    )
    imp.add_argument("file", help="a results table (.csv or .parquet) written by batch-engage")
    stats = hist_sub.add_parser(
        "stats", help="contacts reached per flow per day", description="Contacts reached per flow per day."
    )
    for p in (imp, stats):
        p.add_argument("--job", metavar="JOB", help="take [history] path (and the Flow SID) from this job file")
        p.add_argument("--history", metavar="PATH", help="the history file (instead of --job)")
    imp.add_argument("--flow-sid", metavar="SID", help="the Flow the table's runs belong to (instead of --job)")

    sb = sub.add_parser(
        "sandbox",
        help="serve the Studio simulator for rehearsals",
        description="Serve the Studio simulator on 127.0.0.1 until interrupted.",
    )
    sb.add_argument("--port", type=int, default=0, help="port to listen on (default: a free one)")
    sb.add_argument(
        "--rate-limit",
        type=float,
        default=20.0,
        metavar="N",
        help="creates per second before it answers 429 (default 20)",
    )
    sb.add_argument("--latency", type=float, default=0.08, metavar="SECONDS", help="mean answer latency (default 0.08)")
    sb.add_argument("--no-active-rule", action="store_true", help="switch off Studio's one-active-run-per-contact rule")
    sb.add_argument(
        "--lost-answer-rate",
        type=float,
        default=0.0,
        metavar="SHARE",
        help="share of creates that create the run but answer 503",
    )
    sb.add_argument(
        "--error-rate",
        type=float,
        default=0.0,
        metavar="SHARE",
        help="share of creates answered 500/503 without creating a run",
    )
    sb.add_argument(
        "--retry-after", type=float, metavar="SECONDS", help="put Retry-After (rounded up) on every 429 (default: none)"
    )
    sb.add_argument("--seed", type=int, metavar="N", help="seed the random draws, so faults repeat run after run")
    sb.add_argument(
        "--run-lifetime",
        type=float,
        default=3600.0,
        metavar="SECONDS",
        help="seconds until a run ends and its widgets have played (default 3600)",
    )
    sb.add_argument(
        "--clock-offset",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="how far Twilio's clock is ahead of ours (negative: behind)",
    )
    sb.add_argument(
        "--other-sender-rate",
        type=float,
        default=0.0,
        metavar="SHARE",
        help="share of creates just before which an inbound message starts (and ends) a run for the same contact",
    )
    sb.add_argument(
        "--read-rate-limit-rate",
        type=float,
        default=0.0,
        metavar="SHARE",
        help="share of run-list, run and Context reads answered 429",
    )
    sb.add_argument(
        "--flow",
        action="append",
        default=[],
        metavar="SID=STATUS",
        help="serve only these Flows; STATUS is published, draft or draft_over_published (repeatable)",
    )
    sb.add_argument(
        "--list-drops-channel-prefix",
        action="store_true",
        help="run lists show contact_channel_address without its whatsapp: prefix",
    )
    sb.add_argument("--next-page-host", metavar="HOST", help="list paging URLs name this host instead of the sandbox")
    sb.add_argument(
        "--replies",
        metavar="LIST",
        default=",".join(SandboxConfig().replies),
        help="comma-separated replies contacts pick from, one per contact (default YES,NO,STOP,4,5)",
    )
    sb.add_argument(
        "--unwired-trigger",
        action="store_true",
        help="leave the Trigger's incomingRequest unconnected, so REST runs send nothing",
    )
    sb.add_argument(
        "--state-path", metavar="PATH", help="keep runs in this file, so a later sandbox process serves the same runs"
    )
    return parser


def _configure_logging(args: argparse.Namespace) -> None:
    level = "warning" if getattr(args, "quiet", False) and args.log_level == "info" else args.log_level
    fmt = args.log_format
    if fmt == "auto":
        fmt = "console" if sys.stderr.isatty() else "json"
    renderer: Any = (
        structlog.processors.JSONRenderer(ensure_ascii=False)
        if fmt == "json"
        else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    )
    # On a console the human summary on stdout is the only summary; JSON logs keep the event for machines.
    drop = [_drop_summary] if fmt == "console" else []
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


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    values = {
        "input.path": getattr(args, "input", None),
        "input.separator": getattr(args, "separator", None),
        "output.checkpoint": getattr(args, "checkpoint", None),
        "output.results": getattr(args, "output", None) if args.command == "run" else None,
        "send.rate": getattr(args, "rate", None),
        "send.concurrency": getattr(args, "concurrency", None),
        "flow.base_url": getattr(args, "base_url", None),
    }
    if getattr(args, "no_preflight", False):
        values["send.preflight"] = False
    if getattr(args, "strict_variables", False):
        values["flow.strict_variables"] = True
    return {k: v for k, v in values.items() if v is not None}


def _print_summary(result: RunResult, out: TextIO) -> None:
    s = result.summary
    counts = ", ".join(f"{k} {v}" for k, v in s.counts.items() if v)
    done = sum(s.counts.get(k, 0) for k in ("sent", "already_active", "failed", "capped"))
    left = sum(s.counts.get(k, 0) for k in ("pending", "uncertain", "in_flight"))
    if s.requests == 0 and s.lookups == 0 and done and not left and not s.aborted:
        print(
            f"all {done} rows were done by earlier runs (results: {s.results_path}); exit {result.exit_code}", file=out
        )
        return
    lines = [
        f"rows: {sum(s.counts.values())} ({counts})",
        *(
            [f"reached by earlier runs: {s.reached_earlier} (parameters changed since: {s.parameters_changed})"]
            if s.reached_earlier
            else []
        ),
        f"requests: {s.requests}, 429s: {s.rate_limited}, retries: {s.retries}, reconciled: {s.reconciled} "
        f"({s.lookups} lookups)",
        f"duration: {s.duration:.1f}s, achieved rate: {s.achieved_rate:.2f}/s "
        f"(configured {s.configured_rate:g}/s, settled at {s.settled_rate:.2f}/s)",
    ]
    for err in s.top_errors:
        lines.append(f"error {err['code']}: {err['message']} ({err['rows']} rows)")
    if s.aborted:
        lines.append(f"aborted: {s.aborted}")
    if s.stopped_early:
        lines.append("stopped early: run the same command again to finish")
    lines.append(f"results: {s.results_path}")
    lines.append(f"checkpoint: {s.checkpoint_path}")
    lines.append(f"exit: {result.exit_code}")
    print("\n".join(lines), file=out)


@contextmanager
def _progress_bar(enabled: bool) -> Iterator[Callable[[Progress], None] | None]:
    if not enabled:
        yield None
        return
    bar = Bar(
        TextColumn("[bold]sending"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]:.1f}/s"),
        TimeRemainingColumn(),
        TextColumn("sent {task.fields[sent]} failed {task.fields[failed]} retried {task.fields[retried]}"),
        console=Console(file=sys.stderr),
        transient=False,
    )
    task = bar.add_task("send", total=None, rate=0.0, sent=0, failed=0, retried=0)

    def update(p: Progress) -> None:
        bar.update(task, completed=p.done, total=p.total, rate=p.rate, sent=p.sent, failed=p.failed, retried=p.retried)

    with bar:
        yield update


async def _run_async(
    args: argparse.Namespace,
    creds: Credentials | None,
    overrides: dict[str, Any],
    progress: Callable[[Progress], None] | None,
) -> RunResult:
    control = RunControl()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, control.request_stop)
    stdin = sys.stdin.buffer if args.input == "-" else None
    options = RunOptions(
        limit=args.limit,
        max_duration=args.max_duration,
        restart=args.restart,
        yes=args.yes,
        wait=args.wait,
        sandbox=args.sandbox,
    )
    try:
        job = api.load_job(args.job, overrides, sandbox=args.sandbox, period=args.period)
        return await api.run_async(
            job, credentials=creds, options=options, control=control, on_progress=progress, stdin=stdin
        )
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)


def _check_writable_folder(path: str, flag: str) -> None:
    folder = Path(path).resolve().parent
    if not folder.is_dir():
        raise UsageError(f"{flag} {path}: the folder {folder} does not exist; nothing was sent")
    if not os.access(folder, os.W_OK):
        raise UsageError(f"{flag} {path}: the folder {folder} is not writable; nothing was sent")


def _write_atomically(path: str, text: str) -> None:
    target = Path(path)
    tmp = target.with_name(target.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, target)


@contextmanager
def _rehearsal(
    args: argparse.Namespace, overrides: dict[str, Any], *, latest: bool = False
) -> Iterator[Credentials | None]:
    """With ``--sandbox``: serve the simulator and point the job at it; yield the credentials it takes (else None).

    Its runs are kept beside the rehearsal's checkpoint, so a later ``run`` or ``collect --sandbox``
    (another process) finds the same runs, as the real Studio would.
    """
    if not args.sandbox:
        yield None
        return
    rehearsal = api.load_job(args.job, overrides, sandbox=True, period=args.period, latest=latest)
    try:
        simulator = Sandbox(api.sandbox_config(rehearsal))
    except ValueError as exc:  # a state file that is not the sandbox's
        raise UsageError(f"{args.command} --sandbox: {exc}") from None
    with simulator as sandbox:
        overrides["flow.base_url"] = sandbox.url
        yield Credentials(SANDBOX_USERNAME, SANDBOX_PASSWORD)


def _cmd_run(args: argparse.Namespace) -> int:
    if args.dry_run:
        return _cmd_validate(args)
    if args.summary_json:
        _check_writable_folder(args.summary_json, "--summary-json")
    if args.report_html:
        _check_writable_folder(args.report_html, "--report-html")
    overrides = _overrides(args)
    with _rehearsal(args, overrides) as creds:
        show = sys.stderr.isatty() and not args.quiet
        with _progress_bar(show) as progress:
            result = asyncio.run(_run_async(args, creds, overrides, progress))
    if not args.quiet:
        _print_summary(result, sys.stdout)
    if args.summary_json:
        _write_atomically(
            args.summary_json, json.dumps(result.summary.as_dict() | {"exit_code": result.exit_code}, indent=2)
        )
    if args.report_html:
        spec = api.load_job(args.job, _overrides(args), sandbox=args.sandbox, period=args.period)
        api.write_report_html(spec, args.report_html)
    return result.exit_code


def _flow_lines(review: FlowReview) -> list[str]:
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


def _cmd_validate(args: argparse.Namespace) -> int:
    overrides = _overrides(args)
    overrides.pop("output.results", None)
    stdin = sys.stdin.buffer if args.input == "-" else None
    flow = getattr(args, "flow", False)
    creds: Credentials | None = None
    with Sandbox() if args.sandbox and flow else nullcontext() as sandbox:
        if sandbox is not None:
            overrides["flow.base_url"] = sandbox.url
            creds = Credentials(SANDBOX_USERNAME, SANDBOX_PASSWORD)
        v = api.validate(
            args.job,
            overrides=overrides,
            output=args.output,
            stdin=stdin,
            sandbox=args.sandbox,
            restart=args.restart,
            yes=args.yes,
            credentials=creds,
            flow=flow,
        )
    spec = api.load_job(args.job, overrides)
    lines = [
        f"rows: {v.total}",
        f"valid: {v.valid}",
        f"invalid: {v.invalid}",
        *(f"  {n:>6}  {reason}" for reason, n in v.invalid_reasons.items()),
        f"duplicate: {v.duplicate}",
        *(f"suppressed ({name}): {n}" for name, n in v.suppressed.items()),
        *([f"capped: {v.capped}"] if v.capped else []),
        *(["send window openings (rows):"] if v.openings else []),
        *(f"  {when:>17}  {n}" for when, n in v.openings.items()),
        f"already done (checkpoint): {v.already_done}",
        f"estimated duration at {spec.send.rate:g}/s: {v.estimated_seconds:.0f}s",
        "sample requests:",
        *(f"  {json.dumps(s, ensure_ascii=False)}" for s in v.samples),
        *(_flow_lines(v.flow) if v.flow else []),
    ]
    if args.output:
        lines.append(f"results: {args.output}")
    print("\n".join(lines))
    return v.exit_code


def _cmd_status(args: argparse.Namespace) -> int:
    state = api.status(args.job, overrides=_overrides(args), period=args.period, sandbox=args.sandbox)
    counts = state.counts
    if state.period:
        print(f"period: {state.period}")
    width = max(len(k) for k in counts)
    print("\n".join(f"{k:<{width}}  {v}" for k, v in counts.items()))
    print(f"{'total':<{width}}  {sum(counts.values())}")
    if state.waiting_for_window:
        opens = state.next_opening
        when = opens.strftime("%Y-%m-%dT%H:%M:%SZ") if opens else "never"
        print(f"waiting for their send window: {state.waiting_for_window} (next opens at {when})")
    return EXIT_OK


def _cmd_report(args: argparse.Namespace) -> int:
    overrides = _overrides(args)
    path, counts = api.report(
        args.job, overrides=overrides, output=args.output, period=args.period, sandbox=args.sandbox, html=args.html
    )
    print(f"results: {path} ({', '.join(f'{k} {v}' for k, v in counts.items() if v)})")
    if args.html:
        print(f"report: {args.html}")
    return EXIT_OK


def _cmd_sandbox(args: argparse.Namespace) -> int:
    flows = dict(flow.partition("=")[::2] for flow in args.flow)
    for sid, status in flows.items():
        if not status:
            raise UsageError(f"sandbox: --flow {sid!r} needs =STATUS (published, draft or draft_over_published)")
    try:
        config = SandboxConfig(
            rate_limit=args.rate_limit or None,
            latency=args.latency,
            active_rule=not args.no_active_rule,
            lost_answer_rate=args.lost_answer_rate,
            error_rate=args.error_rate,
            retry_after=args.retry_after,
            seed=args.seed,
            run_lifetime=args.run_lifetime,
            clock_offset=args.clock_offset,
            other_sender_rate=args.other_sender_rate,
            read_rate_limit_rate=args.read_rate_limit_rate,
            flows=flows or None,
            list_drops_channel_prefix=args.list_drops_channel_prefix,
            next_page_host=args.next_page_host,
            replies=tuple(reply.strip() for reply in args.replies.split(",")),
            unwired_trigger=args.unwired_trigger,
            state_path=args.state_path,
        )
    except ValueError as exc:
        raise UsageError(f"sandbox: {exc}") from None

    def ready(url: str) -> None:
        print(f"Studio sandbox on {url}", flush=True)
        print(f"  TWILIO_ACCOUNT_SID={SANDBOX_USERNAME} TWILIO_AUTH_TOKEN={SANDBOX_PASSWORD}", flush=True)
        print(f"  batch-engage run JOB --base-url {url}", flush=True)

    try:
        serve(config, port=args.port, on_ready=ready)
    except ValueError as exc:  # a state file that is not the sandbox's
        raise UsageError(f"sandbox: {exc}") from None
    return EXIT_OK


@contextmanager
def _collect_bar(enabled: bool) -> Iterator[Callable[[api.CollectProgress], None] | None]:
    if not enabled:
        yield None
        return
    bar = Bar(
        TextColumn("[bold]collecting"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        TextColumn("ended {task.fields[ended]} active {task.fields[active]} failed {task.fields[failed]}"),
        console=Console(file=sys.stderr),
        transient=False,
    )
    task = bar.add_task("collect", total=None, ended=0, active=0, failed=0)

    def update(p: api.CollectProgress) -> None:
        bar.update(task, completed=p.done, total=p.total, ended=p.ended, active=p.active, failed=p.failed)

    with bar:
        yield update


def _print_collect_summary(result: api.CollectResult, out: TextIO) -> None:
    counts = result.counts
    lines = [
        f"runs: {sum(counts.values())} ({', '.join(f'{k} {v}' for k, v in counts.items() if v) or 'none'})",
        f"still active: {result.still_active}",
    ]
    for name, values in result.top_values.items():
        shown = ", ".join(f"{value!r} {n}" for value, n in values)
        lines.append(f"{name}: {shown or '(no values yet)'}")
    lines.append(f"requests: {result.requests}, retries: {result.retries}")
    if result.aborted:
        lines.append(f"aborted: {result.aborted}")
    if result.still_active:
        lines.append("some runs are still active: run the same command again later, or pass --wait")
    lines.append(f"outcomes: {result.outcomes_path}")
    lines.append(f"exit: {result.exit_code}")
    print("\n".join(lines), file=out)


async def _collect_async(
    args: argparse.Namespace,
    creds: Credentials | None,
    overrides: dict[str, Any],
    progress: Callable[[api.CollectProgress], None] | None,
) -> api.CollectResult:
    control = RunControl()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, control.request_stop)
    options = api.CollectOptions(
        refresh=args.refresh,
        wait=args.wait,
        max_duration=args.max_duration,
        poll_interval=_SANDBOX_POLL if args.sandbox else api.DEFAULT_COLLECT_POLL,
        sandbox=args.sandbox,
        output=args.output,
    )
    try:
        return await api.collect_async(
            args.job,
            credentials=creds,
            overrides=overrides,
            options=options,
            period=args.period,
            control=control,
            on_progress=progress,
        )
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)


# --sandbox runs end after a few seconds, so --wait there polls often.
_SANDBOX_POLL = 1.0


def _cmd_collect(args: argparse.Namespace) -> int:
    overrides = _overrides(args)
    with _rehearsal(args, overrides, latest=True) as creds:
        show = sys.stderr.isatty() and not args.quiet
        with _collect_bar(show) as progress:
            result = asyncio.run(_collect_async(args, creds, overrides, progress))
    if not args.quiet:
        _print_collect_summary(result, sys.stdout)
    return result.exit_code


def _cmd_history(args: argparse.Namespace) -> int:
    spec = api.load_job(args.job) if args.job else None
    path = args.history or (spec.history.path if spec else None)
    if not path:
        raise UsageError("history: give --history PATH, or --job JOB with a [history] path")
    if args.history_command == "import":
        flow_sid = args.flow_sid or (spec.flow.sid if spec else None)
        if not flow_sid:
            raise UsageError("history import: give --flow-sid SID, or --job JOB")
        n = api.import_history(args.file, history=path, flow_sid=flow_sid)
        print(f"recorded {n} contacts from {args.file} in {path}")
        return EXIT_OK
    table = api.history_stats(path)
    print("day         flow_sid                            contacts")
    for flow_sid, day, contacts in table.select("flow_sid", "day", "contacts").iter_rows():
        print(f"{day}  {flow_sid}  {contacts:>8}")
    return EXIT_OK


_COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "collect": _cmd_collect,
    "history": _cmd_history,
    "run": _cmd_run,
    "validate": _cmd_validate,
    "status": _cmd_status,
    "report": _cmd_report,
    "sandbox": _cmd_sandbox,
}


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: run one command and return its exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if hasattr(args, "log_format"):
        _configure_logging(args)
    try:
        return _COMMANDS[args.command](args)
    except BatchEngageError as exc:
        print(f"batch-engage: {exc}", file=sys.stderr)
        return api.exit_code_for_error(exc)
    except KeyboardInterrupt as exc:
        return api.exit_code_for_error(exc)
