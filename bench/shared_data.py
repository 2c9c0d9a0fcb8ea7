"""The shared evaluation folders (`questions.jsonl` + CSVs joined on `id`) as training data.

Benchmark code, not product code: the benchmarks read these folders directly, and
`python -m bench.shared_data FOLDER --out FILE.jsonl` exports one to the generic JSONL formats
that `coe train` / `coe eval` read (routing outcomes with `label`, `id` and `split`, or labelled
queries for the folders without outcomes).

Each folder becomes `RoutingOutcomes` (when it has per-model results) and/or `LabelledQueries`:

    folder              text                      label          scores            cost
    mmlu_pro            question + lettered opts  category (14)  0/1, 27 open LLMs active params (B)
    routerbench_subset  question (no few-shot)    eval_name (3)  0/1, 11 LLMs      USD per query
    routerdc_7models    prompt (RouterDC's input) task (10)      0-1, 7 LLMs       1 (none given)
    mmlu                question + A-D options    subcategory    0/1, 2 LLMs       GPT-4 call = 1
    gsm8k               question                  "math"         0/1, 2 LLMs (test) GPT-4 call = 1
    mt_bench            first turn                category (8)   mean grade / 10   GPT-4 call = 1
    alpaca_eval         instruction               dataset (5)    AE2 win prob      1
    arena_hard          prompt (v2.0 rows)        subcategory    -                 -
    humaneval           prompt                    "code"         -                 -

MMLU-Pro leaves out the two Gemini models (no public parameter count); the active-parameter
table and its sources are `bench/routing/model_params.csv` (a test keeps the two in step).
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from routers.training.datasets import DatasetError, LabelledQueries, RoutingOutcomes
from routers.training.folders import load_outcome_folder

__all__ = [
    "MMLU_PRO_ACTIVE_PARAMS_B",
    "SHARED_FOLDERS",
    "export",
    "shared_labelled",
    "shared_outcomes",
]

MMLU_PRO_ACTIVE_PARAMS_B: dict[str, float] = {
    "c4ai-command-r-v01": 35.0,
    "DeepSeek-Coder-V2": 21.0,
    "gemma-7b": 8.54,
    "jamba-1.5-large": 94.0,
    "Llama-2-7b-hf": 7.0,
    "Llama-2-13b-hf": 13.0,
    "Llama-2-70b-hf": 70.0,
    "mathstral-7B": 7.25,
    "Meta-Llama-3-8B": 8.0,
    "Meta-Llama-3-70B": 70.0,
    "Meta-Llama-3_1-8B": 8.0,
    "Meta-Llama-3_1-8B-Instruct": 8.0,
    "Meta-Llama-3_1-70B": 70.0,
    "Meta-Llama-3_1-70B-Instruct": 70.0,
    "Mistral-7B-v0.1": 7.3,
    "Mistral-7B-v0.2-hf": 7.3,
    "Mistral-7B-Instruct-v0.1": 7.3,
    "Mistral-7B-Instruct-v0.2": 7.3,
    "Mixtral-8x7B-v0.1": 12.9,
    "Mixtral-8x7B-Instruct-v0.1": 12.9,
    "Phi-3-mini-4k-instruct": 3.8,
    "Qwen1.5-7B-Chat": 7.7,
    "Qwen1.5-72B-Chat": 72.0,
    "Qwen1.5-110B": 111.0,
    "Yi-6B": 6.0,
    "Yi-6b-Chat": 6.0,
    "Yi-34B": 34.0,
}
"""Active parameters per token, in billions, of the 27 open-weights MMLU-Pro models."""

_LETTERS = "ABCDEFGHIJ"


def _questions(folder: Path) -> list[dict[str, Any]]:
    path = folder / "questions.jsonl"
    rows = []
    try:
        with path.open(encoding="utf-8") as handle:
            for number, line in enumerate(handle, start=1):
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as exc:
                    raise DatasetError(f"{path}:{number}: not JSON ({exc.msg})") from exc
    except OSError as exc:
        raise DatasetError(f"{path}: {exc.strerror or exc}") from exc
    return rows


def _csv(path: Path) -> tuple[list[str], dict[str, dict[str, str]]]:
    csv.field_size_limit(1 << 30)
    try:
        with path.open(newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            rows = {row["id"]: row for row in reader}
            return list(reader.fieldnames or []), rows
    except OSError as exc:
        raise DatasetError(f"{path}: {exc.strerror or exc}") from exc


def _cell(value: str | None) -> float:
    return float("nan") if value is None or value == "" else float(value)


def _with_options(question: str, options: Sequence[str]) -> str:
    lines = [f"{_LETTERS[i]}. {option}" for i, option in enumerate(options)]
    return "\n".join([question, *lines])


def _outcomes(
    folder: Path,
    questions: list[dict[str, Any]],
    text: Callable[[dict[str, Any]], str],
    label: Callable[[dict[str, Any]], str],
    experts: Sequence[str],
    score: Callable[[dict[str, str], str], float],
    cost: Callable[[dict[str, str], str], float],
    *,
    table: dict[str, dict[str, str]],
    split: Callable[[dict[str, Any]], str] | None = None,
    cost_unit: str = "",
) -> RoutingOutcomes:
    kept = [q for q in questions if str(q["id"]) in table]
    rows = [table[str(q["id"])] for q in kept]
    return RoutingOutcomes(
        texts=tuple(text(q) for q in kept),
        ids=tuple(str(q["id"]) for q in kept),
        experts=tuple(experts),
        scores=np.array([[score(r, e) for e in experts] for r in rows], dtype=np.float64),
        costs=np.array([[cost(r, e) for e in experts] for r in rows], dtype=np.float64),
        labels=tuple(label(q) for q in kept),
        split=None if split is None else tuple(split(q) for q in kept),
        name=folder.name,
        cost_unit=cost_unit,
    )


def _mmlu_pro(folder: Path) -> RoutingOutcomes:
    """The folder as `coe train` reads it (answers from `|pred`), costed in active parameters."""
    return load_outcome_folder(folder).with_expert_costs(
        MMLU_PRO_ACTIVE_PARAMS_B, "B active params"
    )


def _routerbench(folder: Path) -> RoutingOutcomes:
    header, table = _csv(folder / "outcomes.csv")
    experts = [c for c in header if c != "id" and "|" not in c and c != "oracle_model_to_route_to"]
    return _outcomes(
        folder,
        _questions(folder),
        lambda q: str(q["question"]),
        lambda q: str(q["eval_name"]),
        experts,
        lambda r, e: _cell(r[e]),
        lambda r, e: _cell(r[e + "|total_cost"]),
        table=table,
        split=lambda q: str(q["routerdc_split"]),
        cost_unit="USD",
    )


def _routerdc(folder: Path) -> RoutingOutcomes:
    header, table = _csv(folder / "outcomes.csv")
    return _outcomes(
        folder,
        _questions(folder),
        lambda q: str(q["prompt"]),
        lambda q: str(q["task"]),
        [c for c in header if c != "id"],
        lambda r, e: _cell(r[e]),
        lambda r, e: 1.0,
        table=table,
        split=lambda q: str(q["routerdc_split"]),
        cost_unit="calls",
    )


def _strong_weak_cost(expert: str) -> float:
    """RouteLLM's cost axis: the share of calls to the strong model (GPT-4)."""
    return 1.0 if expert.startswith("gpt-4") else 0.0


