"""The change history every backend records: who, when, before/after (redacted), bounded."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from registry import ExpertSpecPatch, MemoryRegistry, MemoryStore, Registry, registry_from_url
from registry.history import changed_fields, redact_endpoint, redacted_spec
from tests.redis_server import REDIS_URL
from tests.registry.conftest import OpenRegistry, make_spec

SECRET_OPTIONS = {
    "api_key": "sk-in-options",
    "headers": {"Authorization": "Bearer sk-header", "X-Trace": "on"},
    "max_tokens": 64,
    "accessToken": "tok-secret-1",
    "nested": [{"password": "pw-secret-2"}],
}


async def test_every_write_is_recorded_with_its_actor(open_registry: OpenRegistry) -> None:
    writer, reader = await open_registry(), await open_registry()
    before = datetime.now(UTC) - timedelta(seconds=1)
    await writer.add(make_spec("a"), actor="admin-api")
    await writer.add(make_spec("b"), actor="cli")
    await writer.update("a", ExpertSpecPatch(cost=3.0), actor="discovery:kubernetes:ns/svc")
    await writer.remove("b", actor="config-seed")
    await writer.add(make_spec("c"))

    changes = await reader.history()  # another process sees the same history
    assert [(c.action, c.name, c.actor) for c in changes] == [
        ("add", "c", "unknown"),
        ("remove", "b", "config-seed"),
        ("update", "a", "discovery:kubernetes:ns/svc"),
        ("add", "b", "cli"),
        ("add", "a", "admin-api"),
    ]
    assert [c.seq for c in changes] == sorted((c.seq for c in changes), reverse=True)
    assert all(before <= datetime.fromisoformat(c.at) <= datetime.now(UTC) for c in changes)
    update = changes[2]
    assert update.before is not None and update.after is not None
    assert changed_fields(update) == {"cost": (1.0, 3.0)}
    assert changes[1].after is None and changes[1].before is not None
    assert changes[1].before["name"] == "b"
    assert changes[4].before is None

    assert [c.action for c in await reader.history("a")] == ["update", "add"]
    assert [c.name for c in await reader.history(limit=2)] == ["c", "b"]
    assert await reader.history("nobody") == []


async def test_failed_writes_leave_no_trace(open_registry: OpenRegistry) -> None:
    registry = await open_registry()
    await registry.add(make_spec("a"), actor="one")
    with pytest.raises(Exception, match="a"):
        await registry.add(make_spec("a"), actor="two")
    with pytest.raises(KeyError):
        await registry.remove("ghost", actor="three")
    with pytest.raises(ValueError):
        await registry.update("a", ExpertSpecPatch(cost=-1), actor="four")
    assert [c.actor for c in await registry.history()] == ["one"]


async def test_secrets_are_redacted(open_registry: OpenRegistry) -> None:
    registry = await open_registry()
    spec = make_spec(
        "s",
        endpoint="https://user:hunter2@api.example.com/v1?api_key=sk-query&region=eu",
        options=SECRET_OPTIONS,
        api_key_env="EXPERT_S_KEY",
    )
    await registry.add(spec, actor="admin-api")
    (change,) = await registry.history()
    after = change.after
    assert after is not None
    text = change.model_dump_json()
    for secret in (
        "hunter2",
        "user:",
        "sk-query",
        "sk-in-options",
        "sk-header",
        "tok-secret",
        "pw-secret",
    ):
        assert secret not in text, secret
    assert after["endpoint"] == "https://***@api.example.com/v1?api_key=***&region=eu"
    assert after["options"]["max_tokens"] == 64 and after["options"]["headers"]["X-Trace"] == "on"
    assert after["api_key_env"] == "EXPERT_S_KEY"  # a variable's name, not a secret
    assert (await registry.get("s")) == spec  # only the history is redacted


def test_redaction_helpers() -> None:
    assert redact_endpoint("http://10.0.0.5:8000/v1") == "http://10.0.0.5:8000/v1"
    assert redact_endpoint("http://token@h/v1") == "http://***@h/v1"
    assert redact_endpoint("http://h/v1?password=x&sig=1") == "http://h/v1?password=***&sig=1"
    assert redacted_spec(None) is None


def _bounded(kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> Callable[[], Registry]:
    if kind == "memory":
        store = MemoryStore()
        return lambda: MemoryRegistry(store, history_max=3)
    if kind == "sqlite":
        return lambda: registry_from_url(f"sqlite:///{tmp_path / 'r.db'}", history_max=3)
    prefix = request.getfixturevalue("redis_prefix")
    return lambda: registry_from_url(f"{REDIS_URL}?prefix={prefix}", history_max=3)


@pytest.fixture(params=["memory", "sqlite", pytest.param("redis", marks=pytest.mark.redis)])
async def bounded(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Registry]:
    registry = _bounded(request.param, tmp_path, request)()
    await registry.open()
    yield registry
    await registry.aclose()


async def test_only_the_last_changes_are_kept(bounded: Registry) -> None:
    for i in range(5):
        await bounded.add(make_spec(f"e{i}"), actor="cli")
    await bounded.remove("e0", actor="cli")
    changes = await bounded.history(limit=100)
    assert [(c.action, c.name) for c in changes] == [
        ("remove", "e0"),
        ("add", "e4"),
        ("add", "e3"),
    ]
    assert len(await bounded.list()) == 4  # the specs themselves are all there
