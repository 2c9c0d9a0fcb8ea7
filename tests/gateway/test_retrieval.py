"""Retriever experts in the gateway: routed by their pilot texts, gated answers with passages or
with passages in an LLM's context, added and removed at run time, bad indexes refused.

Indexes: lexical indexes of MEDLINE and Cranfield documents (tests/fixtures/classic_ir_sample.jsonl,
attribution in tests/fixtures/README.md); LLM experts: vLLM-API *simulators* (their request
bodies show what the LLM was given).
"""

from __future__ import annotations

import contextlib
import json
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from experts.retrieval.build import build_index
from routers.embedder import Embedder
from tests.gateway.conftest import Gateway, Sim, expert, run_gateway, simulator, write_config

SAMPLE = Path(__file__).resolve().parents[1] / "fixtures" / "classic_ir_sample.jsonl"
CHAT = "/v1/chat/completions"
MEDICAL = "autoimmune disease in mice and human lupus antibodies"
AERO = "boundary layer flow over a flat plate at supersonic mach numbers"
POEM = "Write a short poem about the sea."


@pytest.fixture(scope="module")
def indexes(tmp_path_factory: pytest.TempPathFactory, embedder: Embedder) -> dict[str, Path]:
    """One lexical index per domain of the sample (10 documents each)."""
    root = tmp_path_factory.mktemp("indexes")
    rows = [json.loads(line) for line in SAMPLE.read_text().splitlines()]
    built = {}
    for domain in ("med", "cran"):
        corpus = root / f"{domain}.jsonl"
        corpus.write_text("".join(json.dumps(r) + "\n" for r in rows if r["domain"] == domain))
        build_index(corpus, root / domain, "lexical", embedder, pilots=3)
        built[domain] = root / domain
    return built


def ids(domain: str) -> set[str]:
    rows = [json.loads(line) for line in SAMPLE.read_text().splitlines()]
    return {r["_id"] for r in rows if r["domain"] == domain}


def retriever(name: str, index: Path, **extra: Any) -> dict[str, Any]:
    return {"name": name, "kind": "retriever", "options": {"index": str(index)}, **extra}


@contextlib.contextmanager
def gateway_with(
    tmp_path: Path, embedder: Embedder, retrievers: list[dict[str, Any]], **sections: Any
) -> Iterator[tuple[Gateway, Sim]]:
    with simulator(model="llm", fixed_answer="As [med/664] shows, yes.") as sim:
        experts = [expert("generalist", sim, ["*"]), *retrievers]
        with run_gateway(write_config(tmp_path, experts, **sections), embedder) as gw:
            yield gw, sim


def ask(gw: Gateway, content: str, **body: Any) -> httpx.Response:
    return httpx.post(
        f"{gw.url}{CHAT}", json={"messages": [{"role": "user", "content": content}], **body}
    )


def test_a_domain_query_is_answered_with_cited_passages_in_context(
    tmp_path: Path, embedder: Embedder, indexes: dict[str, Path]
) -> None:
    retrievers = [retriever("med", indexes["med"]), retriever("cran", indexes["cran"])]
    with gateway_with(tmp_path, embedder, retrievers) as (gw, sim):
        route = httpx.post(f"{gw.url}/v1/route", json={"query": MEDICAL}).json()
        assert route["retrieval"]["mode"] == "context"
        assert route["retrieval"]["retrievers"][0]["name"] == "med"
        assert sim.stats.requests_received == 0  # /v1/route calls nobody
        response = ask(gw, MEDICAL)
        assert response.status_code == 200, response.text
        assert response.headers["x-coe-expert"] == "generalist"
        assert response.headers["x-coe-retrievers"].split(",")[0] == "med"
        body = response.json()
        passages = body["coe"]["passages"]
        assert passages and {p["id"] for p in passages} <= ids("med") | ids("cran")
        assert passages[0]["retriever"] == "med" and passages[0]["id"] in ids("med")
        system = sim.stats.last_request_body["messages"][0]  # type: ignore[index]
        assert system["role"] == "system" and f"[{passages[0]['cite']}]" in system["content"]
        assert body["choices"][0]["message"]["content"] == "As [med/664] shows, yes."


