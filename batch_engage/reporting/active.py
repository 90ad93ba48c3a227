"""The report's section on contacts that met an earlier active run (``[send] on_active``): waited, ended, refused."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import polars as pl

from ..plan import mask
from .svg import escape

__all__ = ["ActiveGroup", "active_groups", "active_section"]

_SID = re.compile(r"FN[0-9a-fA-F]{32}")
_EXAMPLES = 3
_KINDS = {
    "ended": "Earlier runs ended (this job's own), then sent",
    "waited": "Waited for their earlier run to end (sent after, or still waiting)",
    "refused": "Not ended, waited: the earlier run is not this job's",
}
_WAITED = "sent after waiting"


@dataclass(frozen=True, kw_only=True)
class ActiveGroup:
    """Contacts that met an earlier active run for the same reason (SIDs left out), with masked examples."""

    kind: str  # "ended", "waited" or "refused"
    reason: str
    count: int
    examples: tuple[str, ...]


def active_groups(results: pl.DataFrame) -> tuple[ActiveGroup, ...]:
    """Group the rows that met an earlier active run by what happened (ended, waited, refused) and why."""
    if "ended_sid" not in results.columns:
        return ()
    message = pl.col("error_message").fill_null("")
    met = results.filter(
        pl.col("ended_sid").is_not_null()
        | (pl.col("status") == "waiting_active")
        | ((pl.col("status") == "sent") & message.str.starts_with(_WAITED))
    ).with_columns(
        pl.when(pl.col("ended_sid").is_not_null())
        .then(pl.lit("ended"))
        .when(message.str.contains("not ended", literal=True))
        .then(pl.lit("refused"))
        .otherwise(pl.lit("waited"))
        .alias("kind")
    )
    groups: dict[tuple[str, str], list[str]] = {}
    for kind, text, to in met.select("kind", "error_message", "to").iter_rows():
        reason = _SID.sub("FN…", text or "")
        groups.setdefault((kind, reason), []).append(to)
    order = list(_KINDS)
    return tuple(
        ActiveGroup(kind=kind, reason=reason, count=len(tos), examples=tuple(mask(t) for t in tos[:_EXAMPLES]))
        for (kind, reason), tos in sorted(groups.items(), key=lambda kv: (order.index(kv[0][0]), -len(kv[1]), kv[0]))
    )


def active_section(groups: Sequence[ActiveGroup]) -> str:
    """The section's HTML: one table per kind, a line per reason; nothing when no contact met an active run."""
    if not groups:
        return ""
    out = ['<section id="active-runs">\n<h2>Contacts inside an earlier active run</h2>\n']
    for kind, title in _KINDS.items():
        rows = [g for g in groups if g.kind == kind]
        if not rows:
            continue
        total = sum(g.count for g in rows)
        lines = "".join(
            f'<tr><td>{escape(g.reason)}</td><td class="n">{g.count:,}</td>'
            f'<td class="ex">{", ".join(f"<code>{escape(x)}</code>" for x in g.examples)}</td></tr>'
            for g in rows
        )
        out.append(
            f'<h3 id="active-{kind}">{escape(title)} <span class="sub">{total:,}</span></h3>\n'
            '<table class="failures"><thead><tr><th>Why</th><th class="n">Rows</th><th class="ex">Examples</th>'
            f"</tr></thead><tbody>{lines}</tbody></table>\n"
        )
    out.append("</section>\n")
    return "".join(out)
