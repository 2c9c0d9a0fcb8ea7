"""Global concurrency caps: how many requests an expert has in flight over every replica.

    slots = slot_store(registry_url)          # Redis when the registry is Redis, else in process
    token = await slots.acquire("coder", cap=8, ttl_s=90)   # None: the cap is reached
    ...                                        # call the expert
    await slots.release("coder", token)

In Redis each expert has a sorted set ``{prefix}slots:<expert>`` of lease tokens scored by their
expiry; one Lua script drops expired leases, counts, and adds a lease only under the cap, so two
replicas can never both take the last slot. A lease outlives a replica that died holding it by
at most `ttl_s` (the expert's timeout plus a margin). A store that fails admits the request
(logged): the per-process `max_concurrency` still bounds it.
"""

from __future__ import annotations

import logging
import time
import uuid
from typing import Protocol

import redis.asyncio as aioredis

from gateway.redis_client import redis_client
from registry.redis import DEFAULT_PREFIX
from registry.urls import split_prefix

__all__ = ["MemorySlots", "RedisSlots", "Slots", "slot_store"]

log = logging.getLogger("coe.slots")
ADMITTED_WITHOUT_STORE = "unlimited"

_ACQUIRE = """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[2]) then return 0 end
redis.call('ZADD', KEYS[1], ARGV[3], ARGV[4])
redis.call('PEXPIRE', KEYS[1], ARGV[5])
return 1
"""


class Slots(Protocol):
    async def acquire(self, name: str, cap: int, ttl_s: float) -> str | None: ...

    async def release(self, name: str, token: str) -> None: ...

    async def aclose(self) -> None: ...


class MemorySlots:
    """One process: a counter per expert."""

    def __init__(self) -> None:
        self._held: dict[str, int] = {}

    async def acquire(self, name: str, cap: int, ttl_s: float) -> str | None:
        if self._held.get(name, 0) >= cap:
            return None
        self._held[name] = self._held.get(name, 0) + 1
        return uuid.uuid4().hex

    async def release(self, name: str, token: str) -> None:
        self._held[name] = max(0, self._held.get(name, 0) - 1)

    async def aclose(self) -> None:
        return None


class RedisSlots:
    def __init__(self, url: str, prefix: str) -> None:
        self._client: aioredis.Redis = redis_client(url)
        self._prefix = prefix
        self._acquire = self._client.register_script(_ACQUIRE)

    async def acquire(self, name: str, cap: int, ttl_s: float) -> str | None:
        token = uuid.uuid4().hex
        now = time.time()
        args: list[str | int | float] = [now, cap, now + ttl_s, token, int(ttl_s * 1000) + 1000]
        try:
            taken = await self._acquire(keys=[self._key(name)], args=args)
        except Exception as exc:
            log.warning("slot store unreachable (%s): %s admitted", type(exc).__name__, name)
            return ADMITTED_WITHOUT_STORE
        return token if taken == 1 else None

    async def release(self, name: str, token: str) -> None:
        if token == ADMITTED_WITHOUT_STORE:
            return
        try:
            await self._client.zrem(self._key(name), token)
        except Exception as exc:  # the lease expires by itself
            log.warning("slot store unreachable (%s): lease of %s left", type(exc).__name__, name)

    def _key(self, name: str) -> str:
        return f"{self._prefix}slots:{name}"

    async def aclose(self) -> None:
        await self._client.aclose()


def slot_store(registry_url: str) -> Slots:
    if registry_url.partition(":")[0].lower() in ("redis", "rediss"):
        url, prefix = split_prefix(registry_url)
        return RedisSlots(url, DEFAULT_PREFIX if prefix is None else prefix)
    return MemorySlots()