def test_passages_mode_answers_with_the_passages_streamed_or_not(
    tmp_path: Path, embedder: Embedder, indexes: dict[str, Path]
) -> None:
    with gateway_with(tmp_path, embedder, [retriever("med", indexes["med"])]) as (gw, sim):
        whole = ask(gw, MEDICAL, coe={"retrieval": "passages"})
        assert whole.status_code == 200, whole.text
        assert whole.headers["x-coe-expert"] == "med"
        content = whole.json()["choices"][0]["message"]["content"]
        cited = [p["id"] for p in whole.json()["coe"]["passages"]]
        assert cited and set(cited) <= ids("med") and f"[{cited[0]}]" in content
        with httpx.stream(
            "POST",
            f"{gw.url}{CHAT}",
            json={
                "messages": [{"role": "user", "content": MEDICAL}],
                "stream": True,
                "coe": {"retrieval": "passages"},
            },
        ) as response:
            events = [line[6:] for line in response.iter_lines() if line.startswith("data: ")]
        first = json.loads(events[0])
        assert [p["id"] for p in first["coe"]["passages"]] == cited
        text = "".join(
            json.loads(e)["choices"][0]["delta"].get("content") or ""
            for e in events[1:-1]
            if json.loads(e)["choices"]
        )
        assert text == content and events[-1] == "[DONE]"
        assert sim.stats.requests_received == 0  # no LLM was called


def test_a_query_outside_every_domain_is_not_gated(
    tmp_path: Path, embedder: Embedder, indexes: dict[str, Path]
) -> None:
    with gateway_with(tmp_path, embedder, [retriever("med", indexes["med"])]) as (gw, sim):
        response = ask(gw, POEM)
        assert response.status_code == 200
        assert response.headers["x-coe-retrieval"] == "off"
        assert "x-coe-retrievers" not in response.headers and "coe" not in response.json()
        assert sim.stats.last_request_body["messages"][0]["role"] == "user"  # type: ignore[index]
        off = ask(gw, MEDICAL, coe={"retrieval": "off"})  # the request turns it off
        assert off.headers["x-coe-retrieval"] == "off" and "coe" not in off.json()


def test_retrievers_added_and_removed_at_run_time(
    tmp_path: Path, embedder: Embedder, indexes: dict[str, Path]
) -> None:
    with gateway_with(tmp_path, embedder, [retriever("med", indexes["med"])]) as (gw, _):
        assert ask(gw, AERO).headers["x-coe-retrieval"] == "off"
        admin = f"{gw.url}/admin/experts"
        added = httpx.post(admin, json=retriever("cran", indexes["cran"]), headers=gw.admin_headers)
        assert added.status_code == 201, added.text
        assert added.json()["exemplars"]  # its pilot texts: routable without retraining
        response = ask(gw, AERO)
        assert response.headers["x-coe-retrievers"].split(",")[0] == "cran"
        assert response.json()["coe"]["passages"][0]["id"] in ids("cran")
        removed = httpx.delete(f"{admin}/cran", headers=gw.admin_headers)
        assert removed.status_code == 200
        assert "cran" not in ask(gw, AERO).headers.get("x-coe-retrievers", "")


def test_a_missing_or_corrupt_index_is_refused_naming_it(
    tmp_path: Path, embedder: Embedder, indexes: dict[str, Path]
) -> None:
    broken = tmp_path / "broken"
    broken.mkdir()
    for item in indexes["cran"].iterdir():
        (broken / item.name).write_bytes(item.read_bytes())
    weights = broken / "weights.npz"
    weights.write_bytes(weights.read_bytes()[:100])
    with gateway_with(tmp_path, embedder, [retriever("med", indexes["med"])]) as (gw, _):
        admin = f"{gw.url}/admin/experts"
        for index in (tmp_path / "nowhere", broken):
            refused = httpx.post(admin, json=retriever("x", index), headers=gw.admin_headers)
            assert refused.status_code == 400, refused.text
            error = refused.json()["error"]
            assert error["param"] == "options.index" and str(index) in error["message"]
        assert ask(gw, MEDICAL).headers["x-coe-retrievers"] == "med"  # still serving


