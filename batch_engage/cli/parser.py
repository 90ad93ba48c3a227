"""The command line as a table: every command and option with its help, and the parsers of flag values."""

from __future__ import annotations

import argparse
import functools
import re
from collections.abc import Sequence
from typing import Any, NoReturn, TypeAlias

from .. import api
from ..errors import ConfigError
from ..exits import EXIT_USAGE
from ..postgres import masked
from .sandbox_flags import add_sandbox_options

__all__ = ["build_parser", "parse_duration"]

_PERIOD_HELP = "another period of a job whose id has {date}, {week} or {month}"

# What a mistyped flag may carry into argparse's echo of it: a URL's whole userinfo (token@, user:password@, up to
# the last "@" of the word, as a password may hold one), a value given to anything named like a password, secret
# or token (``--password=…``, ``PGPASSWORD=…``, ``password=…`` in a libpq string, ``--auth-token …``), and 32
# letters and digits standing alone, the shape of an Auth Token or an API key's secret (a SID's two letters in
# front keep it whole, so a SID can still be named).
_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)\S*@")
_HIDDEN_KEYS = r"[a-z_-]*(?:password|passwd|pwd|secret|token|api[_-]?key)[a-z_-]*"
_ASSIGNED = re.compile(rf"(?i)(?<![a-z0-9])({_HIDDEN_KEYS}\s*[=:]\s*)[^\s',&]+")
_FLAG_VALUE = re.compile(rf"(?i)(?<![a-z0-9])(--?{_HIDDEN_KEYS})(\s+)(?!-)\S+")
_TOKEN_SHAPED = re.compile(r"(?<![0-9A-Za-z])[0-9A-Za-z]{32}(?![0-9A-Za-z])")


def _token_hidden(match: re.Match[str]) -> str:
    word = match[0]
    # A word of 32 letters in one case is a word; a token mixes cases or has digits among its letters.
    secret = any(c.isdigit() for c in word) or (word.lower() != word and word.upper() != word)
    return "***" if secret else word


def without_secrets(text: str) -> str:
    """``text`` as a usage error may show it: URL userinfo, password-like values and token-shaped words as ``***``."""
    text = _USERINFO.sub(r"\1***@", text)
    text = _FLAG_VALUE.sub(r"\1\2***", _ASSIGNED.sub(r"\1***", masked(text)))
    return _TOKEN_SHAPED.sub(_token_hidden, text)


class _Parser(argparse.ArgumentParser):
    """argparse, with its usage errors as one line and exit 2, never echoing a secret typed into a wrong place."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"batch-engage: {without_secrets(message)} (see --help)\n")


class _Version(argparse._VersionAction):
    """``--version``, the installation's version looked up only when asked for (every command paid for it)."""

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: str | Sequence[Any] | None,
        option_string: str | None = None,
    ) -> None:
        self.version = f"batch-engage {api.version()}"
        super().__call__(parser, namespace, values, option_string)


_Subparsers: TypeAlias = "argparse._SubParsersAction[_Parser]"


def parse_duration(text: str) -> float:
    """``50m``, ``1h30m``, ``2d``, ``90s`` or plain seconds, as seconds: the job file's own rule."""
    try:
        return api.parse_duration("duration", text)
    except ConfigError:
        raise argparse.ArgumentTypeError(f"not a duration: {text!r} (use e.g. 50m, 1h30m, 90s)") from None


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError("must not be negative")
    return value


