"""One way to open the gateway's Redis clients (client keys, limits, breakers).

A connection the server dropped (Redis restarted, a failover) is retried twice with a short
backoff before the command fails, so one restart costs no request an error.
"""

from __future__ import annotations

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError, TimeoutError

__all__ = ["redis_client"]


def redis_client(url: str, *, timeout_s: float = 2.0) -> aioredis.Redis:
    return aioredis.Redis.from_url(
        url,
        decode_responses=True,
        socket_timeout=timeout_s,
        socket_connect_timeout=timeout_s,
        retry=Retry(ExponentialBackoff(cap=0.5, base=0.05), retries=2),
        retry_on_error=[ConnectionError, TimeoutError],
    )