def test_the_gate_and_the_domains_searched() -> None:
    from experts.chat import ChatRequest, Message
    from gateway.retrieval import retrieval_decision
    from gateway.settings import RetrievalSettings
    from registry.spec import ExpertKind, ExpertSpec
    from routers.base import ExpertTable, RouteDecision

    specs = tuple(
        ExpertSpec(name=n, kind=ExpertKind.RETRIEVER, options={"index": f"/i/{n}"}, exemplars=["x"])
        for n in ("med", "cran", "cacm")
    )
    table = ExpertTable(1, specs)
    request = ChatRequest((Message("user", "q"),))

    def decide(probabilities: dict[str, float], **kw: Any) -> Any:
        settings = RetrievalSettings(**kw.get("settings", {}))  # gate 0.5, also_above 0.2, 2
        route = RouteDecision((), tuple(sorted(probabilities.items(), key=lambda x: -x[1])))
        return retrieval_decision(kw.get("req", request), route, table, table.names(), settings)

    def names(decision: Any) -> list[str]:
        return [n for n, _ in decision.retrievers]

    router = {"choose_by": "router"}
    both = decide({"med": 0.6, "cran": 0.25, "cacm": 0.15}, settings=router)
    assert both.mode.value == "context" and names(both) == ["med", "cran"]
    assert names(decide({"med": 0.75, "cran": 0.15}, settings=router)) == ["med"]
    # default: every candidate domain is searched once gated; their passages decide
    assert names(decide({"med": 0.75, "cran": 0.15})) == ["med", "cran", "cacm"]
    assert names(decide({"med": 0.75, "cran": 0.15}, settings={"candidates": 2})) == [
        "med",
        "cran",
    ]
    for settings in ({}, router):
        unsure = decide({"med": 0.45, "cran": 0.4}, settings=settings)
        assert unsure.mode.value == "off" and not unsure.retrievers
        assert "best med 0.45" in unsure.reason
    asked = decide({"med": 0.9}, req=ChatRequest((Message("user", "q"),), retrieval="passages"))
    assert asked.mode.value == "passages"


def passages(domain: str, *similarities: float | None) -> list[Any]:
    from experts.retrieval.base import Passage

    return [
        Passage(f"{domain}/{i}", 1.0 / (i + 1), "text", similarity=s)
        for i, s in enumerate(similarities)
    ]


def test_the_domain_whose_passages_answer_best_is_chosen() -> None:
    from gateway.retrieval import SIMILARITY_TEMPERATURE, choose
    from gateway.settings import RetrievalSettings

    settings = RetrievalSettings()  # also_above 0.2, at most 2, evidence: top k=5
    # the router prefers med, but cran's passages are far closer to the query
    far = [("med", 0.7, passages("med", 0.3, 0.3, 0.3)), ("cran", 0.2, passages("cran", 0.6))]
    chosen, note = choose(far, settings)
    assert [n for n, _, _ in chosen] == ["cran"] and chosen[0][1] > 0.99
    assert note.startswith("chosen by passage similarity: cran 0.600 (1.00), med 0.300")
    # close evidence: both used, weighted by softmax(mean similarity / T); at most 2
    close = [
        ("med", 0.7, passages("med", 0.52, 0.48)),  # mean 0.50 (top k=5: both)
        ("cran", 0.2, passages("cran", 0.49, 0.47)),  # mean 0.48
        ("cacm", 0.1, passages("cacm", 0.47)),
        ("cisi", 0.0, []),  # found nothing: not a candidate
    ]
    chosen, _ = choose(close, settings)
    assert [n for n, _, _ in chosen] == ["med", "cran"]
    odds = math.exp(0.02 / SIMILARITY_TEMPERATURE)
    assert chosen[0][1] / chosen[1][1] == pytest.approx(odds)
    depth = RetrievalSettings(k=1)  # evidence from the top passage only: 0.52 vs 0.49
    assert choose(close, depth)[0][0][1] / choose(close, depth)[0][1][1] == pytest.approx(
        math.exp(0.03 / SIMILARITY_TEMPERATURE)
    )