_ABOUT = {  # command: (its line in the list of commands, the description its --help opens with)
    "run": ("send every row of a job to Studio", "Send every row of a job to Studio."),
    "validate": ("check a job's input without sending anything", "Check a job's input and mapping; no network at all."),
    "status": ("counts by status from the checkpoint", "Counts by status from the checkpoint; sends nothing."),
    "report": (
        "write the results table again from the checkpoint",
        "Write the results table again from the checkpoint alone; sends nothing.",
    ),
    "recover": (
        "rebuild a lost or damaged checkpoint journal from Twilio",
        "Rebuild a file checkpoint's journal from Twilio by marker, when it was lost or damaged and its run log "
        "stands: the damaged files are moved aside, the contacts found are recorded sent; nothing is sent.",
    ),
    "collect": (
        "fetch what happened in each run: status, answers, delivery",
        "Fetch each run's status, the [collect.fields] of its Context and its messages' delivery; "
        "write the outcomes table. Exit 75 while some runs are still active.",
    ),
    "sweep": (
        "end this job's own runs still active (a dry run unless --yes)",
        "End this job's own runs that are still active: runs the checkpoint names whose Context carries a "
        "marker of this job. A dry run unless --yes. Exit 0 when none of them is left active, 75 when some "
        'could not be ended yet. Not for api = "engagements" (exit 2).',
    ),
    "history": (
        "seed or inspect the shared contact history",
        "Seed the contact history from a past results table, or show contacts reached per flow per day.",
    ),
    "history import": ("record a past results table's sent rows", "Record a results table's sent rows."),
    "history stats": ("contacts reached per flow per day", "Contacts reached per flow per day."),
    "history opt-outs": (
        "contacts who opted out (21610), as collect learnt them",
        "List (or export) the contacts collect saw fail with 21610, with their sender and date.",
    ),
    "history forget": ("remove a contact's opt-outs", "Remove a contact from the opt-outs (say, it sent START)."),
    "sandbox": (
        "serve the Studio simulator for rehearsals",
        "Serve the Studio simulator on 127.0.0.1 until interrupted.",
    ),
}


def _command(sub: _Subparsers, name: str) -> _Parser:
    summary, description = _ABOUT[name]
    return sub.add_parser(name.rsplit(" ", 1)[-1], help=summary, description=description)


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
        p.add_argument("--period", metavar="PERIOD", help=_PERIOD_HELP)
    p.add_argument(
        "--separator",
        metavar="CHAR",
        type=lambda text: "\t" if text in ("\\t", "tab") else text,
        help="the CSV field separator: ',', ';', '|' or 'tab' (overrides [input] separator; default: detected)",
    )


class _NotRead(argparse.Action):
    """A flag of the job's input that a command reading the checkpoint alone refuses: taken silently, it let
    ``report --input other.csv`` show the checkpoint's list as if it were the file named."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, *_: object) -> None:
        parser.error(
            f"{self.option_strings[0]}: {parser.prog.split()[-1]} reads the contacts its checkpoint holds (those its "
            "runs read), never a file; drop it, or run the job with it"
        )


def _checkpoint_reader_options(p: argparse.ArgumentParser) -> None:
    """A job as status and report read it: from its checkpoint, whose plan holds the list its runs read."""
    p.add_argument("job", help="the job file (TOML)")
    p.add_argument("--checkpoint", metavar="PATH", help="use this checkpoint instead of [output] checkpoint")
    p.add_argument(
        "--sandbox",
        action="store_true",
        help="the rehearsal on the built-in Studio simulator (no Twilio account): its own checkpoint and results",
    )
    p.add_argument("--period", metavar="PERIOD", help=_PERIOD_HELP)
    for flag in ("--input", "--separator"):
        p.add_argument(flag, action=_NotRead, help=argparse.SUPPRESS)


def _runs_job_options(p: argparse.ArgumentParser, sandbox: str) -> None:
    """A job's runs, as collect and sweep read them: from its checkpoint; no input, no separator."""
    p.add_argument("job", help="the job file (TOML)")
    p.add_argument("--checkpoint", metavar="PATH", help="use this checkpoint instead of [output] checkpoint")
    p.add_argument("--sandbox", action="store_true", help=sandbox)
    p.add_argument("--period", metavar="PERIOD", help=_PERIOD_HELP)


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


def _other_list_option(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--other-list",
        action="store_true",
        help="send this list though it shares no contact with those this job reached (else refused, exit 2: "
        "the wrong file?); overrides [input] other_lists",
    )


def _restart_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--restart",
        action="store_true",
        help="start over: forget every contact this job reached (the old checkpoint is moved aside, never deleted)",
    )
    p.add_argument("--yes", action="store_true", help="confirm --restart (it never asks: cron is safe)")


