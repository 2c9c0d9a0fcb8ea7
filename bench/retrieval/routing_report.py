"""Reporting of `bench.retrieval.routing`: the target check, the printed summary, the PNG."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["plot", "summary", "target"]

KINDS = ("dense", "lexical", "hybrid")
CONDITIONS = ("merged", "routed", "fused", "oracle")


def target(results: Mapping[str, Any]) -> dict[str, Any]:
    """Fused within 1 point (0.01) of the oracle's nDCG@10 and above merged, per kind; the
    best kind is the one with the best fused nDCG@10 (macro)."""
    rows = {}
    for kind, r in results.items():
        fused, oracle, merged = (r[c]["macro"]["ndcg@10"] for c in ("fused", "oracle", "merged"))
        rows[kind] = {
            "fused_minus_oracle_points": round(100 * (fused - oracle), 2),
            "fused_minus_merged_points": round(100 * (fused - merged), 2),
            "met": bool(fused >= oracle - 0.01 and fused > merged),
        }
    best = max(results, key=lambda k: results[k]["fused"]["macro"]["ndcg@10"])
    return {"best_kind": best, "met_for_best_kind": rows[best]["met"], "by_kind": rows}


def summary(payload: Mapping[str, Any]) -> str:
    """The table printed at the end: macro nDCG@10/recall@100 of each condition, (c) with the
    router's rule too, and the routing accuracy of the router and of the gateway's choice."""
    columns = [*CONDITIONS, "fused(router)"]
    lines = ["kind      " + "  ".join(f"{c:>13}" for c in columns) + "  route-acc  chosen-acc"]
    for kind, r in payload["results"].items():
        cells = "  ".join(
            f"{m['macro']['ndcg@10']:.3f}/{m['macro']['recall@100']:.3f}"
            for m in [*(r[c] for c in CONDITIONS), r["fused_router_rule"]]
        )
        accuracy = r["routing_accuracy_document_pilots"]["macro"]
        chosen = r["fused_chosen_domain_accuracy"]["macro"]
        lines.append(f"{kind:8}  {cells}  {accuracy:9.3f}  {chosen:10.3f}")
    lines.append(json.dumps(payload["target"]))
    return "\n".join(lines)


BARS = (
    ("merged", "(a) merged"),
    ("routed", "(b) routed"),
    ("fused_router_rule", "(c) fused, router rule"),
    ("fused", "(c) fused, similarity rule"),
    ("oracle", "(d) oracle"),
)


def plot(payload: Mapping[str, Any], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    results = payload["results"]
    fig, axes = plt.subplots(1, 3, figsize=(16, 4.4))
    width = 0.16
    for ax, metric in zip(axes[:2], ("ndcg@10", "recall@100"), strict=True):
        for i, (key, label) in enumerate(BARS):
            values = [results[k][key]["macro"][metric] for k in KINDS]
            x = np.arange(len(KINDS)) + (i - 2) * width
            bars = ax.bar(x, values, width, label=label)
            ax.bar_label(bars, fmt="%.3f", fontsize=7, rotation=90, padding=2)
        ax.set_xticks(np.arange(len(KINDS)), KINDS)
        ax.set_title(f"{metric}, macro over 4 collections")
        ax.set_ylim(0, 1.0)
    axes[0].legend(loc="upper left", fontsize=7)
    ax = axes[2]
    labels = [f"{k}\nrouter" for k in KINDS] + [f"{k}\nsimilarity" for k in KINDS]
    values = [results[k]["routing_accuracy_document_pilots"]["macro"] for k in KINDS]
    values += [results[k]["fused_chosen_domain_accuracy"]["macro"] for k in KINDS]
    labels += ["query pilots\n(A->B)", "query pilots\n(B->A)"]
    values += [split["routing_accuracy"]["macro"] for split in payload["query_pilots"].values()]
    bars = ax.bar(range(len(values)), values, color="tab:gray")
    ax.bar_label(bars, fmt="%.3f", fontsize=7)
    ax.set_xticks(range(len(values)), labels, fontsize=7)
    ax.set_ylim(0, 1.05)
    ax.set_title("domain accuracy (macro): router top-1 vs chosen")
    fig.suptitle("classic_ir (MED, CISI, CRAN, CACM): merged vs routed vs fused vs oracle")
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
