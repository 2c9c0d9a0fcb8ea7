"""LocalExpert against the real SmolLM2-135M-Instruct (loaded once per session, greedy, short)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import torch

from experts.base import Expert
from experts.chat import ChatDelta, ChatRequest, Sampling
from experts.errors import ExpertCancelled, ExpertTimeout, ExpertUnavailable, UpstreamRejected
from experts.local import LocalExpert
from experts.local_models import LocalModelStore
from experts.sampling import GenerationParams, LocalOptions, StopTrimmer
from registry.spec import ExpertKind, ExpertSpec
from tests.fakes import ask

CAPITAL = "What is the capital of France? Answer in one sentence."
STORY = "Write a long story about a dragon who learns to bake bread."


@pytest.fixture(scope="session")
def store() -> Iterator[LocalModelStore]:
    """One store for the session: SmolLM2 is converted (if needed) and loaded once.

    One torch thread: on a shared 2-core machine two threads generated 3-8x slower.
    """
    threads = torch.get_num_threads()
    models = LocalModelStore(torch_threads=1)
    asyncio.run(models.get("smollm2"))
    yield models
    models.close()
    torch.set_num_threads(threads)


def make_expert(store: LocalModelStore, **fields: Any) -> LocalExpert:
    return LocalExpert(ExpertSpec(name="local", kind=ExpertKind.LOCAL, **fields), store=store)


def generation_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "coe-local-generate"]


async def collect(expert: LocalExpert, request: ChatRequest) -> list[ChatDelta]:
    return [delta async for delta in expert.stream(request)]


# -- pure pieces ------------------------------------------------------------------------------


def test_stop_trimmer_finds_a_stop_string_split_across_pieces() -> None:
    trimmer = StopTrimmer(("STOP",))
    emitted = []
    for piece in ["one two S", "TO", "P three"]:
        out, stopped = trimmer.feed(piece)
        emitted.append(out)
        if stopped:
            break
    assert "".join(emitted) == "one two "
    assert stopped


def test_stop_trimmer_releases_held_text_at_the_end() -> None:
    trimmer = StopTrimmer(("###", "\n\n"))
    out, stopped = trimmer.feed("abc#")
    assert not stopped
    assert out + trimmer.flush() == "abc#"


def test_generation_params_take_the_request_over_the_expert_defaults() -> None:
    params = GenerationParams.resolve(
        Sampling(stop=("x",), temperature=0), LocalOptions(max_tokens=12)
    )
    assert params == GenerationParams(max_tokens=12, temperature=0.0, stop=("x",))
    assert params.generate_kwargs() == {"do_sample": False}
    sampled = GenerationParams.resolve(Sampling(temperature=0.7, top_p=0.9), LocalOptions())
    assert sampled.max_tokens == 256
    assert sampled.generate_kwargs()["do_sample"] is True
    newer = GenerationParams.resolve(
        Sampling(max_tokens=9, max_completion_tokens=4), LocalOptions()
    )
    assert newer.max_tokens == 4  # OpenAI's current name wins, as in vLLM
    penalised = GenerationParams.resolve(Sampling(), LocalOptions(repetition_penalty=1.2))
    assert penalised.generate_kwargs() == {"do_sample": False, "repetition_penalty": 1.2}


def test_bad_options_are_refused_when_the_expert_is_built() -> None:
    for bad in ({"max_tokens": 0}, {"max_tokens": "5"}, {"temperature": 3}, {"stop": ["x"]}):
        with pytest.raises(ValueError, match=r"expert 'local': options\."):
            make_expert(LocalModelStore(), options=bad)


@pytest.mark.parametrize(
    "extra",
    [
        {"tools": [{"type": "function", "function": {"name": "f"}}]},
        {"response_format": {"type": "json_object"}},
    ],
)
async def test_what_a_local_model_cannot_honour_is_refused_before_any_work(
    extra: dict[str, Any],
) -> None:
    expert = make_expert(LocalModelStore())  # never loads: the request is refused first
    with pytest.raises(UpstreamRejected, match="cannot honour") as info:
        await expert.chat(replace(ask("hi"), extra=extra))
    assert info.value.status == 400 and info.value.before_first_byte


async def test_a_missing_model_directory_is_unavailable(tmp_path: Path) -> None:
    expert = make_expert(LocalModelStore(), model=str(tmp_path / "nothing-here"))
    with pytest.raises(ExpertUnavailable) as info:
        await expert.start()
    assert info.value.expert == "local"
    assert not (await expert.health()).healthy


# -- the real model ---------------------------------------------------------------------------


@pytest.mark.slow
async def test_chat_answers_sensibly_with_usage(store: LocalModelStore) -> None:
    expert = make_expert(store)
    assert isinstance(expert, Expert)
    result = await expert.chat(ask(CAPITAL, max_tokens=16))
    assert "Paris" in result.text
    assert result.finish_reason == "stop"
    assert result.usage is not None
    assert result.usage.prompt_tokens > 10
    assert 1 <= result.usage.completion_tokens <= 16


@pytest.mark.slow
async def test_stream_yields_pieces_then_a_final_delta(store: LocalModelStore) -> None:
    expert = make_expert(store)
    deltas = await collect(expert, ask(CAPITAL, max_tokens=16))
    assert len(deltas) >= 3
    assert all(d.finish_reason is None for d in deltas[:-1])
    assert deltas[-1].finish_reason == "stop"
    assert deltas[-1].usage is not None
    chat = await expert.chat(ask(CAPITAL, max_tokens=16))  # greedy: the same text
    assert "".join(d.content for d in deltas) == chat.content


@pytest.mark.slow
async def test_logprobs_of_every_token_with_alternatives(store: LocalModelStore) -> None:
    expert = make_expert(store)
    result = await expert.chat(ask(CAPITAL, max_tokens=6, logprobs=True, top_logprobs=3))
    content = result.choice["logprobs"]["content"]
    assert result.usage is not None and len(content) == result.usage.completion_tokens
    assert "".join(t["token"] for t in content).startswith(result.text[:10])
    for token in content:
        assert token["logprob"] <= 0 and len(token["top_logprobs"]) == 3
        assert token["top_logprobs"][0]["token"] == token["token"]  # greedy: the top token
    deltas = await collect(expert, ask(CAPITAL, max_tokens=6, logprobs=True, top_logprobs=3))
    assert deltas[-1].choice["logprobs"]["content"] == content


@pytest.mark.slow
async def test_max_tokens_is_respected(store: LocalModelStore) -> None:
    result = await make_expert(store).chat(ask(STORY, max_tokens=5))
    assert result.finish_reason == "length"
    assert result.usage is not None
    assert result.usage.completion_tokens == 5


@pytest.mark.slow
async def test_options_give_the_default_max_tokens(store: LocalModelStore) -> None:
    result = await make_expert(store, options={"max_tokens": 3}).chat(ask(STORY))
    assert result.usage is not None
    assert result.usage.completion_tokens == 3


@pytest.mark.slow
async def test_stop_string_ends_the_answer_and_is_cut(store: LocalModelStore) -> None:
    expert = make_expert(store)
    count = "Count from 1 to 10, one number per line."
    stopped = await expert.chat(ask(count, max_tokens=30, stop=["5"]))
    assert stopped.finish_reason == "stop"
    assert "4" in stopped.text  # the model counted up to the stop string...
    assert "5" not in stopped.text  # ...which was cut, with what came after it
    streamed = await collect(expert, ask(count, max_tokens=30, stop="5"))
    assert "".join(d.content for d in streamed) == stopped.content


@pytest.mark.slow
async def test_system_prompt_is_added_when_the_request_has_none(store: LocalModelStore) -> None:
    plain = await make_expert(store).chat(ask("Hi", max_tokens=1))
    prompted = await make_expert(store, system_prompt="Answer like a pirate, always.").chat(
        ask("Hi", max_tokens=1)
    )
    assert plain.usage is not None and prompted.usage is not None
    assert prompted.usage.prompt_tokens != plain.usage.prompt_tokens


@pytest.mark.slow
async def test_same_seed_same_sample(store: LocalModelStore) -> None:
    expert = make_expert(store)
    request = ask(STORY, max_tokens=5, temperature=1.0, seed=7)
    first = await expert.chat(request)
    second = await expert.chat(request)
    assert first.content == second.content


@pytest.mark.slow
async def test_closing_the_stream_early_stops_generation(store: LocalModelStore) -> None:
    expert = make_expert(store)
    stream = expert.stream(ask(STORY, max_tokens=200))
    first = await anext(stream)
    assert first.content
    await stream.aclose()
    loaded = store.peek("smollm2")
    assert loaded is not None
    assert not loaded.busy
    assert generation_threads() == []


@pytest.mark.slow
async def test_one_generation_at_a_time_and_both_answer(store: LocalModelStore) -> None:
    expert = make_expert(store)
    first, second = await asyncio.gather(
        expert.chat(ask(CAPITAL, max_tokens=8)), expert.chat(ask(CAPITAL, max_tokens=8))
    )
    assert first.content == second.content
    health = await expert.health()
    assert health.healthy
    assert health.running_requests == 0.0


@pytest.mark.slow
async def test_timeout_raises_expert_timeout(store: LocalModelStore) -> None:
    expert = make_expert(store, timeout_s=0.001)
    with pytest.raises(ExpertTimeout) as info:
        await expert.chat(ask(STORY, max_tokens=200))
    assert info.value.before_first_byte
    assert generation_threads() == []


@pytest.mark.slow
async def test_aclose_cancels_running_generations(store: LocalModelStore) -> None:
    expert = make_expert(store)
    stream = expert.stream(ask(STORY, max_tokens=200))
    await anext(stream)
    await expert.aclose()
    with pytest.raises(ExpertCancelled) as info:
        async for _ in stream:
            pass
    assert not info.value.before_first_byte
    with pytest.raises(ExpertCancelled):
        await expert.chat(ask(CAPITAL, max_tokens=2))
    assert generation_threads() == []


@pytest.mark.slow
async def test_health_reports_loaded_and_the_store_shares_models(store: LocalModelStore) -> None:
    a, b = make_expert(store), make_expert(store)
    await a.start()
    await b.start()
    assert (await a.health()).healthy
    assert (await a.health()).models == ("smollm2",)
    assert await store.get("smollm2") is store.peek("smollm2")
    fresh = make_expert(LocalModelStore())
    health = await fresh.health()
    assert not health.healthy
    assert health.detail == "not loaded"
