"""`create_app(settings)`: the FastAPI application. Its lifespan owns every long-lived resource.

Start-up order: registry (open, seed on first start) and the affinity store beside it -> one
shared `httpx.AsyncClient` -> expert pool -> router (embedder loaded and warmed off the event
loop) -> ready. Shutdown closes them in
reverse. Nothing is built at import time.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

import anyio.to_thread
import httpx
from fastapi import FastAPI

from experts.base import Expert
from experts.factory import build_expert
from experts.retriever import RetrieverStore, with_pilots
from gateway import tracing
from gateway.affinity import Affinity, affinity_store
from gateway.auth import Auth, check_exposure
from gateway.breaker import Breakers, breaker_store
from gateway.discovery import kubernetes_discovery
from gateway.guard import SpecGuard, acheck_configured, check_configured
from gateway.guarded_http import guarded_client, guarded_sync_transport
from gateway.handlers import install_error_handlers, without_422
from gateway.key_stores import key_store
from gateway.limits import BodyLimitMiddleware
from gateway.metrics import Metrics
from gateway.pool import ExpertPool, mark_registry
from gateway.prober import Prober, probing
from gateway.quotas import Quotas
from gateway.routes import admin, chat, health, models, route
from gateway.routes import keys as key_routes
from gateway.routes import restore as restore_routes
from gateway.service import ChatService
from gateway.settings import Settings
from gateway.slots import slot_store
from gateway.state import GatewayState
from registry.base import Registry
from registry.factory import registry_from_url
from registry.spec import ExpertSpec
from registry.urls import redact_url
from routers.base import ExpertTable, Router
from routers.factory import build_router

if TYPE_CHECKING:
    from experts.local_models import LocalModelStore

__all__ = ["create_app"]

log = logging.getLogger("coe.app")
SEEDED = "seeded"
SEED_ACTOR = "config-seed"


def create_app(settings: Settings, *, router: Router | None = None) -> FastAPI:
    """Build the gateway. `router` overrides the configured one (tests, embedding in apps).
    `ConfigError` when a configured expert breaks the `security` rules."""
    check_configured(SpecGuard(settings.security), settings.experts)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        tracing.start(os.environ)  # off unless OTEL_TRACES_EXPORTER names one (gateway/tracing.py)
        try:
            async with _resources(settings, router) as state:
                app.state.coe = state
                yield
        finally:
            tracing.stop()

    app = FastAPI(title="coe-gateway", version="0.1.0", lifespan=lifespan)
    app.add_middleware(BodyLimitMiddleware, max_body_bytes=settings.server.max_body_bytes)
    for module in (chat, models, route, restore_routes, admin, key_routes, health):
        app.include_router(module.router)
    install_error_handlers(app)
    without_422(app)
    return app


@asynccontextmanager
async def _resources(settings: Settings, router: Router | None) -> AsyncIterator[GatewayState]:
    check_exposure(settings.auth, settings.server.host)
    metrics = Metrics()
    guard = SpecGuard(settings.security)
    registry = registry_from_url(
        settings.registry.resolved_url(), history_max=settings.security.history_max_entries
    )
    log.info("registry: %s", redact_url(settings.registry.resolved_url()))
    await registry.open()
    await mark_registry(registry)
    store = affinity_store(settings.registry.resolved_url(), settings.affinity.max_entries)
    await store.open()
    keys = key_store(settings.registry.resolved_url())
    await keys.open()
    quotas = Quotas.for_registry(settings.registry.resolved_url(), settings.limits.on_store_failure)
    upstream = settings.upstream
    breakers = Breakers(
        upstream.breaker_failures,
        upstream.breaker_cooldown_s,
        breaker_store(settings.registry.resolved_url()),
    )
    slots = slot_store(settings.registry.resolved_url())
    try:
        await _seed(registry, settings, guard)
        limits = httpx.Limits(
            max_connections=settings.upstream.max_connections,
            max_keepalive_connections=settings.upstream.max_keepalive_connections,
            keepalive_expiry=settings.upstream.keepalive_expiry_s,
        )
        client = guarded_client(guard.policy, limits=limits, timeout=httpx.Timeout(60.0))
        async with client as http:
            local_models = _local_model_store(settings)
            the_router = router or build_router(settings.router)
            retrievers = RetrieverStore(
                lambda: the_router.embedder,
                transport=lambda: guarded_sync_transport(guard.policy),
            )

            def build(spec: ExpertSpec) -> Expert:
                guard.check(spec)  # also what was stored by hand or by an older version
                return build_expert(
                    spec, http=http, local_models=local_models, retrievers=retrievers
                )

            pool = ExpertPool(
                registry,
                build,
                metrics,
                breakers=breakers,
                slots=slots,
            )
            affinity = Affinity(store, settings.affinity)
            service = ChatService(
                pool,
                the_router,
                metrics,
                affinity,
                failover=settings.upstream.failover,
                fusion=settings.fusion,
                retrieval=settings.retrieval,
            )
            state = GatewayState(
                settings, registry, the_router, pool, service, metrics, http, started_at=time.time()
            )
            state.keys = keys
            state.auth = Auth(keys, settings.auth, settings.server.host)
            state.quotas = quotas
            try:
                async with kubernetes_discovery(
                    settings.discovery.kubernetes, registry, pool.check, guard.check_resolved
                ) as discovery:
                    state.discovery = discovery
                    prober = Prober(pool, breakers, metrics, settings.health)
                    state.prober = prober
                    async with _serving(state, the_router, pool), probing(prober, settings.health):
                        yield state
            finally:
                state.ready = False
                await pool.aclose()
                local_models.close()
    finally:
        await slots.aclose()
        await breakers.store.aclose()
        await quotas.aclose()
        await keys.aclose()
        await store.aclose()
        await registry.aclose()


@asynccontextmanager
async def _serving(
    state: GatewayState, the_router: Router, pool: ExpertPool
) -> AsyncIterator[None]:
    """Warm up, then ready until the block ends."""
    # The embedder loads before any expert starts: transformers model loading is not safe to
    # run beside another load in the same process (see experts/local.py).
    await _warm_up(the_router, ExpertTable(revision=-1, experts=()))
    table = await pool.sync()
    await _warm_up(the_router, table)
    state.ready = True
    log.info("ready: router %s, %d experts", the_router.name, len(table.experts))
    try:
        yield
    finally:
        state.ready = False


async def _seed(registry: Registry, settings: Settings, guard: SpecGuard) -> None:
    """On the registry's first start, add the configured experts (once, ever)."""
    if not settings.registry.seed or await registry.get_meta(SEEDED):
        return
    for i, spec in enumerate(settings.experts):
        if await registry.get(spec.name) is None:
            await acheck_configured(guard, i, spec)  # before anything reaches its endpoint
            spec = await anyio.to_thread.run_sync(with_pilots, spec)
            await registry.add(spec, actor=SEED_ACTOR)
    await registry.set_meta(SEEDED, "1")
    log.info("seeded the registry with %d configured experts", len(settings.experts))


async def _warm_up(router: Router, table: ExpertTable) -> None:
    """Load the embedder and embed the exemplars now, not on the first request."""
    await anyio.to_thread.run_sync(router.route, "warm-up query", table)


def _local_model_store(settings: Settings) -> LocalModelStore:
    from experts.local_models import LocalModelStore  # torch: imported when the app starts

    local = settings.local
    return LocalModelStore(dtype=local.dtype, torch_threads=local.threads())
