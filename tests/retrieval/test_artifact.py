"""A missing, corrupt or foreign index directory is refused with an error naming it."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from experts.retrieval import IndexArtifactError, IndexKind, load_index
from routers.artifact import MANIFEST_FILE, WEIGHTS_FILE, ArtifactError
from tests.fakes import HashingEmbedder


@pytest.fixture
def copy(indexes: dict[IndexKind, Path], tmp_path: Path) -> Path:
    """A private copy of the hybrid index, free to damage."""
    return Path(shutil.copytree(indexes[IndexKind.HYBRID], tmp_path / "hybrid"))


def refused(directory: Path, embedder: HashingEmbedder | None, message: str) -> str:
    with pytest.raises(IndexArtifactError) as caught:
        load_index(directory, embedder)
    text = str(caught.value)
    assert text.startswith(str(directory)), text
    assert message in text, text
    assert isinstance(caught.value, ArtifactError)  # the router artifacts' error family
    return text


def test_missing_directory_and_manifest(tmp_path: Path, hashing: HashingEmbedder) -> None:
    refused(tmp_path / "nowhere", hashing, "no such index directory")
    (tmp_path / "empty").mkdir()
    refused(tmp_path / "empty", hashing, "no manifest.json (not an index)")


def test_missing_or_corrupt_weights(copy: Path, hashing: HashingEmbedder) -> None:
    weights = copy / WEIGHTS_FILE
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0xFF
    weights.write_bytes(bytes(data))
    refused(copy, hashing, "SHA-256 differs from the manifest")
    weights.unlink()
    refused(copy, hashing, "unreadable")


def test_corrupt_or_foreign_manifest(copy: Path, hashing: HashingEmbedder) -> None:
    path = copy / MANIFEST_FILE
    good = json.loads(path.read_text())
    path.write_text("{not json")
    refused(copy, hashing, "unreadable")
    path.write_text(json.dumps(good | {"format_version": 99}))
    refused(copy, hashing, "format_version 99 is not supported")
    path.write_text(json.dumps(good | {"kind": "classifier/logistic"}))
    refused(copy, hashing, "is not an index")
    path.write_text(json.dumps(good | {"kind": "index/sparse"}))
    refused(copy, hashing, "is not an index")
    params = good["params"]
    without = {k: v for k, v in params.items() if k != "doc_count"}
    path.write_text(json.dumps(good | {"params": without}))
    refused(copy, hashing, "missing 'doc_count'")
    path.write_text(json.dumps(good | {"params": params | {"doc_count": 0}}))
    refused(copy, hashing, "'doc_count' must be a positive integer")
    path.write_text(json.dumps(good | {"params": params | {"pilot_texts": []}}))
    refused(copy, hashing, "'pilot_texts' must be a non-empty list of strings")
    path.write_text(json.dumps(good | {"params": params | {"doc_count": 41}}))
    refused(copy, hashing, "inconsistent index")


def test_arrays_that_disagree_with_the_manifest(copy: Path, hashing: HashingEmbedder) -> None:
    manifest = json.loads((copy / MANIFEST_FILE).read_text())
    with np.load(copy / WEIGHTS_FILE, allow_pickle=False) as data:
        arrays = {name: data[name] for name in data.files}
    arrays["pilots"] = arrays["pilots"][:, :10]
    np.savez(copy / WEIGHTS_FILE, **arrays)
    manifest["weights_sha256"] = hashlib.sha256((copy / WEIGHTS_FILE).read_bytes()).hexdigest()
    (copy / MANIFEST_FILE).write_text(json.dumps(manifest))
    refused(copy, hashing, "array 'pilots' is")


def test_another_embedder_is_refused(indexes: dict[IndexKind, Path]) -> None:
    for kind, directory in indexes.items():
        text = refused(directory, HashingEmbedder(dim=256, id="other"), "built with the embedder")
        assert "'hash-bow', not 'other'" in text, kind
    refused(indexes[IndexKind.DENSE], HashingEmbedder(dim=32), "the embedder 'hash-bow' gives 32")


def test_dense_needs_its_embedder_lexical_does_not(indexes: dict[IndexKind, Path]) -> None:
    refused(indexes[IndexKind.DENSE], None, "needs its embedder 'hash-bow'")
    refused(indexes[IndexKind.HYBRID], None, "needs its embedder 'hash-bow'")
    assert len(load_index(indexes[IndexKind.LEXICAL])) == 40
