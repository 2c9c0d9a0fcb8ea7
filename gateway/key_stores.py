"""`KeyStore` backends, picked by the registry URL so keys live where the experts do.

    memory://   MemoryKeyStore (nothing survives the process)
    sqlite:...  SqliteKeyStore: table `client_keys` in the registry's file
    redis://    RedisKeyStore: hash {prefix}keys (sha256 -> record JSON), shared by replicas

Records are `ClientKey` JSON (hash, never the key). Names are unique: a create of a taken name
raises `KeyExists` (Redis: checked in a WATCH transaction, so two replicas cannot both win).
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import anyio.to_thread
import redis.asyncio as aioredis
from redis.exceptions import WatchError

from gateway.keys import ClientKey, KeyExists, KeyNotFound, KeyStore
from gateway.redis_client import redis_client
from registry.factory import registry_from_url
from registry.redis import DEFAULT_PREFIX
from registry.sqlite import SqliteRegistry
from registry.urls import split_prefix

__all__ = ["MemoryKeyStore", "RedisKeyStore", "SqliteKeyStore", "key_store"]

T = TypeVar("T")


def key_store(registry_url: str) -> KeyStore:
    """The store beside the registry `registry_url` names (not yet opened)."""
    scheme = registry_url.partition(":")[0].lower()
    if scheme in ("redis", "rediss"):
        url, prefix = split_prefix(registry_url)
        return RedisKeyStore(url, DEFAULT_PREFIX if prefix is None else prefix)
    if scheme == "sqlite":
        registry = registry_from_url(registry_url)
        assert isinstance(registry, SqliteRegistry)
        return SqliteKeyStore(registry.path)
    return MemoryKeyStore()


def _pick(records: list[ClientKey], ident: str) -> ClientKey:
    for record in records:
        if ident in (record.id, record.name):
            return record
    raise KeyNotFound(ident)


def _revoked(record: ClientKey) -> ClientKey:
    if record.revoked_at is not None:
        return record
    return record.model_copy(update={"revoked_at": time.time()})


class MemoryKeyStore:
    def __init__(self) -> None:
        self._records: dict[str, ClientKey] = {}

    async def open(self) -> None:
        return None

    async def aclose(self) -> None:
        return None

    async def create(self, record: ClientKey) -> None:
        if any(r.name == record.name for r in self._records.values()):
            raise KeyExists(record.name)
        self._records[record.sha256] = record

    async def find(self, sha256: str) -> ClientKey | None:
        return self._records.get(sha256)

    async def list(self) -> list[ClientKey]:
        return sorted(self._records.values(), key=lambda r: r.created_at)

    async def revoke(self, ident: str) -> ClientKey:
        record = _revoked(_pick(list(self._records.values()), ident))
        self._records[record.sha256] = record
        return record

    async def count(self) -> int:
        return len(self._records)


_SCHEMA = """
CREATE TABLE IF NOT EXISTS client_keys (
    sha256 TEXT PRIMARY KEY NOT NULL,
    name TEXT NOT NULL UNIQUE,
    record TEXT NOT NULL
);
"""


class SqliteKeyStore:
    """Keys in the registry's SQLite file (WAL, one transaction per write, as the registry)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._conn: sqlite3.Connection | None = None
        self._lock = threading.Lock()

    async def open(self) -> None:
        def connect() -> sqlite3.Connection:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(self.path, timeout=10.0, check_same_thread=False)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.executescript(_SCHEMA)
            return conn

        if self._conn is None:
            self._conn = await anyio.to_thread.run_sync(connect)

    async def aclose(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            await anyio.to_thread.run_sync(conn.close)

    async def _call(self, work: Callable[[sqlite3.Connection], T]) -> T:
        conn = self._conn
        if conn is None:
            raise RuntimeError("key store is not open")

        def locked() -> T:
            with self._lock, conn:  # one transaction
                return work(conn)

        return await anyio.to_thread.run_sync(locked)

    async def create(self, record: ClientKey) -> None:
        def insert(conn: sqlite3.Connection) -> None:
            try:
                conn.execute(
                    "INSERT INTO client_keys (sha256, name, record) VALUES (?, ?, ?)",
                    (record.sha256, record.name, record.model_dump_json()),
                )
            except sqlite3.IntegrityError as exc:
                raise KeyExists(record.name) from exc

        await self._call(insert)

    async def find(self, sha256: str) -> ClientKey | None:
        def select(conn: sqlite3.Connection) -> str | None:
            row = conn.execute(
                "SELECT record FROM client_keys WHERE sha256 = ?", (sha256,)
            ).fetchone()
            return None if row is None else str(row[0])

        raw = await self._call(select)
        return None if raw is None else ClientKey.model_validate_json(raw)

    async def list(self) -> list[ClientKey]:
        rows = await self._call(lambda c: c.execute("SELECT record FROM client_keys").fetchall())
        records = [ClientKey.model_validate_json(row[0]) for row in rows]
        return sorted(records, key=lambda r: r.created_at)

    async def revoke(self, ident: str) -> ClientKey:
        def update(conn: sqlite3.Connection) -> ClientKey:
            rows = conn.execute("SELECT record FROM client_keys").fetchall()
            record = _revoked(_pick([ClientKey.model_validate_json(r[0]) for r in rows], ident))
            conn.execute(
                "UPDATE client_keys SET record = ? WHERE sha256 = ?",
                (record.model_dump_json(), record.sha256),
            )
            return record

        return await self._call(update)

    async def count(self) -> int:
        rows = await self._call(lambda c: c.execute("SELECT COUNT(*) FROM client_keys").fetchone())
        return int(rows[0])


class RedisKeyStore:
    """Keys in Redis: hash ``{prefix}keys``, sha256 -> record JSON."""

    def __init__(self, url: str, prefix: str = DEFAULT_PREFIX) -> None:
        self._url = url
        self._key = f"{prefix}keys"
        self._client: aioredis.Redis | None = None

    async def open(self) -> None:
        if self._client is None:
            self._client = redis_client(self._url, timeout_s=5.0)

    async def aclose(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()

    @property
    def client(self) -> aioredis.Redis:
        if self._client is None:
            raise RuntimeError("key store is not open")
        return self._client

    async def create(self, record: ClientKey) -> None:
        async with self.client.pipeline() as pipe:
            while True:
                try:
                    await pipe.watch(self._key)
                    if any(r.name == record.name for r in await self._records(pipe)):
                        raise KeyExists(record.name)
                    pipe.multi()  # type: ignore[no-untyped-call]
                    pipe.hset(self._key, record.sha256, record.model_dump_json())
                    await pipe.execute()
                    return
                except WatchError:
                    continue

    async def find(self, sha256: str) -> ClientKey | None:
        raw = await self.client.hget(self._key, sha256)
        return None if raw is None else ClientKey.model_validate_json(raw)

    async def _records(self, client: aioredis.Redis) -> list[ClientKey]:
        raw = await client.hvals(self._key)
        return [ClientKey.model_validate_json(value) for value in raw]

    async def list(self) -> list[ClientKey]:
        return sorted(await self._records(self.client), key=lambda r: r.created_at)

    async def revoke(self, ident: str) -> ClientKey:
        record = _revoked(_pick(await self._records(self.client), ident))
        await self.client.hset(self._key, record.sha256, record.model_dump_json())
        return record

    async def count(self) -> int:
        return int(await self.client.hlen(self._key))