@functools.cache
def build_parser() -> argparse.ArgumentParser:
    """The whole command line, every command and option with its help (built once a process: 8 ms of CPU)."""
    parser = _Parser(
        prog="batch-engage",
        description=(
            "Turn a CSV or Parquet file of contacts into Twilio Studio Flow runs: paced, resumable, never twice."
        ),
    )
    parser.add_argument("--version", action=_Version)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=_Parser)
    _add_run(sub)
    _add_validate(sub)
    _add_checkpoint_readers(sub)
    _add_collect(sub)
    _add_sweep(sub)
    _add_history(sub)
    add_sandbox_options(_command(sub, "sandbox"))
    return parser


def _add_run(sub: _Subparsers) -> None:
    run = _command(sub, "run")
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
    run.add_argument(
        "--on-active",
        choices=["skip", "wait", "end"],
        help="a contact still in an earlier active run: skip it, wait for that run, or end it when it is this "
        "job's (overrides [send] on_active)",
    )
    _restart_options(run)
    _other_list_option(run)
    _strict_option(run)
    run.add_argument("--no-preflight", action="store_true", help="skip the GET of the Flow before the first row")
    run.add_argument("--dry-run", action="store_true", help="validate only, send nothing (the same as 'validate')")
    run.add_argument("--summary-json", metavar="PATH", help="also write the run summary as JSON to PATH")
    run.add_argument("--report-html", metavar="PATH", help="also write the campaign report page at the end of the run")
    _log_options(run)


def _add_validate(sub: _Subparsers) -> None:
    val = _command(sub, "validate")
    _job_options(val)
    val.add_argument("--output", metavar="PATH", help="write the results table (invalid, duplicate, pending) to PATH")
    val.add_argument(
        "--flow",
        action="store_true",
        help="also check the job against the Flow's published revision (uses the network and credentials)",
    )
    val.add_argument(
        "--summary-json", metavar="PATH", help="also write the counts (and with --flow the capacity) as JSON to PATH"
    )
    _strict_option(val)
    _restart_options(val)
    _other_list_option(val)
    _log_options(val)


def _add_checkpoint_readers(sub: _Subparsers) -> None:
    """``status`` and ``report``: the commands that read the checkpoint alone."""
    st = _command(sub, "status")
    _checkpoint_reader_options(st)
    _log_options(st)
    rep = _command(sub, "report")
    _checkpoint_reader_options(rep)
    rep.add_argument("--output", metavar="PATH", help="write to PATH instead of [output] results")
    rep.add_argument("--html", metavar="PATH", help="also write the campaign report: one self-contained HTML page")
    _log_options(rep)
    rec = _command(sub, "recover")
    _job_options(rec, period=True)
    _log_options(rec)


def _add_collect(sub: _Subparsers) -> None:
    col = _command(sub, "collect")
    _runs_job_options(col, "collect the rehearsal's runs from the built-in Studio simulator")
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


def _add_sweep(sub: _Subparsers) -> None:
    sw = _command(sub, "sweep")
    _runs_job_options(sw, "sweep the rehearsal's runs on the built-in Studio simulator")
    sw.add_argument(
        "--older-than",
        type=parse_duration,
        default=86400.0,
        metavar="DURATION",
        help="end only runs older than this on Twilio's clock (default 24h)",
    )
    sw.add_argument("--yes", action="store_true", help="end them (without it: list what would be ended, end nothing)")
    _log_options(sw)


def _add_history(sub: _Subparsers) -> None:
    hist = _command(sub, "history")
    hist_sub = hist.add_subparsers(
        dest="history_command",
        required=True,
        metavar="ACTION",
        parser_class=_Parser,
        help="import, stats, opt-outs or forget",
    )
    imp = _command(hist_sub, "history import")
    imp.add_argument("file", help="a results table (.csv or .parquet) written by batch-engage")
    stats = _command(hist_sub, "history stats")
    opt_outs = _command(hist_sub, "history opt-outs")
    opt_outs.add_argument("--output", metavar="PATH", help="export them to PATH (.csv or .parquet)")
    forget = _command(hist_sub, "history forget")
    forget.add_argument("number", help="the contact to remove from the opt-outs (say, it sent START)")
    for p in (imp, stats, opt_outs, forget):
        p.add_argument("--job", metavar="JOB", help="take [history] path (and the Flow SID) from this job file")
        p.add_argument("--history", metavar="PATH", help="the history file (instead of --job)")
    imp.add_argument("--flow-sid", metavar="SID", help="the Flow the table's runs belong to (instead of --job)")
