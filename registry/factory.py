"""Build a registry from its URL (`COE_REGISTRY_URL`).

Accepted URLs::

    memory://                         MemoryRegistry (nothing survives the process)
    sqlite:///abs/path/registry.db    SqliteRegistry, absolute path
    sqlite:relative/registry.db       SqliteRegistry, relative to the working directory
    redis://[:password@]host:port/db  RedisRegistry; also rediss:// (TLS);
                                      ?prefix=coe: picks the key prefix (default "coe:")
"""

from __future__ import annotations

from urllib.parse import unquote

from registry.base import Registry
from registry.history import DEFAULT_HISTORY_MAX
from registry.memory import MemoryRegistry
from registry.redis import DEFAULT_PREFIX, RedisRegistry
from registry.sqlite import SqliteRegistry
from registry.urls import redact_url, split_prefix

__all__ = ["ACCEPTED_URLS", "registry_from_url"]

ACCEPTED_URLS = (
    "memory://",
    "sqlite:///abs/path.db",
    "sqlite:relative.db",
    "redis://",
    "rediss://",
)


def registry_from_url(url: str, *, history_max: int = DEFAULT_HISTORY_MAX) -> Registry:
    """The registry `url` names, not yet opened; `ValueError` for a URL this cannot serve.
    It keeps the last `history_max` changes (`registry.history`)."""
    scheme, _, rest = url.partition(":")
    scheme = scheme.lower()
    if scheme == "memory" and rest in ("", "//"):
        return MemoryRegistry(history_max=history_max)
    if scheme == "sqlite":
        return SqliteRegistry(_sqlite_path(url, rest), history_max=history_max)
    if scheme in ("redis", "rediss"):
        client_url, prefix = split_prefix(url)
        return RedisRegistry(
            client_url,
            prefix=DEFAULT_PREFIX if prefix is None else prefix,
            history_max=history_max,
        )
    raise ValueError(
        f"unsupported registry URL {redact_url(url)!r}; accepted: {', '.join(ACCEPTED_URLS)}"
    )


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
