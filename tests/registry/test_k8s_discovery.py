"""Kubernetes discovery against a local stand-in of the API (tests/k8s_api.py), with the official
`kubernetes` client: list, watch, a dropped connection, 410 Gone, resync, ownership. Every
registry backend (memory, SQLite, Redis) is exercised through `open_registry`."""

from __future__ import annotations

import asyncio
import copy
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from registry.base import Registry
from registry.k8s_discovery import DiscoveryOptions, Reconciler, pod_namespace
from registry.k8s_watch import KubernetesDiscovery, ServiceWatcher, api_client
from registry.spec import ExpertSpec
from tests.k8s_api import K8sApi, WatchScript, k8s_api, kubeconfig
from tests.registry.conftest import OpenRegistry, make_spec
from tests.registry.test_k8s_services import recorded

pytest.importorskip("kubernetes")

FAST = DiscoveryOptions(watch_timeout_s=5, resync_s=3600, retry_s=0.05, max_retry_s=0.2)


def service(name: str, version: str, **notes: str) -> dict[str, Any]:
    """A recorded Service at `version`, with annotations changed (``None``-free)."""
    item = recorded(name)
    item["metadata"]["resourceVersion"] = version
    item["metadata"]["annotations"].update({f"coe.io/{k}": v for k, v in notes.items()})
    return item


def listing(version: str, *items: dict[str, Any]) -> dict[str, Any]:
    return {
        "kind": "ServiceList",
        "apiVersion": "v1",
        "metadata": {"resourceVersion": version},
        "items": [copy.deepcopy(item) for item in items],
    }


def event(kind: str, item: dict[str, Any]) -> dict[str, Any]:
    return {"type": kind, "object": {"kind": "Service", "apiVersion": "v1", **item}}


def bookmark(version: str) -> dict[str, Any]:
    return {
        "type": "BOOKMARK",
        "object": {"kind": "Service", "apiVersion": "v1", "metadata": {"resourceVersion": version}},
    }


@asynccontextmanager
async def discovering(
    api: K8sApi,
    registry: Registry,
    tmp_path: Path,
    options: DiscoveryOptions = FAST,
    namespace: str = "coe",
) -> AsyncIterator[KubernetesDiscovery]:
    client = api_client(kubeconfig(tmp_path / f"kubeconfig-{id(registry)}", api.url))
    loop = asyncio.get_running_loop()
    watcher = ServiceWatcher(client, namespace, Reconciler(registry, namespace), loop, options)
    discovery = KubernetesDiscovery([watcher])
    await discovery.start(wait_s=10)
    try:
        yield discovery
    finally:
        await discovery.aclose()
        client.close()  # type: ignore[no-untyped-call]


