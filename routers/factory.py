"""Build the embedder and the router a `RouterConfig` describes (at start-up)."""

from __future__ import annotations

from routers.base import Router
from routers.batching import BatchingEmbedder
from routers.categories import ExemplarRouter
from routers.centroid import CentroidRouter
from routers.config import EmbedderBackend, EmbedderConfig, RouterConfig, RouterKind
from routers.embedder import CachedEmbedder, Embedder, OnnxEmbedder, SentenceTransformerEmbedder
from routers.expert_map import ExpertMap
from routers.knn import KnnRouter
from routers.trained import TrainedRouter

__all__ = ["build_embedder", "build_router"]

_ROUTERS: dict[RouterKind, type[ExemplarRouter]] = {
    RouterKind.CENTROID: CentroidRouter,
    RouterKind.KNN: KnnRouter,
}


def build_embedder(config: EmbedderConfig) -> Embedder:
    """The configured embedder: concurrent calls batched, behind an LRU cache (unless
    `cache_size` is 0).

    Resolves the model files now (`FileNotFoundError` if absent); the weights load lazily.
    """
    inner: Embedder
    if config.backend is EmbedderBackend.ONNX:
        inner = OnnxEmbedder(config.model, onnx_file=config.onnx_file, batch_size=config.batch_size)
    else:
        inner = SentenceTransformerEmbedder(config.model, batch_size=config.batch_size)
    batched = BatchingEmbedder(inner, max_batch=config.batch_size)
    return CachedEmbedder(batched, config.cache_size) if config.cache_size else batched


def build_router(config: RouterConfig, embedder: Embedder | None = None) -> Router:
    """The trained router of `config.artifact` if set, else the exemplar router of
    `config.kind`; `embedder` overrides `config.embedder` (tests, sharing)."""
    if config.artifact is not None:  # a trained router (`coe train`), hot-reloaded on change
        the_embedder = embedder if embedder is not None else build_embedder(config.embedder)
        return TrainedRouter(
            the_embedder, config.artifact, expert_map=ExpertMap.from_config(config)
        )
    router_class = _ROUTERS[config.kind]
    return router_class(
        embedder if embedder is not None else build_embedder(config.embedder), config
    )
