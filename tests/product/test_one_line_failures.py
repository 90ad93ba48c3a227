"""Every known failure is one line with its exit code, never a traceback with exit 1."""

from __future__ import annotations

import json
import socket
from collections.abc import Callable
from pathlib import Path

import polars as pl
import pytest

from conftest import cli

_PARQUET_MAPPING = 'to = "phone"\nfrom = "+15005550006"\n\n[mapping.parameters]\nx = "{column}"'


def test_a_job_path_that_is_a_folder_is_one_line_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``batch-engage run some/folder``: one line saying it is a folder, exit 2."""
    code, _, err = cli(["validate", str(tmp_path)], capsys)
    assert code == 2
    assert err.strip().splitlines() == [f"batch-engage: job: {tmp_path} is a folder; give the job's .toml file"]


def test_the_sandbox_on_a_port_in_use_is_one_line_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    """``batch-engage sandbox --port N`` while N is taken: one line naming the port, exit 2."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        code, _, err = cli(["sandbox", "--port", str(port)], capsys)
    assert code == 2
    assert len(err.strip().splitlines()) == 1
    assert f"cannot listen on port {port}" in err


def _parquet_job(write_job: Callable[..., Path], tmp_path: Path, column: str) -> Path:
    frame = pl.DataFrame(
        {
            "phone": ["+14155550100", "+14155550101"],
            "tags": [["vip", "new"], ["old"]],
            "blob": [b"\x00\x01", b"zz"],
            "nested": [[b"a"], [b"b"]],
        }
    )
    path = tmp_path / "contacts.parquet"
    frame.write_parquet(path)
    return write_job(input_path=path, mapping=_PARQUET_MAPPING.format(column=column))


@pytest.mark.parametrize("column", ["blob", "nested"])
def test_a_binary_parquet_column_mapped_into_parameters_is_refused_by_name(
    write_job: Callable[..., Path], tmp_path: Path, capsys: pytest.CaptureFixture[str], column: str
) -> None:
    """Bytes have no JSON form: exit 2, one line naming the key and the column."""
    code, _, err = cli(["validate", str(_parquet_job(write_job, tmp_path, column))], capsys)
    assert code == 2
    assert err.strip().splitlines() == [
        f"batch-engage: mapping.parameters.x: column {column!r} holds binary data "
        f"({'Binary' if column == 'blob' else 'List(Binary)'}), which Parameters (JSON) cannot carry; "
        "cast it to text in the input"
    ]


def test_a_list_parquet_column_mapped_into_parameters_is_sent_as_a_json_array(
    write_job: Callable[..., Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A list column reaches the Flow as a JSON array (``flow.data.x[0]``)."""
    code, out, _ = cli(["validate", str(_parquet_job(write_job, tmp_path, "tags"))], capsys)
    assert code == 0
    samples = [json.loads(line.strip()) for line in out.splitlines() if line.strip().startswith('{"row"')]
    assert [json.loads(s["Parameters"])["x"] for s in samples] == [["vip", "new"], ["old"]]


def test_static_parameters_without_mapped_parameters_go_to_every_row(
    write_job: Callable[..., Path], contacts_csv: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``[mapping.static_parameters]`` alone: every row carries them (no polars ShapeError)."""
    mapping = 'to = "phone"\nfrom = "+15005550006"\n\n[mapping.static_parameters]\ncampaign = "spring"'
    job = write_job(input_path=contacts_csv, mapping=mapping)
    code, out, _ = cli(["validate", str(job)], capsys)
    assert code == 0
    samples = [json.loads(line.strip()) for line in out.splitlines() if line.strip().startswith('{"row"')]
    assert samples
    assert all(json.loads(s["Parameters"])["campaign"] == "spring" for s in samples)
