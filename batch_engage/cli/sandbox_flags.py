"""The ``sandbox`` command's flags: the simulator's pace, its faults, its runs and its senders."""

from __future__ import annotations

import argparse
from typing import Any

from ..api import SandboxConfig, ServiceConfig
from ..errors import UsageError

__all__ = ["add_sandbox_options", "sandbox_config"]


def add_sandbox_options(sb: argparse.ArgumentParser) -> None:
    """Every flag of ``sandbox``, in the order its --help lists them."""
    sb.add_argument("--port", type=int, default=0, help="port to listen on (default: a free one)")
    _add_pace_and_faults(sb)
    _add_runs(sb)
    _add_senders(sb)


def _share(p: argparse.ArgumentParser, flag: str, what: str) -> None:
    p.add_argument(flag, type=float, default=0.0, metavar="SHARE", help=f"share of {what}")


def _seconds(p: argparse.ArgumentParser, flag: str, default: float, what: str) -> None:
    p.add_argument(flag, type=float, default=default, metavar="SECONDS", help=what)


def _add_pace_and_faults(sb: argparse.ArgumentParser) -> None:
    """Its rate limit and latency, and the faults it injects into creates and reads."""
    sb.add_argument(
        "--rate-limit",
        type=float,
        default=20.0,
        metavar="N",
        help="creates per second before it answers 429 (default 20)",
    )
    _seconds(sb, "--latency", 0.08, "mean answer latency (default 0.08)")
    sb.add_argument("--no-active-rule", action="store_true", help="switch off Studio's one-active-run-per-contact rule")
    _share(sb, "--lost-answer-rate", "creates that create the run but answer 503")
    _share(sb, "--error-rate", "creates answered 500/503 without creating a run")
    _share(sb, "--late-rate", "creates answered 504 at once whose run Studio creates --late-seconds later")
    _seconds(sb, "--late-seconds", 5.0, "how long after its 504 a --late-rate run is created (default 5)")
    sb.add_argument(
        "--retry-after", type=float, metavar="SECONDS", help="put Retry-After (rounded up) on every 429 (default: none)"
    )
    sb.add_argument("--seed", type=int, metavar="N", help="seed the random draws, so faults repeat run after run")
    _seconds(sb, "--run-lifetime", 3600.0, "seconds until a run ends and its widgets have played (default 3600)")
    sb.add_argument(
        "--wait-timeout",
        type=float,
        metavar="SECONDS",
        help="runs stay active this long on Twilio's clock, as a Send & Wait widget holds them (else --run-lifetime)",
    )
    sb.add_argument(
        "--other-sender-active",
        default="",
        metavar="LIST",
        help="comma-separated contacts already in another sender's active conversation at their first create",
    )
    _seconds(sb, "--clock-offset", 0.0, "how far Twilio's clock is ahead of ours (negative: behind)")
    _seconds(sb, "--date-header-offset", 0.0, "how far the Date header is ahead of the clock that stamps runs")
    _share(
        sb,
        "--other-sender-rate",
        "creates just before which an inbound message starts (and ends) a run for the same contact",
    )
    _share(sb, "--read-rate-limit-rate", "run-list, run and Context reads answered 429")


def _add_runs(sb: argparse.ArgumentParser) -> None:
    """The Flows it serves, how it lists and plays runs, and where it keeps them."""
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


