from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import pytest

from bench.shared_data import shared_outcomes
from registry.spec import ExpertKind, ExpertSpec
from routers.artifact import ArtifactError, read_manifest
from routers.base import ExpertTable, Router
from routers.expert_map import ExpertMap
from routers.trained import TrainedRouter
from routers.trained_model import load_model
from routers.training import SplitSpec, TrainOptions, evaluate, evaluate_baselines, train
from routers.training.embed_cache import EmbeddingCache
from routers.training.fit_classifiers import LogisticHyper
from routers.training.fit_scorers import HeadsHyper
from tests.fakes import HashingEmbedder

QUARTER = SplitSpec(dev_fraction=0.25)


def spec(name: str, *categories: str) -> ExpertSpec:
    return ExpertSpec(name=name, kind=ExpertKind.SIMULATOR, categories=list(categories))


def test_embedding_cache_reuses_and_keys_by_text(tmp_path: Path, embedder: HashingEmbedder) -> None:
    cache = EmbeddingCache(tmp_path, batch_size=2)
    first = cache.embed(embedder, ["a b", "c", "d"], progress=False)
    assert embedder.texts == 3
    again = cache.embed(embedder, ["a b", "c", "d"], progress=False)
    assert embedder.texts == 3 and np.array_equal(first, again)
    subset = cache.embed(embedder, ["d", "a b"], progress=False)  # reused from the first entry
    assert embedder.texts == 3 and np.array_equal(subset, first[[2, 0]])
    grown = cache.embed(embedder, ["a b", "c", "e"], progress=False)
    assert embedder.texts == 4 and np.array_equal(grown[:2], first[:2])
    other = HashingEmbedder(id="other")
    cache.embed(other, ["a b", "c", "d"], progress=False)
    assert other.texts == 3
    for path in tmp_path.glob("*.npz"):
        path.write_bytes(b"garbage")
    again = cache.embed(embedder, ["a b", "c", "d"], progress=False)
    assert embedder.texts == 7 and np.allclose(again, first)


def test_classifier_train_evaluate_and_route(
    tmp_path: Path, embedder: HashingEmbedder, mmlu_pro_folder: Path
) -> None:
    data = shared_outcomes(mmlu_pro_folder)
    options = TrainOptions(split=SplitSpec(dev_fraction=0.25), hyper=LogisticHyper(c=4.0))
    out = tmp_path / "clf"
    result = train(
        data, "logistic", out, embedder, options=options, cache=EmbeddingCache(tmp_path / "c")
    )
    manifest = read_manifest(out)
    assert manifest.tag == "classifier/logistic" and manifest.embedder_id == "hash-bow"
    assert len(manifest.labels) == 14 and manifest.data_hash == data.data_hash()
    assert result.metrics["rows"]["dev"] == 28 and 0.0 <= result.metrics["accuracy"] <= 1.0
    assert np.array(result.metrics["confusion"]).sum() == 28
    # same data: only the dev rows are scored, and the figures match the manifest's
    again = evaluate(out, data, embedder, cache=EmbeddingCache(tmp_path / "c"))
    assert again["rows"] == 28 and again["accuracy"] == pytest.approx(result.metrics["accuracy"])
    assert again["ece"] == pytest.approx(result.metrics["ece"])  # the calibrated probabilities
    assert again["temperature"] == pytest.approx(result.metrics["temperature"]) != 1.0
    assert "ece_uncalibrated" not in again
    # other data: every row
    assert (
        evaluate(out, data.subset(range(100)), embedder, cache=EmbeddingCache(tmp_path / "c"))[
            "rows"
        ]
        == 100
    )

    router = TrainedRouter(embedder, out, expert_map=ExpertMap(fallback="generalist"))
    assert isinstance(router, Router)
    table = ExpertTable(1, (spec("lawyer", "law"), spec("generalist", "*")))
    decision = router.route("A tort claim: is the defendant liable for negligence?", table)
    assert decision.router == "trained:classifier/logistic"
    assert {e.name for e in decision.experts} == {"lawyer", "generalist"}
    assert decision.categories and abs(sum(p for _, p in decision.categories) - 1.0) < 1e-6


