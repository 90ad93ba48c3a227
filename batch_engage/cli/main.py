"""The ``batch-engage`` command: run one command and return its exit code.

With ``_cli_parser`` (the flags) and ``_cli_output`` (what is shown), the only code that parses
flags, prints, and picks exit codes (through ``api``); it calls nothing but ``api``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

from .. import api, early
from ..control import RunControl
from ..errors import BatchEngageError, Stopped, UsageError
from ..exits import EXIT_OK
from .output import (
    UNWRITABLE,
    collect_bar,
    configure_logging,
    notice,
    print_collect_summary,
    print_summary,
    printable,
    progress_bar,
    sandbox_banner,
    status_lines,
    stop_acknowledged,
    sweep_lines,
    unwritable,
    validation_lines,
)
from .parser import build_parser, parse_duration
from .sandbox_flags import sandbox_config

__all__ = ["build_parser", "main", "parse_duration"]

_T = TypeVar("_T")

# Seconds a run gets to wind down after a second stop before it is cut off.
_HARD_STOP_GRACE = 0.75

# --sandbox runs end after a few seconds, so --wait there polls often.
_SANDBOX_POLL = 1.0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: run one command and return its exit code."""
    early.imported()
    args = build_parser().parse_args(argv)
    if hasattr(args, "log_format"):
        configure_logging(args.log_format, args.log_level, quiet=getattr(args, "quiet", False))
    try:
        code = _COMMANDS[args.command](args)
    except BatchEngageError as exc:
        print(f"batch-engage: {printable(str(exc))}", file=sys.stderr)
        code = api.exit_code_for_error(exc)
    except KeyboardInterrupt as exc:
        code = api.exit_code_for_error(exc)
    except OSError as exc:
        if exc.errno not in UNWRITABLE:
            raise
        code = unwritable(exc)
    if api.calls_hanging():
        # A call to a frozen database was abandoned: everything is said and written; a clean interpreter exit
        # would wait on that call's connection, so end here.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    return code


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    values = {
        "input.path": getattr(args, "input", None),
        "input.separator": getattr(args, "separator", None),
        "output.checkpoint": getattr(args, "checkpoint", None),
        "output.results": getattr(args, "output", None) if args.command == "run" else None,
        "send.rate": getattr(args, "rate", None),
        "send.concurrency": getattr(args, "concurrency", None),
        "send.on_active": getattr(args, "on_active", None),
        "flow.base_url": getattr(args, "base_url", None),
    }
    if getattr(args, "no_preflight", False):
        values["send.preflight"] = False
    if getattr(args, "strict_variables", False):
        values["flow.strict_variables"] = True
    if getattr(args, "other_list", False):
        values["input.other_lists"] = True
    return {k: v for k, v in values.items() if v is not None}


def _flags(args: argparse.Namespace, *names: str) -> dict[str, Any]:
    """These flags' values by name: the options objects' fields are named as the flags are."""
    return {name: getattr(args, name) for name in names}


async def _until_stopped(work: Callable[[RunControl], Awaitable[_T]]) -> _T:
    """``work`` given a RunControl that SIGINT and SIGTERM ask to stop; a second one ends it at once, whatever
    it waits for (in-flight contacts stay possibly sent: the next run settles them)."""
    control = RunControl()
    loop = asyncio.get_running_loop()
    task = asyncio.ensure_future(work(control))

    def stop() -> None:
        stop_acknowledged(control)
        if control.hard:
            # The run winds down at once (results written, in-flight rows uncertain); if something it waits
            # for hangs (a frozen database), it is cut off after a moment.
            loop.call_later(_HARD_STOP_GRACE, task.cancel)

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop)
    try:
        return await task
    except asyncio.CancelledError:
        if not control.hard:
            raise
        raise Stopped("stopped at once (a second signal); the next run settles what was in flight") from None
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)


def _say(line: str) -> None:
    notice(line, None)  # the run logs it as run.sending


def _prove_outputs(args: argparse.Namespace, spec: api.Spec) -> None:
    """Every file the run will write, held against the job's own and proven writable, before anything is sent."""
    extra = [("--summary-json", args.summary_json), ("--report-html", args.report_html)]
    for folder in api.prove_outputs(spec, extra):
        notice(f"created the folder {folder}", "output.folder_created", path=str(folder))


def _cmd_run(args: argparse.Namespace) -> int:
    if args.dry_run:
        return _cmd_validate(args)
    # Read once: the outputs proven, the run, its summary and its report are of one job and one period (a run that
    # crosses midnight reports on the period it sent for).
    spec = api.load_job(args.job, _overrides(args), sandbox=args.sandbox, period=args.period)
    _prove_outputs(args, spec)
    stdin = sys.stdin.buffer if args.input == "-" else None
    options = api.RunOptions(**_flags(args, "limit", "max_duration", "restart", "yes", "wait", "sandbox"))
    # With --sandbox the library serves the simulator itself: the CLI and Python callers share one path.
    with progress_bar(sys.stderr.isatty() and not args.quiet) as progress:

        def send(control: RunControl) -> Awaitable[api.RunResult]:
            return api.run_async(
                spec,
                options=options,
                control=control,
                on_progress=progress,
                stdin=stdin,
                on_start=None if args.quiet else _say,
            )

        result = asyncio.run(_until_stopped(send))
    if not args.quiet:
        print_summary(result, sys.stdout)
    if args.summary_json:
        api.write_summary_json(spec, args.summary_json, result.summary.as_dict() | {"exit_code": result.exit_code})
    if args.report_html:
        api.write_report_html(spec, args.report_html)
    return result.exit_code


