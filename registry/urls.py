"""Registry URLs: redaction for logs, and the parts our URLs carry beyond the client's own.

`redact_url` hides a password (in the netloc or a `password=` query) before a URL reaches a log,
an error message or `repr()`. `split_prefix` takes our `prefix=` option out of a Redis URL.
"""

from __future__ import annotations

from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

__all__ = ["redact_url", "split_prefix"]


def redact_url(url: str) -> str:
    """`url` with its password (in the netloc or a `password=` query) replaced by `***`."""
    try:
        parts = urlsplit(url)
        netloc = parts.netloc
        userinfo, at, host = netloc.rpartition("@")
        if at and ":" in userinfo:
            netloc = f"{userinfo.partition(':')[0]}:***@{host}"
        query = parts.query
        pairs = parse_qsl(query, keep_blank_values=True)
        if any(key == "password" for key, _ in pairs):
            query = urlencode([(k, "***" if k == "password" else v) for k, v in pairs], safe="*:")
        if (netloc, query) == (parts.netloc, parts.query):
            return url  # urlunsplit does not round-trip every URL ("memory://" -> "memory:")
        return urlunsplit(parts._replace(netloc=netloc, query=query))
    except ValueError:
        return f"{url.partition(':')[0]}:<unparsable URL>"


def split_prefix(url: str) -> tuple[str, str | None]:
    """Take our `prefix=` out of a Redis URL's query (the client refuses unknown options)."""
    parts = urlsplit(url)
    pairs = parse_qsl(parts.query, keep_blank_values=True)
    prefixes = [value for key, value in pairs if key == "prefix"]
    if not prefixes:
        return url, None
    others = [(key, value) for key, value in pairs if key != "prefix"]
    return urlunsplit(parts._replace(query=urlencode(others))), prefixes[-1]
