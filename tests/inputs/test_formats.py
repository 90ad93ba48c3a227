"""The formats a job may name (``input.format``) and the files the readers read are one list."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from batch_engage.inputs.catalog import FILE_EXTENSIONS
from batch_engage.inputs.files import read_table
from batch_engage.job import InputSpec
from batch_engage.job.checks import INPUT_FORMATS

_WRITERS = {"csv": pl.DataFrame.write_csv, "parquet": pl.DataFrame.write_parquet, "ndjson": pl.DataFrame.write_ndjson}


@pytest.mark.parametrize("fmt", INPUT_FORMATS)
def test_every_format_a_job_may_name_is_read_from_a_file_of_any_name(fmt: str, tmp_path: Path) -> None:
    """``input.format = "<fmt>"`` on a file whose name says nothing: its rows are read, as that format."""
    rows = pl.DataFrame({"phone": ["+14155550100", "+14155550101"], "name": ["Ada", "Grace"]})
    path = tmp_path / "contacts.export"
    _WRITERS[fmt](rows, path)
    table = read_table(InputSpec(path=str(path), format=fmt), text_columns=["phone"])
    assert table.frame.select("phone", "name").to_dicts() == rows.to_dicts()


def test_the_job_names_exactly_the_formats_the_readers_catalog_lists() -> None:
    """The README's table of inputs (the catalog) and ``input.format``'s choices cannot drift apart."""
    assert set(INPUT_FORMATS) == set(FILE_EXTENSIONS.values())