def _cmd_validate(args: argparse.Namespace) -> int:
    overrides = _overrides(args)
    overrides.pop("output.results", None)
    v = api.validate(
        args.job,
        overrides=overrides,
        output=args.output,
        stdin=sys.stdin.buffer if args.input == "-" else None,
        sandbox=args.sandbox,
        restart=args.restart,
        yes=args.yes,
        flow=getattr(args, "flow", False),
    )
    lines = validation_lines(v, api.load_job(args.job, overrides).send.rate)
    if args.output:
        lines.append(f"results: {args.output}")
    print("\n".join(map(printable, lines)))
    if getattr(args, "summary_json", None):
        spec = api.load_job(args.job, overrides, sandbox=args.sandbox)
        api.write_summary_json(spec, args.summary_json, v.as_dict() | {"exit_code": v.exit_code})
    return v.exit_code


def _cmd_status(args: argparse.Namespace) -> int:
    state = api.status(args.job, overrides=_overrides(args), period=args.period, sandbox=args.sandbox)
    print("\n".join(map(printable, status_lines(state))))
    return EXIT_OK


def _cmd_report(args: argparse.Namespace) -> int:
    overrides = _overrides(args)
    path, counts = api.report(
        args.job, overrides=overrides, output=args.output, period=args.period, sandbox=args.sandbox, html=args.html
    )
    shown = ", ".join(f"{k} {v}" for k, v in counts.items() if v)
    print(f"results: {path} ({shown})" if path is not None else f"rows: {shown}")
    if args.html:
        print(f"report: {args.html}")
    return EXIT_OK


def _cmd_recover(args: argparse.Namespace) -> int:
    overrides = _overrides(args)
    options = api.RunOptions(sandbox=args.sandbox)

    def rebuild(control: RunControl) -> Awaitable[api.Recovery]:
        job = api.load_job(args.job, overrides, sandbox=args.sandbox, period=args.period)
        return api.recover_async(job, options=options)

    recovery = asyncio.run(_until_stopped(rebuild))
    for path in recovery.moved:
        print(f"moved aside: {path}")
    print(
        f"recovered: {recovery.found} contacts found reached in Twilio by marker, {recovery.pending} never reached "
        f"(the run log counted {recovery.intents} intents); the next run sends only to those never reached"
    )
    print(f"exit: {recovery.result.exit_code}")
    return recovery.result.exit_code


def _cmd_sandbox(args: argparse.Namespace) -> int:
    config = sandbox_config(args)
    try:
        api.serve_sandbox(config, port=args.port, on_ready=sandbox_banner)
    except ValueError as exc:  # a state file that is not the sandbox's
        raise UsageError(f"sandbox: {exc}") from None
    except OSError as exc:  # the port is taken, or not ours to bind
        reason = exc.strerror or str(exc)
        raise UsageError(f"sandbox: cannot listen on port {args.port} ({reason}); choose another --port") from None
    return EXIT_OK


def _cmd_collect(args: argparse.Namespace) -> int:
    overrides = _overrides(args)
    options = api.CollectOptions(
        poll_interval=_SANDBOX_POLL if args.sandbox else api.DEFAULT_COLLECT_POLL,
        **_flags(args, "refresh", "wait", "max_duration", "sandbox", "output"),
    )
    with collect_bar(sys.stderr.isatty() and not args.quiet) as bar:

        def fetch(control: RunControl) -> Awaitable[api.CollectResult]:
            return api.collect_async(
                args.job,
                overrides=overrides,
                options=options,
                period=args.period,
                control=control,
                on_progress=bar,
            )

        result = asyncio.run(_until_stopped(fetch))
    if not args.quiet:
        print_collect_summary(result, sys.stdout)
    return result.exit_code


def _cmd_opt_outs(args: argparse.Namespace) -> int:
    path = api.opt_outs_store(args.job, args.history)
    if args.history_command == "forget":
        n = api.forget_opt_out(path, args.number)
        print(f"removed {n} opt-out entries of {args.number}")
        return EXIT_OK
    table = api.history_opt_outs(path, output=args.output)
    if args.output:
        print(f"{table.height} opt-outs written to {args.output}")
        return EXIT_OK
    print("to                sender                              opted_out_at")
    for to, sender, at in table.iter_rows():
        print(f"{to:<16}  {sender:<34}  {at}")
    return EXIT_OK


def _cmd_sweep(args: argparse.Namespace) -> int:
    overrides = _overrides(args)
    result = api.sweep(
        args.job,
        overrides=overrides,
        period=args.period,
        sandbox=args.sandbox,
        older_than=args.older_than,
        yes=args.yes,
    )
    if not args.quiet:
        for line in sweep_lines(result):
            print(printable(line))
    return result.exit_code


def _cmd_history(args: argparse.Namespace) -> int:
    if args.history_command in ("opt-outs", "forget"):
        return _cmd_opt_outs(args)
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
    "sweep": _cmd_sweep,
    "report": _cmd_report,
    "recover": _cmd_recover,
    "sandbox": _cmd_sandbox,
}
