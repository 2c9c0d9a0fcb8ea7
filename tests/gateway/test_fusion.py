"""Output-level fusion through the gateway: every strategy, stream and non-stream, candidates that
fail or miss the deadline, the request and configuration interface, and client disconnects.

The candidates are vLLM-API *simulators* answering fixed texts (`fixed_answer`), so that they
agree or disagree on purpose.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from routers.embedder import Embedder
from tests.gateway.conftest import Gateway, Sim, expert, run_gateway, simulator, write_config

CHAT = "/v1/chat/completions"
MATH = "Compute 17 times 23."
WRITING = "Write a short poem about the sea."


@contextlib.contextmanager
def fusion_gateway(
    tmp_path: Path, embedder: Embedder, answers: dict[str, dict[str, Any]], **sections: Any
) -> Iterator[tuple[Gateway, dict[str, Sim]]]:
    """A gateway whose experts (all serving math) are simulators with the given options."""
    with contextlib.ExitStack() as stack:
        sims = {
            name: stack.enter_context(simulator(model=f"{name}-model", **options))
            for name, options in answers.items()
        }
        experts = [
            expert(name, sim, ["math"], cost=float(i + 1))
            for i, (name, sim) in enumerate(sims.items())
        ]
        experts.append(expert("generalist", sims[next(iter(sims))], ["*"], cost=9.0))
        config = write_config(tmp_path, experts, **sections)
        with run_gateway(config, embedder) as gw:
            yield gw, sims


def ask(gw: Gateway, content: str = MATH, **body: Any) -> httpx.Response:
    return httpx.post(
        f"{gw.url}{CHAT}", json={"messages": [{"role": "user", "content": content}], **body}
    )


def test_vote_takes_the_weighted_majority_and_sums_usage(
    tmp_path: Path, embedder: Embedder
) -> None:
    answers = {
        "a": {"fixed_answer": "I think the answer is (C)."},
        "b": {"fixed_answer": "The answer is (B)."},
        "c": {"fixed_answer": "Clearly the answer is B"},
    }
    with fusion_gateway(tmp_path, embedder, answers) as (gw, sims):
        response = ask(gw, coe={"fusion": "vote", "experts": ["a", "b", "c"]})
        assert response.status_code == 200, response.text
        assert response.headers["x-coe-fusion"] == "vote"
        assert response.headers["x-coe-experts"] == "a,b,c"
        assert response.headers["x-coe-expert"] == "b"  # the best-ranked holder of "B"
        assert "2 of 3 candidates agree" in response.headers["x-coe-fusion-reason"]
        body = response.json()
        assert body["choices"][0]["message"]["content"] == "The answer is (B)."
        words = sum(len(a["fixed_answer"].split(" ")) for a in answers.values())
        assert body["usage"]["completion_tokens"] == words  # every candidate's tokens
        assert all(s.stats.requests_received == 1 for s in sims.values())


def test_vote_streams_the_chosen_answer(tmp_path: Path, embedder: Embedder) -> None:
    answers = {"a": {"fixed_answer": "84"}, "b": {"fixed_answer": "It is 84."}}
    with (
        fusion_gateway(tmp_path, embedder, answers) as (gw, _),
        gw.client().chat.completions.with_streaming_response.create(
            model="auto",
            messages=[{"role": "user", "content": MATH}],
            stream=True,
            stream_options={"include_usage": True},
            extra_body={"coe": {"fusion": "vote", "experts": ["a", "b"]}},
        ) as response,
    ):
        assert response.headers["x-coe-fusion"] == "vote"
        chunks = list(response.parse())
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "84"
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 1 + 3


def test_failing_and_late_candidates_are_dropped(tmp_path: Path, embedder: Embedder) -> None:
    answers: dict[str, dict[str, Any]] = {
        "a": {"fixed_answer": "The answer is (A).", "failure_rate": 1.0},
        "b": {"fixed_answer": "The answer is (B).", "ttft_s": 5.0},
        "c": {"fixed_answer": "The answer is (C)."},
        "d": {"fixed_answer": "The answer is (C)."},
    }
    with fusion_gateway(tmp_path, embedder, answers) as (gw, _):
        started = time.monotonic()
        options = {"fusion": "vote", "experts": ["a", "b", "c", "d"], "deadline_s": 1.0}
        response = ask(gw, coe=options)
        assert time.monotonic() - started < 4.0  # the late candidate was not waited for
        assert response.status_code == 200
        assert response.headers["x-coe-experts"] == "c,d"
        assert "(C)" in response.json()["choices"][0]["message"]["content"]
        one_left = ask(gw, coe=options | {"experts": ["a", "c"]})
        assert one_left.headers["x-coe-fusion"] == "none"
        assert one_left.headers["x-coe-experts"] == "c"
        metrics = httpx.get(f"{gw.url}/metrics").text
        assert 'coe_fusion_dropped_total{strategy="vote"} 3.0' in metrics


def test_no_candidate_answering_is_an_error(tmp_path: Path, embedder: Embedder) -> None:
    answers = {"a": {"failure_rate": 1.0}, "b": {"failure_rate": 1.0}}
    with fusion_gateway(tmp_path, embedder, answers) as (gw, _):
        response = ask(gw, coe={"fusion": "vote", "experts": ["a", "b"]})
        assert response.status_code == 502
        assert response.json()["error"]["message"]


def test_judge_picks_the_candidate_it_names(tmp_path: Path, embedder: Embedder) -> None:
    answers = {
        "a": {"fixed_answer": "Paris is the capital."},
        "b": {"fixed_answer": "Lyon is the capital."},
        "judge": {"fixed_answer": "1"},
    }
    fusion = {"judge": "judge"}
    with fusion_gateway(tmp_path, embedder, answers, fusion=fusion) as (gw, sims):
        response = ask(gw, coe={"fusion": "judge", "experts": ["b", "a"]})
        assert response.headers["x-coe-fusion"] == "judge"
        assert response.headers["x-coe-experts"] == "b,a,judge"
        assert response.json()["choices"][0]["message"]["content"] == "Lyon is the capital."
        sent = sims["judge"].stats.last_request_body
        assert sent is not None
        prompt = "\n".join(m["content"] for m in sent["messages"])
        assert "Answer 1:\nLyon is the capital." in prompt
        assert "Answer 2:\nParis is the capital." in prompt


def test_aggregate_synthesises_and_streams_the_aggregator(
    tmp_path: Path, embedder: Embedder
) -> None:
    answers = {
        "a": {"fixed_answer": "Rivers flow."},
        "b": {"fixed_answer": "Seas are salty."},
        "agg": {"fixed_answer": "Rivers flow into salty seas."},
    }
    with fusion_gateway(tmp_path, embedder, answers, fusion={"aggregator": "agg"}) as (gw, sims):
        options = {"fusion": "aggregate", "experts": ["a", "b"]}
        whole = ask(gw, coe=options)
        assert whole.json()["choices"][0]["message"]["content"] == "Rivers flow into salty seas."
        assert whole.headers["x-coe-experts"] == "a,b,agg"
        system = sims["agg"].stats.last_request_body["messages"][0]  # type: ignore[index]
        assert "1. Rivers flow." in system["content"] and "2. Seas are salty." in system["content"]
        with httpx.stream(
            "POST",
            f"{gw.url}{CHAT}",
            json={
                "messages": [{"role": "user", "content": MATH}],
                "stream": True,
                "stream_options": {"include_usage": True},
                "coe": options,
            },
        ) as response:
            events = [line for line in response.iter_lines() if line.startswith("data: ")]
        pieces = [e for e in events if '"content":"' in e and '"content":""' not in e]
        assert len(pieces) == 5  # the aggregator's tokens, streamed one by one
        assert events[-1] == "data: [DONE]"
        usage = json.loads(events[-2].removeprefix("data: "))["usage"]
        # both candidates' tokens and the aggregator's: more than the whole answer's candidates
        assert usage["completion_tokens"] == whole.json()["usage"]["completion_tokens"] > 5
        metrics = httpx.get(f"{gw.url}/metrics").text
        # both requests' three calls, the streamed aggregator's included once its stream ended
        assert 'coe_fusion_calls_total{strategy="aggregate"} 6.0' in metrics


def test_consensus_picks_the_answer_closest_to_the_others(
    tmp_path: Path, embedder: Embedder
) -> None:
    answers = {
        "a": {"fixed_answer": "cooking pasta with tomato sauce tonight"},
        "b": {"fixed_answer": "the sea is deep and blue and cold"},
        "c": {"fixed_answer": "the sea is blue and deep"},
    }
    with fusion_gateway(tmp_path, embedder, answers) as (gw, _):
        response = ask(gw, coe={"fusion": "consensus", "experts": ["a", "b", "c"]})
        assert response.headers["x-coe-fusion"] == "consensus"
        assert response.headers["x-coe-expert"] in {"b", "c"}


def test_cascade_stops_when_the_cheapest_agree(tmp_path: Path, embedder: Embedder) -> None:
    agree = {
        "cheap1": {"fixed_answer": "It is 391."},
        "cheap2": {"fixed_answer": "391"},
        "dear": {"fixed_answer": "It is 390."},
    }
    never_sure = {"cascade_confidence": 1.0}  # always ask the two cheapest first
    with fusion_gateway(tmp_path, embedder, agree, fusion=never_sure) as (gw, sims):
        response = ask(gw, coe={"fusion": "cascade", "experts": ["dear", "cheap1", "cheap2"]})
        assert response.headers["x-coe-experts"] == "cheap1,cheap2"
        assert sims["dear"].stats.requests_received == 0
    disagree = {
        "cheap1": {"fixed_answer": "It is 391."},
        "cheap2": {"fixed_answer": "It is 392."},
        "dear": {"fixed_answer": "391, surely."},
    }
    (tmp_path / "2").mkdir()
    with fusion_gateway(tmp_path / "2", embedder, disagree, fusion=never_sure) as (gw, sims):
        response = ask(gw, coe={"fusion": "cascade", "experts": ["dear", "cheap1", "cheap2"]})
        assert response.headers["x-coe-experts"] == "cheap1,cheap2,dear"
        assert "391" in response.json()["choices"][0]["message"]["content"]


def test_category_configuration_and_the_route_preview(tmp_path: Path, embedder: Embedder) -> None:
    answers = {"a": {"fixed_answer": "391"}, "b": {"fixed_answer": "391"}}
    fusion = {"categories": {"math": "vote"}, "k": 2}
    with fusion_gateway(tmp_path, embedder, answers, fusion=fusion) as (gw, _):
        assert ask(gw).headers["x-coe-fusion"] == "vote"
        assert ask(gw, WRITING).headers["x-coe-fusion"] == "none"
        assert ask(gw, coe={"fusion": "none"}).headers["x-coe-fusion"] == "none"
        plan = httpx.post(f"{gw.url}/v1/route", json={"query": MATH}).json()["fusion"]
        assert plan == {"strategy": "vote", "k": 2, "experts": ["a", "b"], "reason": "vote over 2"}


@pytest.mark.parametrize(
    ("coe", "param"),
    [
        ({"fusion": "magic"}, "coe.fusion"),
        ({"k": 0}, "coe.k"),
        ({"colour": "red"}, "coe.colour"),
        ({"fusion": "vote", "experts": ["nobody"]}, "coe.experts"),
        ({"fusion": "judge"}, "coe.fusion"),
    ],
)
def test_bad_fusion_options_are_400_naming_the_field(
    tmp_path: Path, embedder: Embedder, coe: dict[str, Any], param: str
) -> None:
    with fusion_gateway(tmp_path, embedder, {"a": {}, "b": {}}) as (gw, _):
        response = ask(gw, coe=coe)
        assert response.status_code == 400, response.text
        assert response.json()["error"]["param"] == param


def test_a_client_that_leaves_cancels_every_candidate(tmp_path: Path, embedder: Embedder) -> None:
    slow = {"ttft_s": 6.0, "fixed_answer": "late"}
    with fusion_gateway(tmp_path, embedder, {"a": slow, "b": slow}) as (gw, _):
        with pytest.raises(httpx.TimeoutException):
            httpx.post(
                f"{gw.url}{CHAT}",
                json={
                    "messages": [{"role": "user", "content": MATH}],
                    "coe": {"fusion": "vote", "experts": ["a", "b"]},
                },
                timeout=0.5,
            )
        deadline = time.monotonic() + 3.0
        metrics = ""
        while time.monotonic() < deadline:
            metrics = httpx.get(f"{gw.url}/metrics").text
            if 'coe_inflight_requests{expert="a"} 0.0' in metrics:
                break
            time.sleep(0.1)
        assert 'coe_inflight_requests{expert="a"} 0.0' in metrics  # long before the 6 s answer
        assert 'coe_inflight_requests{expert="b"} 0.0' in metrics
