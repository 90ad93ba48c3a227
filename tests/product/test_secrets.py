"""Passwords stay out of job files and out of everything batch-engage shows or writes.

One parser (``batch_engage.postgres``) holds the rules for input.uri, history.path and
output.checkpoint: no password in the userinfo or the query (any case), no libpq key/value
string, a malformed URL refused in one line.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from batch_engage import postgres
from batch_engage.errors import ConfigError
from batch_engage.history import postgres as history_pg
from batch_engage.job import load_spec
from batch_engage.sandbox import Sandbox

from conftest import FLOW_SID, cli

SECRET = "Sup3rS3cretPW"


def _job(write_job: Callable[..., Path], contacts_csv: Path, key: str, value: str) -> Path:
    """A job with ``[job] id`` whose ``key`` (output.checkpoint or history.path) is ``value``."""
    path = write_job(input_path=contacts_csv, extra='[job]\nid = "j"\n')
    text = path.read_text()
    if key == "output.checkpoint":
        text = re.sub(r'(?m)^checkpoint = ".*"$', lambda _: f'checkpoint = "{value}"', text)
    else:
        text += f'\n[history]\npath = "{value}"\n'
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    "url",
    [
        f"postgresql://127.0.0.1/test?schema=x&password={SECRET}",
        f"postgresql://127.0.0.1/test?schema=x&PASSWORD={SECRET}",
        f"postgresql://127.0.0.1/test?Password={SECRET}",
        f"postgresql://app:{SECRET}@127.0.0.1/test",
        # A percent-encoded colon: urlsplit sees a user name alone, libpq a user and a password.
        f"postgresql://app%3A{SECRET}@127.0.0.1/test",
        # A key libpq does not know, holding the password all the same (it was a traceback).
        f"postgresql://127.0.0.1/test?;password={SECRET}",
    ],
)
@pytest.mark.parametrize("command", ["run", "validate", "status", "report"])
def test_a_password_in_the_checkpoint_url_exits_2_and_appears_in_no_output(
    write_job: Callable[..., Path],
    contacts_csv: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    url: str,
    command: str,
) -> None:
    """``?password=`` (any case) or ``user:pw@`` in output.checkpoint: exit 2, one line, the password nowhere."""
    job = _job(write_job, contacts_csv, "output.checkpoint", url)
    code, out, err = cli([command, str(job)], capsys)
    assert code == 2
    assert len(err.strip().splitlines()) == 1
    assert "PGPASSWORD" in err
    assert SECRET not in out + err
    for path in tmp_path.rglob("*"):
        if path.is_file() and path != job:
            assert SECRET.encode() not in path.read_bytes(), path


@pytest.mark.parametrize("key", ["output.checkpoint", "history.path", "input.uri"])
def test_a_libpq_key_value_string_is_refused_with_a_pointer_to_pgpassword(key: str, tmp_path: Path) -> None:
    """``host=db dbname=crm`` is not taken as a file name: refused, naming the key and PGPASSWORD / ~/.pgpass."""
    section, name = key.split(".")
    raw: dict[str, dict[str, str]] = {
        "job": {"id": "j"},
        "flow": {"sid": FLOW_SID},
        "mapping": {"to": "phone", "from": "+15005550006"},
        "output": {"results": str(tmp_path / "r.csv"), "checkpoint": str(tmp_path / "c")},
    }
    raw.setdefault(section, {})[name] = f"host=db.example dbname=crm user=app password={SECRET}"
    if key == "input.uri":
        raw["input"]["query"] = "select 1"
    with pytest.raises(ConfigError, match=rf"^{key}: is a libpq key/value string.*PGPASSWORD or ~/\.pgpass") as info:
        load_spec(raw=raw)
    assert SECRET not in str(info.value)


@pytest.mark.parametrize(
    ("key", "url"),
    [
        ("output.checkpoint", "postgresql://127.0.0.1:notaport/test"),
        ("output.checkpoint", "postgresql://[::1/test"),
        ("history.path", "postgresql://127.0.0.1:99999999/test"),
        ("input.uri", "postgresql://[zz/test"),
    ],
)
def test_a_malformed_database_url_is_one_line_exit_2(
    write_job: Callable[..., Path], contacts_csv: Path, capsys: pytest.CaptureFixture[str], key: str, url: str
) -> None:
    """A URL that does not parse: one line naming the key, exit 2, no traceback."""
    if key == "input.uri":
        job = write_job(input_path=contacts_csv)
        job.write_text(job.read_text().replace(f'path = "{contacts_csv}"', f'uri = "{url}"\nquery = "select 1"'))
    else:
        job = _job(write_job, contacts_csv, key, url)
    code, _, err = cli(["validate", str(job)], capsys)
    assert code == 2
    assert len(err.strip().splitlines()) == 1
    assert key in err


def test_every_url_shown_is_masked() -> None:
    """``masked`` hides a userinfo password and any password= in a query, whatever its case."""
    text = f"see postgresql://app:{SECRET}@db/x?schema=s&PassWord={SECRET}&lease=5 and passfile=/home/a/.pgpass"
    shown = postgres.masked(text)
    assert SECRET not in shown and "/home/a/.pgpass" not in shown
    assert "postgresql://app:***@db/x?schema=s&PassWord=***&lease=5" in shown


def test_the_history_parses_its_url_with_the_one_postgres_parser() -> None:
    """history.path's schema rule, default and password rule are postgres.py's own (no second copy)."""
    assert history_pg.split_schema is postgres.split_schema
    assert history_pg.DEFAULT_SCHEMA is postgres.DEFAULT_SCHEMA
    with pytest.raises(ConfigError, match=r"^history\.path: holds a password"):
        postgres.split_schema(f"postgresql://db/x?PASSWORD={SECRET}", key="history.path")
    assert postgres.split_schema("postgresql://db/x?schema=Crm_1", key="history.path") == ("postgresql://db/x", "Crm_1")


def test_a_libpq_key_value_string_given_as_checkpoint_flag_is_refused(
    write_job: Callable[..., Path], contacts_csv: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``--checkpoint "host=db dbname=crm"`` is not a file in the current folder: one line, exit 2."""
    job = write_job(input_path=contacts_csv)
    code, _, err = cli(["validate", str(job), "--checkpoint", f"host=db dbname=crm password={SECRET}"], capsys)
    assert code == 2
    assert len(err.strip().splitlines()) == 1
    assert "libpq key/value" in err and SECRET not in err


