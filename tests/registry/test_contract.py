"""The `Registry` contract, run against every backend (memory, sqlite, redis)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
from pydantic import ValidationError

from registry import (
    ExpertExists,
    ExpertNotFound,
    ExpertSpecPatch,
    MemoryRegistry,
    RedisRegistry,
    Registry,
    RegistryError,
    SqliteRegistry,
    registry_from_url,
)
from tests.registry.conftest import OpenRegistry, make_spec

BOUND_S = 10.0
"""Upper bound on waiting for another object's write to show up (never expected to be hit)."""


async def test_add_get_and_list_sorted_by_name(registry: Registry) -> None:
    for name in ("mid", "Zeta", "alpha", "beta.2"):
        await registry.add(make_spec(name))

    assert [spec.name for spec in await registry.list()] == ["Zeta", "alpha", "beta.2", "mid"]
    assert await registry.get("alpha") == make_spec("alpha")
    assert await registry.get("missing") is None


async def test_add_of_a_taken_name_raises_and_keeps_the_first(registry: Registry) -> None:
    await registry.add(make_spec("a", cost=1.0))

    with pytest.raises(ExpertExists):
        await registry.add(make_spec("a", cost=9.0))
    assert await registry.get("a") == make_spec("a", cost=1.0)


async def test_update_applies_the_patch_and_returns_the_new_spec(registry: Registry) -> None:
    await registry.add(make_spec("a", categories=["code"]))

    new = await registry.update("a", ExpertSpecPatch(cost=2.5, categories=["code", "math"]))

    assert new == make_spec("a", cost=2.5, categories=["code", "math"])
    assert await registry.get("a") == new


async def test_an_invalid_patch_leaves_the_stored_spec_and_revision(registry: Registry) -> None:
    sim = make_spec("sim", kind="simulator", endpoint=None, model=None)
    await registry.add(sim)
    before = await registry.revision()

    with pytest.raises(ValidationError):  # an openai expert needs an endpoint and a model
        await registry.update("sim", ExpertSpecPatch(kind="openai"))

    assert await registry.get("sim") == make_spec(
        "sim", kind="simulator", endpoint=None, model=None
    )
    assert await registry.revision() == before


async def test_update_and_remove_of_an_unknown_name_raise_not_found(registry: Registry) -> None:
    with pytest.raises(ExpertNotFound):
        await registry.update("ghost", ExpertSpecPatch(cost=1.0))
    with pytest.raises(KeyError):  # ExpertNotFound is also a KeyError
        await registry.remove("ghost")


async def test_remove_returns_the_spec_and_deletes_it(registry: Registry) -> None:
    await registry.add(make_spec("a"))
    await registry.add(make_spec("b"))

    assert await registry.remove("a") == make_spec("a")

    assert await registry.get("a") is None
    assert [spec.name for spec in await registry.list()] == ["b"]


async def test_revision_moves_on_every_write_and_not_on_reads(registry: Registry) -> None:
    seen = [await registry.revision()]
    writes: list[Callable[[], Awaitable[object]]] = [
        lambda: registry.add(make_spec("a")),
        lambda: registry.add(make_spec("b")),
        lambda: registry.update("a", ExpertSpecPatch(enabled=False)),
        lambda: registry.remove("b"),
    ]
    for write in writes:
        await write()
        await registry.get("a")
        await registry.list()
        await registry.get_meta("k")
        seen.append(await registry.revision())
        assert await registry.revision() == seen[-1]  # reading does not move it

    assert seen == sorted(set(seen)), f"revision did not increase on every write: {seen}"


async def test_a_refused_write_does_not_move_the_revision(registry: Registry) -> None:
    await registry.add(make_spec("a"))
    before = await registry.revision()

    with pytest.raises(ExpertExists):
        await registry.add(make_spec("a"))
    with pytest.raises(ExpertNotFound):
        await registry.remove("ghost")

    assert await registry.revision() == before


async def test_a_second_object_sees_writes_through_revision(open_registry: OpenRegistry) -> None:
    writer, reader = await open_registry(), await open_registry()
    before = await reader.revision()

    await writer.add(make_spec("a"))

    assert await reader.revision() > before
    assert await reader.get("a") == make_spec("a")
    after_add = await reader.revision()
    await writer.remove("a")
    assert await reader.revision() > after_add
    assert await reader.list() == []


async def test_watch_yields_the_other_objects_writes(open_registry: OpenRegistry) -> None:
    writer, reader = await open_registry(), await open_registry()
    before = await writer.revision()
    watcher = reader.watch(interval_s=0.02)
    try:
        first = await _next_while_writing(watcher, writer, "w")
        second = await _next_while_writing(watcher, writer, "x")
    finally:
        await _close(watcher)

    assert before < first < second <= await writer.revision()