def test_scorer_train_picks_an_operating_point_within_budget(
    tmp_path: Path, embedder: HashingEmbedder, mmlu_pro_folder: Path
) -> None:
    data = shared_outcomes(mmlu_pro_folder)
    out = tmp_path / "heads"
    options = TrainOptions(split=QUARTER, max_cost=20.0, hyper=HeadsHyper(l2=1e-2))
    result = train(data, "heads", out, embedder, options=options, cache=EmbeddingCache(tmp_path))
    metrics = result.metrics
    assert {"aiq", "curve", "baselines", "operating_point", "coe_map_true_category"} <= set(metrics)
    weight = metrics["operating_point"]["param"]
    assert weight > 0  # the budget is binding: cost is traded against quality
    chosen_on = metrics["val_operating_point"]  # where the weight was picked: within budget
    assert chosen_on["rows"] == metrics["rows"]["val_scored"] and chosen_on["cost"] <= 20.0
    assert 0 < chosen_on["cost_se"] < chosen_on["cost"] and 0 < chosen_on["quality_se"] < 0.5
    model = load_model(out)
    assert model.selection.cost_weight == weight and len(model.manifest.experts) == 27
    table = ExpertTable(
        1, tuple(spec(e) for e in ("Phi-3-mini-4k-instruct", "Meta-Llama-3_1-70B-Instruct"))
    )
    decision = TrainedRouter(embedder, out).route("What is the derivative of x^2?", table)
    assert [e.name for e in decision.experts] != [] and len(decision.experts) == 2
    assert decision.selected == 1


def test_scorer_train_for_a_quality_floor_picks_the_cheapest_point_reaching_it(
    tmp_path: Path, embedder: HashingEmbedder, mmlu_pro_folder: Path
) -> None:
    data = shared_outcomes(mmlu_pro_folder)
    cache = EmbeddingCache(tmp_path)
    free = TrainOptions(split=QUARTER, hyper=HeadsHyper(l2=1e-2))
    best = train(data, "heads", tmp_path / "free", embedder, options=free, cache=cache).metrics
    floor = 0.8 * best["val_operating_point"]["quality"]
    options = TrainOptions(split=QUARTER, min_quality=floor, hyper=HeadsHyper(l2=1e-2))
    got = train(data, "heads", tmp_path / "floor", embedder, options=options, cache=cache).metrics
    assert got["val_operating_point"]["quality"] >= floor
    assert got["val_operating_point"]["cost"] < best["val_operating_point"]["cost"]
    too_high = TrainOptions(split=QUARTER, min_quality=1.01, hyper=HeadsHyper(l2=1e-2))
    with pytest.raises(ValueError, match=r"no operating point reaches quality 1\.01"):
        train(data, "heads", tmp_path / "x", embedder, options=too_high, cache=cache)


def test_router_reloads_a_changed_artifact_and_keeps_a_broken_one(
    tmp_path: Path, embedder: HashingEmbedder, mmlu_pro_folder: Path
) -> None:
    data = shared_outcomes(mmlu_pro_folder)
    out = tmp_path / "a"
    cache = EmbeddingCache(tmp_path / "c")
    train(data, "centroid", out, embedder, options=TrainOptions(calibrate=False), cache=cache)
    router = TrainedRouter(embedder, out, reload_interval_s=0.0)
    assert router.name == "trained:classifier/centroid"
    train(data, "knn", out, embedder, options=TrainOptions(calibrate=False), cache=cache)
    stamp = time.time() + 5
    os.utime(out / "manifest.json", (stamp, stamp))
    assert router.name == "trained:classifier/centroid"  # name alone does not check
    router.route("x", ExpertTable(1, (spec("g", "*"),)))
    assert router.name == "trained:classifier/knn"
    (out / "weights.npz").write_bytes(b"broken")
    os.utime(out / "manifest.json", (stamp + 5, stamp + 5))
    router.route("x", ExpertTable(1, (spec("g", "*"),)))
    assert router.name == "trained:classifier/knn"
    with pytest.raises(ArtifactError):
        load_model(out)