@pytest.mark.parametrize("command", ["run", "validate"])
@pytest.mark.parametrize(
    "url",
    [
        f"http://app:{SECRET}@127.0.0.1:9",
        f"https://{SECRET}@studio.example.com",
        # Malformed: no scheme, or one slash; urlsplit sees no user there, and the URL must still not be repeated.
        f"app:{SECRET}@studio.example.com",
        f"https:/app:{SECRET}@studio.example.com",
    ],
)
def test_a_password_in_the_flow_base_url_exits_2_and_appears_in_no_output(
    write_job: Callable[..., Path],
    contacts_csv: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    sandbox_env: dict[str, str],
    url: str,
    command: str,
) -> None:
    """``user:pw@`` in flow.base_url, credentials in the environment: exit 2, one line pointing at the TWILIO_*
    variables, the password nowhere (it was written into the checkpoint's meta before a traceback)."""
    job = write_job(input_path=contacts_csv, base_url=url)
    code, out, err = cli([command, str(job)], capsys)
    assert code == 2
    assert len(err.strip().splitlines()) == 1 and "TWILIO_AUTH_TOKEN" in err
    assert SECRET not in out + err
    for path in tmp_path.rglob("*"):
        if path.is_file() and path != job:
            assert SECRET.encode() not in path.read_bytes(), path


@pytest.mark.parametrize(
    "value",
    [
        f"postgresql:/app:{SECRET}@127.0.0.1:5432/test",
        f"postgresql//app:{SECRET}@127.0.0.1:5432/test",
        f"postgressql://app:{SECRET}@127.0.0.1:5432/test",
        f"app:{SECRET}@127.0.0.1/test",
    ],
)
@pytest.mark.parametrize("key", ["output.checkpoint", "history.path"])
def test_a_mistyped_database_url_is_refused_not_taken_for_a_file_name(
    write_job: Callable[..., Path],
    contacts_csv: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    key: str,
    value: str,
) -> None:
    """`postgresql:/user:pw@…` was a SQLite file of that name: the whole campaign sent, the password in every line."""
    job = _job(write_job, contacts_csv, key, value)
    code, out, err = cli(["run", str(job), "--sandbox"], capsys)
    assert code == 2
    assert err.startswith(f"batch-engage: {key}: looks like a database URL mistyped") and err.count("\n") == 1
    assert SECRET not in out + err
    assert [
        p for p in tmp_path.rglob("*") if SECRET in str(p) or (p.is_file() and SECRET.encode() in p.read_bytes())
    ] == [job] * (SECRET.encode() in job.read_bytes())


