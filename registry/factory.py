"""Build a registry from its URL (`COE_REGISTRY_URL`), and redact URLs for logs.

Accepted URLs::

    memory://                         MemoryRegistry (nothing survives the process)
    sqlite:///abs/path/registry.db    SqliteRegistry, absolute path
    sqlite:relative/registry.db       SqliteRegistry, relative to the working directory
    redis://[:password@]host:port/db  RedisRegistry; also rediss:// (TLS);
                                      ?prefix=coe: picks the key prefix (default "coe:")
"""

from __future__ import annotations

from urllib.parse import parse_qsl, unquote, urlencode, urlsplit, urlunsplit

from registry.base import Registry

__all__ = ["ACCEPTED_URLS", "redact_url", "registry_from_url"]

ACCEPTED_URLS = (
    "memory://",
    "sqlite:///abs/path.db",
    "sqlite:relative.db",
    "redis://",
    "rediss://",
)


def registry_from_url(url: str) -> Registry:
    """The registry `url` names, not yet opened; `ValueError` for a URL this cannot serve."""
    scheme, _, rest = url.partition(":")
    scheme = scheme.lower()
    if scheme == "memory" and rest in ("", "//"):
        from registry.memory import MemoryRegistry

        return MemoryRegistry()
    if scheme == "sqlite":
        from registry.sqlite import SqliteRegistry

        return SqliteRegistry(_sqlite_path(url, rest))
    if scheme in ("redis", "rediss"):
        from registry.redis import DEFAULT_PREFIX, RedisRegistry

        client_url, prefix = _split_prefix(url)
        return RedisRegistry(client_url, prefix=DEFAULT_PREFIX if prefix is None else prefix)
    raise ValueError(
        f"unsupported registry URL {redact_url(url)!r}; accepted: {', '.join(ACCEPTED_URLS)}"
    )


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


def _sqlite_path(url: str, rest: str) -> str:
    if rest.startswith("//"):
        # sqlite:///abs/path.db -> empty host, absolute path
        host, slash, path = rest[2:].partition("/")
        if host or not slash or not path:
            raise ValueError(
                f"bad sqlite URL {url!r}: use sqlite:///abs/path.db or sqlite:relative.db"
            )
        return unquote("/" + path)
    if not rest:
        raise ValueError(f"bad sqlite URL {url!r}: no path")
    return unquote(rest)


def _split_prefix(url: str) -> tuple[str, str | None]:
    """Take our `prefix=` out of a Redis URL's query (the client refuses unknown options)."""
    parts = urlsplit(url)
    pairs = parse_qsl(parts.query, keep_blank_values=True)
    prefixes = [value for key, value in pairs if key == "prefix"]
    if not prefixes:
        return url, None
    others = [(key, value) for key, value in pairs if key != "prefix"]
    return urlunsplit(parts._replace(query=urlencode(others))), prefixes[-1]
