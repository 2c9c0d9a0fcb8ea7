"""Fusion rules (`routers.fusion_rule`) and their offline evaluation on logged answers
(`routers.training.fusion_eval`), on small hand-made logs whose answers are known."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from routers.fusion_rule import cascade_order, settled, tally
from routers.training.datasets import DatasetError
from routers.training.folders import load_expert_costs, load_outcome_folder
from routers.training.fusion_eval import (
    FusionPolicy,
    Logged,
    PolicyKind,
    answer_ids,
    apply_policy,
    search_adaptive,
)
from routers.training.loaders import load_outcomes

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "shared"


def test_tally_weighs_answers_and_breaks_ties_by_rank() -> None:
    assert tally(["B", "A", "A"], [0.7, 0.4, 0.4]) == (1, 2)  # A: 0.8 beats B: 0.7
    assert tally(["B", "A", "A"], [0.9, 0.3, 0.3]) == (0, 1)  # B: 0.9 > A: 0.6
    assert tally(["A", "B"], [0.5, 0.5]) == (0, 1)  # a tie goes to the better-ranked
    assert tally([None, "C", None], [1.0, 0.1, 1.0]) == (1, 1)  # no answer, no vote
    assert tally([None, None], [1.0, 1.0]) == (0, 1)


def test_a_cascade_settles_on_two_agreeing_answers_that_lead() -> None:
    assert settled(["A"]) and not settled([None])
    assert settled(["A", "A"]) and not settled(["A", "B"])
    assert settled(["A", "B", "A"]) and not settled(["A", "B", None])
    assert not settled(["A", "A", "B", "B"])
    assert cascade_order([3.0, 1.0, 1.0, 2.0]) == [1, 2, 3, 0]


def logged(answers: list[list[str]], right: list[list[float]], quality: list[float]) -> Logged:
    n, m = len(answers), len(answers[0])
    return Logged(
        quality=np.tile(np.array(quality), (n, 1)),
        expert_costs=np.arange(1.0, m + 1),
        scores=np.array(right),
        costs=np.tile(np.arange(1.0, m + 1), (n, 1)),
        answers=answer_ids(np.array(answers, dtype=np.str_)),
    )


def test_vote_cascade_and_top1_on_logged_answers() -> None:
    # expert 0 is ranked first but wrong on row 0; experts 1 and 2 agree there
    log = logged(
        [["B", "A", "A"], ["C", "C", "D"], ["", "E", "F"]],
        [[0, 1, 1], [1, 1, 0], [0, 1, 0]],
        [0.6, 0.5, 0.4],
    )
    top1 = apply_policy(log, FusionPolicy(PolicyKind.NONE, k=1))
    assert top1.accuracy == pytest.approx(1 / 3) and (top1.avg_cost, top1.avg_experts) == (1, 1)
    vote = apply_policy(log, FusionPolicy(PolicyKind.VOTE, k=3))
    # row 0: A (0.9) beats B (0.6); row 1: C; row 2: E (0.5) beats F (0.4), expert 0 silent
    assert vote.accuracy == pytest.approx(1.0) and vote.avg_cost == 6.0
    assert vote.avg_experts == 3.0 and vote.fused_share == 1.0
    cascade = apply_policy(log, FusionPolicy(PolicyKind.CASCADE, k=3))
    # cheapest two first (experts 0, 1): they agree only on row 1
    assert cascade.avg_experts == pytest.approx((3 + 2 + 3) / 3)
    assert cascade.avg_cost == pytest.approx((6 + 3 + 6) / 3)
    assert cascade.accuracy == pytest.approx(1.0)


def test_adaptive_fan_out_follows_the_router_confidence() -> None:
    answers = [["A", "B", "B"]] * 2
    right = [[0.0, 1.0, 1.0]] * 2
    log = logged(answers, right, [0.9, 0.5, 0.5])
    # sure (one expert far ahead at a low temperature): k = 1
    sure = apply_policy(log, FusionPolicy(PolicyKind.VOTE, k=3, mass=0.9, temperature=0.01))
    assert sure.avg_experts == 1.0 and sure.accuracy == 0.0
    unsure = apply_policy(log, FusionPolicy(PolicyKind.VOTE, k=3, mass=0.9, temperature=10.0))
    assert unsure.avg_experts == 3.0 and unsure.accuracy == 1.0
    policy, outcome = search_adaptive(log, max_cost=6.0, cost_weights=[0.0])
    assert outcome.accuracy == 1.0 and outcome.avg_cost <= 6.0 and policy.mass > 0
    with pytest.raises(ValueError, match=r"no fusion policy costs <= 0\.5"):
        search_adaptive(log, max_cost=0.5, cost_weights=[0.0])


def test_answers_load_from_jsonl_csv_and_a_folder(tmp_path: Path) -> None:
    jsonl = tmp_path / "o.jsonl"
    row = {"text": "q", "scores": {"a": 1, "b": 0}, "answers": {"a": "(C)", "b": "D"}}
    jsonl.write_text(json.dumps(row) + "\n")
    data = load_outcomes(jsonl)
    assert data.answers is not None and data.answers.tolist() == [["(C)", "D"]]
    assert not data.costs_given
    csv_file = tmp_path / "o.csv"
    csv_file.write_text("text,a,b,a|answer,b|pred,a|cost\nq,1,0,C,D,2.5\n")
    data = load_outcomes(csv_file)
    assert data.answers is not None and data.answers.tolist() == [["C", "D"]]
    assert data.costs_given and data.costs[0, 0] == 2.5
    folder = load_outcome_folder(FIXTURES / "mmlu_pro")
    assert len(folder) == 140 and len(folder.experts) == 29 and folder.labels is not None
    assert folder.answers is not None and set(folder.answers.ravel()) <= {"", *"ABCDEFGHIJ"}
    assert folder.texts[0].splitlines()[1].startswith("A. ")
    for either in ("questions.jsonl", "outcomes.csv"):  # a file of the folder stands for it
        assert load_outcomes(FIXTURES / "mmlu_pro" / either).data_hash() == folder.data_hash()


def test_expert_costs_leave_out_experts_without_one(tmp_path: Path) -> None:
    costs = load_expert_costs(Path(__file__).parents[2] / "bench" / "fusion" / "mmlu_pro_costs.csv")
    data = load_outcome_folder(FIXTURES / "mmlu_pro").with_expert_costs(costs)
    assert len(data.experts) == 27 and not any(e.startswith("gemini") for e in data.experts)
    assert data.costs[:, data.experts.index("Yi-34B")].tolist() == [34.0] * len(data)
    bad = tmp_path / "costs.csv"
    bad.write_text("expert,cost\na,-1\n")
    with pytest.raises(DatasetError, match=r"costs.csv:2: cost must be a number >= 0"):
        load_expert_costs(bad)
    bad.write_text("name,price\na,1\n")
    with pytest.raises(DatasetError, match="needs an 'expert'"):
        load_expert_costs(bad)
