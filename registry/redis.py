"""`RedisRegistry`: specs in Redis, shared by every gateway replica and the CLI.

Keys, under `prefix` (default ``coe:``)::

    {prefix}experts    hash   name -> ExpertSpec as JSON
    {prefix}meta       hash   get_meta / set_meta
    {prefix}revision   string INCRed by every add/update/remove
    {prefix}changes    pub/sub channel; every write publishes the expert's name
    {prefix}history    list   registry.history.Change as JSON, newest first, last N kept

Each write is one MULTI/EXEC transaction holding the change, the INCR, the history entry and
the PUBLISH. Every write WATCHes the hash and the revision, so a patch is applied to the spec it
read and two racing adds of one name give one `ExpertExists` (retried when another client wrote
in between); a change's `seq` is the revision it produced.

`watch()` wakes on the channel and re-reads the revision at least every `interval_s`, so a
missed message (or a server without pub/sub) costs at most one interval.

Redis errors become `RegistryError`, with the URL's password redacted.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncGenerator, Callable, Iterator

import redis.asyncio as aioredis
from pydantic import ValidationError
from redis.exceptions import RedisError, WatchError

from registry.base import ExpertExists, ExpertNotFound, RegistryError
from registry.history import DEFAULT_HISTORY_MAX, UNKNOWN_ACTOR, Action, Change, new_change
from registry.spec import ExpertSpec, ExpertSpecPatch
from registry.urls import redact_url

__all__ = ["DEFAULT_PREFIX", "RedisRegistry"]

logger = logging.getLogger(__name__)

DEFAULT_PREFIX = "coe:"


class RedisRegistry:
    """A `Registry` in Redis (`redis://` or `rediss://` URL); no I/O until `open()`."""

    def __init__(
        self,
        url: str,
        prefix: str = DEFAULT_PREFIX,
        *,
        connect_timeout_s: float = 5.0,
        command_timeout_s: float = 10.0,
        max_retries: int = 100,
        history_max: int = DEFAULT_HISTORY_MAX,
    ) -> None:
        self.url = url
        self.prefix = prefix
        self._connect_timeout_s = connect_timeout_s
        self._command_timeout_s = command_timeout_s
        self._max_retries = max_retries
        self._experts = f"{prefix}experts"
        self._meta = f"{prefix}meta"
        self._revision = f"{prefix}revision"
        self._channel = f"{prefix}changes"
        self._history = f"{prefix}history"
        self._history_max = history_max
        self._client: aioredis.Redis | None = None

    def __repr__(self) -> str:
        return f"RedisRegistry({redact_url(self.url)!r}, prefix={self.prefix!r})"

    async def open(self) -> None:
        if self._client is not None:
            return
        try:
            client = aioredis.Redis.from_url(
                self.url,
                decode_responses=True,
                socket_connect_timeout=self._connect_timeout_s,
                socket_timeout=self._command_timeout_s,  # watch() passes its own wait
            )
        except ValueError as exc:
            raise RegistryError(f"bad Redis URL {redact_url(self.url)!r}: {exc}") from None
        try:
            await client.ping()
        except RedisError as exc:
            with contextlib.suppress(RedisError):
                await client.aclose()
            raise RegistryError(f"Redis not reachable at {redact_url(self.url)}: {exc}") from exc
        self._client = client

    async def aclose(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            with contextlib.suppress(RedisError):
                await client.aclose()

    async def add(self, spec: ExpertSpec, *, actor: str = UNKNOWN_ACTOR) -> None:
        def create(old: ExpertSpec | None) -> ExpertSpec:
            if old is not None:
                raise ExpertExists(spec.name)
            return spec

        await self._modify(spec.name, create, "add", actor)

    async def update(
        self, name: str, patch: ExpertSpecPatch, *, actor: str = UNKNOWN_ACTOR
    ) -> ExpertSpec:
        """Apply `patch`; pydantic's `ValidationError` (nothing stored) if the result is invalid."""
        _, new = await self._modify(
            name, lambda old: patch.apply(_found(name, old)), "update", actor
        )
        assert new is not None
        return new

    async def remove(self, name: str, *, actor: str = UNKNOWN_ACTOR) -> ExpertSpec:
        def delete(old: ExpertSpec | None) -> None:
            _found(name, old)

        old, _ = await self._modify(name, delete, "remove", actor)
        assert old is not None
        return old

    async def history(self, name: str | None = None, limit: int = 100) -> list[Change]:
        client = self._checked()
        with self._errors():
            rows = await client.lrange(self._history, 0, -1)
        changes = []
        for raw in rows:
            try:
                change = Change.model_validate_json(raw)
            except ValidationError as exc:
                logger.warning("%s: skipping a history entry: %s", self._history, exc)
                continue
            if name is None or change.name == name:
                changes.append(change)
        return changes[:limit]

    async def get(self, name: str) -> ExpertSpec | None:
        client = self._checked()
        with self._errors():
            raw = await client.hget(self._experts, name)
        return None if raw is None else self._decode(name, raw)

    async def list(self) -> list[ExpertSpec]:
        client = self._checked()
        with self._errors():
            stored = await client.hgetall(self._experts)
        specs = []
        for name in sorted(stored, key=_text):
            try:
                specs.append(self._decode(name, stored[name]))
            except RegistryError as exc:
                logger.warning("skipping expert: %s", exc)
        return specs

    async def revision(self) -> int:
        client = self._checked()
        with self._errors():
            raw = await client.get(self._revision)
        return int(raw or 0)

    async def ping(self) -> bool:
        if self._client is None:
            return False
        try:
            return bool(await self._client.ping())
        except RedisError:
            return False

    async def get_meta(self, key: str) -> str | None:
        client = self._checked()
        with self._errors():
            value = await client.hget(self._meta, key)
        return None if value is None else str(value)

    async def set_meta(self, key: str, value: str) -> None:
        """Store a flag; meta is not a spec, so the revision does not move."""
        client = self._checked()
        with self._errors():
            await client.hset(self._meta, key, value)

    async def watch(self, interval_s: float = 0.5) -> AsyncGenerator[int, None]:
        """Yield each new revision: woken by pub/sub, polling every `interval_s` regardless."""
        client = self._checked()
        last = await self.revision()
        pubsub = client.pubsub(ignore_subscribe_messages=True)
        try:
            listening = await self._subscribe(pubsub)
            while True:
                if listening:
                    try:
                        await pubsub.get_message(timeout=interval_s)
                    except RedisError as exc:
                        logger.warning("%s: pub/sub failed (%s); polling only", self, exc)
                        listening = False
                else:
                    await asyncio.sleep(interval_s)
                current = await self.revision()
                if current != last:
                    last = current
                    yield current
        finally:
            with contextlib.suppress(RedisError):
                await pubsub.aclose()  # type: ignore[no-untyped-call]

    async def _subscribe(self, pubsub: aioredis.client.PubSub) -> bool:
        try:
            await pubsub.subscribe(self._channel)
        except RedisError as exc:
            logger.warning("%s: cannot subscribe (%s); polling only", self, exc)
            return False
        return True

    async def _modify(
        self,
        name: str,
        change: Callable[[ExpertSpec | None], ExpertSpec | None],
        action: Action,
        actor: str,
    ) -> tuple[ExpertSpec | None, ExpertSpec | None]:
        """Write `change(current)` for `name` (None: delete) under WATCH, with its history
        entry; retry conflicts."""
        client = self._checked()
        with self._errors():
            async with client.pipeline(transaction=True) as pipe:
                for _ in range(self._max_retries):
                    await pipe.watch(self._experts, self._revision)
                    raw = await pipe.hget(self._experts, name)
                    revision = int(await pipe.get(self._revision) or 0)
                    old = None if raw is None else self._decode(name, raw)
                    new = change(old)
                    pipe.multi()  # type: ignore[no-untyped-call]
                    if new is None:
                        pipe.hdel(self._experts, name)
                    else:
                        pipe.hset(self._experts, name, new.model_dump_json())
                    entry = new_change(action, name, old, new, actor, seq=revision + 1)
                    pipe.lpush(self._history, entry.model_dump_json())
                    pipe.ltrim(self._history, 0, self._history_max - 1)
                    self._queue_bump(pipe, name)
                    try:
                        await pipe.execute()
                    except WatchError:
                        continue
                    return old, new
        raise RegistryError(
            f"Redis registry at {redact_url(self.url)}: {name!r} kept changing under"
            f" {self._max_retries} attempts to write it"
        )

    def _queue_bump(self, pipe: aioredis.client.Pipeline, name: str) -> None:
        pipe.incr(self._revision)
        pipe.publish(self._channel, name)

    def _decode(self, name: str | bytes, raw: str | bytes) -> ExpertSpec:
        try:
            return ExpertSpec.model_validate_json(raw)
        except ValidationError as exc:
            raise RegistryError(
                f"stored spec {_text(name)!r} in {self._experts} is invalid: {exc}"
            ) from exc

    def _checked(self) -> aioredis.Redis:
        if self._client is None:
            raise RegistryError(f"Redis registry at {redact_url(self.url)} is not open")
        return self._client

    @contextlib.contextmanager
    def _errors(self) -> Iterator[None]:
        try:
            yield
        except RedisError as exc:
            raise RegistryError(f"Redis registry at {redact_url(self.url)}: {exc}") from exc


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _found(name: str, spec: ExpertSpec | None) -> ExpertSpec:
    if spec is None:
        raise ExpertNotFound(name)
    return spec
