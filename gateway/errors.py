"""The gateway's exceptions and their one mapping to HTTP status + OpenAI error body.

Tree::

    GatewayError                        status  type
    ├── InvalidRequest                  400     invalid_request_error
    ├── Unauthorized                    401     authentication_error
    ├── Forbidden                       403     permission_error
    ├── NotFound                        404     not_found_error
    │   └── ModelNotFound               404     invalid_request_error (code model_not_found)
    ├── Conflict                        409     conflict_error
    ├── PayloadTooLarge                 413     invalid_request_error
    ├── NoHealthyExpert                 503     service_unavailable
    └── ServiceUnavailable              503     service_unavailable (a store is unreachable)

Foreign exceptions are translated by `error_from_exception`: experts' `ExpertError` tree
(503/504/502/upstream 4xx) and the registry's (404/409/503). Anything else is a 500 whose
details stay in the log, not in the response.
"""

from __future__ import annotations

from dataclasses import dataclass

from experts.errors import (
    ExpertBusy,
    ExpertCancelled,
    ExpertError,
    ExpertTimeout,
    ExpertUnavailable,
    UpstreamError,
    UpstreamRejected,
)
from gateway.protocol import ErrorBody, ErrorResponse
from registry.base import ExpertExists, ExpertNotFound, RegistryError

__all__ = [
    "Conflict",
    "Forbidden",
    "GatewayError",
    "HttpError",
    "InvalidRequest",
    "ModelNotFound",
    "NoHealthyExpert",
    "NotFound",
    "PayloadTooLarge",
    "ServiceUnavailable",
    "Unauthorized",
    "error_from_exception",
    "http_error",
]


class GatewayError(Exception):
    status = 500
    type = "server_error"
    code: str | None = None

    def __init__(self, message: str, *, param: str | None = None, code: str | None = None):
        super().__init__(message)
        self.message = message
        self.param = param
        if code is not None:
            self.code = code


class InvalidRequest(GatewayError):
    status, type = 400, "invalid_request_error"


class Unauthorized(GatewayError):
    status, type, code = 401, "authentication_error", "invalid_api_key"


class Forbidden(GatewayError):
    status, type = 403, "permission_error"


class NotFound(GatewayError):
    status, type = 404, "not_found_error"


class ModelNotFound(NotFound):
    type, code = "invalid_request_error", "model_not_found"


class Conflict(GatewayError):
    status, type = 409, "conflict_error"


class PayloadTooLarge(GatewayError):
    status, type, code = 413, "invalid_request_error", "request_too_large"


class NoHealthyExpert(GatewayError):
    status, type, code = 503, "service_unavailable", "no_healthy_expert"


class ServiceUnavailable(GatewayError):
    status, type, code = 503, "service_unavailable", "unavailable"


@dataclass(frozen=True, slots=True)
class HttpError:
    """An error ready to send: status and OpenAI-shaped body."""

    status: int
    body: ErrorResponse

    def json(self) -> str:
        return self.body.model_dump_json()


def http_error(
    status: int, message: str, type_: str, code: str | None, param: str | None = None
) -> HttpError:
    """An `HttpError` from its parts."""
    body = ErrorBody(message=message, type=type_, param=param, code=code)
    return HttpError(status, ErrorResponse(error=body))


def error_from_exception(exc: BaseException) -> HttpError:
    """The one place that turns any exception into status + OpenAI error body."""
    if isinstance(exc, GatewayError):
        return http_error(exc.status, exc.message, exc.type, exc.code, exc.param)
    if isinstance(exc, ExpertError):
        return _expert_error(exc)
    if isinstance(exc, ExpertExists):
        return http_error(409, str(exc), "conflict_error", "expert_exists")
    if isinstance(exc, ExpertNotFound):
        message = str(exc.args[0]) if exc.args else "expert not found"
        return http_error(404, message, "not_found_error", "expert_not_found")
    if isinstance(exc, RegistryError):
        return http_error(
            503, f"registry unavailable: {exc}", "service_unavailable", "registry_unavailable"
        )
    return http_error(500, "internal error (see the gateway log)", "server_error", None)


def _expert_error(exc: ExpertError) -> HttpError:
    if isinstance(exc, UpstreamRejected):
        return http_error(exc.status, exc.message, "invalid_request_error", "upstream_rejected")
    if isinstance(exc, ExpertTimeout):
        return http_error(504, exc.message, "timeout_error", "upstream_timeout")
    if isinstance(exc, UpstreamError):
        return http_error(502, exc.message, "upstream_error", "upstream_error")
    if isinstance(exc, ExpertBusy):
        return http_error(429, exc.message, "rate_limit_error", "expert_busy")
    if isinstance(exc, ExpertUnavailable | ExpertCancelled):
        return http_error(503, exc.message, "service_unavailable", "expert_unavailable")
    return http_error(502, exc.message, "upstream_error", "upstream_error")
