"""PostgreSQL URL rules, the one home of them: input.uri, history.path and output.checkpoint all parse here.

One parser (:func:`split_url`) refuses what none of them may hold: a malformed URL, a password
(in the userinfo or the query, any case), a libpq ``key=value`` string; and takes ``schema=``
out (one identifier rule, one default). :func:`masked` is how every URL is shown.

Where a PostgreSQL checkpoint lives: ``postgresql://host/db?schema=name#<key>``, parsed, and connections to it.

The spec adds the fragment: the rendered ``[job] id``, plus ``.sandbox`` for a rehearsal,
so a rehearsal never shares state with the real job. ``schema`` (default ``batch_engage``)
holds many jobs. ``keepalives_idle``/``keepalives_interval``/``keepalives_count`` and
``lease`` in the query are ours (taken out before libpq sees the URL).
"""

from __future__ import annotations

import contextlib
import hashlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import SplitResult, parse_qsl, unquote, urlencode, urlsplit, urlunsplit

from .errors import ConfigError, UsageError

if TYPE_CHECKING:
    import psycopg

__all__ = [
    "DEFAULT_KEEPALIVES",
    "DEFAULT_LEASE",
    "DEFAULT_SCHEMA",
    "PgLocation",
    "PgTable",
    "check_database_uri",
    "database_of",
    "holds_password",
    "is_libpq_keywords",
    "is_postgres_url",
    "masked",
    "parse_location",
    "parse_table_url",
    "sandbox_twin",
    "schema_param",
    "server_of",
    "split_schema",
    "split_url",
    "where",
]

DEFAULT_SCHEMA = "batch_engage"
# A connection whose peer went silent is dropped within about 25 s (10 s idle, then 3 probes 5 s apart), and
# data left unacknowledged for 30 s ends the call (tcp_user_timeout); every statement and lock wait has a
# deadline on the server too. A stopped run abandons a call that hangs anyway (the run's storage deadline).
DEFAULT_KEEPALIVES = {"keepalives_idle": 10, "keepalives_interval": 5, "keepalives_count": 3}
TCP_USER_TIMEOUT_MS = 30_000
STATEMENT_TIMEOUT = "30s"
LOCK_TIMEOUT = "10s"
DEFAULT_LEASE = 60
_SCHEMES = ("postgresql", "postgres")
_DEFAULT_PORT = 5432
# One rule for every schema name: a plain identifier (quoted in SQL, so case is kept).
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")
# A results or outcomes table is named in lower case: one name for every tool that reads it unquoted.
_TABLE_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
# libpq's other spelling, "host=db dbname=crm user=app": refused, it is not a URL (and invites a password).
_KEYWORDS = re.compile(r"^\s*[A-Za-z_]+\s*=\s*\S*(\s+[A-Za-z_]+\s*=\s*\S*)*\s*$")
_LIBPQ_KEYS = ("host", "hostaddr", "dbname", "user", "port", "password", "service", "sslmode")
_SECRET_KEYS = ("password", "passfile", "sslpassword")
_SECRET_IN_TEXT = re.compile(r"(?i)((?:^|[?&;\s])(?:password|passfile|sslpassword)=)[^&#\s]*")
# A password may hold "/", "?", "#" or "@" unencoded: the user part runs to a word's LAST "@", as people write it.
_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)([^/@\s:]*):\S*@")