@pytest.mark.parametrize("variable", ["TWILIO_REGION", "TWILIO_EDGE"])
def test_a_secret_in_the_region_or_edge_variable_is_not_repeated(
    write_job: Callable[..., Path],
    contacts_csv: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    variable: str,
) -> None:
    """A token pasted into TWILIO_REGION is refused without being shown; a plain wrong name still is."""
    monkeypatch.setenv("TWILIO_ACCOUNT_SID", "AC" + "0" * 32)
    monkeypatch.setenv("TWILIO_AUTH_TOKEN", "x")
    job = write_job(input_path=contacts_csv)
    # No base_url: the host is Twilio's, made from the region and the edge.
    job.write_text(job.read_text().replace('base_url = "http://127.0.0.1:9"\n', ""))
    token = "9f8e7d6c5b4a39281706f5e4d3c2b1a0"
    monkeypatch.setenv(variable, token)
    code, out, err = cli(["validate", str(job), "--flow"], capsys)
    assert code == 2 and variable in err and "not shown" in err
    assert token not in out + err
    monkeypatch.setenv(variable, "dub.lin")
    code, _, err = cli(["validate", str(job), "--flow"], capsys)
    assert code == 2 and "'dub.lin'" in err


@pytest.mark.parametrize("key", ["input.uri", "history.path"])
def test_an_env_reference_naming_the_wrong_variable_is_not_repeated(
    write_job: Callable[..., Path],
    contacts_csv: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    key: str,
) -> None:
    """`env:TWILIO_AUTH_TOKEN` where a database URL belongs: refused, the token never printed."""
    token = "9f8e7d6c5b4a39281706f5e4d3c2b1a0"
    monkeypatch.setenv("TWILIO_AUTH_TOKEN", token)
    job = write_job(input_path=contacts_csv)
    text = job.read_text()
    if key == "input.uri":
        text = text.replace(f'path = "{contacts_csv}"', 'uri = "env:TWILIO_AUTH_TOKEN"\nquery = "select 1"')
    else:
        text += '\n[history]\npath = "env:TWILIO_AUTH_TOKEN"\n'
    job.write_text(text)
    code, out, err = cli(["validate", str(job)], capsys)
    assert code == 2 and key in err and "a value with no scheme" in err
    assert token not in out + err


def test_a_schema_that_holds_a_password_is_named_without_it() -> None:
    """`?schema=x;password=…` is no schema name: refused, the password masked in the line."""
    with pytest.raises(ConfigError) as info:
        postgres.split_schema(f"postgresql://127.0.0.1/test?schema=x;password={SECRET}", key="output.checkpoint")
    assert "is not a plain identifier" in str(info.value) and SECRET not in str(info.value)


