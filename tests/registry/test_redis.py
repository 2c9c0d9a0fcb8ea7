"""What only the Redis backend promises: prefixes, pub/sub wake-ups, redacted errors."""

from __future__ import annotations

import asyncio
import logging

import pytest
import redis

from registry import RedisRegistry, RegistryError, redact_url, registry_from_url
from tests.redis_server import REDIS_URL
from tests.registry.conftest import make_spec


@pytest.mark.parametrize(
    ("url", "redacted"),
    [
        ("redis://:s3cret@cache:6379/0", "redis://:***@cache:6379/0"),
        ("rediss://coe:s3cret@cache:6380/2", "rediss://coe:***@cache:6380/2"),
        ("redis://cache:6379/0?password=s3cret&db=1", "redis://cache:6379/0?password=***&db=1"),
        ("redis://coe@cache:6379/0", "redis://coe@cache:6379/0"),
        ("sqlite:///var/lib/coe/registry.db", "sqlite:///var/lib/coe/registry.db"),
        ("memory://", "memory://"),
    ],
)
def test_redact_url_hides_only_the_password(url: str, redacted: str) -> None:
    assert redact_url(url) == redacted


async def test_an_unreachable_server_raises_registry_error_without_the_password() -> None:
    registry = RedisRegistry("redis://:s3cret@127.0.0.1:1/0", connect_timeout_s=2.0)

    with pytest.raises(RegistryError, match="not reachable") as caught:
        await registry.open()

    assert "s3cret" not in str(caught.value)
    assert "***" in str(caught.value)
    assert "s3cret" not in repr(registry)


def test_the_url_may_carry_the_key_prefix() -> None:
    registry = registry_from_url("redis://127.0.0.1:6379/3?prefix=team-a:")

    assert isinstance(registry, RedisRegistry)
    assert registry.prefix == "team-a:"
    assert registry.url == "redis://127.0.0.1:6379/3"
    default = registry_from_url("redis://127.0.0.1:6379/3")
    assert isinstance(default, RedisRegistry)
    assert default.prefix == "coe:"


@pytest.mark.redis
async def test_registries_under_different_prefixes_do_not_meet(redis_prefix: str) -> None:
    one = RedisRegistry(REDIS_URL, prefix=f"{redis_prefix}one:")
    two = RedisRegistry(REDIS_URL, prefix=f"{redis_prefix}two:")
    await one.open()
    await two.open()
    try:
        await one.add(make_spec("a"))
        await one.set_meta("k", "v")

        assert await two.list() == []
        assert await two.get_meta("k") is None
        assert await two.revision() == 0
    finally:
        await one.aclose()
        await two.aclose()


@pytest.mark.redis
async def test_every_key_lives_under_the_prefix(redis_prefix: str) -> None:
    registry = RedisRegistry(REDIS_URL, prefix=redis_prefix)
    await registry.open()
    try:
        await registry.add(make_spec("a"))
        await registry.set_meta("k", "v")
    finally:
        await registry.aclose()

    with redis.Redis.from_url(REDIS_URL, decode_responses=True) as client:
        keys = set(client.scan_iter(match=f"{redis_prefix}*"))
    names = ("experts", "meta", "revision", "history")
    assert keys == {f"{redis_prefix}{name}" for name in names}


@pytest.mark.redis
async def test_pub_sub_wakes_the_watcher_before_its_poll_interval(redis_prefix: str) -> None:
    writer = RedisRegistry(REDIS_URL, prefix=redis_prefix)
    reader = RedisRegistry(REDIS_URL, prefix=redis_prefix)
    await writer.open()
    await reader.open()
    watcher = reader.watch(interval_s=3600)  # polling alone would never answer in this test
    pending = asyncio.ensure_future(anext(watcher))
    try:
        # the watcher subscribes after its first step; write until the notification lands
        async with asyncio.timeout(10):
            i = 0
            while not pending.done():
                await writer.add(make_spec(f"w{i}"))
                i += 1
                await asyncio.wait({pending}, timeout=0.05)
        assert pending.result() >= 1
    finally:
        pending.cancel()
        await asyncio.wait({pending})
        await watcher.aclose()
        await writer.aclose()
        await reader.aclose()


@pytest.mark.redis
async def test_an_invalid_stored_spec_is_reported_not_fatal(
    redis_prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    registry = RedisRegistry(REDIS_URL, prefix=redis_prefix)
    await registry.open()
    try:
        await registry.add(make_spec("good"))
        with redis.Redis.from_url(REDIS_URL) as client:
            client.hset(f"{redis_prefix}experts", "broken", '{"name": "broken", "colour": 1}')

        with caplog.at_level(logging.WARNING, logger="registry.redis"):
            assert await registry.list() == [make_spec("good")]
        assert "broken" in caplog.text
        with pytest.raises(RegistryError, match="broken"):
            await registry.remove("broken")
    finally:
        await registry.aclose()
