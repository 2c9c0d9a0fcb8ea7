"""Fixtures for the `security` tests: a resolver the test controls, and a tripwire.

    fake_dns(monkeypatch, {"evil.test": ["169.254.169.254"]})   every check resolves so
    tripwire                                                     the TCP connections the
                                                                 gateway's clients opened

The tripwire fails the test at once if a client of the gateway (the shared async client, or a
sync one such as a remote index's) tries to connect anywhere but loopback: refused addresses
must be refused before any connect, and tests send traffic to loopback only.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpcore
import pytest

from gateway import netguard

__all__ = ["LOOPBACK", "fake_dns", "tripwire"]

LOOPBACK = ("127.", "::1")


def fake_dns(monkeypatch: pytest.MonkeyPatch, names: dict[str, list[str]]) -> None:
    """Resolve `names` as given (the dict may be changed later); anything else fails."""

    def lookup(host: str, port: int) -> list[str]:
        if host in names:
            return list(names[host])
        raise OSError(f"{host} does not resolve (fake DNS)")

    monkeypatch.setattr(netguard, "lookup", lookup)


@pytest.fixture
def tripwire(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    opened: list[str] = []
    real_async = httpcore.AnyIOBackend.connect_tcp
    real_sync = httpcore.SyncBackend.connect_tcp

    def record(host: str) -> None:
        opened.append(host)
        assert host.startswith(LOOPBACK), f"a connection to {host} was attempted"

    async def connect_async(self: Any, host: str, *args: Any, **kwargs: Any) -> Any:
        record(host)
        return await real_async(self, host, *args, **kwargs)

    def connect_sync(self: Any, host: str, *args: Any, **kwargs: Any) -> Any:
        record(host)
        return real_sync(self, host, *args, **kwargs)

    monkeypatch.setattr(httpcore.AnyIOBackend, "connect_tcp", connect_async)
    monkeypatch.setattr(httpcore.SyncBackend, "connect_tcp", connect_sync)
    yield opened
