"""Kubernetes discovery: labelled Services become registry entries, and leave with them.

One `ServiceWatcher` per namespace runs the official `kubernetes` client in a daemon thread,
informer style::

    LIST services (label selector)  -> Reconciler.resync(all of them)     resourceVersion R
    WATCH from R                    -> Reconciler.upsert / delete per event, R advances
      the stream ends (server timeout)       -> WATCH again from R
      the connection drops mid-stream        -> WATCH again from R (after a short backoff)
      410 Gone (R too old; event or status)  -> LIST again and resync
      every `resync_s`                       -> LIST again and resync (heals any drift)

R advances only after an event is applied to the registry, so an event that was cut off or
could not be applied is seen again; the `Reconciler` is idempotent (each call makes the
registry match one Service), so a replay neither duplicates nor loses an entry, and a re-list
removes the entries of Services deleted while nobody watched.

A discovered expert is marked `managed_by: kubernetes:<namespace>/<service>`. Discovery only
changes or removes experts it marked, never one added through the admin API or the config; a
Service naming an expert that exists under another owner is refused with a warning. Several
gateway replicas may each run discovery against one shared registry: every write is
idempotent, so they agree.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from registry.base import ExpertExists, ExpertNotFound, Registry
from registry.k8s_services import (
    EXPERT_LABEL,
    MANAGED_PREFIX,
    ServiceError,
    managed_by,
    service_key,
    spec_from_service,
)
from registry.spec import ExpertKind, ExpertSpec, ExpertSpecPatch

__all__ = ["DiscoveryOptions", "Reconciler", "WatchStatus", "pod_namespace"]

log = logging.getLogger("coe.discovery")
Prepare = Callable[[ExpertSpec], Awaitable[ExpertSpec]]
"""Completes or checks a spec before it is written (pilot texts, buildability); `ValueError`
refuses it."""
SERVICE_ACCOUNT_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")


def pod_namespace(path: Path = SERVICE_ACCOUNT_NAMESPACE) -> str:
    """The namespace this pod runs in (its service account's), else ``default``."""
    try:
        return path.read_text().strip() or "default"
    except OSError:
        return "default"


async def _as_is(spec: ExpertSpec) -> ExpertSpec:
    return spec


class Reconciler:
    """Makes the registry's experts owned by one namespace match that namespace's Services."""

    def __init__(self, registry: Registry, namespace: str, prepare: Prepare = _as_is) -> None:
        self._registry = registry
        self._owner_prefix = f"{MANAGED_PREFIX}{namespace}/"
        self._prepare = prepare

    async def resync(self, services: list[Mapping[str, Any]]) -> None:
        """After a LIST: apply every Service, remove entries of Services no longer there."""
        present = {managed_by(*service_key(s).split("/", 1)) for s in services}
        for service in services:
            await self.upsert(service)
        for spec in await self._owned():
            if spec.managed_by not in present:
                await self._remove(spec, "its Service is gone")

    async def upsert(self, service: Mapping[str, Any]) -> None:
        """ADDED / MODIFIED: the registry holds this Service's expert, as it says now."""
        owner = managed_by(*service_key(service).split("/", 1))
        try:
            wanted = spec_from_service(service)
        except ServiceError as exc:  # keep what it was: a typo must not take an expert down
            log.warning("discovery: %s; the Service is ignored until it is fixed", exc)
            return
        for spec in await self._owned():  # the label now names another expert
            if spec.managed_by == owner and spec.name != wanted.name:
                await self._remove(spec, f"its Service now names {wanted.name!r}")
        current = await self._registry.get(wanted.name)
        if current is not None and current.managed_by != owner:
            log.warning(
                "discovery: Service %s names expert %r, which exists and is managed by %s; "
                "the Service is ignored",
                service_key(service),
                wanted.name,
                current.managed_by or "the admin API or config",
            )
            return
        if current is not None and _same(current, wanted):
            return
        try:
            prepared = await self._prepare(wanted)
        except ValueError as exc:  # e.g. a retriever whose pilot texts cannot be read yet
            log.warning(
                "discovery: Service %s: expert %r cannot be used: %s; retried at the next "
                "change or resync",
                service_key(service),
                wanted.name,
                exc,
            )
            return
        await self._write(current, prepared)

    async def delete(self, service: Mapping[str, Any]) -> None:
        """DELETED: the Service's expert leaves the registry."""
        owner = managed_by(*service_key(service).split("/", 1))
        for spec in await self._owned():
            if spec.managed_by == owner:
                await self._remove(spec, "its Service was deleted")

    async def _owned(self) -> list[ExpertSpec]:
        return [
            spec
            for spec in await self._registry.list()
            if spec.managed_by is not None and spec.managed_by.startswith(self._owner_prefix)
        ]

    async def _write(self, current: ExpertSpec | None, spec: ExpertSpec) -> None:
        if current is None:
            try:
                await self._registry.add(spec, actor=_actor(spec))
                log.info("discovery: added expert %r (%s)", spec.name, spec.managed_by)
                return
            except ExpertExists:  # another replica added it first: make it ours as we see it
                pass
        fields = spec.model_dump(exclude={"name", "managed_by"})
        patch = ExpertSpecPatch.model_validate(fields)
        await self._registry.update(spec.name, patch, actor=_actor(spec))
        log.info("discovery: updated expert %r (%s)", spec.name, spec.managed_by)

    async def _remove(self, spec: ExpertSpec, why: str) -> None:
        try:
            await self._registry.remove(spec.name, actor=_actor(spec))
            log.info("discovery: removed expert %r (%s): %s", spec.name, spec.managed_by, why)
        except ExpertNotFound:  # another replica removed it first
            pass


def _actor(spec: ExpertSpec) -> str:
    """Who the registry history names: `discovery:kubernetes:<namespace>/<service>`."""
    return f"discovery:{spec.managed_by}"


def _same(current: ExpertSpec, wanted: ExpertSpec) -> bool:
    """Equal, counting a retriever's pilot texts (added when it was written) as the Service's."""
    if wanted.kind is ExpertKind.RETRIEVER and not wanted.exemplars:
        wanted = wanted.model_copy(update={"exemplars": current.exemplars})
    return current == wanted


@dataclass(frozen=True)
class DiscoveryOptions:
    """How a watcher talks to the API server."""

    label: str = EXPERT_LABEL
    watch_timeout_s: int = 300
    """Server-side timeout of one WATCH request; the watcher then watches again from R."""
    resync_s: float = 600.0
    """A full LIST and resync this often, whatever the watch says."""
    retry_s: float = 1.0
    """First backoff after an error; doubles up to `max_retry_s`."""
    max_retry_s: float = 30.0
    apply_timeout_s: float = 30.0


@dataclass
class WatchStatus:
    """What `/readyz` shows of one namespace's watch."""

    namespace: str
    state: str = "starting"
    resource_version: str | None = None
    events: int = 0
    lists: int = 0
    last_error: str | None = None
    synced: threading.Event = field(default_factory=threading.Event, repr=False)

    def as_dict(self) -> dict[str, Any]:
        return {
            "state": self.state,
            "resource_version": self.resource_version,
            "events": self.events,
            "lists": self.lists,
            "last_error": self.last_error,
        }