def _add_senders(sb: argparse.ArgumentParser) -> None:
    """The sandbox's senders: reply routing, Messaging Services, queues, opt-outs."""
    routes = "this_flow, other_flow, none, absent (not the account's) or a URL"
    sb.add_argument(
        "--reply-routing", default="this_flow", metavar="ROUTE", help=f"where numbers' replies go: {routes}"
    )
    sb.add_argument(
        "--number", action="append", default=[], metavar="NUMBER=ROUTE", help="one number's reply routing (repeatable)"
    )
    sb.add_argument(
        "--service",
        action="append",
        default=[],
        metavar="SID=NUMBERS",
        help="a Messaging Service (MG...) and its comma-separated sender pool (repeatable)",
    )
    sb.add_argument(
        "--service-inbound",
        action="append",
        default=[],
        metavar="SID=ROUTE",
        help="where a service's replies go: this_flow, other_flow, none, number (each number's own) or a URL",
    )
    sb.add_argument(
        "--service-validity", action="append", default=[], metavar="SID=SECONDS", help="a service's validity period"
    )
    sb.add_argument(
        "--sender-pace", type=float, metavar="N", help="segments a second each sender sends (default: no queue)"
    )
    _seconds(sb, "--validity-period", 36_000, "how long a number's message may wait in its queue (default 36000)")
    _seconds(sb, "--queue-limit", 36_000, "seconds' worth of segments a queue holds before 21611/30001")
    sb.add_argument(
        "--opted-out",
        action="append",
        default=[],
        metavar="NUMBERS",
        help="comma-separated contacts who sent STOP: their messages fail with 21610 (repeatable)",
    )


def sandbox_config(args: argparse.Namespace) -> SandboxConfig:
    """The simulator's settings from the ``sandbox`` command's flags; a bad one is a ``UsageError``."""
    flows = dict(flow.partition("=")[::2] for flow in args.flow)
    for sid, status in flows.items():
        if not status:
            raise UsageError(f"sandbox: --flow {sid!r} needs =STATUS (published, draft or draft_over_published)")
    try:
        return SandboxConfig(
            rate_limit=args.rate_limit or None,
            latency=args.latency,
            active_rule=not args.no_active_rule,
            lost_answer_rate=args.lost_answer_rate,
            error_rate=args.error_rate,
            retry_after=args.retry_after,
            seed=args.seed,
            run_lifetime=args.run_lifetime,
            wait_timeout=args.wait_timeout,
            other_sender_active=tuple(a.strip() for a in args.other_sender_active.split(",") if a.strip()),
            clock_offset=args.clock_offset,
            other_sender_rate=args.other_sender_rate,
            read_rate_limit_rate=args.read_rate_limit_rate,
            flows=flows or None,
            list_drops_channel_prefix=args.list_drops_channel_prefix,
            next_page_host=args.next_page_host,
            replies=tuple(reply.strip() for reply in args.replies.split(",")),
            unwired_trigger=args.unwired_trigger,
            state_path=args.state_path,
            late_rate=args.late_rate,
            late_seconds=args.late_seconds,
            date_header_offset=args.date_header_offset,
            **_sandbox_senders(args),
        )
    except ValueError as exc:
        raise UsageError(f"sandbox: {exc}") from None


def _pairs(values: list[str], flag: str) -> dict[str, str]:
    pairs = dict(value.partition("=")[::2] for value in values)
    for key, value in pairs.items():
        if not key or not value:
            raise UsageError(f"sandbox: {flag} {key!r} needs KEY=VALUE")
    return pairs


def _sandbox_senders(args: argparse.Namespace) -> dict[str, Any]:
    """The sandbox's senders from their flags: numbers, services, queues, opt-outs."""
    pools = _pairs(args.service, "--service")
    inbound = _pairs(args.service_inbound, "--service-inbound")
    validity = _pairs(args.service_validity, "--service-validity")
    for sid in {*inbound, *validity} - set(pools):
        raise UsageError(f"sandbox: {sid} has no --service {sid}=NUMBERS")
    try:
        services = {
            sid: ServiceConfig(
                numbers=tuple(n.strip() for n in numbers.split(",") if n.strip()),
                inbound=inbound.get(sid, "this_flow"),
                validity_period=int(validity.get(sid, 36_000)),
            )
            for sid, numbers in pools.items()
        }
    except ValueError as exc:
        raise UsageError(f"sandbox: {exc}") from None
    return {
        "reply_routing": args.reply_routing,
        "numbers": _pairs(args.number, "--number"),
        "services": services,
        "sender_pace": args.sender_pace,
        "validity_period": int(args.validity_period),
        "queue_limit": args.queue_limit,
        "opted_out": frozenset(n.strip() for value in args.opted_out for n in value.split(",") if n.strip()),
    }