def test_without_similarities_the_router_chooses() -> None:
    from gateway.retrieval import choose
    from gateway.settings import RetrievalSettings

    lexical = [
        ("med", 0.7, passages("med", None, None)),
        ("cran", 0.2, passages("cran", None)),
        ("cacm", 0.1, passages("cacm", None)),
    ]
    for settings in (RetrievalSettings(), RetrievalSettings(choose_by="router")):
        chosen, note = choose(lexical, settings)
        assert [(n, w) for n, w, _ in chosen] == [("med", 0.7), ("cran", 0.2)] and note == ""
    dense = [("med", 0.7, passages("med", 0.3)), ("cran", 0.15, passages("cran", 0.9))]
    chosen, note = choose(dense, RetrievalSettings(choose_by="router"))
    assert [n for n, _, _ in chosen] == ["med"] and note == ""


def test_passages_of_several_domains_are_merged_by_similarity() -> None:
    from gateway.retrieval import SIMILARITY_TEMPERATURE, combine
    from gateway.settings import RetrievalSettings

    rules = RetrievalSettings()

    # hybrid-like: a domain's own order is kept even where its similarities are not sorted
    med = passages("med", 0.5, 0.7, 0.2)
    cran = passages("cran", 0.65, 0.3)
    even = combine([("med", 0.5, med), ("cran", 0.5, cran)], 4, rules)
    assert [c.passage.id for c in even] == ["med/0", "cran/0", "med/1", "cran/1"]
    assert [c.score for c in even][:2] == pytest.approx(
        [
            0.7 + SIMILARITY_TEMPERATURE * math.log(0.5),
            0.65 + SIMILARITY_TEMPERATURE * math.log(0.5),
        ]
    )
    lopsided = combine([("med", 0.99, med), ("cran", 0.01, cran)], 4, rules)  # cran: -0.23
    assert [c.passage.id for c in lopsided] == ["med/0", "med/1", "cran/0", "med/2"]
    same_ids = combine([("a", 0.5, passages("x", 0.4)), ("b", 0.5, passages("x", 0.3))], 2, rules)
    assert [c.cite for c in same_ids] == ["a:x/0", "b:x/0"]
    no_similarity = combine(
        [("med", 0.7, passages("med", None, None))], 2, rules
    )  # reciprocal rank
    assert [c.passage.id for c in no_similarity] == ["med/0", "med/1"]
    assert no_similarity[0].score == pytest.approx(0.7 / 61)
    router = RetrievalSettings(choose_by="router")  # the router's rule: reciprocal rank
    fused = combine([("med", 0.5, med), ("cran", 0.5, cran)], 5, router)
    assert [c.passage.id for c in fused][:2] == ["med/0", "cran/0"]
    assert [c.score for c in fused][:2] == pytest.approx([0.5 / 61, 0.5 / 61])


def test_dense_retrievers_are_searched_and_the_best_answering_one_used(
    tmp_path: Path, embedder: Embedder
) -> None:
    rows = [json.loads(line) for line in SAMPLE.read_text().splitlines()]
    for domain in ("med", "cran"):
        corpus = tmp_path / f"{domain}.jsonl"
        corpus.write_text("".join(json.dumps(r) + "\n" for r in rows if r["domain"] == domain))
        build_index(corpus, tmp_path / domain, "dense", embedder, pilots=3)
    retrievers = [retriever(d, tmp_path / d) for d in ("med", "cran")]
    with gateway_with(tmp_path, embedder, retrievers) as (gw, _):
        route = httpx.post(f"{gw.url}/v1/route", json={"query": AERO}).json()["retrieval"]
        assert [r["name"] for r in route["retrievers"]] == ["cran", "med"]  # both searched
        response = ask(gw, AERO)
        assert response.headers["x-coe-retrievers"] == "cran"  # med searched, not used
        reason = response.headers["x-coe-retrieval-reason"]
        assert "chosen by passage similarity: cran" in reason and "med" in reason
        assert {p["id"] for p in response.json()["coe"]["passages"]} <= ids("cran")
    router = {"retrieval": {"choose_by": "router"}}
    (tmp_path / "router").mkdir()
    with gateway_with(tmp_path / "router", embedder, retrievers, **router) as (gw, _):
        response = ask(gw, AERO)
        assert response.headers["x-coe-retrievers"] == "cran"
        assert "similarity" not in response.headers["x-coe-retrieval-reason"]