def _two_model(folder: Path, text: Callable[[dict[str, Any]], str], label: str) -> RoutingOutcomes:
    header, table = _csv(folder / "outcomes.csv")
    return _outcomes(
        folder,
        _questions(folder),
        text,
        lambda q: str(q.get(label, "math")),
        [c for c in header if c != "id"],
        lambda r, e: _cell(r[e]),
        lambda r, e: _strong_weak_cost(e),
        table=table,
        cost_unit="GPT-4 calls",
    )


def _mt_bench(folder: Path) -> RoutingOutcomes:
    header, table = _csv(folder / "outcomes.csv")
    experts = sorted({c.split("|")[0] for c in header if "|" in c})

    def score(row: dict[str, str], expert: str) -> float:
        return (_cell(row[expert + "|turn1"]) + _cell(row[expert + "|turn2"])) / 20.0

    return _outcomes(
        folder,
        _questions(folder),
        lambda q: str(q["turns"][0]),
        lambda q: str(q["category"]),
        experts,
        score,
        lambda r, e: _strong_weak_cost(e),
        table=table,
        cost_unit="GPT-4 calls",
    )


def _alpaca_eval(folder: Path) -> RoutingOutcomes:
    header, table = _csv(folder / "outcomes_ae2.csv")
    return _outcomes(
        folder,
        _questions(folder),
        lambda q: str(q["instruction"]),
        lambda q: str(q["dataset"]),
        [c for c in header if c != "id"],
        lambda r, e: _cell(r[e]),
        lambda r, e: 1.0,
        table=table,
        cost_unit="calls",
    )


_OUTCOMES: dict[str, Callable[[Path], RoutingOutcomes]] = {
    "alpaca_eval": _alpaca_eval,
    "gsm8k": lambda f: _two_model(f, lambda q: str(q["question"]), "domain"),
    "mmlu": lambda f: _two_model(
        f, lambda q: _with_options(q["question"], q["options"]), "subcategory"
    ),
    "mmlu_pro": _mmlu_pro,
    "mt_bench": _mt_bench,
    "routerbench_subset": _routerbench,
    "routerdc_7models": _routerdc,
}


