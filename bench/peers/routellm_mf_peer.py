"""The peer side of bench/peers/routellm_mf.py: RouteLLM's MF router trained with its own code.

    <routellm venv>/bin/python bench/peers/routellm_mf_peer.py DIR

Runs in the RouteLLM venv (`routellm_setup.sh`), never the project's: our packages are not
importable there. Reads what `python -m bench.peers.routellm_mf export DIR` wrote, builds
RouteLLM's pairwise samples from the fit rows (exactly one model right: it wins; ties dropped,
as `train_matrix_factorization.py` filters them), trains `MFModel_Train` with `train_loops` and
the hyper-parameters of that script's `__main__` (dim 128, batch 64, 100 epochs, noise alpha
0.1, Adam lr 3e-4, weight decay 1e-5; projection on), with the val rows as its test set, on the
CPU, once per seed in SEEDS. Writes DIR/<bench>_peer_dev_winrate_seed<S>.npy (P(GPT-4 beats
Mixtral) per dev row) and DIR/peer.json.
"""

from __future__ import annotations

import json
import os
import sys
import time
from importlib.metadata import version
from pathlib import Path
from typing import Any

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
# routellm builds an OpenAI client when imported (routers/similarity_weighted/utils.py), which
# wants a key; nothing here calls OpenAI (the embeddings are ours, from DIR).
os.environ.setdefault("OPENAI_API_KEY", "unused-no-call-is-made")

import numpy as np

BENCHES = ("mmlu", "gsm8k")
STRONG, WEAK = "gpt-4-1106-preview", "mixtral-8x7b-instruct-v0.1"  # RouteLLM's MODEL_IDS names
HYPER = {"dim": 128, "batch_size": 64, "num_epochs": 100, "alpha": 0.1, "lr": 3e-4, "wd": 1e-5}
SEEDS = (42, 43, 44)  # 42 is the script's own; two more show how much a seed moves the result


def pairs(scores: np.ndarray, rows: list[int]) -> list[dict[str, Any]]:
    """RouteLLM pairwise samples: scores[:, 0] is GPT-4's, scores[:, 1] Mixtral's."""
    out = []
    for i in rows:
        strong, weak = scores[i]
        if strong != weak:
            winner = "model_a" if strong > weak else "model_b"
            out.append({"model_a": STRONG, "model_b": WEAK, "idx": int(i), "winner": winner})
    return out


def run(folder: Path, bench: str, seed: int) -> dict[str, Any]:
    import torch
    from routellm.routers.matrix_factorization.model import (  # type: ignore[import-not-found]
        MODEL_IDS,
    )
    from routellm.routers.matrix_factorization.train_matrix_factorization import (  # type: ignore[import-not-found]
        MFModel_Train,
        PairwiseDataset,
        train_loops,
    )

    vectors_path = folder / f"{bench}_vectors.npy"
    vectors = np.load(vectors_path)
    scores = np.load(folder / f"{bench}_scores.npy")
    rows = json.loads((folder / f"{bench}_split.json").read_text())
    train_pairs, val_pairs = pairs(scores, rows["fit"]), pairs(scores, rows["val"])
    torch.manual_seed(seed)
    net = MFModel_Train(
        dim=HYPER["dim"],
        num_models=len(MODEL_IDS),
        num_prompts=len(vectors),
        text_dim=vectors.shape[1],
        use_proj=True,
        npy_path=str(vectors_path),
    )
    start = time.perf_counter()
    train_loops(
        net,
        PairwiseDataset(train_pairs).get_dataloaders(batch_size=HYPER["batch_size"]),
        PairwiseDataset(val_pairs).get_dataloaders(1024, shuffle=False),
        lr=HYPER["lr"],
        weight_decay=HYPER["wd"],
        alpha=HYPER["alpha"],
        num_epochs=HYPER["num_epochs"],
        device="cpu",
    )
    seconds = time.perf_counter() - start
    dev = torch.tensor(rows["dev"], dtype=torch.int64)
    strong = torch.full_like(dev, MODEL_IDS[STRONG])
    weak = torch.full_like(dev, MODEL_IDS[WEAK])
    net.eval()
    with torch.no_grad():
        logits = net(strong, weak, dev, test=True)
    win = torch.sigmoid(logits).numpy().astype(np.float64)
    np.save(folder / f"{bench}_peer_dev_winrate_seed{seed}.npy", win)
    print(f"{bench} seed {seed}: {len(train_pairs)} / {len(val_pairs)} pairs, {seconds:.0f} s")
    return {"train_pairs": len(train_pairs), "val_pairs": len(val_pairs), "train_seconds": seconds}


def main() -> None:
    folder = Path(sys.argv[1])
    meta: dict[str, Any] = {
        "peer": {
            "routellm": version("routellm"),
            "torch": version("torch"),
            "hyper": HYPER,
            "seeds": list(SEEDS),
            "embedding": "all-MiniLM-L6-v2 (ours) instead of OpenAI text-embedding-3-small",
        }
    }
    for bench in BENCHES:
        runs = [run(folder, bench, seed) for seed in SEEDS]
        meta[bench] = {**runs[0], "train_seconds": [r["train_seconds"] for r in runs]}
    (folder / "peer.json").write_text(json.dumps(meta, indent=1) + "\n")


if __name__ == "__main__":
    main()
