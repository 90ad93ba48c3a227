"""Benchmark: the arrival check's renders, before a run's first request (``row_segments``).

With a Flow whose definition is readable, ``validate --flow`` and ``run`` render every message widget
for each pending contact and count its SMS segments, before the first request. This times that step
alone, in process, on the sample campaign's plan (``benchkit.realistic_contacts``: first names and
cities repeat, order totals mostly do not) against ``tests/flows/order_update.json`` (a greeting that
prints first_name, order.id and city; a question that prints visits; a thank-you that prints first_name):

* as it runs: a widget is rendered once for all contacts that agree on the ``flow.data`` keys it reads;
* every contact rendered (no render shared), the way it ran before, side by side in the same process.

No target: the issue names none. Figures: seconds and µs per pending contact, best of three each.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

from benchkit import emit, make_spec, quiet_logs, realistic_contacts

from batch_engage.arrival import projection
from batch_engage.plan.rows import plan

ROWS = 200_000
ROUNDS = 3
FLOW = Path(__file__).resolve().parents[1] / "tests" / "flows" / "order_update.json"


def best_of(rounds: int, definition: dict[str, Any], frame: Any) -> float:
    """The fastest of ``rounds`` calls of ``row_segments``, in seconds."""
    best = float("inf")
    for _ in range(rounds):
        started = time.perf_counter()
        projection.row_segments(definition, frame)
        best = min(best, time.perf_counter() - started)
    return best


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Plan the contacts, time both ways in turns, print the record and the table."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=ROWS)
    args = parser.parse_args(argv)
    quiet_logs()
    definition = json.loads(FLOW.read_text(encoding="utf-8"))
    with tempfile.TemporaryDirectory(prefix="bench-arrival-") as tmpdir:
        planned = plan(realistic_contacts(args.rows), make_spec(Path(tmpdir)))
    pending = planned.filter(planned["status"] == "pending").height
    shared, every = float("inf"), float("inf")
    for _ in range(ROUNDS):
        shared = min(shared, best_of(1, definition, planned))
        kept, projection._SHARED_RENDERS = projection._SHARED_RENDERS, 0
        try:
            every = min(every, best_of(1, definition, planned))
        finally:
            projection._SHARED_RENDERS = kept
    figures = {
        "pending": pending,
        "shared_s": shared,
        "every_contact_s": every,
        "shared_us_per_contact": shared / pending * 1e6,
        "every_contact_us_per_contact": every / pending * 1e6,
        "ratio": every / shared,
    }
    table = [
        ("pending contacts", pending),
        ("renders shared: s | µs a contact", f"{shared:.3f} | {figures['shared_us_per_contact']:.1f}"),
        ("every contact rendered: s | µs a contact", f"{every:.3f} | {figures['every_contact_us_per_contact']:.1f}"),
        ("every contact / shared", f"{figures['ratio']:.2f}x"),
    ]
    notes = [f"{args.rows:,} rows, tests/flows/order_update.json, best of {ROUNDS} each, in turns, one process"]
    return emit("arrival_check", figures, [], table=table, notes=notes)


if __name__ == "__main__":
    main()
