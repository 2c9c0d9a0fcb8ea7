"""`GatewayState`: what the lifespan builds and every route uses (one object, no globals)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import httpx

from gateway.auth import Auth
from gateway.keys import KeyStore
from gateway.metrics import Metrics
from gateway.pool import ExpertPool
from gateway.prober import Prober
from gateway.quotas import Quotas
from gateway.service import ChatService
from gateway.settings import Settings
from registry.base import Registry
from routers.base import Router

if TYPE_CHECKING:
    from registry.k8s_watch import KubernetesDiscovery

__all__ = ["GatewayState"]


@dataclass
class GatewayState:
    settings: Settings
    registry: Registry
    router: Router
    pool: ExpertPool
    service: ChatService
    metrics: Metrics
    http: httpx.AsyncClient
    ready: bool = False
    started_at: float = field(default=0.0)
    discovery: KubernetesDiscovery | None = None
    keys: KeyStore | None = None
    auth: Auth | None = None
    """None: every /v1 request is open (no key store)."""
    quotas: Quotas | None = None
    prober: Prober | None = None
