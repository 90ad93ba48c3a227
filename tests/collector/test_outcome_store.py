"""The outcomes store beside a checkpoint, read without its lock."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import polars as pl

from batch_engage.collector.outcomes import OutcomeStore, StoredOutcome, read_outcomes
from batch_engage.collector.table import top_values
from batch_engage.job.sections import CollectSpec


def test_outcomes_are_read_back_from_a_folder_whose_name_looks_like_a_uri(tmp_path: Path) -> None:
    """A folder named ``a?b#c`` is that folder: the report reads the outcomes ``collect`` saved there."""
    folder = tmp_path / "campaign?mode=rw#2026"
    folder.mkdir()
    checkpoint = folder / "job.checkpoint"
    saved = StoredOutcome(contact="c1", sid="FN" + "0" * 32, run_status="ended", fetched_at="2026-12-06T00:00:00Z")
    with OutcomeStore.open(checkpoint) as store:
        store.save([saved])
    assert read_outcomes(checkpoint) == {"c1": saved}
    assert sorted(p.name for p in tmp_path.iterdir()) == [folder.name]  # nothing opened or made beside it


def test_a_huge_reply_is_cut_in_the_summary_but_counted_whole() -> None:
    """A 200,000-character reply (anyone can text the number) is shown as its first 80 characters and its length in
    collect's summary and log, never as one 200,000-character line; the same replies still count together."""
    spec = SimpleNamespace(collect=CollectSpec(fields=(("answer", "widgets.ask.inbound.Body"),)))
    table = pl.DataFrame({"answer": ["x" * 200_000, "x" * 200_000, "YES"]})
    top = top_values(spec, table)  # type: ignore[arg-type]
    assert top["answer"] == [("x" * 80 + "… (200,000 characters)", 2), ("YES", 1)]
