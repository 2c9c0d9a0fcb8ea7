"""`SqliteRegistry`: the embedded default, one SQLite file that survives restarts.

The `coe experts` CLI and the gateway may hold the same file open and write it at the same
time: the database runs in WAL mode with a busy timeout, and every write is one
`BEGIN IMMEDIATE ... COMMIT` transaction that changes the spec *and* bumps the revision
counter, so a crash never leaves a half-written spec or a change the revision missed.

Schema (version 1, kept in `PRAGMA user_version`)::

    experts  (name TEXT PRIMARY KEY, spec TEXT)     -- spec: ExpertSpec as JSON
    meta     (key TEXT PRIMARY KEY, value TEXT)     -- get_meta / set_meta
    revision (id = 1, value INTEGER)                -- bumped by every add/update/remove
    history  (seq INTEGER PRIMARY KEY AUTOINCREMENT, at, actor, action, name,
              before, after)                        -- registry.history.Change, last N kept

The history table came after version 1 and is created when missing (older versions ignore it),
so the schema version did not change.

Specs are validated by `ExpertSpec` when read. A stored spec that no longer validates (edited
by hand, written by a newer version) is logged and skipped by `list()`; `get()`, `update()`
and `remove()` of it raise `RegistryError` naming the row.

The stdlib `sqlite3` driver runs on worker threads (`anyio.to_thread`): one connection per
registry, used by one thread at a time.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import sqlite3
import threading
from collections.abc import AsyncGenerator, Callable
from pathlib import Path
from typing import TypeVar

import anyio.to_thread
from pydantic import ValidationError

from registry.base import ExpertExists, ExpertNotFound, RegistryError, poll_revisions
from registry.history import DEFAULT_HISTORY_MAX, UNKNOWN_ACTOR, Change, new_change
from registry.spec import ExpertSpec, ExpertSpecPatch

__all__ = ["SqliteRegistry"]

logger = logging.getLogger(__name__)

T = TypeVar("T")

SCHEMA_VERSION = 1
_SCHEMA = """
CREATE TABLE IF NOT EXISTS experts (name TEXT PRIMARY KEY NOT NULL, spec TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY NOT NULL, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS revision (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    value INTEGER NOT NULL
);
INSERT OR IGNORE INTO revision (id, value) VALUES (1, 0);
CREATE TABLE IF NOT EXISTS history (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    at TEXT NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    name TEXT NOT NULL,
    before TEXT,
    after TEXT
);
CREATE INDEX IF NOT EXISTS history_by_name ON history (name, seq);
"""
_HISTORY_COLUMNS = "seq, at, actor, action, name, before, after"


class SqliteRegistry:
    """A `Registry` in one SQLite file; the parent directory is created on `open()`."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        busy_timeout_s: float = 10.0,
        history_max: int = DEFAULT_HISTORY_MAX,
    ) -> None:
        self.path = Path(path)
        self._busy_timeout_s = busy_timeout_s
        self._history_max = history_max
        self._conn: sqlite3.Connection | None = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"SqliteRegistry({str(self.path)!r})"

    async def open(self) -> None:
        if self._conn is None:
            self._conn = await self._call(self._connect)

    async def aclose(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            await self._call(lambda: self._locked(conn.close))

    async def add(self, spec: ExpertSpec, *, actor: str = UNKNOWN_ACTOR) -> None:
        def insert(conn: sqlite3.Connection) -> None:
            try:
                conn.execute(
                    "INSERT INTO experts (name, spec) VALUES (?, ?)",
                    (spec.name, spec.model_dump_json()),
                )
            except sqlite3.IntegrityError:
                raise ExpertExists(spec.name) from None
            self._record(conn, new_change("add", spec.name, None, spec, actor))

        await self._write(insert)

    async def update(
        self, name: str, patch: ExpertSpecPatch, *, actor: str = UNKNOWN_ACTOR
    ) -> ExpertSpec:
        """Apply `patch`; pydantic's `ValidationError` (nothing stored) if the result is invalid."""

        def replace(conn: sqlite3.Connection) -> ExpertSpec:
            old = self._fetch(conn, name)
            new = patch.apply(old)
            conn.execute(
                "UPDATE experts SET spec = ? WHERE name = ?", (new.model_dump_json(), name)
            )
            self._record(conn, new_change("update", name, old, new, actor))
            return new

        return await self._write(replace)

    async def remove(self, name: str, *, actor: str = UNKNOWN_ACTOR) -> ExpertSpec:
        def delete(conn: sqlite3.Connection) -> ExpertSpec:
            spec = self._fetch(conn, name)
            conn.execute("DELETE FROM experts WHERE name = ?", (name,))
            self._record(conn, new_change("remove", name, spec, None, actor))
            return spec

        return await self._write(delete)

    async def history(self, name: str | None = None, limit: int = 100) -> list[Change]:
        def select(conn: sqlite3.Connection) -> list[tuple[object, ...]]:
            where, args = ("WHERE name = ?", [name]) if name is not None else ("", [])
            return conn.execute(
                f"SELECT {_HISTORY_COLUMNS} FROM history {where} ORDER BY seq DESC LIMIT ?",
                [*args, limit],
            ).fetchall()

        return [_change(row) for row in await self._run(select)]

    async def get(self, name: str) -> ExpertSpec | None:
        def select(conn: sqlite3.Connection) -> ExpertSpec | None:
            row = conn.execute("SELECT spec FROM experts WHERE name = ?", (name,)).fetchone()
            return None if row is None else self._decode(name, row[0])

        return await self._run(select)

    async def list(self) -> list[ExpertSpec]:
        def select(conn: sqlite3.Connection) -> list[tuple[str, str]]:
            return conn.execute("SELECT name, spec FROM experts ORDER BY name").fetchall()

        specs = []
        for name, raw in await self._run(select):
            try:
                specs.append(self._decode(name, raw))
            except RegistryError as exc:
                logger.warning("skipping expert: %s", exc)
        return specs

    async def revision(self) -> int:
        def select(conn: sqlite3.Connection) -> int:
            return int(conn.execute("SELECT value FROM revision WHERE id = 1").fetchone()[0])

        return await self._run(select)

    async def ping(self) -> bool:
        try:
            await self._run(lambda conn: conn.execute("SELECT 1").fetchone())
        except RegistryError:
            return False
        return True

    async def get_meta(self, key: str) -> str | None:
        def select(conn: sqlite3.Connection) -> str | None:
            row = conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
            return None if row is None else str(row[0])

        return await self._run(select)

    async def set_meta(self, key: str, value: str) -> None:
        """Store a flag; meta is not a spec, so the revision does not move."""

        def upsert(conn: sqlite3.Connection) -> None:
            conn.execute(
                "INSERT INTO meta (key, value) VALUES (?, ?)"
                " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                (key, value),
            )

        await self._run(upsert)

    def watch(self, interval_s: float = 0.5) -> AsyncGenerator[int, None]:
        """Poll `revision()` every `interval_s` (SQLite has no change notification)."""
        return poll_revisions(self, interval_s)

    # -- on the worker thread -------------------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(
            self.path,
            timeout=self._busy_timeout_s,
            isolation_level=None,  # autocommit; writes use explicit BEGIN IMMEDIATE
            check_same_thread=False,  # used from worker threads, one at a time (self._lock)
        )
        try:
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                logger.warning("%s: journal_mode is %s, not wal", self.path, mode)
            self._transaction(conn, self._create_schema)
        except BaseException:
            conn.close()
            raise
        return conn

    def _create_schema(self, conn: sqlite3.Connection) -> None:
        version = int(conn.execute("PRAGMA user_version").fetchone()[0])
        if version > SCHEMA_VERSION:
            raise RegistryError(
                f"{self.path} has registry schema {version}; this version reads {SCHEMA_VERSION}"
            )
        for statement in _SCHEMA.split(";"):
            if statement.strip():
                conn.execute(statement)
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    def _record(self, conn: sqlite3.Connection, change: Change) -> None:
        row = change.model_dump(mode="json")
        conn.execute(
            "INSERT INTO history (at, actor, action, name, before, after)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            (
                row["at"],
                row["actor"],
                row["action"],
                row["name"],
                *(None if row[k] is None else json.dumps(row[k]) for k in ("before", "after")),
            ),
        )
        conn.execute(
            "DELETE FROM history WHERE seq <= (SELECT max(seq) FROM history) - ?",
            (self._history_max,),
        )

    def _fetch(self, conn: sqlite3.Connection, name: str) -> ExpertSpec:
        row = conn.execute("SELECT spec FROM experts WHERE name = ?", (name,)).fetchone()
        if row is None:
            raise ExpertNotFound(name)
        return self._decode(name, row[0])

    def _decode(self, name: str, raw: str) -> ExpertSpec:
        try:
            return ExpertSpec.model_validate_json(raw)
        except ValidationError as exc:
            raise RegistryError(f"stored spec {name!r} in {self.path} is invalid: {exc}") from exc

    @staticmethod
    def _transaction(conn: sqlite3.Connection, body: Callable[[sqlite3.Connection], T]) -> T:
        conn.execute("BEGIN IMMEDIATE")
        try:
            result = body(conn)
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        return result

    def _locked(self, body: Callable[[], T]) -> T:
        with self._lock:
            return body()

    # -- on the event loop ----------------------------------------------------------------

    async def _run(self, body: Callable[[sqlite3.Connection], T]) -> T:
        """Run `body` (reads, or one autocommitted statement) on the connection."""
        conn = self._connection()
        return await self._call(lambda: self._locked(functools.partial(body, conn)))

    async def _write(self, body: Callable[[sqlite3.Connection], T]) -> T:
        """Run `body` and bump the revision in one transaction."""

        def bumped(conn: sqlite3.Connection) -> T:
            result = body(conn)
            conn.execute("UPDATE revision SET value = value + 1 WHERE id = 1")
            return result

        conn = self._connection()
        return await self._call(lambda: self._locked(lambda: self._transaction(conn, bumped)))

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            raise RegistryError(f"sqlite registry {self.path} is not open")
        return self._conn

    async def _call(self, func: Callable[[], T]) -> T:
        """Run `func` on a worker thread; sqlite3 and file errors become `RegistryError`."""
        try:
            return await anyio.to_thread.run_sync(func)
        except (sqlite3.Error, OSError) as exc:
            raise RegistryError(f"sqlite registry {self.path}: {exc}") from exc


def _change(row: tuple[object, ...]) -> Change:
    seq, at, actor, action, name, before, after = row
    return Change.model_validate(
        {
            "seq": seq,
            "at": at,
            "actor": actor,
            "action": action,
            "name": name,
            "before": None if before is None else json.loads(str(before)),
            "after": None if after is None else json.loads(str(after)),
        }
    )
