"""A job's addresses checked before anything else is said: no password in any URL, no database URL mistyped into a
file's name, the Flow's host, region and edge in the form Twilio's hosts use. Nothing here is ever repeated in a
message when it may hold a secret."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from ..errors import ConfigError
from ..postgres import check_database_uri, holds_password, parse_location, split_schema, userinfo
from ..twilio import check_base_url, edge_name, processing_region

__all__ = ["check_addresses"]

_POSTGRES = ("postgresql://", "postgres://")
_REFUSED_CREDENTIAL = "holds a password: remove it; the README's table of inputs says where each one is read from"


def _check_input_uri(uri: str, key: str = "input.uri") -> None:
    """PostgreSQL's URL rules for a PostgreSQL input.uri; for any other URL under ``key``, no password."""
    if uri.partition("://")[0].lower() in ("postgresql", "postgres") and key == "input.uri":
        check_database_uri(uri, key=key)
        return
    # Asked of the text before urlsplit, which cuts a password at its "/", "?" or "#" (mysql://u:a/b@db).
    if holds_password(uri):
        user = userinfo(uri) or ""
        # Past a "/", "?" or "#" it may be an "@" of the path (contacts@2024.csv): both said, neither shown.
        unsure = (
            " (the user part runs to the last '@'; write an '@' meant elsewhere as %40)"
            if set("/?#") & set(user)
            else ""
        )
        raise ConfigError(key, _REFUSED_CREDENTIAL.replace("password", "password" + unsure, 1))
    try:
        parts = urlsplit(uri)
    except ValueError as exc:
        raise ConfigError(key, f"is not a valid URL ({exc})") from None
    if any(k.lower() == "password" for k, _ in parse_qsl(parts.query)):
        raise ConfigError(key, _REFUSED_CREDENTIAL)
    if key != "input.uri" and parts.scheme in ("http", "https") and parts.username is not None:
        # Over http(s) a user name alone is a token too (https://TOKEN@host/), sent with every request as Basic auth;
        # abfs://container@account names a container.
        raise ConfigError(
            key,
            "holds a user name (user@host): remove it; the README's table of inputs says where each one is read from",
        )


# A database's URL that lost its "://" (postgresql:/…, postgresql//…) or its spelling (postgressql://…), or a
# value that starts with a user and password: taken for a file's name, it would be created on disk and shown
# everywhere. Asked of the value as written (a folder of the job's own, "acme:ops@eu", is no part of it).
_MISTYPED_URL = re.compile(r"(?i)^\s*(?:(?:postgres|mysql|mariadb)[a-z]*(?::|/+[^/\s]*@)|[^\s/\\@:]+:[^\s/\\@]*@)")


def _check_not_a_mistyped_url(name: object, key: str, folders: tuple[Path, ...]) -> None:
    """Refuse a store's value that is a database URL mistyped, never repeating it (it may hold a password)."""
    if not isinstance(name, str) or name.startswith((*_POSTGRES, "env:")):
        return
    written = next((name[len(str(f)) + 1 :] for f in folders if name.startswith(f"{f}{os.sep}")), name)
    if not _MISTYPED_URL.search(written):
        return
    # Never repeated: the value may hold a password.
    raise ConfigError(
        key,
        "looks like a database URL mistyped (or holds user:password@), not a file name: write postgresql://host/db, "
        "and keep the password in PGPASSWORD or ~/.pgpass",
    )


def check_addresses(sections: Mapping[str, dict[str, Any]], base: Path | None = None) -> None:
    """Every address the job names, held to its own rules before anything else is said (a password in one first).

    The input's URL, a PostgreSQL checkpoint's and history's, the Flow's base URL; the Flow's region and edge
    are put in the form Twilio's hosts use.
    """
    uri = sections["input"].get("uri")
    if isinstance(uri, str) and not uri.startswith("env:"):
        _check_input_uri(uri)
    # A file named by a URL is held to input.uri's rule: a presigned URL's signature may stay (it is the
    # grant to that one file, and is never shown), a password may not.
    files = [("input.path", sections["input"].get("path"))]
    files += [("suppress.files", name) for name in sections["suppress"].get("files", ())]
    for key, name in files:
        if isinstance(name, str) and "://" in name:
            _check_input_uri(name, key)
    stores = [(f"output.{k}", sections["output"].get(k)) for k in ("checkpoint", "results", "outcomes")]
    # Relative values arrive joined to the job's folder (or, given as flags, to the current one).
    folders = (*([base.resolve()] if base is not None else []), Path.cwd())
    for key, name in [*stores, ("history.path", sections["history"].get("path"))]:
        _check_not_a_mistyped_url(name, key, folders)
    checkpoint = sections["output"].get("checkpoint")
    if isinstance(checkpoint, str) and checkpoint.startswith(_POSTGRES):
        parse_location(checkpoint if "#" in checkpoint else checkpoint + "#key", key="output.checkpoint")
    for key in ("results", "outcomes"):
        table = sections["output"].get(key)
        if isinstance(table, str) and table.startswith(_POSTGRES):
            check_database_uri(table, key=f"output.{key}")
    if str(sections["history"].get("path", "")).startswith(_POSTGRES):
        split_schema(sections["history"]["path"], key="history.path")
    flow = sections["flow"]
    if "base_url" in flow:
        check_base_url(flow["base_url"], key="flow.base_url")
    if "region" in flow:
        flow["region"] = processing_region(flow["region"], key="flow.region")
    if "edge" in flow:
        flow["edge"] = edge_name(flow["edge"], key="flow.edge")
