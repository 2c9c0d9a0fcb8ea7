"""Routers: query -> category probabilities -> experts (two-step Composition-of-Experts routing)."""

from routers.base import ExpertTable, RouteDecision, Router, ScoredExpert
from routers.categories import CategoryIndex, CategoryIndexCache, ExemplarRouter, exemplar_table
from routers.centroid import CentroidRouter
from routers.config import EmbedderBackend, EmbedderConfig, RouterConfig, RouterKind
from routers.embedder import (
    CachedEmbedder,
    Embedder,
    OnnxEmbedder,
    SentenceTransformerEmbedder,
)
from routers.expert_map import GENERALIST, ExpertMap, served_categories
from routers.factory import build_embedder, build_router
from routers.knn import KnnRouter

__all__ = [
    "GENERALIST",
    "CachedEmbedder",
    "CategoryIndex",
    "CategoryIndexCache",
    "CentroidRouter",
    "Embedder",
    "EmbedderBackend",
    "EmbedderConfig",
    "ExemplarRouter",
    "ExpertMap",
    "ExpertTable",
    "KnnRouter",
    "OnnxEmbedder",
    "RouteDecision",
    "Router",
    "RouterConfig",
    "RouterKind",
    "ScoredExpert",
    "SentenceTransformerEmbedder",
    "build_embedder",
    "build_router",
    "exemplar_table",
    "served_categories",
]
