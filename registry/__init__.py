"""Where expert specs live: the `Registry` protocol, its backends and `registry_from_url`."""

from registry.base import ExpertExists, ExpertNotFound, Registry, RegistryError, poll_revisions
from registry.factory import registry_from_url
from registry.memory import MemoryRegistry, MemoryStore
from registry.redis import RedisRegistry
from registry.spec import NAME_PATTERN, ExpertKind, ExpertSpec, ExpertSpecPatch
from registry.sqlite import SqliteRegistry
from registry.urls import redact_url

__all__ = [
    "NAME_PATTERN",
    "ExpertExists",
    "ExpertKind",
    "ExpertNotFound",
    "ExpertSpec",
    "ExpertSpecPatch",
    "MemoryRegistry",
    "MemoryStore",
    "RedisRegistry",
    "Registry",
    "RegistryError",
    "SqliteRegistry",
    "poll_revisions",
    "redact_url",
    "registry_from_url",
]
