"""HTTP clients that cannot be pointed at a refused address, whatever DNS says at call time.

The registration checks (`gateway/guard.py`) see an endpoint's name once; a name can later be
re-pointed (DNS rebinding) at 169.254.169.254. So every *connection* the gateway opens to an
expert goes through `GuardedBackend`: it resolves the host itself (`netguard.lookup`), checks
every address against `security.endpoint_allow` / `endpoint_deny`, and connects to the checked
address (never re-resolving), or fails with `httpcore.ConnectError` before any packet leaves.
TLS still verifies the certificate against the host name (httpcore passes the origin's name as
`server_hostname`, not the address).

    http = guarded_client(policy, limits=..., timeout=...)   # the gateway's shared client
    transport = guarded_sync_transport(policy)               # a sync client's (remote indexes)

Redirects are never followed (`follow_redirects=False`): a 3xx from an upstream is an upstream
error, not a second request to wherever `Location` points. A request hook also checks every
request's host (name rules, and its addresses, cached `RESOLVE_TTL_S`), which covers requests
sent through an environment-configured proxy, where the proxy, not this process, connects.
"""

from __future__ import annotations

import time
from collections.abc import Iterable

import anyio
import httpcore
import httpx

from gateway.netguard import EndpointRefused, HostPolicy, achecked_addresses, checked_addresses

__all__ = [
    "RESOLVE_TTL_S",
    "GuardedBackend",
    "GuardedSyncBackend",
    "guarded_client",
    "guarded_sync_transport",
]

RESOLVE_TTL_S = 5.0
"""How long the request hook trusts one check of a host (connections always check afresh)."""
_MAX_CACHED = 1024

SocketOptions = Iterable[
    tuple[int, int, int] | tuple[int, int, bytes | bytearray] | tuple[int, int, None, int]
]


class GuardedBackend(httpcore.AsyncNetworkBackend):
    """An httpcore network backend that connects only to checked addresses."""

    def __init__(
        self, policy: HostPolicy, inner: httpcore.AsyncNetworkBackend | None = None
    ) -> None:
        self._policy = policy
        self._inner = inner if inner is not None else httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: SocketOptions | None = None,
    ) -> httpcore.AsyncNetworkStream:
        try:
            with anyio.fail_after(timeout):
                addresses = await achecked_addresses(self._policy, host, port)
        except TimeoutError as exc:
            raise httpcore.ConnectTimeout(f"resolving {host!r} timed out") from exc
        except EndpointRefused as exc:
            raise httpcore.ConnectError(f"not connecting: {exc}") from exc
        except OSError as exc:
            raise httpcore.ConnectError(f"cannot resolve {host!r}: {exc}") from exc
        error: Exception = httpcore.ConnectError(f"{host!r} has no address")
        for address in addresses:
            try:
                return await self._inner.connect_tcp(
                    address, port, timeout, local_address, socket_options
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                error = exc
        raise error

    async def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: SocketOptions | None = None
    ) -> httpcore.AsyncNetworkStream:
        raise httpcore.ConnectError("unix sockets are not expert endpoints")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


class GuardedSyncBackend(httpcore.NetworkBackend):
    """`GuardedBackend` for synchronous clients."""

    def __init__(self, policy: HostPolicy, inner: httpcore.NetworkBackend | None = None) -> None:
        self._policy = policy
        self._inner = inner if inner is not None else httpcore.SyncBackend()

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: SocketOptions | None = None,
    ) -> httpcore.NetworkStream:
        try:
            addresses = checked_addresses(self._policy, host, port)
        except EndpointRefused as exc:
            raise httpcore.ConnectError(f"not connecting: {exc}") from exc
        except OSError as exc:
            raise httpcore.ConnectError(f"cannot resolve {host!r}: {exc}") from exc
        error: Exception = httpcore.ConnectError(f"{host!r} has no address")
        for address in addresses:
            try:
                return self._inner.connect_tcp(
                    address, port, timeout, local_address, socket_options
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                error = exc
        raise error

    def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: SocketOptions | None = None
    ) -> httpcore.NetworkStream:
        raise httpcore.ConnectError("unix sockets are not expert endpoints")


class _RequestCheck:
    """The request hook: refuse a request whose host is refused (cached per host)."""

    def __init__(self, policy: HostPolicy) -> None:
        self._policy = policy
        self._seen: dict[tuple[str, int], tuple[float, str | None]] = {}

    async def __call__(self, request: httpx.Request) -> None:
        url = request.url
        key = (url.host, url.port or (443 if url.scheme == "https" else 80))
        now = time.monotonic()
        expires, reason = self._seen.get(key, (0.0, None))
        if expires <= now:
            reason = None
            try:
                await achecked_addresses(self._policy, *key, strict=False)
            except EndpointRefused as exc:
                reason = str(exc)
            if len(self._seen) >= _MAX_CACHED:
                self._seen.clear()
            self._seen[key] = (now + RESOLVE_TTL_S, reason)
        if reason is not None:
            raise httpx.ConnectError(f"not connecting: {reason}", request=request)


def guarded_client(
    policy: HostPolicy,
    *,
    limits: httpx.Limits,
    timeout: httpx.Timeout,
    backend: httpcore.AsyncNetworkBackend | None = None,
) -> httpx.AsyncClient:
    """The shared upstream client: guarded connections, no redirects (module docstring)."""
    transport = httpx.AsyncHTTPTransport(limits=limits)
    transport._pool = httpcore.AsyncConnectionPool(  # the same pool, with our backend
        ssl_context=httpx.create_ssl_context(),
        max_connections=limits.max_connections,
        max_keepalive_connections=limits.max_keepalive_connections,
        keepalive_expiry=limits.keepalive_expiry,
        network_backend=GuardedBackend(policy, backend),
    )
    return httpx.AsyncClient(
        transport=transport,
        timeout=timeout,
        follow_redirects=False,
        event_hooks={"request": [_RequestCheck(policy)]},
    )


def guarded_sync_transport(
    policy: HostPolicy, backend: httpcore.NetworkBackend | None = None
) -> httpx.HTTPTransport:
    """A synchronous transport whose connections are checked like `guarded_client`'s."""
    transport = httpx.HTTPTransport()
    transport._pool = httpcore.ConnectionPool(
        ssl_context=httpx.create_ssl_context(), network_backend=GuardedSyncBackend(policy, backend)
    )
    return transport
