"""The outcomes store beside a checkpoint, read without its lock."""

from __future__ import annotations

from pathlib import Path

from batch_engage.collector.outcomes import OutcomeStore, StoredOutcome, read_outcomes


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
