"""Credentials from the environment: malformed SIDs are refused by name, and no secret is ever echoed."""

from __future__ import annotations

from pathlib import Path

import pytest

from batch_engage.credentials import Credentials, credentials_from_env
from batch_engage.errors import CredentialsError

ACCOUNT = "AC" + "0123456789abcdef" * 2
KEY = "SK" + "fedcba9876543210" * 2
SECRET = "s3cr3t-Value-never-shown"


class TestMalformedSids:
    @pytest.mark.parametrize(
        "value",
        [SECRET, "AC123", "SK" + "0" * 32, ACCOUNT + "0", "AC" + "g" * 32, "ac" + "0" * 32],
        ids=["a-secret", "short", "key-in-account", "long", "not-hex", "lower-prefix"],
    )
    def test_a_malformed_account_sid_is_refused_without_echoing_it(self, value: str) -> None:
        """TWILIO_ACCOUNT_SID must be AC + 32 hex digits; the error names the variable, never the value."""
        with pytest.raises(CredentialsError, match="TWILIO_ACCOUNT_SID must be 'AC'") as info:
            credentials_from_env({"TWILIO_ACCOUNT_SID": value, "TWILIO_AUTH_TOKEN": SECRET})
        assert value not in str(info.value) and SECRET not in str(info.value)

    @pytest.mark.parametrize("value", [SECRET, "SK1", ACCOUNT, KEY + "f"], ids=["a-secret", "short", "account", "long"])
    def test_a_malformed_api_key_is_refused_without_echoing_it(self, value: str) -> None:
        """TWILIO_API_KEY must be SK + 32 hex digits; the error names the variable, never the value."""
        with pytest.raises(CredentialsError, match="TWILIO_API_KEY must be 'SK'") as info:
            credentials_from_env({"TWILIO_API_KEY": value, "TWILIO_API_SECRET": SECRET})
        assert value not in str(info.value) and SECRET not in str(info.value)
        assert "\n" not in str(info.value)

    def test_surrounding_whitespace_is_forgiven(self) -> None:
        """A SID pasted with a trailing newline still works, trimmed."""
        creds = credentials_from_env({"TWILIO_ACCOUNT_SID": ACCOUNT + "\n", "TWILIO_AUTH_TOKEN": SECRET})
        assert creds.username == ACCOUNT


class TestWellFormed:
    def test_the_api_key_is_preferred_and_is_the_identity(self) -> None:
        """With both pairs set the API key is used; identity is the key SID, never the secret."""
        env = {
            "TWILIO_API_KEY": KEY,
            "TWILIO_API_SECRET": SECRET,
            "TWILIO_ACCOUNT_SID": ACCOUNT,
            "TWILIO_AUTH_TOKEN": "t",
        }
        creds = credentials_from_env(env)
        assert (creds.identity, creds.password) == (KEY, SECRET)

    def test_the_account_sid_is_the_identity_of_an_auth_token(self) -> None:
        """Account SID + auth token: identity is the Account SID."""
        creds = credentials_from_env({"TWILIO_ACCOUNT_SID": ACCOUNT, "TWILIO_AUTH_TOKEN": SECRET})
        assert creds.identity == ACCOUNT
        assert SECRET not in repr(creds) and SECRET not in str(creds)

    def test_direct_construction_is_not_checked(self) -> None:
        """Only the environment is checked: code building Credentials itself (the sandbox, tests) is trusted."""
        assert Credentials("user", "pass").identity == "user"


class TestMySqlLogin:
    def test_mysql_pwd_wins_over_my_cnf_and_quotes_are_not_part_of_the_password(self, tmp_path: Path) -> None:
        """The mysql client's order: MYSQL_PWD, then [client] password in ~/.my.cnf (quoted or not)."""
        from batch_engage.credentials import mysql_login

        (tmp_path / ".my.cnf").write_text('[client]\nuser = reader\npassword = "p@ss #1"\n')
        assert mysql_login(None, {}, tmp_path).password == "p@ss #1"
        assert mysql_login(None, {}, tmp_path).user == "reader"
        assert mysql_login("crm", {"MYSQL_PWD": "env"}, tmp_path).password == "env"
        assert mysql_login("crm", {"MYSQL_PWD": "env"}, tmp_path).user == "crm"
        assert "env" not in str(mysql_login("crm", {"MYSQL_PWD": "env"}, tmp_path))

    def test_no_file_and_no_variable_is_no_password(self, tmp_path: Path) -> None:
        """Nothing found: log in without a password (root on a developer's MariaDB), as the client does."""
        from batch_engage.credentials import mysql_login

        assert mysql_login("root", {}, tmp_path).password is None
