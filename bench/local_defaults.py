"""Default generation settings of the embedded local experts, measured on everyday questions.

The built-in configuration (gateway/defaults.yaml, `experts`) runs two in-process experts on
SmolLM2-135M-Instruct that differ only by system prompt: `smollm2` (the generalist; here scored on
the writing, history and general questions) and `smollm2-tutor` (math, code, science). This
script measures, for each expert, a small grid of

    system prompt      None (the chat template's own SmolLM prompt), the expert's current
                       prompt, and one short alternative ("... Answer briefly.")
    repetition_penalty None, 1.1, 1.2, 1.3

on the `tune` rows of tests/fixtures/everyday_questions.jsonl. Every answer is generated exactly
as the gateway's `LocalExpert` does (chat template, float32, greedy, max_new_tokens=256) and
scored by keywords. A "runaway" is an answer that hit the token cap instead of ending with EOS. An
answer passes when it is no runaway and, lowercased, holds one string of every keyword group
(`keyword_rate` counts the keywords alone: a 135M model that rambles to the cap often names the
topic word somewhere, so keywords alone reward runaways; a first run picked such a config).

Smaller caps are derived, not re-run: greedy decoding is deterministic, so an answer capped at 128
tokens is the first 128 tokens of the 256-token answer (its time is taken when token 128 came).

Choice, per expert: the (prompt, penalty) with the best keyword pass rate, then the lowest
runaway rate, then the lowest mean seconds (at 256 tokens); then its max_tokens: the smallest cap
in CAPS that keeps that pass rate and cuts no answer that ended by itself within 256 tokens.
The chosen and the current configurations are then evaluated on the held-out `check` rows.
Every generation is stored in the results; `--reuse FILE` takes them from an earlier results
file instead of generating them again (e.g. to re-score after changing the selection).

Run (the full grid generates about 27k tokens: ~35 minutes on one idle core; `--penalties none
1.1 1.2` drops the 1.3 column, which ran away on most answers, and takes ~20 minutes):

    cd /work/main && HF_HUB_OFFLINE=1 .venv/bin/python -m bench.local_defaults \
        [--penalties none 1.1 1.2] [--workers 1] [--reuse bench/results/local_defaults.json]

One single-threaded model per worker process. On the 2-core test machine two workers gave no more
tokens per second than one and doubled every answer's time, so the default is one worker: its
seconds are what one gateway request waits.

Writes bench/results/local_defaults.json. Seconds are wall time on a shared CPU: compare them
within one run only.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import platform
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    StoppingCriteria,
    StoppingCriteriaList,
)

REPO = Path(__file__).resolve().parents[1]
FIXTURE = REPO / "tests" / "fixtures" / "everyday_questions.jsonl"
OUT = REPO / "bench" / "results" / "local_defaults.json"

MAX_NEW_TOKENS = 256
CAPS: tuple[int, ...] = (128, 192, 256)
"""max_tokens candidates, all derived from the 256-token run."""
PENALTIES: tuple[float | None, ...] = (None, 1.1, 1.2, 1.3)

PROMPTS: dict[str, str | None] = {
    "model-default": None,
    "current-generalist": "You are a helpful, concise assistant.",
    "current-tutor": (
        "You are a careful tutor for mathematics, programming and science. Think step by step "
        "and give the final answer clearly."
    ),
    "brief": "You are a helpful AI assistant. Answer briefly.",
}
"""Candidate system prompts by name; None sends no system message (the template adds its own)."""

ExpertName = Literal["smollm2", "smollm2-tutor"]


@dataclass(frozen=True)
class ExpertGrid:
    """One default expert: the categories it is scored on, its current and candidate prompts."""

    name: ExpertName
    categories: frozenset[str]
    current_prompt: str
    prompts: tuple[str, ...]


EXPERTS: tuple[ExpertGrid, ...] = (
    ExpertGrid(
        name="smollm2",
        categories=frozenset({"writing", "history", "general"}),
        current_prompt="current-generalist",
        prompts=("model-default", "current-generalist", "brief"),
    ),
    ExpertGrid(
        name="smollm2-tutor",
        categories=frozenset({"math", "code", "science"}),
        current_prompt="current-tutor",
        prompts=("model-default", "current-tutor", "brief"),
    ),
)
CURRENT_PENALTY: float | None = None
CURRENT_MAX_TOKENS = 256


@dataclass(frozen=True)
class Question:
    id: str
    question: str
    category: str
    keywords: tuple[tuple[str, ...], ...]
    split: str


@dataclass(frozen=True)
class Config:
    prompt: str
    penalty: float | None

    @property
    def key(self) -> str:
        return f"{self.prompt}|rp={self.penalty}"


@dataclass(frozen=True)
class Task:
    prompt: str | None
    penalty: float | None
    question: str


@dataclass
class Generation:
    """One 256-token greedy answer with what smaller caps would have kept."""

    text: str
    completion_tokens: int
    hit_eos: bool
    seconds: float
    capped_text: dict[int, str] = field(default_factory=dict)
    capped_seconds: dict[int, float] = field(default_factory=dict)


@dataclass
class Answer:
    """A generation scored at one cap."""

    id: str
    category: str
    text: str
    completion_tokens: int
    runaway: bool
    cut_by_cap: bool
    seconds: float
    has_keywords: bool
    passed: bool


def load_questions(path: Path) -> list[Question]:
    rows: list[Question] = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        raw = json.loads(line)
        rows.append(
            Question(
                id=str(raw["id"]),
                question=str(raw["question"]),
                category=str(raw["category"]),
                keywords=tuple(tuple(str(k).lower() for k in group) for group in raw["keywords"]),
                split=str(raw["split"]),
            )
        )
    return rows


def passes(text: str, keywords: Sequence[Sequence[str]]) -> bool:
    """True when the lowercased text holds one string of every keyword group."""
    low = text.lower()
    return all(any(k in low for k in group) for group in keywords)


# --- generation (runs in worker processes) ---------------------------------------------------


class _StepClock(StoppingCriteria):
    """Records when each new token was produced; never stops generation."""

    def __init__(self) -> None:
        self.times: list[float] = []

    def __call__(self, input_ids: torch.Tensor, scores: Any, **kwargs: Any) -> torch.Tensor:
        self.times.append(time.perf_counter())
        return torch.zeros((input_ids.shape[0],), dtype=torch.bool)


@dataclass
class _Model:
    tokenizer: Any
    model: Any
    eos_ids: frozenset[int]


_WORKER: _Model | None = None


def _init_worker(model_dir: str) -> None:
    """Loads the model once per worker process, like `LocalModelStore._load`."""
    global _WORKER
    torch.set_num_threads(1)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    model.train(False)
    eos = model.generation_config.eos_token_id
    if eos is None:
        eos = tokenizer.eos_token_id
    eos_ids = frozenset([eos] if isinstance(eos, int) else (eos or []))
    _WORKER = _Model(tokenizer=tokenizer, model=model, eos_ids=eos_ids)


def _generate(task: Task) -> Generation:
    """One answer, as `LocalExpert` generates it (greedy unless configured otherwise)."""
    loaded = _WORKER
    assert loaded is not None, "worker not initialised"
    tokenizer = loaded.tokenizer
    messages: list[dict[str, str]] = []
    if task.prompt:
        messages.append({"role": "system", "content": task.prompt})
    messages.append({"role": "user", "content": task.question})
    text = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    inputs = tokenizer(text, return_tensors="pt", add_special_tokens=False)
    prompt_tokens = int(inputs["input_ids"].shape[1])
    kwargs: dict[str, Any] = {"do_sample": False}
    if task.penalty is not None:
        kwargs["repetition_penalty"] = task.penalty
    pad = tokenizer.pad_token_id
    clock = _StepClock()
    start = time.perf_counter()
    with torch.inference_mode():
        output = loaded.model.generate(
            **inputs,
            **kwargs,
            max_new_tokens=MAX_NEW_TOKENS,
            pad_token_id=pad if pad is not None else min(loaded.eos_ids, default=0),
            stopping_criteria=StoppingCriteriaList([clock]),
        )
    seconds = time.perf_counter() - start
    new_tokens: list[int] = output[0, prompt_tokens:].tolist()
    gen = Generation(
        text=tokenizer.decode(new_tokens, skip_special_tokens=True),
        completion_tokens=len(new_tokens),
        hit_eos=bool(new_tokens) and new_tokens[-1] in loaded.eos_ids,
        seconds=seconds,
    )
    for cap in CAPS:
        if len(new_tokens) > cap:
            gen.capped_text[cap] = tokenizer.decode(new_tokens[:cap], skip_special_tokens=True)
            gen.capped_seconds[cap] = clock.times[cap - 1] - start
        else:
            gen.capped_text[cap] = gen.text
            gen.capped_seconds[cap] = seconds
    return gen


def _run_indexed(item: tuple[int, Task]) -> tuple[int, Generation]:
    return item[0], _generate(item[1])


# --- orchestration ----------------------------------------------------------------------------


class Runner:
    """Generates each distinct (prompt, penalty, question) once, in a pool of worker processes."""

    def __init__(self, model_dir: Path, workers: int) -> None:
        self._model_dir = str(model_dir)
        self._workers = workers
        self.cache: dict[tuple[str, float | None, str], Generation] = {}

    def get(self, config: Config, q: Question) -> Generation:
        return self.cache[(config.prompt, config.penalty, q.id)]

    def dump(self, questions: Sequence[Question]) -> list[dict[str, Any]]:
        """Every generation, JSON-ready; capped text/seconds only where a cap cut the answer."""
        text_of = {q.id: q.question for q in questions}
        rows: list[dict[str, Any]] = []
        for (prompt, penalty, qid), gen in self.cache.items():
            cut = [cap for cap in CAPS if gen.completion_tokens > cap]
            rows.append(
                {
                    "prompt_name": prompt,
                    "system_prompt": PROMPTS[prompt],
                    "repetition_penalty": penalty,
                    "id": qid,
                    "question": text_of[qid],
                    "text": gen.text,
                    "completion_tokens": gen.completion_tokens,
                    "hit_eos": gen.hit_eos,
                    "seconds": round(gen.seconds, 3),
                    "capped_text": {str(cap): gen.capped_text[cap] for cap in cut},
                    "capped_seconds": {str(cap): round(gen.capped_seconds[cap], 3) for cap in cut},
                }
            )
        return rows

    def reuse(self, path: Path, questions: Sequence[Question]) -> int:
        """Takes the generations of an earlier results file whose prompt and question texts
        are still the same; returns how many."""
        text_of = {q.id: q.question for q in questions}
        rows: list[dict[str, Any]] = json.loads(path.read_text(encoding="utf-8")).get(
            "generations", []
        )
        taken = 0
        for row in rows:
            prompt, qid = str(row["prompt_name"]), str(row["id"])
            if (
                PROMPTS.get(prompt, "?") != row["system_prompt"]
                or text_of.get(qid) != row["question"]
            ):
                continue
            gen = Generation(
                text=str(row["text"]),
                completion_tokens=int(row["completion_tokens"]),
                hit_eos=bool(row["hit_eos"]),
                seconds=float(row["seconds"]),
            )
            for cap in CAPS:
                gen.capped_text[cap] = str(row["capped_text"].get(str(cap), gen.text))
                gen.capped_seconds[cap] = float(row["capped_seconds"].get(str(cap), gen.seconds))
            penalty = row["repetition_penalty"]
            self.cache[(prompt, None if penalty is None else float(penalty), qid)] = gen
            taken += 1
        return taken

    def run(self, wanted: Sequence[tuple[Config, Question]]) -> None:
        todo: list[tuple[str, float | None, Question]] = []
        seen: set[tuple[str, float | None, str]] = set()
        for config, q in wanted:
            key = (config.prompt, config.penalty, q.id)
            if key not in self.cache and key not in seen:
                seen.add(key)
                todo.append((config.prompt, config.penalty, q))
        if not todo:
            return
        tasks = [
            (i, Task(prompt=PROMPTS[p], penalty=r, question=q.question))
            for i, (p, r, q) in enumerate(todo)
        ]
        started = time.perf_counter()
        ctx = mp.get_context("spawn")
        with ctx.Pool(self._workers, initializer=_init_worker, initargs=(self._model_dir,)) as pool:
            results = pool.imap_unordered(_run_indexed, tasks)
            for done, (i, gen) in enumerate(results, 1):
                prompt, penalty, q = todo[i]
                self.cache[(prompt, penalty, q.id)] = gen
                print(
                    f"[{done}/{len(tasks)} {time.perf_counter() - started:5.0f}s] {prompt} "
                    f"rp={penalty} {q.id}: {gen.completion_tokens} tok "
                    f"{'eos' if gen.hit_eos else 'CAP'} {gen.seconds:.1f}s {gen.text[:50]!r}",
                    flush=True,
                )
            pool.close()
            pool.join()


def score(runner: Runner, config: Config, rows: Sequence[Question], cap: int) -> list[Answer]:
    answers: list[Answer] = []
    for q in rows:
        gen = runner.get(config, q)
        text = gen.capped_text[cap]
        ended = gen.hit_eos and gen.completion_tokens <= cap
        has_keywords = passes(text, q.keywords)
        answers.append(
            Answer(
                id=q.id,
                category=q.category,
                text=text,
                completion_tokens=min(gen.completion_tokens, cap),
                runaway=not ended,
                cut_by_cap=gen.hit_eos and gen.completion_tokens > cap,
                seconds=round(gen.capped_seconds[cap], 3),
                has_keywords=has_keywords,
                passed=has_keywords and ended,
            )
        )
    return answers


def summarise(answers: Sequence[Answer]) -> dict[str, float | int]:
    """Pass rate, runaway rate, mean tokens and seconds; `cut_natural`: answers that ended by
    themselves within 256 tokens but not within this cap."""
    n = len(answers)
    return {
        "n": n,
        "pass_rate": round(sum(a.passed for a in answers) / n, 4),
        "keyword_rate": round(sum(a.has_keywords for a in answers) / n, 4),
        "runaway_rate": round(sum(a.runaway for a in answers) / n, 4),
        "mean_tokens": round(statistics.fmean(a.completion_tokens for a in answers), 1),
        "mean_seconds": round(statistics.fmean(a.seconds for a in answers), 2),
        "cut_natural": sum(a.cut_by_cap for a in answers),
    }


def rank_key(summary: dict[str, float | int]) -> tuple[float, float, float]:
    """Best first: pass rate, then runaway rate, then mean seconds."""
    return (-summary["pass_rate"], summary["runaway_rate"], summary["mean_seconds"])


def keyword_rank_key(summary: dict[str, float | int]) -> tuple[float, float, float]:
    """The literal first rule, for comparison: keyword rate, then runaways, then seconds."""
    return (-summary["keyword_rate"], summary["runaway_rate"], summary["mean_seconds"])


def choose_cap(by_cap: dict[int, dict[str, float | int]]) -> int:
    """The smallest cap that keeps the 256-token pass rate and cuts no naturally ended answer."""
    full = by_cap[MAX_NEW_TOKENS]["pass_rate"]
    for cap in CAPS:
        if by_cap[cap]["pass_rate"] >= full and by_cap[cap]["cut_natural"] == 0:
            return cap
    return MAX_NEW_TOKENS


def config_info(config: Config, max_tokens: int) -> dict[str, Any]:
    return {
        "prompt_name": config.prompt,
        "system_prompt": PROMPTS[config.prompt],
        "repetition_penalty": config.penalty,
        "max_tokens": max_tokens,
    }


def _penalty(value: str) -> float | None:
    return None if value.lower() == "none" else float(value)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--workers", type=int, default=1, help="processes, 1 torch thread each")
    parser.add_argument(
        "--penalties",
        type=_penalty,
        nargs="+",
        default=list(PENALTIES),
        help="repetition_penalty values; 'none' for no penalty (default: none 1.1 1.2 1.3)",
    )
    parser.add_argument("--fixture", type=Path, default=FIXTURE)
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--model-dir", type=Path, default=None, help="default: prepare_smollm2()")
    parser.add_argument(
        "--reuse", type=Path, default=None, help="take generations from this earlier results file"
    )
    parser.add_argument(
        "--rows", type=int, default=0, help="smoke test: only the first N tune/check rows each"
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    wall_start = time.perf_counter()
    if args.model_dir is None:
        from experts.weights import prepare_smollm2

        model_dir: Path = prepare_smollm2()
    else:
        model_dir = args.model_dir
    questions = load_questions(args.fixture)
    runner = Runner(model_dir, args.workers)
    penalties: tuple[float | None, ...] = tuple(args.penalties)
    if args.reuse is not None:
        print(f"reused {runner.reuse(args.reuse, questions)} generations from {args.reuse}")

    def rows_of(split: str, expert: ExpertGrid) -> list[Question]:
        rows = [q for q in questions if q.split == split and q.category in expert.categories]
        return rows[: args.rows] if args.rows else rows

    # 1. the grid on the tune rows (shared prompts are generated once for both experts)
    grid_pairs = [
        (Config(prompt, penalty), q)
        for expert in EXPERTS
        for prompt in expert.prompts
        for penalty in penalties
        for q in rows_of("tune", expert)
    ]
    runner.run(grid_pairs)

    grid: dict[str, list[dict[str, Any]]] = {}
    chosen: dict[str, tuple[Config, int]] = {}
    chosen_by_keywords_only: dict[str, str] = {}
    for expert in EXPERTS:
        rows = rows_of("tune", expert)
        entries: list[tuple[Config, dict[int, dict[str, float | int]]]] = []
        for prompt in expert.prompts:
            for penalty in penalties:
                config = Config(prompt, penalty)
                by_cap = {cap: summarise(score(runner, config, rows, cap)) for cap in CAPS}
                entries.append((config, by_cap))
        entries.sort(key=lambda e: rank_key(e[1][MAX_NEW_TOKENS]))
        best, best_caps = entries[0]
        chosen[expert.name] = (best, choose_cap(best_caps))
        by_keywords = min(entries, key=lambda e: keyword_rank_key(e[1][MAX_NEW_TOKENS]))[0]
        chosen_by_keywords_only[expert.name] = by_keywords.key
        grid[expert.name] = [
            {
                "config": c.key,
                "prompt_name": c.prompt,
                "repetition_penalty": c.penalty,
                "by_max_tokens": {str(cap): s for cap, s in by_cap.items()},
                "answers_256": [
                    {k: v for k, v in asdict(a).items() if k != "category"}
                    for a in score(runner, c, rows, MAX_NEW_TOKENS)
                ],
            }
            for c, by_cap in entries
        ]

    # 2. chosen vs current on the held-out check rows
    def compared(expert: ExpertGrid) -> dict[str, tuple[Config, int]]:
        return {
            "chosen": chosen[expert.name],
            "current": (Config(expert.current_prompt, CURRENT_PENALTY), CURRENT_MAX_TOKENS),
        }

    runner.run(
        [
            (config, q)
            for expert in EXPERTS
            for config, _ in compared(expert).values()
            for q in rows_of("check", expert)
        ]
    )
    report: dict[str, Any] = {}
    for expert in EXPERTS:
        per: dict[str, Any] = {}
        for label, (config, cap) in compared(expert).items():
            tune_answers = score(runner, config, rows_of("tune", expert), cap)
            check_answers = score(runner, config, rows_of("check", expert), cap)
            check_rows = rows_of("check", expert)
            per[label] = {
                **config_info(config, cap),
                "tune": summarise(tune_answers),
                "check": summarise(check_answers),
                "check_by_max_tokens": {
                    str(c): summarise(score(runner, config, check_rows, c)) for c in CAPS
                },
                "tune_answers": [asdict(a) for a in tune_answers],
                "check_answers": [asdict(a) for a in check_answers],
            }
        report[expert.name] = per

    gen_config, gen_cap = chosen["smollm2"]
    france = next((q for q in questions if q.id == "t-general-france"), None)
    france_answer = (
        asdict(score(runner, gen_config, [france], gen_cap)[0])
        if france is not None and (gen_config.prompt, gen_config.penalty, france.id) in runner.cache
        else None
    )
    wall = time.perf_counter() - wall_start
    result = {
        "what": "SmolLM2-135M-Instruct default experts: system prompt x repetition_penalty grid "
        "on everyday questions (keyword pass rate, runaways, seconds); see the module docstring",
        "command": "cd /work/main && HF_HUB_OFFLINE=1 .venv/bin/python -m bench.local_defaults "
        + " ".join(sys.argv[1:] if argv is None else argv),
        "penalties": list(penalties),
        "fixture": str(args.fixture.relative_to(REPO) if args.fixture.is_relative_to(REPO) else ""),
        "machine": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "cpu_count": mp.cpu_count(),
            "workers": args.workers,
            "torch_threads_per_worker": 1,
        },
        "max_new_tokens_generated": MAX_NEW_TOKENS,
        "caps": list(CAPS),
        "prompts": PROMPTS,
        "selection": "per expert: best tune pass rate (keywords and no runaway), then lowest "
        "runaway rate, then lowest mean "
        "seconds (at 256 tokens); max_tokens: smallest cap keeping the pass rate and cutting no "
        "answer that ended by itself",
        "chosen": {name: config_info(c, cap) for name, (c, cap) in chosen.items()},
        "chosen_by_keywords_only": chosen_by_keywords_only,
        "comparison": report,
        "capital_of_france_chosen_generalist": france_answer,
        "grid": grid,
        "wall_seconds": round(wall, 1),
        "generations": runner.dump(questions),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"\nwrote {args.out} in {wall:.0f}s")
    for name, per in report.items():
        for label, info in per.items():
            t, c = info["tune"], info["check"]
            print(
                f"{name:14} {label:13} {info['prompt_name']:18} rp={info['repetition_penalty']} "
                f"max={info['max_tokens']}: tune pass {t['pass_rate']:.2f} run "
                f"{t['runaway_rate']:.2f} {t['mean_seconds']:.1f}s | check pass "
                f"{c['pass_rate']:.2f} run {c['runaway_rate']:.2f} {c['mean_seconds']:.1f}s"
            )
    if france_answer is not None:
        print(f"capital of France (chosen generalist): {france_answer}")


if __name__ == "__main__":
    main()
