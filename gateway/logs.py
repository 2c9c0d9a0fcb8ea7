"""Logging for `coe serve`: text (default) or one JSON object per line (`server.log_format`).

A JSON line holds `time` (UTC, ISO 8601), `level`, `logger`, `message`, `request_id` when the
record has one (an explicit `extra={"request_id": ...}` or the request being served: the chat
service sets `REQUEST_ID` per request, the id also returned as `x-request-id`), the trace and
span ids when tracing is on, and `exception` for a traceback. Bearer tokens and `sk-...` keys in
a message are masked; the gateway never logs its admin or upstream keys in the first place.
"""

from __future__ import annotations

import datetime
import json
import logging
import re
from contextvars import ContextVar
from typing import Any, Literal

from opentelemetry import trace

__all__ = ["REQUEST_ID", "JsonFormatter", "setup_logging"]

REQUEST_ID: ContextVar[str | None] = ContextVar("coe_request_id", default=None)
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
_SECRET = re.compile(r"(?i)(bearer\s+)[^\s\"',]+|\bsk-[A-Za-z0-9_\-]{8,}")


def _mask(text: str) -> str:
    return _SECRET.sub(lambda m: f"{m.group(1)}***" if m.group(1) else "sk-***", text)


class JsonFormatter(logging.Formatter):
    """One JSON object per record (module doc)."""

    def format(self, record: logging.LogRecord) -> str:
        when = datetime.datetime.fromtimestamp(record.created, tz=datetime.UTC)
        data: dict[str, Any] = {
            "time": when.isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": _mask(record.getMessage()),
        }
        request_id = getattr(record, "request_id", None) or REQUEST_ID.get()
        if request_id:
            data["request_id"] = request_id
        span = trace.get_current_span().get_span_context()
        if span.is_valid:
            data["trace_id"] = format(span.trace_id, "032x")
            data["span_id"] = format(span.span_id, "016x")
        if record.exc_info:
            data["exception"] = _mask(self.formatException(record.exc_info))
        return json.dumps(data, ensure_ascii=False, default=str)


def setup_logging(level: str, log_format: Literal["text", "json"]) -> None:
    """Configure the root logger (uvicorn's loggers propagate to it in JSON mode)."""
    handler = logging.StreamHandler()
    json_lines = log_format == "json"
    handler.setFormatter(JsonFormatter() if json_lines else logging.Formatter(TEXT_FORMAT))
    logging.basicConfig(level=level.upper(), handlers=[handler], force=True)
