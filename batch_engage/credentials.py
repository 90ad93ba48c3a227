"""Credentials, named as Twilio's own tools name them: the one place that reads the environment."""

from __future__ import annotations

import configparser
import getpass
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from .errors import ConfigError, CredentialsError

__all__ = ["Credentials", "MySqlLogin", "credentials_from_env", "mysql_login", "resolve_env_reference"]

ACCOUNT_SID_PATTERN = re.compile(r"^AC[0-9a-fA-F]{32}$")
API_KEY_PATTERN = re.compile(r"^SK[0-9a-fA-F]{32}$")


@dataclass(frozen=True)
class Credentials:
    """HTTP Basic credentials for Twilio, plus the region and edge to reach it through."""

    username: str
    password: str = field(repr=False)
    region: str | None = None
    edge: str | None = None

    @property
    def identity(self) -> str:
        """Who these credentials are (the Account SID or the API key SID): never a secret, safe to log."""
        return self.username

    def __str__(self) -> str:
        return f"Credentials(username={self.username!r}, password=***)"


def _check_sid(name: str, value: str, pattern: re.Pattern[str], prefix: str) -> None:
    # A SID is not a secret, but a mistyped one could be a secret pasted in the wrong variable: never echo it.
    if not pattern.match(value.strip()):
        raise CredentialsError(
            f"{name} must be '{prefix}' followed by 32 hex digits ({len(value)} characters given); "
            f"copy it from the Twilio Console"
        )


def credentials_from_env(environ: Mapping[str, str] | None = None) -> Credentials:
    """Read ``TWILIO_API_KEY`` + ``TWILIO_API_SECRET`` (preferred) or ``TWILIO_ACCOUNT_SID`` + ``TWILIO_AUTH_TOKEN``.

    Also ``TWILIO_REGION`` and ``TWILIO_EDGE``. ``environ`` defaults to ``os.environ``;
    this is the only function in the library that reads it. A malformed API key SID
    or Account SID is refused here, before anything is sent.
    """
    env = os.environ if environ is None else environ
    region = env.get("TWILIO_REGION") or None
    edge = env.get("TWILIO_EDGE") or None
    key, secret = env.get("TWILIO_API_KEY"), env.get("TWILIO_API_SECRET")
    if key and secret:
        _check_sid("TWILIO_API_KEY", key, API_KEY_PATTERN, "SK")
        return Credentials(key.strip(), secret, region, edge)
    sid, token = env.get("TWILIO_ACCOUNT_SID"), env.get("TWILIO_AUTH_TOKEN")
    if sid and token:
        _check_sid("TWILIO_ACCOUNT_SID", sid, ACCOUNT_SID_PATTERN, "AC")
        return Credentials(sid.strip(), token, region, edge)
    if key or secret:
        missing = "TWILIO_API_SECRET" if key else "TWILIO_API_KEY"
        raise CredentialsError(f"{missing} is not set (TWILIO_API_KEY and TWILIO_API_SECRET go together)")
    raise CredentialsError(
        "no Twilio credentials: set TWILIO_API_KEY and TWILIO_API_SECRET "
        "(or TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN), or use --sandbox"
    )


def resolve_env_reference(value: str, key: str, environ: Mapping[str, str] | None = None) -> str:
    """``value`` itself, or the variable it names as ``env:NAME`` (a ConfigError naming ``key`` when unset)."""
    if not value.startswith("env:"):
        return value
    name = value.removeprefix("env:")
    env = os.environ if environ is None else environ
    resolved = env.get(name)
    if not name or not resolved:
        shown = name or "(none)"
        raise ConfigError(key, f"names the environment variable {shown!r}, which is not set: set it or give the value")
    return resolved


@dataclass(frozen=True)
class MySqlLogin:
    """Who to log in to MySQL/MariaDB as: the user, and the password found where the ``mysql`` client looks."""

    user: str
    password: str | None = field(repr=False)

    def __str__(self) -> str:
        return f"MySqlLogin(user={self.user!r}, password=***)"


def _my_cnf_client(path: Path) -> dict[str, str]:
    """The ``[client]`` group of an option file (empty when it is missing or unreadable)."""
    parser = configparser.ConfigParser(allow_no_value=True, strict=False, interpolation=None)
    try:
        parser.read(path, encoding="utf-8")
    except (configparser.Error, OSError, UnicodeDecodeError):
        return {}
    if not parser.has_section("client"):
        return {}
    # The client's option files may quote values; the quotes are not part of them.
    return {k: (v or "").strip().strip("'\"") for k, v in parser.items("client")}


def mysql_login(user: str | None, environ: Mapping[str, str] | None = None, home: Path | None = None) -> MySqlLogin:
    """The MySQL client's own conventions: ``MYSQL_PWD``, else ``password`` in ``~/.my.cnf``'s ``[client]``.

    The user is the URL's, else ``user`` in ``[client]``, else the login name (as ``mysql`` does).
    """
    env = os.environ if environ is None else environ
    client = _my_cnf_client((home or Path.home()) / ".my.cnf")
    name = user or client.get("user") or env.get("USER") or getpass.getuser()
    password = env.get("MYSQL_PWD")
    if password is None:
        password = client.get("password")
    return MySqlLogin(user=name, password=password)
