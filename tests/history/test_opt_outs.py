"""Opt-outs kept in either history store: recorded once per contact and sender, listed, forgotten."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from batch_engage.history import open_history

from pg import fresh_schema

SENDER = "+15005550006"
SERVICE = "MG" + "d" * 32


@pytest.fixture(params=["sqlite", "postgresql"])
def history_path(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh history of each kind."""
    if request.param == "sqlite":
        yield str(tmp_path / "history.db")
        return
    with fresh_schema() as schema:
        yield schema.history_url


def test_opt_outs_are_kept_per_contact_and_sender_with_the_latest_date(history_path: str) -> None:
    """The same contact and sender twice is one entry (the later date); another sender is another entry."""
    with open_history(history_path) as store:
        store.add_opt_outs([("+14155550100", SENDER, 1_800_000_000.0), ("+14155550101", SERVICE, 1_800_000_100.0)])
        store.add_opt_outs([("+14155550100", SENDER, 1_800_000_500.0)])
        table = store.opt_outs()
    assert table.rows() == [("+14155550101", SERVICE, 1_800_000_100.0), ("+14155550100", SENDER, 1_800_000_500.0)]


def test_forget_removes_every_entry_of_one_contact(history_path: str) -> None:
    """A contact who sent START is removed by hand; the others stay."""
    with open_history(history_path) as store:
        store.add_opt_outs(
            [("+14155550100", SENDER, 1.0), ("+14155550100", SERVICE, 2.0), ("+14155550101", SENDER, 3.0)]
        )
        assert store.forget("+14155550100") == 2
        assert store.opt_outs()["to"].to_list() == ["+14155550101"]
        assert store.forget("+14155550199") == 0