@dataclass(frozen=True)
class PgLocation:
    """A parsed location: libpq URL (no schema, no key), schema, job key, and the keepalive settings."""

    conninfo: str
    schema: str
    key: str
    keepalives: dict[str, int]
    lease: int = DEFAULT_LEASE

    def describe(self) -> str:
        """The location in words, for messages (never the password)."""
        parts = urlsplit(self.conninfo)
        host = parts.hostname or "localhost"
        port = f":{parts.port}" if parts.port else ""
        return f"postgresql://{host}{port}{parts.path} (schema {self.schema}, job {self.key})"

    @property
    def lock_id(self) -> int:
        """The advisory lock's 64-bit key: the same on every machine and every version."""
        digest = hashlib.blake2b(f"batch-engage/{self.schema}/{self.key}".encode(), digest_size=8).digest()
        return int.from_bytes(digest, "big", signed=True)

    def connect(self, *, autocommit: bool = True) -> psycopg.Connection[tuple[Any, ...]]:
        """A new connection with keepalives on both ends; an unreachable server is a one-line ``UsageError``."""
        import psycopg  # noqa: PLC0415 - only a PostgreSQL job pays for loading libpq

        try:
            conn = psycopg.connect(
                self.conninfo,
                autocommit=autocommit,
                keepalives=1,
                connect_timeout=10,
                application_name="batch-engage",
                keepalives_idle=self.keepalives["keepalives_idle"],
                keepalives_interval=self.keepalives["keepalives_interval"],
                keepalives_count=self.keepalives["keepalives_count"],
                tcp_user_timeout=TCP_USER_TIMEOUT_MS,
            )
        except (psycopg.OperationalError, psycopg.ProgrammingError) as exc:
            # ProgrammingError: libpq refused the URL itself (a parameter it does not know), before any connection.
            reason = " ".join(str(exc).split())
            raise UsageError(
                f"{self.describe()}: cannot connect ({reason}); check the server, and PGPASSWORD or ~/.pgpass"
            ) from None
        # Server-side keepalives: these let the *server* drop a session whose machine vanished.
        with conn.transaction() if not autocommit else contextlib.nullcontext():
            conn.execute(f"SET tcp_keepalives_idle = {self.keepalives['keepalives_idle']}")
            conn.execute(f"SET tcp_keepalives_interval = {self.keepalives['keepalives_interval']}")
            conn.execute(f"SET tcp_keepalives_count = {self.keepalives['keepalives_count']}")
            # psycopg prepares repeated statements; a generic plan made while the journal was empty
            # would not fit it once it has grown. Plan each statement for its own values instead.
            conn.execute("SET plan_cache_mode = force_custom_plan")
            conn.execute(f"SET statement_timeout = '{STATEMENT_TIMEOUT}'")
            conn.execute(f"SET lock_timeout = '{LOCK_TIMEOUT}'")
        return conn

    def sql(self, text: str) -> str:
        """``text`` with ``{s}`` replaced by the schema (validated as a plain identifier)."""
        return text.replace("{s}", f'"{self.schema}"')


def is_libpq_keywords(text: str) -> bool:
    """Whether ``text`` is a libpq key/value connection string (``host=db dbname=crm``), not a URL or a path."""
    if "://" in text or not _KEYWORDS.match(text):
        return False
    keys = {name.lower() for name in re.findall(r"([A-Za-z_]+)\s*=", text)}
    return bool(keys & set(_LIBPQ_KEYS))


def masked(text: str) -> str:
    """``text`` with any URL's password (userinfo, or ``password=`` in a query) shown as ``***``."""
    text = _USERINFO.sub(lambda m: f"{m[1]}{m[2]}:***@", text)
    return _SECRET_IN_TEXT.sub(lambda m: f"{m[1]}***", text)


def userinfo(url: str) -> str | None:
    """Everything between ``://`` and the URL's last ``@``: its user part as written, or None when it has none."""
    start, at = url.find("://"), url.rfind("@")
    return url[start + 3 : at] if 0 <= start < at else None


def holds_password(url: str) -> bool:
    """Whether a URL's user part holds a password: after a ``:``, or after a ``%3A`` that the driver decodes.

    The user part runs to the last ``@``: ``user:2024/pw@host`` is a password with a ``/`` in it, not host
    ``user`` on port 2024 (urlsplit's reading, which then showed the password as the host and the database).
    """
    user = userinfo(url)
    return user is not None and ":" in unquote(user)