async def until(check: Callable[[], Any], timeout_s: float = 15.0) -> None:
    """Wait (without blocking the loop the watcher writes through) until `check()` holds."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not await check():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.05)


async def names(registry: Registry) -> dict[str, str | None]:
    return {spec.name: spec.managed_by for spec in await registry.list()}


async def test_list_watch_drop_and_410_lose_and_duplicate_nothing(
    open_registry: OpenRegistry, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    registry = await open_registry()
    await registry.add(make_spec("by-admin"))
    api = K8sApi()
    api.lists.append(listing("1003", service("vllm-math", "1001"), service("vllm-code", "1002")))
    api.watches.append(
        WatchScript(
            [
                event("ADDED", service("openai-proxy", "1003")),
                event("MODIFIED", service("vllm-math", "1004", categories="math")),
                bookmark("1005"),
            ],
            end="drop",  # a half-sent event, then the connection is cut
        )
    )
    api.watches.append(WatchScript([event("DELETED", service("vllm-code", "1006"))], end="gone"))
    # while nobody watched: vllm-math deleted, vllm-code back with a new model
    api.lists.append(
        listing("2000", service("openai-proxy", "1003"), service("vllm-code", "1990", cost="2"))
    )
    with caplog.at_level(logging.INFO, "coe.discovery"), k8s_api(api):
        async with discovering(api, registry, tmp_path) as discovery:
            requests = await asyncio.to_thread(api.wait_for, 6)
            await until(lambda: _has(registry, "coder", cost=2.0))
            state = discovery.status()["coe"]
    got = [(r.kind, r.resource_version) for r in requests[:6]]
    assert (
        got
        == [
            ("list", None),
            ("watch", "1003"),
            ("watch", "1005"),  # resumed after the bookmark: nothing replayed, nothing skipped
            ("list", None),  # the 410: a new list, not a watch from a stale version
            ("watch", "2000"),
            ("watch", "2000"),  # the idle stream ended cleanly: watch again from the same point
        ][: len(got)]
    )
    assert all(r.label_selector == "coe.io/expert" for r in requests)
    assert await names(registry) == {
        "by-admin": None,  # never touched by discovery
        "coder": "kubernetes:coe/vllm-code",
        "general": "kubernetes:coe/openai-proxy",
    }
    assert state["lists"] == 2 and state["last_error"] == "410 Gone"
    assert "ProtocolError: Response ended prematurely; resuming from resourceVersion 1005" in (
        caplog.text
    )


async def _has(registry: Registry, name: str, **fields: Any) -> bool:
    spec = await registry.get(name)
    return spec is not None and all(getattr(spec, k) == v for k, v in fields.items())


async def test_an_http_410_on_watch_lists_again(tmp_path: Path) -> None:
    from registry.memory import MemoryRegistry

    registry = MemoryRegistry()
    await registry.open()
    api = K8sApi()
    api.lists.extend(
        [listing("10", service("vllm-math", "9")), listing("20", service("vllm-code", "19"))]
    )
    api.watches.append(WatchScript([], end="gone_status"))
    with k8s_api(api):
        async with discovering(api, registry, tmp_path):
            await until(lambda: _gone(registry, "qwen-math"))
            requests = await asyncio.to_thread(api.wait_for, 3)
    assert [(r.kind, r.resource_version) for r in requests[:3]] == [
        ("list", None),
        ("watch", "10"),
        ("list", None),
    ]
    assert set(await names(registry)) == {"coder"}


async def _gone(registry: Registry, name: str) -> bool:
    return await registry.get(name) is None


async def test_a_stale_entry_of_a_deleted_service_goes_at_the_first_list(
    open_registry: OpenRegistry, tmp_path: Path
) -> None:
    registry = await open_registry()
    left_over = make_spec("old", managed_by="kubernetes:coe/removed-while-down")
    elsewhere = make_spec("other-ns", managed_by="kubernetes:prod/vllm")
    for spec in (left_over, elsewhere):
        await registry.add(spec)
    api = K8sApi()
    api.lists.append(listing("5", service("vllm-code", "4")))
    with k8s_api(api):
        async with discovering(api, registry, tmp_path):
            pass
    assert await names(registry) == {
        "coder": "kubernetes:coe/vllm-code",
        "other-ns": "kubernetes:prod/vllm",  # another namespace's watcher owns it
    }


async def test_a_name_taken_by_the_admin_api_is_not_overwritten(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from registry.memory import MemoryRegistry

    registry = MemoryRegistry()
    await registry.open()
    mine = make_spec("coder", endpoint="http://127.0.0.1:9/v1")
    await registry.add(mine)
    api = K8sApi()
    api.lists.append(listing("5", service("vllm-code", "4"), service("vllm-math", "3")))
    with caplog.at_level(logging.WARNING, "coe.discovery"), k8s_api(api):
        async with discovering(api, registry, tmp_path):
            pass
    assert await registry.get("coder") == mine
    assert await _has(registry, "qwen-math", managed_by="kubernetes:coe/vllm-math")
    assert "Service coe/vllm-code names expert 'coder', which exists" in caplog.text


async def test_a_broken_change_keeps_the_last_good_entry_and_names_the_annotation(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from registry.memory import MemoryRegistry

    registry = MemoryRegistry()
    await registry.open()
    api = K8sApi()
    api.lists.append(listing("5", service("vllm-math", "4")))
    api.watches.append(
        WatchScript(
            [
                event("MODIFIED", service("vllm-math", "6", cost="cheap")),
                event("MODIFIED", service("vllm-code", "7")),
            ]
        )
    )
    with caplog.at_level(logging.WARNING, "coe.discovery"), k8s_api(api):
        async with discovering(api, registry, tmp_path):
            await until(lambda: _has(registry, "coder"))
    assert await _has(registry, "qwen-math", cost=1.5)
    assert "Service coe/vllm-math: coe.io/cost: could not convert" in caplog.text


async def test_a_relabelled_service_moves_its_expert(tmp_path: Path) -> None:
    from registry.memory import MemoryRegistry

    registry = MemoryRegistry()
    await registry.open()
    renamed = service("vllm-code", "8")
    renamed["metadata"]["labels"]["coe.io/expert"] = "coder-v2"
    api = K8sApi()
    api.lists.append(listing("5", service("vllm-code", "4")))
    api.watches.append(WatchScript([event("MODIFIED", renamed)]))
    with k8s_api(api):
        async with discovering(api, registry, tmp_path):
            await until(lambda: _has(registry, "coder-v2"))
    assert await names(registry) == {"coder-v2": "kubernetes:coe/vllm-code"}


async def test_two_replicas_on_one_registry_agree(
    open_registry: OpenRegistry, tmp_path: Path
) -> None:
    first, second = await open_registry(), await open_registry()
    api = K8sApi()
    api.lists.append(listing("5", service("vllm-code", "4"), service("vllm-math", "3")))
    api.watches.extend(
        [
            WatchScript([event("DELETED", service("vllm-math", "6"))]),
            WatchScript([event("DELETED", service("vllm-math", "6"))]),
        ]
    )
    with k8s_api(api):
        async with discovering(api, first, tmp_path), discovering(api, second, tmp_path):
            await until(lambda: _gone(first, "qwen-math"))
            await asyncio.to_thread(api.wait_for, 4)
    assert await names(second) == {"coder": "kubernetes:coe/vllm-code"}


async def test_periodic_resync_heals_a_change_made_behind_its_back(tmp_path: Path) -> None:
    from registry.memory import MemoryRegistry

    registry = MemoryRegistry()
    await registry.open()
    api = K8sApi(idle_s=0.05)
    api.lists.append(listing("5", service("vllm-code", "4")))
    options = DiscoveryOptions(watch_timeout_s=5, resync_s=0.3, retry_s=0.05)
    with k8s_api(api):
        async with discovering(api, registry, tmp_path, options):
            await registry.remove("coder")  # e.g. `coe experts remove` on another machine
            await until(lambda: _has(registry, "coder"))
            requests = await asyncio.to_thread(api.wait_for, 3)
    assert sum(r.kind == "list" for r in requests) >= 2


async def test_an_unreachable_api_does_not_block_start(tmp_path: Path) -> None:
    from registry.memory import MemoryRegistry

    registry = MemoryRegistry()
    await registry.open()
    await registry.add(make_spec("kept", managed_by="kubernetes:coe/vllm"))
    client = api_client(kubeconfig(tmp_path / "kubeconfig", "http://127.0.0.1:9"))
    watcher = ServiceWatcher(
        client, "coe", Reconciler(registry, "coe"), asyncio.get_running_loop(), FAST
    )
    discovery = KubernetesDiscovery([watcher])
    await discovery.start(wait_s=0.5)
    status = discovery.status()["coe"]
    await discovery.aclose()
    client.close()  # type: ignore[no-untyped-call]
    assert status["state"] == "retrying" and status["lists"] == 0
    assert "Connection refused" in str(status["last_error"]) or "Max retries" in str(
        status["last_error"]
    )
    assert await names(registry) == {"kept": "kubernetes:coe/vllm"}  # served as it was


def test_pod_namespace_reads_the_service_account(tmp_path: Path) -> None:
    path = tmp_path / "namespace"
    assert pod_namespace(path) == "default"
    path.write_text("coe-prod\n")
    assert pod_namespace(path) == "coe-prod"


def test_make_spec_managed_by_is_a_spec_field() -> None:
    assert ExpertSpec.model_fields["managed_by"].default is None