def test_router_refuses_an_artifact_from_another_embedder(
    tmp_path: Path, embedder: HashingEmbedder, mmlu_pro_folder: Path
) -> None:
    data = shared_outcomes(mmlu_pro_folder).labelled()
    train(data, "centroid", tmp_path / "a", embedder, cache=EmbeddingCache(tmp_path / "c"))
    with pytest.raises(ArtifactError, match="trained on embedder 'hash-bow'"):
        TrainedRouter(HashingEmbedder(id="minilm"), tmp_path / "a")


def test_scorer_kinds_need_outcomes(
    tmp_path: Path, embedder: HashingEmbedder, mmlu_pro_folder: Path
) -> None:
    data = shared_outcomes(mmlu_pro_folder).labelled()
    with pytest.raises(ValueError, match="needs routing outcomes"):
        train(data, "mf", tmp_path / "a", embedder)


def test_only_the_first_characters_are_embedded_when_asked(
    tmp_path: Path, embedder: HashingEmbedder, mmlu_pro_folder: Path
) -> None:
    data = shared_outcomes(mmlu_pro_folder).labelled()
    options = TrainOptions(embed_chars=40, calibrate=False)
    cache = EmbeddingCache(tmp_path)
    train(data, "logistic", tmp_path / "a", embedder, options=options, cache=cache)
    router = TrainedRouter(embedder, tmp_path / "a")
    router.route("What is the capital of France? " * 10, ExpertTable(1, (spec("g", "*"),)))
    assert embedder.last == ["What is the capital of France? What is t"]
    assert load_model(tmp_path / "a").embed_chars == 40


def test_baselines_on_the_dev_rows(routerbench_folder: Path) -> None:
    data = shared_outcomes(routerbench_folder)
    result = evaluate_baselines(data, SplitSpec(dev_fraction=0.4))
    labels = [p["label"] for p in result["baselines"]]
    assert labels[0] == "best single (gpt-4-1106-preview)" and labels[-1] == "oracle"
    assert result["rows"] == 18 and result["cost_unit"] == "USD"
    oracle = result["baselines"][-1]
    assert oracle["quality"] >= max(p["quality"] for p in result["baselines"])
    assert result["coe_map_true_category"]["curve"]


def test_missing_outcomes_are_left_out_of_scoring(
    tmp_path: Path, embedder: HashingEmbedder, mmlu_pro_folder: Path
) -> None:
    data = shared_outcomes(mmlu_pro_folder)
    complete = set(data.complete_rows().tolist())
    assert 0 < len(complete) < len(data)  # the sample keeps DeepSeek-Coder-V2's gaps
    cache = EmbeddingCache(tmp_path / "c")
    options = TrainOptions(split=QUARTER, hyper=HeadsHyper(l2=1e-2))
    result = train(data, "heads", tmp_path / "heads", embedder, options=options, cache=cache)
    rows = result.metrics["rows"]
    assert rows["dev"] == 28 and 0 < rows["dev_scored"] < rows["dev"]
    again = evaluate(tmp_path / "heads", data, embedder, cache=cache)
    assert again["rows"] == rows["dev_scored"]
    assert "without every expert's outcome skipped" in again["evaluated_on"]
    assert again["operating_point"] == result.metrics["operating_point"]
    gaps = [i for i in range(len(data)) if i not in complete]
    with pytest.raises(ValueError, match="no evaluated row has an outcome for every expert"):
        evaluate(tmp_path / "heads", data.subset(gaps), embedder, cache=cache)
    # sparse logs: counting a missing outcome as a failure scores every row again
    failure = TrainOptions(split=QUARTER, missing_as_failure=True, hyper=HeadsHyper(l2=1e-2))
    result = train(data, "heads", tmp_path / "h0", embedder, options=failure, cache=cache)
    assert result.metrics["rows"]["dev_scored"] == 28
    assert evaluate(tmp_path / "h0", data.subset(gaps), embedder, cache=cache)["rows"] == len(gaps)
