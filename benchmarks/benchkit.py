"""What every benchmark shares: the machine's description, targets, output, contacts and the loopback server.

Imported as a sibling module (``from benchkit import ...``): each benchmark runs as
``python benchmarks/NAME.py``, which puts this folder first on ``sys.path``.
"""

from __future__ import annotations

import compileall
import contextlib
import datetime as dt
import functools
import importlib.metadata
import json
import logging
import os
import platform
import random
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import polars as pl
import structlog

import batch_engage
from batch_engage.job import FlowSpec, InputSpec, MappingSpec, OutputSpec, SendSpec, Spec

HERE = Path(__file__).resolve().parent
PACKAGE = Path(batch_engage.__file__).resolve().parent
FLOW_SID = "FW0123456789abcdef0123456789abcdef"
FROM = "+15005550006"
# The loopback server accepts exactly these; the sandbox has its own (SANDBOX_USERNAME/PASSWORD).
LOOPBACK_USER = "AC" + "0b" * 16
LOOPBACK_PASSWORD = "loopback-auth-token"  # noqa: S105 - a throwaway credential for 127.0.0.1


# -- the machine ----------------------------------------------------------------------


def _cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def _version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def _package() -> dict[str, Any]:
    """Which batch_engage was measured: the code moves, so the figures name the commit and whether it was edited."""
    where = PACKAGE
    info: dict[str, Any] = {"version": _version("batch-engage"), "path": str(where), "commit": None, "dirty": None}
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        head = subprocess.run(
            ["git", "-C", str(where), "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True
        )
        dirty = subprocess.run(
            ["git", "-C", str(where), "status", "--porcelain", "--", "."], capture_output=True, text=True, check=True
        )
        info["commit"], info["dirty"] = head.stdout.strip(), bool(dirty.stdout.strip())
    return info


def machine() -> dict[str, Any]:
    """What the figures were measured on: they mean little without it."""
    return {
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "polars": _version("polars"),
        "httpx": _version("httpx"),
        "httpx_aiohttp": _version("httpx-aiohttp"),
        "aiohttp": _version("aiohttp"),
        "twilio": _version("twilio"),
        "batch_engage": _package(),
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
        # CPU figures move with whatever else the machine is doing: say how busy it was.
        "load_average_1m": round(os.getloadavg()[0], 2),
    }


# -- targets and output ---------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    """One figure checked against the issue's target."""

    name: str
    value: float
    op: Literal[">=", "<=", "=="]
    limit: float
    unit: str = ""

    @property
    def passed(self) -> bool:
        if self.op == "==":
            return self.value == self.limit
        return self.value >= self.limit if self.op == ">=" else self.value <= self.limit

    def as_dict(self) -> dict[str, Any]:
        return {
            "value": _round(self.value),
            "shown": _fmt(self.value) + _unit(self.unit),
            "target": f"{self.op} {self.limit:,g}{_unit(self.unit)}",
            "pass": self.passed,
        }


def _round(value: Any) -> Any:
    if isinstance(value, float):
        return round(value, 6 if abs(value) < 1 else 3)
    if isinstance(value, dict):
        return {k: _round(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_round(v) for v in value]
    return value


def _fmt(value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return str(value)
    if isinstance(value, int) or float(value).is_integer():
        return f"{int(value):,}"
    return f"{value:.4f}" if abs(value) < 1 else f"{value:,.2f}"


def emit(
    name: str,
    figures: dict[str, Any],
    targets: Sequence[Target],
    *,
    table: Sequence[tuple[str, Any]] = (),
    notes: Sequence[str] = (),
) -> dict[str, Any]:
    """Print the one JSON line (what run_all reads), then a short table for people; return the record."""
    record = {
        "benchmark": name,
        "pass": all(t.passed for t in targets),
        "targets": {t.name: t.as_dict() for t in targets},
        "figures": _round(figures),
        "notes": list(notes),
        "machine": machine(),
    }
    print(json.dumps(record, ensure_ascii=False), flush=True)
    rows: list[tuple[str, str, str, str]] = [
        (t.name, t.as_dict()["shown"], t.as_dict()["target"], _verdict(t.passed)) for t in targets
    ]
    rows += [(label, _fmt(value), "", "") for label, value in table]
    print_table(f"{name} ({record['machine']['cpu']}, {record['machine']['cores']} cores)", rows)
    for note in notes:
        print(f"  note: {note}")
    return record


def _unit(unit: str) -> str:
    return "" if not unit else unit if unit in ("%", "/s") else " " + unit


def _verdict(passed: bool) -> str:
    return "PASS" if passed else "FAIL"


def print_table(
    title: str, rows: Sequence[tuple[str, ...]], header: tuple[str, ...] = ("figure", "value", "target", "")
) -> None:
    """A plain fixed-width table: readable in a terminal, a CI log and a README code block."""
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    print(title)
    for r in [header, *rows]:
        print("  " + "  ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())


def quiet_logs() -> None:
    """Warnings and errors to stderr only: stdout carries the JSON line, and debug calls become no-ops."""
    structlog.configure(
        processors=[structlog.processors.add_log_level, structlog.processors.JSONRenderer()],
        wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=True,
    )


# -- jobs and contacts ----------------------------------------------------------------

PARAMETERS = (("first_name", "first_name"), ("city", "city"), ("visits", "visits"), ("order.total", "order_total"))
FIRST_NAMES = ["Ana", "Zoë", "José", "Björn", "Chloé", "Åsa", "Mei", "Łukasz", "Siobhán", "Yūki", "Grace", "Olumide"]
CITIES = ["San Francisco", "New York", "Chicago", "Boston", "Seattle", "Zürich", "São Paulo", "Kraków"]
AREAS = ["415", "212", "312", "617", "206", "646", "510", "305", "404", "512"]


def make_spec(
    tmp: Path,
    *,
    base_url: str | None = None,
    rate: float = 20.0,
    concurrency: int = 8,
    api: Literal["engagements", "executions"] = "engagements",
    preflight: bool = True,
    input_path: str | None = None,
) -> Spec:
    """A job like the sample campaign: one literal sender, four mapped parameters (one nested)."""
    return Spec(
        input=InputSpec(path=input_path),
        flow=FlowSpec(sid=FLOW_SID, api=api, base_url=base_url),
        mapping=MappingSpec(to="phone", from_=FROM, parameters=PARAMETERS, default_region="US"),
        send=SendSpec(rate=rate, concurrency=concurrency, preflight=preflight),
        output=OutputSpec(results=str(tmp / "results.csv"), checkpoint=str(tmp / "job.checkpoint")),
    )


def write_job_file(
    path: Path,
    *,
    input_path: str | Path,
    results: str | Path,
    checkpoint: str | Path,
    api: Literal["engagements", "executions"] = "engagements",
    rate: float = 20.0,
    concurrency: int = 8,
) -> Path:
    """:func:`make_spec`'s job as a TOML file at ``path``, for the benchmarks that run the CLI."""
    params = "\n".join(f'"{key}" = "{column}"' for key, column in PARAMETERS)
    path.write_text(
        f'[input]\npath = "{input_path}"\n\n[flow]\nsid = "{FLOW_SID}"\napi = "{api}"\n\n'
        f'[mapping]\nto = "phone"\nfrom = "{FROM}"\ndefault_region = "US"\n\n[mapping.parameters]\n{params}\n\n'
        f"[send]\nrate = {rate}\nconcurrency = {concurrency}\n\n"
        f'[output]\nresults = "{results}"\ncheckpoint = "{checkpoint}"\n',
        encoding="utf-8",
    )
    return path


@functools.cache
def compiled() -> None:
    """The package byte-compiled, as pip leaves an installed one: under PYTHONDONTWRITEBYTECODE an editable
    checkout would compile its 150 modules again in every process measured (0.15 s each)."""
    compileall.compile_dir(PACKAGE, quiet=2)


def cli() -> list[str]:
    """The console script beside this interpreter, as a user runs it; ``-m`` if it is not installed."""
    compiled()
    script = Path(sys.executable).with_name("batch-engage")
    return [str(script)] if script.exists() else [sys.executable, "-m", "batch_engage"]


def contacts(n: int, *, seed: int = 7, first: int = 2_000_000) -> pl.DataFrame:
    """``n`` distinct, valid E.164 contacts (so every row is meant to be sent once)."""
    rng = random.Random(seed)
    return pl.DataFrame(
        {
            "phone": [f"+1415{first + i:07d}" for i in range(n)],
            "first_name": [rng.choice(FIRST_NAMES) for _ in range(n)],
            "city": [rng.choice(CITIES) for _ in range(n)],
            "visits": [rng.randint(1, 40) for _ in range(n)],
            "order_total": [round(rng.uniform(5, 400), 2) for _ in range(n)],
        }
    )


def realistic_contacts(n: int, *, seed: int = 20261124) -> pl.DataFrame:
    """A list as people export it: ~95% E.164, ~5% other spellings, a few broken rows, repeats, non-ASCII text.

    Built with polars expressions so that a million rows take about a second, not a minute.
    """
    rng = random.Random(seed)
    ids = pl.int_range(0, n, eager=True).alias("i")
    frame = pl.DataFrame(ids).with_columns(
        # (area, exchange, line) is a different number for every i below 8e7; exchanges 200-999
        # keep them valid North American numbers for phonenumbers too.
        area=pl.lit(pl.Series(AREAS)).gather(pl.col("i") % len(AREAS)),
        line=((pl.col("i") // len(AREAS)) % 10_000).cast(pl.String).str.zfill(4),
        exchange=(200 + (pl.col("i") // (len(AREAS) * 10_000)) % 800).cast(pl.String),
        # A multiplicative hash spreads the spellings evenly and deterministically.
        style=(pl.col("i") * 2_654_435_761) % 1000,
    )
    national = pl.concat_str("area", "exchange", "line")
    phone = (
        # 5% other spellings, as a spreadsheet or a CRM exports them: these take the phonenumbers path.
        pl.when(pl.col("style") < 20)
        .then(pl.format("({}) {}-{}", "area", "exchange", "line"))
        .when(pl.col("style") < 40)
        .then(pl.concat_str(pl.lit("1"), national))
        .when(pl.col("style") < 48)
        .then(pl.format("{}-{}-{}", "area", "exchange", "line"))
        .when(pl.col("style") < 50)
        .then(pl.format("+1 {} {} {}", "area", "exchange", "line"))
        # 0.2% unusable: too short, or not a number at all.
        .when(pl.col("style") < 51)
        .then(pl.lit("555-0100"))
        .when(pl.col("style") < 52)
        .then(pl.lit("n/a"))
        # 0.3% the same contact as another row.
        .when(pl.col("style") < 55)
        .then(pl.lit("+14155550100"))
        .otherwise(pl.concat_str(pl.lit("+1"), national))
    )
    names = pl.Series(FIRST_NAMES)
    cities = pl.Series(CITIES)
    out = frame.select(
        phone.alias("phone"),
        pl.lit(names).gather(pl.col("i") % len(FIRST_NAMES)).alias("first_name"),
        pl.lit(cities).gather((pl.col("i") // 3) % len(CITIES)).alias("city"),
        (1 + pl.col("i") % 40).alias("visits"),
        ((pl.col("i") * 37) % 40_000 / 100 + 5).round(2).alias("order_total"),
    )
    # Shuffle so the odd spellings are spread as in real lists, not in stripes.
    return out.sample(fraction=1.0, shuffle=True, seed=rng.randrange(2**32))


def with_invalid_numbers(frame: pl.DataFrame) -> pl.DataFrame:
    """Make 2% of the phone numbers unusable, each a different value (so no cache of distinct values helps).

    As an old export has them: wrong E.164 (``+1555…``, a digit too many), a US number in a bad area code
    written nationally, and a column a spreadsheet turned into scientific notation or decimals.
    """
    i = pl.int_range(0, pl.len())
    pick = (i * 2_654_435_761 + 12_345) % 1000
    serial = i.cast(pl.String).str.zfill(7)
    bad = (
        pl.when(pick < 10)
        .then(pl.concat_str(pl.lit("+1555"), serial))  # no such area code
        .when(pick < 14)
        .then(pl.concat_str(pl.lit("+1415"), serial, pl.lit("1")))  # a digit too many
        .when(pick < 17)
        .then(pl.format("(555) {}-{}", serial.str.slice(0, 3), serial.str.slice(3, 4)))  # national, no such area
        .when(pick < 19)
        .then(pl.format("1.{}E+10", serial))  # scientific notation
        .otherwise(pl.format("{}.5", serial))  # a decimal part
    )
    return frame.with_columns(phone=pl.when(pick < 20).then(bad).otherwise(pl.col("phone")))


# -- the loopback server (a separate process) ------------------------------------------


class LoopbackServer:
    """``loopback_server.py`` in its own process, so its CPU never counts against the client measured."""

    def __init__(self) -> None:
        self.proc: subprocess.Popen[str] | None = None
        self.url = ""

    def __enter__(self) -> LoopbackServer:
        self.proc = subprocess.Popen(
            [
                sys.executable,
                str(HERE / "loopback_server.py"),
                "--user",
                LOOPBACK_USER,
                "--password",
                LOOPBACK_PASSWORD,
            ],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line.startswith("listening "):
            self.__exit__()
            raise RuntimeError(f"loopback server did not start: {line!r}")
        self.url = line.split()[1]
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def stats(self, *, reset: bool = False) -> dict[str, Any]:
        """Requests seen, first/last POST (time.monotonic, which is system-wide on Linux) and server CPU."""
        # No proxy handler: a developer's HTTP_PROXY must never route loopback traffic.
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        path = "/__stats?reset=1" if reset else "/__stats"
        with opener.open(self.url + path, timeout=5) as response:
            data: dict[str, Any] = json.loads(response.read())
        return data


# -- small helpers --------------------------------------------------------------------


def median(values: Sequence[float]) -> float:
    ordered = sorted(values)
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2


@contextlib.contextmanager
def stopwatch() -> Iterator[dict[str, float]]:
    """Wall and process-CPU seconds of a block (process CPU counts every thread: the journal writes too)."""
    out: dict[str, float] = {}
    wall, cpu = time.perf_counter(), time.process_time()
    try:
        yield out
    finally:
        out["wall"] = time.perf_counter() - wall
        out["cpu"] = time.process_time() - cpu
