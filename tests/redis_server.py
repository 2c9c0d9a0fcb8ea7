"""The machine's Redis (127.0.0.1:6379) for tests of the parts that live in Redis.

Tests that need it take the `redis_prefix` fixture (tests/conftest.py): a key prefix of their
own, deleted afterwards; without a Redis server they skip with the reason.
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import Iterator

import pytest
import redis

__all__ = ["REDIS_HOST", "REDIS_PORT", "REDIS_URL", "redis_prefix", "redis_unreachable"]

REDIS_HOST = "127.0.0.1"
REDIS_PORT = 6379
REDIS_URL = f"redis://{REDIS_HOST}:{REDIS_PORT}/0"


@functools.cache
def redis_unreachable() -> str | None:
    """The skip reason when no Redis answers at 127.0.0.1:6379, else None (asked once)."""
    client = redis.Redis(
        host=REDIS_HOST, port=REDIS_PORT, socket_connect_timeout=1, socket_timeout=1
    )
    try:
        client.ping()
    except redis.RedisError as exc:
        return f"Redis not reachable at {REDIS_HOST}:{REDIS_PORT}: {exc}"
    finally:
        client.close()
    return None


def redis_prefix() -> Iterator[str]:
    """A key prefix of this test's own; skips without Redis, deletes the keys afterwards."""
    if reason := redis_unreachable():
        pytest.skip(reason)
    prefix = f"coe-test:{uuid.uuid4().hex}:"
    yield prefix
    client = redis.Redis(host=REDIS_HOST, port=REDIS_PORT, socket_timeout=5)
    try:
        keys = list(client.scan_iter(match=f"{prefix}*"))
        if keys:
            client.delete(*keys)
    finally:
        client.close()
