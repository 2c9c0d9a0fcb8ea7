"""`plot_metrics`: a PNG of the metrics `train` / `evaluate` return (`coe eval --out-dir`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib
import numpy as np

matplotlib.use("Agg")  # files only, never a window
import matplotlib.pyplot as plt

__all__ = ["plot_metrics"]


def plot_metrics(metrics: dict[str, Any], path: Path) -> None:
    """A PNG of `metrics`: the confusion matrix of a classifier, or quality-cost curves with the
    baselines as points."""
    fig, ax = plt.subplots(figsize=(7, 5))
    if "confusion" in metrics:
        matrix = np.asarray(metrics["confusion"], dtype=float)
        ax.imshow(matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1), cmap="Blues")
        labels = metrics.get("labels", [str(i) for i in range(len(matrix))])
        ax.set_xticks(range(len(labels)), labels, rotation=90, fontsize=6)
        ax.set_yticks(range(len(labels)), labels, fontsize=6)
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        ax.set_title(f"accuracy {metrics.get('accuracy', float('nan')):.3f}")
    else:
        curves = {"router": metrics.get("curve", [])}
        if "coe_map_true_category" in metrics:
            curves["CoE map (true category)"] = metrics["coe_map_true_category"]["curve"]
        for label, curve in curves.items():
            pts = sorted((p["cost"], p["quality"]) for p in curve)
            if pts:
                ax.plot([c for c, _ in pts], [q for _, q in pts], marker=".", label=label)
        for point in metrics.get("baselines", []):
            ax.scatter([point["cost"]], [point["quality"]], zorder=3)
            ax.annotate(point["label"], (point["cost"], point["quality"]), fontsize=6)
        ax.set_xlabel(f"mean cost ({metrics.get('cost_unit', 'cost')})")
        ax.set_ylabel("quality")
        ax.legend(fontsize=7)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