def test_a_parameter_libpq_does_not_know_is_one_line_exit_2(
    write_job: Callable[..., Path], contacts_csv: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """libpq refuses `?bogus=1` before connecting: one line naming it and the database, exit 2, no traceback."""
    job = _job(write_job, contacts_csv, "output.checkpoint", "postgresql://127.0.0.1:5432/test?bogus=1")
    code, _, err = cli(["validate", str(job)], capsys)
    assert code == 2
    assert err.count("\n") == 1 and 'invalid URI query parameter: "bogus"' in err and "127.0.0.1:5432" in err


def test_a_job_in_a_folder_with_at_and_colon_is_no_mistyped_url(tmp_path: Path) -> None:
    """A job kept in `acme:ops@eu/` names its checkpoint `ck`: the folder is no part of what was written."""
    folder = tmp_path / "acme:ops@eu"
    folder.mkdir()
    job = folder / "job.toml"
    job.write_text(
        f'[input]\npath = "c.csv"\n[flow]\nsid = "{FLOW_SID}"\n[mapping]\nto = "phone"\nfrom = "+15005550006"\n'
        '[output]\ncheckpoint = "ck"\n'
    )
    assert load_spec(job).output.checkpoint == str(folder.resolve() / "ck")


def test_an_azure_container_before_the_at_is_no_credential() -> None:
    """`abfs://container@account…/c.csv` names a container, not a user: accepted (only http(s) sends a user)."""
    raw = {
        "input": {"path": "abfs://contacts@myaccount.dfs.core.windows.net/lists/c.csv"},
        "flow": {"sid": FLOW_SID},
        "mapping": {"to": "phone", "from": "+15005550006"},
    }
    assert load_spec(raw=raw).input.path == "abfs://contacts@myaccount.dfs.core.windows.net/lists/c.csv"


# A password may hold "/", "?" or "#": urlsplit cut it there, took "postgres:2024" for a host and port, and the rest
# was shown as the database (or a piece of it as a port that is no number), and a results table was accepted.
CUT_PASSWORDS = ["2024/Pw9x", "S3cr#tpw", "S3cr?tpw"]


def _with_url(job: Path, key: str, url: str) -> None:
    """``job`` (with ``[job] id``) naming ``url`` under ``key``: input.uri, history.path or output.checkpoint/results."""
    text = job.read_text() + '\n[job]\nid = "j"\n'
    if key == "input.uri":
        text = re.sub(r'(?m)^path = ".*"$', lambda _: f'uri = "{url}"\nquery = "select 1"', text, count=1)
    elif key == "history.path":
        text += f'\n[history]\npath = "{url}"\n'
    else:
        name = key.split(".")[1]
        fragment = "#s.results" if name == "results" and url.startswith("postgresql") else ""
        text = re.sub(rf'(?m)^{name} = ".*"$', lambda _: f'{name} = "{url}{fragment}"', text)
    job.write_text(text)


@pytest.mark.parametrize("password", CUT_PASSWORDS)
@pytest.mark.parametrize(
    ("key", "through_env"),
    [
        ("input.uri", False),
        ("input.uri", True),
        ("history.path", False),
        ("history.path", True),
        ("output.checkpoint", False),
        ("output.results", False),
    ],
)
def test_a_password_holding_a_slash_hash_or_question_mark_is_refused_and_never_shown(
    job: Path,
    sandbox: Sandbox,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    key: str,
    through_env: bool,
    password: str,
) -> None:
    """`postgresql://postgres:2024/Pw9x@…` (or `S3cr#tpw`, `S3cr?tpw`), written or through env:NAME: validate and run
    exit 2 with one line saying it holds a password, no piece of it shown, nothing sent (a results table with one
    was accepted, everyone was sent to, and the run ended 74 printing the URL twice)."""
    url = f"postgresql://postgres:{password}@127.0.0.1:5432/test"
    if through_env:
        monkeypatch.setenv("BE_TEST_DB_URL", url)
    _with_url(job, key, "env:BE_TEST_DB_URL" if through_env else url)
    pieces = [p for p in re.split(r"[/#?]", password) if p]
    for command in ("validate", "run"):
        code, out, err = cli([command, str(job)], capsys)
        assert code == 2, err
        assert err.startswith(f"batch-engage: {key}: holds a password") and err.count("\n") == 1
        assert not [p for p in pieces if p in out + err], err
    assert sandbox.ledger() == []
    for path in tmp_path.rglob("*"):
        if path.is_file() and path != job:
            assert not [p for p in pieces if p.encode() in path.read_bytes()], path


@pytest.mark.parametrize("password", CUT_PASSWORDS)
def test_a_url_whose_password_holds_a_slash_hash_or_question_mark_is_masked_whole(password: str) -> None:
    """Any line that names such a URL shows `postgresql://postgres:***@host…`: no piece of the password."""
    shown = postgres.masked(f"failed: postgresql://postgres:{password}@127.0.0.1:5432/test (x)")
    assert shown == "failed: postgresql://postgres:***@127.0.0.1:5432/test (x)"


def test_an_at_sign_further_on_is_no_password_unless_a_colon_comes_before_it() -> None:
    """The user part runs to the last '@': `?application_name=a@b` with no ':' before it is accepted; with a port
    before it, it is refused as a password with the hint to write that '@' as %40 (the two cannot be told apart)."""
    postgres.check_database_uri("postgresql://db/x?application_name=a@b", key="k")
    with pytest.raises(ConfigError, match=r"^k: holds a password \(the user part runs to the last '@'.*%40"):
        postgres.check_database_uri("postgresql://db:5432/x?application_name=a@b", key="k")


def test_a_file_url_with_an_at_sign_in_its_path_is_refused_with_the_way_out() -> None:
    """`https://files.example.com:8443/exports/contacts@2024-06.csv` cannot be told from a password holding a '/':
    refused, and the line says to write that '@' as %40 (it said only "remove it")."""
    raw = {
        "input": {"uri": "https://files.example.com:8443/exports/contacts@2024-06.csv"},
        "flow": {"sid": FLOW_SID},
        "mapping": {"to": "phone", "from": "+15005550006"},
    }
    with pytest.raises(ConfigError, match=r"last '@'; write an '@' meant elsewhere as %40") as refused:
        load_spec(raw=raw)
    assert "2024-06" not in str(refused.value)


@pytest.mark.parametrize(
    ("key", "url"),
    [
        ("input.uri", "mysql://app:2024/Pw9x@127.0.0.1:3306/crm"),
        ("input.path", "https://app:2024/Pw9x@files.example.com/c.csv"),
    ],
)
def test_other_urls_with_a_password_holding_a_slash_are_refused_unshown(key: str, url: str) -> None:
    """A MySQL URI or a file's URL, `user:2024/Pw9x@host`: refused as holding a password, none of it repeated."""
    raw: dict[str, Any] = {"flow": {"sid": FLOW_SID}, "mapping": {"to": "phone", "from": "+15005550006"}}
    raw["input"] = {"uri": url, "query": "select 1"} if key == "input.uri" else {"path": url}
    with pytest.raises(ConfigError, match=rf"^{key}: holds a password") as info:
        load_spec(raw=raw)
    assert "Pw9x" not in str(info.value) and "2024" not in str(info.value)
