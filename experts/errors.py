"""Exceptions raised by experts. Foreign exceptions (httpx, torch) are translated here.

Tree::

    ExpertError                     any failure of one expert
    ├── ExpertUnavailable           could not connect / overloaded / not loaded   -> 503 (try next)
    │   └── ExpertBusy              at its global concurrency cap (all replicas)   -> 429 (try next)
    ├── ExpertTimeout               connect or read timed out                      -> 504
    ├── UpstreamError               upstream answered an error or garbage         -> 502
    │   └── UpstreamRejected        upstream said 4xx about the request itself     -> that 4xx
    └── ExpertCancelled             the expert was removed or closed mid-request   -> 503

`ExpertError.before_first_byte` tells the gateway whether a fallback is still possible.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import httpx

__all__ = [
    "ExpertBusy",
    "ExpertCancelled",
    "ExpertError",
    "ExpertTimeout",
    "ExpertUnavailable",
    "UpstreamError",
    "UpstreamRejected",
    "map_httpx_errors",
]


class ExpertError(Exception):
    """One expert failed to answer."""

    def __init__(self, message: str, *, expert: str = "", before_first_byte: bool = True) -> None:
        super().__init__(message)
        self.message = message
        self.expert = expert
        self.before_first_byte = before_first_byte


class ExpertUnavailable(ExpertError):
    """The expert cannot take the request (connection refused, not loaded, overloaded)."""


class ExpertBusy(ExpertUnavailable):
    """The expert has as many requests in flight as its `global_max_concurrency`, counted over
    every replica: not a failure (the breaker ignores it); the next candidate is tried."""


class ExpertTimeout(ExpertError):
    """The expert did not answer in time."""


class UpstreamError(ExpertError):
    """The upstream server answered with an error status or an unreadable body."""

    def __init__(
        self, message: str, *, expert: str = "", status: int = 502, before_first_byte: bool = True
    ) -> None:
        super().__init__(message, expert=expert, before_first_byte=before_first_byte)
        self.status = status


class UpstreamRejected(UpstreamError):
    """The upstream refused the request itself (4xx other than 408/429): no point retrying."""


class ExpertCancelled(ExpertError):
    """The expert was closed (removed from the registry) while the request waited."""


@contextlib.contextmanager
def map_httpx_errors(expert: str, *, before_first_byte: bool = True) -> Iterator[None]:
    """Translate httpx exceptions raised inside the block into the tree above."""
    try:
        yield
    except httpx.TimeoutException as exc:
        raise ExpertTimeout(
            f"expert {expert!r} timed out ({type(exc).__name__})",
            expert=expert,
            before_first_byte=before_first_byte,
        ) from exc
    except (httpx.ConnectError, httpx.RemoteProtocolError, httpx.NetworkError) as exc:
        raise ExpertUnavailable(
            f"expert {expert!r} unreachable ({type(exc).__name__})",
            expert=expert,
            before_first_byte=before_first_byte,
        ) from exc
    except httpx.HTTPError as exc:
        raise UpstreamError(
            f"expert {expert!r} transport error ({type(exc).__name__})",
            expert=expert,
            before_first_byte=before_first_byte,
        ) from exc
