"""The registry's change history: who changed which expert, when, from what to what.

Every backend records one `Change` in the same transaction as each add / update / remove, in
the backend itself (memory, a SQLite table, a Redis list), so replicas and the CLI share it.
It keeps the last `history_max` changes. Specs are stored redacted (`redacted_spec`): URL
credentials and secret-looking query parameters of the endpoint, and every `options` value
(at any depth) whose key looks like a secret (key, token, secret, password, authorization, ...).
A spec never holds an API key itself (`api_key_env` names a variable; the name is kept).

`actor` says who: "admin-api", "cli", "config-seed", "discovery:kubernetes:<ns>/<svc>", and
later the name of the admin key that made the change.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any, Literal
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from pydantic import BaseModel, ConfigDict, Field

from registry.spec import ExpertSpec
from registry.urls import redact_url

__all__ = [
    "DEFAULT_HISTORY_MAX",
    "UNKNOWN_ACTOR",
    "Action",
    "Change",
    "changed_fields",
    "new_change",
    "redacted_spec",
]

DEFAULT_HISTORY_MAX = 1000
UNKNOWN_ACTOR = "unknown"
REDACTED = "***"
Action = Literal["add", "update", "remove"]

_SECRET_WORDS = frozenset(
    {
        "key",
        "apikey",
        "token",
        "secret",
        "password",
        "passwd",
        "pwd",
        "authorization",
        "auth",
        "credential",
        "credentials",
        "cookie",
        "bearer",
        "signature",
    }
)
_WORD = re.compile(r"[A-Z]?[a-z0-9]+|[A-Z]+(?![a-z])")


class Change(BaseModel):
    """One registry change, as `history()` returns it (newest first)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    seq: int = Field(description="Increases with every change of this registry.")
    at: str = Field(description="UTC time, ISO 8601.")
    actor: str
    action: Action
    name: str
    before: dict[str, Any] | None = Field(description="The spec before (redacted); None: added.")
    after: dict[str, Any] | None = Field(description="The spec after (redacted); None: removed.")


def new_change(
    action: Action,
    name: str,
    before: ExpertSpec | None,
    after: ExpertSpec | None,
    actor: str,
    seq: int = 0,
) -> Change:
    """A change stamped now (UTC); the backend sets `seq`."""
    return Change(
        seq=seq,
        at=datetime.now(UTC).isoformat(timespec="milliseconds"),
        actor=actor or UNKNOWN_ACTOR,
        action=action,
        name=name,
        before=redacted_spec(before),
        after=redacted_spec(after),
    )


def redacted_spec(spec: ExpertSpec | None) -> dict[str, Any] | None:
    """`spec` as JSON with its secrets replaced by "***" (module docstring)."""
    if spec is None:
        return None
    data = spec.model_dump(mode="json")
    if data.get("endpoint"):
        data["endpoint"] = redact_endpoint(data["endpoint"])
    data["options"] = _redact_values(data.get("options") or {})
    return data


def redact_endpoint(url: str) -> str:
    """A URL without credentials: its whole user info, and the values of secret-looking query
    parameters, become "***"."""
    url = redact_url(url)
    try:
        parts = urlsplit(url)
    except ValueError:
        return f"{url.partition(':')[0]}:<unparsable URL>"
    _, at, host = parts.netloc.rpartition("@")
    netloc = f"{REDACTED}@{host}" if at else parts.netloc  # a user name can be a token too
    pairs = parse_qsl(parts.query, keep_blank_values=True)
    query = parts.query
    if any(_secret_key(k) for k, _ in pairs):
        query = urlencode([(k, REDACTED if _secret_key(k) else v) for k, v in pairs], safe="*:")
    if (netloc, query) == (parts.netloc, parts.query):
        return url
    return urlunsplit(parts._replace(netloc=netloc, query=query))


def _secret_key(key: str) -> bool:
    words = [w.lower() for w in _WORD.findall(key)]
    return any(w in _SECRET_WORDS for w in words) or key.lower().replace("-", "_") in _SECRET_WORDS


def _redact_values(value: Any) -> Any:
    if isinstance(value, dict):
        return {
            k: REDACTED if _secret_key(str(k)) and v is not None else _redact_values(v)
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [_redact_values(v) for v in value]
    return value


def changed_fields(change: Change) -> dict[str, tuple[Any, Any]]:
    """Field -> (before, after) for the fields an update changed; {} for add and remove."""
    if change.before is None or change.after is None:
        return {}
    keys = dict.fromkeys([*change.before, *change.after])
    return {
        k: (change.before.get(k), change.after.get(k))
        for k in keys
        if change.before.get(k) != change.after.get(k)
    }
