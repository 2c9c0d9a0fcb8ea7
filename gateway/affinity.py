"""Affinity: which expert a conversation, or a tool call's follow-up, should go back to.

    store = affinity_store(registry_url, max_entries)   # Redis when the registry is Redis,
    await store.open()                                  # else in this process
    await store.remember("tool:call_1", "coder", ttl_s=3600)
    await store.recall("tool:call_1")                   # "coder", until it expires
    await store.aclose()

Two kinds of keys, both expiring:

    tool:<tool_call_id>     the expert whose answer issued that tool call: the request carrying
                            its result goes back to it (another model may not know the call)
    conv:<conversation>     the expert that answered a conversation's first routed turn
                            (`AffinitySettings.conversations`): later turns stay on it

With several replicas the store must be shared, so a Redis registry keeps affinity in the same
Redis (keys `{prefix}affinity:...`, SET with EX). The embedded default keeps it in process.
A store that fails is never fatal: `recall` answers None and `remember` does nothing, logged.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from experts.chat import ChatRequest
from gateway.settings import AffinitySettings
from registry.redis import DEFAULT_PREFIX
from registry.urls import redact_url, split_prefix

__all__ = [
    "CONVERSATION",
    "TOOL",
    "Affinity",
    "AffinityStore",
    "MemoryAffinity",
    "RedisAffinity",
    "affinity_store",
    "conversation_hash",
    "tool_call_ids",
    "tool_result_ids",
]

log = logging.getLogger("coe.affinity")


class AffinityStore(Protocol):
    """key -> expert name, each entry expiring after its `ttl_s`."""

    async def open(self) -> None: ...

    async def recall(self, key: str) -> str | None:
        """The expert remembered for `key`, if any and not expired."""

    async def remember(self, key: str, expert: str, *, ttl_s: float) -> None:
        """Remember (or refresh) `key` -> `expert` for `ttl_s` seconds."""

    async def aclose(self) -> None: ...


class MemoryAffinity:
    """In this process: a dict with expiry times, the oldest entries dropped past `max_entries`."""

    def __init__(self, max_entries: int = 100_000) -> None:
        self._entries: OrderedDict[str, tuple[str, float]] = OrderedDict()
        self._max_entries = max_entries

    async def open(self) -> None:
        """Nothing to open."""

    async def recall(self, key: str) -> str | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        expert, expires = entry
        if expires <= time.monotonic():
            del self._entries[key]
            return None
        return expert

    async def remember(self, key: str, expert: str, *, ttl_s: float) -> None:
        self._entries[key] = (expert, time.monotonic() + ttl_s)
        self._entries.move_to_end(key)
        while len(self._entries) > self._max_entries:
            self._entries.popitem(last=False)

    async def aclose(self) -> None:
        self._entries.clear()


class RedisAffinity:
    """In Redis, shared by every replica: `SET {prefix}affinity:<key> <expert> EX <ttl>`."""

    def __init__(self, url: str, prefix: str = DEFAULT_PREFIX, *, timeout_s: float = 0.5) -> None:
        self.url = url
        self._prefix = f"{prefix}affinity:"
        self._timeout_s = timeout_s
        self._client: aioredis.Redis | None = None

    def __repr__(self) -> str:
        return f"RedisAffinity({redact_url(self.url)!r})"

    async def open(self) -> None:
        self._client = aioredis.Redis.from_url(
            self.url,
            decode_responses=True,
            socket_connect_timeout=self._timeout_s,
            socket_timeout=self._timeout_s,
        )

    async def recall(self, key: str) -> str | None:
        if self._client is None:
            return None
        try:
            value = await self._client.get(self._prefix + key)
        except RedisError as exc:
            log.warning("affinity store %s unreachable: %s", redact_url(self.url), exc)
            return None
        return value if isinstance(value, str) else None

    async def remember(self, key: str, expert: str, *, ttl_s: float) -> None:
        if self._client is None:
            return
        try:
            await self._client.set(self._prefix + key, expert, ex=max(1, round(ttl_s)))
        except RedisError as exc:
            log.warning("affinity store %s unreachable: %s", redact_url(self.url), exc)

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None


def affinity_store(registry_url: str, max_entries: int) -> AffinityStore:
    """Shared through Redis when the registry lives there, else kept in this process."""
    if registry_url.partition(":")[0].lower() in ("redis", "rediss"):
        url, prefix = split_prefix(registry_url)
        return RedisAffinity(url, DEFAULT_PREFIX if prefix is None else prefix)
    return MemoryAffinity(max_entries)


TOOL = "tool-call"
CONVERSATION = "conversation"


class Affinity:
    """The affinity rules over a store (module docstring); `AffinitySettings` says which apply."""

    def __init__(self, store: AffinityStore, settings: AffinitySettings) -> None:
        self.store = store
        self.settings = settings

    async def preferred(self, request: ChatRequest) -> tuple[str, str] | None:
        """(expert, why) for a routed request that should go back to one expert, else None."""
        if self.settings.tool_calls:
            for call_id in tool_result_ids(request):
                expert = await self.store.recall(f"tool:{call_id}")
                if expert is not None:
                    return expert, TOOL
        key = self._conversation(request)
        if key is not None:
            expert = await self.store.recall(f"conv:{key}")
            if expert is not None:
                return expert, CONVERSATION
        return None

    async def record(self, request: ChatRequest, expert: str, tool_call_ids: Sequence[str]) -> None:
        """Remember who answered: its tool calls, and the conversation (when enabled)."""
        ttl = self.settings.ttl_s
        if self.settings.tool_calls:
            for call_id in tool_call_ids:
                await self.store.remember(f"tool:{call_id}", expert, ttl_s=ttl)
        key = self._conversation(request)
        if key is not None:
            await self.store.remember(f"conv:{key}", expert, ttl_s=ttl)

    def _conversation(self, request: ChatRequest) -> str | None:
        if request.conversation:
            return request.conversation
        if not self.settings.conversations:
            return None
        return conversation_hash(request)


def tool_result_ids(request: ChatRequest) -> list[str]:
    """The tool_call_ids of the tool results at the end of the conversation (the latest turn)."""
    ids: list[str] = []
    for message in reversed(request.messages):
        if message.role != "tool":
            break
        call_id = message.fields.get("tool_call_id")
        if isinstance(call_id, str) and call_id:
            ids.append(call_id)
    return ids


def conversation_hash(request: ChatRequest) -> str:
    """A conversation's identity without a header: its `user` field and its first turns (the
    system / developer messages and the first user message), which later turns repeat."""
    digest = hashlib.sha256()
    user = request.extra.get("user")
    digest.update(str(user or "").encode() + b"\0")
    for message in request.messages:
        digest.update(message.role.encode() + b"\0" + message.text().encode() + b"\0")
        if message.role == "user":
            break
    return digest.hexdigest()[:32]


def tool_call_ids(calls: Sequence[Mapping[str, Any]]) -> list[str]:
    """The ids of tool calls (whole, or the streamed fragments that carry one)."""
    return [str(c["id"]) for c in calls if isinstance(c.get("id"), str) and c["id"]]