def split_url(url: str, *, key: str) -> tuple[SplitResult, list[tuple[str, str]]]:
    """``url`` checked for ``key``: a well-formed ``postgresql://`` URL holding no password; its parts and query."""
    if is_libpq_keywords(url):
        raise ConfigError(
            key,
            "is a libpq key/value string; write it as postgresql://host:port/dbname, and keep the password "
            "in PGPASSWORD or ~/.pgpass (never in the job file)",
        )
    # Before parsing: urlsplit cuts a password at its "/", "?" or "#" and shows a piece of it as the port.
    _refuse_password(url, key)
    try:
        parts = urlsplit(url)
        _ = parts.port  # a port that is not a number raises here
        params = parse_qsl(parts.query, keep_blank_values=True)
    except ValueError as exc:
        raise ConfigError(key, f"is not a valid URL ({exc})") from None
    if parts.scheme.lower() not in _SCHEMES:
        # The scheme only: the rest may be a password (env:NAME naming the wrong variable, a typed postgresql//).
        shown = f"{parts.scheme!r}" if parts.scheme else "a value with no scheme"
        raise ConfigError(key, f"must start with postgresql:// (or be env:NAME), not {shown}")
    # Any key that names one: ";password" is no libpq parameter, yet it holds the password all the same.
    if any(secret in name.lower() for name, _ in params for secret in _SECRET_KEYS):
        raise ConfigError(key, _REFUSED_CREDENTIAL)
    return parts, params


_REFUSED_CREDENTIAL = "holds a password: remove it and set PGPASSWORD or put it in ~/.pgpass (never in the job file)"


def _refuse_password(url: str, key: str) -> None:
    """Refuse a URL whose user part (to its last ``@``) holds a password, never repeating any of it."""
    if not holds_password(url):
        return
    user = userinfo(url) or ""
    # A "/", "?" or "#" there is a password's or an "@" written bare further on: say both, show neither.
    unsure = any(c in user for c in "/?#")
    where = " (the user part runs to the last '@'; write an '@' meant elsewhere as %40)" if unsure else ""
    raise ConfigError(key, _REFUSED_CREDENTIAL.replace("password", "password" + where, 1))


def split_schema(url: str, *, key: str) -> tuple[str, str]:
    """The URL libpq is given (checked by :func:`split_url`, without ``schema=``), and the schema named (or default)."""
    parts, params = split_url(url, key=key)
    schema = next((v for k, v in params if k == "schema"), DEFAULT_SCHEMA)
    if not _IDENTIFIER.match(schema):
        raise ConfigError(key, f"schema {masked(schema)!r} is not a plain identifier (letters, digits, _)")
    rest = urlencode([(k, v) for k, v in params if k != "schema"])
    return urlunsplit(parts._replace(query=rest, fragment="")), schema


def parse_location(location: str, *, key: str = "output.checkpoint") -> PgLocation:
    """Split ``postgresql://…?schema=name#key`` into what connecting and keying need (checked as any URL here)."""
    parts, _ = split_url(location, key=key)
    conninfo, schema = split_schema(location, key=key)
    job_key = unquote(parts.fragment)
    if not job_key:
        raise UsageError("a PostgreSQL checkpoint needs a job key (the spec adds '#<job id>'); set [job] id")
    query = dict(parse_qsl(urlsplit(conninfo).query, keep_blank_values=True))
    keepalives = dict(DEFAULT_KEEPALIVES)
    for name in DEFAULT_KEEPALIVES:
        if name in query:
            value = query.pop(name)
            if not value.isdigit() or int(value) < 1:
                raise UsageError(f"{name}={value!r} in the checkpoint URL: use a whole number of seconds (or probes)")
            keepalives[name] = int(value)
    lease = query.pop("lease", str(DEFAULT_LEASE))
    if not lease.isdigit() or int(lease) < 1:
        raise UsageError(f"lease={lease!r} in the checkpoint URL: use a whole number of seconds")
    conninfo = urlunsplit((parts.scheme, parts.netloc, parts.path, urlencode(query), ""))
    return PgLocation(conninfo=conninfo, schema=schema, key=job_key, keepalives=keepalives, lease=int(lease))


