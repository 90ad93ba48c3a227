"""The key of what a plan was made from, so that a resumed run can take its plan from the checkpoint.

Planning a million rows again is half a second of a resumed run's start, for the same rows. A plan
follows from the input's bytes, the job's settings that planning reads, and the code that plans (this package's
source, polars', phonenumbers' and Python's versions; with a send window, the time-zone database its zone
names are checked against): those make its key, and a plan kept under the
same key is the plan this run would make. Some jobs' plans follow from more, from stores that change
between runs by themselves: suppression lists, the contact history (caps, opt-outs), the opt-outs
``collect`` learns beside the checkpoint, an experiment's kept variants. Those jobs, and inputs that are
not a local file (a query, stdin, a URL, a frame), have no key: they are always planned again.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import importlib.metadata
import json
import platform
import zoneinfo
from dataclasses import dataclass
from pathlib import Path

import phonenumbers
import polars as pl

from ..history import opt_outs_path
from ..inputs import is_local_file
from ..job import Spec

__all__ = ["PLANNING_FLOW", "PLANNING_SEND", "KeyedInput", "keyed_input"]

_PACKAGE = Path(__file__).resolve().parents[1]

PLANNING_SEND = ("dedupe", "max_parameters_bytes", "marker_key", "window", "days", "default_timezone")
"""The ``[send]`` settings planning reads (its test holds this list against the code): the others, the pace and
the timeouts a resumed run may well be given by flags, leave the plan as it was."""
PLANNING_FLOW = ("sid", "api")
"""The ``[flow]`` settings planning reads; ``--base-url`` and the region change no row."""


@dataclass(frozen=True)
class KeyedInput:
    """A job's input file as read (its bytes and their digest) and the key of the plan made from it."""

    raw: bytes
    digest: str
    key: str


@functools.cache
def _source_digest() -> str:
    """This package's own source: a release, or an edited checkout, plans with what it holds. Empty when its
    source is not there to read (a zip, compiled files only): then no plan has a key."""
    digest = hashlib.blake2b(digest_size=16)
    try:
        sources = sorted(_PACKAGE.rglob("*.py"))
        for path in sources:
            digest.update(path.relative_to(_PACKAGE).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    except OSError:
        return ""  # a source that cannot be read now: this run plans, it never fails for it
    return digest.hexdigest() if sources else ""


def _zones_version() -> str:
    """Which time-zone database this machine's ``zoneinfo`` reads (a send window's zone names are checked
    against it); empty when that cannot be told."""
    for folder in zoneinfo.TZPATH:
        with contextlib.suppress(OSError), (Path(folder) / "tzdata.zi").open() as table:
            return f"{folder}:{table.readline().strip()}"
    with contextlib.suppress(importlib.metadata.PackageNotFoundError):
        return f"tzdata:{importlib.metadata.version('tzdata')}"
    return ""


def _depends_on_more(spec: Spec) -> bool:
    """Whether the job's plan reads a store that changes between runs by itself (or an experiment's variants)."""
    if spec.suppress.files or spec.history.path or spec.experiment is not None:
        return True
    learnt = opt_outs_path(spec)
    return learnt is not None and Path(learnt).exists()


def keyed_input(spec: Spec) -> KeyedInput | None:
    """The input file read once, with its digest and the plan's key; None when the plan has no key (or the file
    cannot be read here: reading it again then gives its own answer)."""
    path = spec.input.path
    if path is None or not is_local_file(path) or spec.input.query is not None or _depends_on_more(spec):
        return None
    code = _source_digest()
    zones = _zones_version() if spec.send.window is not None else "no window"
    if not code or not zones:
        return None
    try:
        raw = Path(path).read_bytes()
    except OSError:
        return None
    digest = hashlib.blake2b(raw, digest_size=16).hexdigest()
    send = [getattr(spec.send, name) for name in PLANNING_SEND]
    flow = [getattr(spec.flow, name) for name in PLANNING_FLOW]
    sections = (spec.input, spec.mapping, spec.suppress, spec.history, spec.experiment, spec.job)
    versions = [pl.__version__, phonenumbers.__version__, platform.python_version()]
    made_of = [digest, *map(repr, (*sections, send, flow)), code, zones, *versions]
    key = hashlib.blake2b(json.dumps(made_of).encode(), digest_size=16).hexdigest()
    return KeyedInput(raw=raw, digest=digest, key=key)
