"""Starts and stops the configured discovery sources (today: Kubernetes Services)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

import anyio.to_thread

from experts.retriever import with_pilots
from gateway.settings import KubernetesDiscoverySettings
from registry.base import Registry
from registry.spec import ExpertSpec

__all__ = ["kubernetes_discovery"]

log = logging.getLogger("coe.discovery")

if TYPE_CHECKING:  # registry.k8s_watch needs the optional `kubernetes` extra
    from registry.k8s_watch import KubernetesDiscovery


@asynccontextmanager
async def kubernetes_discovery(
    settings: KubernetesDiscoverySettings,
    registry: Registry,
    check: Callable[[ExpertSpec], None],
    vet: Callable[[ExpertSpec], None] | None = None,
) -> AsyncIterator[KubernetesDiscovery | None]:
    """Watch labelled Services while the block runs (None when discovery is off).

    `vet` (blocking: it may resolve the endpoint's host) refuses a spec the `security` settings
    do not allow, before anything reaches its endpoint; `check` one the pool could not build.
    Both raise `ValueError`, as the admin API refuses them; a refused Service is logged and
    ignored (`Reconciler.upsert`)."""
    if not settings.enabled:
        yield None
        return
    try:
        from registry.k8s_discovery import DiscoveryOptions, Reconciler, pod_namespace
        from registry.k8s_watch import KubernetesDiscovery, ServiceWatcher, api_client
    except ImportError as exc:  # pragma: no cover - depends on the installed extras
        raise RuntimeError(
            "discovery.kubernetes.enabled needs the kubernetes client: "
            "pip install 'coe-gateway[kubernetes]'"
        ) from exc

    async def prepare(spec: ExpertSpec) -> ExpertSpec:
        if vet is not None:
            await anyio.to_thread.run_sync(vet, spec)
        spec = await anyio.to_thread.run_sync(with_pilots, spec)
        check(spec)
        return spec

    api = await anyio.to_thread.run_sync(api_client, settings.kubeconfig)
    options = DiscoveryOptions(
        label=settings.label,
        watch_timeout_s=settings.watch_timeout_s,
        resync_s=settings.resync_s,
        retry_s=settings.retry_s,
    )
    loop = asyncio.get_running_loop()
    namespaces = settings.namespaces or [pod_namespace()]
    watchers = [
        ServiceWatcher(api, ns, Reconciler(registry, ns, prepare), loop, options)
        for ns in namespaces
    ]
    discovery = KubernetesDiscovery(watchers)
    log.info("discovery: watching Services labelled %s in %s", settings.label, namespaces)
    await discovery.start(settings.initial_sync_s)
    try:
        yield discovery
    finally:
        await discovery.aclose()
        await anyio.to_thread.run_sync(api.close)