def where(location: str | PgLocation) -> PgLocation:
    """``location`` parsed, unless it already is."""
    return location if isinstance(location, PgLocation) else parse_location(location)


def check_database_uri(uri: str, *, key: str) -> None:
    """Refuse a URI that is not ``postgresql://``, is malformed, or holds a password (libpq reads PGPASSWORD)."""
    split_url(uri, key=key)


def server_of(uri: str) -> str:
    """``host:port`` of a PostgreSQL URI, for messages (libpq's defaults when the URI names none)."""
    parts = urlsplit(uri)
    try:
        port = parts.port or _DEFAULT_PORT
    except ValueError:
        port = _DEFAULT_PORT
    return f"{parts.hostname or 'localhost'}:{port}"


_SANDBOX_SUFFIX = "_sandbox"
_PUBLIC = "public"


def is_postgres_url(value: str | None) -> bool:
    """Whether ``value`` is a ``postgresql://`` (or ``postgres://``) URL."""
    return value is not None and urlsplit(value).scheme in _SCHEMES


def database_of(url: str) -> tuple[str, int, str]:
    """``(host, port, database)`` a PostgreSQL URL points at: two URLs with the same are the same database."""
    parts = urlsplit(url)
    host, port = server_of(url).rsplit(":", 1)
    return host, int(port), unquote(parts.path.lstrip("/")) or (parts.username or "")


@dataclass(frozen=True)
class PgTable:
    """A table named by URL, ``postgresql://host/db#schema.table``: libpq URL, schema and table (plain names)."""

    conninfo: str
    schema: str
    table: str

    def describe(self) -> str:
        """The table in words, for messages (never the password)."""
        host, port, database = database_of(self.conninfo)
        return f"postgresql://{host}:{port}/{database}#{self.schema}.{self.table}"

    @property
    def qualified(self) -> str:
        """``"schema"."table"`` for SQL (both validated as plain identifiers)."""
        return f'"{self.schema}"."{self.table}"'


def parse_table_url(url: str, *, key: str) -> PgTable:
    """Split ``postgresql://host/db#schema.table`` (schema ``public`` when the fragment names only the table)."""
    check_database_uri(url, key=key)
    parts = urlsplit(url)
    name = unquote(parts.fragment)
    schema, _, table = name.rpartition(".")
    schema = schema or _PUBLIC
    if not table or not _TABLE_NAME.match(schema) or not _TABLE_NAME.match(table + _SANDBOX_SUFFIX):
        raise ConfigError(
            key,
            f"name the table after '#', as schema.table in plain lower-case names "
            f"(letters, digits, '_'; at most {63 - len(_SANDBOX_SUFFIX)} characters), not {name!r}",
        )
    conninfo = urlunsplit((parts.scheme, parts.netloc, parts.path, parts.query, ""))
    return PgTable(conninfo=conninfo, schema=schema, table=table)


def sandbox_twin(target: str) -> str:
    """A rehearsal's output beside the real one: the table ``#schema.x_sandbox`` (idempotent), or ``x.sandbox.csv``.

    Here rather than with the job because the table's name follows this module's URL rules; a file's is one line.
    """
    if not is_postgres_url(target):
        path = Path(target)
        return str(path.with_name(f"{path.stem}.sandbox{path.suffix}"))
    base, _, fragment = target.partition("#")
    if fragment.endswith(_SANDBOX_SUFFIX):
        return target
    return f"{base}#{fragment}{_SANDBOX_SUFFIX}"


def schema_param(url: str) -> str:
    """The schema a checkpoint or history URL keeps its tables in (``?schema=``, else ``batch_engage``)."""
    return dict(parse_qsl(urlsplit(url).query)).get("schema", DEFAULT_SCHEMA)