def _labelled_only(folder: Path) -> LabelledQueries:
    rows = _questions(folder)
    if folder.name == "arena_hard":
        rows = [q for q in rows if q.get("subcategory")]
        return LabelledQueries(
            tuple(str(q["prompt"]) for q in rows),
            tuple(str(q["subcategory"]) for q in rows),
            tuple(str(q["id"]) for q in rows),
            folder.name,
        )
    if folder.name == "humaneval":
        return LabelledQueries(
            tuple(str(q["prompt"]) for q in rows),
            tuple(str(q["domain"]) for q in rows),
            tuple(str(q["id"]) for q in rows),
            folder.name,
        )
    if folder.name == "gsm8k":  # every question (train + test), not only those with outcomes
        return LabelledQueries(
            tuple(str(q["question"]) for q in rows),
            tuple("math" for _ in rows),
            tuple(str(q["id"]) for q in rows),
            folder.name,
        )
    raise DatasetError(f"{folder}: not a known shared-data folder ({', '.join(SHARED_FOLDERS)})")


SHARED_FOLDERS = tuple(sorted({*_OUTCOMES, "arena_hard", "humaneval"}))


def shared_outcomes(folder: Path) -> RoutingOutcomes:
    """The routing outcomes of a shared-data folder (by its directory name)."""
    adapter = _OUTCOMES.get(folder.name)
    if adapter is None:
        raise DatasetError(
            f"{folder}: no routing outcomes (folders with outcomes: {', '.join(sorted(_OUTCOMES))})"
        )
    try:
        return adapter(folder)
    except (KeyError, ValueError) as exc:
        if isinstance(exc, DatasetError):
            raise
        raise DatasetError(f"{folder}: unexpected content ({exc!r})") from exc


def shared_labelled(folder: Path) -> LabelledQueries:
    """The category-labelled queries of a shared-data folder (by its directory name)."""
    if folder.name in ("arena_hard", "humaneval", "gsm8k"):
        return _labelled_only(folder)
    return shared_outcomes(folder).labelled()


def _outcome_records(data: RoutingOutcomes) -> Iterator[dict[str, Any]]:
    for i, text in enumerate(data.texts):
        scores = {e: float(s) for e, s in zip(data.experts, data.scores[i], strict=True)}
        record: dict[str, Any] = {
            "id": data.ids[i],
            "text": text,
            "scores": {e: (None if math.isnan(s) else s) for e, s in scores.items()},
            "costs": {e: float(c) for e, c in zip(data.experts, data.costs[i], strict=True)},
        }
        if data.answers is not None:
            record["answers"] = {
                e: str(a) for e, a in zip(data.experts, data.answers[i], strict=True) if a
            }
        if data.labels is not None:
            record["label"] = data.labels[i]
        if data.split is not None and data.split[i] in ("train", "test"):
            record["split"] = data.split[i]
        yield record


def export(folder: Path, out: Path) -> int:
    """Write `folder` as a generic JSONL file (routing outcomes where the folder has them, else
    labelled queries); the number of rows written. Writes to a temporary file, then renames."""
    if folder.name not in SHARED_FOLDERS:
        raise DatasetError(
            f"{folder}: not a known shared-data folder ({', '.join(SHARED_FOLDERS)})"
        )
    if folder.name in _OUTCOMES:
        data = shared_outcomes(folder)
        if data.split is not None and not set(data.split) <= {"train", "test"}:
            data = RoutingOutcomes(
                data.texts, data.ids, data.experts, data.scores, data.costs, data.labels
            )
        records = list(_outcome_records(data))
    else:
        labelled = shared_labelled(folder)
        records = [
            {"id": i, "text": t, "label": label}
            for i, t, label in zip(labelled.ids, labelled.texts, labelled.labels, strict=True)
        ]
    tmp = out.with_name(f".{out.name}.tmp")
    out.parent.mkdir(parents=True, exist_ok=True)
    with tmp.open("w", encoding="utf-8") as handle:
        for record in records:
            handle.write(json.dumps(record, ensure_ascii=False) + "\n")
    tmp.replace(out)
    return len(records)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.shared_data",
        description="Export a shared evaluation folder to the JSONL that `coe train` reads.",
    )
    parser.add_argument("folder", type=Path, help=f"one of: {', '.join(SHARED_FOLDERS)}")
    parser.add_argument("--out", type=Path, required=True, help="JSONL file to write")
    args = parser.parse_args(argv)
    try:
        rows = export(args.folder, args.out)
    except DatasetError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {rows} rows to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
