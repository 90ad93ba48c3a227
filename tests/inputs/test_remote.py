"""A contacts file named by a URL is read and checked exactly as the same file on disk, and never shows its secrets."""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable, Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import polars as pl
import pytest

from batch_engage.cli.main import main
from batch_engage.errors import InputFileError
from batch_engage.inputs.files import read_table
from batch_engage.job import InputSpec
from batch_engage.plan.hygiene import load_suppression

SCIENTIFIC = "phone,name,zip\n4155550101,Ann,02139\n1.41555501E+10,Bob,02140\n"
MAPPING = (
    'to = "phone"\nfrom = "+15005550006"\ndefault_region = "US"\n\n[mapping.parameters]\nname = "name"\nzip = "zip"'
)
SECRETS = ("alice", "S3cr3tPassw0rd", "deadbeefSECRET", "X-Amz-Signature")


class _Quiet(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        """Nothing on stderr: the tests read stderr."""


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    """A folder served over plain HTTP on 127.0.0.1 (a plain GET, no Range requests), and its base URL."""
    folder = tmp_path / "served"
    folder.mkdir()
    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Quiet, directory=str(folder)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield folder, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def _validate(write_job: Callable[..., Path], capsys: pytest.CaptureFixture[str], path: str) -> tuple[int, str, str]:
    code = main(["validate", str(write_job(input_path=path, mapping=MAPPING))])
    out, err = capsys.readouterr()
    return code, out, err


def test_a_number_in_scientific_notation_over_http_is_invalid_as_it_is_on_disk(
    served: tuple[Path, str], write_job: Callable[..., Path], capsys: pytest.CaptureFixture[str]
) -> None:
    """`1.41555501E+10` from an http:// URL: row 2 invalid (digits were lost), the zip code keeps its 0: as on disk."""
    folder, base = served
    (folder / "c.csv").write_text(SCIENTIFIC)
    remote = _validate(write_job, capsys, f"{base}/c.csv")
    local = _validate(write_job, capsys, str(folder / "c.csv"))
    assert remote == local
    assert "invalid: 1\n" in remote[1]
    assert "To: written in scientific notation: digits were lost" in remote[1]
    assert "+14155550100" not in remote[1]
    assert '\\"zip\\":\\"02139\\"' in remote[1]


def test_a_header_naming_a_column_twice_over_http_is_the_same_one_line_as_on_disk(
    served: tuple[Path, str], write_job: Callable[..., Path], capsys: pytest.CaptureFixture[str]
) -> None:
    """`phone,name,phone` from a URL: exit 2, the one line the local file gives, naming the URL."""
    folder, base = served
    (folder / "dup.csv").write_text("phone,name,phone\n4155550101,Ann,x\n")
    for path in (f"{base}/dup.csv", str(folder / "dup.csv")):
        assert _validate(write_job, capsys, path) == (
            2,
            "",
            f"batch-engage: {path}:1: column 'phone': appears twice in the header\n",
        )


def test_a_file_url_reads_as_the_local_path_does(
    tmp_path: Path, write_job: Callable[..., Path], capsys: pytest.CaptureFixture[str]
) -> None:
    """`file:///…/c.csv` validates exactly as `/…/c.csv`, and a missing one is 'no such file'."""
    path = tmp_path / "c.csv"
    path.write_text(SCIENTIFIC)
    assert _validate(write_job, capsys, path.as_uri()) == _validate(write_job, capsys, str(path))
    with pytest.raises(InputFileError, match=r"^file:///.*/nope\.csv: no such file$"):
        read_table(InputSpec(path=(tmp_path / "nope.csv").as_uri()))


@pytest.mark.parametrize("name", ["c.ndjson", "c.parquet", "latin1.csv"])
def test_ndjson_parquet_and_a_named_encoding_read_from_a_url_as_from_disk(served: tuple[Path, str], name: str) -> None:
    """NDJSON, Parquet and a latin-1 CSV over HTTP: the same rows, types and digest as the file on disk."""
    folder, base = served
    frame = pl.DataFrame({"phone": ["+14155550100", "+14155550101"], "name": ["Ana", "Zoë"], "visits": [1, 2]})
    if name.endswith(".ndjson"):
        frame.write_ndjson(folder / name)
    elif name.endswith(".parquet"):
        frame.write_parquet(folder / name)
    else:
        (folder / name).write_bytes("phone,name,visits\n+14155550100,Ana,1\n+14155550101,Zoë,2\n".encode("latin-1"))
    encoding = {"encoding": "latin-1"} if name.startswith("latin1") else {}
    remote = read_table(InputSpec(path=f"{base}/{name}", **encoding), text_columns=["phone"])
    local = read_table(InputSpec(path=str(folder / name), **encoding), text_columns=["phone"])
    assert remote.frame.equals(local.frame)
    assert (remote.digest, remote.numbers) == (local.digest, local.numbers)
    assert remote.frame["name"].to_list() == ["Ana", "Zoë"]


def test_an_unreadable_url_is_one_line_without_its_user_password_or_signature() -> None:
    """A URL nobody answers: `https://127.0.0.1:9/contacts.csv?…: cannot be read: …`, one line, no secret in it."""
    url = "https://alice:S3cr3tPassw0rd@127.0.0.1:9/contacts.csv?X-Amz-Signature=deadbeefSECRET"
    with pytest.raises(InputFileError) as caught:
        read_table(InputSpec(path=url))
    message = str(caught.value)
    assert message.startswith("https://127.0.0.1:9/contacts.csv?…: cannot be read: ")
    assert "\n" not in message
    assert not [secret for secret in SECRETS if secret in message]


def test_a_password_in_input_path_is_refused_in_one_line_that_does_not_show_it(
    write_job: Callable[..., Path], capsys: pytest.CaptureFixture[str]
) -> None:
    """`input.path` holding `user:password@`: refused as `input.uri` is, exit 2, the password never printed."""
    url = "https://alice:S3cr3tPassw0rd@127.0.0.1:9/contacts.csv?X-Amz-Signature=deadbeefSECRET"
    code, out, err = _validate(write_job, capsys, url)
    assert (code, out) == (2, "")
    assert err == (
        "batch-engage: input.path: holds a password: remove it; the README's table of inputs says where each "
        "one is read from\n"
    )


@pytest.mark.parametrize(
    ("url", "said"),
    [
        # A percent-encoded colon: httpx decodes it and sends user and password as Basic auth.
        ("http://alice%3AS3cr3tPassw0rd@10.255.255.1:8000/contacts.csv", "holds a password"),
        # A user name alone is a token too, sent with every request (https://TOKEN@host/).
        ("http://S3cr3tPassw0rd@10.255.255.1:8000/contacts.csv", "holds a user name (user@host)"),
    ],
)
def test_credentials_in_an_input_url_are_refused_before_anything_is_sent(
    write_job: Callable[..., Path], capsys: pytest.CaptureFixture[str], url: str, said: str
) -> None:
    """Refused while the job is read, before any connection: never sent over plain http, never printed."""
    code, out, err = _validate(write_job, capsys, url)
    assert (code, out) == (2, "")
    assert err.startswith(f"batch-engage: input.path: {said}: remove it")
    assert "S3cr3tPassw0rd" not in err


def test_a_missing_column_in_a_presigned_url_names_the_url_without_its_signature(
    served: tuple[Path, str], write_job: Callable[..., Path], capsys: pytest.CaptureFixture[str]
) -> None:
    """A readable presigned URL whose file lacks a mapped column: the URL is shown as `…/c.csv?…`, one line."""
    folder, base = served
    (folder / "c.csv").write_text("phone,first_name\n4155550101,Ann\n")
    code, out, err = _validate(write_job, capsys, f"{base}/c.csv?X-Amz-Signature=deadbeefSECRET")
    assert (code, out) == (2, "")
    assert err.startswith(f"batch-engage: {base}/c.csv?…: column 'name': mapping.parameters.name names a column")
    assert err.count("\n") == 1
    assert not [secret for secret in SECRETS if secret in err]


def test_a_suppression_list_at_a_presigned_url_is_named_by_its_file_not_its_signature(
    served: tuple[Path, str],
) -> None:
    """The list's name, written into every row it holds back, is `optouts.csv`, never the signature."""
    folder, base = served
    (folder / "optouts.csv").write_text("phone\n+14155550100\n")
    lists = load_suppression([f"{base}/optouts.csv?X-Amz-Signature=deadbeefSECRET"], None, None)
    assert lists == {"optouts.csv": {"+14155550100"}}


def test_a_file_url_input_is_protected_from_the_outputs_as_its_path_is(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`input.path = "file:///…/x.csv"` with `output.results` naming that file: refused, exit 2, the list intact."""
    contacts = tmp_path / "x.csv"
    contacts.write_text("phone,name\n+14155550100,Ann\n")
    job = tmp_path / "job.toml"
    job.write_text(
        f'[input]\npath = "{contacts.as_uri()}"\n\n[flow]\nsid = "FW{"0" * 32}"\n\n'
        '[mapping]\nto = "phone"\nfrom = "+15005550006"\n\n'
        f'[output]\nresults = "{contacts}"\ncheckpoint = "{tmp_path / "job.checkpoint"}"\n'
    )
    code = main(["validate", str(job)])
    _, err = capsys.readouterr()
    assert code == 2 and "would overwrite input.path" in err and err.count("\n") == 1
    assert contacts.read_text() == "phone,name\n+14155550100,Ann\n"


def test_a_urls_query_or_fragment_is_never_shown_as_its_file_type() -> None:
    """`…/dl?x=1.SECRET` has no extension: the one line says so, and shows neither the query nor the fragment."""
    for url in ("https://127.0.0.1:9/dl?x=1.SECRET", "https://127.0.0.1:9/dl#t=2.SECRET"):
        with pytest.raises(InputFileError) as caught:
            read_table(InputSpec(path=url))
        assert "'(no extension)'" in str(caught.value) and "SECRET" not in str(caught.value)