async def test_meta_get_and_set(open_registry: OpenRegistry) -> None:
    one, other = await open_registry(), await open_registry()
    assert await one.get_meta("seeded") is None

    await one.set_meta("seeded", "yes")
    await one.set_meta("seeded", "twice")
    await one.set_meta("other", "")

    assert await other.get_meta("seeded") == "twice"
    assert await other.get_meta("other") == ""


async def test_concurrent_adds_of_distinct_names_all_land(open_registry: OpenRegistry) -> None:
    one, other = await open_registry(), await open_registry()
    before = await one.revision()
    names = [f"e{i:02d}" for i in range(24)]

    await asyncio.gather(
        *((one if i % 2 else other).add(make_spec(name)) for i, name in enumerate(names))
    )

    assert [spec.name for spec in await one.list()] == names
    assert await one.revision() >= before + len(names)


async def test_concurrent_patches_of_one_spec_all_apply(open_registry: OpenRegistry) -> None:
    one, other = await open_registry(), await open_registry()
    await one.add(make_spec("a"))
    patches = [
        ExpertSpecPatch(cost=7.0),
        ExpertSpecPatch(timeout_s=30.0),
        ExpertSpecPatch(connect_timeout_s=2.0),
        ExpertSpecPatch(max_concurrency=3),
        ExpertSpecPatch(enabled=False),
        ExpertSpecPatch(system_prompt="Be brief."),
        ExpertSpecPatch(categories=["math"]),
        ExpertSpecPatch(options={"temperature": 0.2}),
    ]

    # each patch sets one field; a backend that read and wrote non-atomically would let a
    # later write put back a field an earlier one had changed
    await asyncio.gather(
        *((one if i % 2 else other).update("a", patch) for i, patch in enumerate(patches))
    )

    assert await one.get("a") == make_spec(
        "a",
        cost=7.0,
        timeout_s=30.0,
        connect_timeout_s=2.0,
        max_concurrency=3,
        enabled=False,
        system_prompt="Be brief.",
        categories=["math"],
        options={"temperature": 0.2},
    )


async def test_ping_is_true_while_open_and_false_after_close(registry: Registry) -> None:
    assert await registry.ping() is True

    await registry.aclose()

    assert await registry.ping() is False
    with pytest.raises(RegistryError):
        await registry.list()


async def test_returned_specs_are_copies(registry: Registry) -> None:
    await registry.add(make_spec("a", categories=["code"]))

    fetched = await registry.get("a")
    assert fetched is not None
    fetched.categories.append("mutated")

    assert await registry.get("a") == make_spec("a", categories=["code"])


# -- registry_from_url builds each backend ------------------------------------------------


@pytest.mark.parametrize(
    ("url", "backend"),
    [
        ("memory://", MemoryRegistry),
        ("sqlite:///var/lib/coe/registry.db", SqliteRegistry),
        ("sqlite:registry.db", SqliteRegistry),
        ("redis://127.0.0.1:6379/0", RedisRegistry),
        ("rediss://:secret@redis.example:6380/1", RedisRegistry),
    ],
)
def test_registry_from_url_picks_the_backend(url: str, backend: type[object]) -> None:
    assert isinstance(registry_from_url(url), backend)


def test_registry_from_url_parses_sqlite_paths() -> None:
    absolute = registry_from_url("sqlite:///var/lib/coe/registry.db")
    relative = registry_from_url("sqlite:data/registry.db")

    assert isinstance(absolute, SqliteRegistry)
    assert absolute.path == Path("/var/lib/coe/registry.db")
    assert isinstance(relative, SqliteRegistry)
    assert relative.path == Path("data/registry.db")


@pytest.mark.parametrize("url", ["postgres://db/coe", "registry.db", "", "memory://elsewhere"])
def test_registry_from_url_refuses_other_urls_naming_the_accepted_ones(url: str) -> None:
    with pytest.raises(ValueError, match=r"memory://.*sqlite:.*redis://.*rediss://"):
        registry_from_url(url)


@pytest.mark.parametrize("url", ["sqlite://host/registry.db", "sqlite:", "sqlite:///"])
def test_registry_from_url_refuses_bad_sqlite_urls(url: str) -> None:
    with pytest.raises(ValueError, match="sqlite"):
        registry_from_url(url)


# -- helpers ------------------------------------------------------------------------------


async def _next_while_writing(watcher: AsyncIterator[int], writer: Registry, stem: str) -> int:
    """The watcher's next revision, writing (distinct names) until it comes.

    Writing repeatedly rather than once means the test does not depend on when the watcher
    read its starting revision.
    """
    pending = asyncio.ensure_future(anext(watcher))
    try:
        async with asyncio.timeout(BOUND_S):
            for i in range(10_000):
                await writer.add(make_spec(f"{stem}{i}"))
                done, _ = await asyncio.wait({pending}, timeout=0.05)
                if done:
                    return pending.result()
    finally:
        pending.cancel()
        await asyncio.wait({pending})
    raise AssertionError("unreachable")


async def _close(watcher: AsyncIterator[int]) -> None:
    if isinstance(watcher, AsyncGenerator):
        await watcher.aclose()
