"""Registry fixtures: every backend behind one `open_registry()`, Redis skipped when absent.

`open_registry` is parameterised over memory, sqlite and redis. Each call opens one more
registry object on the *same* store (a shared `MemoryStore`, one SQLite file, one Redis key
prefix), so a test sees what a second process would. Redis uses 127.0.0.1:6379 with a prefix
unique to the test and deletes its keys afterwards.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from registry import ExpertSpec, MemoryRegistry, MemoryStore, Registry, registry_from_url
from tests.redis_server import REDIS_URL

__all__ = ["OpenRegistry", "make_spec"]

OpenRegistry = Callable[[], Awaitable[Registry]]


def make_spec(name: str, **fields: Any) -> ExpertSpec:
    """A valid spec (an OpenAI-compatible expert unless `fields` say otherwise)."""
    base: dict[str, Any] = {
        "kind": "openai",
        "endpoint": "http://upstream:8000/v1",
        "model": f"model-{name}",
        "categories": ["general"],
    }
    return ExpertSpec.model_validate({"name": name, **base, **fields})


@pytest.fixture(
    params=["memory", "sqlite", pytest.param("redis", marks=pytest.mark.redis)],
)
async def open_registry(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[OpenRegistry]:
    """Open another registry object on this test's store; all are closed afterwards."""
    make = _store(request, tmp_path)
    opened: list[Registry] = []

    async def open_one() -> Registry:
        registry = make()
        await registry.open()
        opened.append(registry)
        return registry

    yield open_one
    for registry in opened:
        await registry.aclose()


@pytest.fixture
async def registry(open_registry: OpenRegistry) -> Registry:
    return await open_registry()


def _store(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[[], Registry]:
    backend: str = request.param
    if backend == "memory":
        store = MemoryStore()
        return lambda: MemoryRegistry(store)
    if backend == "sqlite":
        url = f"sqlite://{tmp_path / 'registry.db'}"
        return lambda: registry_from_url(url)
    prefix: str = request.getfixturevalue("redis_prefix")
    return lambda: registry_from_url(f"{REDIS_URL}?prefix={prefix}")
