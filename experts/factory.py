"""`build_expert(spec)`: the one place that maps an `ExpertKind` to its implementation."""

from __future__ import annotations

from typing import TYPE_CHECKING

import httpx

from experts.base import Expert
from experts.openai import OpenAIExpert
from experts.simulator import SimulatedExpert
from experts.vllm import VllmExpert
from registry.spec import ExpertKind, ExpertSpec

if TYPE_CHECKING:
    from experts.local_models import LocalModelStore
    from experts.retriever import RetrieverStore

__all__ = ["build_expert"]


def build_expert(
    spec: ExpertSpec,
    *,
    http: httpx.AsyncClient,
    local_models: LocalModelStore | None,
    retrievers: RetrieverStore | None = None,
) -> Expert:
    """Build the expert `spec` describes. Cheap, no I/O (warm-up is `await expert.start()`).

    `http` is the process's shared client (HTTP kinds); `local_models` the store of loaded
    weights (kind `local`, which is imported only when used: it pulls in torch); `retrievers`
    the store of loaded indexes (kind `retriever`).
    Raises ValueError when the spec cannot be built (missing API key variable, bad options).
    """
    if spec.kind is ExpertKind.OPENAI:
        return OpenAIExpert(spec, http)
    if spec.kind is ExpertKind.VLLM:
        return VllmExpert(spec, http)
    if spec.kind is ExpertKind.SIMULATOR:
        return SimulatedExpert(spec)
    if spec.kind is ExpertKind.LOCAL:
        if local_models is None:
            raise ValueError(f"expert {spec.name!r} is local but no local model store was given")
        from experts.local import LocalExpert

        return LocalExpert(spec, store=local_models)
    if spec.kind is ExpertKind.RETRIEVER:
        if retrievers is None:
            raise ValueError(f"expert {spec.name!r} is a retriever but no index store was given")
        from experts.retriever import RetrieverExpert

        return RetrieverExpert(spec, retrievers)
    raise ValueError(f"expert {spec.name!r} has an unknown kind {spec.kind!r}")
