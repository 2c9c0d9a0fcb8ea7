"""The LIST/WATCH loop of Kubernetes discovery (see `registry.k8s_discovery` for the design).

`KubernetesDiscovery` runs one `ServiceWatcher` per namespace, each in a daemon thread with the
official (synchronous) `kubernetes` client; registry writes are handed to the gateway's event
loop and waited for, so events are applied one at a time, in order.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Coroutine, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from registry.k8s_discovery import DiscoveryOptions, Reconciler, WatchStatus

if TYPE_CHECKING:
    from kubernetes.client import ApiClient

__all__ = ["KubernetesDiscovery", "ServiceWatcher", "api_client"]

log = logging.getLogger("coe.discovery")
GONE = 410


def api_client(kubeconfig: Path | None = None) -> ApiClient:
    """A client for the cluster: in-cluster service account when running in a pod and no
    kubeconfig is named, else the kubeconfig file (`$KUBECONFIG` or ~/.kube/config)."""
    import os

    from kubernetes import client
    from kubernetes import config as kube_config

    config: Any = kube_config  # untyped
    configuration = client.Configuration()
    if kubeconfig is None and os.environ.get("KUBERNETES_SERVICE_HOST"):
        config.load_incluster_config(client_configuration=configuration)
    else:
        path = str(kubeconfig) if kubeconfig is not None else None
        config.load_kube_config(config_file=path, client_configuration=configuration)
    return client.ApiClient(configuration)


class ServiceWatcher:
    """LIST then WATCH the labelled Services of one namespace, for as long as it runs."""

    def __init__(
        self,
        api: ApiClient,
        namespace: str,
        reconciler: Reconciler,
        loop: asyncio.AbstractEventLoop,
        options: DiscoveryOptions,
    ) -> None:
        from kubernetes import client

        self._core = client.CoreV1Api(api)
        self._namespace = namespace
        self._reconciler = reconciler
        self._loop = loop
        self._options = options
        self._stop = threading.Event()
        self._watch: Any = None
        self.status = WatchStatus(namespace)

    def stop(self) -> None:
        self._stop.set()
        if self._watch is not None:
            self._watch.stop()

    def run(self) -> None:
        """The thread's body: never raises; backs off after errors, stops on `stop()`."""
        from kubernetes.client.exceptions import ApiException

        failures = 0
        listed_at = 0.0
        while not self._stop.is_set():
            try:
                if self.status.resource_version is None or (
                    time.monotonic() - listed_at >= self._options.resync_s
                ):
                    self._list_and_resync()
                    listed_at = time.monotonic()
                self._watch_once()
                failures = 0
                continue
            except ApiException as exc:
                if exc.status == GONE:  # R is too old: only a new LIST is complete
                    log.info("discovery %s: watch expired (410 Gone), listing again", self.name)
                    self.status.resource_version = None
                    self.status.last_error = "410 Gone"
                    continue
                self._failed(f"API server answered {exc.status} {exc.reason}")
            except Exception as exc:  # dropped connection, timeout, registry down, ...
                if self._stop.is_set():  # stop() shuts the watch's socket down: expected
                    break
                self._failed(f"{type(exc).__name__}: {exc}")
            failures += 1
            delay = min(self._options.max_retry_s, self._options.retry_s * 2 ** (failures - 1))
            self._stop.wait(delay)
        self.status.state = "stopped"

    @property
    def name(self) -> str:
        return f"namespace {self._namespace!r}"

    def _failed(self, error: str) -> None:
        self.status.state = "retrying"
        self.status.last_error = error
        log.warning(
            "discovery %s: %s; resuming from resourceVersion %s",
            self.name,
            error,
            self.status.resource_version or "(a new list)",
        )

    def _list_and_resync(self) -> None:
        listing: Any = self._core.list_namespaced_service(  # raw: _preload_content=False
            self._namespace,
            label_selector=self._options.label,
            _preload_content=False,
            _request_timeout=self._options.apply_timeout_s,
        )
        try:
            body = _json(listing.data)
        finally:
            listing.release_conn()
        services = list(body.get("items") or [])
        for service in services:  # a list's items carry no apiVersion/kind, nor, at times,
            service.setdefault("metadata", {}).setdefault("namespace", self._namespace)
        self._apply(self._reconciler.resync(services))
        self.status.resource_version = str(body["metadata"]["resourceVersion"])
        self.status.lists += 1
        self.status.state = "watching"
        self.status.synced.set()
        log.info(
            "discovery %s: %d labelled Services at resourceVersion %s",
            self.name,
            len(services),
            self.status.resource_version,
        )

    def _watch_once(self) -> None:
        """One WATCH request from R; returns when the server ends it or `stop()` is called."""
        from kubernetes import watch

        self._watch = cast(Any, watch).Watch()
        options = self._options
        stream = self._watch.stream(
            self._core.list_namespaced_service,
            self._namespace,
            label_selector=options.label,
            resource_version=self.status.resource_version,
            allow_watch_bookmarks=True,
            timeout_seconds=options.watch_timeout_s,
            _request_timeout=(options.apply_timeout_s, options.watch_timeout_s + 30),
        )
        for event in stream:
            if self._stop.is_set():
                return
            self._on_event(str(event["type"]), event["raw_object"])
        self.status.state = "watching"

    def _on_event(self, kind: str, service: dict[str, Any]) -> None:
        if kind in ("ADDED", "MODIFIED"):
            self._apply(self._reconciler.upsert(service))
        elif kind == "DELETED":
            self._apply(self._reconciler.delete(service))
        version = (service.get("metadata") or {}).get("resourceVersion")
        if version:  # advanced only once applied: a cut-off event is seen again
            self.status.resource_version = str(version)
        self.status.events += 1

    def _apply(self, step: Coroutine[Any, Any, None]) -> None:
        future = asyncio.run_coroutine_threadsafe(step, self._loop)
        future.result(timeout=self._options.apply_timeout_s)


def _json(data: bytes) -> Mapping[str, Any] | Any:
    import json

    return json.loads(data)


class KubernetesDiscovery:
    """Every namespace's watcher, started and stopped together."""

    def __init__(self, watchers: list[ServiceWatcher]) -> None:
        self._watchers = watchers
        self._threads: list[threading.Thread] = []

    async def start(self, wait_s: float) -> None:
        """Start watching; wait up to `wait_s` for every namespace's first list."""
        for watcher in self._watchers:
            thread = threading.Thread(
                target=watcher.run, name=f"coe-discovery-{watcher.name}", daemon=True
            )
            thread.start()
            self._threads.append(thread)
        deadline = time.monotonic() + wait_s
        for watcher in self._watchers:
            while not watcher.status.synced.is_set() and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            if not watcher.status.synced.is_set():
                log.warning(
                    "discovery %s: not listed after %.0f s (%s); serving the registry as it is",
                    watcher.name,
                    wait_s,
                    watcher.status.last_error or "no answer yet",
                )

    async def aclose(self) -> None:
        for watcher in self._watchers:
            watcher.stop()
        for thread in self._threads:  # a thread blocked in a read ends with its timeout
            await asyncio.to_thread(thread.join, 2.0)

    def status(self) -> dict[str, Any]:
        return {w.status.namespace: w.status.as_dict() for w in self._watchers}
