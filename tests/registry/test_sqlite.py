"""What only the SQLite backend promises: a file that survives restarts and other processes."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import sys
import textwrap
from pathlib import Path

import pytest

from registry import ExpertSpecPatch, RegistryError, SqliteRegistry
from tests.registry.conftest import make_spec

REPO_ROOT = Path(__file__).resolve().parents[2]
CHILD_WRITES = 30


async def test_specs_revision_and_meta_survive_close_and_reopen(tmp_path: Path) -> None:
    path = tmp_path / "nested" / "dirs" / "registry.db"  # parents are created
    first = SqliteRegistry(path)
    await first.open()
    await first.add(make_spec("a"))
    await first.add(make_spec("b"))
    await first.update("b", ExpertSpecPatch(cost=3.0))
    await first.set_meta("seeded", "1")
    revision = await first.revision()
    await first.aclose()

    again = SqliteRegistry(path)
    await again.open()
    try:
        assert await again.list() == [make_spec("a"), make_spec("b", cost=3.0)]
        assert await again.revision() == revision == 3
        assert await again.get_meta("seeded") == "1"
    finally:
        await again.aclose()


async def test_the_file_is_in_wal_mode(tmp_path: Path) -> None:
    registry = SqliteRegistry(tmp_path / "registry.db")
    await registry.open()
    await registry.aclose()

    with sqlite3.connect(tmp_path / "registry.db") as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


async def test_a_second_process_writes_while_the_first_is_open(tmp_path: Path) -> None:
    path = tmp_path / "registry.db"
    registry = SqliteRegistry(path)
    await registry.open()
    try:
        await registry.add(make_spec("before"))
        child = await asyncio.create_subprocess_exec(
            sys.executable, "-c", _child_script(path, count=CHILD_WRITES), cwd=REPO_ROOT
        )
        # keep writing from this process for as long as the child runs
        parent = [f"parent{i:04d}" for i in range(5000)]
        written = 0
        while child.returncode is None and written < len(parent):
            await registry.add(make_spec(parent[written]))
            written += 1
        assert await asyncio.wait_for(child.wait(), timeout=60) == 0

        children = {f"child{i:02d}" for i in range(CHILD_WRITES)}
        names = {spec.name for spec in await registry.list()}
        assert names == {"before", *parent[:written], *children}
        assert await registry.revision() == 1 + written + CHILD_WRITES  # none lost
        assert await registry.get_meta("child") == "done"
    finally:
        await registry.aclose()


async def test_an_invalid_stored_spec_is_reported_not_fatal(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "registry.db"
    registry = SqliteRegistry(path)
    await registry.open()
    try:
        await registry.add(make_spec("good"))
        with sqlite3.connect(path) as conn:
            conn.execute(
                "INSERT INTO experts (name, spec) VALUES (?, ?)",
                ("broken", '{"name": "broken", "kind": "openai", "colour": "red"}'),
            )

        with caplog.at_level(logging.WARNING, logger="registry.sqlite"):
            assert await registry.list() == [make_spec("good")]
        assert "broken" in caplog.text
        with pytest.raises(RegistryError, match="broken"):
            await registry.get("broken")
        with pytest.raises(RegistryError, match="broken"):
            await registry.update("broken", ExpertSpecPatch(cost=1.0))
    finally:
        await registry.aclose()


async def test_a_file_that_is_not_a_database_raises_registry_error(tmp_path: Path) -> None:
    path = tmp_path / "registry.db"
    path.write_bytes(b"this is not an sqlite file, not even close" * 100)

    with pytest.raises(RegistryError, match=r"registry\.db"):
        await SqliteRegistry(path).open()


async def test_a_schema_from_a_newer_version_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "registry.db"
    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA user_version = 99")

    with pytest.raises(RegistryError, match="schema 99"):
        await SqliteRegistry(path).open()


def _child_script(path: Path, count: int) -> str:
    return textwrap.dedent(
        f"""
        import asyncio
        from registry import ExpertSpec, SqliteRegistry

        async def main() -> None:
            registry = SqliteRegistry({str(path)!r})
            await registry.open()
            for i in range({count}):
                await registry.add(ExpertSpec(name=f"child{{i:02d}}", kind="simulator"))
            await registry.set_meta("child", "done")
            await registry.aclose()

        asyncio.run(main())
        """
    )
