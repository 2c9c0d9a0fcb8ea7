"""build_expert: one expert class per kind; the package imports nothing heavy."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

import experts
from experts.base import Expert
from experts.factory import build_expert
from experts.openai import OpenAIExpert
from experts.simulator import SimulatedExpert
from experts.vllm import VllmExpert
from registry.spec import ExpertKind
from tests.experts.conftest import make_spec


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.MockTransport(lambda _: httpx.Response(500))
    async with httpx.AsyncClient(transport=transport) as client:
        yield client


@pytest.mark.parametrize(
    ("fields", "cls"),
    [
        ({"kind": ExpertKind.OPENAI}, OpenAIExpert),
        ({"kind": ExpertKind.VLLM, "model": None}, VllmExpert),
        (
            {"kind": ExpertKind.SIMULATOR, "endpoint": None, "options": {"ttft_s": 0.1}},
            SimulatedExpert,
        ),
    ],
)
async def test_each_kind_builds_its_expert(
    http: httpx.AsyncClient, fields: dict[str, Any], cls: type[Expert]
) -> None:
    spec = make_spec(**fields)
    expert = build_expert(spec, http=http, local_models=None)
    assert type(expert) is cls
    assert isinstance(expert, Expert)
    assert expert.spec == spec


async def test_a_local_expert_needs_a_model_store(http: httpx.AsyncClient) -> None:
    spec = make_spec(kind=ExpertKind.LOCAL, endpoint=None, model="some/model")
    with pytest.raises(ValueError, match="local model store"):
        build_expert(spec, http=http, local_models=None)


async def test_bad_specs_fail_at_build_time(
    http: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("COE_TEST_NO_SUCH_KEY", raising=False)
    with pytest.raises(ValueError, match="COE_TEST_NO_SUCH_KEY"):
        build_expert(make_spec(api_key_env="COE_TEST_NO_SUCH_KEY"), http=http, local_models=None)
    simulator = make_spec(kind=ExpertKind.SIMULATOR, options={"ttft": 1})
    with pytest.raises(ValueError, match="ttft"):
        build_expert(simulator, http=http, local_models=None)


def test_package_exports_are_sorted_and_importable() -> None:
    assert experts.__all__ == sorted(experts.__all__)
    for name in experts.__all__:
        assert getattr(experts, name) is not None


def test_importing_the_package_loads_neither_torch_nor_the_local_expert() -> None:
    code = (
        "import sys, experts\n"
        "heavy = ('torch', 'transformers', 'experts.local', 'experts.local_models')\n"
        "print(','.join(sorted(m for m in sys.modules if m in heavy)))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert done.stdout.strip() == ""
