"""Fixtures for the retriever tests: the committed 40-document classic_ir sample, a fast
fake embedder, and one index of each kind built from them (per module)."""

from __future__ import annotations

from pathlib import Path

import pytest

from experts.retrieval import IndexKind, build_index
from tests.fakes import HashingEmbedder

SAMPLE = Path(__file__).resolve().parents[1] / "fixtures" / "classic_ir_sample.jsonl"
"""40 documents, 10 from each of med, cisi, cran, cacm (attribution in fixtures/README.md)."""


@pytest.fixture(scope="module")
def hashing() -> HashingEmbedder:
    return HashingEmbedder(dim=256)


@pytest.fixture(scope="module")
def indexes(
    tmp_path_factory: pytest.TempPathFactory, hashing: HashingEmbedder
) -> dict[IndexKind, Path]:
    root = tmp_path_factory.mktemp("indexes")
    built = {}
    for kind in IndexKind:
        build_index(SAMPLE, root / kind.value, kind, hashing)
        built[kind] = root / kind.value
    return built


def write_lines(path: Path, *lines: str) -> Path:
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path
