"""Shared helpers of the routing benchmarks: data location, embeddings, JSON and plots.

The benchmarks read the shared evaluation folders (`$COE_SHARED_DATA`, default
`<repo>/../shared/data`), embed with all-MiniLM-L6-v2 through the on-disk cache (the first run
embeds, later runs read vectors back), and write `results/<name>.json` and `.png`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from routers.embedder import SentenceTransformerEmbedder
from routers.training.datasets import RoutingOutcomes
from routers.training.embed_cache import EmbeddingCache
from routers.training.evaluation import CurvePoint

__all__ = [
    "RESULTS",
    "data_dir",
    "embed",
    "embedder",
    "in_sample_heads_ceiling",
    "plot_curves",
    "write_json",
]

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"


def data_dir(name: str) -> Path:
    root = os.environ.get("COE_SHARED_DATA")
    base = Path(root) if root else HERE.parents[1].parent / "shared" / "data"
    return base / name


def embedder() -> SentenceTransformerEmbedder:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    return SentenceTransformerEmbedder()


def embed(data: RoutingOutcomes | Any) -> np.ndarray:
    return EmbeddingCache().embed(embedder(), list(data.texts))


def in_sample_heads_ceiling(
    vectors: np.ndarray,
    scores: np.ndarray,
    decide_costs: np.ndarray,
    realised_costs: np.ndarray,
    budget: float,
) -> dict[str, float]:
    """Per-expert logistic heads fitted on the very rows they are scored on (L2 1e-4): the best
    quality within `budget` that a linear router on these features could reach if it had seen
    the questions it is tested on. A ceiling, not a result."""
    from routers.training.fit_scorers import HeadsHyper
    from routers.training.operating import sweep

    heads = HeadsHyper(l2=1e-4).fit(vectors, scores)
    curve = sweep(heads.predict(vectors), decide_costs, scores, realised_costs=realised_costs)
    within = [p for p in curve if p.cost <= budget]
    best = max(within, key=lambda p: p.quality) if within else None
    return {
        "quality": best.quality if best else float("nan"),
        "cost": best.cost if best else float("nan"),
        "rows": len(scores),
    }


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, np.generic):
        return _plain(value.item())
    if isinstance(value, float):
        return round(value, 6)
    return value


def write_json(name: str, payload: Mapping[str, Any]) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(_plain(dict(payload)), indent=1) + "\n")
    return path


def plot_curves(
    name: str,
    title: str,
    curves: Mapping[str, Sequence[Mapping[str, Any]]],
    points: Sequence[Mapping[str, Any]],
    *,
    xlabel: str,
    budget: float | None = None,
    target: float | None = None,
    logx: bool = False,
) -> Path:
    """Quality-cost curves (lines) and single operating points (markers) in one PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5.5))
    for label, curve in curves.items():
        pts = sorted((p["cost"], p["quality"]) for p in curve)
        ax.plot([c for c, _ in pts], [q for _, q in pts], marker=".", linewidth=1.2, label=label)
    for p in points:
        ax.scatter([p["cost"]], [p["quality"]], s=28, zorder=3)
        ax.annotate(
            str(p["label"]),
            (p["cost"], p["quality"]),
            fontsize=6,
            xytext=(3, 2),
            textcoords="offset points",
        )
    if budget is not None:
        ax.axvline(budget, color="grey", linestyle=":", label=f"budget {budget:g}")
    if target is not None:
        ax.axhline(target, color="red", linestyle=":", label=f"target {target:g}")
    if logx:
        from matplotlib.ticker import NullFormatter, ScalarFormatter

        ax.set_xscale("log")
        ax.xaxis.set_major_formatter(ScalarFormatter())
        ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel(xlabel)
    ax.set_ylabel("quality (dev)")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.png"
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def curve_point(point: CurvePoint) -> dict[str, Any]:
    return {"cost": point.cost, "quality": point.quality, "label": point.label}
