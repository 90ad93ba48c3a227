"""A contacts file named by a URL: its bytes fetched whole, then read exactly as a local file's are.

Polars can read a URL itself, but then its own inference types the columns and none of the local
reader's checks run (encoding, ``sep=`` line, duplicate header, ragged rows, scientific notation): the
same file sent other people's numbers from a URL than from disk. So only the bytes come from here.

A URL is shown without its user, password and query (``https://host/c.csv?…``): a presigned URL's
signature is as good as a password for as long as it lasts, and messages end up in logs and tickets.
"""

from __future__ import annotations

import re
from urllib.parse import unquote, urlsplit

from ..disk import file_url_path
from ..errors import InputFileError

__all__ = ["fetch", "file_url_path", "is_remote", "masked_text", "shown_url"]

# A read stalled this long is a dead server; a slow but moving download is not cut off.
_STALLED = 60.0
_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^/@\s]*@")
_QUERY = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://[^\s?#'\"]*)[?#][^\s'\"]*")


def is_remote(name: str) -> bool:
    """Whether ``input.path`` is a URL (``https://``, ``s3://``, ``file://`` …) rather than a path or ``-``."""
    return "://" in name


def shown_url(name: str) -> str:
    """``name`` as any message may show it: no user, password, query or fragment (``https://host/c.csv?…``)."""
    try:
        parts = urlsplit(name)
    except ValueError:
        return _QUERY.sub(r"\1?…", _USERINFO.sub(r"\1", name))
    host = parts.netloc.rpartition("@")[2]
    hidden = "?…" if parts.query or parts.fragment else ""
    return f"{parts.scheme}://{host}{parts.path}{hidden}"


def masked_text(text: str, name: str) -> str:
    """``text`` (an error about ``name``) with ``name``'s user, password and query taken out, wherever they are."""
    text = text.replace(name, shown_url(name))
    try:
        parts = urlsplit(name)
        secrets = [parts.password, parts.query, parts.fragment]
    except ValueError:
        secrets = []
    # Libraries quote a URL back decoded, or only its query: each secret part goes, in either spelling.
    for secret in sorted({s for p in secrets if p for s in (p, unquote(p))}, key=len, reverse=True):
        text = text.replace(secret, "…")
    return _QUERY.sub(r"\1?…", _USERINFO.sub(r"\1", text))


def fetch(name: str, shown: str) -> bytes:
    """The bytes at the URL ``name``: ``http(s)://`` by one GET, object stores through pyarrow's filesystems.

    Any failure is one :class:`InputFileError` line on ``shown``: the first line of the cause, masked.
    """
    # Imported here: a dry run of a local file loads no HTTP client, and pyarrow's filesystems take a third of
    # a second to import.
    import httpx  # noqa: PLC0415

    try:
        if urlsplit(name).scheme.lower() in ("http", "https"):
            return _get(name, shown)
        import pyarrow.fs  # noqa: PLC0415

        filesystem, path = pyarrow.fs.FileSystem.from_uri(name)
        with filesystem.open_input_stream(path) as stream:
            return bytes(stream.read())
    except (httpx.HTTPError, httpx.InvalidURL, OSError, ValueError, ImportError, NotImplementedError) as exc:
        raise InputFileError(shown, f"cannot be read: {_first_line(exc, name)}") from None


def _get(name: str, shown: str) -> bytes:
    import httpx  # noqa: PLC0415

    # trust_env off, as for Twilio: no .netrc or proxy variable changes where the contacts come from.
    with httpx.Client(follow_redirects=True, timeout=_STALLED, trust_env=False) as client:
        response = client.get(name)
    if response.status_code >= 400:
        raise InputFileError(shown, f"cannot be read: HTTP {response.status_code} {response.reason_phrase}")
    return response.content


def _first_line(exc: BaseException, name: str) -> str:
    text = str(exc).strip()
    first = text.splitlines()[0].strip() if text else type(exc).__name__
    return masked_text(first, name)
