"""Per-key limits, shared by replicas: requests and tokens per minute, and a spend budget.

    quotas = Quotas.for_registry(registry_url, settings)   # Redis when the registry is Redis,
    await quotas.admit(grant)        # before a chat request: 429 `RateLimited` when over
    await quotas.record(grant, tokens=120, cost=2.0)   # after it: tokens and spend
    await quotas.usage(key_id)       # what the admin API shows

Windows and counters come from the `limits` library (moving window for requests: a key never
gets more than `rpm` in any 60 s; fixed one-minute windows for tokens, counted after each
answer, so a minute's tokens may overrun by one request per replica). Spend and lifetime totals
are counters beside them (Redis hash `{prefix}usage:<key id>`, or in process).

A limit store that cannot be reached fails open (the request goes on, logged) or closed (503),
as `limits.on_store_failure` says; `/readyz` shows which, and whether the store answers.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

import redis.asyncio as aioredis
from limits import RateLimitItemPerMinute
from limits.aio.storage import MemoryStorage, RedisStorage, Storage
from limits.aio.strategies import FixedWindowRateLimiter, MovingWindowRateLimiter

from gateway.errors import GatewayError, ServiceUnavailable
from gateway.keys import Grant
from gateway.redis_client import redis_client
from registry.redis import DEFAULT_PREFIX
from registry.urls import split_prefix

__all__ = ["BudgetExceeded", "Quotas", "RateLimited", "Totals"]

log = logging.getLogger("coe.quotas")
OnFailure = Literal["open", "closed"]


class RateLimited(GatewayError):
    status, type, code = 429, "rate_limit_error", "rate_limit_exceeded"

    def __init__(self, message: str, retry_after_s: float) -> None:
        super().__init__(message)
        self.retry_after_s = max(1, math.ceil(retry_after_s))


class BudgetExceeded(GatewayError):
    status, type, code = 429, "insufficient_quota", "budget_exceeded"


class Totals(Protocol):
    """Lifetime counters per key: requests, tokens, spend."""

    async def add(self, key_id: str, requests: int, tokens: int, cost: float) -> None: ...

    async def get(self, key_id: str) -> dict[str, float]: ...


@dataclass
class MemoryTotals:
    counts: dict[str, dict[str, float]] = field(default_factory=dict)

    async def add(self, key_id: str, requests: int, tokens: int, cost: float) -> None:
        row = self.counts.setdefault(key_id, {"requests": 0, "tokens": 0, "spend": 0.0})
        row["requests"] += requests
        row["tokens"] += tokens
        row["spend"] += cost

    async def get(self, key_id: str) -> dict[str, float]:
        return dict(self.counts.get(key_id, {"requests": 0, "tokens": 0, "spend": 0.0}))


class RedisTotals:
    def __init__(self, client: aioredis.Redis, prefix: str) -> None:
        self._client = client
        self._prefix = prefix

    async def add(self, key_id: str, requests: int, tokens: int, cost: float) -> None:
        name = f"{self._prefix}usage:{key_id}"
        async with self._client.pipeline(transaction=True) as pipe:
            pipe.hincrby(name, "requests", requests)
            pipe.hincrby(name, "tokens", tokens)
            pipe.hincrbyfloat(name, "spend", cost)
            await pipe.execute()

    async def get(self, key_id: str) -> dict[str, float]:
        raw = await self._client.hgetall(f"{self._prefix}usage:{key_id}")
        return {
            "requests": int(raw.get("requests", 0)),
            "tokens": int(raw.get("tokens", 0)),
            "spend": float(raw.get("spend", 0.0)),
        }


class Quotas:
    """The limits of every key (module docstring)."""

    def __init__(
        self, storage: Storage, totals: Totals, on_failure: OnFailure, shared: bool
    ) -> None:
        self._storage = storage
        self._requests = MovingWindowRateLimiter(storage)
        self._tokens = FixedWindowRateLimiter(storage)
        self._totals = totals
        self.on_failure = on_failure
        self.shared = shared
        self._client: aioredis.Redis | None = None

    @classmethod
    def for_registry(cls, registry_url: str, on_failure: OnFailure) -> Quotas:
        """Shared through Redis when the registry lives there, else kept in this process."""
        if registry_url.partition(":")[0].lower() not in ("redis", "rediss"):
            return cls(MemoryStorage(), MemoryTotals(), on_failure, shared=False)
        url, prefix = split_prefix(registry_url)
        prefix = DEFAULT_PREFIX if prefix is None else prefix
        client = redis_client(url)
        storage = RedisStorage(  # on the client's pool: closing the client closes both
            "async+" + url,
            implementation="redispy",
            key_prefix=f"{prefix}limits",
            wrap_exceptions=True,
            connection_pool=client.connection_pool,  # type: ignore[arg-type]  # documented option
        )
        quotas = cls(storage, RedisTotals(client, prefix), on_failure, shared=True)
        quotas._client = client
        return quotas

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()

    async def admit(self, grant: Grant) -> None:
        """Count one request against `grant`'s key; `RateLimited` / `BudgetExceeded` when over."""
        if grant.rpm is None and grant.tpm is None and grant.budget is None:
            return
        try:
            await self._check(grant)
        except GatewayError:
            raise
        except Exception as exc:
            self._store_failed(exc)

    async def _check(self, grant: Grant) -> None:
        if grant.budget is not None:
            spent = (await self._totals.get(grant.key_id))["spend"]
            if spent >= grant.budget:
                raise BudgetExceeded(
                    f"API key {grant.key!r} spent its budget ({spent:g} of {grant.budget:g})"
                )
        if grant.tpm is not None:
            item = RateLimitItemPerMinute(grant.tpm)
            if not await self._tokens.test(item, "tpm", grant.key_id):
                reset = (await self._tokens.get_window_stats(item, "tpm", grant.key_id)).reset_time
                raise RateLimited(
                    f"API key {grant.key!r} used its {grant.tpm} tokens per minute",
                    reset - time.time(),
                )
        if grant.rpm is not None:
            item = RateLimitItemPerMinute(grant.rpm)
            if not await self._requests.hit(item, "rpm", grant.key_id):
                reset = (
                    await self._requests.get_window_stats(item, "rpm", grant.key_id)
                ).reset_time
                raise RateLimited(
                    f"API key {grant.key!r} made its {grant.rpm} requests per minute",
                    reset - time.time(),
                )

    async def record(self, grant: Grant, tokens: int, cost: float) -> None:
        """After an answer: its tokens in this minute's window, the totals and the spend."""
        try:
            if grant.tpm is not None and tokens > 0:
                await self._tokens.hit(
                    RateLimitItemPerMinute(grant.tpm), "tpm", grant.key_id, cost=tokens
                )
            await self._totals.add(grant.key_id, 1, tokens, cost)
        except Exception as exc:  # never fails an answer already given
            log.warning("could not record usage of key %s: %s", grant.key, type(exc).__name__)

    async def usage(self, grant: Grant) -> dict[str, Any]:
        totals = await self._totals.get(grant.key_id)
        window: dict[str, Any] = {}
        for name, limit, limiter in (
            ("rpm", grant.rpm, self._requests),
            ("tpm", grant.tpm, self._tokens),
        ):
            if limit is not None:
                stats = await limiter.get_window_stats(
                    RateLimitItemPerMinute(limit), name, grant.key_id
                )
                window[name] = {"limit": limit, "remaining": stats.remaining}
        budget = {"budget": grant.budget, "spent": totals["spend"]}
        return {"totals": totals, "minute": window, "budget": budget}

    async def reachable(self) -> bool:
        try:
            return bool(await self._storage.check())
        except Exception:
            return False

    def _store_failed(self, exc: Exception) -> None:
        if self.on_failure == "closed":
            log.warning("limit store unreachable (%s): refusing (fail closed)", type(exc).__name__)
            raise ServiceUnavailable("the limit store is unreachable; try again") from exc
        log.warning("limit store unreachable (%s): admitting (fail open)", type(exc).__name__)
