"""Gateway fixtures: real HTTP everywhere.

Upstreams are the labelled vLLM-API *simulator* (experts/simulator.py) served on loopback ports,
registered as `vllm` experts, so the gateway's HTTP client, SSE parsing and failure handling all
run for real. The router embeds with a fake (`tests.fakes.HashingEmbedder`, words hashed into
buckets): these tests are about the gateway, and the categories below share words with the
queries the tests send. Routing quality is tested with real MiniLM in tests/routers; the
trained-router test here (test_cli_routing) and the embedded default use the real one.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import openai
import pytest
import yaml
from fastapi import FastAPI

from experts.simulator import SimulatorConfig, SimulatorStats
from experts.simulator_app import create_simulator_app
from gateway.app import create_app
from gateway.settings import Settings, load_settings
from routers.embedder import Embedder
from routers.factory import build_router
from tests.fakes import HashingEmbedder
from tests.servers import serve_in_thread

ADMIN_KEY = "test-admin-key-0123456789"

CATEGORIES: dict[str, list[str]] = {
    "math": [
        "Solve for x: 2x + 3 = 11.",
        "What is the integral of x squared?",
        "Compute 17 times 23.",
        "Is 97 a prime number?",
        "Find the derivative of cos(x).",
        "What is the probability of drawing two aces from a deck?",
        "Simplify the fraction 42/56.",
        "How many ways can 4 books be arranged on a shelf?",
    ],
    "code": [
        "Write a Python function that sorts a list.",
        "Fix this JavaScript bug in my promise chain.",
        "How do I open a file in Rust?",
        "Explain this SQL join query.",
        "Implement quicksort in C.",
        "How do I split a string by commas in Java?",
        "Why does my Python script raise a KeyError?",
        "Write a bash loop over all files in a directory.",
        "Write a Go function that reads a JSON file.",
    ],
    "writing": [
        "Write a poem about the sea.",
        "Draft a cover letter for a marketing job.",
        "Write a short story about a dragon.",
        "Give me a slogan for my bakery.",
        "Compose a birthday message for my aunt.",
        "Write a limerick about a lazy cat.",
        "Rewrite this paragraph in a friendlier tone.",
        "Write the opening line of a fantasy novel.",
    ],
}


@pytest.fixture(scope="session")
def embedder() -> Embedder:
    return HashingEmbedder(dim=512)


@dataclass
class Sim:
    """One simulator upstream: its base URL (with /v1) and what it saw."""

    url: str
    stats: SimulatorStats


@contextlib.contextmanager
def simulator(**config: Any) -> Iterator[Sim]:
    app = create_simulator_app(SimulatorConfig(**config))
    with serve_in_thread(app) as url:
        yield Sim(url=f"{url}/v1", stats=app.state.stats)


@pytest.fixture
def sims() -> Iterator[dict[str, Sim]]:
    """Three healthy simulators, one per category."""
    with (
        simulator(model="math-model", completion_tokens=6) as math,
        simulator(model="code-model", completion_tokens=6) as code,
        simulator(model="general-model", completion_tokens=6) as general,
    ):
        yield {"math": math, "code": code, "general": general}


def expert(name: str, sim: Sim, categories: list[str], **extra: Any) -> dict[str, Any]:
    return {
        "name": name,
        "kind": "vllm",
        "endpoint": sim.url,
        "categories": categories,
        "timeout_s": 10,
        "connect_timeout_s": 2,
        **extra,
    }


def standard_experts(sims: dict[str, Sim]) -> list[dict[str, Any]]:
    return [
        expert("math-expert", sims["math"], ["math"]),
        expert("code-expert", sims["code"], ["code"]),
        expert("generalist", sims["general"], ["*"]),
    ]


def write_config(tmp_path: Path, experts: list[dict[str, Any]], **sections: Any) -> Path:
    router = {"categories": CATEGORIES, "fallback": "generalist", "min_similarity": 0.2}
    router.update(sections.pop("router", {}))
    data: dict[str, Any] = {
        "registry": {"url": "memory://"},
        "router": router,
        "experts": experts,
        **sections,
    }
    path = tmp_path / "coe.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


@dataclass
class Gateway:
    url: str
    app: FastAPI
    settings: Settings

    def client(self, **kwargs: Any) -> openai.OpenAI:
        return openai.OpenAI(base_url=f"{self.url}/v1", api_key="unused", max_retries=0, **kwargs)

    def async_client(self) -> openai.AsyncOpenAI:
        return openai.AsyncOpenAI(base_url=f"{self.url}/v1", api_key="unused", max_retries=0)

    @property
    def admin_headers(self) -> dict[str, str]:
        return {"authorization": f"Bearer {ADMIN_KEY}"}


@contextlib.contextmanager
def run_gateway(config: Path, embedder: Embedder, **overrides: Any) -> Iterator[Gateway]:
    settings = load_settings(config, **({"admin_key": ADMIN_KEY} | overrides))
    app = create_app(settings, router=build_router(settings.router, embedder))
    with serve_in_thread(app) as url:
        yield Gateway(url, app, settings)


@contextlib.contextmanager
def two_replicas(
    tmp_path: Path, embedder: Embedder, experts: list[dict[str, Any]], registry_url: str
) -> Iterator[tuple[Gateway, Gateway]]:
    """Two gateways (replicas `a` and `b`, each with its own config file) on one registry."""
    configs = []
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        configs.append(write_config(tmp_path / name, experts, registry={"url": registry_url}))
    with run_gateway(configs[0], embedder) as a, run_gateway(configs[1], embedder) as b:
        yield a, b


@pytest.fixture
def gateway(tmp_path: Path, sims: dict[str, Sim], embedder: Embedder) -> Iterator[Gateway]:
    with run_gateway(write_config(tmp_path, standard_experts(sims)), embedder) as gw:
        yield gw
