"""Error handlers (every error in OpenAI's shape) and the error responses each route documents."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from experts.errors import ExpertBusy, ExpertError
from gateway.errors import GatewayError, HttpError, error_from_exception, http_error
from gateway.protocol import ErrorResponse
from gateway.quotas import RateLimited
from registry.base import RegistryError

__all__ = ["error_responses", "install_error_handlers", "without_422"]

log = logging.getLogger("coe.app")

_WHY = {
    400: "Invalid request: malformed JSON or a bad value (`param` names the field)",
    401: "Missing, unknown or revoked API key (admin key for /admin)",
    403: "The key may not do this, or the admin API is disabled",
    404: "No such model, expert or key",
    409: "Conflicts with what exists (a name taken, an expert managed by discovery)",
    413: "Request body larger than server.max_body_bytes",
    429: "Over a key's rate limit or budget (`retry-after` says when to retry)",
    502: "The expert answered with an error",
    503: "No expert can take the request, or a store is unreachable",
    504: "The expert did not answer in time",
}


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` for these error statuses, each with OpenAI's error body."""
    return {status: {"model": ErrorResponse, "description": _WHY[status]} for status in statuses}


def install_error_handlers(app: FastAPI) -> None:
    """Every error, ours or the framework's, in OpenAI's shape with its status."""

    def respond(error: HttpError) -> JSONResponse:
        return JSONResponse(error.body.model_dump(), status_code=error.status)

    async def on_gateway_error(request: Request, exc: Exception) -> JSONResponse:
        error = error_from_exception(exc)
        if error.status >= 500:
            log.warning("%s %s -> %d: %s", request.method, request.url.path, error.status, exc)
        response = respond(error)
        if isinstance(exc, RateLimited):
            response.headers["retry-after"] = str(exc.retry_after_s)
        elif isinstance(exc, ExpertBusy):
            response.headers["retry-after"] = "1"
        return response

    async def on_validation(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError | ValidationError)
        errors = exc.errors()
        if any(e.get("type") == "json_invalid" for e in errors):
            return respond(
                http_error(
                    400, "request body is not valid JSON", "invalid_request_error", "invalid_json"
                )
            )
        first = errors[0] if errors else {}
        loc = [str(p) for p in first.get("loc", ()) if p != "body"]
        details = "; ".join(
            f"{'.'.join(str(p) for p in e.get('loc', ()) if p != 'body') or 'body'}: {e.get('msg')}"
            for e in errors[:5]
        )
        # 400, as OpenAI and vLLM answer invalid parameters (the official client raises
        # BadRequestError for it; a 422 would surface as UnprocessableEntityError)
        return respond(
            http_error(
                400, details, "invalid_request_error", "invalid_value", ".".join(loc) or None
            )
        )

    async def on_http(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        type_ = "not_found_error" if exc.status_code == 404 else "invalid_request_error"
        response = respond(http_error(exc.status_code, str(exc.detail), type_, None))
        response.headers.update(exc.headers or {})
        if exc.status_code == 405:  # every method of the path, not only its first route's
            response.headers["allow"] = ", ".join(_allowed(request))
        return response

    async def on_unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("%s %s failed", request.method, request.url.path)
        return respond(error_from_exception(exc))

    for kind in (GatewayError, ExpertError, RegistryError):
        app.add_exception_handler(kind, on_gateway_error)
    app.add_exception_handler(RequestValidationError, on_validation)
    app.add_exception_handler(ValidationError, on_validation)
    app.add_exception_handler(StarletteHTTPException, on_http)
    app.add_exception_handler(Exception, on_unexpected)


def without_422(app: FastAPI) -> None:
    """Drop FastAPI's default 422 from the OpenAPI document: invalid requests get a 400 here
    (as OpenAI and vLLM answer), documented per route."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = build()
            for path in schema.get("paths", {}).values():
                for operation in path.values():
                    operation.get("responses", {}).pop("422", None)
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def _allowed(request: Request) -> list[str]:
    """The methods the routes matching this request's path serve (a route whose path matches
    but whose methods do not is a PARTIAL match)."""
    methods: set[str] = set()
    for route in request.app.router.routes:
        if route.matches(request.scope)[0] is not Match.NONE:
            methods |= set(getattr(route, "methods", None) or ())
    return sorted(methods)
